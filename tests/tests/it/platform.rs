//! snapline on a database built as the platform's own (`tests/fixtures/platform_schema.sql`,
//! written from its public pg_dump and Ecto migrations): integer ids, NULLable references,
//! NOT NULL columns only the platform fills, its indexes under Ecto's names. `migration up`
//! builds no second copy of an index, the three jobs give exactly the rules' rows, orphans
//! whose references are NULL are counted and left alone, and `migration down` leaves the
//! platform as it found it.

use domain::{BandId, MeFileId, PopulationStatus, Snapshot, TargetId};
use jobs::BandCache;
use jobs::backfill::{BackfillOptions, BackfillScope, backfill};
use jobs::populate_target::populate_target;
use jobs::sync_me_file::sync_me_file;
use migration::{Migrator, MigratorTrait};
use repo::Db;
use sea_orm::ConnectionTrait;
use snapline_tests::{
    TestDb, assert_population_exact, binary, data_digest, execute, public_catalog, scalar,
};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

mod bridge;
mod capture;
mod capture_security;
mod doctor;
mod switch_over;

/// The platform's tables in the fixture: the twelve snapline reads, and two it never touches.
fn fixture_tables() -> Vec<&'static str> {
    let mut tables = snapline_tests::PLATFORM_TABLES.to_vec();
    tables.extend(["users", "schema_migrations"]);
    tables
}

const TARGETS: [i64; 5] = [1, 2, 3, 4, 5];

/// Every index of the public schema as (what it is, its name): table, method, key columns,
/// predicate and uniqueness.
async fn index_identities(db: &Db) -> Vec<(String, String)> {
    let rows = db
        .conn()
        .query_all_raw(sea_orm::Statement::from_string(
            db.conn().get_database_backend(),
            "SELECT t.relname || ' ' || am.amname || ' (' || array_to_string(ARRAY( \
                 SELECT pg_get_indexdef(i.indexrelid, k, true) \
                 FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k), ', ') || ')' \
                 || COALESCE(' WHERE ' || pg_get_expr(i.indpred, i.indrelid, true), '') \
                 || CASE WHEN i.indisunique THEN ' unique' ELSE '' END, c.relname::text \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_class t ON t.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_am am ON am.oid = c.relam \
             WHERE n.nspname = 'public' ORDER BY 1, 2",
        ))
        .await
        .expect("index catalog");
    rows.into_iter()
        .map(|row| {
            (
                row.try_get_by_index::<String>(0).unwrap(),
                row.try_get_by_index::<String>(1).unwrap(),
            )
        })
        .collect()
}

async fn texts(db: &Db, sql: &str) -> Vec<String> {
    db.conn()
        .query_all_raw(sea_orm::Statement::from_string(
            db.conn().get_database_backend(),
            sql,
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect()
}

/// The catalog without snapline's own migration bookkeeping (sea-orm keeps its
/// `seaql_migrations` table, empty, after the last `down`).
async fn platform_catalog(db: &Db) -> Vec<String> {
    public_catalog(db)
        .await
        .into_iter()
        .filter(|line| !line.contains("seaql_migrations"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_up_builds_no_second_copy_of_an_index_the_platform_has() {
    let test = TestDb::platform().await;
    let db = &test.db;
    let before = index_identities(db).await;

    Migrator::up(db.conn().inner(), None).await.expect("up");

    let after = index_identities(db).await;
    let mut names_by_identity: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (identity, name) in &after {
        names_by_identity.entry(identity).or_default().push(name);
    }
    let duplicated: Vec<_> = names_by_identity
        .iter()
        .filter(|(_, names)| names.len() > 1)
        .collect();
    assert!(
        duplicated.is_empty(),
        "the same index twice: {duplicated:?}"
    );
    for name in [
        "ad_events_matching_tags_snapshot_idx",
        "offers_matching_tags_snapshot_idx",
        "target_populations_matching_tags_snapshot_idx",
        "target_populations_band_me_file_key",
        "campaigns_target_idx",
        "target_bands_target_idx",
        "traits_parent_idx",
    ] {
        assert!(
            after.iter().all(|(_, n)| n != name),
            "{name} duplicates a platform index"
        );
    }
    // Every index of the platform is still there, under its own name.
    for index in &before {
        assert!(after.contains(index), "{index:?} kept");
    }
    // The ledger records exactly the indexes that are new.
    let recorded = texts(
        db,
        "SELECT name FROM snapline_schema_objects WHERE kind = 'index' \
         AND name NOT LIKE 'apalis.%' ORDER BY name",
    )
    .await;
    let mut built: Vec<String> = after
        .iter()
        .filter(|index| !before.contains(index) && !index.1.ends_with("_pkey"))
        .map(|(_, name)| name.clone())
        .collect();
    built.sort();
    assert_eq!(recorded, built);
    assert!(
        !built.is_empty() && built.iter().all(|n| !n.starts_with("index_")),
        "{built:?}"
    );
    // No table of the platform's is recorded as snapline's.
    let tables = texts(
        db,
        "SELECT name FROM snapline_schema_objects WHERE kind = 'table' ORDER BY name",
    )
    .await;
    assert_eq!(
        tables,
        [
            "snapline_audits",
            "snapline_capture_outbox",
            "snapline_job_attempts",
            "snapline_leases",
            "snapline_populate_chunks",
            "snapline_populate_failures",
            "snapline_populate_runs",
            "snapline_queue_minutes",
            "snapline_queue_pauses",
            "snapline_queue_scales",
            "snapline_schema_settings"
        ]
    );
    // The write tuning went on the platform's own GIN index.
    let options = texts(
        db,
        "SELECT array_to_string(reloptions, ',') FROM pg_class \
         WHERE relname = 'target_populations_matching_tags_snapshot_index'",
    )
    .await;
    assert_eq!(options, ["gin_pending_list_limit=64"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_then_down_leaves_every_platform_table_row_and_index_as_found() {
    let test = TestDb::platform().await;
    let db = &test.db;
    // A setting the platform chose itself, which up changes and down must put back.
    execute(
        db,
        "ALTER INDEX target_populations_matching_tags_snapshot_index \
         SET (gin_pending_list_limit = 256)",
    )
    .await;
    let catalog = platform_catalog(db).await;
    let data = data_digest(db, &fixture_tables()).await;

    Migrator::up(db.conn().inner(), None).await.expect("up");
    assert_ne!(platform_catalog(db).await, catalog, "up built something");
    Migrator::down(db.conn().inner(), None).await.expect("down");
    assert_eq!(platform_catalog(db).await, catalog);
    assert_eq!(data_digest(db, &fixture_tables()).await, data);

    // And again after the jobs have run: only population rows differ.
    Migrator::up(db.conn().inner(), None)
        .await
        .expect("up again");
    populate_target(db, TargetId(1), &Default::default())
        .await
        .expect("populate");
    Migrator::down(db.conn().inner(), None)
        .await
        .expect("down again");
    assert_eq!(platform_catalog(db).await, catalog);
}

/// Rows the platform's NULLable columns allow: populations without a me_file or a band,
/// ad_events without one, all with NULL snapshots.
async fn insert_rows_with_null_references(db: &Db) {
    execute(
        db,
        "INSERT INTO target_populations (target_band_id, me_file_id) \
         VALUES (101, NULL), (NULL, 3), (NULL, NULL); \
         INSERT INTO ad_events (me_file_id, target_band_id, offer_id, created_at, updated_at) \
         VALUES (3, NULL, 1, now(), now()), (NULL, 101, 1, now(), now()), \
                (NULL, NULL, NULL, now(), now())",
    )
    .await;
}

async fn null_reference_rows(db: &Db) -> i64 {
    scalar(
        db,
        "SELECT (SELECT COUNT(*) FROM target_populations \
                 WHERE (target_band_id IS NULL OR me_file_id IS NULL) \
                   AND matching_tags_snapshot IS NULL) \
              + (SELECT COUNT(*) FROM ad_events \
                 WHERE (target_band_id IS NULL OR me_file_id IS NULL) \
                   AND matching_tags_snapshot IS NULL)",
    )
    .await
}

/// Every target's rows equal the rules' and the independent set-based SQL's, row for row.
async fn assert_every_target_exact(db: &Db) {
    for target in TARGETS {
        assert_population_exact(db, TargetId(target)).await;
    }
}

async fn platform_tag(db: &Db, me_file: i64, trait_id: i64, value: &str) {
    execute(
        db,
        &format!(
            "INSERT INTO me_file_tags (me_file_id, trait_id, tag_value, modified_date, \
             modified_by, added_date, added_by) VALUES ({me_file}, {trait_id}, {}, now(), 1, now(), 1)",
            snapline_tests::quote(value)
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populate_sync_and_backfill_are_exact_on_the_platform_schema() {
    let test = TestDb::platform().await;
    let db = &test.db;
    test.migrate().await;
    insert_rows_with_null_references(db).await;
    let orphans = null_reference_rows(db).await;
    assert_eq!(orphans, 6);
    snapline_tests::read_every_entity(db).await;

    // Populate every shape.
    for target in TARGETS {
        let summary = populate_target(db, TargetId(target), &Default::default())
            .await
            .unwrap_or_else(|e| panic!("populate {target}: {e}"));
        assert_eq!(
            summary.orphans,
            snapline_tests::scalar(db, snapline_tests::ORPHAN_POPULATIONS_BY_SCAN).await,
            "{summary}"
        );
        assert!(summary.orphans >= 3, "{summary}");
    }
    let statuses: Vec<Option<PopulationStatus>> = {
        let mut s = Vec::new();
        for target in TARGETS {
            s.push(snapline_tests::target_status(db, TargetId(target)).await);
        }
        s
    };
    assert_eq!(
        statuses,
        [
            Some(PopulationStatus::Populated),
            Some(PopulationStatus::Populated),
            Some(PopulationStatus::Populated),
            Some(PopulationStatus::NotPopulated),
            Some(PopulationStatus::Populated),
        ]
    );
    assert!(
        scalar(
            db,
            "SELECT COUNT(*) FROM target_populations WHERE matching_tags_snapshot IS NOT NULL"
        )
        .await
            > 150
    );
    assert_every_target_exact(db).await;
    assert_eq!(null_reference_rows(db).await, orphans, "orphans left alone");
    let touched = scalar(
        db,
        "SELECT COUNT(*) FROM targets WHERE updated_at <> created_at",
    )
    .await;
    assert_eq!(touched, 0, "snapline writes no other column of targets");

    // Syncs after the platform's tag writes: add, edit, delete, a new me_file, a deleted one.
    let cache = BandCache::new(Duration::ZERO);
    platform_tag(db, 7, 51, "Fido").await; // 7 % 6 = 1: a cat owner gains a dog
    execute(
        db,
        "UPDATE me_file_tags SET tag_value = 'Golf, \"18 holes\"' WHERE me_file_id = 10 AND trait_id = 31",
    )
    .await;
    execute(
        db,
        "DELETE FROM me_file_tags WHERE me_file_id = 6 AND trait_id = 11",
    )
    .await;
    execute(
        db,
        "INSERT INTO me_files (id, display_name, created_at, updated_at) VALUES (401, 'new', now(), now())",
    )
    .await;
    for (trait_id, value) in [(11, ""), (21, "18"), (31, "Golf"), (33, "Soup")] {
        platform_tag(db, 401, trait_id, value).await;
    }
    execute(
        db,
        "DELETE FROM me_file_tags WHERE me_file_id = 12; DELETE FROM me_files WHERE id = 12",
    )
    .await;
    for me_file in [7, 10, 6, 401, 12, 3] {
        sync_me_file(db, &cache, MeFileId(me_file))
            .await
            .unwrap_or_else(|e| panic!("sync {me_file}: {e}"));
    }
    assert_every_target_exact(db).await;
    assert_eq!(null_reference_rows(db).await, orphans, "orphans left alone");

    // Backfill: legacy NULL populations, offers and ad_events copying them, an orphan offer
    // (no population), an offer on a deleted band, and the rows with NULL references.
    db.populations().forget_snapshots(3).await.unwrap();
    execute(
        db,
        "INSERT INTO offers (campaign_id, me_file_id, media_run_id, media_piece_id, \
           ad_phase_count_to_complete, target_band_id, offer_amt, marketer_cost_amt, created_at, updated_at) \
         SELECT 1, p.me_file_id, 1, 1, 1, p.target_band_id, 0.5, 0.75, now(), now() \
         FROM target_populations p WHERE p.target_band_id BETWEEN 101 AND 103 AND p.me_file_id IS NOT NULL; \
         INSERT INTO ad_events (campaign_id, me_file_id, target_band_id, offer_id, created_at, updated_at) \
         SELECT o.campaign_id, o.me_file_id, o.target_band_id, o.id, now(), now() FROM offers o; \
         INSERT INTO offers (campaign_id, me_file_id, media_run_id, media_piece_id, \
           ad_phase_count_to_complete, target_band_id, offer_amt, marketer_cost_amt, created_at, updated_at) \
         VALUES (2, 2, 9, 1, 1, 202, 1, 1, now(), now()), (2, 5, 9, 1, 1, 999999, 1, 1, now(), now())",
    )
    .await;
    let report = backfill(
        db,
        &BackfillScope::All,
        &BackfillOptions::default(),
        &|_| {},
    )
    .await
    .expect("backfill");
    assert_eq!(report.without_references, orphans as u64, "{report}");
    assert_eq!(report.unfixable, 1, "the offer on a deleted band: {report}");
    assert_eq!(
        report.orphans, 1,
        "the offer without a population: {report}"
    );
    assert!(report.populations_fixed > 0 && report.offers_fixed > 0 && report.ad_events_fixed > 0);
    assert_every_target_exact(db).await;
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM offers o JOIN target_populations p \
             ON p.me_file_id = o.me_file_id AND p.target_band_id = o.target_band_id \
             WHERE o.matching_tags_snapshot IS DISTINCT FROM p.matching_tags_snapshot"
        )
        .await,
        0,
        "offers carry their population's snapshot"
    );
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM ad_events a JOIN offers o ON o.id = a.offer_id \
             WHERE a.matching_tags_snapshot IS DISTINCT FROM o.matching_tags_snapshot \
             AND a.me_file_id IS NOT NULL AND a.target_band_id IS NOT NULL"
        )
        .await,
        0,
        "ad_events carry their population's snapshot"
    );
    // The orphan offer's snapshot is the one the rules give for its band and tags.
    let target = db.bands().of_target(TargetId(2)).await.unwrap();
    let tags = db.tags().of_me_files(&[MeFileId(2)], None).await.unwrap();
    let band = target.band(BandId(202)).unwrap();
    let expected = target.snapshot_of(
        band,
        tags.get(&MeFileId(2)).map(Vec::as_slice).unwrap_or(&[]),
    );
    let stored = texts(
        db,
        "SELECT matching_tags_snapshot::text FROM offers WHERE media_run_id = 9 AND target_band_id = 202",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Snapshot>(&stored[0]).unwrap(),
        expected
    );
    assert_eq!(null_reference_rows(db).await, orphans, "orphans left alone");
    // The rerun finds nothing it can fix, and does not fail on the orphans.
    let again = backfill(
        db,
        &BackfillScope::All,
        &BackfillOptions::default(),
        &|_| {},
    )
    .await
    .expect("backfill again");
    assert_eq!(again.fixed(), 0, "{again}");

    snapline_tests::read_every_entity(db).await;

    // The guard goes on the platform's tables; new NULLs are refused.
    db.guard().enable().await.expect("guard");
    let refused = db
        .conn()
        .execute_unprepared(
            "INSERT INTO target_populations (target_band_id, me_file_id) VALUES (101, 399)",
        )
        .await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("target_populations_snapshot_not_null")
    );
    db.guard().disable().await.expect("guard off");
}

fn run(binary_name: &str, url: &str, args: &[&str]) -> std::process::Output {
    run_with(binary_name, url, args, &[])
}

fn run_with(
    binary_name: &str,
    url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = Command::new(binary(binary_name));
    command
        .args(args)
        .env("SNAPLINE_PROFILE", "test")
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

fn assert_ok(out: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binaries_run_on_the_platform_database() {
    let test = TestDb::platform().await;
    let url = &test.url;
    // As the release pipeline runs it on the live platform: indexes built concurrently.
    assert_ok(
        &run_with(
            "migration",
            url,
            &["up"],
            &[("SNAPLINE_CREATE_INDEXES_CONCURRENTLY", "true")],
        ),
        "migration up, concurrently",
    );
    assert_eq!(
        scalar(
            &test.db,
            "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname IN ('target_populations_me_file_idx', 'me_file_tags_trait_me_file_covering_idx', \
             'me_file_tags_me_file_idx', 'target_band_trait_groups_band_idx', \
             'trait_group_traits_group_idx', 'offers_me_file_band_idx') AND i.indisvalid"
        )
        .await,
        6,
        "the six missing indexes built, valid"
    );
    insert_rows_with_null_references(&test.db).await;
    let out = assert_ok(
        &run(
            "populator",
            url,
            &["run", "--target", "1", "--chunks-at-once", "2"],
        ),
        "populator run",
    );
    assert!(out.contains("target 1:"), "{out}");
    let out = assert_ok(
        &run("syncer", url, &["run", "--me-file", "131"]),
        "syncer run",
    );
    assert!(out.contains("me_file 131"), "{out}");
    execute(
        &test.db,
        "UPDATE target_populations SET matching_tags_snapshot = NULL WHERE me_file_id % 2 = 0",
    )
    .await;
    let out = assert_ok(&run("backfiller", url, &["run"]), "backfiller run");
    assert!(out.contains("6 without band or me_file"), "{out}");
    assert_ok(&run("snapctl", url, &["status"]), "snapctl status");
    assert_ok(
        &run("snapctl", url, &["guard", "enable"]),
        "snapctl guard enable",
    );
    assert_ok(
        &run("snapctl", url, &["guard", "disable"]),
        "snapctl guard disable",
    );
    assert_population_exact(&test.db, TargetId(1)).await;

    // Ids the platform's integer columns cannot hold: bad input, named, exit 2.
    for (binary_name, args) in [
        ("populator", ["run", "--target", "3000000000"]),
        ("syncer", ["run", "--me-file", "3000000000"]),
        ("backfiller", ["run", "--band", "3000000000"]),
        ("populator", ["enqueue", "--target", "3000000000"]),
        ("syncer", ["enqueue", "--me-file", "3000000000"]),
        ("backfiller", ["enqueue", "--band", "3000000000"]),
    ] {
        let out = run(binary_name, url, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{binary_name}: {stderr}");
        assert!(stderr.contains("3000000000 is out of range"), "{stderr}");
    }
    assert_ok(
        &run("migration", url, &["down", "-n", "7"]),
        "migration down",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_fresh_refuses_to_drop_the_platform() {
    let test = TestDb::platform().await;
    let url = &test.url;
    assert_ok(&run("migration", url, &["up"]), "migration up");
    let catalog = platform_catalog(&test.db).await;
    let out = run("migration", url, &["fresh"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing `fresh`") && stderr.contains("me_file_tags"),
        "{stderr}"
    );
    assert_eq!(platform_catalog(&test.db).await, catalog, "nothing dropped");
    assert_eq!(scalar(&test.db, "SELECT COUNT(*) FROM me_files").await, 400);

    // refresh only drops what snapline created: allowed, and the platform stays.
    assert_ok(&run("migration", url, &["refresh"]), "migration refresh");
    assert_eq!(scalar(&test.db, "SELECT COUNT(*) FROM me_files").await, 400);

    // With the loud flag it does what it says.
    assert_ok(
        &run(
            "migration",
            url,
            &["fresh", "--drop-tables-snapline-did-not-create"],
        ),
        "fresh with the flag",
    );
    assert_eq!(
        scalar(
            &test.db,
            "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'users'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_fresh_runs_on_a_database_snapline_created() {
    let test = TestDb::empty(snapline_tests::Backend::Postgres).await;
    let url = &test.url;
    assert_ok(&run("migration", url, &["up"]), "migration up");
    assert_ok(&run("migration", url, &["fresh"]), "migration fresh");
    assert_eq!(scalar(&test.db, "SELECT COUNT(*) FROM me_files").await, 0);
}

/// Runs a psql script of deploy/postgres against `url` with `vars`.
fn psql(url: &str, script: &str, vars: &[(&str, &str)]) {
    let path = format!("{}/../deploy/postgres/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new("psql");
    command
        .arg(url)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", &path]);
    for (name, value) in vars {
        command.args(["-v", &format!("{name}={value}")]);
    }
    let out = command.output().expect("psql runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The platform's database as deployed: Oban's table, snapline's two roles
/// (`roles.sql`, the platform's owner `postgres`) and `extra` login roles of the test, `migration
/// up` as the migration role, `grants.sql`. The roles (`service`, `migration`, then `extra`)
/// and the migration role's URL.
async fn deployed(test: &TestDb, extra: &[&str]) -> (snapline_tests::TestRoles, String) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(snapline_tests::OBAN_SCHEMA))
        .execute(test.db.pg_pool().unwrap())
        .await
        .expect("Oban's table");
    let mut suffixes = vec!["service", "migration"];
    suffixes.extend(extra);
    let roles = snapline_tests::TestRoles::for_test(test, &suffixes);
    psql(
        &test.url,
        "roles.sql",
        &[
            ("service_role", roles.name("service")),
            ("migration_role", roles.name("migration")),
            ("platform_owner", "postgres"),
        ],
    );
    let migration_url = as_role(&test.url, roles.name("migration"));
    assert_ok(&run("migration", &migration_url, &["up"]), "migration up");
    psql(
        &migration_url,
        "grants.sql",
        &[("service_role", roles.name("service"))],
    );
    (roles, migration_url)
}

/// `url` with `role` as its user.
fn as_role(url: &str, role: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map(|(_, h)| h).unwrap_or(rest);
    format!("{scheme}://{role}@{host}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_run_as_the_least_privileged_role() {
    let test = TestDb::platform().await;
    let (roles, migration_url) = deployed(&test, &[]).await;
    let service = roles.name("service").to_owned();
    psql(
        &migration_url,
        "grants_events.sql",
        &[("service_role", &service)],
    );

    // The three services' work as the service role, with the events on as the platform
    // would run them: NOTIFY and its Oban recipe.
    let url = as_role(&test.url, &service);
    let recipe = include_str!("../../../deploy/events/oban_reconcile_offers.sql");
    let env = [
        ("SNAPLINE_DATABASE__MIGRATE_ON_START", "false"),
        ("SNAPLINE_EVENTS__NOTIFY", "true"),
        ("SNAPLINE_EVENTS__ME_FILE_BANDS_CHANGED_SQL", recipe),
    ];
    let run_as_service = |binary_name: &str, args: &[&str]| {
        let mut command = Command::new(binary(binary_name));
        command
            .args(args)
            .env("SNAPLINE_PROFILE", "test")
            .env("DATABASE_URL", &url)
            .env("RUST_LOG", "warn");
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().expect("the binary runs")
    };
    for target in ["1", "2", "3", "5"] {
        assert_ok(
            &run_as_service("populator", &["run", "--target", target]),
            "populator run",
        );
    }
    assert_eq!(
        scalar(&test.db, "SELECT COUNT(*) FROM oban_jobs").await,
        0,
        "a populate enqueues no reconciliation"
    );
    let syncer = snapline_tests::Served::start(
        &binary("syncer"),
        &url,
        &env.map(|(key, value)| (key, value.to_owned())),
    );
    // A member of target 1 loses its tags: its band changes, the platform is told.
    let leaver = scalar(
        &test.db,
        "SELECT MIN(me_file_id) FROM target_populations WHERE target_band_id = 101",
    )
    .await;
    execute(
        &test.db,
        &format!("DELETE FROM me_file_tags WHERE me_file_id = {leaver}"),
    )
    .await;
    assert_ok(
        &run_as_service("syncer", &["enqueue", "--me-file", &leaver.to_string()]),
        "syncer enqueue",
    );
    snapline_tests::wait_for("the sync job to finish as the service role", || async {
        let (open, killed) = snapline_tests::unfinished_jobs(&test.db).await;
        assert!(killed.is_empty(), "{killed:?}");
        open.is_empty()
            && scalar(
                &test.db,
                "SELECT COUNT(*) FROM apalis.jobs WHERE status = 'Done'",
            )
            .await
                == 1
    })
    .await;
    drop(syncer);
    assert_eq!(
        scalar(
            &test.db,
            &format!(
                "SELECT COUNT(*) FROM oban_jobs WHERE worker = 'Qlarius.Jobs.ReconcileOffersForMeFileWorker' \
                 AND args = '{{\"me_file_id\": {leaver}}}'::jsonb"
            )
        )
        .await,
        1,
        "the recipe ran under the shipped grants"
    );
    execute(
        &test.db,
        "UPDATE target_populations SET matching_tags_snapshot = NULL WHERE me_file_id % 3 = 0; \
         INSERT INTO offers (campaign_id, me_file_id, media_run_id, media_piece_id, \
           ad_phase_count_to_complete, target_band_id, offer_amt, marketer_cost_amt, created_at, updated_at) \
         SELECT 1, me_file_id, 1, 1, 1, target_band_id, 1, 1, now(), now() FROM target_populations \
         WHERE target_band_id BETWEEN 101 AND 103",
    )
    .await;
    let out = assert_ok(&run_as_service("backfiller", &["run"]), "backfiller run");
    assert!(out.contains("offers"), "{out}");
    assert_ok(&run_as_service("snapctl", &["status"]), "snapctl status");
    for target in [1, 2, 3, 5] {
        assert_population_exact(&test.db, TargetId(target)).await;
    }
    assert_eq!(
        scalar(
            &test.db,
            "SELECT COUNT(*) FROM offers WHERE matching_tags_snapshot IS NULL"
        )
        .await,
        0
    );

    // Writes outside the grants are refused.
    let service_db = Db::connect(&repo::DbOptions::new(url.clone()))
        .await
        .expect("connect as the service role");
    for sql in [
        "UPDATE offers SET media_run_id = media_run_id + 1",
        "UPDATE ad_events SET is_payable = true",
        "UPDATE targets SET title = 'renamed'",
        "UPDATE targets SET updated_at = now()",
        "INSERT INTO me_file_tags (me_file_id, trait_id, modified_date, modified_by, added_date, added_by) \
         VALUES (1, 11, now(), 1, now(), 1)",
        "DELETE FROM me_files WHERE id = 1",
        "DELETE FROM offers",
        "CREATE INDEX service_index ON offers (media_run_id)",
        "CREATE TABLE service_table (id int)",
        // Reads beyond the columns the jobs read (grants.sql names them).
        "SELECT offer_amt FROM offers",
        "SELECT * FROM offers",
        "SELECT * FROM ad_events",
        "SELECT id FROM campaigns",
    ] {
        let err = service_db
            .conn()
            .execute_unprepared(sql)
            .await
            .expect_err(sql)
            .to_string();
        assert!(
            err.contains("permission denied") || err.contains("must be owner"),
            "{sql}: {err}"
        );
    }
    // What it may write, it can.
    service_db
        .conn()
        .execute_unprepared(
            "UPDATE offers SET matching_tags_snapshot = matching_tags_snapshot, updated_at = now() \
             WHERE id = 1",
        )
        .await
        .expect("snapshot column writable");
    // The queues' history as the service role: a kill records its attempt (the queue
    // table's trigger inserts as the role that killed), the roll-up and its pruning run.
    jobs::sync_me_file::enqueue(&service_db, domain::MeFileId(1))
        .await
        .unwrap();
    let job = snapline_tests::job_status(&service_db, "sync_me_file", "\"me_file_id\":1}")
        .await
        .expect("the pushed job");
    jobs::admin::change(
        &service_db,
        repo::JobChange::Kill,
        std::slice::from_ref(&job.id),
    )
    .await
    .expect("a kill as the service role");
    let attempts = jobs::history::attempts_of(&service_db, &job.id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    // The syncer above rolled the minutes up already (as the service role); forgotten,
    // they are rolled up again by this call.
    execute(&test.db, "DELETE FROM snapline_queue_minutes").await;
    assert!(jobs::history::roll_up_once(&service_db).await.unwrap() > 0);
    service_db.queue_history().prune(3600).await.unwrap();
    service_db.close().await;
    drop(roles);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_refuses_the_platforms_schema_and_writes_nothing() {
    let test = TestDb::empty(snapline_tests::Backend::Postgres).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(snapline_tests::PLATFORM_SCHEMA))
        .execute(test.db.pg_pool().unwrap())
        .await
        .expect("the platform's schema, no data");
    let out = run("snapctl", &test.url, &["seed", "--me-files", "50"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("traits has NOT NULL columns") && stderr.contains("input_type"),
        "{stderr}"
    );
    assert_eq!(scalar(&test.db, "SELECT COUNT(*) FROM traits").await, 0);
}

/// A populate that fails for good leaves the target `not_populated` (the platform's code
/// knows no other status, and asks again for a target in it), and says why in snapline's own
/// records: `snapctl status`, the board and the `snapline_populate_failures` gauge, until a
/// populate of it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populate_that_fails_for_good_leaves_not_populated_and_says_why() {
    let test = TestDb::platform().await;
    test.migrate().await;
    execute(
        &test.db,
        "CREATE FUNCTION refuse_band() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'band 201 is refused by the platform'; END $$; \
         CREATE TRIGGER refuse_band BEFORE INSERT ON target_populations \
         FOR EACH ROW WHEN (NEW.target_band_id = 201) EXECUTE FUNCTION refuse_band()",
    )
    .await;
    let port = snapline_tests::free_port();
    let _populator = snapline_tests::Served::start(
        &binary("populator"),
        &test.url,
        &[
            (
                "SNAPLINE_SERVE__POPULATOR_HTTP",
                format!("127.0.0.1:{port}"),
            ),
            ("RUST_LOG", "error".to_owned()),
        ],
    );
    jobs::populate_target::enqueue(&test.db, TargetId(2))
        .await
        .unwrap();
    snapline_tests::wait_for("the populate to fail for good", || async {
        let (_, killed) = snapline_tests::unfinished_jobs(&test.db).await;
        !killed.is_empty()
    })
    .await;
    assert_eq!(
        snapline_tests::target_status(&test.db, TargetId(2)).await,
        Some(PopulationStatus::NotPopulated)
    );
    assert_eq!(
        scalar(
            &test.db,
            "SELECT COUNT(*) FROM targets WHERE population_status IS NOT NULL \
             AND population_status NOT IN ('not_populated', 'populating', 'populated')"
        )
        .await,
        0,
        "only the platform's statuses"
    );
    let status = run("snapctl", &test.url, &["status", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let failures = report["failed_populates"].as_array().expect("a list");
    assert_eq!(failures.len(), 1, "{report}");
    assert_eq!(failures[0]["target_id"], 2);
    assert!(
        failures[0]["error"]
            .as_str()
            .unwrap()
            .contains("band 201 is refused by the platform"),
        "{report}"
    );
    let text = assert_ok(&run("snapctl", &test.url, &["status"]), "status");
    assert!(text.contains("populates that failed for good"), "{text}");
    snapline_tests::wait_for("the failures gauge", || async {
        snapline_tests::http_get(port, "/metrics")
            .is_some_and(|(_, body)| body.contains("snapline_populate_failures 1"))
    })
    .await;
    let board = snapline_tests::ServedBoard::start(&test.db, false);
    let board_port = board.port;
    snapline_tests::wait_for("the board's overview", || async {
        snapline_tests::http_get(board_port, "/").is_some_and(|(status, page)| {
            status == 200
                && page.contains("id=\"failed-populates\"")
                && page.contains("band 201 is refused by the platform")
        })
    })
    .await;
    board.stop().await;

    // Fixed and asked again: populated, and the failure forgotten.
    execute(&test.db, "DROP TRIGGER refuse_band ON target_populations").await;
    jobs::populate_target::enqueue(&test.db, TargetId(2))
        .await
        .unwrap();
    snapline_tests::wait_for("the populate to succeed", || async {
        snapline_tests::target_status(&test.db, TargetId(2)).await
            == Some(PopulationStatus::Populated)
    })
    .await;
    assert!(
        test.db
            .populate_runs()
            .failures(10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_population_exact(&test.db, TargetId(2)).await;
}

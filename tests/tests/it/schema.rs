//! Migrations on both backends: up, down, up again, on an empty database and on one that
//! already holds the platform's tables (which `down` must never drop).

use migration::{Migrator, MigratorTrait};
use repo::Db;
use sea_orm::{ConnectionTrait, Statement};
use snapline_tests::{Backend, TestDb, both_backends};

use snapline_tests::PLATFORM_TABLES as TABLES;

/// The SQL that created `name` (table or index), or `None` when it does not exist.
async fn definition(db: &Db, name: &str) -> Option<String> {
    let conn = db.conn();
    let backend = conn.get_database_backend();
    let sql = match db.backend() {
        repo::Backend::Postgres => {
            "SELECT COALESCE((SELECT indexdef FROM pg_indexes WHERE indexname = $1), \
             (SELECT 'table ' || tablename FROM pg_tables WHERE tablename = $1))"
        }
        repo::Backend::Sqlite => "SELECT sql FROM sqlite_master WHERE name = $1",
    };
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [name.into()]))
        .await
        .expect("catalog query")?;
    row.try_get_by_index::<Option<String>>(0).expect("text")
}

/// The one text value `sql` returns.
async fn text(db: &Db, sql: &str) -> String {
    let conn = db.conn();
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("a row");
    row.try_get_by_index::<String>(0).expect("text")
}

async fn up_down_up_on_an_empty_database(backend: Backend) {
    let test = TestDb::empty(backend).await;
    let db = &test.db;
    Migrator::up(db.conn().inner(), None).await.expect("up");
    for table in TABLES {
        assert!(definition(db, table).await.is_some(), "{table} created");
    }
    assert!(
        definition(db, "target_populations_null_snapshot_idx")
            .await
            .is_some()
    );

    Migrator::down(db.conn().inner(), None).await.expect("down");
    for table in TABLES {
        assert!(
            definition(db, table).await.is_none(),
            "{table} dropped by down"
        );
    }
    assert!(definition(db, "snapline_schema_objects").await.is_none());

    Migrator::up(db.conn().inner(), None)
        .await
        .expect("up again");
    assert!(
        definition(db, "ad_events_null_snapshot_idx")
            .await
            .is_some()
    );
}

/// Makes the database look like the platform's: every table and the NULL-snapshot and GIN
/// indexes already exist, created by someone else (no ledger, no migration history), with a
/// column snapline does not know and a row of data; snapline's own hot-query indexes are
/// missing.
async fn create_platform_tables(db: &Db) {
    Migrator::up(db.conn().inner(), None)
        .await
        .expect("build the platform's schema");
    let conn = db.conn();
    for sql in [
        "DROP TABLE snapline_schema_objects",
        "DROP TABLE seaql_migrations",
        "DROP INDEX me_file_tags_trait_me_file_covering_idx",
        "DROP INDEX me_file_tags_me_file_idx",
        "ALTER TABLE target_populations ADD COLUMN inserted_by TEXT",
        "INSERT INTO target_populations (target_band_id, me_file_id, inserted_by) \
         VALUES (7, 11, 'platform')",
    ] {
        conn.execute_unprepared(sql).await.expect(sql);
    }
}

async fn down_never_drops_what_the_platform_created(backend: Backend) {
    let test = TestDb::empty(backend).await;
    let db = &test.db;
    create_platform_tables(db).await;

    Migrator::up(db.conn().inner(), None)
        .await
        .expect("up over platform tables");
    assert!(
        definition(db, "me_file_tags_trait_me_file_covering_idx")
            .await
            .is_some()
    );
    Migrator::down(db.conn().inner(), None).await.expect("down");
    Migrator::up(db.conn().inner(), None)
        .await
        .expect("up again");
    Migrator::down(db.conn().inner(), None)
        .await
        .expect("down again");

    for table in TABLES {
        assert!(
            definition(db, table).await.is_some(),
            "platform table {table} kept"
        );
    }
    assert!(
        definition(db, "target_populations_null_snapshot_idx")
            .await
            .is_some(),
        "the platform's own index is kept"
    );
    assert!(
        definition(db, "me_file_tags_trait_me_file_covering_idx")
            .await
            .is_none(),
        "snapline's own index is removed"
    );
    if backend == Backend::Postgres {
        assert!(
            definition(db, "offers_matching_tags_snapshot_idx")
                .await
                .is_some()
        );
    }
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(
            db.conn().get_database_backend(),
            "SELECT inserted_by FROM target_populations WHERE me_file_id = 11",
        ))
        .await
        .expect("query")
        .expect("the platform's row is still there");
    assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "platform");
}

async fn partial_and_gin_indexes_have_the_fixed_names_and_predicates(backend: Backend) {
    let test = TestDb::migrated(backend).await;
    let db = &test.db;
    for (index, columns) in [
        ("target_populations_null_snapshot_idx", "(id)"),
        ("offers_null_snapshot_idx", "(me_file_id, target_band_id)"),
        (
            "ad_events_null_snapshot_idx",
            "(me_file_id, target_band_id)",
        ),
    ] {
        let sql = definition(db, index).await.expect("index exists");
        assert!(sql.contains(columns), "{index}: {sql}");
        assert!(
            sql.contains("WHERE (matching_tags_snapshot IS NULL)")
                || sql.contains("WHERE matching_tags_snapshot IS NULL"),
            "{index}: {sql}"
        );
    }
    if backend == Backend::Postgres {
        for table in ["target_populations", "offers", "ad_events"] {
            let sql = definition(db, &format!("{table}_matching_tags_snapshot_idx"))
                .await
                .expect("GIN index exists");
            assert!(sql.contains("USING gin (matching_tags_snapshot)"), "{sql}");
        }
        // The table the syncer rewrites all day: a small GIN pending list, frequent
        // autovacuum; rolling that migration back restores the server defaults.
        let options = || async {
            text(
                db,
                "SELECT string_agg(COALESCE(array_to_string(reloptions, ','), ''), ' ' ORDER BY relname) \
                 FROM pg_class WHERE relname IN \
                 ('target_populations', 'target_populations_matching_tags_snapshot_idx')",
            )
            .await
        };
        let tuned = "autovacuum_vacuum_scale_factor=0.02 gin_pending_list_limit=64";
        assert_eq!(options().await, tuned);
        // Back to the fifth migration: the tuning is the sixth.
        let past_the_tuning = Migrator::migrations().len() as u32 - 5;
        Migrator::down(db.conn().inner(), Some(past_the_tuning))
            .await
            .expect("down past the tuning");
        assert_eq!(options().await, " ");
        Migrator::up(db.conn().inner(), None)
            .await
            .expect("up again");
        assert_eq!(options().await, tuned);
    }
    let unique = definition(db, "target_populations_band_me_file_key")
        .await
        .unwrap();
    assert!(unique.contains("UNIQUE"), "{unique}");
}

/// The plan of `sql`, one line per row of EXPLAIN.
async fn plan(db: &Db, sql: &str, values: Vec<sea_orm::Value>) -> String {
    let conn = db.conn();
    let explain = match db.backend() {
        repo::Backend::Postgres => format!("EXPLAIN {sql}"),
        repo::Backend::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
    };
    let column = match db.backend() {
        repo::Backend::Postgres => 0,
        repo::Backend::Sqlite => 3,
    };
    conn.query_all_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        explain,
        values,
    ))
    .await
    .expect("explain")
    .into_iter()
    .map(|row| row.try_get_by_index::<String>(column).expect("plan text"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// The deduplicating push's check and apalis's search for jobs of dead workers stay index
/// lookups however many jobs wait or have finished (both used to read the whole queue).
async fn queue_lookups_use_their_indexes(backend: Backend) {
    let test = TestDb::migrated(backend).await;
    let db = &test.db;
    match backend {
        Backend::Postgres => {
            snapline_tests::execute(
                db,
                "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) \
                 VALUES ('gone', 'sync_me_file', 'PgStorage', '', now() - interval '1 day')",
            )
            .await;
            snapline_tests::execute(
                db,
                "INSERT INTO apalis.jobs (id, job_type, job, status, max_attempts, lock_by) \
                 SELECT 'j' || g, 'sync_me_file', convert_to('{\"me_file_id\":' || g || '}', 'UTF8'), \
                 CASE WHEN g % 2 = 0 THEN 'Pending' ELSE 'Done' END, 5, \
                 CASE WHEN g % 2 = 0 THEN NULL ELSE 'gone' END \
                 FROM generate_series(1, 20000) AS g",
            )
            .await;
            snapline_tests::execute(db, "ANALYZE apalis.jobs").await;
            let push = plan(
                db,
                repo::PLAIN_SQL_PUSH,
                vec![
                    "sync_me_file".into(),
                    r#"{"me_file_id":4}"#.into(),
                    5.into(),
                ],
            )
            .await;
            assert!(push.contains("jobs_waiting_payload_idx"), "{push}");
            let orphans = plan(
                db,
                "SELECT jobs.id FROM apalis.jobs INNER JOIN apalis.workers ON jobs.lock_by = workers.id \
                 WHERE (jobs.status = 'Running' OR jobs.status = 'Queued') \
                 AND NOW() - workers.last_seen >= interval '30 seconds' \
                 AND workers.worker_type = 'sync_me_file' FOR UPDATE OF jobs SKIP LOCKED",
                vec![],
            )
            .await;
            assert!(orphans.contains("jobs_held_lock_by_idx"), "{orphans}");
        }
        Backend::Sqlite => {
            let waiting = plan(
                db,
                "SELECT 1 FROM Jobs INDEXED BY Jobs_waiting_payload_idx WHERE job_type = $1 \
                 AND status = 'Pending' AND CAST(job AS TEXT) = $2 LIMIT 1",
                vec!["sync_me_file".into(), r#"{"me_file_id":4}"#.into()],
            )
            .await;
            assert!(waiting.contains("Jobs_waiting_payload_idx"), "{waiting}");
        }
    }
    // The check itself answers right either way.
    let queue = jobs::sync_me_file::QUEUE;
    assert!(
        !db.queue_jobs()
            .has_waiting(queue, r#"{"me_file_id":7}"#)
            .await
            .unwrap()
    );
    jobs::sync_me_file::enqueue(db, domain::MeFileId(7))
        .await
        .unwrap();
    assert!(
        db.queue_jobs()
            .has_waiting(queue, r#"{"me_file_id":7}"#)
            .await
            .unwrap()
    );
}

/// A populate batch's read of its tags (`TagRepo::in_me_file_range`) never visits the table:
/// the covering index of migration 12 holds every column it reads, and replaces snapline's
/// narrower (trait, me_file) index; `down` puts that one back.
async fn populate_tag_reads_are_index_only(backend: Backend) {
    let test = TestDb::seeded(
        backend,
        &synth::SeedOptions {
            me_files: 3000,
            ..Default::default()
        },
    )
    .await;
    let db = &test.db;
    let covering = "me_file_tags_trait_me_file_covering_idx";
    let narrower = "me_file_tags_trait_me_file_idx";
    assert!(definition(db, covering).await.is_some());
    assert!(definition(db, narrower).await.is_none(), "replaced");
    let (traits, index_only) = match backend {
        Backend::Postgres => {
            // The visibility map autovacuum keeps on the platform's database.
            snapline_tests::execute(db, "VACUUM ANALYZE me_file_tags").await;
            (
                sea_orm::Value::from(vec![20001_i64, 20002, 30001]),
                format!("Index Only Scan using {covering}"),
            )
        }
        Backend::Sqlite => (
            sea_orm::Value::from("[20001, 20002, 30001]"),
            format!("USING COVERING INDEX {covering}"),
        ),
    };
    let batch = plan(
        db,
        &repo::tags_in_me_file_range_sql(db),
        vec![1000_i64.into(), 1500_i64.into(), traits],
    )
    .await;
    assert!(batch.contains(&index_only), "{batch}");

    // Back before migration 12, and up again.
    let past_the_covering_index = Migrator::migrations().len() as u32 - 11;
    Migrator::down(db.conn().inner(), Some(past_the_covering_index))
        .await
        .expect("down past migration 12");
    assert!(definition(db, covering).await.is_none());
    assert!(definition(db, narrower).await.is_some(), "put back");
    Migrator::up(db.conn().inner(), None)
        .await
        .expect("up again");
    assert!(definition(db, covering).await.is_some());
    assert!(definition(db, narrower).await.is_none());

    // An index of the platform's own on the same key is never dropped, either way (on
    // PostgreSQL, where the platform runs; SQLite goes by names).
    if backend == Backend::Sqlite {
        return;
    }
    let platforms = "index_me_file_tags_on_trait_id_and_me_file_id";
    snapline_tests::execute(
        db,
        &format!("CREATE INDEX {platforms} ON me_file_tags (trait_id, me_file_id)"),
    )
    .await;
    Migrator::down(db.conn().inner(), Some(past_the_covering_index))
        .await
        .expect("down past migration 12");
    assert!(
        definition(db, narrower).await.is_none(),
        "the platform's serves"
    );
    Migrator::up(db.conn().inner(), None)
        .await
        .expect("up again");
    assert!(definition(db, covering).await.is_some());
    assert!(
        definition(db, platforms).await.is_some(),
        "the platform's kept"
    );
}

both_backends! {
    tag_reads_are_index_only => populate_tag_reads_are_index_only;
    queue_lookups_use_indexes => queue_lookups_use_their_indexes;
    up_down_up_on_empty_database => up_down_up_on_an_empty_database;
    platform_objects_survive_down => down_never_drops_what_the_platform_created;
    snapshot_indexes_exist => partial_and_gin_indexes_have_the_fixed_names_and_predicates;
}

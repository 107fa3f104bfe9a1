//! The bridge on the platform's schema with Oban's table: the platform's own inserts of the
//! jobs snapline replaces, written as Oban writes them, are taken in their own transaction
//! (snapline's job pushed once, the platform's row stored `completed` and returned), other
//! workers' rows are left alone, capture and bridge together push one job per change, and
//! `disable` (or `migration down`) gives the platform's workers their jobs back.

use super::{TARGETS, assert_ok, run};
use domain::TargetId;
use jobs::populate_target::{PopulateOptions, populate_target};
use snapline_tests::{TestDb, execute, scalar};

const POPULATE: &str = "Qlarius.Jobs.PopulateTargetWorker";
const SYNC: &str = "Qlarius.Jobs.SyncMeFileToTargetPopulationsWorker";
const BAND: &str = "Qlarius.Jobs.SnapshotBandPopulationsWorker";
const HOURLY: &str = "Qlarius.Jobs.BackfillMissingSnapshotsWorker";
const RECONCILE: &str = "Qlarius.Jobs.ReconcileOffersForMeFileWorker";

/// The platform's schema and data with Oban's table, migrated, targets populated.
async fn platform_with_oban() -> TestDb {
    let test = TestDb::platform().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(snapline_tests::OBAN_SCHEMA))
        .execute(test.db.pg_pool().unwrap())
        .await
        .expect("Oban's table");
    test.migrate().await;
    for target in TARGETS {
        populate_target(&test.db, TargetId(target), &PopulateOptions::default())
            .await
            .expect("populate");
    }
    execute(&test.db, "DELETE FROM apalis.jobs").await;
    test
}

/// One job inserted as Oban's `insert` writes it (every column given, `ON CONFLICT DO
/// NOTHING RETURNING`), in `conn`'s transaction: the returned row's (id, state, meta).
pub(super) async fn oban_insert<'c, E>(
    conn: E,
    queue: &str,
    worker: &str,
    args: &str,
) -> (i64, String, serde_json::Value)
where
    E: sqlx::PgExecutor<'c>,
{
    let (id, state, meta): (i64, String, Option<serde_json::Value>) = sqlx::query_as(
        "INSERT INTO oban_jobs (state, queue, worker, args, errors, attempt, max_attempts, \
           inserted_at, scheduled_at, priority, tags, meta) \
         VALUES ('available', $1, $2, $3::jsonb, ARRAY[]::jsonb[], 0, 3, \
           timezone('UTC', now()), timezone('UTC', now()), 0, ARRAY[]::text[], '{}'::jsonb) \
         ON CONFLICT DO NOTHING RETURNING id, state::text, meta",
    )
    .bind(queue)
    .bind(worker)
    .bind(args)
    .fetch_one(conn)
    .await
    .unwrap_or_else(|e| panic!("Oban's insert of {worker} {args}: {e}"));
    (id, state, meta.unwrap_or_default())
}

/// snapline's waiting jobs as (queue, payload, id), sorted.
async fn snapline_jobs(test: &TestDb) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT job_type, convert_from(job, 'UTF8'), id FROM apalis.jobs ORDER BY 1, 2, 3",
    )
    .fetch_all(test.db.pg_pool().unwrap())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platforms_own_jobs_go_to_snapline_once_and_come_back_on_disable() {
    let test = platform_with_oban().await;
    let pool = test.db.pg_pool().unwrap().clone();
    let url = &test.url;
    let status = assert_ok(&run("snapctl", url, &["bridge", "status"]), "status");
    assert!(status.contains("bridge: off"), "{status}");
    assert_ok(&run("snapctl", url, &["bridge", "enable"]), "bridge enable");

    // The marketer's populate button: the platform sets `populating`, then inserts its job.
    execute(
        &test.db,
        "UPDATE targets SET population_status = 'populating' WHERE id = 2",
    )
    .await;
    let (_, state, meta) = oban_insert(&pool, "targets", POPULATE, r#"{"target_id": 2}"#).await;
    assert_eq!(state, "completed", "Oban never runs it");
    assert_eq!(meta["snapline"]["queue"], "populate_target", "{meta}");
    // A campaign launch on a target that is not populated: snapline marks it.
    execute(
        &test.db,
        "UPDATE targets SET population_status = 'not_populated' WHERE id = 3",
    )
    .await;
    oban_insert(&pool, "targets", POPULATE, r#"{"target_id": 3}"#).await;
    assert_eq!(
        snapline_tests::target_status(&test.db, TargetId(3)).await,
        Some(domain::PopulationStatus::Populating)
    );

    // A tag delete with deleted_trait_ids, twice: one sync, both rows naming it.
    let sync_args = r#"{"me_file_id": 5, "deleted_trait_ids": [21, 22]}"#;
    let (_, state, first) = oban_insert(&pool, "targets", SYNC, sync_args).await;
    let (_, _, second) = oban_insert(&pool, "targets", SYNC, sync_args).await;
    assert_eq!(state, "completed");
    assert_eq!(
        first["snapline"]["job_id"], second["snapline"]["job_id"],
        "de-duplicated"
    );
    // A band's snapshots, and the hourly backfill of everything (covered, nothing pushed).
    oban_insert(&pool, "targets", BAND, r#"{"band_id": 101}"#).await;
    let (_, state, hourly) = oban_insert(&pool, "maintenance", HOURLY, "{}").await;
    assert_eq!(state, "completed");
    assert_eq!(
        hourly["snapline"]["covered_by"], "the hourly backfill",
        "{hourly}"
    );
    // Other workers, and a job whose id is not an integer, are Oban's.
    let (_, state, meta) = oban_insert(&pool, "offers", RECONCILE, r#"{"me_file_id": 5}"#).await;
    assert_eq!((state.as_str(), meta.get("snapline")), ("available", None));
    let (_, state, _) = oban_insert(&pool, "targets", SYNC, r#"{"me_file_id": "5"}"#).await;
    assert_eq!(state, "available", "left to Oban");

    let jobs = snapline_jobs(&test).await;
    let payloads: Vec<(&str, &str)> = jobs
        .iter()
        .map(|(q, p, _)| (q.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        payloads,
        [
            ("backfill", r#"{"band_id":101}"#),
            ("populate_target", r#"{"target_id":2}"#),
            ("populate_target", r#"{"target_id":3}"#),
            ("sync_me_file", r#"{"me_file_id":5}"#),
        ]
    );
    let sync_job = &jobs.iter().find(|(q, _, _)| q == "sync_me_file").unwrap().2;
    assert_eq!(first["snapline"]["job_id"], sync_job.as_str());

    // Capture and bridge together: a registration's tag write and the platform's sync
    // insert in one transaction push one job.
    test.db.capture().enable().await.unwrap();
    execute(&test.db, "DELETE FROM apalis.jobs").await;
    let mut txn = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO me_file_tags (me_file_id, trait_id, tag_value, modified_date, modified_by, added_date, added_by) \
         VALUES (9, 32, 'Tennis', now(), 1, now(), 1)",
    )
    .execute(&mut *txn)
    .await
    .unwrap();
    let (_, _, meta) = oban_insert(&mut *txn, "targets", SYNC, r#"{"me_file_id": 9}"#).await;
    txn.commit().await.unwrap();
    assert_eq!(
        test.db.capture().drain(100).await.unwrap(),
        (1, 0),
        "capture's change is absorbed by the bridged job"
    );
    let jobs = snapline_jobs(&test).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(meta["snapline"]["job_id"], jobs[0].2.as_str());

    let status = assert_ok(&run("snapctl", url, &["bridge", "status"]), "status");
    for line in [
        "bridge: on, version 1",
        &format!("{SYNC} -> sync_me_file"),
        &format!("{SYNC}: 3"),
        &format!("{POPULATE}: 2"),
        &format!("{HOURLY}: 1"),
    ] {
        assert!(status.contains(line), "{line}:\n{status}");
    }

    // Off: the platform's next inserts are its workers' again.
    assert_ok(
        &run("snapctl", url, &["bridge", "disable"]),
        "bridge disable",
    );
    test.db.capture().disable().await.unwrap();
    execute(&test.db, "DELETE FROM apalis.jobs").await;
    let (_, state, meta) = oban_insert(&pool, "targets", SYNC, r#"{"me_file_id": 11}"#).await;
    assert_eq!((state.as_str(), meta.get("snapline")), ("available", None));
    assert!(snapline_jobs(&test).await.is_empty());

    // Rolling snapline back (`migration reset`: every step down) removes it too.
    assert_ok(&run("snapctl", url, &["bridge", "enable"]), "bridge enable");
    assert_ok(&run("migration", url, &["reset"]), "migration reset");
    assert_eq!(
        scalar(
            &test.db,
            "SELECT COUNT(*) FROM pg_proc WHERE proname LIKE 'snapline\\_bridge%'"
        )
        .await,
        0
    );
    let (_, state, _) = oban_insert(&pool, "targets", SYNC, r#"{"me_file_id": 12}"#).await;
    assert_eq!(state, "available");
}

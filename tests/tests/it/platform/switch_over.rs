//! The switch-over as docs/operations.md ("Switching the platform over") lays it out, end to
//! end on the platform's schema with Oban's table: `migration up`, grants, capture and the
//! bridge on, the three services running as the service role; then the platform's own
//! requests (a populate, a registration, a tag delete with `deleted_trait_ids`, the hourly
//! backfill), each written as the platform's code and Oban write them, are run by snapline
//! exactly once and give the oracle's rows; `doctor` then passes; bridge and capture off,
//! the platform's next jobs are its own workers' again.

use super::{TARGETS, as_role, assert_every_target_exact, assert_ok, run};
use domain::TargetId;
use snapline_tests::{Served, TestDb, binary, scalar, wait_for};

const SYNC: &str = "Qlarius.Jobs.SyncMeFileToTargetPopulationsWorker";

/// One job inserted as Oban's Basic engine inserts a unique one, in `txn`: the transaction's
/// advisory lock on the job's uniqueness key, the look for a duplicate among available and
/// scheduled jobs of the period, then `INSERT ... ON CONFLICT DO NOTHING RETURNING`. The
/// returned row's state.
async fn oban_insert_unique(
    txn: &mut sqlx::PgConnection,
    queue: &str,
    worker: &str,
    args: &str,
    unique_secs: i32,
) -> String {
    sqlx::query("SELECT pg_try_advisory_xact_lock(hashtext($1 || $2))")
        .bind(worker)
        .bind(args)
        .execute(&mut *txn)
        .await
        .unwrap();
    let duplicate: Option<(String,)> = sqlx::query_as(
        "SELECT state::text FROM oban_jobs WHERE worker = $1 AND args = $2::jsonb \
         AND state IN ('available', 'scheduled') \
         AND inserted_at > timezone('UTC', now()) - make_interval(secs => $3) LIMIT 1",
    )
    .bind(worker)
    .bind(args)
    .bind(unique_secs)
    .fetch_optional(&mut *txn)
    .await
    .unwrap();
    if let Some((state,)) = duplicate {
        return state;
    }
    super::bridge::oban_insert(&mut *txn, queue, worker, args)
        .await
        .1
}

/// How many of snapline's jobs of `queue` carry `payload`, in any state.
async fn jobs_with(test: &TestDb, queue: &str, payload: &str) -> i64 {
    scalar(
        &test.db,
        &format!(
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = '{queue}' \
             AND convert_from(job, 'UTF8') = '{payload}'"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_switches_over_with_no_change_to_its_code_and_back() {
    let test = TestDb::platform().await;
    let pool = test.db.pg_pool().unwrap().clone();
    let (roles, migration_url) = super::deployed(&test, &[]).await;
    let service = roles.name("service");
    assert_ok(
        &run("snapctl", &migration_url, &["capture", "enable"]),
        "capture",
    );
    assert_ok(
        &run("snapctl", &migration_url, &["bridge", "enable"]),
        "bridge",
    );
    let service_url = as_role(&test.url, service);
    let env = [("SNAPLINE_DATABASE__MIGRATE_ON_START", "false".to_owned())];
    let _services = ["populator", "syncer", "backfiller"]
        .map(|name| Served::start(&binary(name), &service_url, &env));

    // The marketer's populate button on every target, as the platform's code does it.
    for target in TARGETS {
        let mut txn = pool.begin().await.unwrap();
        sqlx::query("UPDATE targets SET population_status = 'populating' WHERE id = $1")
            .bind(target as i32)
            .execute(&mut *txn)
            .await
            .unwrap();
        let state = oban_insert_unique(
            &mut txn,
            "targets",
            "Qlarius.Jobs.PopulateTargetWorker",
            &format!(r#"{{"target_id": {target}}}"#),
            60,
        )
        .await;
        txn.commit().await.unwrap();
        assert_eq!(state, "completed");
    }
    wait_for("every target with bands populated", || async {
        scalar(
            &test.db,
            "SELECT COUNT(*) FROM targets WHERE id IN (1, 2, 3, 5) AND population_status = 'populated'",
        )
        .await
            == 4
    })
    .await;

    // A registration (the me_file, its tags, the platform's sync job, one transaction) and a
    // tag delete with deleted_trait_ids, each twice over.
    let mut txn = pool.begin().await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO me_files (id, display_name, created_at, updated_at) VALUES (401, 'new', now(), now()); \
         INSERT INTO me_file_tags (me_file_id, trait_id, tag_value, modified_date, modified_by, added_date, added_by) \
         VALUES (401, 11, NULL, now(), 1, now(), 1), (401, 22, 'x', now(), 1, now(), 1), (401, 31, NULL, now(), 1, now(), 1)",
    )
    .execute(&mut *txn)
    .await
    .unwrap();
    oban_insert_unique(&mut txn, "targets", SYNC, r#"{"me_file_id": 401}"#, 120).await;
    oban_insert_unique(&mut txn, "targets", SYNC, r#"{"me_file_id": 401}"#, 120).await;
    txn.commit().await.unwrap();
    let mut txn = pool.begin().await.unwrap();
    sqlx::query("DELETE FROM me_file_tags WHERE me_file_id = 5 AND trait_id IN (21, 22, 23)")
        .execute(&mut *txn)
        .await
        .unwrap();
    oban_insert_unique(
        &mut txn,
        "targets",
        SYNC,
        r#"{"me_file_id": 5, "deleted_trait_ids": [21, 22, 23]}"#,
        120,
    )
    .await;
    txn.commit().await.unwrap();
    // The platform's hourly cron insert: taken, nothing run twice.
    let mut txn = pool.begin().await.unwrap();
    let state = oban_insert_unique(
        &mut txn,
        "maintenance",
        "Qlarius.Jobs.BackfillMissingSnapshotsWorker",
        "{}",
        3600,
    )
    .await;
    txn.commit().await.unwrap();
    assert_eq!(state, "completed");

    wait_for("snapline's jobs done", || async {
        let (open, killed) = snapline_tests::unfinished_jobs(&test.db).await;
        assert!(killed.is_empty(), "{killed:?}");
        open.is_empty()
    })
    .await;
    for target in TARGETS {
        assert_eq!(
            jobs_with(
                &test,
                "populate_target",
                &format!(r#"{{"target_id":{target}}}"#)
            )
            .await,
            1,
            "target {target} populated once"
        );
    }
    // The bridge pushes its job in the writer's transaction; capture's outbox row is drained
    // after the commit and absorbed by that job while it waits. A syncer that took the
    // bridged job first (it reads the committed tags) makes the drain push a second,
    // redundant sync: never more, and the rows are exact either way (below).
    for me_file in [401, 5] {
        let syncs = jobs_with(
            &test,
            "sync_me_file",
            &format!(r#"{{"me_file_id":{me_file}}}"#),
        )
        .await;
        assert!((1..=2).contains(&syncs), "me_file {me_file}: {syncs} syncs");
    }
    assert_eq!(
        scalar(
            &test.db,
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'backfill'"
        )
        .await,
        0,
        "the platform's hourly backfill is snapline's own cron's"
    );
    assert_eq!(
        scalar(
            &test.db,
            "SELECT COUNT(*) FROM oban_jobs WHERE state <> 'completed'"
        )
        .await,
        0,
        "Oban runs none of them"
    );
    assert_every_target_exact(&test.db).await;
    for target in [1, 2, 3, 5] {
        snapline_tests::assert_population_as_sql_computes(&test.db, TargetId(target)).await;
    }
    let doctor = run(
        "snapctl",
        &migration_url,
        &["doctor", "--service-role", service, "--replicas", "1"],
    );
    assert_ok(&doctor, "doctor after the switch");

    // Back: the platform's next inserts are its own workers'.
    assert_ok(
        &run("snapctl", &migration_url, &["bridge", "disable"]),
        "bridge off",
    );
    assert_ok(
        &run("snapctl", &migration_url, &["capture", "disable"]),
        "capture off",
    );
    let mut txn = pool.begin().await.unwrap();
    let state = oban_insert_unique(&mut txn, "targets", SYNC, r#"{"me_file_id": 6}"#, 120).await;
    txn.commit().await.unwrap();
    assert_eq!(state, "available");
    assert_eq!(
        jobs_with(&test, "sync_me_file", r#"{"me_file_id":6}"#).await,
        0
    );
}

//! `populator serve` as operators run it, in a child process on PostgreSQL: its HTTP probes
//! and metrics, SIGTERM in the middle of a job, and kill -9 with another replica taking over.

use domain::{PopulationStatus, TargetId};
use jobs::populate_target;
use snapline_tests::{
    Backend, Served, TestDb, assert_population_exact, free_port, http_get, job_status, wait_for,
    wait_until_populating,
};
use std::time::Duration;
use synth::SeedOptions;

const POPULATOR: &str = env!("CARGO_BIN_EXE_populator");

async fn seeded(me_files: u64) -> TestDb {
    TestDb::seeded(
        Backend::Postgres,
        &SeedOptions::sized(me_files, 6).with_legacy_share(0.05),
    )
    .await
}

async fn wait_for_job(test: &TestDb, needle: &str, status: &'static str) {
    let db = test.db.clone();
    wait_for(&format!("job {needle} {status}"), || {
        let db = db.clone();
        async move {
            job_status(&db, populate_target::QUEUE, needle)
                .await
                .is_some_and(|job| job.status == status)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_probes_and_exposes_metrics_after_a_job() {
    let test = seeded(1_000).await;
    let port = free_port();
    let mut served = Served::start(
        POPULATOR,
        &test.url,
        &[
            (
                "SNAPLINE_SERVE__POPULATOR_HTTP",
                format!("127.0.0.1:{port}"),
            ),
            // One try, and a short wait for a held lease: a held lease exhausts the job.
            ("SNAPLINE_QUEUES__POPULATE_TARGET__MAX_ATTEMPTS", "1".into()),
            ("SNAPLINE_POPULATOR__LOCK_WAIT_SECS", "1".into()),
        ],
    );
    wait_for("/readyz answers 200", || async move {
        http_get(port, "/readyz").is_some_and(|(status, _)| status == 200)
    })
    .await;
    let (status, body) = http_get(port, "/healthz").expect("/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));

    populate_target::enqueue(&test.db, TargetId(1))
        .await
        .unwrap();
    wait_for_job(&test, r#""target_id":1"#, "Done").await;

    // A permanent failure (a target deleted after the push) and an exhausted one (the
    // target's lease held by someone else through the only attempt).
    populate_target::enqueue(&test.db, TargetId(5))
        .await
        .unwrap();
    snapline_tests::execute(&test.db, "DELETE FROM targets WHERE id = 5").await;
    wait_for_job(&test, r#""target_id":5"#, "Killed").await;
    assert!(
        test.db
            .leases()
            .try_acquire("populate_target:3", "someone else", Duration::from_secs(60))
            .await
            .unwrap()
    );
    populate_target::enqueue(&test.db, TargetId(3))
        .await
        .unwrap();
    let db = test.db.clone();
    wait_for("the held target's job to give up", || {
        let db = db.clone();
        async move {
            job_status(&db, populate_target::QUEUE, r#""target_id":3"#)
                .await
                .is_some_and(|job| job.status == "Failed" || job.status == "Killed")
        }
    })
    .await;

    let (status, metrics) = http_get(port, "/metrics").expect("/metrics");
    assert_eq!(status, 200);
    for series in [
        r#"snapline_jobs_started_total{queue="populate_target"} 3"#,
        r#"snapline_jobs_succeeded_total{queue="populate_target"} 1"#,
        r#"snapline_jobs_failed_total{queue="populate_target",reason="permanent"} 1"#,
        r#"snapline_jobs_failed_total{queue="populate_target",reason="exhausted"} 1"#,
        r#"snapline_job_duration_seconds_bucket{queue="populate_target",outcome="succeeded",le="+Inf"} 1"#,
        r#"snapline_rows_written_total{table="target_populations",kind="inserted"}"#,
        r#"snapline_null_snapshots{table="offers"}"#,
        r#"snapline_null_snapshots{table="target_populations"}"#,
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }

    served.signal("TERM");
    assert_eq!(served.wait_exit(Duration::from_secs(20)), Some(0));
}

/// A database that still answers but lost its queue tables (recreated empty under a running
/// process) makes `/readyz` fail, naming the table, for as long as the workers cannot poll;
/// once the tables are back the restarted workers run jobs again and it is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_the_workers_cannot_poll() {
    let test = seeded(500).await;
    let port = free_port();
    let mut served = Served::start(
        POPULATOR,
        &test.url,
        &[(
            "SNAPLINE_SERVE__POPULATOR_HTTP",
            format!("127.0.0.1:{port}"),
        )],
    );
    let ready = |port| http_get(port, "/readyz").is_some_and(|(status, _)| status == 200);
    wait_for("/readyz answers 200", || async move { ready(port) }).await;

    snapline_tests::execute(&test.db, "ALTER SCHEMA apalis RENAME TO apalis_away").await;
    wait_for("/readyz answers 503", || async move {
        http_get(port, "/readyz").is_some_and(|(status, body)| {
            status == 503 && body.contains("not ready") && body.contains("apalis.jobs")
        })
    })
    .await;
    // Not ready for as long as the tables are gone, not only until the next restart.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!ready(port), "ready while the workers cannot poll");
    }

    snapline_tests::execute(&test.db, "ALTER SCHEMA apalis_away RENAME TO apalis").await;
    wait_for("/readyz answers 200 again", || async move { ready(port) }).await;
    populate_target::enqueue(&test.db, TargetId(1))
        .await
        .unwrap();
    wait_for_job(&test, r#""target_id":1"#, "Done").await;
    assert_population_exact(&test.db, TargetId(1)).await;
    // The job was run by a restarted worker, under its new name (`#index.restarts`): jobs
    // that an old name held are never mistaken for the new one's.
    let by_restarted = snapline_tests::scalar(
        &test.db,
        "SELECT COUNT(*) FROM apalis.jobs WHERE status = 'Done' AND lock_by ~ '#[0-9]+\\.[0-9]+$'",
    )
    .await;
    assert_eq!(by_restarted, 1, "done by a worker with a restart name");

    served.signal("TERM");
    assert_eq!(served.wait_exit(Duration::from_secs(20)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_job_lets_it_finish_and_loses_nothing() {
    let test = seeded(20_000).await;
    let mut served = Served::start(
        POPULATOR,
        &test.url,
        &[
            ("SNAPLINE_POPULATOR__BATCH_SIZE", "100".into()),
            ("SNAPLINE_SERVE__SHUTDOWN_GRACE_SECS", "120".into()),
            ("SNAPLINE_QUEUES__POPULATE_TARGET__CONCURRENCY", "1".into()),
        ],
    );
    populate_target::enqueue(&test.db, TargetId(1))
        .await
        .unwrap();
    wait_until_populating(&test.db, TargetId(1)).await;
    // Three more wait behind the running one; SIGTERM stops the intake: none is started.
    for target in 2..=4 {
        populate_target::enqueue(&test.db, TargetId(target))
            .await
            .unwrap();
    }
    served.signal("TERM");
    assert_eq!(
        served.wait_exit(Duration::from_secs(120)),
        Some(0),
        "a clean exit after the running job"
    );
    let job = job_status(&test.db, populate_target::QUEUE, r#""target_id":1"#)
        .await
        .expect("the job");
    assert_eq!(job.status, "Done", "the running job finished: {job:?}");
    assert_eq!(
        snapline_tests::target_status(&test.db, TargetId(1)).await,
        Some(PopulationStatus::Populated)
    );
    assert_population_exact(&test.db, TargetId(1)).await;
    for target in 2..=4 {
        let waiting = job_status(
            &test.db,
            populate_target::QUEUE,
            &format!(r#""target_id":{target}"#),
        )
        .await
        .expect("the waiting job");
        assert_eq!(
            (waiting.status.as_str(), waiting.attempts),
            ("Pending", 0),
            "not taken after SIGTERM: {waiting:?}"
        );
        // Marked populating by its push, but never started: no run took its lease.
        assert_eq!(
            test.db
                .leases()
                .holder(&format!("populate_target:{target}"))
                .await
                .unwrap(),
            None
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_job_is_finished_by_another() {
    let test = seeded(20_000).await;
    let env = [
        ("SNAPLINE_POPULATOR__BATCH_SIZE", "100".to_owned()),
        // the killed run's lease on the target expires quickly
        ("SNAPLINE_POPULATOR__LEASE_TTL_SECS", "2".to_owned()),
    ];
    let mut first = Served::start(POPULATOR, &test.url, &env);
    populate_target::enqueue(&test.db, TargetId(1))
        .await
        .unwrap();
    wait_until_populating(&test.db, TargetId(1)).await;
    first.signal("KILL");
    assert_eq!(first.wait_exit(Duration::from_secs(10)), None);
    let job = job_status(&test.db, populate_target::QUEUE, r#""target_id":1"#)
        .await
        .expect("the job");
    assert!(
        job.status == "Queued" || job.status == "Running",
        "taken and left behind by the killed replica: {job:?}"
    );

    let _second = Served::start(POPULATOR, &test.url, &env);
    wait_for_job(&test, r#""target_id":1"#, "Done").await;
    assert_eq!(
        snapline_tests::target_status(&test.db, TargetId(1)).await,
        Some(PopulationStatus::Populated)
    );
    assert_population_exact(&test.db, TargetId(1)).await;
}

//! The job runtime shared by every queue, through real apalis workers on both backends:
//! a transient failure is retried with backoff and then succeeds, and the job metrics say so.

use domain::{PopulationStatus, TargetId};
use jobs::populate_target::{self, PopulateOptions, PopulatorContext};
use jobs::worker::WorkerOptions;
use snapline_tests::{
    Backend, TestDb, assert_population_exact, both_backends, job_status, wait_for,
};
use std::time::Duration;
use synth::SeedOptions;

async fn a_transient_failure_is_retried_then_succeeds(backend: Backend) {
    let metrics = ops::prometheus().expect("recorder");
    let test = TestDb::seeded(
        backend,
        &SeedOptions {
            me_files: 1_000,
            targets: 6,
            legacy_share: 0.0,
            ..SeedOptions::default()
        },
    )
    .await;
    let db = test.db.clone();
    // Another populate of target 1 holds its lease: ours waits, gives up (transient), retries.
    let lease = "populate_target:1";
    assert!(
        db.leases()
            .try_acquire(lease, "another-run", Duration::from_secs(60))
            .await
            .unwrap()
    );
    populate_target::enqueue(&db, TargetId(1)).await.unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ctx = PopulatorContext {
        db: db.clone(),
        options: PopulateOptions {
            lock_wait: Duration::from_millis(200),
            ..PopulateOptions::default()
        },
    };
    let options = WorkerOptions {
        max_attempts: 25,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ..WorkerOptions::new("retry-test-worker")
    };
    let worker = tokio::spawn(async move {
        populate_target::serve(ctx, &options, async move {
            let _ = stopped.await;
        })
        .await
    });

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let waiting = job_status(&db, populate_target::QUEUE, r#""target_id":1"#)
        .await
        .expect("job");
    assert_ne!(
        waiting.status, "Done",
        "cannot finish while the lease is held"
    );
    assert_ne!(
        waiting.status, "Killed",
        "a held lease is not permanent: {waiting:?}"
    );
    db.leases().release(lease, "another-run").await.unwrap();

    wait_for("the retried job to succeed", || {
        let db = db.clone();
        async move {
            job_status(&db, populate_target::QUEUE, r#""target_id":1"#)
                .await
                .is_some_and(|job| job.status == "Done")
        }
    })
    .await;
    stop.send(()).unwrap();
    worker.await.unwrap().expect("worker stops cleanly");

    let row = db.targets().find(TargetId(1)).await.unwrap().unwrap();
    assert_eq!(row.status, Some(PopulationStatus::Populated));
    assert_population_exact(&db, TargetId(1)).await;
    let rendered = metrics.render();
    let retried = rendered
        .lines()
        .find(|l| l.starts_with(r#"snapline_jobs_retried_total{queue="populate_target"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(retried >= 2.0, "retries recorded: {retried}\n{rendered}");
}

both_backends! {
    transient_retried => a_transient_failure_is_retried_then_succeeds;
}

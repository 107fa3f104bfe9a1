//! The job runtime shared by every queue, through real apalis workers on both backends:
//! a transient failure is retried with backoff and then succeeds, and the job metrics say so;
//! finished jobs are pruned after the retention.

use domain::{PopulationStatus, TargetId};
use jobs::populate_target::{self, PopulateOptions, PopulatorContext};
use jobs::worker::WorkerOptions;
use snapline_tests::{
    Backend, InProcessWorker, TestDb, assert_population_exact, both_backends, execute, job_status,
    wait_for,
};
use std::time::Duration;
use synth::SeedOptions;

/// The recorder is process-wide and both backends' tests run in this process: they take
/// turns, so each sees only its own job's counts.
static ONE_METRICS_TEST_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const RETRIED: &str = r#"snapline_jobs_retried_total{queue="populate_target"}"#;
const INTERRUPTED: &str =
    r#"snapline_jobs_failed_total{queue="populate_target",reason="interrupted"}"#;

/// The value of one series in the recorder's current text (0 when absent).
fn count(metrics: &impl Fn() -> String, series: &str) -> f64 {
    snapline_tests::metric_value(&metrics(), series)
}

/// Holds target 1's lease (another populate "runs"), pushes its populate and serves it with
/// `worker` and `lock_wait` for `hold`: the job must neither finish nor be given up while the
/// lease is held. Then frees the lease, waits for the job to succeed and checks the rows;
/// returns the finished job.
async fn populate_behind_a_held_lease(
    backend: Backend,
    me_files: u64,
    lock_wait: Duration,
    worker: WorkerOptions,
    hold: Duration,
) -> repo::QueueJob {
    let test = TestDb::seeded(
        backend,
        &SeedOptions::sized(me_files, 6).with_legacy_share(0.0),
    )
    .await;
    let db = test.db.clone();
    let lease = "populate_target:1";
    assert!(
        db.leases()
            .try_acquire(lease, "another-run", Duration::from_secs(60))
            .await
            .unwrap()
    );
    populate_target::enqueue(&db, TargetId(1)).await.unwrap();
    let ctx = PopulatorContext {
        db: db.clone(),
        options: PopulateOptions {
            lock_wait,
            ..PopulateOptions::default()
        },
    };
    let serving = InProcessWorker::start(move |stopped| async move {
        populate_target::serve(ctx, &worker, stopped).await
    });

    tokio::time::sleep(hold).await;
    let waiting = job_status(&db, populate_target::QUEUE, r#""target_id":1"#)
        .await
        .expect("job");
    assert_ne!(
        waiting.status, "Done",
        "cannot finish while the lease is held"
    );
    assert_ne!(
        waiting.status, "Killed",
        "a held lease (or a timeout waiting for it) is retried, not permanent: {waiting:?}"
    );
    db.leases().release(lease, "another-run").await.unwrap();

    wait_for("the job to succeed once the lease is free", || {
        let db = db.clone();
        async move {
            job_status(&db, populate_target::QUEUE, r#""target_id":1"#)
                .await
                .is_some_and(|job| job.status == "Done")
        }
    })
    .await;
    serving.stop().await;

    let row = db.targets().find(TargetId(1)).await.unwrap().unwrap();
    assert_eq!(row.status, Some(PopulationStatus::Populated));
    assert_population_exact(&db, TargetId(1)).await;
    job_status(&db, populate_target::QUEUE, r#""target_id":1"#)
        .await
        .expect("job")
}

/// A held lease makes the populate wait, give up (transient) and be retried with backoff.
async fn a_transient_failure_is_retried_then_succeeds(backend: Backend) {
    let _turn = ONE_METRICS_TEST_AT_A_TIME.lock().await;
    let recorder = ops::prometheus().expect("recorder");
    let metrics = || recorder.render();
    let retried_before = count(&metrics, RETRIED);
    let job = populate_behind_a_held_lease(
        backend,
        1_000,
        Duration::from_millis(200),
        WorkerOptions {
            max_attempts: 25,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            ..WorkerOptions::new("retry-test-worker")
        },
        Duration::from_millis(1_500),
    )
    .await;
    assert!(job.attempts >= 3, "retried at least twice: {job:?}");
    assert_eq!(
        count(&metrics, RETRIED) - retried_before,
        (job.attempts - 1) as f64,
        "one retry counted per failed attempt of this job: {job:?}"
    );
}

/// An attempt running past the queue's timeout (here a populate waiting for a lease another
/// run holds) is cut off, counted as `interrupted`, and retried; once the lease is free the
/// job succeeds.
async fn an_attempt_past_its_timeout_is_cut_off_and_retried(backend: Backend) {
    let _turn = ONE_METRICS_TEST_AT_A_TIME.lock().await;
    let recorder = ops::prometheus().expect("recorder");
    let metrics = || recorder.render();
    let interrupted_before = count(&metrics, INTERRUPTED);
    let job = populate_behind_a_held_lease(
        backend,
        300,
        // Longer than the timeout: only the timeout can end an attempt.
        Duration::from_secs(60),
        WorkerOptions {
            // The attempt after the lease's release must populate within it: 1 s was too
            // little for 300 me_files on SQLite on a loaded machine (docs/benchmarks.md).
            timeout: Duration::from_secs(2),
            max_attempts: 25,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(100),
            ..WorkerOptions::new("timeout-test-worker")
        },
        // Room for two two-second attempts, each cut off while it waits for the lease.
        Duration::from_millis(4_600),
    )
    .await;
    assert!(job.attempts >= 3, "cut off at least twice: {job:?}");
    assert_eq!(
        count(&metrics, INTERRUPTED) - interrupted_before,
        (job.attempts - 1) as f64,
        "each cut-off attempt counted as interrupted: {job:?}"
    );
}

/// Sets the status, attempts and finish time (`days_ago`) of the job of target `target`.
async fn mark(test: &TestDb, target: i64, status: &str, attempts: i64, days_ago: i64) {
    let (table, done_at) = match test.backend {
        Backend::Postgres => (
            "apalis.jobs",
            format!("now() - make_interval(days => {days_ago})"),
        ),
        Backend::Sqlite => (
            "Jobs",
            format!("CAST(strftime('%s', 'now') AS INTEGER) - {days_ago} * 86400"),
        ),
    };
    let payload = match test.backend {
        Backend::Postgres => "convert_from(job, 'UTF8')",
        Backend::Sqlite => "CAST(job AS TEXT)",
    };
    let updated = execute(
        &test.db,
        &format!(
            "UPDATE {table} SET status = '{status}', attempts = {attempts}, done_at = {done_at} \
             WHERE {payload} = '{{\"target_id\":{target}}}'"
        ),
    )
    .await;
    assert_eq!(updated, 1);
}

async fn finished_jobs_are_pruned_after_the_retention(backend: Backend) {
    let test = TestDb::seeded(backend, &SeedOptions::sized(10, 6)).await;
    for target in 1..=6 {
        populate_target::enqueue(&test.db, TargetId(target))
            .await
            .unwrap();
    }
    mark(&test, 1, "Done", 1, 8).await; // pruned
    mark(&test, 2, "Done", 1, 2).await; // kept: within the retention
    mark(&test, 3, "Killed", 1, 30).await; // pruned
    mark(&test, 4, "Failed", 2, 30).await; // kept: attempts left, it will run again
    mark(&test, 5, "Failed", 5, 30).await; // pruned: no attempt left
    // 6 stays Pending: kept

    let deleted = test
        .db
        .queue_jobs()
        .prune_finished(7 * 86_400)
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    let left: Vec<String> = test
        .db
        .queue_jobs()
        .of_queue(populate_target::QUEUE)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.payload)
        .collect();
    let mut left_targets: Vec<String> = left
        .iter()
        .map(|p| {
            p.trim_start_matches(r#"{"target_id":"#)
                .trim_end_matches('}')
                .to_owned()
        })
        .collect();
    left_targets.sort();
    assert_eq!(left_targets, ["2", "4", "6"], "{left:?}");
    assert_eq!(
        test.db
            .queue_jobs()
            .prune_finished(7 * 86_400)
            .await
            .unwrap(),
        0,
        "pruning again deletes nothing"
    );
}

both_backends! {
    transient_retried => a_transient_failure_is_retried_then_succeeds;
    timeout => an_attempt_past_its_timeout_is_cut_off_and_retried;
    pruning => finished_jobs_are_pruned_after_the_retention;
}

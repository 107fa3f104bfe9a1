//! `snapctl status` on a database whose queue holds a permanently failed job, on both
//! backends: the failure is visible with its error, and `--json` parses.

use domain::TargetId;
use jobs::populate_target::{self, PopulatorContext};
use jobs::worker::WorkerOptions;
use snapline_tests::cli;
use snapline_tests::{
    Backend, InProcessWorker, TestDb, both_backends, execute, job_status, wait_for,
};
use synth::SeedOptions;

fn snapctl_status(url: &str, json: bool) -> String {
    let args: &[&str] = if json {
        &["status", "--json"]
    } else {
        &["status"]
    };
    let out = cli::run(
        env!("CARGO_BIN_EXE_snapctl"),
        &std::env::temp_dir(),
        args,
        &[("SNAPLINE_PROFILE", "test"), ("DATABASE_URL", url)],
    );
    assert!(out.status.success(), "{}", cli::text(&out.stderr));
    cli::text(&out.stdout)
}

async fn a_permanent_failure_shows_in_status(backend: Backend) {
    let test = TestDb::seeded(backend, &SeedOptions::sized(500, 6).with_legacy_share(0.1)).await;
    let db = test.db.clone();
    // A job whose target the platform deleted after the push.
    populate_target::enqueue(&db, TargetId(5)).await.unwrap();
    execute(&db, "DELETE FROM targets WHERE id = 5").await;
    let ctx = PopulatorContext {
        db: db.clone(),
        options: Default::default(),
    };
    let worker = InProcessWorker::start(move |stopped| async move {
        populate_target::serve(ctx, &WorkerOptions::new("status-test"), stopped).await
    });
    wait_for("the unknown target's job to be killed", || {
        let db = db.clone();
        async move {
            job_status(&db, populate_target::QUEUE, r#""target_id":5"#)
                .await
                .is_some_and(|job| job.status == "Killed")
        }
    })
    .await;
    worker.stop().await;
    populate_target::enqueue(&db, TargetId(1)).await.unwrap();

    let report: serde_json::Value =
        serde_json::from_str(&snapctl_status(&test.url, true)).expect("status --json parses");
    let queue = report["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "populate_target")
        .expect("the populate_target queue");
    assert_eq!(queue["killed"], 1, "{queue}");
    assert_eq!(queue["waiting"], 1, "{queue}");
    assert!(queue["oldest_waiting_secs"].as_f64().is_some(), "{queue}");
    let killed = report["recent_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "Killed")
        .expect("the killed run is listed");
    assert_eq!(killed["attempts"], 1, "not retried: {killed}");
    assert!(
        killed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("target 5 does not exist"),
        "{killed}"
    );
    assert!(report["null_snapshots"]["offers"].as_i64().unwrap() > 0);
    let populated: i64 = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["targets"].as_i64().unwrap())
        .sum();
    assert_eq!(populated, 5, "every target counted by status: {report}");

    let human = snapctl_status(&test.url, false);
    for needle in [
        "NULL snapshots",
        "populate_target",
        "Killed",
        "target 5 does not exist",
    ] {
        assert!(human.contains(needle), "{needle} in:\n{human}");
    }
}

both_backends! {
    permanent_failure_in_status => a_permanent_failure_shows_in_status;
}

//! `populate_target` jobs through a real apalis worker and storage, on both backends.

use domain::{PopulationStatus, TargetId};
use jobs::populate_target::{self, PopulateOptions, PopulatorContext};
use jobs::worker::WorkerOptions;
use snapline_tests::{
    Backend, InProcessWorker, TestDb, assert_population_exact, both_backends, execute, wait_for,
};
use synth::SeedOptions;

async fn jobs_run_through_a_worker(backend: Backend) {
    let test = TestDb::seeded(
        backend,
        &SeedOptions::sized(2_000, 6).with_legacy_share(0.1),
    )
    .await;
    let db = test.db.clone();
    populate_target::enqueue(&db, TargetId(1)).await.unwrap();
    populate_target::enqueue(&db, TargetId(2)).await.unwrap();
    // The push marks the target populating, so the platform's offer creation waits.
    assert_eq!(
        snapline_tests::target_status(&db, TargetId(1)).await,
        Some(PopulationStatus::Populating)
    );
    // A job pushed for a target that the platform deletes before it runs.
    populate_target::enqueue(&db, TargetId(5)).await.unwrap();
    execute(&db, "DELETE FROM targets WHERE id = 5").await;
    assert_eq!(
        populate_target::enqueue(&db, TargetId(5))
            .await
            .expect_err("an unknown target is refused at the door")
            .to_string(),
        "target 5 does not exist"
    );

    let ctx = PopulatorContext {
        db: db.clone(),
        options: PopulateOptions {
            batch_size: 300,
            ..PopulateOptions::default()
        },
    };
    let options = WorkerOptions {
        concurrency: 2,
        ..WorkerOptions::new("populate-test-worker")
    };
    let worker = InProcessWorker::start(move |stopped| async move {
        populate_target::serve(ctx, &options, stopped).await
    });

    wait_for(
        "both targets populated and the unknown one given up",
        || {
            let db = db.clone();
            async move {
                let jobs = db
                    .queue_jobs()
                    .of_queue(populate_target::QUEUE)
                    .await
                    .unwrap();
                jobs.len() == 3
                    && jobs
                        .iter()
                        .all(|j| j.status == "Done" || j.status == "Killed")
            }
        },
    )
    .await;
    worker.stop().await;

    for target in [1, 2] {
        let row = db.targets().find(TargetId(target)).await.unwrap().unwrap();
        assert_eq!(row.status, Some(PopulationStatus::Populated));
        assert_population_exact(&db, TargetId(target)).await;
    }
    let jobs = db
        .queue_jobs()
        .of_queue(populate_target::QUEUE)
        .await
        .unwrap();
    let unknown = jobs
        .iter()
        .find(|j| j.payload.contains(r#""target_id":5"#))
        .expect("the unknown target's job is kept");
    assert_eq!(unknown.status, "Killed", "{unknown:?}");
    assert_eq!(
        unknown.attempts, 1,
        "a permanent failure is not retried: {unknown:?}"
    );
    assert!(
        unknown
            .last_result
            .as_deref()
            .unwrap_or("")
            .contains("target 5 does not exist"),
        "{unknown:?}"
    );
    assert_eq!(jobs.iter().filter(|j| j.status == "Done").count(), 2);
}

both_backends! {
    worker_runs_populate_jobs => jobs_run_through_a_worker;
}

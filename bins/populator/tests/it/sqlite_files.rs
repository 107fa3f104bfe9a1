//! The embedded SQLite file in bad states: opened read-only, and locked by another process.
//! `populator run` must fail with a clear error and leave the data untouched, and succeed
//! once the file is usable again.

use snapline_tests::{Backend, TestDb, cli, scalar};
use std::process::Output;
use synth::SeedOptions;

fn populator(url: &str, args: &[&str]) -> Output {
    cli::run(
        env!("CARGO_BIN_EXE_populator"),
        &std::env::temp_dir(),
        args,
        &[("SNAPLINE_PROFILE", "test"), ("DATABASE_URL", url)],
    )
}

async fn seeded_file() -> TestDb {
    TestDb::seeded(
        Backend::Sqlite,
        &SeedOptions::sized(500, 6).with_legacy_share(0.0),
    )
    .await
}

async fn populations(test: &TestDb) -> i64 {
    scalar(&test.db, "SELECT COUNT(*) FROM target_populations").await
}

/// After a refused run: no row was written, and on the usable file the same run succeeds.
async fn nothing_written_then_a_usable_file_works(test: &TestDb) {
    assert_eq!(populations(test).await, 0, "nothing written");
    let out = populator(&test.url, &["run", "--target", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(populations(test).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_file_is_a_clear_error_and_nothing_changes() {
    let test = seeded_file().await;
    let out = populator(&format!("{}?mode=ro", test.url), &["run", "--target", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("readonly"), "names the cause: {stderr}");
    nothing_written_then_a_usable_file_works(&test).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_file_is_a_clear_error_after_waiting_and_nothing_changes() {
    let test = seeded_file().await;
    // Another process holds the write lock (an exclusive transaction) for the whole run.
    let holder = test.db.begin_write().await.unwrap();
    let url = test.url.clone();
    let out = tokio::task::spawn_blocking(move || populator(&url, &["run", "--target", "1"]))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("locked"), "names the cause: {stderr}");
    drop(holder);
    nothing_written_then_a_usable_file_works(&test).await;
}

#[tokio::test]
async fn enqueue_pushes_a_job_for_a_target_that_exists() {
    let test = seeded_file().await;
    let out = populator(&test.url, &["enqueue", "--target", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("enqueued populate_target for target 1"));
    assert_eq!(
        scalar(
            &test.db,
            "SELECT COUNT(*) FROM Jobs WHERE job_type = 'populate_target'"
        )
        .await,
        1
    );
}

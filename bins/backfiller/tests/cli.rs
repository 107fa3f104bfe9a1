//! `backfiller` as a user runs it.

use snapline_tests::cli;
use std::process::Output;

fn backfiller(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    cli::run(env!("CARGO_BIN_EXE_backfiller"), dir, args, env)
}

fn stdout(out: &Output) -> String {
    cli::text(&out.stdout)
}

#[test]
fn a_clean_database_reports_nothing_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = backfiller(dir.path(), &["run"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("0 target_populations, 0 offers, 0 ad_events fixed"),
        "{}",
        stdout(&out)
    );
    let dry = backfiller(dir.path(), &["run", "--dry-run", "--batch-size", "10"], &[]);
    assert!(
        stdout(&dry).starts_with("dry run, would fix:"),
        "{}",
        stdout(&dry)
    );
}

#[test]
fn run_json_prints_the_report_as_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let out = backfiller(dir.path(), &["run", "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["found"], serde_json::json!([0, 0, 0]));
    for fixed in [
        "populations_fixed",
        "offers_fixed",
        "ad_events_fixed",
        "unfixable",
    ] {
        assert_eq!(report[fixed], 0, "{fixed} in {report}");
    }
    assert!(report["elapsed_ms"].is_u64(), "{report}");
}

#[test]
fn band_and_target_together_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = backfiller(dir.path(), &["run", "--band", "1", "--target", "2"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unknown_target_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = backfiller(dir.path(), &["run", "--target", "777"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("target 777 does not exist"));
}

#[test]
fn an_unknown_band_exits_2_for_run_and_enqueue() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        ["run", "--band", "2147483648"],
        ["enqueue", "--band", "2147483648"],
    ] {
        let out = backfiller(dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("band 2147483648 does not exist"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_bad_schedule_exits_2_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = backfiller(
        dir.path(),
        &["serve"],
        &[("SNAPLINE_BACKFILLER__SCHEDULE", "every hour")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("every hour"));
}

#[test]
fn enqueue_says_how_many_jobs_it_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let out = backfiller(dir.path(), &["enqueue"], &[]);
    assert!(
        stdout(&out).contains("enqueued 1 backfill job(s) on queue backfill"),
        "{}",
        stdout(&out)
    );
    let all = backfiller(dir.path(), &["enqueue", "--all"], &[]);
    assert!(
        stdout(&all).contains("enqueued 0 backfill job(s)"),
        "{}",
        stdout(&all)
    );
}

#[test]
fn a_zero_batch_size_exits_2_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = backfiller(dir.path(), &["run", "--batch-size", "0"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--batch-size"), "{stderr}");
    assert!(!dir.path().join("snapline.db").exists(), "nothing created");
}

//! `syncer` as a user runs it.

use snapline_tests::cli;
use std::process::Output;

fn syncer(dir: &std::path::Path, args: &[&str]) -> Output {
    cli::run(env!("CARGO_BIN_EXE_syncer"), dir, args, &[])
}

#[test]
fn help_lists_the_commands_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    let text = String::from_utf8_lossy(&syncer(dir.path(), &["--help"]).stdout).into_owned();
    for command in ["serve", "enqueue", "run"] {
        assert!(text.contains(command), "{text}");
    }
    let run = syncer(dir.path(), &["enqueue", "--help"]);
    assert!(
        String::from_utf8_lossy(&run.stdout).contains("Example: syncer enqueue --me-file 1234")
    );
}

#[test]
fn enqueue_twice_adds_one_job_and_run_of_an_unknown_me_file_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let first = syncer(dir.path(), &["enqueue", "--me-file", "9"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("enqueued sync_me_file for me_file 9"));
    let second = syncer(dir.path(), &["enqueue", "--me-file", "9"]);
    assert!(String::from_utf8_lossy(&second.stdout).contains("already waiting"));

    let run = syncer(dir.path(), &["run", "--me-file", "9"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("me_file 9 (no longer exists)"));
}

#[test]
fn a_non_numeric_id_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        syncer(dir.path(), &["run", "--me-file", "abc"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn a_me_file_id_that_cannot_exist_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = syncer(dir.path(), &["enqueue", "--me-file", "-42"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--me-file"));
}

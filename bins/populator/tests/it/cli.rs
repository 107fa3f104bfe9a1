//! `populator` as a user runs it: help, exit codes, messages.

use snapline_tests::cli;
use std::process::Output;

fn populator(dir: &std::path::Path, args: &[&str]) -> Output {
    cli::run(env!("CARGO_BIN_EXE_populator"), dir, args, &[])
}

#[test]
fn help_explains_each_command_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    let out = populator(dir.path(), &["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "enqueue", "run"] {
        assert!(text.contains(command), "{text}");
    }
    let run = populator(dir.path(), &["run", "--help"]);
    assert!(String::from_utf8_lossy(&run.stdout).contains("Example: populator run --target 42"));
}

#[test]
fn an_unknown_target_exits_2_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = populator(dir.path(), &["run", "--target", "4242"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("target 4242 does not exist"), "{stderr}");
}

#[test]
fn a_missing_argument_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = populator(dir.path(), &["run"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn enqueue_refuses_an_unknown_target_like_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = populator(dir.path(), &["enqueue", "--target", "7"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("target 7 does not exist"), "{stderr}");
}

#[test]
fn ids_that_cannot_exist_exit_2_before_any_work() {
    for args in [
        ["enqueue", "--target", "-5"],
        ["enqueue", "--target", "0"],
        ["run", "--target", "0"],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = populator(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--target"), "{stderr}");
        assert!(
            !dir.path().join("snapline.db").exists(),
            "{args:?}: nothing created"
        );
    }
}

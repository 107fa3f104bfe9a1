//! `snapctl` as a user runs it: exit codes and messages.

use snapline_tests::cli::{self, text};
use std::process::Output;

fn snapctl(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    cli::run(env!("CARGO_BIN_EXE_snapctl"), dir, args, env)
}

#[test]
fn a_config_typo_exits_2_naming_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[database]\nmax_conections = 3\n",
    )
    .unwrap();
    let out = snapctl(dir.path(), &["--config", "bad.toml", "seed"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("max_conections") && stderr.contains("bad.toml"),
        "{stderr}"
    );
}

#[test]
fn production_without_database_url_exits_2_and_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = snapctl(dir.path(), &["seed"], &[("SNAPLINE_PROFILE", "production")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("DATABASE_URL"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn seeding_twice_is_refused_with_exit_2_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("seed.db").display());
    let env = [("DATABASE_URL", url.as_str())];
    let first = snapctl(dir.path(), &["seed", "--me-files", "500"], &env);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stdout).contains("seeded 500 me_files"),
        "{}",
        text(&first.stdout)
    );

    let second = snapctl(dir.path(), &["seed", "--me-files", "500"], &env);
    assert_eq!(second.status.code(), Some(2));
    assert!(
        text(&second.stderr).contains("already holds data"),
        "{}",
        text(&second.stderr)
    );
}

#[test]
fn an_unreachable_database_exits_1_with_the_url_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = snapctl(
        dir.path(),
        &["seed"],
        &[
            ("DATABASE_URL", "postgres://app:hunter2@127.0.0.1:1/none"),
            ("SNAPLINE_DATABASE__ACQUIRE_TIMEOUT_SECS", "2"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn demo_runs_on_a_fresh_directory_without_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = snapctl(dir.path(), &["demo", "--me-files", "2000"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("seeded 2000 me_files"), "{stdout}");
    assert!(stdout.contains("2000 me_files"), "{stdout}");
    assert!(dir.path().join("snapline-demo.db").exists());
}

#[test]
fn demo_with_no_me_files_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let url = format!("sqlite://{}", db.display());
    let out = snapctl(
        dir.path(),
        &["demo", "--me-files", "0", "--database", &url],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--me-files"));
    assert!(!db.exists(), "nothing migrated or seeded");
}

#[test]
fn capture_and_guard_on_sqlite_exit_2_saying_they_need_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    for (args, what) in [
        (["capture", "enable"], "change capture needs PostgreSQL"),
        (["guard", "status"], "the NOT NULL guard needs PostgreSQL"),
    ] {
        let out = snapctl(dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(what), "{args:?}: {stderr}");
    }
}

/// README's layout table names every crate of the workspace and every `snapctl` command its
/// `--help` lists (a crate or command added without a word there fails here).
#[test]
fn the_readme_layout_names_every_crate_and_command() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .split("members = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("workspace members");
    for member in members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
    {
        let named =
            readme.contains(&format!("`{member}`")) || readme.contains(&format!("`{member}/`"));
        assert!(named, "README's layout does not name {member}");
    }
    let dir = tempfile::tempdir().unwrap();
    let help = text(&snapctl(dir.path(), &["--help"], &[]).stdout);
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("Options:").next())
        .expect("a command list")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|command| *command != "help")
        .collect();
    assert!(commands.len() >= 12, "{commands:?}");
    let row = readme
        .lines()
        .find(|line| line.starts_with("| `bins/snapctl`"))
        .expect("the layout's snapctl row");
    for command in commands {
        assert!(
            row.contains(&format!("`{command}`")),
            "README's snapctl row does not name `{command}`: {row}"
        );
    }
}

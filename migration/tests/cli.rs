//! `migration` as the release pipeline and an operator run it. (Its integration tests also
//! make `cargo test --workspace` build the binary, which the end-to-end tests run.)

use std::process::Command;

fn migration(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_migration"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_SCHEMA")
        .output()
        .expect("migration runs")
}

#[test]
fn without_a_database_it_exits_2_and_says_what_to_set() {
    let out = migration(&["up"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[test]
fn help_names_the_loud_flag_of_fresh() {
    let out = migration(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "up",
        "down",
        "status",
        "fresh",
        "--drop-tables-snapline-did-not-create",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

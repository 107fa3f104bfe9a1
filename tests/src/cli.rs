//! Running a snapline binary as a user does, for the command-line tests of `bins/*`.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `binary` (`env!("CARGO_BIN_EXE_<name>")`) with `args` in `dir`, as a user would on
/// a fresh machine: the developer's `DATABASE_URL` and `SNAPLINE_PROFILE` removed, only
/// warnings logged, then `env` set.
pub fn run(binary: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("SNAPLINE_PROFILE")
        .env("RUST_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .output()
        .unwrap_or_else(|err| panic!("{binary} could not be started: {err}"))
}

/// A process's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

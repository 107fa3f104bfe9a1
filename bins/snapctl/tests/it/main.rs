//! `snapctl` as a user runs it, one test binary: the CLI's exit codes and messages, and
//! `status` on a queue holding a permanently failed job.

mod cli;
mod status;

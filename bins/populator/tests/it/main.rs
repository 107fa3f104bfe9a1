//! `populator` as users and operators run it, one test binary: the CLI, `serve` in a child
//! process, and the embedded SQLite file in bad states.

mod chunks;
mod cli;
mod serve;
mod sqlite_files;

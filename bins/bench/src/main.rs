//! `bench`: seeds a fresh PostgreSQL database, runs a snapline binary on it as a user would
//! (a child process, release build), times the same result computed by one set-based SQL
//! statement inside PostgreSQL, checks both agree row for row, and prints the figures.
//!
//! Example: cargo build --release -p bench -p populator &&
//!          target/release/bench populate --me-files 1000000

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod audit;
mod backfill;
mod board;
mod capture;
mod harness;
mod populate;
mod profile;
mod soak;
mod sync;

use audit::bench_audit;
use backfill::bench_backfill;
use board::bench_board;
use capture::{CaptureLoad, bench_bridge, bench_capture};
use populate::{PopulateBench, bench_populate};
use sync::{SyncLoad, TagEdit, bench_sync};

#[derive(Parser)]
#[command(name = "bench", about = "snapline benchmarks on PostgreSQL")]
struct Cli {
    /// A PostgreSQL server and role that may create databases (no database name).
    #[arg(
        long,
        env = "SNAPLINE_BENCH_PG",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    server: String,
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// `populator run` on the broad target (most me_files match its outer band) against one
    /// `INSERT ... SELECT`. Example: bench populate --me-files 100000 --me-files 1000000
    Populate {
        /// Data set sizes to measure, each in its own fresh database.
        #[arg(long, default_values_t = [100_000u64])]
        me_files: Vec<u64>,
        /// Me_files per populator batch (default: the configured populator.batch_size).
        #[arg(long)]
        batch_size: Option<u64>,
        /// The target to populate (1 is the broad nested target).
        #[arg(long, default_value_t = 1)]
        target: i64,
        /// Then populate it again from empty through the queue with this many `populator
        /// serve` processes sharing its chunks (repeatable: --replicas 1 --replicas 2).
        #[arg(long)]
        replicas: Vec<usize>,
        /// Me_files per chunk for those processes (default: populator.chunk_me_files).
        #[arg(long)]
        chunk_me_files: Option<u64>,
    },
    /// `backfiller run` (a child process) on legacy NULL snapshots in all three tables against
    /// the same backfill as set-based SQL on copies of the tables, plus `EXPLAIN` of the
    /// NULL-finding queries. Example: bench backfill --me-files 1000000
    Backfill {
        #[arg(long, default_value_t = 1_000_000)]
        me_files: u64,
        /// Rows per backfiller batch (default: backfiller.batch_size).
        #[arg(long)]
        batch_size: Option<u64>,
        /// Share of the broad target's members written as legacy rows (NULL population,
        /// offer and ad_event): 1 is every member, 0.02 the few-NULL shape of a healthy
        /// database.
        #[arg(long, default_value_t = 1.0)]
        legacy_share: f64,
    },
    /// `syncer serve` (a child process, configured concurrency) on populated targets: a burst
    /// of syncs pushed at once (throughput), then syncs pushed one by one at a steady rate with
    /// the plain-SQL push other services use (latency from push to commit).
    /// Example: bench sync --me-files 1000000 --targets 100 --syncs 10000
    Sync {
        #[arg(long, default_value_t = 1_000_000)]
        me_files: u64,
        /// Targets, all populated before the syncs.
        #[arg(long, default_value_t = 100)]
        targets: usize,
        /// Syncs of distinct random me_files in the burst.
        #[arg(long, default_value_t = 10_000)]
        syncs: usize,
        /// Syncs pushed one by one for the latency figures, and their rate per second.
        #[arg(long, default_value_t = 2_000)]
        paced: usize,
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Reuse the database of an earlier run (already seeded and populated).
        #[arg(long)]
        reuse: bool,
        /// What changed before each sync: one tag value shown in at least one of the
        /// me_file's snapshots (the usual event), or every tag value of the me_file.
        #[arg(long, value_enum, default_value_t = TagEdit::One)]
        edit: TagEdit,
        /// The syncer reaches the database through this transaction-mode pooler (PgBouncer's
        /// HOST:PORT, in front of the server), with database.pooler = "transaction"; the
        /// pushes and the SQL limit stay direct. Example: --through 127.0.0.1:6432
        #[arg(long)]
        through: Option<String>,
    },
    /// The cost of change capture to the platform's writers: single-row tag writes from
    /// several connections and one bulk update, with capture off and on; then, with capture
    /// on and `syncer serve` running, tag writes at a steady rate and the lag from each
    /// write's commit to its synced row. Example: bench capture --me-files 200000
    Capture {
        #[arg(long, default_value_t = 200_000)]
        me_files: u64,
        /// Connections writing at once, and single-row writes in all.
        #[arg(long, default_value_t = 8)]
        writers: usize,
        #[arg(long, default_value_t = 20_000)]
        writes: u64,
        /// Rows of the bulk update.
        #[arg(long, default_value_t = 100_000)]
        bulk: u64,
        /// Paced writes for the lag, and their rate per second.
        #[arg(long, default_value_t = 2_000)]
        paced: usize,
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Profile the single-row writes: statement times (pg_stat_statements, when the
        /// server preloads it) and the writers' wait events, for capture off and on.
        #[arg(long)]
        profile: bool,
    },
    /// A whole `snapctl audit` against populating every target with `populator run` (both
    /// release child processes), clean and with drift planted by plain SQL that it must
    /// count exactly. Example: bench audit --me-files 1000000 --targets 100
    Audit {
        #[arg(long, default_value_t = 1_000_000)]
        me_files: u64,
        #[arg(long, default_value_t = 100)]
        targets: usize,
        /// Reuse the database of an earlier run (already seeded and populated).
        #[arg(long)]
        reuse: bool,
    },
    /// Every page of `snapctl board` (a child process beside this one) timed over HTTP with
    /// a queue table of `finished` finished and `waiting` waiting jobs and a day of rolled-up
    /// minutes. Example: bench board --finished 1000000 --waiting 100000
    Board {
        #[arg(long, default_value_t = 1_000_000)]
        finished: u64,
        #[arg(long, default_value_t = 100_000)]
        waiting: u64,
    },
    /// The three services, two replicas each, under platform-shaped writes through capture
    /// while faults are injected (kill -9, sessions terminated, one PostgreSQL restart,
    /// queues paused); then the queues drain and `snapctl audit` must find zero drift and
    /// no NULL snapshot. Uses the binaries built beside this one (debug or release).
    /// Example: bench soak --minutes 30 --seed 7
    Soak {
        #[arg(long, default_value_t = 2.0)]
        minutes: f64,
        /// Fixes the fault schedule and the writers' choices (printed: replay with it).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 20_000)]
        me_files: u64,
        #[arg(long, default_value_t = 12)]
        targets: usize,
        #[arg(long, default_value_t = 50)]
        writes_per_sec: u64,
        /// Do not restart the local PostgreSQL server (when not allowed to).
        #[arg(long)]
        no_restart: bool,
    },
    /// The cost of the bridge to the platform's own Oban job inserts: sync jobs inserted as
    /// Oban writes them from several connections, with the bridge off and on.
    /// Example: bench bridge --me-files 50000 --inserts 20000
    Bridge {
        #[arg(long, default_value_t = 50_000)]
        me_files: u64,
        /// Connections inserting at once.
        #[arg(long, default_value_t = 8)]
        writers: usize,
        /// Oban job inserts in all, per run.
        #[arg(long, default_value_t = 20_000)]
        inserts: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    runtime::run_main(async move {
        match cli.command {
            Bench::Populate {
                me_files,
                batch_size,
                target,
                replicas,
                chunk_me_files,
            } => {
                let bench = PopulateBench {
                    batch_size,
                    target,
                    replicas,
                    chunk_me_files,
                };
                println!(
                    "| me_files | rows | populator | SQL INSERT ... SELECT | ratio | populator peak RSS |"
                );
                println!("|---:|---:|---:|---:|---:|---:|");
                for n in me_files {
                    bench_populate(&cli.server, n, &bench).await?;
                }
                Ok(())
            }
            Bench::Backfill {
                me_files,
                batch_size,
                legacy_share,
            } => bench_backfill(&cli.server, me_files, batch_size, legacy_share).await,
            Bench::Sync {
                me_files,
                targets,
                syncs,
                paced,
                rate,
                reuse,
                edit,
                through,
            } => {
                bench_sync(
                    &cli.server,
                    me_files,
                    targets,
                    SyncLoad {
                        syncs,
                        paced,
                        rate,
                        edit,
                        through,
                    },
                    reuse,
                )
                .await
            }
            Bench::Capture {
                me_files,
                writers,
                writes,
                bulk,
                paced,
                rate,
                profile,
            } => {
                bench_capture(
                    &cli.server,
                    me_files,
                    CaptureLoad {
                        writers,
                        writes,
                        bulk,
                        paced,
                        rate,
                        profile,
                    },
                )
                .await
            }
            Bench::Audit {
                me_files,
                targets,
                reuse,
            } => bench_audit(&cli.server, me_files, targets, reuse).await,
            Bench::Board { finished, waiting } => bench_board(&cli.server, finished, waiting).await,
            Bench::Soak {
                minutes,
                seed,
                me_files,
                targets,
                writes_per_sec,
                no_restart,
            } => {
                soak::soak(
                    &cli.server,
                    soak::SoakOptions {
                        minutes,
                        seed,
                        me_files,
                        targets,
                        writes_per_sec,
                        restart_postgres: !no_restart,
                    },
                )
                .await
            }
            Bench::Bridge {
                me_files,
                writers,
                inserts,
            } => bench_bridge(&cli.server, me_files, writers, inserts).await,
        }
    })
}

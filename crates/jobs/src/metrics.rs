//! The series snapline's jobs record through the `metrics` facade. A serving process installs
//! the Prometheus recorder (crate `ops`) and exposes them on `/metrics`; elsewhere (`run`,
//! tests) recording is a no-op.
//!
//! Names and labels are part of the operations guide (`docs/operations.md`, "Metrics"): change them there
//! too.

use std::time::Duration;

/// Attempts started, by `queue`.
pub const JOBS_STARTED: &str = "snapline_jobs_started_total";
/// Attempts that succeeded, by `queue`.
pub const JOBS_SUCCEEDED: &str = "snapline_jobs_succeeded_total";
/// Attempts that failed transiently with attempts left: the job runs again after a backoff.
pub const JOBS_RETRIED: &str = "snapline_jobs_retried_total";
/// Jobs that ended without success, by `queue` and `reason`: `permanent` (bad input, kept as
/// `Killed`), `exhausted` (transient failures until no attempt was left) or `interrupted`
/// (timeout or shutdown: the queue runs it again).
pub const JOBS_FAILED: &str = "snapline_jobs_failed_total";
/// Seconds per attempt, by `queue` and `outcome` (`succeeded`, `retried`, `failed`).
pub const JOB_DURATION: &str = "snapline_job_duration_seconds";
/// Rows written by snapline's jobs, by `table` and `kind` (`inserted`, `moved`, `refreshed`,
/// `deleted` populations; `snapshot_filled` by the backfill).
pub const ROWS_WRITTEN: &str = "snapline_rows_written_total";
/// Sync transactions, by `outcome`: `committed`, or `split` (a group of several me_files
/// that failed and was synced again one me_file per transaction).
pub const SYNC_TRANSACTIONS: &str = "snapline_sync_transactions_total";
/// Me_files synced by committed sync transactions: divided by the `committed`
/// [`SYNC_TRANSACTIONS`], the average group size.
pub const SYNC_TRANSACTION_ME_FILES: &str = "snapline_sync_transaction_me_files_total";
/// NULL snapshots per `table`, read from the partial indexes when `/metrics` is scraped.
pub const NULL_SNAPSHOTS: &str = "snapline_null_snapshots";

/// Targets whose last populate failed for good (left `not_populated`, why in
/// `snapctl status`), read when `/metrics` is scraped.
pub const POPULATE_FAILURES: &str = "snapline_populate_failures";

/// Rows of drift per `kind` found by the last audit of the whole database (scheduled or
/// `snapctl audit`), from `snapline_audits` when `/metrics` is scraped: every replica
/// reports the same. 0 when none was kept.
pub const DRIFT_ROWS: &str = "snapline_drift_rows";
/// When that audit finished (Unix seconds; 0 when none was kept).
pub const AUDIT_LAST_RUN: &str = "snapline_audit_last_run_timestamp_seconds";

/// Jobs of `queue` per `status` (`waiting`, `running`, `done`, `failed`, `killed`), read from
/// the queue table when `/metrics` is scraped.
pub const QUEUE_JOBS: &str = "snapline_queue_jobs";
/// Age in seconds of the oldest due job of `queue` still waiting; 0 when none waits.
pub const QUEUE_OLDEST_WAITING: &str = "snapline_queue_oldest_waiting_seconds";
/// When a `backfill` job last succeeded (Unix seconds; 0 when none is kept), from the queue
/// table, so every replica reports the same.
pub const BACKFILL_LAST_SUCCESS: &str = "snapline_backfill_last_success_timestamp_seconds";
/// The process's database pool: connections by `state` (`in_use`, `idle`).
pub const DB_POOL_CONNECTIONS: &str = "snapline_db_pool_connections";
/// The most connections the process's pool may open.
pub const DB_POOL_MAX_CONNECTIONS: &str = "snapline_db_pool_max_connections";
/// Always 1, labelled with the `version` running.
pub const BUILD_INFO: &str = "snapline_build_info";

/// 1 while an operator has paused `queue` (`snapctl queues pause`), 0 otherwise, as this
/// replica last read it.
pub const QUEUE_PAUSED: &str = "snapline_queue_paused";

/// The workers this replica runs for `queue`: its configured concurrency, or what an
/// operator set (`snapctl queues scale`).
pub const QUEUE_WORKERS: &str = "snapline_queue_workers";

/// Buckets of [`JOB_DURATION`], in seconds: syncs take milliseconds, populates minutes.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Retried,
    Failed(&'static str),
}

pub(crate) fn sync_transaction_committed(me_files: usize) {
    ::metrics::counter!(SYNC_TRANSACTIONS, "outcome" => "committed").increment(1);
    ::metrics::counter!(SYNC_TRANSACTION_ME_FILES).increment(me_files as u64);
}

pub(crate) fn sync_transaction_split() {
    ::metrics::counter!(SYNC_TRANSACTIONS, "outcome" => "split").increment(1);
}

pub(crate) fn job_started(queue: &'static str) {
    ::metrics::counter!(JOBS_STARTED, "queue" => queue).increment(1);
}

pub(crate) fn job_finished(queue: &'static str, outcome: Outcome, elapsed: Duration) {
    let label = match outcome {
        Outcome::Succeeded => {
            ::metrics::counter!(JOBS_SUCCEEDED, "queue" => queue).increment(1);
            "succeeded"
        }
        Outcome::Retried => {
            ::metrics::counter!(JOBS_RETRIED, "queue" => queue).increment(1);
            "retried"
        }
        Outcome::Failed(reason) => {
            ::metrics::counter!(JOBS_FAILED, "queue" => queue, "reason" => reason).increment(1);
            "failed"
        }
    };
    ::metrics::histogram!(JOB_DURATION, "queue" => queue, "outcome" => label)
        .record(elapsed.as_secs_f64());
}

/// Population rows a committed transaction changed.
pub(crate) fn populations_written(inserted: u64, moved: u64, refreshed: u64, deleted: u64) {
    for (kind, rows) in [
        ("inserted", inserted),
        ("moved", moved),
        ("refreshed", refreshed),
        ("deleted", deleted),
    ] {
        if rows > 0 {
            ::metrics::counter!(ROWS_WRITTEN, "table" => "target_populations", "kind" => kind)
                .increment(rows);
        }
    }
}

/// NULL snapshots a committed backfill batch filled in `table`.
pub(crate) fn snapshots_filled(table: &'static str, rows: u64) {
    if rows > 0 {
        ::metrics::counter!(ROWS_WRITTEN, "table" => table, "kind" => "snapshot_filled")
            .increment(rows);
    }
}

/// Sets the [`NULL_SNAPSHOTS`] gauges.
pub fn null_snapshots(counts: &repo::NullSnapshotCounts) {
    for (table, rows) in [
        ("target_populations", counts.target_populations),
        ("offers", counts.offers),
        ("ad_events", counts.ad_events),
    ] {
        ::metrics::gauge!(NULL_SNAPSHOTS, "table" => table).set(rows as f64);
    }
}

/// Sets the [`POPULATE_FAILURES`] gauge.
pub fn populate_failures(targets: i64) {
    ::metrics::gauge!(POPULATE_FAILURES).set(targets as f64);
}

/// Sets the [`QUEUE_PAUSED`] gauge of `queue`.
pub fn queue_paused(queue: &'static str, paused: bool) {
    ::metrics::gauge!(QUEUE_PAUSED, "queue" => queue).set(if paused { 1.0 } else { 0.0 });
}

/// Sets the [`QUEUE_WORKERS`] gauge of `queue`.
pub fn queue_workers(queue: &'static str, workers: usize) {
    ::metrics::gauge!(QUEUE_WORKERS, "queue" => queue).set(workers as f64);
}

/// Sets the [`QUEUE_JOBS`] and [`QUEUE_OLDEST_WAITING`] gauges of one queue.
pub fn queue_depth(depth: &repo::QueueDepth) {
    let queue = depth.queue.clone();
    for (status, jobs) in [
        ("waiting", depth.waiting),
        ("running", depth.running),
        ("done", depth.done),
        ("failed", depth.failed),
        ("killed", depth.killed),
    ] {
        ::metrics::gauge!(QUEUE_JOBS, "queue" => queue.clone(), "status" => status)
            .set(jobs as f64);
    }
    ::metrics::gauge!(QUEUE_OLDEST_WAITING, "queue" => queue)
        .set(depth.oldest_waiting_secs.unwrap_or(0.0).max(0.0));
}

/// Sets [`BACKFILL_LAST_SUCCESS`].
pub fn backfill_last_success(at_unix_secs: Option<f64>) {
    ::metrics::gauge!(BACKFILL_LAST_SUCCESS).set(at_unix_secs.unwrap_or(0.0));
}

/// Sets the [`DB_POOL_CONNECTIONS`] and [`DB_POOL_MAX_CONNECTIONS`] gauges.
pub fn db_pool(open: u32, idle: u32, max: u32) {
    ::metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use")
        .set(open.saturating_sub(idle) as f64);
    ::metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
    ::metrics::gauge!(DB_POOL_MAX_CONNECTIONS).set(max as f64);
}

/// Sets [`BUILD_INFO`].
pub fn build_info(version: &'static str) {
    ::metrics::gauge!(BUILD_INFO, "version" => version).set(1.0);
}

/// Creates a serving queue's counters at 0, so that `rate()` and `increase()` (and the
/// alerts built on them) see the first failure of a process as a change, and a dashboard's
/// series exist before anything happened.
pub fn register_queue(queue: &'static str) {
    for name in [JOBS_STARTED, JOBS_SUCCEEDED, JOBS_RETRIED] {
        ::metrics::counter!(name, "queue" => queue).increment(0);
    }
    for reason in ["permanent", "exhausted", "interrupted"] {
        ::metrics::counter!(JOBS_FAILED, "queue" => queue, "reason" => reason).increment(0);
    }
}

//! apalis's queue tables (`apalis.jobs` and `apalis.workers` on PostgreSQL, `Jobs` and
//! `Workers` on SQLite), read and written in this one place: one job row type
//! ([`QueueJob`]), one set of the tables' SQL ([`QueueSql`]: their names, the queue's clock
//! and times). A job's own life (fetch, run, ack) belongs to apalis; here are the pushes
//! other services run, the operator's actions, the counts and the maintenance.

mod admin;
mod history;
mod jobs;
mod pauses;

pub use admin::{ActionOutcome, JobAdminRepo, JobChange, JobFilter, JobStatus};
pub use history::{
    JobAttemptRecord, QueueHistoryRepo, QueueMinute, ROLL_UP_AFTER_SECS, ROLL_UP_AT_MOST_MINUTES,
};
#[cfg(feature = "reference")]
pub use jobs::QueueLatency;
pub use jobs::{
    DEPTH_COUNT_CAP, PLAIN_SQL_PUSH, PLAIN_SQL_PUSH_POPULATE, QueueDepth, QueueJobRepo, QueueWorker,
};
pub use pauses::{QueuePauseRepo, QueueScaleRepo};

use crate::{Backend, Db};
use sea_orm::{FromQueryResult, Value};
use serde::Serialize;

/// One job as the queue stores it, with everything an operator reads about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueJob {
    pub id: String,
    pub queue: String,
    /// Pending, Queued, Running, Done, Failed or Killed.
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    /// The payload as text (bytes that are not UTF-8 replaced: another service may have
    /// written them).
    pub payload: String,
    /// When it is or was due (UTC, RFC 3339).
    pub run_at: Option<String>,
    /// When a worker took it last.
    pub started_at: Option<String>,
    /// When it last finished (done, failed or killed); `None` while it waits or runs.
    pub finished_at: Option<String>,
    /// From taken to finished, in seconds; `None` while it waits or runs.
    pub duration_secs: Option<f64>,
    /// The worker holding it or that ran it last.
    pub worker: Option<String>,
    /// The error of its last failure, when it has one.
    pub error: Option<String>,
    /// apalis's record of its last result, as stored.
    pub last_result: Option<String>,
}

/// How [`QueueJob`] is read ([`QueueSql::select_jobs`]).
#[derive(FromQueryResult)]
struct QueueJobRow {
    id: String,
    job_type: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    job: Vec<u8>,
    run_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_secs: Option<f64>,
    lock_by: Option<String>,
    last_result: Option<String>,
}

impl From<QueueJobRow> for QueueJob {
    fn from(row: QueueJobRow) -> Self {
        let error = match row.status.as_str() {
            "Done" => None,
            _ => row.last_result.as_deref().and_then(error_of_result),
        };
        QueueJob {
            id: row.id,
            queue: row.job_type,
            status: row.status,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            payload: String::from_utf8_lossy(&row.job).into_owned(),
            run_at: row.run_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            duration_secs: row.duration_secs,
            worker: row.lock_by,
            error,
            last_result: row.last_result,
        }
    }
}

/// The error text of an apalis result (`{"Err": "..."}`), or the result itself.
fn error_of_result(result: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(result) {
        Ok(serde_json::Value::Object(map)) => match map.get("Err") {
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        },
        Ok(serde_json::Value::Null) => None,
        _ => Some(result.to_owned()),
    }
}

/// When a job last did something: finished, else started, else became due. The last key of
/// the `(job_type, status, ...)` index of migration 11: queries that order or range by it
/// read that index.
pub(crate) const LAST_ACTIVITY: &str = "COALESCE(done_at, lock_at, run_at)";

/// The queue tables' SQL on one backend: their names, the queue's clock and its times
/// (`timestamptz` on PostgreSQL, Unix seconds on SQLite).
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueSql(Backend);

impl QueueSql {
    pub(crate) fn of(db: &Db) -> Self {
        QueueSql(db.backend())
    }

    pub(crate) fn jobs(self) -> &'static str {
        match self.0 {
            Backend::Postgres => "apalis.jobs",
            Backend::Sqlite => "Jobs",
        }
    }

    pub(crate) fn workers(self) -> &'static str {
        match self.0 {
            Backend::Postgres => "apalis.workers",
            Backend::Sqlite => "Workers",
        }
    }

    /// Now, as the queue stores times.
    pub(crate) fn now(self) -> &'static str {
        match self.0 {
            Backend::Postgres => "now()",
            Backend::Sqlite => "CAST(strftime('%s', 'now') AS INTEGER)",
        }
    }

    /// The queue time a number of seconds ago, the seconds bound at `$param` as
    /// [`Self::secs`] gives them.
    pub(crate) fn secs_ago(self, param: usize) -> String {
        match self.0 {
            Backend::Postgres => format!("now() - make_interval(secs => ${param})"),
            Backend::Sqlite => format!("{} - ${param}", self.now()),
        }
    }

    /// `secs` as [`Self::secs_ago`] binds them.
    pub(crate) fn secs(self, secs: u64) -> Value {
        match self.0 {
            Backend::Postgres => Value::from(secs as f64),
            // Saturating: a wrapped (negative) age would take every job as old enough.
            Backend::Sqlite => Value::from(i64::try_from(secs).unwrap_or(i64::MAX)),
        }
    }

    /// Seconds from `column` (a queue time) to now, as a float.
    pub(crate) fn age_secs(self, column: &str) -> String {
        match self.0 {
            Backend::Postgres => format!("EXTRACT(EPOCH FROM now() - {column})::float8"),
            Backend::Sqlite => format!("CAST(strftime('%s', 'now') AS REAL) - {column}"),
        }
    }

    /// `column` (a queue time) as Unix seconds, a float.
    pub(crate) fn epoch_secs(self, column: &str) -> String {
        match self.0 {
            Backend::Postgres => format!("EXTRACT(EPOCH FROM {column})::float8"),
            Backend::Sqlite => format!("CAST({column} AS REAL)"),
        }
    }

    /// `column` (a queue time) as RFC 3339 text in UTC.
    pub(crate) fn text_time(self, column: &str) -> String {
        match self.0 {
            Backend::Postgres => {
                format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
            }
            Backend::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%SZ', {column}, 'unixepoch')"),
        }
    }

    /// Seconds from `from` to `to` (queue times), a float.
    fn secs_between(self, from: &str, to: &str) -> String {
        match self.0 {
            Backend::Postgres => format!("EXTRACT(EPOCH FROM {to} - {from})::float8"),
            Backend::Sqlite => format!("CAST({to} - {from} AS REAL)"),
        }
    }

    /// The queue time of the Unix seconds bound at `$param` (an integer).
    pub(crate) fn at_epoch(self, param: usize) -> String {
        match self.0 {
            Backend::Postgres => format!("to_timestamp(${param})"),
            Backend::Sqlite => format!("${param}"),
        }
    }

    /// The start of the minute of `column` (a queue time), Unix seconds.
    pub(crate) fn minute_of(self, column: &str) -> String {
        match self.0 {
            Backend::Postgres => {
                format!("(floor(EXTRACT(EPOCH FROM {column}))::bigint / 60 * 60)")
            }
            Backend::Sqlite => format!("CAST({column} / 60 * 60 AS BIGINT)"),
        }
    }

    /// The payload column as bytes.
    pub(crate) fn payload(self) -> &'static str {
        match self.0 {
            Backend::Postgres => "job",
            Backend::Sqlite => "CAST(job AS BLOB)",
        }
    }

    /// `SELECT` of every column of [`QueueJob`] from the job table, for a `WHERE` to follow.
    fn select_jobs(self) -> String {
        let (attempts, max_attempts, last_result) = match self.0 {
            Backend::Postgres => (
                "attempts::bigint",
                "max_attempts::bigint",
                "last_result::text",
            ),
            Backend::Sqlite => (
                "CAST(attempts AS BIGINT)",
                "CAST(max_attempts AS BIGINT)",
                "CAST(last_result AS TEXT)",
            ),
        };
        format!(
            "SELECT id, job_type, status, {attempts} AS attempts, {max_attempts} AS max_attempts, \
             {} AS job, {} AS run_at, {} AS started_at, {} AS finished_at, \
             {} AS duration_secs, lock_by, {last_result} AS last_result FROM {}",
            self.payload(),
            self.text_time("run_at"),
            self.text_time("lock_at"),
            self.text_time("done_at"),
            self.secs_between("lock_at", "done_at"),
            self.jobs(),
        )
    }
}

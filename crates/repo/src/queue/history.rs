//! What the queue table forgets (migration 19): every attempt that did not end a job done
//! (`snapline_job_attempts`, written by a trigger on apalis's job table), and per queue and
//! minute the jobs done and failed and the oldest waiting job's age
//! (`snapline_queue_minutes`, rolled up here from a closed minute of each).

use super::{LAST_ACTIVITY, QueueSql};
use crate::{Db, RepoError};
use sea_orm::{FromQueryResult, Value};
use serde::Serialize;
use std::collections::BTreeMap;

/// A minute is rolled up once it closed this many seconds ago: an acknowledgement stamps
/// `done_at` at its statement's start and commits a moment later.
pub const ROLL_UP_AFTER_SECS: i64 = 10;

/// At most this many minutes are rolled up at once (the first roll, or after every service
/// was down): one hour of the index, never the whole retention.
pub const ROLL_UP_AT_MOST_MINUTES: i64 = 60;

/// Minutes are kept at least two days, whatever the jobs' retention: the charts show a day.
pub const MINUTES_KEPT_SECS: i64 = 2 * 24 * 3600;

/// One attempt of a job that did not end it done, as the trigger recorded it.
#[derive(Clone, Debug, PartialEq, Serialize, FromQueryResult)]
pub struct JobAttemptRecord {
    /// The job's attempt count when it ended (0: killed before any attempt ran).
    pub attempt: i64,
    /// `Failed` (tried again while attempts are left), `Killed` (ended for good, by the
    /// worker or an operator) or `Pending` (its worker died; the queue handed it back).
    pub status: String,
    /// The worker that held it, if any did.
    pub worker: Option<String>,
    /// When it ended, Unix seconds.
    pub finished_at: i64,
    /// The result apalis stored for it (the error, for a failure).
    pub result: Option<String>,
}

impl JobAttemptRecord {
    /// The error text of the attempt's result, if it has one.
    pub fn error(&self) -> Option<String> {
        self.result.as_deref().and_then(super::error_of_result)
    }
}

/// One queue's minute: jobs done and attempts failed (`Failed` or `Killed`) in it, and the
/// oldest waiting job's age when it was rolled up (`None` when not sampled).
#[derive(Clone, Debug, PartialEq, Serialize, FromQueryResult)]
pub struct QueueMinute {
    /// The minute's start, Unix seconds.
    pub minute: i64,
    pub done: i64,
    pub failed: i64,
    pub oldest_waiting_secs: Option<f64>,
}

#[derive(FromQueryResult)]
struct MinuteCount {
    minute: i64,
    count: i64,
}

#[derive(FromQueryResult)]
struct Clock {
    now: i64,
    last: Option<i64>,
}

pub struct QueueHistoryRepo<'a> {
    pub(crate) db: &'a Db,
}

impl QueueHistoryRepo<'_> {
    /// The attempts of job `job_id` that did not end it done, oldest first.
    pub async fn attempts_of(&self, job_id: &str) -> Result<Vec<JobAttemptRecord>, RepoError> {
        self.db
            .fetch_all(
                self.db.conn(),
                "SELECT CAST(attempt AS BIGINT) AS attempt, status, worker, \
                 CAST(finished_at AS BIGINT) AS finished_at, result \
                 FROM snapline_job_attempts WHERE job_id = $1 \
                 ORDER BY finished_at, attempt",
                vec![Value::from(job_id)],
            )
            .await
    }

    /// Rolls up `queue`'s minutes that closed since the last one rolled up (at most
    /// [`ROLL_UP_AT_MOST_MINUTES`]), the newest with the oldest waiting job's age now;
    /// returns how many minutes it wrote. Replicas may roll the same minute at once: the
    /// first row written stands.
    pub async fn roll_up(&self, queue: &str) -> Result<u64, RepoError> {
        let now = self.db.epoch_now_sql();
        let clock: Clock = self
            .db
            .fetch_one(
                self.db.conn(),
                "queue history clock",
                format!(
                    "SELECT {now} AS now, \
                     (SELECT CAST(MAX(minute) AS BIGINT) FROM snapline_queue_minutes \
                      WHERE queue = $1) AS last"
                ),
                vec![Value::from(queue)],
            )
            .await?;
        // The newest minute that closed long enough ago, and where to start.
        let newest = (clock.now - ROLL_UP_AFTER_SECS) / 60 * 60 - 60;
        let earliest = newest - (ROLL_UP_AT_MOST_MINUTES - 1) * 60;
        let first = clock.last.map_or(earliest, |last| last + 60).max(earliest);
        if first > newest {
            return Ok(0);
        }
        let end = newest + 60;
        let done = self.done_per_minute(queue, first, end).await?;
        let failed = self.failed_per_minute(queue, first, end).await?;
        // The age alone: no count of the queue's states on this path.
        let oldest = self.db.queue_jobs().oldest_waiting_secs(queue).await?;
        let mut rows = Vec::new();
        let mut values = Vec::new();
        for minute in (first..=newest).step_by(60) {
            let at = values.len();
            rows.push(format!(
                "(${}, ${}, ${}, ${}, ${})",
                at + 1,
                at + 2,
                at + 3,
                at + 4,
                at + 5
            ));
            values.push(Value::from(queue));
            values.push(Value::from(minute));
            values.push(Value::from(done.get(&minute).copied().unwrap_or(0)));
            values.push(Value::from(failed.get(&minute).copied().unwrap_or(0)));
            values.push(Value::from((minute == newest).then_some(oldest).flatten()));
        }
        self.db
            .execute(
                self.db.conn(),
                format!(
                    "INSERT INTO snapline_queue_minutes \
                     (queue, minute, done, failed, oldest_waiting_secs) VALUES {} \
                     ON CONFLICT (queue, minute) DO NOTHING",
                    rows.join(", ")
                ),
                values,
            )
            .await
    }

    /// `queue`'s minutes from `since` (Unix seconds) on, oldest first.
    pub async fn minutes(&self, queue: &str, since: i64) -> Result<Vec<QueueMinute>, RepoError> {
        self.db
            .fetch_all(
                self.db.conn(),
                "SELECT CAST(minute AS BIGINT) AS minute, CAST(done AS BIGINT) AS done, \
                 CAST(failed AS BIGINT) AS failed, oldest_waiting_secs \
                 FROM snapline_queue_minutes WHERE queue = $1 AND minute >= $2 ORDER BY minute",
                vec![Value::from(queue), Value::from(since)],
            )
            .await
    }

    /// The database clock, Unix seconds.
    pub async fn now(&self) -> Result<i64, RepoError> {
        #[derive(FromQueryResult)]
        struct Now {
            now: i64,
        }
        let now = self.db.epoch_now_sql();
        let row: Now = self
            .db
            .fetch_one(
                self.db.conn(),
                "database clock",
                format!("SELECT {now} AS now"),
                vec![],
            )
            .await?;
        Ok(row.now)
    }

    /// Deletes attempts older than `older_than_secs` (the jobs' retention) and minutes older
    /// than that or [`MINUTES_KEPT_SECS`], whichever is longer (the charts' day); returns the
    /// rows deleted.
    pub async fn prune(&self, older_than_secs: u64) -> Result<u64, RepoError> {
        let now = self.db.epoch_now_sql();
        let attempts = i64::try_from(older_than_secs).unwrap_or(i64::MAX);
        let mut deleted = 0;
        for (table, column, secs) in [
            ("snapline_job_attempts", "finished_at", attempts),
            (
                "snapline_queue_minutes",
                "minute",
                attempts.max(MINUTES_KEPT_SECS),
            ),
        ] {
            deleted += self
                .db
                .execute(
                    self.db.conn(),
                    format!("DELETE FROM {table} WHERE {column} < {now} - $1"),
                    vec![Value::from(secs)],
                )
                .await?;
        }
        Ok(deleted)
    }

    /// Jobs of `queue` done in `[from, to)`, per minute: a range of the `(job_type, status,
    /// last activity)` index (a done job's last activity is its `done_at`).
    async fn done_per_minute(
        &self,
        queue: &str,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, i64>, RepoError> {
        let sql = QueueSql::of(self.db);
        let (table, minute) = (sql.jobs(), sql.minute_of(LAST_ACTIVITY));
        let (lower, upper) = (sql.at_epoch(2), sql.at_epoch(3));
        self.counts(
            format!(
                "SELECT {minute} AS minute, COUNT(*) AS count FROM {table} \
                 WHERE job_type = $1 AND status = 'Done' \
                 AND {LAST_ACTIVITY} >= {lower} AND {LAST_ACTIVITY} < {upper} GROUP BY 1"
            ),
            queue,
            from,
            to,
        )
        .await
    }

    /// Attempts of `queue` that failed (`Failed` or `Killed`) in `[from, to)`, per minute.
    async fn failed_per_minute(
        &self,
        queue: &str,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, i64>, RepoError> {
        self.counts(
            "SELECT CAST(finished_at / 60 * 60 AS BIGINT) AS minute, COUNT(*) AS count \
             FROM snapline_job_attempts WHERE queue = $1 AND finished_at >= $2 \
             AND finished_at < $3 AND status IN ('Failed', 'Killed') GROUP BY 1"
                .to_owned(),
            queue,
            from,
            to,
        )
        .await
    }

    async fn counts(
        &self,
        sql: String,
        queue: &str,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, i64>, RepoError> {
        let rows: Vec<MinuteCount> = self
            .db
            .fetch_all(
                self.db.conn(),
                sql,
                vec![Value::from(queue), Value::from(from), Value::from(to)],
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.minute, r.count)).collect())
    }
}

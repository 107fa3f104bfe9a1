use crate::{Backend, Db, RepoError};
use sea_orm::{ConnectionTrait, Value};

/// One job as apalis stores it (`apalis.jobs` on PostgreSQL, `Jobs` on SQLite).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueJob {
    pub id: String,
    pub queue: String,
    /// Pending, Queued, Running, Done, Failed or Killed.
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    /// The payload as JSON text.
    pub payload: String,
    /// The handler's last result or error, as apalis recorded it.
    pub last_result: Option<String>,
}

/// Reads of the apalis queue tables, for `snapctl status` and tests. Writes belong to apalis.
pub struct QueueJobRepo<'a> {
    pub(crate) db: &'a Db,
}

impl QueueJobRepo<'_> {
    /// The jobs of `queue`, oldest first.
    pub async fn of_queue(&self, queue: &str) -> Result<Vec<QueueJob>, RepoError> {
        let sql = match self.db.backend() {
            Backend::Postgres => {
                "SELECT id, job_type, status, attempts::bigint, max_attempts::bigint, \
                 convert_from(job, 'UTF8'), last_result::text \
                 FROM apalis.jobs WHERE job_type = $1 ORDER BY run_at, id"
            }
            Backend::Sqlite => {
                "SELECT id, job_type, status, attempts, max_attempts, CAST(job AS TEXT), last_result \
                 FROM Jobs WHERE job_type = $1 ORDER BY run_at, id"
            }
        };
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.statement(sql, vec![Value::from(queue)]))
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(QueueJob {
                    id: row.try_get_by_index(0)?,
                    queue: row.try_get_by_index(1)?,
                    status: row.try_get_by_index(2)?,
                    attempts: row.try_get_by_index(3)?,
                    max_attempts: row.try_get_by_index(4)?,
                    payload: row.try_get_by_index(5)?,
                    last_result: row.try_get_by_index(6)?,
                })
            })
            .collect()
    }
}

impl QueueJobRepo<'_> {
    /// Whether `queue` holds a job with exactly this JSON payload that has not started yet.
    pub async fn has_waiting(&self, queue: &str, payload_json: &str) -> Result<bool, RepoError> {
        let sql = match self.db.backend() {
            Backend::Postgres => {
                "SELECT 1 FROM apalis.jobs WHERE job_type = $1 AND status = 'Pending' \
                 AND job = convert_to($2, 'UTF8') LIMIT 1"
            }
            Backend::Sqlite => {
                "SELECT 1 FROM Jobs WHERE job_type = $1 AND status = 'Pending' \
                 AND CAST(job AS TEXT) = $2 LIMIT 1"
            }
        };
        let row = self
            .db
            .conn()
            .query_one_raw(
                self.db
                    .statement(sql, vec![Value::from(queue), Value::from(payload_json)]),
            )
            .await?;
        Ok(row.is_some())
    }
}

/// Push-to-finish latency of a queue's finished jobs, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueueLatency {
    pub jobs: i64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// From the first job taken to the last one finished, in seconds.
    pub span_secs: f64,
}

/// The statement another service runs, inside its own transaction, to push a job with plain
/// SQL (PostgreSQL): nothing is added while an identical job is still waiting. `$1` is the
/// queue, `$2` the JSON payload exactly as snapline writes it (`{"me_file_id":42}`, no
/// spaces), `$3` the attempts allowed.
pub const PLAIN_SQL_PUSH: &str = "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
SELECT apalis.generate_ulid(), $1, convert_to($2, 'UTF8'), 'Pending', 0, $3, now(), 0 \
WHERE NOT EXISTS (SELECT 1 FROM apalis.jobs WHERE job_type = $1 AND status = 'Pending' AND job = convert_to($2, 'UTF8'))";

impl QueueJobRepo<'_> {
    /// Pushes with [`PLAIN_SQL_PUSH`], as other services do (PostgreSQL only); returns
    /// whether a job was added.
    pub async fn push_plain_sql(
        &self,
        queue: &str,
        payload_json: &str,
        max_attempts: i32,
    ) -> Result<bool, RepoError> {
        let result = self
            .db
            .conn()
            .execute_raw(self.db.statement(
                PLAIN_SQL_PUSH,
                vec![
                    Value::from(queue),
                    Value::from(payload_json),
                    Value::from(max_attempts),
                ],
            ))
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Jobs of `queue` per status.
    pub async fn count_by_status(&self, queue: &str) -> Result<Vec<(String, i64)>, RepoError> {
        let table = self.table();
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.statement(
                format!("SELECT status, COUNT(*) FROM {table} WHERE job_type = $1 GROUP BY status ORDER BY status"),
                vec![Value::from(queue)],
            ))
            .await?;
        rows.into_iter()
            .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
            .collect()
    }

    /// Latency from push (`run_at`) to finish (`done_at`) of the queue's `Done` jobs
    /// (PostgreSQL only).
    pub async fn latency(&self, queue: &str) -> Result<QueueLatency, RepoError> {
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.statement(
                "SELECT COUNT(*), \
                 COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), 0), \
                 COALESCE(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), 0), \
                 COALESCE(MAX(ms), 0), \
                 COALESCE(EXTRACT(EPOCH FROM MAX(done_at) - MIN(lock_at))::float8, 0) \
                 FROM (SELECT EXTRACT(EPOCH FROM done_at - run_at)::float8 * 1000 AS ms, done_at, lock_at \
                       FROM apalis.jobs WHERE job_type = $1 AND status = 'Done') AS d",
                vec![Value::from(queue)],
            ))
            .await?;
        let Some(row) = row else {
            return Ok(QueueLatency::default());
        };
        Ok(QueueLatency {
            jobs: row.try_get_by_index(0)?,
            p50_ms: row.try_get_by_index(1)?,
            p99_ms: row.try_get_by_index(2)?,
            max_ms: row.try_get_by_index(3)?,
            span_secs: row.try_get_by_index(4)?,
        })
    }

    /// Deletes the queue's finished jobs (`Done`, `Killed`, and `Failed` with no attempt
    /// left); returns how many.
    pub async fn delete_finished(&self, queue: &str) -> Result<u64, RepoError> {
        let table = self.table();
        let result = self
            .db
            .conn()
            .execute_raw(self.db.statement(
                format!(
                    "DELETE FROM {table} WHERE job_type = $1 AND (status IN ('Done', 'Killed') \
                     OR (status = 'Failed' AND attempts >= max_attempts))"
                ),
                vec![Value::from(queue)],
            ))
            .await?;
        Ok(result.rows_affected())
    }

    fn table(&self) -> &'static str {
        match self.db.backend() {
            Backend::Postgres => "apalis.jobs",
            Backend::Sqlite => "Jobs",
        }
    }
}

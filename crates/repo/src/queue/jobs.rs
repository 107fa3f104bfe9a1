//! The queue's jobs: pushes other services run, the checks and counts the jobs and the
//! operator surface read, and the maintenance.

use super::{LAST_ACTIVITY, QueueJob, QueueJobRow, QueueSql};
use crate::rows::Present;
#[cfg(feature = "reference")]
use crate::rows::StatusCount;
use crate::{Backend, Db, RepoError};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

/// A job a failed fetch held or would take next, with its raw payload.
#[derive(FromQueryResult)]
struct FetchedJob {
    id: String,
    job: Vec<u8>,
    held: bool,
}

#[cfg(feature = "reference")]
#[derive(FromQueryResult)]
struct LatencyRow {
    jobs: i64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    span_secs: f64,
}

#[derive(FromQueryResult)]
struct LastDone {
    at: Option<f64>,
}

#[derive(FromQueryResult)]
struct DepthRow {
    waiting: i64,
    running: i64,
    done: i64,
    failed: i64,
    killed: i64,
    oldest_waiting_secs: Option<f64>,
}

/// Reads of the apalis queue tables, for `snapctl status` and tests. Writes belong to apalis.
pub struct QueueJobRepo<'a> {
    pub(crate) db: &'a Db,
}

impl QueueJobRepo<'_> {
    /// Reads the queue table as a worker's poll does (no row needed): fails when the
    /// database does not answer or the queue tables are gone (a database recreated empty).
    pub async fn probe(&self) -> Result<(), RepoError> {
        let sql = format!("SELECT 1 FROM {} LIMIT 0", self.table());
        self.db
            .conn()
            .query_all_raw(self.db.statement(sql, vec![]))
            .await?;
        Ok(())
    }
}

impl QueueJobRepo<'_> {
    /// Whether `queue` holds a job with exactly this JSON payload that has not started yet
    /// and is due within a minute (one scheduled far ahead must not absorb a push that is
    /// needed now).
    pub async fn has_waiting(&self, queue: &str, payload_json: &str) -> Result<bool, RepoError> {
        let sql = match self.db.backend() {
            Backend::Postgres => {
                "SELECT 1 AS present FROM apalis.jobs WHERE job_type = $1 AND status = 'Pending' \
                 AND job = convert_to($2, 'UTF8') AND run_at <= now() + interval '60 seconds' LIMIT 1"
            }
            // Pinned: with few rows SQLite's planner sometimes took apalis's
            // (job_type, status, run_at) index and read every waiting job of the queue.
            Backend::Sqlite => {
                "SELECT 1 AS present FROM Jobs INDEXED BY Jobs_waiting_payload_idx WHERE job_type = $1 \
                 AND status = 'Pending' AND CAST(job AS TEXT) = $2 \
                 AND run_at <= CAST(strftime('%s', 'now') AS INTEGER) + 60 LIMIT 1"
            }
        };
        let row: Option<Present> = self
            .db
            .fetch_optional(
                self.db.conn(),
                sql,
                vec![Value::from(queue), Value::from(payload_json)],
            )
            .await?;
        Ok(row.is_some())
    }
}

impl QueueJobRepo<'_> {
    /// After `worker` of `queue` stopped on a backend error: the jobs it held, and the next
    /// `due` jobs a fetch would take, are checked. Those whose bytes are not JSON at all are
    /// `Killed` after this one attempt with an error saying so (apalis fails a whole fetch on
    /// one such job, so every worker fetching it would stop, forever); the other jobs the
    /// worker held go back to `Pending` at once. Returns the ids killed.
    pub async fn settle_after_failed_fetch(
        &self,
        queue: &str,
        worker: &str,
        due: u64,
    ) -> Result<Vec<String>, RepoError> {
        let table = self.table();
        let sql = self.sql();
        let (job, now) = (sql.payload(), sql.now());
        // The held ones, then the fetch's own choice (apalis's get_jobs): waiting or failed
        // with attempts left, due, by priority then age.
        let rows: Vec<FetchedJob> = self
            .db
            .fetch_all(
                self.db.conn(),
                format!(
                    "SELECT id, {job} AS job, lock_by = $2 AS held FROM {table} \
                     WHERE job_type = $1 AND lock_by = $2 AND status IN ('Queued', 'Running') \
                     UNION ALL \
                     SELECT * FROM (SELECT id, {job} AS job, false AS held FROM {table} \
                       WHERE job_type = $1 AND run_at <= {now} \
                       AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)) \
                       ORDER BY priority DESC, run_at ASC LIMIT $3) AS due"
                ),
                vec![
                    Value::from(queue),
                    Value::from(worker),
                    Value::from(due as i64),
                ],
            )
            .await?;
        let kill = format!(
            "UPDATE {table} SET status = 'Killed', attempts = attempts + 1, \
             last_result = {}, done_at = {now} WHERE id = $1",
            match self.db.backend() {
                Backend::Postgres => "jsonb_build_object('Err', $2::text)",
                Backend::Sqlite => "json_object('Err', $2)",
            }
        );
        let release = format!(
            "UPDATE {table} SET status = 'Pending', lock_by = NULL, lock_at = NULL \
             WHERE id = $1 AND status IN ('Queued', 'Running')"
        );
        let mut killed = Vec::new();
        for FetchedJob {
            id,
            job: bytes,
            held,
        } in rows
        {
            let statement = match undecodable(&id, &bytes) {
                None if !held => continue,
                None => self.db.statement(release.clone(), vec![Value::from(id)]),
                Some(error) => {
                    killed.push(id.clone());
                    self.db
                        .statement(kill.clone(), vec![Value::from(id), Value::from(error)])
                }
            };
            self.db.conn().execute_raw(statement).await?;
        }
        Ok(killed)
    }
}

/// Why apalis cannot read a job row, kept as its error: an id that is not a ULID, or bytes
/// that are not JSON (shown cut, non-text bytes escaped); `None` when it can.
fn undecodable(id: &str, bytes: &[u8]) -> Option<String> {
    if !is_ulid(id) {
        return Some(format!(
            "the job cannot be decoded: its id {:?} is not a ULID; killed without running",
            id.chars().take(60).collect::<String>()
        ));
    }
    let err = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).err()?;
    const SHOWN: usize = 60;
    let shown: String = bytes
        .iter()
        .take(SHOWN)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    let more = if bytes.len() > SHOWN { "..." } else { "" };
    Some(format!(
        "the job's payload cannot be decoded: {} bytes \"{shown}{more}\" are not JSON ({err}); \
         killed without running",
        bytes.len()
    ))
}

/// 26 characters of Crockford's base32, the first at most `7`: what apalis's ids must be.
fn is_ulid(id: &str) -> bool {
    id.len() == 26
        && id.as_bytes()[0] <= b'7'
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_alphabetic() && !b"IiLlOoUu".contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::{is_ulid, undecodable};

    #[test]
    fn rows_apalis_cannot_read_are_named() {
        assert!(is_ulid("01HQ0000000000000000000001"));
        assert!(!is_ulid("valid-1"));
        assert!(!is_ulid("81HQ0000000000000000000001"));
        assert!(!is_ulid("01HQ000000000000000000000U"));
        let ulid = "01HQ0000000000000000000001";
        assert_eq!(undecodable(ulid, br#"{"me_file_id":1}"#), None);
        assert_eq!(
            undecodable(ulid, b"[1]"),
            None,
            "JSON, if not a job's: the handler kills it"
        );
        let empty = undecodable(ulid, b"").unwrap();
        assert!(
            empty.contains("0 bytes") && empty.contains("not JSON"),
            "{empty}"
        );
        let binary = undecodable(ulid, &[0xff, 0x1b, b'x']).unwrap();
        assert!(binary.contains(r"\xff\x1bx"), "{binary}");
        assert!(undecodable("nope", b"{}").unwrap().contains("not a ULID"));
    }
}

/// Finished jobs deleted per statement by [`QueueJobRepo::prune_finished`].
const PRUNE_CHUNK: u64 = 10_000;

/// One worker as apalis records it (a row per worker of each process), with the jobs it
/// holds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QueueWorker {
    /// `{queue}@{host}:{pid}#{index}`, as snapline names its workers.
    pub id: String,
    pub queue: String,
    /// When it registered (UTC, RFC 3339).
    pub started_at: Option<String>,
    /// When it last marked itself alive (UTC, RFC 3339).
    pub last_seen: Option<String>,
    /// Seconds since then.
    pub silent_secs: f64,
    /// Jobs it holds (`Queued` or `Running` under its name).
    pub holding: i64,
}

#[derive(FromQueryResult)]
struct WorkerRow {
    id: String,
    queue: String,
    started_at: Option<String>,
    last_seen: Option<String>,
    silent_secs: Option<f64>,
    holding: i64,
}

/// A queue's backlog.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct QueueDepth {
    pub queue: String,
    /// `Pending`: waiting to run, including retries waiting for their backoff.
    pub waiting: i64,
    /// `Queued` or `Running`: taken by a worker.
    pub running: i64,
    pub done: i64,
    /// `Failed`: an attempt failed; retried while attempts are left.
    pub failed: i64,
    /// `Killed`: failed permanently (bad input), kept for inspection.
    pub killed: i64,
    /// Age of the oldest waiting job, in seconds.
    pub oldest_waiting_secs: Option<f64>,
}

/// Counts of one status in [`QueueJobRepo::depth`] stop here: a count that reaches it means
/// "at least".
pub const DEPTH_COUNT_CAP: i64 = 100_000;

#[cfg(feature = "reference")]
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
/// SQL (PostgreSQL): nothing is added while an identical job is waiting and due within a
/// minute. `$1` is the
/// queue, `$2` the JSON payload exactly as snapline writes it (`{"me_file_id":42}`, no
/// spaces), `$3` the attempts allowed.
///
/// The waiting job that absorbs the push stays locked (`FOR UPDATE`) until the writer
/// commits, so no worker takes it, and reads the data from before the change, in between;
/// one a worker's fetch holds is skipped (`SKIP LOCKED`), and a job is pushed instead.
pub const PLAIN_SQL_PUSH: &str = "WITH waiting AS (\
SELECT 1 FROM apalis.jobs WHERE job_type = $1 AND status = 'Pending' AND job = convert_to($2, 'UTF8') \
AND run_at <= now() + interval '60 seconds' LIMIT 1 FOR UPDATE SKIP LOCKED) \
INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
SELECT apalis.generate_ulid(), $1, convert_to($2, 'UTF8'), 'Pending', 0, $3, now(), 0 \
WHERE NOT EXISTS (SELECT 1 FROM waiting)";

/// The statement another service runs to request a populate with plain SQL (PostgreSQL): it
/// marks the target `populating` (so the platform's offer creation waits, as it did with the
/// platform's own populate) and pushes `populate_target`, in one statement, unless one for
/// the target is waiting and due within a minute (that job locked until the writer commits,
/// as in [`PLAIN_SQL_PUSH`]). `$1` is the target id, `$2` the attempts allowed.
pub const PLAIN_SQL_PUSH_POPULATE: &str = "WITH marked AS (\
UPDATE targets SET population_status = 'populating' WHERE id = $1::bigint), \
waiting AS (SELECT 1 FROM apalis.jobs WHERE job_type = 'populate_target' AND status = 'Pending' \
AND job = convert_to('{\"target_id\":' || $1::bigint || '}', 'UTF8') \
AND run_at <= now() + interval '60 seconds' LIMIT 1 FOR UPDATE SKIP LOCKED) \
INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
SELECT apalis.generate_ulid(), 'populate_target', convert_to('{\"target_id\":' || $1::bigint || '}', 'UTF8'), \
'Pending', 0, $2, now(), 0 WHERE NOT EXISTS (SELECT 1 FROM waiting)";

impl QueueJobRepo<'_> {
    /// Marks `target` `populating` and pushes its populate with [`PLAIN_SQL_PUSH_POPULATE`]
    /// (only with [`crate::FastPath::PopulatePushMarkingTarget`]); returns whether a job was
    /// added (`false`: one was waiting).
    pub async fn push_populate_marking_target(
        &self,
        target: i64,
        max_attempts: i32,
    ) -> Result<bool, RepoError> {
        self.db
            .require_fast_path(crate::FastPath::PopulatePushMarkingTarget)?;
        self.push_with(
            PLAIN_SQL_PUSH_POPULATE,
            vec![Value::from(target), Value::from(max_attempts)],
        )
        .await
    }

    /// Runs a plain-SQL push (`sql` with `values`); returns whether it added a job.
    async fn push_with(&self, sql: &str, values: Vec<Value>) -> Result<bool, RepoError> {
        Ok(self.db.execute(self.db.conn(), sql, values).await? == 1)
    }

    /// Whether `queue` holds the job `id` (in any state).
    pub async fn has_id(&self, queue: &str, id: &str) -> Result<bool, RepoError> {
        let table = self.table();
        let row: Option<Present> = self
            .db
            .fetch_optional(
                self.db.conn(),
                format!("SELECT 1 AS present FROM {table} WHERE job_type = $1 AND id = $2"),
                vec![Value::from(queue), Value::from(id)],
            )
            .await?;
        Ok(row.is_some())
    }

    /// The newest job of `queue` (by when it was due) whose idempotency key starts with
    /// `prefix` (a schedule's ticks: `backfill_tick:<secs>`), with its key: a range of the
    /// queue's keyed jobs in apalis's `(job_type, idempotency_key)` index, never its other
    /// jobs.
    pub async fn newest_keyed(
        &self,
        queue: &str,
        prefix: &str,
    ) -> Result<Option<(QueueJob, String)>, RepoError> {
        #[derive(FromQueryResult)]
        struct Keyed {
            id: String,
            key: String,
        }
        let table = self.table();
        let keyed: Option<Keyed> = self
            .db
            .fetch_optional(
                self.db.conn(),
                format!(
                    "SELECT id, idempotency_key AS key FROM {table} WHERE job_type = $1 \
                     AND idempotency_key IS NOT NULL AND substr(idempotency_key, 1, $2) = $3 \
                     ORDER BY run_at DESC, id DESC LIMIT 1"
                ),
                vec![
                    Value::from(queue),
                    Value::from(prefix.chars().count() as i32),
                    Value::from(prefix),
                ],
            )
            .await?;
        let Some(keyed) = keyed else {
            return Ok(None);
        };
        let row: Option<QueueJobRow> = self
            .db
            .fetch_optional(
                self.db.conn(),
                format!("{} WHERE id = $1", self.sql().select_jobs()),
                vec![Value::from(keyed.id)],
            )
            .await?;
        Ok(row.map(|row| (QueueJob::from(row), keyed.key)))
    }

    /// Whether `queue` holds a job (in any state) with the idempotency key `key`.
    pub async fn has_key(&self, queue: &str, key: &str) -> Result<bool, RepoError> {
        let table = self.table();
        let row: Option<Present> = self
            .db
            .fetch_optional(
                self.db.conn(),
                format!(
                    "SELECT 1 AS present FROM {table} WHERE job_type = $1 AND idempotency_key = $2"
                ),
                vec![Value::from(queue), Value::from(key)],
            )
            .await?;
        Ok(row.is_some())
    }

    /// The backlog of `queue`: jobs per state, each counted up to [`DEPTH_COUNT_CAP`], and
    /// the age of the oldest waiting one. Every read is a bounded range of the
    /// `(job_type, status, last activity)` index (migration 11), however many finished jobs
    /// the table keeps.
    pub async fn depth(&self, queue: &str) -> Result<QueueDepth, RepoError> {
        self.depth_counted_to(queue, DEPTH_COUNT_CAP).await
    }

    /// [`Self::depth`] with each state counted up to `cap`.
    pub async fn depth_counted_to(&self, queue: &str, cap: i64) -> Result<QueueDepth, RepoError> {
        let table = self.table();
        let count = |statuses: &str| {
            format!(
                "(SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE job_type = $1 \
                 AND status IN ({statuses}) LIMIT $2) capped)"
            )
        };
        let sql = format!(
            "SELECT {} AS waiting, {} AS running, {} AS done, {} AS failed, {} AS killed, \
             {} AS oldest_waiting_secs",
            count("'Pending'"),
            count("'Queued', 'Running'"),
            count("'Done'"),
            count("'Failed'"),
            count("'Killed'"),
            self.oldest_waiting_sql(),
        );
        let row: DepthRow = self
            .db
            .fetch_one(
                self.db.conn(),
                "queue depth",
                sql,
                vec![Value::from(queue), Value::from(cap)],
            )
            .await?;
        Ok(QueueDepth {
            queue: queue.to_owned(),
            waiting: row.waiting,
            running: row.running,
            done: row.done,
            failed: row.failed,
            killed: row.killed,
            oldest_waiting_secs: row.oldest_waiting_secs,
        })
    }

    /// The age in seconds of `queue`'s oldest waiting job, if one waits: one entry of the
    /// `(job_type, status, last activity)` index.
    pub async fn oldest_waiting_secs(&self, queue: &str) -> Result<Option<f64>, RepoError> {
        #[derive(FromQueryResult)]
        struct Oldest {
            oldest_waiting_secs: Option<f64>,
        }
        let row: Oldest = self
            .db
            .fetch_one(
                self.db.conn(),
                "oldest waiting job",
                format!(
                    "SELECT {} AS oldest_waiting_secs",
                    self.oldest_waiting_sql()
                ),
                vec![Value::from(queue)],
            )
            .await?;
        Ok(row.oldest_waiting_secs)
    }

    /// The subquery of the oldest waiting job's age, the queue bound at `$1`. The oldest job
    /// that is due: one scheduled ahead is not "waiting" for anything yet.
    fn oldest_waiting_sql(&self) -> String {
        let (table, now, age) = (
            self.table(),
            self.sql().now(),
            self.sql().age_secs("run_at"),
        );
        format!(
            "(SELECT {age} FROM {table} WHERE job_type = $1 AND status = 'Pending' \
             AND run_at <= {now} ORDER BY {LAST_ACTIVITY} LIMIT 1)"
        )
    }

    /// When a job of `queue` last finished successfully (Unix seconds), if one is kept.
    pub async fn last_done_at(&self, queue: &str) -> Result<Option<f64>, RepoError> {
        let table = self.table();
        let epoch = self.sql().epoch_secs(LAST_ACTIVITY);
        // the newest entry of the (job_type, status, last activity) index
        let row: Option<LastDone> = self
            .db
            .fetch_optional(
                self.db.conn(),
                format!(
                    "SELECT {epoch} AS at FROM {table} WHERE job_type = $1 AND status = 'Done' \
                     ORDER BY {LAST_ACTIVITY} DESC LIMIT 1"
                ),
                vec![Value::from(queue)],
            )
            .await?;
        Ok(row.and_then(|r| r.at))
    }

    /// The `limit` most recent runs of `queue` (started or finished; waiting jobs are in
    /// [`Self::depth`]), newest first.
    pub async fn recent_runs(&self, queue: &str, limit: u64) -> Result<Vec<QueueJob>, RepoError> {
        let sql = format!(
            "{} WHERE job_type = $1 AND status <> 'Pending' \
             ORDER BY {LAST_ACTIVITY} DESC, id DESC LIMIT $2",
            self.sql().select_jobs()
        );
        let rows: Vec<QueueJobRow> = self
            .db
            .fetch_all(
                self.db.conn(),
                sql,
                vec![Value::from(queue), Value::from(limit as i64)],
            )
            .await?;
        Ok(rows.into_iter().map(QueueJob::from).collect())
    }

    /// The `limit` workers heard from last, newest first, each with the jobs it holds (one
    /// range of the `lock_by` index per worker).
    pub async fn workers(&self, limit: u64) -> Result<Vec<QueueWorker>, RepoError> {
        let sql = self.sql();
        let (jobs, workers) = (sql.jobs(), sql.workers());
        let rows: Vec<WorkerRow> = self
            .db
            .fetch_all(
                self.db.conn(),
                format!(
                    "SELECT w.id, w.worker_type AS queue, {} AS started_at, {} AS last_seen, \
                     {} AS silent_secs, \
                     (SELECT COUNT(*) FROM {jobs} j WHERE j.lock_by = w.id \
                      AND j.status IN ('Queued', 'Running')) AS holding \
                     FROM {workers} w ORDER BY w.last_seen DESC, w.id LIMIT $1",
                    sql.text_time("w.started_at"),
                    sql.text_time("w.last_seen"),
                    sql.age_secs("w.last_seen"),
                ),
                vec![Value::from(limit as i64)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| QueueWorker {
                id: row.id,
                queue: row.queue,
                started_at: row.started_at,
                last_seen: row.last_seen,
                silent_secs: row.silent_secs.unwrap_or(0.0).max(0.0),
                holding: row.holding,
            })
            .collect())
    }

    /// Deletes finished jobs (`Done`, `Killed`, and `Failed` with no attempt left) of every
    /// queue that finished more than `older_than_secs` ago, and workers silent that long
    /// that no job points at; returns the jobs deleted. Works in chunks so a large backlog
    /// never holds one long lock.
    pub async fn prune_finished(&self, older_than_secs: u64) -> Result<u64, RepoError> {
        let table = self.table();
        let cutoff = self.sql().secs_ago(1);
        let secs = self.sql().secs(older_than_secs);
        let jobs = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
             WHERE (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
             AND done_at < {cutoff} LIMIT {PRUNE_CHUNK})"
        );
        let mut deleted = 0;
        loop {
            let result = self
                .db
                .execute(self.db.conn(), jobs.clone(), vec![secs.clone()])
                .await?;
            deleted += result;
            if result < PRUNE_CHUNK {
                break;
            }
        }
        let workers = self.workers_table();
        self.db
            .execute(
                self.db.conn(),
                format!(
                    "DELETE FROM {workers} WHERE last_seen < {cutoff} \
                     AND NOT EXISTS (SELECT 1 FROM {table} j WHERE j.lock_by = {workers}.id)"
                ),
                vec![secs],
            )
            .await?;
        Ok(deleted)
    }

    fn sql(&self) -> QueueSql {
        QueueSql::of(self.db)
    }

    fn table(&self) -> &'static str {
        self.sql().jobs()
    }

    fn workers_table(&self) -> &'static str {
        self.sql().workers()
    }
}

/// What only the tests and the benchmarks read and write of the queue table.
#[cfg(feature = "reference")]
impl QueueJobRepo<'_> {
    /// The jobs of `queue`, oldest first.
    pub async fn of_queue(&self, queue: &str) -> Result<Vec<QueueJob>, RepoError> {
        let sql = format!(
            "{} WHERE job_type = $1 ORDER BY run_at, id",
            self.sql().select_jobs()
        );
        let rows: Vec<QueueJobRow> = self
            .db
            .fetch_all(self.db.conn(), sql, vec![Value::from(queue)])
            .await?;
        Ok(rows.into_iter().map(QueueJob::from).collect())
    }

    /// Pushes with [`PLAIN_SQL_PUSH`], as other services do (PostgreSQL only); returns
    /// whether a job was added.
    pub async fn push_plain_sql(
        &self,
        queue: &str,
        payload_json: &str,
        max_attempts: i32,
    ) -> Result<bool, RepoError> {
        self.push_with(
            PLAIN_SQL_PUSH,
            vec![
                Value::from(queue),
                Value::from(payload_json),
                Value::from(max_attempts),
            ],
        )
        .await
    }

    /// Jobs of `queue` per status.
    pub async fn count_by_status(&self, queue: &str) -> Result<Vec<(String, i64)>, RepoError> {
        let table = self.table();
        let rows: Vec<StatusCount> = self
            .db
            .fetch_all(
                self.db.conn(),
                format!(
                    "SELECT status, COUNT(*) AS count FROM {table} WHERE job_type = $1 \
                     GROUP BY status ORDER BY status"
                ),
                vec![Value::from(queue)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.status, row.count))
            .collect())
    }

    /// Latency from push (`run_at`) to finish (`done_at`) of the queue's `Done` jobs
    /// (PostgreSQL only).
    pub async fn latency(&self, queue: &str) -> Result<QueueLatency, RepoError> {
        let row: Option<LatencyRow> = self
            .db
            .fetch_optional(
                self.db.conn(),
                "SELECT COUNT(*) AS jobs, \
                 COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), 0) AS p50_ms, \
                 COALESCE(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), 0) AS p99_ms, \
                 COALESCE(MAX(ms), 0) AS max_ms, \
                 COALESCE(EXTRACT(EPOCH FROM MAX(done_at) - MIN(lock_at))::float8, 0) AS span_secs \
                 FROM (SELECT EXTRACT(EPOCH FROM done_at - run_at)::float8 * 1000 AS ms, done_at, lock_at \
                       FROM apalis.jobs WHERE job_type = $1 AND status = 'Done') AS d",
                vec![Value::from(queue)],
            )
            .await?;
        let Some(row) = row else {
            return Ok(QueueLatency::default());
        };
        Ok(QueueLatency {
            jobs: row.jobs,
            p50_ms: row.p50_ms,
            p99_ms: row.p99_ms,
            max_ms: row.max_ms,
            span_secs: row.span_secs,
        })
    }

    /// Deletes every job of `queue`, whatever its state (benchmarks between phases).
    pub async fn delete_all(&self, queue: &str) -> Result<u64, RepoError> {
        let table = self.table();
        let result = self
            .db
            .execute(
                self.db.conn(),
                format!("DELETE FROM {table} WHERE job_type = $1"),
                vec![Value::from(queue)],
            )
            .await?;
        Ok(result)
    }

    /// Deletes the queue's finished jobs (`Done`, `Killed`, and `Failed` with no attempt
    /// left); returns how many.
    pub async fn delete_finished(&self, queue: &str) -> Result<u64, RepoError> {
        let table = self.table();
        let result = self
            .db
            .execute(
                self.db.conn(),
                format!(
                    "DELETE FROM {table} WHERE job_type = $1 AND (status IN ('Done', 'Killed') \
                     OR (status = 'Failed' AND attempts >= max_attempts))"
                ),
                vec![Value::from(queue)],
            )
            .await?;
        Ok(result)
    }
}

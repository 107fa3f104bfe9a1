//! Populate runs and their chunks: `snapline_populate_runs` (how many populates of each
//! target have started; the latest count is the current run) and `snapline_populate_chunks`
//! (the me_file ranges a run was split into, and which have committed), and
//! `snapline_populate_failures` (targets whose last populate failed for good).

use crate::rows::Count;
use crate::{Db, RepoError};
use domain::{MeFileId, TargetId};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

/// Runs and chunks of populates.
pub struct PopulateRunRepo<'a, C = crate::PoolConn> {
    pub(crate) db: &'a Db,
    /// The pool, or the transaction of a [`crate::Tx`].
    pub(crate) conn: &'a C,
}

/// One me_file range of a run: me_files with `after < id <= up_to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRange {
    pub after: MeFileId,
    pub up_to: MeFileId,
}

/// What marking a chunk done found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkFinished {
    /// Marked done now; `left` chunks of the run are not done.
    Now { left: i64 },
    /// It was done already (a chunk run again); `left` chunks of the run are not done.
    Before { left: i64 },
    /// Not recorded: its run was forgotten (a newer run started).
    NotRecorded,
}

/// A target whose last populate failed for good: left `not_populated`, this says why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, FromQueryResult)]
pub struct PopulateFailure {
    pub target_id: i64,
    /// When (Unix seconds, the database's clock).
    pub failed_at: i64,
    pub error: String,
}

/// Characters of a failure's error kept.
const FAILURE_ERROR_CHARS: usize = 2_000;

#[derive(Debug, FromQueryResult)]
struct Started {
    started: i64,
}

/// How far a target's current populate run has got ([`PopulateRunRepo::progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, FromQueryResult)]
pub struct RunProgress {
    pub run: i64,
    pub chunks: i64,
    pub chunks_done: i64,
    /// Rows the chunks done wrote (inserted, moved, refreshed and deleted).
    pub rows_written: i64,
    /// Seconds since the run started; `None` for a run started before snapline recorded it.
    pub elapsed_secs: Option<i64>,
}

impl<C: ConnectionTrait> PopulateRunRepo<'_, C> {
    /// Records that the populate of `target_id` failed for good, with `error` (cut to a
    /// bounded length), replacing an earlier record.
    pub async fn record_failure(&self, target_id: TargetId, error: &str) -> Result<(), RepoError> {
        let error: String = error.chars().take(FAILURE_ERROR_CHARS).collect();
        self.db
            .execute(
                self.conn,
                format!(
                    "INSERT INTO snapline_populate_failures (target_id, failed_at, error) \
                     VALUES ($1, CAST({} AS BIGINT), $2) \
                     ON CONFLICT (target_id) DO UPDATE SET failed_at = excluded.failed_at, \
                     error = excluded.error",
                    self.db.epoch_now_sql()
                ),
                vec![target_id.0.into(), error.into()],
            )
            .await?;
        Ok(())
    }

    /// Forgets a failure of `target_id` (a populate of it succeeded).
    pub async fn clear_failure(&self, target_id: TargetId) -> Result<(), RepoError> {
        self.db
            .execute(
                self.conn,
                "DELETE FROM snapline_populate_failures WHERE target_id = $1",
                vec![target_id.0.into()],
            )
            .await?;
        Ok(())
    }

    /// The newest `limit` failures recorded.
    pub async fn failures(&self, limit: u64) -> Result<Vec<PopulateFailure>, RepoError> {
        self.db
            .fetch_all(
                self.conn,
                "SELECT target_id, failed_at, error FROM snapline_populate_failures \
                 ORDER BY failed_at DESC, target_id LIMIT $1",
                vec![Value::from(limit as i64)],
            )
            .await
    }

    /// How many targets have a failure recorded.
    pub async fn failure_count(&self) -> Result<i64, RepoError> {
        let row: Count = self
            .db
            .fetch_one(
                self.conn,
                "populate failures",
                "SELECT COUNT(*) AS count FROM snapline_populate_failures",
                vec![],
            )
            .await?;
        Ok(row.count)
    }

    /// Counts a populate of `target_id` as started (before it sets `populating`) and returns
    /// the count: the run's number. A sync compares its cached band metadata with it; a
    /// chunk compares its own run with it.
    pub async fn start(&self, target_id: TargetId) -> Result<i64, RepoError> {
        let now = self.db.epoch_now_sql();
        let row: Started = self
            .db
            .fetch_one(
                self.conn,
                "populate run",
                format!(
                    "INSERT INTO snapline_populate_runs (target_id, started, started_at) \
                     VALUES ($1, 1, {now}) ON CONFLICT (target_id) DO UPDATE SET \
                     started = snapline_populate_runs.started + 1, started_at = {now} \
                     RETURNING started"
                ),
                vec![target_id.0.into()],
            )
            .await?;
        Ok(row.started)
    }

    /// How far the target's current run has got: its chunks, those done, the rows they
    /// wrote, and the seconds since it started (`None`: never populated by snapline).
    pub async fn progress(&self, target_id: TargetId) -> Result<Option<RunProgress>, RepoError> {
        let now = self.db.epoch_now_sql();
        let row: Option<RunProgress> = self
            .db
            .fetch_optional(
                self.conn,
                format!(
                    "SELECT r.started AS run, COUNT(c.after_me_file) AS chunks, \
                     CAST(COALESCE(SUM(CASE WHEN c.done THEN 1 ELSE 0 END), 0) AS BIGINT) AS chunks_done, \
                     CAST(COALESCE(SUM(c.rows_written), 0) AS BIGINT) AS rows_written, \
                     CAST({now} - r.started_at AS BIGINT) AS elapsed_secs \
                     FROM snapline_populate_runs r \
                     LEFT JOIN snapline_populate_chunks c ON c.target_id = r.target_id AND c.run = r.started \
                     WHERE r.target_id = $1 GROUP BY r.started, r.started_at"
                ),
                vec![target_id.0.into()],
            )
            .await?;
        Ok(row)
    }

    /// The target's current run (`None`: never populated by snapline). Inside a transaction
    /// on PostgreSQL the row stays locked until it ends, so chunks of one run finish one at a
    /// time (SQLite runs one write transaction at a time anyway).
    pub async fn lock_current(&self, target_id: TargetId) -> Result<Option<i64>, RepoError> {
        let lock = match self.db.backend() {
            crate::Backend::Postgres => " FOR UPDATE",
            crate::Backend::Sqlite => "",
        };
        let row: Option<Started> = self
            .db
            .fetch_optional(
                self.conn,
                format!("SELECT started FROM snapline_populate_runs WHERE target_id = $1{lock}"),
                vec![target_id.0.into()],
            )
            .await?;
        Ok(row.map(|r| r.started))
    }

    /// Records the chunks of run `run` (not done) and forgets those of the target's other runs.
    pub async fn record_chunks(
        &self,
        target_id: TargetId,
        run: i64,
        chunks: &[ChunkRange],
    ) -> Result<(), RepoError> {
        self.db
            .execute(
                self.conn,
                "DELETE FROM snapline_populate_chunks WHERE target_id = $1 AND run <> $2",
                vec![target_id.0.into(), run.into()],
            )
            .await?;
        for part in chunks.chunks(500) {
            let mut sql = String::from(
                "INSERT INTO snapline_populate_chunks (target_id, run, after_me_file, up_to_me_file) VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity(part.len() * 4);
            for (i, chunk) in part.iter().enumerate() {
                let n = i * 4;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4));
                values.extend([
                    target_id.0.into(),
                    run.into(),
                    chunk.after.0.into(),
                    chunk.up_to.0.into(),
                ]);
            }
            sql.push_str(" ON CONFLICT DO NOTHING");
            self.db.execute(self.conn, sql, values).await?;
        }
        Ok(())
    }

    /// Marks the chunk of `run` starting after `after` done, having written `rows` rows.
    pub async fn finish_chunk(
        &self,
        target_id: TargetId,
        run: i64,
        after: MeFileId,
        rows: u64,
    ) -> Result<ChunkFinished, RepoError> {
        let key: Vec<Value> = vec![target_id.0.into(), run.into(), after.0.into()];
        let now = self.db.epoch_now_sql();
        let mut marking = key.clone();
        marking.push(Value::from(i64::try_from(rows).unwrap_or(i64::MAX)));
        let marked = self
            .db
            .execute(
                self.conn,
                format!(
                    "UPDATE snapline_populate_chunks SET done = TRUE, rows_written = $4, done_at = {now} \
                     WHERE target_id = $1 AND run = $2 AND after_me_file = $3 AND NOT done"
                ),
                marking,
            )
            .await?;
        if marked == 1 {
            return Ok(ChunkFinished::Now {
                left: self.chunks_left(target_id, run).await?,
            });
        }
        let recorded: Option<crate::rows::Present> = self
            .db
            .fetch_optional(
                self.conn,
                "SELECT 1 AS present FROM snapline_populate_chunks \
                 WHERE target_id = $1 AND run = $2 AND after_me_file = $3",
                key,
            )
            .await?;
        Ok(match recorded {
            Some(_) => ChunkFinished::Before {
                left: self.chunks_left(target_id, run).await?,
            },
            None => ChunkFinished::NotRecorded,
        })
    }

    /// Chunks of `run` not yet done.
    pub async fn chunks_left(&self, target_id: TargetId, run: i64) -> Result<i64, RepoError> {
        let left: Count = self
            .db
            .fetch_one(
                self.conn,
                "chunks left",
                "SELECT COUNT(*) AS count FROM snapline_populate_chunks \
                 WHERE target_id = $1 AND run = $2 AND NOT done",
                vec![target_id.0.into(), run.into()],
            )
            .await?;
        Ok(left.count)
    }
}

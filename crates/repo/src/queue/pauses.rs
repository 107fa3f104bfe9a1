//! `snapline_queue_pauses`: which queues an operator paused; `snapline_queue_scales`: the
//! workers per replica an operator set for a queue.

use crate::{Db, RepoError};
use sea_orm::{FromQueryResult, Value};

#[derive(FromQueryResult)]
struct PauseRow {
    queue: String,
    paused_at: i64,
}

/// The pause switches of the queues: a row per paused queue, read by every serving replica.
pub struct QueuePauseRepo<'a> {
    pub(crate) db: &'a Db,
}

impl QueuePauseRepo<'_> {
    /// Pauses `queue`; returns whether it was running (a second pause changes nothing).
    pub async fn pause(&self, queue: &str) -> Result<bool, RepoError> {
        let now = self.db.epoch_now_sql();
        let result = self
            .db
            .execute(
                self.db.conn(),
                format!(
                    "INSERT INTO snapline_queue_pauses (queue, paused_at) VALUES ($1, {now}) \
                     ON CONFLICT (queue) DO NOTHING"
                ),
                vec![Value::from(queue)],
            )
            .await?;
        Ok(result == 1)
    }

    /// Resumes `queue`; returns whether it was paused.
    pub async fn resume(&self, queue: &str) -> Result<bool, RepoError> {
        let result = self
            .db
            .execute(
                self.db.conn(),
                "DELETE FROM snapline_queue_pauses WHERE queue = $1",
                vec![Value::from(queue)],
            )
            .await?;
        Ok(result == 1)
    }

    /// The paused queues with when each was paused (Unix seconds), by name.
    pub async fn paused(&self) -> Result<Vec<(String, i64)>, RepoError> {
        let rows: Vec<PauseRow> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT queue, CAST(paused_at AS BIGINT) AS paused_at \
                 FROM snapline_queue_pauses ORDER BY queue",
                vec![],
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.queue, r.paused_at)).collect())
    }
}

#[derive(FromQueryResult)]
struct ScaleRow {
    queue: String,
    workers: i64,
}

/// The workers per replica set for queues, read by every serving replica.
pub struct QueueScaleRepo<'a> {
    pub(crate) db: &'a Db,
}

impl QueueScaleRepo<'_> {
    /// Sets `queue`'s workers per replica (replacing what was set).
    pub async fn set(&self, queue: &str, workers: i64) -> Result<(), RepoError> {
        let now = self.db.epoch_now_sql();
        self.db
            .execute(
                self.db.conn(),
                format!(
                    "INSERT INTO snapline_queue_scales (queue, workers, set_at) VALUES ($1, $2, {now}) \
                     ON CONFLICT (queue) DO UPDATE SET workers = excluded.workers, set_at = excluded.set_at"
                ),
                vec![Value::from(queue), Value::from(workers)],
            )
            .await?;
        Ok(())
    }

    /// Forgets what was set for `queue` (its configured value applies); returns whether
    /// something was set.
    pub async fn clear(&self, queue: &str) -> Result<bool, RepoError> {
        let result = self
            .db
            .execute(
                self.db.conn(),
                "DELETE FROM snapline_queue_scales WHERE queue = $1",
                vec![Value::from(queue)],
            )
            .await?;
        Ok(result == 1)
    }

    /// The queues with workers set, by name.
    pub async fn all(&self) -> Result<Vec<(String, i64)>, RepoError> {
        let rows: Vec<ScaleRow> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT queue, CAST(workers AS BIGINT) AS workers \
                 FROM snapline_queue_scales ORDER BY queue",
                vec![],
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.queue, r.workers)).collect())
    }
}

//! The syncers' side of change capture (PostgreSQL): drains `snapline_capture_outbox`, where
//! capture's triggers leave the me_files the platform's writes changed, into `sync_me_file`
//! jobs ([`repo::CaptureRepo::drain`]). Every syncer replica drains; rows one replica holds
//! are skipped by the others, and what is taken is pushed in the same statement, so a crash
//! loses nothing and pushes nothing twice.

use crate::JobError;
use repo::{Backend, Db};
use std::time::Duration;

/// Outbox rows taken per statement; a full batch is followed at once by the next.
pub const DRAIN_BATCH: u64 = 1_000;

/// How long the drain waits after an error (the database going away) before trying again.
const AFTER_ERROR: Duration = Duration::from_secs(1);

/// The wait after a drain that found changes: while the platform writes, the next ones are
/// taken within a few milliseconds; the wait doubles with each empty drain up to `every`.
const WHILE_BUSY: Duration = Duration::from_millis(2);

/// Drains the outbox until `shutdown` completes: at once again after a full batch, 2 ms
/// after a drain that found changes, and at most `every` apart once idle (the wait doubles
/// with each empty drain). On SQLite, where capture does not exist, it only waits for
/// `shutdown`.
pub async fn serve(
    db: Db,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), JobError> {
    tokio::pin!(shutdown);
    if db.backend() != Backend::Postgres {
        shutdown.await;
        return Ok(());
    }
    let mut idle = WHILE_BUSY.min(every);
    loop {
        let pause = match db.capture().drain(DRAIN_BATCH).await {
            Ok((taken, pushed)) => {
                if taken > 0 {
                    tracing::debug!(taken, pushed, "capture outbox drained");
                }
                if taken >= DRAIN_BATCH {
                    Duration::ZERO
                } else if taken > 0 {
                    idle = WHILE_BUSY.min(every);
                    idle
                } else {
                    idle = (idle * 2).min(every);
                    idle
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "draining the capture outbox failed; trying again");
                AFTER_ERROR
            }
        };
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

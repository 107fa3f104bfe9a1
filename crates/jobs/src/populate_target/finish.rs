//! The finish step: a committed chunk recorded, and the chunk that commits last sets the
//! target `populated`.

use super::failure::target_deleted;
use super::types::PopulateSummary;
use crate::JobError;
use domain::{PopulationStatus, TargetBands, TargetId};
use repo::{ChunkFinished, ChunkRange, Db};

/// Records a committed chunk of run `run` with the rows it wrote (`done`'s changes); the
/// chunk that finds every other chunk of the run done sets the target `populated` (with the
/// platform's event, in one transaction).
/// Returns the status the run is in: `populated`, `populating` (chunks left) or
/// `superseded` (a newer run started; this one never finishes).
pub(super) async fn finish_chunk(
    db: &Db,
    target_id: TargetId,
    run: i64,
    chunk: ChunkRange,
    done: &PopulateSummary,
    target: &TargetBands,
) -> Result<String, JobError> {
    let tx = db.begin_write().await?;
    if tx.populate_runs().lock_current(target_id).await? != Some(run) {
        return Ok(SUPERSEDED.into());
    }
    match tx
        .populate_runs()
        .finish_chunk(target_id, run, chunk.after, done.changes())
        .await?
    {
        ChunkFinished::NotRecorded => Ok(SUPERSEDED.into()),
        // Done by an earlier try whose job was not acknowledged: nothing to record again.
        ChunkFinished::Before { left: 0 } => Ok(PopulationStatus::Populated.as_str().into()),
        ChunkFinished::Before { .. } => Ok(PopulationStatus::Populating.as_str().into()),
        ChunkFinished::Now { left: 0 } => {
            if !tx
                .targets()
                .set_status(target_id, PopulationStatus::Populated)
                .await?
            {
                drop(tx);
                return Err(target_deleted(db, target_id, target).await);
            }
            tx.events().target_populated(target_id.0).await?;
            tx.populate_runs().clear_failure(target_id).await?;
            tx.commit().await?;
            Ok(PopulationStatus::Populated.as_str().into())
        }
        ChunkFinished::Now { left } => {
            tx.commit().await?;
            tracing::debug!(target_id = %target_id, run, chunks_left = left, "chunk committed");
            Ok(PopulationStatus::Populating.as_str().into())
        }
    }
}

/// The status of a chunk whose run a newer run replaced.
pub const SUPERSEDED: &str = "superseded";

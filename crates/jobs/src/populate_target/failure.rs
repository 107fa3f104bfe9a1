//! A populate that ends without its rows: failed for good, or its target deleted under it.

use crate::JobError;
use domain::{PopulationStatus, TargetBands, TargetId};
use repo::Db;

/// A populate of `target_id` that no retry can help: the target goes back to
/// `not_populated` (the platform knows no other status, and asks again for a target in it:
/// the marketer's button, a campaign launch), and why is kept in snapline's own records
/// (`snapctl status`, the board, `snapline_populate_failures`). Best effort: the error
/// itself is what the job reports.
pub(super) async fn failed_for_good(db: &Db, target_id: TargetId, err: &JobError) {
    tracing::error!(target_id = %target_id, error = %err, "populate failed for good: target left not_populated");
    match db
        .targets()
        .set_status(target_id, PopulationStatus::NotPopulated)
        .await
    {
        Ok(true) => {}
        // No such target: nothing for the platform to ask again, nothing to record.
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(target_id = %target_id, error = %e, "could not set the failed target not_populated");
        }
    }
    if let Err(e) = db
        .populate_runs()
        .record_failure(target_id, &err.to_string())
        .await
    {
        tracing::warn!(target_id = %target_id, error = %e, "could not record the populate's failure");
    }
}

/// A target deleted under its populate: the rows this and earlier runs wrote for its bands
/// mean nothing any more (no sync or backfill will touch them), so they go, in bounded
/// deletes. Returns the error the run ends with.
pub(super) async fn target_deleted(db: &Db, target_id: TargetId, target: &TargetBands) -> JobError {
    let band_ids: Vec<_> = target.bands().iter().map(|b| b.id).collect();
    tracing::warn!(target_id = %target_id, "target deleted during its populate: removing its populations");
    let mut removed = 0;
    loop {
        match db
            .populations()
            .delete_some_of_bands(&band_ids, TARGET_DELETED_BATCH)
            .await
        {
            Ok(0) => break,
            Ok(n) => removed += n,
            Err(err) => return err.into(),
        }
    }
    JobError::TargetDeleted {
        target: target_id,
        removed,
    }
}

/// Populations removed per statement after a target was deleted under its populate.
const TARGET_DELETED_BATCH: u64 = 10_000;

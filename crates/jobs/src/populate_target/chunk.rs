//! One chunk of a run taken from the queue.

use super::failure::failed_for_good;
use super::finish::finish_chunk;
use super::run::lease_name;
use super::run::populate_chunk_range;
use super::*;
use crate::JobError;
use crate::lease::HeldLease;
use domain::{PopulationStatus, TargetId};
use repo::Db;
use std::time::Instant;

/// Populates one chunk taken from the queue: nothing when its run is no longer the target's
/// latest; otherwise its me_files, then [`finish_chunk`], releasing the run's lease when it
/// was the last. A chunk that fails for good (or on its last attempt) marks the target
/// `failed` and releases the lease, so the next populate need not wait for it to expire.
pub async fn populate_chunk(
    db: &Db,
    chunk: &PopulateChunk,
    options: &PopulateOptions,
    last_attempt: bool,
) -> Result<PopulateSummary, JobError> {
    let started = Instant::now();
    let target_id = TargetId(chunk.target_id);
    let mut summary = PopulateSummary {
        target_id: chunk.target_id,
        run: chunk.run,
        ..PopulateSummary::default()
    };
    if db.populate_runs().lock_current(target_id).await? != Some(chunk.run) {
        tracing::info!(target_id = %target_id, run = chunk.run, "a newer populate of the target started: chunk skipped");
        summary.status = SUPERSEDED.into();
        return Ok(summary);
    }
    let lease = HeldLease::resume(
        db,
        lease_name(target_id),
        chunk.lease_owner.clone(),
        options.lease_ttl,
    )
    .await?;
    let result = async {
        let target = db.bands().of_target(target_id).await?;
        let done =
            populate_chunk_range(db, target_id, &target, chunk.range(), options, &lease).await?;
        let status = finish_chunk(db, target_id, chunk.run, chunk.range(), &done, &target).await?;
        Ok::<_, JobError>((done, status))
    }
    .await;
    match result {
        Ok((done, status)) => {
            summary.absorb(&done);
            if status == PopulationStatus::Populated.as_str() {
                lease.release(db).await;
                tracing::info!(target_id = %target_id, run = chunk.run, "target populated: the run's last chunk committed");
            }
            summary.status = status;
            summary.elapsed_ms = started.elapsed().as_millis() as u64;
            Ok(summary)
        }
        Err(err) => {
            if !err.is_transient() || last_attempt {
                let current = db.populate_runs().lock_current(target_id).await;
                if matches!(current, Ok(Some(run)) if run == chunk.run) {
                    failed_for_good(db, target_id, &err).await;
                    lease.release(db).await;
                }
            }
            Err(err)
        }
    }
}

//! A run of a whole target: its lease, its chunks planned and recorded, and a chunk's
//! me_files populated batch by batch.

use super::failure::{failed_for_good, target_deleted};
use super::finish::finish_chunk;
use super::*;
use crate::lease::HeldLease;
use crate::{JobError, plan_population};
use domain::{MeFileId, PopulationStatus, TargetBands, TargetId, TraitId};
use futures::{StreamExt, TryStreamExt};
use repo::{ChunkRange, Db};
use std::time::Instant;
use tracing::Instrument;

/// Where a run's chunks are populated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunksRun {
    /// All of them by the caller, one after the other.
    Here,
    /// By whichever populator replicas take them from [`CHUNK_QUEUE`] (one chunk: here).
    OnTheQueue,
}

/// Populates `target_id` in this process, every chunk of the run here. Errors say whether a
/// retry can help ([`JobError::is_transient`]).
pub async fn populate_target(
    db: &Db,
    target_id: TargetId,
    options: &PopulateOptions,
) -> Result<PopulateSummary, JobError> {
    start_populate(db, target_id, options, ChunksRun::Here).await
}

/// What a `populate_target` job does: starts a run of `target_id` and pushes one
/// `populate_chunk` job per chunk, which hold the run's lease from then on (status
/// `populating`); a run of one chunk is populated here (status `populated`).
pub async fn populate_target_on_queue(
    db: &Db,
    target_id: TargetId,
    options: &PopulateOptions,
) -> Result<PopulateSummary, JobError> {
    start_populate(db, target_id, options, ChunksRun::OnTheQueue).await
}

/// Takes the target's lease, starts a run and populates its chunks (`where_`); the lease is
/// released here unless the run's chunks went to the queue, which release it when the last
/// one commits.
async fn start_populate(
    db: &Db,
    target_id: TargetId,
    options: &PopulateOptions,
    where_: ChunksRun,
) -> Result<PopulateSummary, JobError> {
    let started = Instant::now();
    crate::error::check_target_exists(db, target_id).await?;
    let lease = HeldLease::acquire(
        db,
        lease_name(target_id),
        options.lease_ttl,
        options.lock_wait,
    )
    .await?;
    let result = run_holding_lease(db, target_id, options, &lease, where_).await;
    if let Err(err) = &result
        && !err.is_transient()
    {
        failed_for_good(db, target_id, err).await;
    }
    let handed_over = where_ == ChunksRun::OnTheQueue
        && matches!(&result, Ok(summary) if summary.chunks > 1 && summary.status == PopulationStatus::Populating.as_str());
    if !handed_over {
        lease.release(db).await;
    }
    result.map(|mut summary| {
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        summary
    })
}

pub(super) fn lease_name(target_id: TargetId) -> String {
    format!("populate_target:{target_id}")
}

async fn run_holding_lease(
    db: &Db,
    target_id: TargetId,
    options: &PopulateOptions,
    lease: &HeldLease,
    where_: ChunksRun,
) -> Result<PopulateSummary, JobError> {
    let mut summary = PopulateSummary {
        target_id: target_id.0,
        orphans: db.populations().count_orphans().await?,
        ..PopulateSummary::default()
    };
    let target = db.bands().of_target(target_id).await?;
    if target.bands().is_empty() {
        tracing::warn!(target_id = %target_id, "target has no bands: nothing to populate");
        db.targets()
            .set_status(target_id, PopulationStatus::NotPopulated)
            .await?;
        summary.status = PopulationStatus::NotPopulated.as_str().into();
        return Ok(summary);
    }
    let chunks = plan_chunks(db, options.chunk_me_files).await?;
    // Counted first (in the same transaction): a sync that sees the count has moved drops
    // bands it cached before.
    let tx = db.begin_write().await?;
    let run = tx.populate_runs().start(target_id).await?;
    tx.targets()
        .set_status(target_id, PopulationStatus::Populating)
        .await?;
    tx.populate_runs()
        .record_chunks(target_id, run, &chunks)
        .await?;
    tx.commit().await?;
    summary.run = run;
    summary.chunks = chunks.len() as u64;
    tracing::info!(target_id = %target_id, run, chunks = chunks.len(), bands = target.bands().len(), batch_size = options.batch_size, "populating target");

    if where_ == ChunksRun::OnTheQueue && chunks.len() > 1 {
        for chunk in &chunks {
            let payload = PopulateChunk {
                target_id: target_id.0,
                run,
                after: chunk.after.0,
                up_to: chunk.up_to.0,
                lease_owner: lease.owner.clone(),
            };
            let key = format!("populate_chunk:{target_id}:{run}:{}", chunk.after);
            crate::queue::push_once(
                db,
                CHUNK_QUEUE,
                payload,
                crate::queue::DEFAULT_MAX_ATTEMPTS,
                &key,
            )
            .await?;
        }
        summary.status = PopulationStatus::Populating.as_str().into();
        tracing::info!(target_id = %target_id, run, chunks = chunks.len(), "run handed to populate_chunk jobs");
        return Ok(summary);
    }
    // The first error drops the chunks still running (their open batch transactions roll
    // back) and ends the run with that error, as one chunk's error did before.
    let mut finished = futures::stream::iter(chunks.iter().copied())
        .map(|chunk| {
            let target = &target;
            async move {
                let done =
                    populate_chunk_range(db, target_id, target, chunk, options, lease).await?;
                let status = finish_chunk(db, target_id, run, chunk, &done, target).await?;
                Ok::<_, JobError>((done, status))
            }
        })
        .buffer_unordered(options.chunks_at_once.max(1));
    while let Some((done, status)) = finished.try_next().await? {
        summary.absorb(&done);
        // Exactly one chunk (the one that found every other one committed) says populated,
        // not always the last to report here.
        if summary.status != PopulationStatus::Populated.as_str() {
            summary.status = status;
        }
    }
    if summary.status == PopulationStatus::Populated.as_str() {
        tracing::info!(target_id = %target_id, inserted = summary.inserted, moved = summary.moved, refreshed = summary.refreshed, deleted = summary.deleted, unchanged = summary.unchanged, orphans = summary.orphans, "target populated");
    }
    Ok(summary)
}

/// Cuts the me_files into ranges of `chunk_me_files` (the last one open-ended: it also
/// removes rows of me_files beyond the last).
async fn plan_chunks(db: &Db, chunk_me_files: u64) -> Result<Vec<ChunkRange>, JobError> {
    let mut chunks = Vec::new();
    let mut after = MeFileId(0);
    while let Some(last) = db
        .tags()
        .me_file_id_at(after, chunk_me_files.max(1) - 1)
        .await?
    {
        chunks.push(ChunkRange { after, up_to: last });
        after = last;
    }
    chunks.push(ChunkRange {
        after,
        up_to: MeFileId(i64::MAX),
    });
    Ok(chunks)
}

/// Populates the me_files of one chunk, batch by batch, renewing the run's lease in each.
pub(super) async fn populate_chunk_range(
    db: &Db,
    target_id: TargetId,
    target: &TargetBands,
    chunk: ChunkRange,
    options: &PopulateOptions,
    lease: &HeldLease,
) -> Result<PopulateSummary, JobError> {
    let mut summary = PopulateSummary {
        target_id: target_id.0,
        ..PopulateSummary::default()
    };
    let band_ids: Vec<_> = target.bands().iter().map(|b| b.id).collect();
    let traits: Vec<TraitId> = target.trait_ids().collect();
    let mut cursor = chunk.after;
    loop {
        options
            .stop
            .check(&format!("populate of target {target_id}"))?;
        lease.renew_when_due(db).await?;
        let tx = db.begin_write().await?;
        if !tx.targets().exists(target_id).await? {
            drop(tx);
            return Err(target_deleted(db, target_id, target).await);
        }
        let mut me_files = tx
            .tags()
            .me_file_ids_after(cursor, chunk.up_to, options.batch_size)
            .await?;
        // At most a few lock ranges per batch, however sparse the ids (see lock_me_files).
        me_files.truncate(within_lock_ranges(&me_files, MAX_LOCK_RANGES_PER_BATCH));
        // After the chunk's last me_file, one more pass over the rest of its range removes
        // rows of me_files that no longer exist.
        let last = me_files.is_empty();
        let up_to = me_files.last().copied().unwrap_or(chunk.up_to);
        tx.populations().lock_me_files(&me_files).await?;
        let tags = tx
            .tags()
            .in_me_file_range(cursor, up_to, &traits)
            .instrument(tracing::info_span!(
                "populate.read_tags",
                after = cursor.0,
                up_to = up_to.0
            ))
            .await?;
        let existing = tx
            .populations()
            .in_me_file_range(&band_ids, cursor, up_to)
            .instrument(tracing::info_span!("populate.read_rows"))
            .await?;
        let mut plan = plan_population(target, &me_files, &tags, existing);
        let applied = tx
            .populations()
            .apply_changes(&plan.changes)
            .instrument(tracing::info_span!(
                "populate.write",
                me_files = me_files.len()
            ))
            .await?;
        // No per-me_file event from a populate: the platform is told once, when the target
        // is populated (a 1M-member populate must not enqueue a million reconciliations);
        // per-me_file band changes come from syncs only, as the platform's own sync did.
        tx.commit()
            .instrument(tracing::info_span!("populate.commit"))
            .await?;
        // Rows of gone me_files are deleted only if still gone: count what was.
        plan.deleted = applied.deleted;
        crate::metrics::populations_written(
            plan.inserted,
            plan.moved,
            plan.refreshed,
            plan.deleted,
        );

        summary.batches += 1;
        summary.me_files_scanned += me_files.len() as u64;
        summary.inserted += plan.inserted;
        summary.moved += plan.moved;
        summary.refreshed += plan.refreshed;
        summary.deleted += plan.deleted;
        summary.unchanged += plan.unchanged;
        tracing::debug!(target_id = %target_id, batch = summary.batches, me_files = summary.me_files_scanned, inserted = plan.inserted, moved = plan.moved, refreshed = plan.refreshed, deleted = plan.deleted, "batch written");
        if summary.batches.is_multiple_of(50) {
            tracing::info!(target_id = %target_id, batch = summary.batches, me_files = summary.me_files_scanned, "populating");
        }
        if last {
            return Ok(summary);
        }
        cursor = up_to;
        if !options.batch_pause.is_zero() {
            tokio::time::sleep(options.batch_pause).await;
        }
    }
}

/// Lock ranges one batch may hold: 8 advisory locks per transaction, whatever the batch
/// size and the number of replicas (a stock server has 64 per connection on average). With
/// dense ids a batch of 5,000 spans 5 ranges; sparse ids make batches smaller instead.
pub const MAX_LOCK_RANGES_PER_BATCH: usize = 8;

/// How many of `page` (ascending ids) a batch takes so that their lock ranges number at most
/// `max_ranges`: a prefix, never empty when `page` is not.
pub fn within_lock_ranges(page: &[MeFileId], max_ranges: usize) -> usize {
    let Some(first) = page.first() else { return 0 };
    let limit = repo::me_file_lock_range(*first) + max_ranges.max(1) as i64;
    page.partition_point(|m| repo::me_file_lock_range(*m) < limit)
}

#[cfg(test)]
mod tests {
    use super::within_lock_ranges;
    use domain::MeFileId;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_batch_spans_at_most_the_allowed_lock_ranges(
            mut ids in proptest::collection::vec(1i64..5_000_000, 0..2_000),
            max in 1usize..16,
        ) {
            ids.sort_unstable();
            ids.dedup();
            let page: Vec<MeFileId> = ids.into_iter().map(MeFileId).collect();
            let taken = within_lock_ranges(&page, max);
            let mut ranges: Vec<i64> = page[..taken].iter().map(|m| repo::me_file_lock_range(*m)).collect();
            ranges.dedup();
            prop_assert!(ranges.len() <= max);
            prop_assert_eq!(taken == 0, page.is_empty());
            // the batch stops only where the next id lies beyond the allowed span of ranges
            if taken < page.len() {
                let first = repo::me_file_lock_range(page[0]);
                prop_assert!(repo::me_file_lock_range(page[taken]) >= first + max as i64);
            }
        }
    }

    #[test]
    fn dense_ids_keep_the_whole_batch() {
        let page: Vec<MeFileId> = (1..=5_000).map(MeFileId).collect();
        assert_eq!(within_lock_ranges(&page, 8), 5_000);
    }
}

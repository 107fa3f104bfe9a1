//! `populate_target {"target_id": i64}` on queue `populate_target`: (re)computes a whole
//! target's populations with their snapshots.
//!
//! When it runs: when a marketer creates or edits a target, or by hand
//! (`populator enqueue --target ID`, or inline with `populator run --target ID`).
//!
//! What it changes: sets the target `populating`, then walks every me_file in keyset-paged
//! batches; per batch, in one transaction, it inserts new members with their snapshot,
//! moves me_files whose band changed, rewrites stale snapshots and deletes rows that no longer
//! match. Only when every batch is written does it set `populated` and `last_populated_at`,
//! so a reader that waits for `populated` never sees a missing or stale snapshot. A target
//! with no bands ends `not_populated`. A second populate of the same target waits for the
//! first (a lease in `snapline_leases`); a rerun changes nothing.

use crate::lease::HeldLease;
use crate::queue::Payload;
use crate::{JobError, plan_population};
use domain::{MeFileId, PopulationStatus, TargetId, TraitId};
use repo::Db;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tracing::Instrument;

pub const QUEUE: &str = "populate_target";

const PAYLOAD_SHAPE: &str = r#"{"target_id": <integer>}"#;

/// The job payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulateTarget {
    pub target_id: i64,
}

/// Tuning of a populate run.
#[derive(Clone, Debug)]
pub struct PopulateOptions {
    /// Me_files per batch (one transaction each).
    pub batch_size: u64,
    /// How long the run's lease lives without renewal (renewed every batch).
    pub lease_ttl: Duration,
    /// How long to wait for another populate of the same target before failing (retried).
    pub lock_wait: Duration,
    /// Pause after each batch (zero: none): caps the load one run puts on the database.
    pub batch_pause: Duration,
    /// Checked before each batch: `populator run` sets it on Ctrl-C or SIGTERM.
    pub stop: crate::StopRequest,
}

impl Default for PopulateOptions {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            lease_ttl: Duration::from_secs(120),
            lock_wait: Duration::from_secs(600),
            batch_pause: Duration::ZERO,
            stop: crate::StopRequest::default(),
        }
    }
}

/// What a run changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopulateSummary {
    pub target_id: i64,
    /// `populated`, or `not_populated` for a target without bands.
    pub status: String,
    pub inserted: u64,
    pub moved: u64,
    pub deleted: u64,
    pub refreshed: u64,
    pub unchanged: u64,
    /// Populations anywhere whose band no longer exists, or whose band or me_file is NULL:
    /// left alone, counted.
    pub orphans: i64,
    pub batches: u64,
    pub me_files_scanned: u64,
    pub elapsed_ms: u64,
}

impl PopulateSummary {
    pub fn changes(&self) -> u64 {
        self.inserted + self.moved + self.deleted + self.refreshed
    }
}

impl std::fmt::Display for PopulateSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target {}: {} inserted, {} moved, {} deleted, {} refreshed, {} unchanged, {} orphans left alone; {} me_files in {} batches, {:.2}s, status {}",
            self.target_id,
            self.inserted,
            self.moved,
            self.deleted,
            self.refreshed,
            self.unchanged,
            self.orphans,
            self.me_files_scanned,
            self.batches,
            self.elapsed_ms as f64 / 1000.0,
            self.status
        )
    }
}

/// Populates `target_id`. Errors say whether a retry can help ([`JobError::is_transient`]).
pub async fn populate_target(
    db: &Db,
    target_id: TargetId,
    options: &PopulateOptions,
) -> Result<PopulateSummary, JobError> {
    let started = Instant::now();
    crate::error::check_target_exists(db, target_id).await?;
    let lease = HeldLease::acquire(
        db,
        format!("populate_target:{target_id}"),
        options.lease_ttl,
        options.lock_wait,
    )
    .await?;
    let result = populate_holding_lease(db, target_id, options, &lease).await;
    if let Err(err) = &result
        && !err.is_transient()
    {
        // A retry cannot help: say so on the target instead of leaving it `populating`.
        let _ = db
            .targets()
            .set_status(target_id, PopulationStatus::Failed)
            .await;
    }
    lease.release(db).await;
    result.map(|mut summary| {
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        summary
    })
}

async fn populate_holding_lease(
    db: &Db,
    target_id: TargetId,
    options: &PopulateOptions,
    lease: &HeldLease,
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
    // Counted first: a sync that sees the count has moved drops bands it cached before.
    db.targets().count_populate_started(target_id).await?;
    db.targets()
        .set_status(target_id, PopulationStatus::Populating)
        .await?;
    let band_ids: Vec<_> = target.bands().iter().map(|b| b.id).collect();
    let traits: Vec<TraitId> = target.trait_ids().collect();
    tracing::info!(target_id = %target_id, bands = band_ids.len(), traits = traits.len(), batch_size = options.batch_size, "populating target");

    let mut cursor = MeFileId(0);
    loop {
        options
            .stop
            .check(&format!("populate of target {target_id}"))?;
        let tx = db.begin_write().await?;
        lease.renew(&tx).await?;
        if !tx.targets().exists(target_id).await? {
            drop(tx);
            return Err(target_deleted(db, target_id, &band_ids).await);
        }
        let mut me_files = tx
            .tags()
            .me_file_ids_after(cursor, options.batch_size)
            .await?;
        // At most a few lock ranges per batch, however sparse the ids (see lock_me_files).
        me_files.truncate(within_lock_ranges(&me_files, MAX_LOCK_RANGES_PER_BATCH));
        // After the last me_file, one more pass over the rest of the id space removes rows
        // of me_files that no longer exist.
        let last = me_files.is_empty();
        let up_to = me_files.last().copied().unwrap_or(MeFileId(i64::MAX));
        tx.populations().lock_me_files(&me_files).await?;
        let tags = tx.tags().in_me_file_range(cursor, up_to, &traits).await?;
        let existing = tx
            .populations()
            .in_me_file_range(&band_ids, cursor, up_to)
            .await?;
        let mut plan = plan_population(&target, &me_files, &tags, existing);
        let applied = tx.populations().apply_changes(&plan.changes).await?;
        let bands_changed: Vec<i64> = plan.bands_changed.iter().map(|m| m.0).collect();
        tx.events().me_file_bands_changed(&bands_changed).await?;
        tx.commit().await?;
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
            break;
        }
        cursor = up_to;
        if !options.batch_pause.is_zero() {
            tokio::time::sleep(options.batch_pause).await;
        }
    }

    // `populated` and the platform's event in one transaction.
    let tx = db.begin_write().await?;
    if !tx
        .targets()
        .set_status(target_id, PopulationStatus::Populated)
        .await?
    {
        drop(tx);
        return Err(target_deleted(db, target_id, &band_ids).await);
    }
    tx.events().target_populated(target_id.0).await?;
    tx.commit().await?;
    summary.status = PopulationStatus::Populated.as_str().into();
    tracing::info!(target_id = %target_id, inserted = summary.inserted, moved = summary.moved, refreshed = summary.refreshed, deleted = summary.deleted, unchanged = summary.unchanged, orphans = summary.orphans, "target populated");
    Ok(summary)
}

/// A target deleted under its populate: the rows this and earlier runs wrote for its bands
/// mean nothing any more (no sync or backfill will touch them), so they go, in bounded
/// deletes. Returns the error the run ends with.
async fn target_deleted(db: &Db, target_id: TargetId, band_ids: &[domain::BandId]) -> JobError {
    tracing::warn!(target_id = %target_id, "target deleted during its populate: removing its populations");
    let mut removed = 0;
    loop {
        match db
            .populations()
            .delete_some_of_bands(band_ids, TARGET_DELETED_BATCH)
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

/// What a populator worker needs for every job.
#[derive(Clone, Debug)]
pub struct PopulatorContext {
    pub db: Db,
    pub options: PopulateOptions,
}

/// The apalis handler of `populate_target` jobs.
pub async fn handle(
    job: Payload<PopulateTarget>,
    ctx: apalis::prelude::Data<PopulatorContext>,
    attempt: crate::worker::JobAttempt,
) -> Result<PopulateSummary, apalis::prelude::BoxDynError> {
    crate::worker::run_job(QUEUE, &attempt, async {
        let job = job.into_valid(PAYLOAD_SHAPE)?;
        let span = tracing::info_span!("populate_target", target_id = job.target_id);
        let summary = populate_target(&ctx.db, TargetId(job.target_id), &ctx.options)
            .instrument(span)
            .await?;
        tracing::info!(target_id = summary.target_id, %summary, "populate_target done");
        Ok(summary)
    })
    .await
}

/// Pushes a `populate_target` job and marks the target `populating`, so the platform's offer
/// creation waits for the populate as it did for its own; returns whether a job was added
/// (`false`: one for the target was already waiting, and covers this request). On
/// PostgreSQL both happen in one statement; on SQLite the mark comes first.
pub async fn enqueue(db: &Db, target_id: TargetId) -> Result<bool, JobError> {
    crate::error::check_target_exists(db, target_id).await?;
    match db.backend() {
        repo::Backend::Postgres => Ok(db
            .queue_jobs()
            .push_populate_marking_target(target_id.0, crate::queue::DEFAULT_MAX_ATTEMPTS as i32)
            .await?),
        repo::Backend::Sqlite => {
            db.targets()
                .set_status(target_id, PopulationStatus::Populating)
                .await?;
            crate::queue::push(
                db,
                QUEUE,
                PopulateTarget {
                    target_id: target_id.0,
                },
                crate::queue::DEFAULT_MAX_ATTEMPTS,
            )
            .await?;
            Ok(true)
        }
    }
}

/// Consumes the `populate_target` queue until `shutdown` completes.
pub async fn serve(
    ctx: PopulatorContext,
    options: &crate::worker::WorkerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), JobError> {
    crate::worker::serve_queue!(PopulateTarget, QUEUE, ctx, options, handle, shutdown)
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

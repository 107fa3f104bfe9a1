//! `populate_target {"target_id": i64}` on queue `populate_target`: (re)computes a whole
//! target's populations with their snapshots, split into me_file-range chunks that any
//! populator replica takes from queue `populate_chunk`.
//!
//! When it runs: when a marketer creates or edits a target, or by hand
//! (`populator enqueue --target ID`, or inline with `populator run --target ID`).
//!
//! What it changes: takes the target's lease (a second populate of the same target waits
//! for the first), counts the run (`snapline_populate_runs`), sets the target `populating`
//! and records the run's chunks (`snapline_populate_chunks`), each `chunk_me_files`
//! me_files. A target of one chunk is populated by this job itself; otherwise one
//! `populate_chunk` job per chunk is pushed and the run's lease passes to them. A chunk
//! walks its me_files in keyset-paged batches; per batch, in one transaction, it inserts new
//! members with their snapshot, moves me_files whose band changed, rewrites stale snapshots
//! and deletes rows that no longer match. The chunk that commits last, finding every other
//! chunk of its run done, sets `populated` and `last_populated_at` and releases the lease,
//! so a reader that waits for `populated` never sees a missing or stale snapshot. A chunk
//! of an older run never finishes a newer one: it stops when its run is no longer the
//! target's latest. A target with no bands ends `not_populated`. A rerun changes nothing.

use crate::lease::HeldLease;
use crate::queue::Payload;
use crate::{JobError, plan_population};
use domain::{MeFileId, PopulationStatus, TargetBands, TargetId, TraitId};
use futures::{StreamExt, TryStreamExt};
use repo::{ChunkFinished, ChunkRange, Db};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tracing::Instrument;

pub const QUEUE: &str = crate::queues::POPULATE_TARGET;

/// The queue of a run's chunks, served by every populator beside [`QUEUE`].
pub const CHUNK_QUEUE: &str = crate::queues::POPULATE_CHUNK;

const PAYLOAD_SHAPE: &str = r#"{"target_id": <integer>}"#;

const CHUNK_PAYLOAD_SHAPE: &str = r#"{"target_id": <integer>, "run": <integer>, "after": <integer>, "up_to": <integer>, "lease_owner": <string>}"#;

/// The job payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulateTarget {
    pub target_id: i64,
}

/// The payload of one chunk of a run: me_files with `after < id <= up_to` of run `run` of
/// the target, whose lease the run holds as `lease_owner`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulateChunk {
    pub target_id: i64,
    pub run: i64,
    pub after: i64,
    pub up_to: i64,
    pub lease_owner: String,
}

impl PopulateChunk {
    fn range(&self) -> ChunkRange {
        ChunkRange {
            after: MeFileId(self.after),
            up_to: MeFileId(self.up_to),
        }
    }
}

/// Tuning of a populate run.
#[derive(Clone, Debug)]
pub struct PopulateOptions {
    /// Me_files per batch (one transaction each).
    pub batch_size: u64,
    /// Me_files per chunk: a run over more me_files is split into chunks that any populator
    /// replica takes from [`CHUNK_QUEUE`].
    pub chunk_me_files: u64,
    /// How long the run's lease lives without renewal (renewed every batch).
    pub lease_ttl: Duration,
    /// How long to wait for another populate of the same target before failing (retried).
    pub lock_wait: Duration,
    /// Pause after each batch (zero: none): caps the load one run puts on the database.
    pub batch_pause: Duration,
    /// Chunks a run populates at once when it runs them itself (`populator run`), each on
    /// its own connection: one chunk's reads wait on the disk while another's batch is
    /// computed or written. On the queue, replicas and their concurrency decide instead.
    pub chunks_at_once: usize,
    /// Checked before each batch: `populator run` sets it on Ctrl-C or SIGTERM.
    pub stop: crate::StopRequest,
}

impl Default for PopulateOptions {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            chunk_me_files: 250_000,
            lease_ttl: Duration::from_secs(120),
            lock_wait: Duration::from_secs(600),
            batch_pause: Duration::ZERO,
            chunks_at_once: 1,
            stop: crate::StopRequest::default(),
        }
    }
}

/// What a run, or one chunk of it, changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopulateSummary {
    pub target_id: i64,
    /// `populated`, or `not_populated` for a target without bands; `populating` when chunks
    /// of the run are still to commit (a run handed to the queue, or a chunk not the last);
    /// `superseded` for a chunk of a run that a newer run replaced.
    pub status: String,
    /// The run's number (`snapline_populate_runs.started`).
    pub run: i64,
    /// Chunks the run was split into.
    pub chunks: u64,
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

    /// Adds the counts of a chunk of the same run.
    fn absorb(&mut self, chunk: &PopulateSummary) {
        self.inserted += chunk.inserted;
        self.moved += chunk.moved;
        self.deleted += chunk.deleted;
        self.refreshed += chunk.refreshed;
        self.unchanged += chunk.unchanged;
        self.batches += chunk.batches;
        self.me_files_scanned += chunk.me_files_scanned;
    }
}

impl std::fmt::Display for PopulateSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target {}: {} inserted, {} moved, {} deleted, {} refreshed, {} unchanged, {} orphans left alone; {} me_files in {} batches, {} chunk(s), {:.2}s, status {}",
            self.target_id,
            self.inserted,
            self.moved,
            self.deleted,
            self.refreshed,
            self.unchanged,
            self.orphans,
            self.me_files_scanned,
            self.batches,
            self.chunks,
            self.elapsed_ms as f64 / 1000.0,
            self.status
        )
    }
}

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

fn lease_name(target_id: TargetId) -> String {
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
                let status = finish_chunk(db, target_id, run, chunk, target).await?;
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
async fn populate_chunk_range(
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

/// Records a committed chunk of run `run`; the chunk that finds every other chunk of the
/// run done sets the target `populated` (with the platform's event, in one transaction).
/// Returns the status the run is in: `populated`, `populating` (chunks left) or
/// `superseded` (a newer run started; this one never finishes).
async fn finish_chunk(
    db: &Db,
    target_id: TargetId,
    run: i64,
    chunk: ChunkRange,
    target: &TargetBands,
) -> Result<String, JobError> {
    let tx = db.begin_write().await?;
    if tx.populate_runs().lock_current(target_id).await? != Some(run) {
        return Ok(SUPERSEDED.into());
    }
    match tx
        .populate_runs()
        .finish_chunk(target_id, run, chunk.after)
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
        let status = finish_chunk(db, target_id, chunk.run, chunk.range(), &target).await?;
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

/// A populate of `target_id` that no retry can help: the target goes back to
/// `not_populated` (the platform knows no other status, and asks again for a target in it:
/// the marketer's button, a campaign launch), and why is kept in snapline's own records
/// (`snapctl status`, the board, `snapline_populate_failures`). Best effort: the error
/// itself is what the job reports.
async fn failed_for_good(db: &Db, target_id: TargetId, err: &JobError) {
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
async fn target_deleted(db: &Db, target_id: TargetId, target: &TargetBands) -> JobError {
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

/// The apalis handler of `populate_target` jobs: starts the run and hands its chunks to
/// [`CHUNK_QUEUE`] (one chunk: populates it here).
pub async fn handle(
    job: Payload<PopulateTarget>,
    ctx: apalis::prelude::Data<PopulatorContext>,
    attempt: crate::worker::JobAttempt,
) -> Result<PopulateSummary, apalis::prelude::BoxDynError> {
    crate::worker::run_job(QUEUE, &attempt, async {
        let job = job.into_valid(PAYLOAD_SHAPE)?;
        let span = tracing::info_span!("populate_target", target_id = job.target_id);
        let summary = populate_target_on_queue(&ctx.db, TargetId(job.target_id), &ctx.options)
            .instrument(span)
            .await?;
        tracing::info!(target_id = summary.target_id, %summary, "populate_target done");
        Ok(summary)
    })
    .await
}

/// The apalis handler of `populate_chunk` jobs.
pub async fn handle_chunk(
    job: Payload<PopulateChunk>,
    ctx: apalis::prelude::Data<PopulatorContext>,
    attempt: crate::worker::JobAttempt,
) -> Result<PopulateSummary, apalis::prelude::BoxDynError> {
    crate::worker::run_job(CHUNK_QUEUE, &attempt, async {
        let job = job.into_valid(CHUNK_PAYLOAD_SHAPE)?;
        let span = tracing::info_span!(
            "populate_chunk",
            target_id = job.target_id,
            run = job.run,
            after = job.after,
            up_to = job.up_to
        );
        let last_attempt = attempt.attempt >= attempt.max_attempts;
        let summary = populate_chunk(&ctx.db, &job, &ctx.options, last_attempt)
            .instrument(span)
            .await?;
        tracing::info!(target_id = summary.target_id, %summary, "populate_chunk done");
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

/// Consumes the `populate_target` and `populate_chunk` queues until `shutdown` completes,
/// each with `options.concurrency` workers.
pub async fn serve(
    ctx: PopulatorContext,
    options: &crate::worker::WorkerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), JobError> {
    use futures::FutureExt;
    let shutdown = shutdown.boxed().shared();
    let chunk_options = crate::worker::WorkerOptions {
        name: format!("{}-chunks", options.name),
        ..options.clone()
    };
    let targets = async {
        crate::worker::serve_queue!(
            PopulateTarget,
            QUEUE,
            ctx.clone(),
            options,
            handle,
            shutdown.clone()
        )
    };
    let chunks = async {
        crate::worker::serve_queue!(
            PopulateChunk,
            CHUNK_QUEUE,
            ctx.clone(),
            &chunk_options,
            handle_chunk,
            shutdown.clone()
        )
    };
    tokio::try_join!(targets, chunks).map(|_| ())
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

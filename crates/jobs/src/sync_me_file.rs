//! `sync_me_file {"me_file_id": i64}` on queue `sync_me_file`: keeps one me_file's
//! populations right after it registers or a tag of it is added, updated or deleted.
//!
//! When it runs: pushed by the platform after every such change (in its own transaction,
//! see docs/jobs.md, "Enqueueing from another service"), or by hand (`syncer enqueue --me-file ID`, `syncer run --me-file ID`).
//!
//! What it changes: for every target that is `populated` or `populating`, and no other, the
//! me_file's row in that target: inserted, moved to another band, deleted, or its snapshot
//! rewritten when the matching tags changed; unchanged rows are not written. All of one
//! me_file's changes commit in one transaction (with those of the other jobs waiting at
//! the same moment: [`crate::sync_group`]), under the per-me_file lock every snapline
//! writer takes, so a sync and a populate never interleave on one me_file. A me_file that no
//! longer exists loses its rows in those targets. While a sync of a me_file is waiting,
//! another push for it adds nothing.

use crate::BandCache;
use crate::queue::Payload;
use crate::sync_group::SyncGroups;
use crate::{JobError, plan_population};
use domain::{BandId, MeFileId, Tag};
use repo::{Db, PopulationChanges, PopulationRow};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tracing::Instrument;

pub const QUEUE: &str = "sync_me_file";

const PAYLOAD_SHAPE: &str =
    r#"{"me_file_id": <integer>} (optionally with "deleted_trait_ids": [<integer>, ...])"#;

/// The job payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncMeFile {
    pub me_file_id: i64,
    /// What the platform's own sync job carries: the traits whose tags it just deleted.
    /// Accepted and logged; a sync reads the current tags, so it needs no hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_trait_ids: Option<Vec<i64>>,
}

/// What one sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    pub me_file_id: i64,
    pub targets_in_scope: usize,
    pub me_file_exists: bool,
    pub inserted: u64,
    pub moved: u64,
    pub deleted: u64,
    pub refreshed: u64,
    pub unchanged: u64,
}

impl SyncSummary {
    pub fn changes(&self) -> u64 {
        self.inserted + self.moved + self.deleted + self.refreshed
    }
}

impl std::fmt::Display for SyncSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "me_file {}{}: {} inserted, {} moved, {} deleted, {} refreshed, {} unchanged across {} targets in scope",
            self.me_file_id,
            if self.me_file_exists {
                ""
            } else {
                " (no longer exists)"
            },
            self.inserted,
            self.moved,
            self.deleted,
            self.refreshed,
            self.unchanged,
            self.targets_in_scope
        )
    }
}

/// Syncs one me_file's populations: [`sync_me_files`] of it alone.
pub async fn sync_me_file(
    db: &Db,
    cache: &BandCache,
    me_file: MeFileId,
) -> Result<SyncSummary, JobError> {
    let mut summaries = sync_me_files(db, cache, &[me_file]).await?;
    Ok(summaries.pop().expect("one summary per me_file"))
}

/// Syncs several me_files' populations in one transaction (what a syncer does with the jobs
/// waiting at once, see [`crate::sync_group`]); one summary per me_file, in their order. A
/// me_file given twice is synced once and summarized twice.
///
/// Five round trips whatever the number of me_files when one kind of change is written:
/// begin, lock and scope, the me_files' tags and rows, the writes (one statement per kind:
/// delete, update, insert), commit.
pub async fn sync_me_files(
    db: &Db,
    cache: &BandCache,
    me_files: &[MeFileId],
) -> Result<Vec<SyncSummary>, JobError> {
    for me_file in me_files {
        crate::error::check_id_range(db, "me_file", "me_files", me_file.0).await?;
    }
    let tx = db.begin_write().await?;
    // Scope is read under the locks, in the same statement: a populate that starts later
    // reads tags already changed (the change committed before this job was pushed), so
    // nothing is lost.
    let scope = tx
        .sync()
        .lock_and_scope(me_files)
        .instrument(tracing::info_span!("sync.lock_and_scope"))
        .await?;
    // On the transaction's own connection, so a sync never waits for a second one.
    let targets = cache.get_scoped(&tx, &scope).await?;
    let band_to_target: HashMap<BandId, usize> = targets
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.bands().iter().map(move |b| (b.id, i)))
        .collect();
    let band_ids: Vec<BandId> = band_to_target.keys().copied().collect();
    let mut states = tx
        .sync()
        .me_files_state(me_files, &band_ids)
        .instrument(tracing::info_span!(
            "sync.read_state",
            me_files = me_files.len(),
            bands = band_ids.len()
        ))
        .await?;

    let mut changes = PopulationChanges::default();
    let mut bands_changed: Vec<i64> = Vec::new();
    let mut summaries: HashMap<MeFileId, SyncSummary> = HashMap::new();
    for &me_file in me_files {
        let Some(state) = states.remove(&me_file) else {
            continue; // given twice: planned the first time
        };
        let exists = state.tags.is_some();
        let tags: HashMap<MeFileId, Vec<Tag>> = state
            .tags
            .map(|tags| HashMap::from([(me_file, tags)]))
            .unwrap_or_default();
        let mut existing: Vec<Vec<PopulationRow>> = vec![Vec::new(); targets.len()];
        for row in state.rows {
            existing[band_to_target[&row.band_id]].push(row);
        }
        let present: &[MeFileId] = if exists { &[me_file] } else { &[] };
        let mut summary = SyncSummary {
            me_file_id: me_file.0,
            targets_in_scope: targets.len(),
            me_file_exists: exists,
            ..SyncSummary::default()
        };
        let mut band_changed = false;
        for (target, rows) in targets.iter().zip(existing) {
            let plan = plan_population(target, present, &tags, rows);
            band_changed |= !plan.bands_changed.is_empty();
            summary.inserted += plan.inserted;
            summary.moved += plan.moved;
            summary.deleted += plan.deleted;
            summary.refreshed += plan.refreshed;
            summary.unchanged += plan.unchanged;
            changes.append(plan.changes);
        }
        if band_changed {
            bands_changed.push(me_file.0);
        }
        summaries.insert(me_file, summary);
    }
    if !changes.is_empty() {
        let applied = tx
            .populations()
            .apply_changes(&changes)
            .instrument(tracing::info_span!("sync.write"))
            .await?;
        // The rows of a gone me_file are deleted only if it is still gone: count what was.
        for summary in summaries.values_mut().filter(|s| !s.me_file_exists) {
            summary.deleted = applied
                .deleted_of_gone_me_files
                .iter()
                .filter(|m| m.0 == summary.me_file_id)
                .count() as u64;
        }
    }
    if !bands_changed.is_empty() {
        tx.events().me_file_bands_changed(&bands_changed).await?;
    }
    tx.commit()
        .instrument(tracing::info_span!("sync.commit"))
        .await?;
    let total = summaries.values().fold(SyncSummary::default(), |mut t, s| {
        t.inserted += s.inserted;
        t.moved += s.moved;
        t.refreshed += s.refreshed;
        t.deleted += s.deleted;
        t
    });
    crate::metrics::populations_written(
        total.inserted,
        total.moved,
        total.refreshed,
        total.deleted,
    );
    Ok(me_files.iter().map(|m| summaries[m].clone()).collect())
}

/// The most me_files one sync transaction takes when that many jobs wait, unless
/// configured (`syncer.me_files_per_transaction`): chosen by measurement, see
/// docs/benchmarks.md.
pub const DEFAULT_ME_FILES_PER_TRANSACTION: usize = 16;

/// How often an idle syncer drains change capture's outbox, unless configured
/// (`syncer.capture_poll_ms`).
pub const DEFAULT_CAPTURE_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// What a syncer process needs to serve the queue.
#[derive(Clone, Debug)]
pub struct SyncerContext {
    pub db: Db,
    pub cache: Arc<BandCache>,
    /// The most me_files one sync transaction takes (see [`crate::sync_group`]); 1 syncs
    /// each job in its own transaction.
    pub me_files_per_transaction: usize,
    /// How often an idle syncer drains change capture's outbox ([`crate::capture_drain`]).
    pub capture_poll: std::time::Duration,
}

impl SyncerContext {
    pub fn new(db: Db, cache: Arc<BandCache>) -> Self {
        Self {
            db,
            cache,
            me_files_per_transaction: DEFAULT_ME_FILES_PER_TRANSACTION,
            capture_poll: DEFAULT_CAPTURE_POLL,
        }
    }
}

/// The apalis handler of `sync_me_file` jobs: hands the me_file to the process's group
/// committer and reports its own summary.
pub async fn handle(
    job: Payload<SyncMeFile>,
    groups: apalis::prelude::Data<SyncGroups>,
    attempt: crate::worker::JobAttempt,
) -> Result<SyncSummary, apalis::prelude::BoxDynError> {
    crate::worker::run_job(QUEUE, &attempt, async {
        let job = job.into_valid(PAYLOAD_SHAPE)?;
        let span = tracing::info_span!("sync_me_file", me_file_id = job.me_file_id);
        if let Some(deleted) = &job.deleted_trait_ids {
            tracing::debug!(parent: &span, ?deleted, "the platform's deleted_trait_ids (not needed: current tags are read)");
        }
        let summary = groups
            .sync(MeFileId(job.me_file_id))
            .instrument(span.clone())
            .await?;
        if !summary.me_file_exists {
            tracing::info!(
                parent: &span,
                me_file_id = summary.me_file_id,
                deleted = summary.deleted,
                "me_file no longer exists: removed its populations"
            );
        }
        tracing::debug!(
            parent: &span,
            me_file_id = summary.me_file_id,
            changes = summary.changes(),
            "sync_me_file done"
        );
        Ok(summary)
    })
    .await
}

/// Pushes a `sync_me_file` job unless one for the same me_file is still waiting; returns
/// whether it pushed.
pub async fn enqueue(db: &Db, me_file: MeFileId) -> Result<bool, JobError> {
    crate::error::check_id_range(db, "me_file", "me_files", me_file.0).await?;
    crate::queue::push_unless_waiting(
        db,
        QUEUE,
        SyncMeFile {
            me_file_id: me_file.0,
            deleted_trait_ids: None,
        },
        crate::queue::DEFAULT_MAX_ATTEMPTS,
    )
    .await
}

/// Consumes the `sync_me_file` queue until `shutdown` completes: `options.concurrency`
/// workers and as many sync transactions at a time, each of up to
/// `ctx.me_files_per_transaction` of the jobs waiting ([`crate::sync_group`]); beside them,
/// on PostgreSQL, the drain of change capture's outbox ([`crate::capture_drain`]).
pub async fn serve(
    ctx: SyncerContext,
    options: &crate::worker::WorkerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), JobError> {
    // Each worker holds as many jobs as one transaction may take, so that jobs wait while
    // the `concurrency` transactions run and the next free one takes them as a group.
    let options = crate::worker::WorkerOptions {
        jobs_per_worker: ctx.me_files_per_transaction.max(1),
        ..options.clone()
    };
    use futures::FutureExt;
    let shutdown = shutdown.shared();
    let drain = crate::capture_drain::serve(ctx.db.clone(), ctx.capture_poll, shutdown.clone());
    let groups = SyncGroups::start(
        ctx.db,
        ctx.cache,
        options.concurrency,
        ctx.me_files_per_transaction,
    );
    let queue = async move {
        crate::worker::serve_queue!(SyncMeFile, QUEUE, groups, &options, handle, shutdown)
    };
    tokio::try_join!(queue, drain).map(|_| ())
}

//! `sync_me_file {"me_file_id": i64}` on queue `sync_me_file`: keeps one me_file's
//! populations right after it registers or a tag of it is added, updated or deleted.
//!
//! When it runs: pushed by the platform after every such change (in its own transaction,
//! see docs/jobs.md, "Enqueueing from another service"), or by hand (`syncer enqueue --me-file ID`, `syncer run --me-file ID`).
//!
//! What it changes: for every target that is `populated` or `populating`, and no other, the
//! me_file's row in that target: inserted, moved to another band, deleted, or its snapshot
//! rewritten when the matching tags changed; unchanged rows are not written. All of one
//! me_file's changes commit in one transaction, under the per-me_file lock every snapline
//! writer takes, so a sync and a populate never interleave on one me_file. A me_file that no
//! longer exists loses its rows in those targets. While a sync of a me_file is waiting,
//! another push for it adds nothing.

use crate::BandCache;
use crate::queue::Payload;
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

/// Syncs one me_file's populations.
///
/// Five round trips when one kind of change is written: begin, lock and scope, the
/// me_file's tags and rows, the writes (one statement per kind: delete, update, insert),
/// commit.
pub async fn sync_me_file(
    db: &Db,
    cache: &BandCache,
    me_file: MeFileId,
) -> Result<SyncSummary, JobError> {
    crate::error::check_id_range(db, "me_file", "me_files", me_file.0).await?;
    let tx = db.begin_write().await?;
    // Scope is read under the lock, in the same statement: a populate that starts later
    // reads tags already changed (the change committed before this job was pushed), so
    // nothing is lost.
    let scope = tx
        .sync()
        .lock_and_scope(me_file)
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
    let state = tx
        .sync()
        .me_file_state(me_file, &band_ids)
        .instrument(tracing::info_span!(
            "sync.read_state",
            bands = band_ids.len()
        ))
        .await?;
    let exists = state.tags.is_some();
    let tags: HashMap<MeFileId, Vec<Tag>> = state
        .tags
        .map(|tags| HashMap::from([(me_file, tags)]))
        .unwrap_or_default();
    let mut existing: Vec<Vec<PopulationRow>> = vec![Vec::new(); targets.len()];
    for row in state.rows {
        existing[band_to_target[&row.band_id]].push(row);
    }

    let me_files: &[MeFileId] = if exists { &[me_file] } else { &[] };
    let mut changes = PopulationChanges::default();
    let mut summary = SyncSummary {
        me_file_id: me_file.0,
        targets_in_scope: targets.len(),
        me_file_exists: exists,
        ..SyncSummary::default()
    };
    let mut bands_changed = false;
    for (target, rows) in targets.iter().zip(existing) {
        let plan = plan_population(target, me_files, &tags, rows);
        bands_changed |= !plan.bands_changed.is_empty();
        summary.inserted += plan.inserted;
        summary.moved += plan.moved;
        summary.deleted += plan.deleted;
        summary.refreshed += plan.refreshed;
        summary.unchanged += plan.unchanged;
        changes.append(plan.changes);
    }
    if !changes.is_empty() {
        // Rows of a gone me_file are deleted only if it is still gone: count what was.
        summary.deleted = tx
            .populations()
            .apply_changes(&changes)
            .instrument(tracing::info_span!("sync.write"))
            .await?
            .deleted;
    }
    if bands_changed {
        tx.events().me_file_bands_changed(&[me_file.0]).await?;
    }
    tx.commit()
        .instrument(tracing::info_span!("sync.commit"))
        .await?;
    crate::metrics::populations_written(
        summary.inserted,
        summary.moved,
        summary.refreshed,
        summary.deleted,
    );
    if !exists {
        tracing::info!(
            me_file_id = me_file.0,
            deleted = summary.deleted,
            "me_file no longer exists: removed its populations"
        );
    }
    Ok(summary)
}

/// What a syncer worker needs for every job.
#[derive(Clone, Debug)]
pub struct SyncerContext {
    pub db: Db,
    pub cache: Arc<BandCache>,
}

/// The apalis handler of `sync_me_file` jobs.
pub async fn handle(
    job: Payload<SyncMeFile>,
    ctx: apalis::prelude::Data<SyncerContext>,
    attempt: crate::worker::JobAttempt,
) -> Result<SyncSummary, apalis::prelude::BoxDynError> {
    crate::worker::run_job(QUEUE, &attempt, async {
        let job = job.into_valid(PAYLOAD_SHAPE)?;
        let span = tracing::info_span!("sync_me_file", me_file_id = job.me_file_id);
        if let Some(deleted) = &job.deleted_trait_ids {
            tracing::debug!(parent: &span, ?deleted, "the platform's deleted_trait_ids (not needed: current tags are read)");
        }
        let summary = sync_me_file(&ctx.db, &ctx.cache, MeFileId(job.me_file_id))
            .instrument(span)
            .await?;
        tracing::debug!(
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

/// Consumes the `sync_me_file` queue until `shutdown` completes.
pub async fn serve(
    ctx: SyncerContext,
    options: &crate::worker::WorkerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), JobError> {
    crate::worker::serve_queue!(SyncMeFile, QUEUE, ctx, options, handle, shutdown)
}

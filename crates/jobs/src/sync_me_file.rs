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

pub use crate::sync::{SyncSummary, sync_me_file, sync_me_files};

use crate::BandCache;
use crate::JobError;
use crate::queue::Payload;
use crate::sync_group::SyncGroups;
use domain::MeFileId;
use repo::Db;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::Instrument;

pub const QUEUE: &str = crate::queues::SYNC_ME_FILE;

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
    /// A context with `[syncer]`'s defaults as `config/default.toml` writes them (the group
    /// size was chosen by measurement, docs/benchmarks.md).
    pub fn new(db: Db, cache: Arc<BandCache>) -> Self {
        let defaults = settings::Settings::defaults().syncer;
        Self {
            db,
            cache,
            me_files_per_transaction: usize::try_from(defaults.me_files_per_transaction)
                .unwrap_or(usize::MAX),
            capture_poll: std::time::Duration::from_millis(defaults.capture_poll_ms),
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

//! The apalis side of the two queues: the handlers, the push and the consumers.

use super::types::{CHUNK_PAYLOAD_SHAPE, PAYLOAD_SHAPE};
use super::*;
use crate::JobError;
use crate::queue::Payload;
use domain::{PopulationStatus, TargetId};
use repo::Db;
use tracing::Instrument;

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
/// (`false`: one for the target was already waiting, and covers this request). In one
/// statement where the database has [`repo::FastPath::PopulatePushMarkingTarget`]; the mark
/// first elsewhere.
pub async fn enqueue(db: &Db, target_id: TargetId) -> Result<bool, JobError> {
    crate::error::check_target_exists(db, target_id).await?;
    if db.has_fast_path(repo::FastPath::PopulatePushMarkingTarget) {
        return Ok(db
            .queue_jobs()
            .push_populate_marking_target(target_id.0, crate::queue::DEFAULT_MAX_ATTEMPTS as i32)
            .await?);
    }
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

//! The handler of queue `backfill`, its pushes and its consumer.

use super::payloads::*;
use crate::JobError;
use crate::backfill::{BackfillOptions, BackfillScope, ProgressLog, backfill};
use crate::queue::Payload;
use domain::BandId;
use repo::Db;

/// What a backfiller worker needs for every job.
#[derive(Clone, Debug)]
pub struct BackfillerContext {
    pub db: Db,
    pub options: BackfillOptions,
    /// Who runs the jobs, as a scheduled audit records it.
    pub replica: String,
}

/// The apalis handler of queue `backfill`.
pub async fn handle(
    job: Payload<BackfillJob>,
    ctx: apalis::prelude::Data<BackfillerContext>,
    attempt: crate::worker::JobAttempt,
) -> Result<BackfillOutcome, apalis::prelude::BoxDynError> {
    use tracing::Instrument;
    crate::worker::run_job(QUEUE, &attempt, async {
        let progress = ProgressLog::new(ctx.options.progress_every);
        let log_progress = |p| {
            progress.update(p);
        };
        match job.into_valid(PAYLOAD_SHAPE)? {
            BackfillJob::All(_) => {
                backfill(&ctx.db, &BackfillScope::All, &ctx.options, &log_progress)
                    .instrument(tracing::info_span!("backfill_missing_snapshots"))
                    .await
                    .map(BackfillOutcome::Backfill)
            }
            BackfillJob::Audit(job) => scheduled_audit(&ctx, job.audit_sample)
                .instrument(tracing::info_span!("audit", sample = job.audit_sample))
                .await
                .map(|report| BackfillOutcome::Audit(Box::new(report))),
            BackfillJob::Band(job) => backfill(
                &ctx.db,
                &BackfillScope::Bands(vec![BandId(job.band_id)]),
                &ctx.options,
                &log_progress,
            )
            .instrument(tracing::info_span!(
                "snapshot_band_populations",
                band_id = job.band_id
            ))
            .await
            .map(BackfillOutcome::Backfill),
        }
    })
    .await
}

/// The scheduled audit: `sample` me_files at random, read-only, kept as the last
/// `scheduled` audit (the board, the `snapline_drift_rows` gauges); drift is logged as a
/// warning with its examples.
async fn scheduled_audit(
    ctx: &BackfillerContext,
    sample: u64,
) -> Result<crate::audit::AuditReport, JobError> {
    let options = crate::audit::AuditOptions {
        sample: Some(sample.max(1)),
        batch_size: ctx.options.batch_size,
        ..crate::audit::AuditOptions::default()
    };
    let report = crate::audit::audit(&ctx.db, &options, &|_| {}).await?;
    crate::audit::record(&ctx.db, "scheduled", &ctx.replica, &report).await?;
    if report.drift_rows() > 0 {
        let examples: Vec<String> = report.examples.iter().map(crate::audit::describe).collect();
        tracing::warn!(
            drift = report.drift_rows(),
            me_files = report.me_files_checked,
            ?examples,
            "the scheduled audit found drift: `snapctl audit --fix` repairs it"
        );
    }
    Ok(report)
}

/// Pushes one backfill job.
pub async fn enqueue(db: &Db, job: BackfillJob) -> Result<(), JobError> {
    if let BackfillJob::Band(band) = &job {
        crate::error::check_band_known(db, BandId(band.band_id)).await?;
    }
    crate::queue::push(db, QUEUE, job, crate::queue::DEFAULT_MAX_ATTEMPTS).await
}

/// Consumes queue `backfill` until `shutdown` completes.
pub async fn serve(
    ctx: BackfillerContext,
    options: &crate::worker::WorkerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), JobError> {
    crate::worker::serve_queue!(BackfillJob, QUEUE, ctx, options, handle, shutdown)
}

//! The schedules of queue `backfill`: each tick of the hourly one pushes one
//! `backfill_missing_snapshots`, each tick of `audit.schedule` one sampled audit, once across
//! replicas.

use super::payloads::*;
use crate::JobError;
use repo::Db;

/// What a schedule pushes on each tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduled {
    /// `backfill_missing_snapshots {}` (`backfiller.schedule`).
    Backfill,
    /// `{"audit_sample": N}`: an audit of N me_files drawn at random (`audit.schedule`).
    Audit { sample: u64 },
}

impl Scheduled {
    fn job(self) -> BackfillJob {
        match self {
            Scheduled::Backfill => BackfillJob::All(BackfillMissingSnapshots {}),
            Scheduled::Audit { sample } => BackfillJob::Audit(AuditSample {
                audit_sample: sample,
            }),
        }
    }

    /// The idempotency key of the tick at `timestamp`.
    fn key(self, timestamp: u64) -> String {
        format!("{}{timestamp}", self.key_prefix())
    }

    /// What the keys of its ticks start with.
    fn key_prefix(self) -> &'static str {
        match self {
            Scheduled::Backfill => "backfill_tick:",
            Scheduled::Audit { .. } => "audit_tick:",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scheduled::Backfill => "backfill_missing_snapshots",
            Scheduled::Audit { .. } => "audit",
        }
    }
}

/// Pushes the cron tick at `timestamp` (seconds)'s `backfill_missing_snapshots`, once however
/// many replicas call it ([`on_tick`]).
pub async fn on_cron_tick(db: &Db, timestamp: u64, replica: &str) -> Result<bool, JobError> {
    on_tick(db, Scheduled::Backfill, timestamp, replica).await
}

/// Pushes the job of `what` for the tick at `timestamp` (seconds), once however many
/// replicas call it: the job carries the idempotency key `<kind>_tick:<timestamp>`, which
/// the queue table keeps unique. Every replica pushes, so the tick runs as long as one
/// replica is alive, even if another crashes in the middle of its push. Returns whether this
/// call added the job (`false`: another replica's push came first).
pub async fn on_tick(
    db: &Db,
    what: Scheduled,
    timestamp: u64,
    replica: &str,
) -> Result<bool, JobError> {
    let pushed = crate::queue::push_once(
        db,
        QUEUE,
        what.job(),
        crate::queue::DEFAULT_MAX_ATTEMPTS,
        &what.key(timestamp),
    )
    .await?;
    if pushed {
        tracing::info!(
            tick = timestamp,
            replica,
            job = what.name(),
            "cron tick: job enqueued"
        );
    } else {
        tracing::debug!(
            tick = timestamp,
            replica,
            job = what.name(),
            "cron tick already enqueued by another replica"
        );
    }
    Ok(pushed)
}

/// One schedule as an operator reads it: its cron, its last tick's job and the replica
/// that ran it, and when it ticks next.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ScheduleState {
    /// `backfill_missing_snapshots` or `audit`.
    pub name: &'static str,
    /// The cron expression as configured; `None`: the schedule is off.
    pub cron: Option<String>,
    /// The last tick pushed (Unix seconds) with its job, if one is kept.
    pub last_tick: Option<(u64, repo::QueueJob)>,
    /// The replica (`host:pid`) whose worker holds or ran the last tick's job.
    pub ran_by: Option<String>,
    /// The next tick (Unix seconds), when the schedule is on.
    pub next_tick: Option<i64>,
}

/// The backfill's schedule (`backfill_cron`) and the audit's (`audit_cron`, `None` when off):
/// each one's last tick from the queue table and its next from the cron.
pub async fn schedules(
    db: &Db,
    backfill_cron: &str,
    audit_cron: Option<&str>,
) -> Result<Vec<ScheduleState>, JobError> {
    let mut states = Vec::new();
    for (what, cron) in [
        (Scheduled::Backfill, Some(backfill_cron)),
        (Scheduled::Audit { sample: 0 }, audit_cron),
    ] {
        let last = db
            .queue_jobs()
            .newest_keyed(QUEUE, what.key_prefix())
            .await?;
        let last_tick = last.and_then(|(job, key)| {
            let tick = key.strip_prefix(what.key_prefix())?.parse().ok()?;
            Some((tick, job))
        });
        let next_tick = match cron {
            Some(cron) => parse_schedule(cron)?
                .upcoming(chrono::Utc)
                .next()
                .map(|at| at.timestamp()),
            None => None,
        };
        states.push(ScheduleState {
            name: what.name(),
            cron: cron.map(str::to_owned),
            ran_by: last_tick
                .as_ref()
                .and_then(|(_, job)| job.worker.as_deref())
                .and_then(crate::admin::process_of),
            last_tick,
            next_tick,
        });
    }
    Ok(states)
}

/// Parses a cron schedule: standard five fields (`0 * * * *`, minute first) or the six or
/// seven of the `cron` crate (seconds first).
pub fn parse_schedule(expression: &str) -> Result<::cron::Schedule, JobError> {
    use std::str::FromStr;
    let fields = expression.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {expression}")
    } else {
        expression.to_owned()
    };
    ::cron::Schedule::from_str(&full).map_err(|e| JobError::Config {
        what: format!("cron schedule `{expression}`"),
        source: e.into(),
    })
}

#[derive(Clone, Debug)]
struct CronContext {
    db: Db,
    replica: String,
    what: Scheduled,
}

async fn handle_tick(
    tick: apalis_cron::Tick,
    ctx: apalis::prelude::Data<CronContext>,
) -> Result<bool, apalis::prelude::BoxDynError> {
    let result = on_tick(&ctx.db, ctx.what, tick.get_timestamp(), &ctx.replica).await;
    crate::worker::into_apalis(ctx.what.name(), result)
}

/// Runs the cron schedule of `what` until `shutdown` completes: each tick's job is pushed
/// onto the queue once across replicas.
pub async fn serve_cron(
    db: Db,
    schedule: ::cron::Schedule,
    replica: String,
    what: Scheduled,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), JobError> {
    use apalis::prelude::WorkerBuilder;
    let prefix = match what {
        Scheduled::Backfill => "backfill-cron",
        Scheduled::Audit { .. } => "audit-cron",
    };
    WorkerBuilder::new(format!("{prefix}@{replica}"))
        .backend(apalis_cron::CronScheduler::new(schedule))
        .data(CronContext { db, replica, what })
        .build(handle_tick)
        .run_until(async move {
            shutdown.await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .map_err(|e| JobError::Queue(e.into()))
}

#[cfg(test)]
mod tests {
    use super::parse_schedule;
    use crate::JobError;
    use std::error::Error;

    #[test]
    fn a_bad_schedule_is_a_configuration_error_keeping_its_cause() {
        let err = parse_schedule("every hour").unwrap_err();
        assert!(matches!(err, JobError::Config { .. }), "{err:?}");
        assert!(err.is_bad_input() && !err.is_transient());
        assert!(err.to_string().contains("`every hour`"), "{err}");
        assert!(
            err.source().is_some(),
            "the parser's error is kept as the source"
        );
        assert_eq!(
            parse_schedule("0 * * * *").unwrap().to_string(),
            "0 0 * * * *",
            "five fields read minute first"
        );
    }
}

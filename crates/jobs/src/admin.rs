//! `snapctl jobs` and `snapctl queues`: what an operator does to single jobs or to all of a
//! queue's jobs in one status (list and read them, retry finished ones, kill waiting ones,
//! purge old ones) and to whole queues (pause, resume). The rules of what may change live
//! here; the statements in `repo::JobAdminRepo` and `repo::QueuePauseRepo`.

use crate::queues::ALL as QUEUES;
use repo::{ActionOutcome, Db, JobChange, JobFilter, JobStatus, QueueJob, QueueWorker, RepoError};
use std::time::Duration;

/// Why an operator's request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("unknown queue `{0}`: one of {queues}", queues = QUEUES.join(", "))]
    UnknownQueue(String),
    #[error("no job has id {0}")]
    UnknownJob(String),
    #[error(
        "cannot {action} {status} jobs: {action} takes {takes}",
        takes = statuses(allowed)
    )]
    WrongStatus {
        action: &'static str,
        status: JobStatus,
        allowed: &'static [JobStatus],
    },
    #[error(
        "workers per replica must be from 1 to {MAX_WORKERS_PER_REPLICA}, not {0} \
         (more than that takes more database connections than a replica's pool should hold)"
    )]
    BadScale(i64),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl AdminError {
    /// The operator asked for something that cannot be (exit code 2), as opposed to a
    /// database failure.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, AdminError::Repo(_))
    }
}

fn statuses(list: &[JobStatus]) -> String {
    list.iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `queue` if snapline consumes it.
pub fn known_queue(queue: &str) -> Result<&'static str, AdminError> {
    QUEUES
        .iter()
        .copied()
        .find(|q| *q == queue)
        .ok_or_else(|| AdminError::UnknownQueue(queue.to_owned()))
}

/// Up to `limit` jobs matching `filter`, newest first (by last activity, then id). Each
/// (queue, status) the filter leaves open is read on its own and the lists merged: each read
/// walks that pair's range of the `(job_type, status, last activity)` index, newest first,
/// and stops after `limit`, instead of sorting every job of the table.
pub async fn list(db: &Db, filter: &JobFilter, limit: u64) -> Result<Vec<QueueJob>, AdminError> {
    list_searching(db, filter, limit, None).await
}

/// [`list`], a me_file or target filter reading the payloads of only the newest
/// `payloads_searched` jobs of each queue and status (`None`: of every job): what keeps a
/// page's search bounded on a queue of millions.
pub async fn list_searching(
    db: &Db,
    filter: &JobFilter,
    limit: u64,
    payloads_searched: Option<u64>,
) -> Result<Vec<QueueJob>, AdminError> {
    let queues: Vec<&str> = match &filter.queue {
        Some(queue) => vec![known_queue(queue)?],
        None => QUEUES.to_vec(),
    };
    let statuses: Vec<JobStatus> = match filter.status {
        Some(status) => vec![status],
        None => JobStatus::ALL.to_vec(),
    };
    // One (queue, status) range each, read in one statement (one snapshot).
    let each: Vec<JobFilter> = queues
        .iter()
        .flat_map(|queue| {
            statuses.iter().map(|status| JobFilter {
                queue: Some((*queue).to_owned()),
                status: Some(*status),
                ..filter.clone()
            })
        })
        .collect();
    let mut jobs = db
        .job_admin()
        .list_each(&each, limit, payloads_searched)
        .await?;
    // RFC 3339 times in UTC: their text sorts as the times do
    let activity = |job: &QueueJob| {
        job.finished_at
            .clone()
            .or_else(|| job.started_at.clone())
            .or_else(|| job.run_at.clone())
    };
    jobs.sort_by(|a, b| activity(b).cmp(&activity(a)).then_with(|| b.id.cmp(&a.id)));
    jobs.truncate(limit as usize);
    Ok(jobs)
}

/// One job.
pub async fn show(db: &Db, id: &str) -> Result<QueueJob, AdminError> {
    db.job_admin()
        .get(id)
        .await?
        .ok_or_else(|| AdminError::UnknownJob(id.to_owned()))
}

/// Applies `change` to each of `ids` whose status it takes (a job a worker holds finishes
/// first): retry a finished job, kill a waiting one, delete any no worker holds.
pub async fn change(
    db: &Db,
    change: JobChange,
    ids: &[String],
) -> Result<ActionOutcome, AdminError> {
    let outcome = db.job_admin().change(change, ids).await?;
    log_outcome(change, &outcome);
    Ok(outcome)
}

/// Jobs matching `filter` that `change` would take, counted up to `cap` (what a bulk
/// action's confirmation says).
pub async fn count_matching(
    db: &Db,
    change: JobChange,
    filter: &JobFilter,
    cap: u64,
) -> Result<i64, AdminError> {
    check_filter(filter)?;
    Ok(db.job_admin().count_matching(change, filter, cap).await?)
}

/// Applies `change` to every job matching `filter` whose status it takes; returns how many.
pub async fn change_matching(
    db: &Db,
    change: JobChange,
    filter: &JobFilter,
) -> Result<u64, AdminError> {
    check_filter(filter)?;
    if let Some(status) = filter.status {
        require(status, change.name(), change.takes())?;
    }
    let changed = db.job_admin().change_matching(change, filter).await?;
    tracing::info!(
        action = change.name(),
        queue = filter.queue.as_deref().unwrap_or("any"),
        status = filter.status.map_or("any", JobStatus::as_str),
        me_file = filter.me_file_id,
        target = filter.target_id,
        changed,
        "jobs matching a filter changed by an operator"
    );
    Ok(changed)
}

/// A filter's queue must be one snapline serves.
fn check_filter(filter: &JobFilter) -> Result<(), AdminError> {
    if let Some(queue) = &filter.queue {
        known_queue(queue)?;
    }
    Ok(())
}

/// Jobs of `queue` in `status` a bulk action would take (checks both first).
pub async fn count(
    db: &Db,
    queue: &str,
    status: JobStatus,
    older_than: Option<Duration>,
) -> Result<i64, AdminError> {
    let queue = known_queue(queue)?;
    Ok(db
        .job_admin()
        .count(queue, status, older_than.map(|d| d.as_secs()))
        .await?)
}

/// Deletes the jobs of `queue` in `status` older than `older_than`; returns how many. A
/// status a worker holds (Queued, Running) is refused.
pub async fn purge(
    db: &Db,
    queue: &str,
    status: JobStatus,
    older_than: Duration,
) -> Result<u64, AdminError> {
    let queue = known_queue(queue)?;
    require(status, "purge", &JobStatus::DELETABLE)?;
    let purged = db
        .job_admin()
        .purge(queue, status, older_than.as_secs())
        .await?;
    tracing::info!(queue, %status, older_than_secs = older_than.as_secs(), purged, "jobs purged by an operator");
    Ok(purged)
}

/// A queue as `snapctl queues list` shows it: its backlog and whether it is paused.
#[derive(Clone, Debug, serde::Serialize)]
pub struct QueueState {
    #[serde(flatten)]
    pub depth: repo::QueueDepth,
    pub paused: bool,
    /// When it was paused (Unix seconds).
    pub paused_at: Option<i64>,
    /// The workers per replica an operator set (`snapctl queues scale`); `None`: each
    /// replica runs its configured `queues.<name>.concurrency`.
    pub workers_set: Option<i64>,
}

/// Every queue snapline consumes, with its backlog and pause.
pub async fn queues(db: &Db) -> Result<Vec<QueueState>, AdminError> {
    queues_counted_to(db, repo::DEPTH_COUNT_CAP).await
}

/// [`queues`] with each status counted up to `cap`.
pub async fn queues_counted_to(db: &Db, cap: i64) -> Result<Vec<QueueState>, AdminError> {
    let paused = db.queue_pauses().paused().await?;
    let scales = db.queue_scales().all().await?;
    let mut states = Vec::with_capacity(QUEUES.len());
    for queue in QUEUES {
        let paused_at = paused.iter().find(|(q, _)| q == queue).map(|(_, at)| *at);
        states.push(QueueState {
            depth: db.queue_jobs().depth_counted_to(queue, cap).await?,
            paused: paused_at.is_some(),
            paused_at,
            workers_set: scales.iter().find(|(q, _)| q == queue).map(|(_, n)| *n),
        });
    }
    Ok(states)
}

/// Workers [`nodes`] reads at most: the ones heard from last.
pub const NODES_SHOWN: u64 = 500;

/// One worker of a serving replica, as an operator reads it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Node {
    #[serde(flatten)]
    pub worker: QueueWorker,
    /// The binary that serves its queue (`populator`, `syncer`, `backfiller`).
    pub binary: Option<&'static str>,
    /// The replica it belongs to, `host:pid`, from its name.
    pub process: Option<String>,
    /// Whether it beat within [`crate::queue::SILENT_AFTER`].
    pub alive: bool,
}

/// The workers of every replica, heard from last first (at most [`NODES_SHOWN`]).
pub async fn nodes(db: &Db) -> Result<Vec<Node>, AdminError> {
    let workers = db.queue_jobs().workers(NODES_SHOWN).await?;
    Ok(workers
        .into_iter()
        .map(|worker| Node {
            binary: crate::queues::binary(&worker.queue),
            process: process_of(&worker.id),
            alive: worker.silent_secs < crate::queue::SILENT_AFTER.as_secs_f64(),
            worker,
        })
        .collect())
}

/// `host:pid` of a worker named `{queue}@{host}:{pid}[-chunks]#{index}[.{generation}]`.
pub(crate) fn process_of(worker: &str) -> Option<String> {
    let (_, rest) = worker.split_once('@')?;
    let replica = rest.split('#').next()?;
    let (host, after) = replica.rsplit_once(':')?;
    let pid: String = after.chars().take_while(char::is_ascii_digit).collect();
    (!host.is_empty() && !pid.is_empty()).then(|| format!("{host}:{pid}"))
}

/// Pauses `queue` on every replica from this call's commit on (the queue table refuses its
/// jobs to every fetch; running jobs finish); returns whether it was running.
pub async fn pause_queue(db: &Db, queue: &str) -> Result<bool, AdminError> {
    let queue = known_queue(queue)?;
    let changed = db.queue_pauses().pause(queue).await?;
    tracing::info!(queue, changed, "queue paused by an operator");
    Ok(changed)
}

/// The most workers per replica an operator may set for a queue.
pub const MAX_WORKERS_PER_REPLICA: i64 = 64;

/// Sets the workers every replica runs for `queue` (`Some(n)`), or lets each run its
/// configured concurrency again (`None`; returns whether something was set). Replicas obey
/// within [`crate::worker::SCALE_POLL`]; a restart keeps it.
pub async fn scale_queue(db: &Db, queue: &str, workers: Option<i64>) -> Result<bool, AdminError> {
    let queue = known_queue(queue)?;
    match workers {
        Some(n) => {
            check_scale(n)?;
            db.queue_scales().set(queue, n).await?;
            tracing::info!(queue, workers = n, "queue scaled by an operator");
            Ok(true)
        }
        None => {
            let changed = db.queue_scales().clear(queue).await?;
            tracing::info!(queue, changed, "queue back to its configured workers");
            Ok(changed)
        }
    }
}

/// Refuses workers per replica outside 1 to [`MAX_WORKERS_PER_REPLICA`].
pub fn check_scale(workers: i64) -> Result<(), AdminError> {
    if (1..=MAX_WORKERS_PER_REPLICA).contains(&workers) {
        Ok(())
    } else {
        Err(AdminError::BadScale(workers))
    }
}

/// Resumes `queue`; returns whether it was paused.
pub async fn resume_queue(db: &Db, queue: &str) -> Result<bool, AdminError> {
    let queue = known_queue(queue)?;
    let changed = db.queue_pauses().resume(queue).await?;
    tracing::info!(queue, changed, "queue resumed by an operator");
    Ok(changed)
}

/// Refuses `action` on `status` unless it is one of `allowed`.
pub fn require(
    status: JobStatus,
    action: &'static str,
    allowed: &'static [JobStatus],
) -> Result<(), AdminError> {
    if allowed.contains(&status) {
        Ok(())
    } else {
        Err(AdminError::WrongStatus {
            action,
            status,
            allowed,
        })
    }
}

fn log_outcome(change: JobChange, outcome: &ActionOutcome) {
    tracing::info!(
        action = change.name(),
        changed = outcome.changed.len(),
        skipped = outcome.skipped.len(),
        not_found = outcome.not_found.len(),
        ids = %outcome.changed.join(", "),
        "jobs changed by an operator"
    );
}

/// A duration as operators write it: `90s`, `15m`, `12h`, `7d`, or a sum (`1d12h`).
/// The longest duration [`parse_duration`] takes: 100 years of 365 days, beyond any job's age
/// and well inside what a timestamp can subtract (a larger one once wrapped into a negative
/// age and purged every finished job).
pub const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration `{text}`: write it like 90s, 15m, 12h, 7d or 1d12h");
    let mut total = 0u64;
    let mut number = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        number.clear();
        any = true;
    }
    if !number.is_empty() || !any {
        return Err(bad());
    }
    if total > MAX_DURATION_SECS {
        return Err(format!(
            "duration `{text}` is out of range: at most {}",
            format_duration(Duration::from_secs(MAX_DURATION_SECS))
        ));
    }
    Ok(Duration::from_secs(total))
}

/// A duration as [`parse_duration`] reads it: `0s`, `90s`, `1d12h`.
pub fn format_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            text.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_replica_is_read_from_its_name() {
        let cases = [
            ("sync_me_file@pod-7f9c:412#3", Some("pod-7f9c:412")),
            ("populate_target@local:5899-chunks#0.2", Some("local:5899")),
            ("backfill@host.example:77#0", Some("host.example:77")),
            ("apalis-worker-1", None),
            ("q@nohost#1", None),
            ("q@:12#1", None),
        ];
        for (name, process) in cases {
            assert_eq!(process_of(name).as_deref(), process, "{name}");
        }
    }

    #[test]
    fn a_duration_beyond_a_century_is_refused() {
        for text in ["18446744073709551615s", "36501d", "5300w"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("out of range"), "{text}: {err}");
        }
        assert_eq!(
            parse_duration("36500d"),
            Ok(Duration::from_secs(MAX_DURATION_SECS))
        );
    }

    #[test]
    fn durations_as_operators_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
        for text in ["0s", "90s", "1d12h", "1d1h1m1s"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(
                parse_duration(&format_duration(parsed)),
                Ok(parsed),
                "{text}"
            );
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        for bad in ["", "12", "h", "3x", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_parse_in_any_case_and_unknown_ones_list_the_known() {
        assert_eq!("failed".parse::<JobStatus>(), Ok(JobStatus::Failed));
        assert_eq!("KILLED".parse::<JobStatus>(), Ok(JobStatus::Killed));
        let err = "stuck".parse::<JobStatus>().unwrap_err();
        assert!(
            err.contains("Pending, Queued, Running, Done, Failed, Killed"),
            "{err}"
        );
    }

    #[test]
    fn a_running_job_cannot_be_purged_and_a_pending_one_not_retried() {
        assert!(require(JobStatus::Running, "purge", &JobStatus::DELETABLE).is_err());
        let err = require(JobStatus::Pending, "retry", &JobStatus::RETRYABLE).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot retry Pending jobs: retry takes Failed, Killed, Done"
        );
        assert!(known_queue("sync_me_file").is_ok());
        assert!(known_queue("sync").unwrap_err().is_bad_input());
    }
}

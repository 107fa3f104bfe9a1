//! The queues' history: each serving process rolls every queue's closed minutes up into
//! `snapline_queue_minutes` (jobs done, attempts failed, the oldest waiting job's age), what
//! the board's charts draw; and a job's attempts for its page. Replicas may roll the same
//! minute: the first row written stands, so any number of them is safe.

use crate::queues::ALL as QUEUES;
use repo::{Db, JobAttemptRecord, QueueMinute, RepoError};
use std::future::Future;
use std::time::Duration;

/// How often a serving process looks for closed minutes to roll up.
pub const ROLL_UP_EVERY: Duration = Duration::from_secs(15);

/// Rolls up every queue's closed minutes every [`ROLL_UP_EVERY`] until `stop`, in a task of
/// its own; a failure is logged (once until a roll-up succeeds) and tried again next time.
pub fn roll_up_queue_history(db: Db, stop: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(async move {
        tokio::pin!(stop);
        let mut failing = false;
        loop {
            match roll_up_once(&db).await {
                Ok(_) => failing = false,
                Err(err) if !failing => {
                    tracing::warn!(error = %err, "rolling up the queues' history failed; trying again in 15 s");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(ROLL_UP_EVERY) => {}
                _ = &mut stop => return,
            }
        }
    });
}

/// Rolls up every queue's closed minutes once; returns the minutes written.
pub async fn roll_up_once(db: &Db) -> Result<u64, RepoError> {
    let mut written = 0;
    for queue in QUEUES {
        written += db.queue_history().roll_up(queue).await?;
    }
    Ok(written)
}

/// One queue's charts: per minute over the last hour, per hour over the last day.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QueueHistory {
    pub queue: String,
    /// The database clock when read, Unix seconds.
    pub now: i64,
    /// The 60 minutes up to the newest rolled up, oldest first; a minute not rolled up (no
    /// service ran) is absent.
    pub minutes: Vec<QueueMinute>,
    /// The last 24 hours, summed from the minutes, oldest first (the oldest waiting age is
    /// the hour's largest sample).
    pub hours: Vec<QueueMinute>,
}

/// `queue`'s history, read from the rolled-up minutes: two bounded reads of at most 1,440
/// rows.
pub async fn queue_history(db: &Db, queue: &str) -> Result<QueueHistory, RepoError> {
    let history = db.queue_history();
    let now = history.now().await?;
    let day = history.minutes(queue, now - 24 * 3600).await?;
    // The hour ending with the newest minute rolled up (a minute or two ago).
    let newest = day.last().map_or(now, |m| m.minute);
    let minutes = day
        .iter()
        .filter(|m| m.minute > newest - 3600)
        .cloned()
        .collect();
    Ok(QueueHistory {
        queue: queue.to_owned(),
        now,
        minutes,
        hours: hours_of(&day),
    })
}

/// Jobs of `queue` done in the last hour's rolled-up minutes (`None`: none rolled up): 60
/// rows at most, however many jobs the queue table keeps.
pub async fn done_in_the_last_hour(db: &Db, queue: &str) -> Result<Option<i64>, RepoError> {
    let history = db.queue_history();
    let now = history.now().await?;
    let minutes = history.minutes(queue, now - 3600).await?;
    Ok((!minutes.is_empty()).then(|| minutes.iter().map(|m| m.done).sum()))
}

/// Minutes summed per hour (the hour's start, Unix seconds), oldest first.
pub fn hours_of(minutes: &[QueueMinute]) -> Vec<QueueMinute> {
    let mut hours: Vec<QueueMinute> = Vec::new();
    for m in minutes {
        let hour = m.minute.div_euclid(3600) * 3600;
        match hours.last_mut() {
            Some(last) if last.minute == hour => {
                last.done += m.done;
                last.failed += m.failed;
                last.oldest_waiting_secs = match (last.oldest_waiting_secs, m.oldest_waiting_secs) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            _ => hours.push(QueueMinute {
                minute: hour,
                ..m.clone()
            }),
        }
    }
    hours
}

/// A Unix time as snapline writes times for people: UTC, RFC 3339, to the second.
pub fn utc(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

/// The attempts of job `job_id` that did not end it done, oldest first.
pub async fn attempts_of(db: &Db, job_id: &str) -> Result<Vec<JobAttemptRecord>, RepoError> {
    db.queue_history().attempts_of(job_id).await
}

#[cfg(test)]
mod tests {
    use super::hours_of;
    use repo::QueueMinute;

    fn minute(minute: i64, done: i64, failed: i64, oldest: Option<f64>) -> QueueMinute {
        QueueMinute {
            minute,
            done,
            failed,
            oldest_waiting_secs: oldest,
        }
    }

    #[test]
    fn hours_sum_their_minutes_and_keep_the_largest_wait() {
        let minutes = [
            minute(7200 - 60, 1, 0, Some(3.0)),
            minute(7200, 2, 1, None),
            minute(7200 + 60, 3, 0, Some(9.0)),
            minute(7200 + 3540, 4, 2, Some(1.0)),
            minute(10_800, 5, 0, None),
        ];
        assert_eq!(
            hours_of(&minutes),
            [
                minute(3600, 1, 0, Some(3.0)),
                minute(7200, 9, 3, Some(9.0)),
                minute(10_800, 5, 0, None),
            ]
        );
        assert!(hours_of(&[]).is_empty());
    }
}

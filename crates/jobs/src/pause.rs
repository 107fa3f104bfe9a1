//! Queue pauses (`snapctl queues pause Q`): the switch is a row in the database that the
//! queue table itself enforces (migration 17: no fetch takes a paused queue's jobs), so every
//! replica obeys it from the pause's commit on, its workers running on and finding nothing;
//! running jobs finish and pushes still land. What runs here only reports the switches.

use crate::queues::ALL as QUEUES;
use repo::Db;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

/// How often a serving process reads the pause switches for `snapline_queue_paused`.
pub const PAUSE_POLL: Duration = Duration::from_secs(1);

/// Reads the switches every [`PAUSE_POLL`] until `stop`, in a task of its own, and sets
/// `snapline_queue_paused` from them; a read that fails keeps the gauges as they were (and
/// says so in the log, once until a read succeeds).
pub fn report_pauses(db: Db, stop: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(async move {
        tokio::pin!(stop);
        let mut failing = false;
        let mut seen: Option<BTreeSet<String>> = None;
        loop {
            match db.queue_pauses().paused().await {
                Ok(rows) => {
                    let now: BTreeSet<String> = rows.into_iter().map(|(q, _)| q).collect();
                    for queue in QUEUES {
                        crate::metrics::queue_paused(queue, now.contains(queue));
                    }
                    if seen.as_ref() != Some(&now) {
                        tracing::info!(paused = ?now, "queue pauses read");
                        seen = Some(now);
                    }
                    failing = false;
                }
                Err(err) if !failing => {
                    tracing::warn!(error = %err, "reading the queue pauses failed; the gauges keep the last ones read");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(PAUSE_POLL) => {}
                _ = &mut stop => return,
            }
        }
    });
}

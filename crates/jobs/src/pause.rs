//! Queue pauses (`snapctl queues pause Q`): the switch is a row in the database, so every
//! replica obeys it. Each serving process reads the switches every [`PAUSE_POLL`] and stops
//! its workers of a paused queue the way a shutdown does (the jobs they run finish; jobs
//! fetched but not started go back to the queue), building them again at the resume
//! (`worker::run_worker`); pushes still land.

use crate::queues::ALL as QUEUES;
use repo::Db;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often a serving process reads the pause switches: a pause takes effect within about
/// this long.
pub const PAUSE_POLL: Duration = Duration::from_secs(1);

/// The paused queues as this process last read them.
#[derive(Clone, Debug)]
pub struct Pauses(watch::Receiver<Arc<BTreeSet<String>>>);

impl Pauses {
    /// Reads the switches every [`PAUSE_POLL`] until `stop`, in a task of its own; a read
    /// that fails keeps the last state (and says so in the log).
    pub fn watch(db: Db, stop: impl Future<Output = ()> + Send + 'static) -> Pauses {
        let (tx, rx) = watch::channel(Arc::new(BTreeSet::new()));
        tokio::spawn(async move {
            tokio::pin!(stop);
            let mut failing = false;
            loop {
                match db.queue_pauses().paused().await {
                    Ok(rows) => {
                        let now: BTreeSet<String> = rows.into_iter().map(|(q, _)| q).collect();
                        for queue in QUEUES {
                            crate::metrics::queue_paused(queue, now.contains(queue));
                        }
                        tx.send_if_modified(|seen| {
                            if **seen == now {
                                return false;
                            }
                            tracing::info!(
                                paused = ?now,
                                "queue pauses changed"
                            );
                            *seen = Arc::new(now);
                            true
                        });
                        failing = false;
                    }
                    Err(err) if !failing => {
                        tracing::warn!(error = %err, "reading the queue pauses failed; keeping the last ones read");
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
        Pauses(rx)
    }

    /// The switch of one queue.
    pub fn for_queue(&self, queue: &'static str) -> QueuePause {
        QueuePause {
            queue,
            pauses: self.0.clone(),
        }
    }
}

/// One queue's pause switch, as its workers see it.
#[derive(Clone, Debug)]
pub struct QueuePause {
    queue: &'static str,
    pauses: watch::Receiver<Arc<BTreeSet<String>>>,
}

impl QueuePause {
    pub fn is_paused(&self) -> bool {
        self.pauses.borrow().contains(self.queue)
    }

    /// Completes once the queue is (or is already) `paused`; never if the watcher ended.
    pub async fn until(&mut self, paused: bool) {
        let queue = self.queue;
        if self
            .pauses
            .wait_for(|set| set.contains(queue) == paused)
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }
}

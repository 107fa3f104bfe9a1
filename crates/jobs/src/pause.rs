//! Queue pauses (`snapctl queues pause Q`): the switch is a row in the database, so every
//! replica obeys it. Each serving process reads the switches every [`PAUSE_POLL`] and its
//! workers of a paused queue stop asking for jobs ([`PauseLayer`]: the service is not ready,
//! so the backend is not polled); the jobs they run finish; pushes still land.

use crate::status::QUEUES;
use repo::Db;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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

/// Holds a worker's fetching while its queue is paused: a tower layer whose service is not
/// ready while the switch says paused, so the worker asks its backend for no new job; the
/// jobs it runs finish. Apalis's own worker pause is not used: in apalis 1.0 its resume wakes
/// the one waker the worker context keeps, and a worker whose fetch was in flight at the pause
/// was seen (in a thirty-minute soak) never to be polled again, holding a job it had fetched.
/// Here the worker's own task waits on the switch, so a resume always reaches it.
#[derive(Clone, Debug)]
pub struct PauseLayer {
    pause: Option<QueuePause>,
}

impl PauseLayer {
    /// `None`: a queue nobody pauses (the layer lets everything through).
    pub fn new(pause: Option<QueuePause>) -> Self {
        Self { pause }
    }
}

impl<S> apalis::prelude::Layer<S> for PauseLayer {
    type Service = PauseGate<S>;

    fn layer(&self, inner: S) -> PauseGate<S> {
        PauseGate {
            inner,
            pause: self.pause.clone(),
            resumed: None,
        }
    }
}

/// The service [`PauseLayer`] makes.
pub struct PauseGate<S> {
    inner: S,
    pause: Option<QueuePause>,
    /// While paused: completes at the resume, and wakes the task that polls it.
    resumed: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<S: Clone> Clone for PauseGate<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            pause: self.pause.clone(),
            resumed: None,
        }
    }
}

impl<S, Request> apalis::prelude::Service<Request> for PauseGate<S>
where
    S: apalis::prelude::Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if let Some(pause) = &self.pause
            && pause.is_paused()
        {
            let resumed = self.resumed.get_or_insert_with(|| {
                let mut pause = pause.clone();
                Box::pin(async move { pause.until(false).await })
            });
            if resumed.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.resumed = None;
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> S::Future {
        self.inner.call(request)
    }
}

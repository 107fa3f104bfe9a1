//! How an idle PostgreSQL worker learns that a job was pushed: the notifications apalis's
//! insert trigger sends, read so that none can leave the worker asleep.

use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A worker's stream of push notifications, coalesced: each poll takes every notification
/// already received and yields one wake-up for all of them, and only returns `Pending` (so
/// only waits) with the stream drained and this task registered for the next one.
///
/// apalis polls a worker's wake-up stream once per poll of the worker and ignores what it
/// yields, so read as is, a worker takes one notification per poll. Notifications that came
/// while it ran a job pile up; with one waiting the stream is always ready, never registers
/// the worker for the next, and the worker sleeps until its heartbeat (a second) with jobs
/// waiting. After a burst that held every job pushed at 200 a second for 250 ms on average
/// (`tests/tests/it/sync.rs::pushes_after_a_burst_are_taken_at_once`).
pub struct CoalescedWakeups<S> {
    notifications: S,
}

impl<S> CoalescedWakeups<S> {
    pub fn new(notifications: S) -> Self {
        Self { notifications }
    }
}

impl<S: Stream + Unpin> Stream for CoalescedWakeups<S> {
    type Item = ();

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let mut notified = false;
        loop {
            match self.notifications.poll_next_unpin(cx) {
                Poll::Ready(Some(_)) => notified = true,
                Poll::Ready(None) if notified => return Poll::Ready(Some(())),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        if notified {
            // A notification taken while the worker's fetch was under way may be for a job
            // that fetch did not see: poll the worker once more, which fetches again if it is
            // idle by then. (Any fetch it misses, the other workers, each notified too, or
            // the next heartbeat make up.)
            cx.waker().wake_by_ref();
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CoalescedWakeups;
    use futures::StreamExt;
    use futures::channel::mpsc;
    use futures::task::noop_waker_ref;
    use std::task::{Context, Poll};

    #[test]
    fn takes_every_waiting_notification_in_one_poll() {
        let (tx, rx) = mpsc::unbounded::<u32>();
        let mut wakeups = CoalescedWakeups::new(rx);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert_eq!(wakeups.poll_next_unpin(&mut cx), Poll::Pending);
        for id in 0..5 {
            tx.unbounded_send(id).unwrap();
        }
        assert_eq!(wakeups.poll_next_unpin(&mut cx), Poll::Ready(Some(())));
        // all five taken: the next poll waits (and so registers for the next notification)
        assert_eq!(wakeups.poll_next_unpin(&mut cx), Poll::Pending);
        tx.unbounded_send(5).unwrap();
        drop(tx);
        assert_eq!(wakeups.poll_next_unpin(&mut cx), Poll::Ready(Some(())));
        assert_eq!(wakeups.poll_next_unpin(&mut cx), Poll::Ready(None));
    }

    #[tokio::test]
    async fn a_notification_wakes_a_waiting_reader() {
        let (tx, rx) = mpsc::unbounded::<u32>();
        let mut wakeups = CoalescedWakeups::new(rx);
        let reader = tokio::spawn(async move { wakeups.next().await });
        tokio::task::yield_now().await;
        tx.unbounded_send(1).unwrap();
        assert_eq!(reader.await.unwrap(), Some(()));
    }
}

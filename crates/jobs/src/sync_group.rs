//! Group commit of a syncer's jobs: the `sync_me_file` jobs a syncer process holds at one
//! moment are synced several per transaction ([`sync_me_files`]) instead of one each.
//!
//! Why: a sync is a handful of tiny statements, so its cost is round trips and per-statement
//! and per-transaction overhead, not rows; a group of `n` me_files pays them once. No job
//! waits for a group to fill: a transaction that frees up takes whatever jobs are waiting
//! (at most `me_files_per_transaction`), so at a trickle of pushes every group is one
//! me_file and the latency is a single sync's, while a backlog drains in groups.
//!
//! A group whose transaction fails (a poison me_file, a deadlock, a lost connection) is
//! synced again one me_file per transaction, so each job gets its own result and one bad
//! me_file never fails the others. A me_file pushed twice is never in one group twice: the
//! second job waits for the next group (its push came after the first was read).

use crate::BandCache;
use crate::JobError;
use crate::sync::{SyncSummary, sync_me_files};
use domain::MeFileId;
use repo::Db;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// A handle on a process's group committer; cloned into every worker.
#[derive(Clone, Debug)]
pub struct SyncGroups {
    pub(crate) db: Db,
    requests: mpsc::UnboundedSender<Request>,
}

/// One job's me_file, the span of its job (the group's work is traced under the first
/// one's and linked to the others') and where its result goes.
#[derive(Debug)]
struct Request {
    me_file: MeFileId,
    span: tracing::Span,
    reply: oneshot::Sender<Result<SyncSummary, JobError>>,
}

impl SyncGroups {
    /// Starts the committer: at most `transactions` sync transactions at a time, each of at
    /// most `me_files_per_transaction` me_files. It runs until every clone of the handle is
    /// dropped and the groups under way are done.
    pub fn start(
        db: Db,
        cache: Arc<BandCache>,
        transactions: usize,
        me_files_per_transaction: usize,
    ) -> Self {
        let (requests, waiting) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(
            waiting,
            db.clone(),
            cache,
            transactions.max(1),
            me_files_per_transaction.max(1),
        ));
        Self { db, requests }
    }

    /// Syncs `me_file` in the next group a transaction takes; its own summary or error.
    pub async fn sync(&self, me_file: MeFileId) -> Result<SyncSummary, JobError> {
        let (reply, result) = oneshot::channel();
        let request = Request {
            me_file,
            span: tracing::Span::current(),
            reply,
        };
        let stopped = || JobError::Queue("the syncer's group committer stopped".into());
        self.requests.send(request).map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

/// Takes the waiting requests into groups, one group per free transaction.
async fn dispatch(
    mut incoming: mpsc::UnboundedReceiver<Request>,
    db: Db,
    cache: Arc<BandCache>,
    transactions: usize,
    me_files_per_transaction: usize,
) {
    let permits = Arc::new(Semaphore::new(transactions));
    let mut waiting: VecDeque<Request> = VecDeque::new();
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if waiting.is_empty() {
            match incoming.recv().await {
                Some(request) => waiting.push_back(request),
                None => return,
            }
        }
        while let Ok(request) = incoming.try_recv() {
            waiting.push_back(request);
        }
        let group = take_group(&mut waiting, me_files_per_transaction);
        if group.is_empty() {
            continue;
        }
        let (db, cache) = (db.clone(), cache.clone());
        tokio::spawn(async move {
            sync_group(&db, &cache, group).await;
            drop(permit);
        });
    }
}

/// The first `most` distinct me_files of `waiting` whose job still waits for its result
/// (one given up, by a timeout, is dropped); the rest stay, in order.
fn take_group(waiting: &mut VecDeque<Request>, most: usize) -> Vec<Request> {
    let mut group = Vec::new();
    let mut taken = HashSet::new();
    let mut rest = VecDeque::new();
    while let Some(request) = waiting.pop_front() {
        if request.reply.is_closed() {
            continue;
        }
        if group.len() < most && taken.insert(request.me_file) {
            group.push(request);
        } else {
            rest.push_back(request);
        }
    }
    *waiting = rest;
    group
}

/// Syncs `group` in one transaction; if that fails and the group has several me_files,
/// each again in its own.
async fn sync_group(db: &Db, cache: &BandCache, group: Vec<Request>) {
    use tracing::Instrument;
    let span = group[0].span.clone();
    for other in &group[1..] {
        span.follows_from(&other.span);
    }
    let me_files: Vec<MeFileId> = group.iter().map(|r| r.me_file).collect();
    let result = sync_me_files(db, cache, &me_files)
        .instrument(span.clone())
        .await;
    match result {
        Ok(summaries) => {
            crate::metrics::sync_transaction_committed(me_files.len());
            for (request, summary) in group.into_iter().zip(summaries) {
                let _ = request.reply.send(Ok(summary));
            }
        }
        Err(err) if group.len() == 1 => {
            let _ = group
                .into_iter()
                .next()
                .expect("one request")
                .reply
                .send(Err(err));
        }
        Err(err) => {
            crate::metrics::sync_transaction_split();
            tracing::warn!(parent: &span, me_files = me_files.len(), error = %err,
                "a group of syncs failed; syncing each of its me_files in its own transaction");
            for request in group {
                let result = sync_me_files(db, cache, &[request.me_file])
                    .instrument(request.span.clone())
                    .await
                    .map(|mut one| one.pop().expect("one summary"));
                if result.is_ok() {
                    crate::metrics::sync_transaction_committed(1);
                }
                let _ = request.reply.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(me_file: i64) -> (Request, oneshot::Receiver<Result<SyncSummary, JobError>>) {
        let (reply, result) = oneshot::channel();
        let request = Request {
            me_file: MeFileId(me_file),
            span: tracing::Span::none(),
            reply,
        };
        (request, result)
    }

    #[test]
    fn a_group_takes_distinct_me_files_up_to_its_size_in_push_order() {
        let mut receivers = Vec::new();
        let mut waiting = VecDeque::new();
        for me_file in [5, 3, 5, 9, 1, 3, 7] {
            let (request, result) = request(me_file);
            waiting.push_back(request);
            receivers.push(result);
        }
        let ids = |requests: &[Request]| requests.iter().map(|r| r.me_file.0).collect::<Vec<_>>();
        let group = take_group(&mut waiting, 4);
        assert_eq!(ids(&group), [5, 3, 9, 1]);
        let rest: Vec<Request> = waiting.drain(..).collect();
        assert_eq!(
            ids(&rest),
            [5, 3, 7],
            "duplicates and the overflow wait, in order"
        );
        waiting.extend(rest);
        let group = take_group(&mut waiting, 4);
        assert_eq!(ids(&group), [5, 3, 7]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn a_job_that_stopped_waiting_is_not_synced() {
        let (given_up, result) = request(1);
        drop(result);
        let (kept, _result) = request(2);
        let mut waiting = VecDeque::from([given_up, kept]);
        let group = take_group(&mut waiting, 8);
        assert_eq!(group.len(), 1);
        assert_eq!(group[0].me_file, MeFileId(2));
    }
}

//! The apalis storages of snapline's queues, on the process's one pool: `apalis.jobs` on
//! PostgreSQL (production), the apalis tables on SQLite (the embedded default).

use crate::JobError;
use crate::queues::{FETCH_BATCH, fetch_batch};
use crate::wakeups::CoalescedWakeups;
use apalis::prelude::{PollWith, StreamStrategy, TaskBuilder, TaskSink};
use repo::{Backend, Db};
use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;

/// How many times a job is tried in all (the storage keeps a failed job for another try until
/// this many attempts were made; a worker that dies mid-job also uses one up).
pub const DEFAULT_MAX_ATTEMPTS: usize = 5;

/// How often a worker reports it is alive. apalis also records finished jobs on this beat
/// when no new job arrives, so it bounds how long a finished job may still show `Running`;
/// a worker silent for several beats has its jobs re-enqueued for another replica.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A worker silent this long has stopped beating (an operator's reading: apalis hands its
/// jobs out again once it has missed its storage's count of beats).
pub const SILENT_AFTER: Duration = Duration::from_secs(3 * HEARTBEAT.as_secs());

pub fn postgres_storage<T>(db: &Db, queue: &str) -> apalis_postgres::PostgresStorage<T> {
    apalis_postgres::PostgresStorage::new(db.pg_pool().expect("pg pool")).with_config(
        apalis_postgres::Config::default()
            .queue(queue)
            .lock_tasks(false)
            .batch_size(fetch_batch(queue))
            .heartbeat_interval(HEARTBEAT),
    )
}

/// What wakes an idle worker of a PostgreSQL queue to fetch: a notification per push, or
/// a clock through a transaction-mode pooler.
pub type Wakeups = futures::stream::BoxStream<'static, ()>;

/// [`postgres_storage`] woken by the notification apalis's insert trigger sends for each job
/// pushed onto `queue` (its own LISTEN connection), coalesced ([`CoalescedWakeups`]); without
/// a notification it fetches on its heartbeat. Through a transaction-mode pooler, which
/// passes no notification (LISTEN needs a session of its own), it fetches every `poll`
/// instead.
pub fn postgres_storage_woken_by_pushes<T>(
    db: &Db,
    queue: &str,
    poll: Duration,
) -> PollWith<apalis_postgres::PostgresStorage<T>, StreamStrategy<Wakeups>> {
    use futures::StreamExt;
    let wakeups: Wakeups = match db.pooler() {
        repo::Pooler::None => CoalescedWakeups::new(apalis_postgres::Pubsub::new(
            db.pg_pool().expect("pg pool").clone(),
            queue.to_string(),
        ))
        .boxed(),
        repo::Pooler::Transaction => futures::stream::unfold((), move |()| async move {
            tokio::time::sleep(poll).await;
            Some(((), ()))
        })
        .boxed(),
    };
    PollWith::new(postgres_storage(db, queue), StreamStrategy::new(wakeups))
}

pub fn sqlite_storage<T>(db: &Db, queue: &str) -> apalis_sqlite::SqliteStorage<T> {
    apalis_sqlite::SqliteStorage::new(db.sqlite_pool().expect("sqlite pool")).with_config(
        apalis_sqlite::Config::default()
            .queue(queue)
            .batch_size(fetch_batch(queue))
            .heartbeat_interval(HEARTBEAT),
    )
}

/// Pushes one job onto `queue`.
pub async fn push<T>(db: &Db, queue: &str, payload: T, max_attempts: usize) -> Result<(), JobError>
where
    T: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static,
{
    push_task(db, queue, payload, max_attempts, None).await
}

/// Pushes one job under `key` unless the queue already holds a job with that key (apalis's
/// idempotency key, unique per queue in its table); returns whether this call added it. Two
/// racing calls add one job: the loser's insert fails on the unique key (an error worth
/// retrying, after which it finds the job) on PostgreSQL, or is skipped on SQLite.
pub async fn push_once<T>(
    db: &Db,
    queue: &str,
    payload: T,
    max_attempts: usize,
    key: &str,
) -> Result<bool, JobError>
where
    T: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static,
{
    if db.queue_jobs().has_key(queue, key).await? {
        return Ok(false);
    }
    // SQLite's storage skips a push whose key exists without a word: whether this push
    // added the job is whether its id is there.
    let id = apalis::prelude::TaskId::from_ulid(ulid::Ulid::generate());
    match push_task_with_id(
        db,
        queue,
        payload,
        max_attempts,
        Some(key),
        Some(id.clone()),
    )
    .await
    {
        Ok(()) if db.backend() == Backend::Sqlite => {
            Ok(db.queue_jobs().has_id(queue, &id.to_string()).await?)
        }
        Ok(()) => Ok(true),
        // Two replicas past the check at once: the queue table's unique key refused the
        // second push, which is the tick already pushed, not an error.
        Err(err) if db.queue_jobs().has_key(queue, key).await? => {
            tracing::debug!(key, error = %err, "pushed meanwhile by another replica");
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

async fn push_task<T>(
    db: &Db,
    queue: &str,
    payload: T,
    max_attempts: usize,
    idempotency_key: Option<&str>,
) -> Result<(), JobError>
where
    T: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static,
{
    push_task_with_id(db, queue, payload, max_attempts, idempotency_key, None).await
}

/// The one place a job is built and handed to the database's apalis storage (`id`: the
/// storage's own when `None`).
async fn push_task_with_id<T>(
    db: &Db,
    queue: &str,
    payload: T,
    max_attempts: usize,
    idempotency_key: Option<&str>,
    id: Option<apalis::prelude::TaskId>,
) -> Result<(), JobError>
where
    T: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static,
{
    let mut builder = TaskBuilder::new(payload).max_attempts(max_attempts);
    if let Some(key) = idempotency_key {
        builder = builder.idempotency_key(key);
    }
    if let Some(id) = id {
        builder = builder.task_id(id);
    }
    let task = builder.build();
    match db.backend() {
        Backend::Postgres => postgres_storage::<T>(db, queue)
            .push_task(task)
            .await
            .map_err(|e| JobError::Queue(e.into())),
        Backend::Sqlite => sqlite_storage::<T>(db, queue)
            .push_task(task)
            .await
            .map_err(|e| JobError::Queue(e.into())),
    }
}

/// Pushes one job unless an identical one is still waiting (not started): the dedup of
/// "one sync per me_file while waiting". Returns whether a job was pushed. Two pushes racing
/// may both push; the second run then finds nothing to change.
pub async fn push_unless_waiting<T>(
    db: &Db,
    queue: &str,
    payload: T,
    max_attempts: usize,
) -> Result<bool, JobError>
where
    T: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static,
{
    let json = serde_json::to_string(&payload).map_err(|e| JobError::Queue(e.into()))?;
    if db.queue_jobs().has_waiting(queue, &json).await? {
        return Ok(false);
    }
    push(db, queue, payload, max_attempts).await?;
    Ok(true)
}

/// After `worker` of `queue` stopped on a backend error: a job it held or a fetch would take
/// whose bytes are not JSON at all is `Killed` with a clear error (apalis fails a whole fetch
/// on one such job, so it would otherwise stop every worker that fetches it, forever), and
/// the jobs it held go back to waiting at once. A failure here (the database is down) is logged; the queue's
/// own heartbeat check hands the jobs out again later.
pub async fn settle_failed_worker(db: &Db, queue: &str, worker: &str) {
    match db
        .queue_jobs()
        .settle_after_failed_fetch(queue, worker, 4 * FETCH_BATCH as u64)
        .await
    {
        Ok(killed) if killed.is_empty() => {}
        Ok(killed) => tracing::warn!(
            queue,
            worker,
            jobs = ?killed,
            "killed jobs whose payload cannot be decoded"
        ),
        Err(err) => tracing::debug!(
            queue,
            worker,
            error = %err,
            "could not settle the jobs of a stopped worker; the heartbeat check will"
        ),
    }
}

/// How much of a malformed payload an error message quotes.
const MALFORMED_SHOWN_CHARS: usize = 200;

/// A job's payload as read from the queue: the job's type, or whatever JSON another service
/// wrote instead. Decoding never fails on well-formed JSON, so a malformed payload reaches the
/// handler, which fails it permanently with a clear error instead of the worker choking on
/// it. Serializes exactly as `T`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Payload<T> {
    Valid(T),
    Malformed(serde_json::Value),
}

/// Only a JSON object can be a valid payload: serde would otherwise also read a struct from
/// an array (`[1]` as `{"target_id": 1}`), which no writer means.
impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for Payload<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The raw text, so that `T` is read from it directly: a buffered `Value` would hide
        // duplicate keys (`{"me_file_id":42,"me_file_id":43}`), which must be refused.
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        if text.trim_start().starts_with('{')
            && let Ok(job) = serde_json::from_str::<T>(text)
        {
            return Ok(Payload::Valid(job));
        }
        Ok(Payload::Malformed(
            serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.into())),
        ))
    }
}

impl<T> Payload<T> {
    /// The payload, or [`JobError::Malformed`] naming what was received and what was expected.
    /// An oversized payload is cut in the message, so the error kept in the queue and the
    /// logs stays readable.
    pub fn into_valid(self, expected: &str) -> Result<T, JobError> {
        match self {
            Payload::Valid(job) => Ok(job),
            Payload::Malformed(value) => {
                let text = value.to_string();
                let shown = match text.char_indices().nth(MALFORMED_SHOWN_CHARS) {
                    Some((cut, _)) => {
                        format!("{}... ({} bytes)", &text[..cut], text.len())
                    }
                    None => text,
                };
                Err(JobError::Malformed(format!("{shown} is not {expected}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Payload;
    use crate::populate_target::PopulateTarget;

    fn decode(text: &str) -> Payload<PopulateTarget> {
        serde_json::from_str(text).expect("well-formed JSON always decodes")
    }

    #[test]
    fn an_object_of_the_right_shape_is_valid() {
        assert_eq!(
            decode(r#"{"target_id": 7}"#),
            Payload::Valid(PopulateTarget { target_id: 7 })
        );
    }

    #[test]
    fn arrays_duplicate_keys_and_unknown_fields_are_malformed() {
        for text in [
            "[7]",
            r#"{"target_id":7,"target_id":8}"#,
            r#"{"target_id":7,"extra":1}"#,
            r#"{"target_id":"7"}"#,
            "null",
        ] {
            assert!(
                matches!(decode(text), Payload::Malformed(_)),
                "{text} must be malformed"
            );
        }
    }

    #[test]
    fn a_malformed_payload_is_quoted_cut_to_a_readable_length() {
        let huge = format!(r#"{{"pad":"{}"}}"#, "é".repeat(10_000));
        let err = decode(&huge).into_valid("{}").unwrap_err().to_string();
        assert!(err.len() < 600, "{} bytes", err.len());
        assert!(err.contains("bytes) is not {}"), "{err}");
    }
}

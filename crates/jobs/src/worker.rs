//! The worker runtime shared by every queue: retries with exponential backoff and jitter for
//! transient errors only, a per-job timeout, bounded concurrency, graceful shutdown.

use crate::JobError;
use crate::metrics::Outcome;
use apalis::prelude::{AbortError, BoxDynError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a queue's consumer runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The worker's name, as it appears in the queue tables.
    pub name: String,
    /// Workers of this process, each with its own fetches (and its own LISTEN connection on
    /// PostgreSQL).
    pub concurrency: usize,
    /// Jobs each worker runs at once: 1, except where handlers wait on one another (the
    /// syncer's group commit).
    pub jobs_per_worker: usize,
    /// Tries in all for a transient failure (permanent failures are not retried).
    pub max_attempts: usize,
    /// A job running longer fails (and is retried).
    pub timeout: Duration,
    /// First retry delay; doubles each time, with jitter, up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Where the workers report a backend failure (what `/readyz` reads).
    pub health: WorkerHealth,
    /// Through a transaction-mode pooler (no LISTEN): how often an idle worker fetches.
    pub pooler_poll: Duration,
}

impl WorkerOptions {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            concurrency: 1,
            jobs_per_worker: 1,
            max_attempts: crate::queue::DEFAULT_MAX_ATTEMPTS,
            timeout: Duration::from_secs(3600),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            health: WorkerHealth::default(),
            pooler_poll: Duration::from_millis(
                settings::Settings::defaults().database.pooler_poll_ms,
            ),
        }
    }

    /// These options with the workers reporting to `health` (a serving process's `/readyz`).
    pub fn reporting_to(self, health: WorkerHealth) -> Self {
        Self { health, ..self }
    }
}

/// How long a restarted worker must run without failing again before it counts as
/// recovered: a worker that cannot poll at all fails within milliseconds of each start.
pub const RECOVERED_AFTER: Duration = Duration::from_secs(2);

/// What a process knows of its workers' health, shared with its `/readyz`: whether they
/// run, and which of them stopped on a backend error and has not yet run [`RECOVERED_AFTER`]
/// since its restart.
#[derive(Clone, Debug, Default)]
pub struct WorkerHealth(Arc<Mutex<HealthState>>);

#[derive(Debug, Default)]
struct HealthState {
    running: bool,
    /// Worker index -> when it last failed, and why.
    failing: std::collections::BTreeMap<usize, (Instant, String)>,
}

impl WorkerHealth {
    pub fn set_running(&self, running: bool) {
        self.state().running = running;
    }

    /// Records that worker `index` stopped on a backend error (`error`, one line).
    pub fn backend_failed(&self, index: usize, error: &str) {
        self.state()
            .failing
            .insert(index, (Instant::now(), error.to_owned()));
    }

    /// Records that worker `index` has run [`RECOVERED_AFTER`] since its restart.
    pub fn recovered(&self, index: usize) {
        self.state().failing.remove(&index);
    }

    /// `Ok` when the workers run and none is failing; otherwise why not.
    pub fn check(&self) -> Result<(), String> {
        let state = self.state();
        if !state.running {
            return Err("workers are not running".into());
        }
        match state.failing.iter().next() {
            Some((index, (at, error))) => Err(format!(
                "{} worker(s) failing on their backend; worker #{index} stopped {} s ago and is being restarted: {error}",
                state.failing.len(),
                at.elapsed().as_secs()
            )),
            None => Ok(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HealthState> {
        // The state stays consistent even if a holder panicked: plain assignments only.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Which try of which job a handler runs, extracted by apalis from every task: the job's id
/// in the queue, its attempt (1 for the first) and the attempts the worker allows in all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobAttempt {
    pub job_id: String,
    pub attempt: usize,
    pub max_attempts: usize,
}

/// The worker's budget of attempts, shared with handlers through the task's data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttemptBudget(pub usize);

impl<Args: Sync> apalis::prelude::FromRequest<apalis::prelude::Task<Args>> for JobAttempt {
    type Error = std::convert::Infallible;

    async fn from_request(task: &apalis::prelude::Task<Args>) -> Result<Self, Self::Error> {
        Ok(JobAttempt {
            job_id: task.task_id().map(ToString::to_string).unwrap_or_default(),
            attempt: task.attempt().max(1),
            max_attempts: task
                .data()
                .get::<AttemptBudget>()
                .map(|budget| budget.0)
                .or(task.max_attempts())
                .unwrap_or(crate::queue::DEFAULT_MAX_ATTEMPTS),
        })
    }
}

/// Runs one attempt of a job of `queue`: logs it with the job id and attempt, records the
/// job metrics (started, succeeded, retried, failed; duration) and tells apalis whether to
/// try again ([`into_apalis`]).
pub async fn run_job<T>(
    queue: &'static str,
    job: &JobAttempt,
    work: impl Future<Output = Result<T, JobError>>,
) -> Result<T, BoxDynError> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "job",
        queue,
        job_id = %job.job_id,
        attempt = job.attempt,
        trace_id = tracing::field::Empty
    );
    record_trace_id(&span);
    async move {
        let started = std::time::Instant::now();
        crate::metrics::job_started(queue);
        // Dropped unfinished when the attempt times out or the process stops mid-job.
        let mut attempt = FinishGuard {
            queue,
            started,
            done: false,
        };
        let result = work.await;
        attempt.done = true;
        let outcome = match &result {
            Ok(_) => Outcome::Succeeded,
            Err(err) if err.is_transient() && job.attempt < job.max_attempts => Outcome::Retried,
            Err(err) if err.is_transient() => Outcome::Failed("exhausted"),
            Err(_) => Outcome::Failed("permanent"),
        };
        crate::metrics::job_finished(queue, outcome, started.elapsed());
        if outcome == Outcome::Failed("exhausted")
            && let Err(err) = &result
        {
            tracing::error!(error = %err, attempts = job.attempt, "job failed on its last attempt; not retried");
            // Ends the job here: the storage would otherwise run it again up to the
            // max_attempts written at push, beyond the queue's configured budget.
            let exhausted: BoxDynError = Box::new(AbortError::new(JobError::Exhausted {
                attempts: job.attempt,
                last: err.to_string(),
            }));
            return Err(exhausted);
        }
        into_apalis(queue, result)
    }
    .instrument(span)
    .await
}

/// Puts the OpenTelemetry trace id of `span` in its `trace_id` field, so every log line of
/// the job names its trace; nothing when traces are off (no trace id exists).
fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let context = span.context();
    let trace = context.span().span_context().trace_id();
    if trace != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace));
    }
}

struct FinishGuard {
    queue: &'static str,
    started: std::time::Instant,
    done: bool,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        if !self.done {
            crate::metrics::job_finished(
                self.queue,
                Outcome::Failed("interrupted"),
                self.started.elapsed(),
            );
        }
    }
}

/// How long a worker whose backend failed waits before starting again: 200 ms doubling with
/// each failure in a row, at most 10 s.
pub fn restart_pause(failures: u32) -> std::time::Duration {
    let millis = 200u64.saturating_mul(1 << failures.saturating_sub(1).min(6));
    std::time::Duration::from_millis(millis.min(10_000))
}

/// What apalis should do with a handler's result: transient errors fail the attempt (retried
/// with backoff), permanent ones abort the job, which is kept with its error and not retried.
pub fn into_apalis<T>(queue: &str, result: Result<T, JobError>) -> Result<T, BoxDynError> {
    match result {
        Ok(value) => Ok(value),
        Err(err) if err.is_transient() => {
            tracing::warn!(queue, error = %err, "job failed; it will be retried");
            Err(Box::new(err))
        }
        Err(err) => {
            tracing::error!(queue, error = %err, "job failed permanently; not retried");
            Err(Box::new(AbortError::new(err)))
        }
    }
}

/// Whether a failed attempt is worth another one.
pub fn is_retryable(err: &BoxDynError) -> bool {
    err.downcast_ref::<JobError>()
        .map(JobError::is_transient)
        .unwrap_or_else(|| err.downcast_ref::<AbortError>().is_none())
}

/// How often a serving replica reads the workers an operator set per queue.
pub const SCALE_POLL: Duration = Duration::from_secs(1);

/// The workers a replica should run for `queue`: what an operator set, else `configured`;
/// `current` when the setting cannot be read (the replica keeps what it runs).
pub async fn workers_wanted(
    db: &repo::Db,
    queue: &str,
    configured: usize,
    current: usize,
) -> usize {
    match db.queue_scales().all().await {
        Ok(set) => set
            .into_iter()
            .find(|(q, _)| q == queue)
            .and_then(|(_, n)| usize::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(configured),
        Err(err) => {
            tracing::debug!(queue, error = %err, "reading the workers set per queue failed; keeping the workers running");
            current
        }
    }
}

/// Builds and runs the apalis workers of a queue until `$shutdown` completes, with the
/// runtime's policy from `$options` (a [`WorkerOptions`]).
///
/// A process runs `concurrency` workers (or what `snapctl queues scale` set, obeyed within
/// [`SCALE_POLL`]) of one job each rather than one worker of
/// `concurrency` jobs: each apalis worker fetches, marks and acknowledges its jobs in one
/// sequential loop, which capped a single worker near 150 jobs/s with stalls of hundreds of
/// milliseconds under a steady stream of single pushes. Separate workers (each with its own
/// LISTEN connection on PostgreSQL, `FOR UPDATE SKIP LOCKED` between them) spread that work.
macro_rules! run_worker {
    ($queue:expr, $make_storage:expr, $db:expr, $options:expr, $data:expr, $handler:expr, $shutdown:expr) => {{
        use apalis::layers::WorkerBuilderExt;
        use apalis::layers::retry::HasherRng;
        use apalis::layers::retry::RetryPolicy;
        use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
        use apalis::prelude::WorkerBuilder;
        use futures::FutureExt;
        // Before the storage maker, which may take the caller's `Db`.
        let db: repo::Db = $db;
        let make_storage = $make_storage;
        let data = $data;
        let options: $crate::worker::WorkerOptions = $options.clone();
        let retries = options.max_attempts.saturating_sub(1);
        let shutdown = $shutdown.boxed().shared();
        // One task per worker: a worker is polled only when its own waker fires, and the
        // workers' jobs run on all of the runtime's threads. (Joined in one task, the idle
        // workers woke each other into a busy loop of empty fetches, about a thousand a
        // second.) Dropping the set aborts them, as dropping the joined futures did.
        let mut workers = tokio::task::JoinSet::new();
        // Starts worker `index`, which runs until the shutdown or until its stop sender (kept
        // in `running`) is dropped: then it stops as at a shutdown, its running job finishing.
        let start_worker = |workers: &mut tokio::task::JoinSet<Result<(), apalis::prelude::WorkerError>>,
                            index: usize| {
            let (own_stop, mut stopped) = tokio::sync::watch::channel(());
            let stopping = async move {
                // Only the sender's drop ends this wait.
                while stopped.changed().await.is_ok() {}
            };
            let shutdown = futures::future::select(shutdown.clone(), Box::pin(stopping))
                .map(|_| ())
                .boxed()
                .shared();
            let make_storage = make_storage.clone();
            let db = db.clone();
            let data = data.clone();
            let options = options.clone();
            workers.spawn(async move {
                // A worker whose backend fails (the database dropped its connections, a
                // restart) is built again after a pause, so the process never needs a
                // restart; only the shutdown signal ends it.
                let mut failures: u32 = 0;
                // Workers built so far: each new one takes a new name (see below).
                let mut generation: u32 = 0;
                loop {
                    let backoff = ExponentialBackoffMaker::new(
                        options.backoff_min,
                        options.backoff_max,
                        0.5,
                        HasherRng::default(),
                    )
                    .expect("valid backoff bounds")
                    .make_backoff();
                    let stop = shutdown.clone();
                    // A restarted worker takes a new name: jobs the failed one had fetched
                    // stay locked by the old name, whose heartbeats stop, so the queue hands
                    // them out again once it counts as dead.
                    let name = match generation {
                        0 => format!("{}#{index}", options.name),
                        n => format!("{}#{index}.{n}", options.name),
                    };
                    generation = generation.saturating_add(1);
                    let run = WorkerBuilder::new(name.clone())
                        .backend(make_storage())
                        .data(data.clone())
                        .data($crate::worker::AttemptBudget(options.max_attempts.max(1)))
                        .concurrency(options.jobs_per_worker.max(1))
                        .retry(
                            RetryPolicy::retries(retries)
                                .with_backoff(backoff)
                                .retry_if($crate::worker::is_retryable),
                        )
                        .timeout(options.timeout)
                        .build($handler)
                        // A pause stops no worker: the queue table refuses a paused queue's
                        // jobs to every fetch (migration 17), and the workers find nothing.
                        .run_with_ctx(move |ctx| {
                            let stop = stop.clone();
                            async move {
                                stop.await;
                                ctx.stop()
                            }
                        });
                    tokio::pin!(run);
                    let result = if failures == 0 {
                        run.await
                    } else {
                        tokio::select! {
                            result = &mut run => result,
                            _ = tokio::time::sleep($crate::worker::RECOVERED_AFTER) => {
                                options.health.recovered(index);
                                run.await
                            }
                        }
                    };
                    match result {
                        Ok(()) => return Ok(()),
                        Err(_) if shutdown.peek().is_some() => return Ok(()),
                        Err(err) => {
                            options.health.backend_failed(index, &err.to_string());
                            $crate::queue::settle_failed_worker(&db, $queue, &name).await;
                            failures = failures.saturating_add(1);
                            let pause = $crate::worker::restart_pause(failures);
                            tracing::warn!(
                                worker = %options.name,
                                index,
                                error = %err,
                                pause_ms = pause.as_millis() as u64,
                                "worker stopped on a backend error; starting it again"
                            );
                            tokio::select! {
                                _ = tokio::time::sleep(pause) => {}
                                _ = shutdown.clone() => return Ok::<(), apalis::prelude::WorkerError>(()),
                            }
                        }
                    }
                }
            });
            own_stop
        };
        // The workers running, by index, each with its stop: as many as the operator set for
        // the queue (`snapctl queues scale`), else as configured, read every SCALE_POLL.
        // Indexes are never reused: a worker still finishing its job after a scale-down
        // keeps its name to itself.
        let configured = options.concurrency.max(1);
        let mut running = std::collections::BTreeMap::new();
        let mut next_index = 0usize;
        let mut wanted = $crate::worker::workers_wanted(&db, $queue, configured, configured).await;
        let mut first_error: Option<String> = None;
        loop {
            while running.len() < wanted {
                running.insert(next_index, start_worker(&mut workers, next_index));
                next_index += 1;
            }
            while running.len() > wanted {
                // Dropping its stop stops the newest worker once its job is done.
                running.pop_last();
            }
            $crate::metrics::queue_workers($queue, running.len());
            tokio::select! {
                joined = workers.join_next(), if !workers.is_empty() => {
                    let failure = match joined {
                        Some(Ok(Ok(()))) | None => continue,
                        Some(Ok(Err(err))) => err.to_string(),
                        Some(Err(err)) => format!("a worker task ended abnormally: {err}"),
                    };
                    first_error.get_or_insert(failure);
                }
                _ = tokio::time::sleep($crate::worker::SCALE_POLL) => {
                    let now = $crate::worker::workers_wanted(&db, $queue, configured, wanted).await;
                    if now != wanted {
                        tracing::info!(queue = $queue, from = wanted, to = now, "workers per replica changed");
                        wanted = now;
                    }
                }
                _ = shutdown.clone() => break,
            }
        }
        while let Some(joined) = workers.join_next().await {
            let failure = match joined {
                Ok(Ok(())) => continue,
                Ok(Err(err)) => err.to_string(),
                Err(err) => format!("a worker task ended abnormally: {err}"),
            };
            first_error.get_or_insert(failure);
        }
        match first_error {
            None => Ok(()),
            Some(err) => Err($crate::JobError::Queue(err.into())),
        }
    }};
}
pub(crate) use run_worker;

/// Runs the consumers of `$queue`, whose payload is `$job`, on the database's backend: apalis
/// PostgreSQL storage woken by LISTEN/NOTIFY (a job starts within milliseconds of its push;
/// see `wakeups`), or apalis SQLite storage.
macro_rules! serve_queue {
    ($job:ty, $queue:expr, $ctx:expr, $options:expr, $handler:expr, $shutdown:expr) => {{
        $crate::metrics::register_queue($queue);
        let ctx = $ctx;
        // Owned: every (re)started worker, in its own task, builds its storage and data
        // from clones of them.
        let db = ctx.db.clone();
        let poll = $options.pooler_poll;
        match db.backend() {
            repo::Backend::Postgres => $crate::worker::run_worker!(
                $queue,
                move || {
                    $crate::queue::postgres_storage_woken_by_pushes::<$crate::queue::Payload<$job>>(
                        &db, $queue, poll,
                    )
                },
                db.clone(),
                $options,
                ctx,
                $handler,
                $shutdown
            ),
            repo::Backend::Sqlite => $crate::worker::run_worker!(
                $queue,
                move || $crate::queue::sqlite_storage::<$crate::queue::Payload<$job>>(&db, $queue),
                db.clone(),
                $options,
                ctx,
                $handler,
                $shutdown
            ),
        }
    }};
}
pub(crate) use serve_queue;

#[cfg(test)]
mod tests {
    use super::{WorkerHealth, restart_pause};
    use std::time::Duration;

    #[test]
    fn health_is_ready_only_while_running_and_no_worker_is_failing() {
        let health = WorkerHealth::default();
        assert_eq!(health.check(), Err("workers are not running".into()));
        health.set_running(true);
        assert_eq!(health.check(), Ok(()));
        health.backend_failed(0, "relation \"apalis.jobs\" does not exist");
        health.backend_failed(3, "connection refused");
        let err = health.check().expect_err("two workers failing");
        assert!(err.starts_with("2 worker(s) failing"), "{err}");
        assert!(err.contains("#0") && err.contains("apalis.jobs"), "{err}");
        health.recovered(0);
        let err = health.check().expect_err("one still failing");
        assert!(
            err.contains("#3") && err.contains("connection refused"),
            "{err}"
        );
        health.recovered(3);
        assert_eq!(health.check(), Ok(()));
        health.set_running(false);
        assert_eq!(health.check(), Err("workers are not running".into()));
    }

    #[test]
    fn restart_pauses_double_from_200_ms_up_to_10_s() {
        let pauses: Vec<u64> = (1..=9)
            .map(|n| restart_pause(n).as_millis() as u64)
            .collect();
        assert_eq!(
            pauses,
            [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(restart_pause(u32::MAX), Duration::from_secs(10));
    }
}

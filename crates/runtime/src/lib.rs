//! Process plumbing shared by snapline's binaries, so each `main` only wires things together:
//! load settings, set up tracing, connect (and migrate on the embedded default), wait for
//! SIGTERM or Ctrl-C, and map errors to exit codes (0 success, 2 bad input or configuration,
//! 1 anything else).
//!
//! This crate holds no job logic and no SQL.

mod progress;
mod serve;

pub use progress::TerminalBar;
pub use serve::{Service, Stop, serve};

use jobs::JobError;
use jobs::populate_target::PopulateOptions;
use jobs::worker::WorkerOptions;
use repo::{Db, DbOptions};
use settings::{QueueSettings, Settings, Sources};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The option every binary takes.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// Extra TOML config file, layered over config/{SNAPLINE_PROFILE}.toml.
    /// Example: --config /etc/snapline/local.toml
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// A failure that is the user's to fix: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BadInput(pub anyhow::Error);

impl BadInput {
    pub fn wrap(err: impl Into<anyhow::Error>) -> anyhow::Error {
        anyhow::Error::new(BadInput(err.into()))
    }
}

/// Classifies a job error for the exit code: unknown ids and malformed input are bad input.
pub fn job_error(err: JobError) -> anyhow::Error {
    if err.is_bad_input() {
        BadInput::wrap(err)
    } else {
        err.into()
    }
}

/// Loads settings (with an optional `--config FILE`) and sets up tracing.
pub fn load_settings(args: ConfigArgs) -> anyhow::Result<Settings> {
    let settings = Settings::load(&Sources::from_env(args.config)).map_err(BadInput::wrap)?;
    settings::check_trace_endpoint().map_err(BadInput::wrap)?;
    settings::init_tracing(&settings.log);
    Ok(settings)
}

/// Connects to the configured database; migrates it when `database.migrate_on_start` is set
/// (the embedded default; production runs the `migration` binary).
pub async fn connect(settings: &Settings) -> anyhow::Result<Db> {
    connect_to(settings, &settings.database.url).await
}

/// Connects for a queue consumer running `concurrency` jobs at once: the pool gets at least
/// `concurrency` connections for the jobs plus room for apalis's own (fetch, ack, heartbeat,
/// LISTEN), so jobs never starve the queue or each other.
pub async fn connect_for_workers(settings: &Settings, concurrency: usize) -> anyhow::Result<Db> {
    let needed = concurrency as u32 * CONNECTIONS_PER_WORKER + WORKER_OVERHEAD_CONNECTIONS;
    if settings.database.max_connections < needed {
        tracing::info!(
            configured = settings.database.max_connections,
            using = needed,
            "database.max_connections raised to fit the worker's concurrency"
        );
    }
    open(
        settings,
        &settings.database.url,
        settings.database.max_connections.max(needed),
    )
    .await
}

/// Per worker: its job's transaction and its LISTEN connection.
const CONNECTIONS_PER_WORKER: u32 = 2;
/// Fetches, acknowledgements and heartbeats beside them.
const WORKER_OVERHEAD_CONNECTIONS: u32 = 4;

/// Like [`connect`], to another database.
pub async fn connect_to(settings: &Settings, url: &str) -> anyhow::Result<Db> {
    open(settings, url, settings.database.max_connections).await
}

async fn open(settings: &Settings, url: &str, max_connections: u32) -> anyhow::Result<Db> {
    let db = Db::connect(&DbOptions {
        url: url.to_owned(),
        max_connections,
        acquire_timeout: Duration::from_secs(settings.database.acquire_timeout_secs),
        synchronous_commit: settings.database.synchronous_commit.map(|l| l.as_sql()),
        idle_in_transaction_timeout: (settings.database.idle_in_transaction_timeout_secs > 0)
            .then(|| Duration::from_secs(settings.database.idle_in_transaction_timeout_secs)),
        // how this process's sessions show in pg_stat_activity and the server's logs
        application_name: Some(settings::process_name()),
        pooler: match settings.database.pooler {
            settings::PoolerMode::None => repo::Pooler::None,
            settings::PoolerMode::Transaction => repo::Pooler::Transaction,
        },
    })
    .await?
    .with_events(event_options(settings));
    if settings.database.migrate_on_start {
        db.migrate()
            .await
            .map_err(|e| anyhow::anyhow!("applying migrations: {e}"))?;
    }
    check_lock_table(&db).await;
    Ok(db)
}

/// The `[events]` settings as the writers take them ("" is no statement).
pub fn event_options(settings: &Settings) -> repo::EventOptions {
    let statement = |sql: &str| (!sql.trim().is_empty()).then(|| sql.to_owned());
    repo::EventOptions {
        notify: settings.events.notify,
        me_file_bands_changed_sql: statement(&settings.events.me_file_bands_changed_sql),
        target_populated_sql: statement(&settings.events.target_populated_sql),
    }
}

/// PostgreSQL's default `max_locks_per_transaction`, which snapline needs at least: its
/// transactions hold at most `populate_target::MAX_LOCK_RANGES_PER_BATCH` (8) advisory
/// locks beside the locks of the tables they touch.
const MIN_LOCKS_PER_TRANSACTION: i64 = 64;

/// Warns at start-up when the server's lock table is smaller than a stock server's.
async fn check_lock_table(db: &Db) {
    match db.schema().lock_table_settings().await {
        Ok(Some((per_transaction, connections))) if per_transaction < MIN_LOCKS_PER_TRANSACTION => {
            tracing::warn!(
                max_locks_per_transaction = per_transaction,
                max_connections = connections,
                needed = MIN_LOCKS_PER_TRANSACTION,
                "PostgreSQL's lock table is smaller than a stock server's: raise max_locks_per_transaction \
                 to at least 64 (docs/operations.md, PostgreSQL settings)"
            );
        }
        Ok(Some((per_transaction, connections))) => tracing::debug!(
            max_locks_per_transaction = per_transaction,
            max_connections = connections,
            "PostgreSQL lock table"
        ),
        Ok(None) => {}
        Err(err) => tracing::debug!(error = %err, "could not read PostgreSQL's lock settings"),
    }
}

pub fn populate_options(settings: &Settings) -> PopulateOptions {
    PopulateOptions::from(&settings.populator)
}

/// What a syncer serves the queue with: its band cache (`syncer.band_cache_secs`) and group
/// size (`syncer.me_files_per_transaction`).
pub fn syncer_context(settings: &Settings, db: Db) -> jobs::sync_me_file::SyncerContext {
    let cache = jobs::BandCache::new(Duration::from_secs(settings.syncer.band_cache_secs));
    jobs::sync_me_file::SyncerContext {
        me_files_per_transaction: usize::try_from(settings.syncer.me_files_per_transaction)
            .unwrap_or(usize::MAX),
        capture_poll: Duration::from_millis(settings.syncer.capture_poll_ms),
        ..jobs::sync_me_file::SyncerContext::new(db, std::sync::Arc::new(cache))
    }
}

pub fn backfill_options(settings: &Settings) -> jobs::backfill::BackfillOptions {
    jobs::backfill::BackfillOptions::from(&settings.backfiller)
}

/// The host's name as replicas are named after it (`HOSTNAME`, the pod's name on
/// Kubernetes), or `local`.
pub fn host_name() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into())
}

/// The worker policy of one queue (`queue_settings` among `settings`); the worker is named
/// after the queue, host and process.
pub fn worker_options(
    settings: &Settings,
    queue: &str,
    queue_settings: &QueueSettings,
) -> WorkerOptions {
    let host = host_name();
    WorkerOptions {
        concurrency: queue_settings.concurrency,
        max_attempts: queue_settings.max_attempts,
        timeout: Duration::from_secs(queue_settings.timeout_secs),
        pooler_poll: Duration::from_millis(settings.database.pooler_poll_ms),
        ..WorkerOptions::new(format!("{queue}@{host}:{}", std::process::id()))
    }
}

/// A stop request set on the first SIGTERM or Ctrl-C: what `run` commands give their job,
/// which then stops between batches and releases its lease.
pub fn stop_on_signal() -> jobs::StopRequest {
    let stop = jobs::StopRequest::default();
    let requested = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("stopping after the current batch (the batches done are kept)");
        requested.request();
    });
    stop
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested: finishing the current jobs");
}

/// The error as one line: each message of its chain once (a cause already part of the
/// message before it, as wrapped database errors repeat theirs, is not printed again), then
/// what to check when the database's schema is the likely cause.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string().replace('\n', " ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    let from_database = err
        .chain()
        .any(|cause| cause.downcast_ref::<repo::RepoError>().is_some());
    if from_database {
        if line.contains("decoding column") {
            line.push_str(
                " (a column's type is not what snapline reads: check that DATABASE_URL names \
                 the platform's database and that `migration up` has run on it)",
            );
        } else if line.contains("does not exist") && line.contains("relation") {
            line.push_str(" (check that `migration up` has run on this database)");
        }
    }
    line
}

/// Runs `main` on a multi-threaded runtime and turns its result into an exit code.
pub fn run_main<F>(main: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(main);
    settings::shutdown_tracing();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // An error can quote what it was given (an id, a payload): escaped like every
            // value the CLIs print.
            eprintln!("error: {}", jobs::status::printable(&error_line(&err)));
            if err.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoding_error() -> anyhow::Error {
        let cause = sea_orm::DbErr::Type(
            "error occurred while decoding column \"id\": mismatched types".into(),
        );
        anyhow::Error::new(repo::RepoError::Db(cause))
    }

    /// Settings name the queues they configure and bridge (they cannot depend on `jobs`): the
    /// same names as the registry's, or a queue would go unconfigured or unbridgeable.
    #[test]
    fn settings_name_the_registrys_queues() {
        assert_eq!(settings::BRIDGE_QUEUES, jobs::queues::CONFIGURED);
    }

    #[test]
    fn an_error_line_says_each_cause_once_and_what_to_check() {
        let line = error_line(&decoding_error());
        assert_eq!(
            line.matches("error occurred while decoding column").count(),
            1,
            "{line}"
        );
        assert!(line.starts_with("database error: "), "{line}");
        assert!(line.contains("`migration up`"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn bad_input_keeps_its_message_once() {
        let err = job_error(JobError::UnknownTarget(domain::TargetId(7)));
        assert_eq!(error_line(&err), "target 7 does not exist");
        let wrapped = BadInput::wrap(decoding_error().context("populating target 7"));
        let line = error_line(&wrapped);
        assert!(
            line.starts_with("populating target 7: database error: "),
            "{line}"
        );
        assert_eq!(line.matches("mismatched types").count(), 1, "{line}");
    }
}

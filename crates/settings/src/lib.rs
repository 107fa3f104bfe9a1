//! snapline's configuration and telemetry: one typed [`Settings`] loaded by one function,
//! [`Settings::load`], and one function that sets up tracing, [`init_tracing`].
//!
//! Layers, each overriding the one before: `config/default.toml` < `config/{SNAPLINE_PROFILE}.toml`
//! < `--config FILE` < `SNAPLINE_*` environment variables (nested keys joined by `__`) <
//! `DATABASE_URL`. The three profile files ship inside the binaries too, so they run from any
//! directory; a `config/` folder on disk (or `SNAPLINE_CONFIG_DIR`) takes precedence.
//!
//! This crate never connects to anything: it reads files and the environment only.

mod telemetry;

pub use telemetry::{
    OTLP_ENDPOINT_VAR, check_trace_endpoint, init_tracing, process_name, shutdown_tracing,
};

use figment::Figment;
use figment::providers::{Data, Env, Format, Toml};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The profile used when `SNAPLINE_PROFILE` is unset: the embedded SQLite database.
pub const DEFAULT_PROFILE: &str = "default";

const EMBEDDED: &[(&str, &str)] = &[
    ("default", include_str!("../../../config/default.toml")),
    (
        "production",
        include_str!("../../../config/production.toml"),
    ),
    ("test", include_str!("../../../config/test.toml")),
];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub populator: PopulatorSettings,
    pub syncer: SyncerSettings,
    pub backfiller: BackfillerSettings,
    #[serde(default)]
    pub audit: AuditSettings,
    pub queues: QueuesSettings,
    pub serve: ServeSettings,
    pub events: EventsSettings,
    #[serde(default)]
    pub board: BoardSettings,
    #[serde(default)]
    pub bridge: BridgeSettings,
    /// The profile these settings were loaded for (not read from files).
    #[serde(skip)]
    pub profile: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://FILE` or `postgres://...`.
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    /// Apply migrations when a binary starts (the embedded default); production runs the
    /// `migration` binary instead.
    #[serde(default)]
    pub migrate_on_start: bool,
    /// PostgreSQL's `synchronous_commit` for snapline's sessions: `on`, `off`, `local`,
    /// `remote_write` or `remote_apply`; unset keeps the server's setting. See docs/configuration.md.
    #[serde(default)]
    pub synchronous_commit: Option<SynchronousCommitLevel>,
    /// PostgreSQL ends a session of snapline's that stays this long inside a transaction
    /// without a statement (`idle_in_transaction_session_timeout`), so a transaction left
    /// open by a job cut off mid-way (timeout, kill of its task) releases its locks; 0 keeps
    /// the server's setting. snapline's transactions never pause between statements.
    pub idle_in_transaction_timeout_secs: u64,
    /// What sits between snapline and PostgreSQL: `none` (a direct connection or a
    /// session-mode pooler) or `transaction` (PgBouncer and the like in transaction mode: no
    /// prepared statement outlives its transaction, no LISTEN, session settings per
    /// transaction). See docs/operations.md, "Behind PgBouncer".
    #[serde(default)]
    pub pooler: PoolerMode,
    /// With `pooler = "transaction"`: how often an idle worker looks for new jobs, since no
    /// notification reaches it through the pooler.
    pub pooler_poll_ms: u64,
}

/// What sits between snapline and PostgreSQL (`database.pooler`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PoolerMode {
    /// A session of its own per connection: direct, or a pooler in session mode.
    #[default]
    None,
    /// A pooler in transaction mode: the server session changes between transactions.
    Transaction,
}

/// The values PostgreSQL accepts for `synchronous_commit`.
///
/// `off` lets a commit return before its WAL reaches disk. For snapline's own sessions that
/// loses nothing that matters: every row it writes can be computed again, and since the WAL
/// is flushed in order, a crash that loses a job's writes also loses the later commit that
/// marked the job done, so the queue runs the job again.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SynchronousCommitLevel {
    On,
    Off,
    Local,
    RemoteWrite,
    RemoteApply,
}

impl SynchronousCommitLevel {
    /// The level as PostgreSQL spells it.
    pub fn as_sql(self) -> &'static str {
        match self {
            SynchronousCommitLevel::On => "on",
            SynchronousCommitLevel::Off => "off",
            SynchronousCommitLevel::Local => "local",
            SynchronousCommitLevel::RemoteWrite => "remote_write",
            SynchronousCommitLevel::RemoteApply => "remote_apply",
        }
    }
}

/// Tuning of `populate_target` runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulatorSettings {
    /// Me_files per batch; each batch is one transaction.
    pub batch_size: u64,
    /// Me_files per chunk: a populate of more is split into `populate_chunk` jobs that
    /// every populator replica takes.
    pub chunk_me_files: u64,
    /// Seconds a run's lease on its target lives without renewal (renewed every batch).
    pub lease_ttl_secs: u64,
    /// Seconds a second populate of the same target waits for the first before failing
    /// (and being retried).
    pub lock_wait_secs: u64,
    /// Milliseconds a run pauses after each batch, to cap the load one populate puts on a
    /// busy primary (0: no pause).
    pub batch_pause_ms: u64,
    /// Chunks `populator run` populates at once, each on its own connection (1: one after
    /// the other). Served populates spread chunks over replicas and their concurrency.
    pub chunks_at_once: u16,
}

/// The platform's own Oban jobs that `snapctl bridge enable` hands to snapline: worker
/// (module name) -> snapline queue (`populate_target`, `sync_me_file` or `backfill`). The
/// defaults are the platform's workers; a renamed module is renamed here
/// (`[bridge.workers]` in a config file, quoted keys).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSettings {
    #[serde(default = "default_bridged_workers")]
    pub workers: std::collections::BTreeMap<String, String>,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        BridgeSettings {
            workers: default_bridged_workers(),
        }
    }
}

/// The queues a bridged worker may map to.
pub const BRIDGE_QUEUES: [&str; 3] = ["populate_target", "sync_me_file", "backfill"];

fn default_bridged_workers() -> std::collections::BTreeMap<String, String> {
    [
        ("Qlarius.Jobs.PopulateTargetWorker", "populate_target"),
        (
            "Qlarius.Jobs.SyncMeFileToTargetPopulationsWorker",
            "sync_me_file",
        ),
        ("Qlarius.Jobs.SnapshotBandPopulationsWorker", "backfill"),
        ("Qlarius.Jobs.BackfillMissingSnapshotsWorker", "backfill"),
    ]
    .into_iter()
    .map(|(worker, queue)| (worker.to_owned(), queue.to_owned()))
    .collect()
}

/// What snapline tells the platform when a me_file's band changes or a populate finishes,
/// in the transaction of the change (PostgreSQL; all off by default).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSettings {
    /// `NOTIFY snapline_events` with a JSON payload per event.
    pub notify: bool,
    /// A statement run when me_files' bands changed, `$1` the `bigint[]` of their ids; ""
    /// for none.
    pub me_file_bands_changed_sql: String,
    /// A statement run when a populate finished, `$1` the target id; "" for none.
    pub target_populated_sql: String,
}

/// The web board (`snapctl board`): HTTP basic auth, asked of every request when both are
/// set (`SNAPLINE_BOARD__USER`, `SNAPLINE_BOARD__PASSWORD`; empty counts as unset), and the
/// host names it answers to beyond loopback names and IP addresses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSettings {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Names the board may be reached by (`board.example.com`, or with a port
    /// `board.example.com:9180`); any other `Host` is refused, so that a DNS name an attacker
    /// points at the board's address (DNS rebinding) reaches nothing.
    /// `SNAPLINE_BOARD__ALLOWED_HOSTS='["board.example.com"]'`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl BoardSettings {
    /// The basic-auth credentials: both set and non-empty, or `None` when both are unset or
    /// empty; `Err` naming the missing one when only one is.
    pub fn basic_auth(&self) -> Result<Option<(String, String)>, SettingsError> {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        match (given(&self.user), given(&self.password)) {
            (Some(user), Some(password)) => Ok(Some((user, password))),
            (None, None) => Ok(None),
            _ => Err(SettingsError::HalfBoardAuth),
        }
    }
}

/// Tuning of `sync_me_file` jobs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncerSettings {
    /// Seconds a target's cached band metadata is used before it is reloaded.
    pub band_cache_secs: u64,
    /// The most me_files one sync transaction takes when that many jobs wait (1: each job
    /// in its own transaction).
    pub me_files_per_transaction: u64,
    /// Milliseconds between two drains of change capture's outbox by an idle syncer.
    pub capture_poll_ms: u64,
}

/// The most `populator.chunks_at_once` allowed (the same bound as `populator run
/// --chunks-at-once`).
pub const MAX_CHUNKS_AT_ONCE: u64 = 64;

/// The most `syncer.me_files_per_transaction` allowed.
pub const MAX_ME_FILES_PER_TRANSACTION: u64 = 100;

/// Tuning of backfill runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillerSettings {
    /// When `backfiller serve` enqueues `backfill_missing_snapshots`: cron, five fields
    /// (`0 * * * *`, minute first) or six with seconds first.
    pub schedule: String,
    /// Rows per batch; each batch is one transaction.
    pub batch_size: u64,
    /// A run finding more NULL snapshots than this logs a warning.
    pub warn_threshold: i64,
    /// Ids of unfixable rows a run keeps for its report (the rest are only counted).
    pub unfixable_ids_kept: usize,
    /// Seconds between a running backfill's progress lines (`run` without a terminal, and
    /// jobs under `serve`).
    pub progress_log_secs: u64,
    pub lease_ttl_secs: u64,
    pub lock_wait_secs: u64,
}

/// The scheduled audit, run by `backfiller serve` (off by default).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// When to audit a sample of me_files: cron as `backfiller.schedule`; "" for never.
    pub schedule: String,
    /// Me_files drawn at random per scheduled audit.
    pub sample: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            schedule: String::new(),
            sample: 1_000,
        }
    }
}

/// Consumers of each queue.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesSettings {
    pub populate_target: QueueSettings,
    pub sync_me_file: QueueSettings,
    pub backfill: QueueSettings,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Jobs run at once per process.
    pub concurrency: usize,
    /// Tries in all for transient failures (deadlocks, lost connections, ...).
    pub max_attempts: usize,
    /// A job running longer than this fails its attempt.
    pub timeout_secs: u64,
}

/// What every `serve` shares: its HTTP listener, shutdown and the pruning of finished jobs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// `/healthz`, `/readyz` and `/metrics` of `populator serve`; "" turns the listener off.
    pub populator_http: String,
    /// The same for `syncer serve`.
    pub syncer_http: String,
    /// The same for `backfiller serve`.
    pub backfiller_http: String,
    /// After SIGTERM or Ctrl-C, seconds to let running jobs finish before exiting anyway (an
    /// unfinished job's transaction rolls back and another replica runs it again).
    pub shutdown_grace_secs: u64,
    /// Finished jobs (done, killed, failed with no attempt left) are deleted this many hours
    /// after they finished.
    pub job_retention_hours: u64,
    /// Seconds between two prunes of finished jobs.
    pub prune_interval_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter (`info`, `snapline=debug,sqlx=warn`); `RUST_LOG` overrides it.
    pub filter: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// What went wrong loading the configuration; the message names the key and its source.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration error: {0}")]
    Invalid(Box<figment::Error>),
    #[error(
        "profile `{profile}` has no config file: looked for {looked_in}; known profiles are default, production and test"
    )]
    UnknownProfile { profile: String, looked_in: String },
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error(
        "database.url is not set for profile `{profile}`: set DATABASE_URL=postgres://USER@HOST/DB (or SNAPLINE_DATABASE__URL)"
    )]
    MissingDatabaseUrl { profile: String },
    #[error(
        "database.url `{url}` is not supported: use sqlite://FILE or postgres://USER@HOST/DB (from profile `{profile}`)"
    )]
    UnsupportedDatabaseUrl { url: String, profile: String },
    #[error("profile `production` expects PostgreSQL, but database.url is `{0}`")]
    ProductionNeedsPostgres(String),
    #[error(
        "database.pooler = \"transaction\" is for PostgreSQL behind a pooler, but database.url is `{0}`"
    )]
    PoolerNeedsPostgres(String),
    #[error(
        "database.migrate_on_start needs a session of its own (the queue tables' setup holds a session advisory lock), which a transaction-mode pooler does not give: set database.migrate_on_start = false (SNAPLINE_DATABASE__MIGRATE_ON_START=false) and run `migration up` with DATABASE_URL pointing at PostgreSQL itself, not the pooler"
    )]
    MigrationsThroughPooler,
    #[error(
        "{key} = {value} is not allowed: it must be at least 1 (set in a config file or {env})"
    )]
    TooSmall {
        key: String,
        value: u64,
        env: String,
    },
    #[error(
        "{key} = {value} is not allowed: it must be at most {max}, since {why} (set in a config file or {env})"
    )]
    TooLarge {
        key: &'static str,
        value: u64,
        max: u64,
        why: &'static str,
        env: String,
    },
    #[error(
        "{var}={value} is not supported: snapline sends traces over plain HTTP only (no TLS), so every span would be dropped; use a collector's http:// address (a collector beside the service can forward over TLS) or unset {var}"
    )]
    UnsupportedTraceEndpoint { var: &'static str, value: String },
    #[error(
        "bridge.workers.\"{worker}\" = \"{queue}\" is not allowed: a worker name of 1 to 127 characters mapped to one of populate_target, sync_me_file or backfill"
    )]
    BadBridgedWorker { worker: String, queue: String },
    #[error(
        "set both board.user and board.password (SNAPLINE_BOARD__USER, SNAPLINE_BOARD__PASSWORD), or neither; an empty one counts as unset"
    )]
    HalfBoardAuth,
    #[error("{key} `{value}` is not a log filter: {cause}")]
    BadLogFilter {
        key: &'static str,
        value: String,
        #[source]
        cause: tracing_subscriber::filter::ParseError,
    },
}

/// Where a load reads from; [`Sources::from_env`] is what the binaries use.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub profile: Option<String>,
    pub config_dir: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    /// Read `SNAPLINE_*` and `DATABASE_URL` from the process environment.
    pub use_env: bool,
}

impl Sources {
    /// The process environment: `SNAPLINE_PROFILE`, `SNAPLINE_CONFIG_DIR`, an optional
    /// `--config FILE`, then `SNAPLINE_*` and `DATABASE_URL`.
    pub fn from_env(config_file: Option<PathBuf>) -> Self {
        Self {
            profile: std::env::var("SNAPLINE_PROFILE")
                .ok()
                .filter(|p| !p.is_empty()),
            config_dir: std::env::var_os("SNAPLINE_CONFIG_DIR").map(PathBuf::from),
            config_file,
            use_env: true,
        }
    }
}

impl Settings {
    /// Loads and validates the settings from `sources`.
    pub fn load(sources: &Sources) -> Result<Settings, SettingsError> {
        let profile = sources
            .profile
            .clone()
            .unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
        let dir = sources
            .config_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("config"));

        let mut figment = Figment::from(profile_layer(&dir, DEFAULT_PROFILE)?);
        if profile != DEFAULT_PROFILE {
            figment = figment.merge(profile_layer(&dir, &profile)?);
        }
        if let Some(file) = &sources.config_file {
            if !file.exists() {
                return Err(SettingsError::MissingFile(file.clone()));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        if sources.use_env {
            figment = figment
                .merge(
                    Env::prefixed("SNAPLINE_")
                        .ignore(&["profile", "config_dir"])
                        .split("__"),
                )
                .merge(
                    Env::raw()
                        .only(&["database_url"])
                        .map(|_| "database.url".into()),
                );
        }

        let mut settings: Settings = figment
            .extract()
            .map_err(|e| SettingsError::Invalid(Box::new(e)))?;
        settings.profile = profile;
        settings.validate()?;
        Ok(settings)
    }

    /// The defaults, as `config/default.toml` (embedded) states them and nothing else: the
    /// one place a setting's default is written. What the jobs' options default to.
    pub fn defaults() -> Settings {
        let text = EMBEDDED
            .iter()
            .find(|(name, _)| *name == DEFAULT_PROFILE)
            .map(|(_, text)| *text)
            .expect("config/default.toml is embedded");
        let mut settings: Settings = Figment::from(Toml::string(text))
            .extract()
            .expect("config/default.toml holds every setting (tested)");
        settings.profile = DEFAULT_PROFILE.to_owned();
        settings
    }

    /// Settings for `url` with the defaults of the `test` profile and no environment: what
    /// tests and tools that pick their own database use.
    pub fn for_database(url: &str) -> Result<Settings, SettingsError> {
        let mut settings = Settings::load(&Sources {
            profile: Some("test".into()),
            ..Sources::default()
        })?;
        settings.database.url = url.to_owned();
        settings.validate()?;
        Ok(settings)
    }

    pub fn is_production(&self) -> bool {
        self.profile == "production"
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let url = self.database.url.trim();
        if url.is_empty() {
            return Err(SettingsError::MissingDatabaseUrl {
                profile: self.profile.clone(),
            });
        }
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !postgres && !url.starts_with("sqlite:") {
            return Err(SettingsError::UnsupportedDatabaseUrl {
                url: url.to_owned(),
                profile: self.profile.clone(),
            });
        }
        if self.is_production() && !postgres {
            return Err(SettingsError::ProductionNeedsPostgres(url.to_owned()));
        }
        if self.database.pooler == PoolerMode::Transaction && !postgres {
            return Err(SettingsError::PoolerNeedsPostgres(url.to_owned()));
        }
        if self.database.pooler == PoolerMode::Transaction && self.database.migrate_on_start {
            return Err(SettingsError::MigrationsThroughPooler);
        }
        for (worker, queue) in &self.bridge.workers {
            if worker.is_empty()
                || worker.chars().count() > 127
                || !BRIDGE_QUEUES.contains(&queue.as_str())
            {
                return Err(SettingsError::BadBridgedWorker {
                    worker: worker.clone(),
                    queue: queue.clone(),
                });
            }
        }
        let queue = |q: &QueueSettings| {
            [
                (q.concurrency as u64, "concurrency"),
                (q.max_attempts as u64, "max_attempts"),
                (q.timeout_secs, "timeout_secs"),
            ]
        };
        let mut at_least_one: Vec<(u64, String)> = [
            (
                self.database.max_connections.into(),
                "database.max_connections",
            ),
            (
                self.database.acquire_timeout_secs,
                "database.acquire_timeout_secs",
            ),
            (self.database.pooler_poll_ms, "database.pooler_poll_ms"),
            (self.populator.batch_size, "populator.batch_size"),
            (self.populator.chunk_me_files, "populator.chunk_me_files"),
            (self.populator.lease_ttl_secs, "populator.lease_ttl_secs"),
            (
                self.syncer.me_files_per_transaction,
                "syncer.me_files_per_transaction",
            ),
            (self.syncer.capture_poll_ms, "syncer.capture_poll_ms"),
            (
                self.populator.chunks_at_once.into(),
                "populator.chunks_at_once",
            ),
            (self.backfiller.batch_size, "backfiller.batch_size"),
            (self.backfiller.lease_ttl_secs, "backfiller.lease_ttl_secs"),
            (self.audit.sample, "audit.sample"),
            (self.serve.prune_interval_secs, "serve.prune_interval_secs"),
        ]
        .map(|(value, key)| (value, key.to_owned()))
        .into();
        for (name, settings) in [
            ("populate_target", &self.queues.populate_target),
            ("sync_me_file", &self.queues.sync_me_file),
            ("backfill", &self.queues.backfill),
        ] {
            for (value, field) in queue(settings) {
                at_least_one.push((value, format!("queues.{name}.{field}")));
            }
        }
        if let Some((value, key)) = at_least_one.into_iter().find(|(value, _)| *value == 0) {
            let env = env_var_of(&key);
            return Err(SettingsError::TooSmall { key, value, env });
        }
        let at_most = [
            (
                self.populator.chunks_at_once.into(),
                "populator.chunks_at_once",
                MAX_CHUNKS_AT_ONCE,
                "each chunk holds a connection of its own",
            ),
            (
                self.syncer.me_files_per_transaction,
                "syncer.me_files_per_transaction",
                MAX_ME_FILES_PER_TRANSACTION,
                "a sync transaction holds a lock per me_file range in PostgreSQL's shared lock \
                 table (64 x max_connections slots on a stock server) and groups of more than \
                 16 drain no faster",
            ),
        ];
        if let Some((value, key, max, why)) = at_most.into_iter().find(|(v, _, max, _)| v > max) {
            let env = env_var_of(key);
            return Err(SettingsError::TooLarge {
                key,
                value,
                max,
                why,
                env,
            });
        }
        let filters = [
            ("log.filter", Some(self.log.filter.clone())),
            ("RUST_LOG", std::env::var("RUST_LOG").ok()),
        ];
        for (key, value) in filters {
            if let Some(value) = value
                && let Err(err) = tracing_subscriber::EnvFilter::builder().parse(&value)
            {
                return Err(SettingsError::BadLogFilter {
                    key,
                    value,
                    cause: err,
                });
            }
        }
        Ok(())
    }
}

/// The environment variable that sets `key` (`queues.backfill.timeout_secs` ->
/// `SNAPLINE_QUEUES__BACKFILL__TIMEOUT_SECS`).
fn env_var_of(key: &str) -> String {
    format!("SNAPLINE_{}", key.to_uppercase().replace('.', "__"))
}

/// `DIR/PROFILE.toml` when it exists on disk, else the copy built into the binary.
fn profile_layer(dir: &Path, profile: &str) -> Result<Data<Toml>, SettingsError> {
    let path = dir.join(format!("{profile}.toml"));
    if path.is_file() {
        return Ok(Toml::file_exact(path));
    }
    EMBEDDED
        .iter()
        .find(|(name, _)| *name == profile)
        .map(|(_, text)| Toml::string(text))
        .ok_or_else(|| SettingsError::UnknownProfile {
            profile: profile.to_owned(),
            looked_in: path.display().to_string(),
        })
}

#[cfg(feature = "reference")]
use crate::ReferenceRepo;
use crate::error::RepoError;
use crate::{
    BackfillRepo, BandRepo, BulkLoader, GuardRepo, LeaseRepo, PopulationRepo, QueueJobRepo,
    SchemaRepo, StatsRepo, SyncRepo, TagRepo, TargetRepo, Tx,
};
use migration::MigratorTrait;
use sea_orm::{
    ConnectionTrait, DbBackend, FromQueryResult, SqliteTransactionMode, SqlxPostgresConnector,
    SqlxSqliteConnector, Statement, TransactionOptions, TransactionTrait, Value,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// `postgres://...` or `sqlite://FILE` (the file is created when missing).
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// PostgreSQL's `synchronous_commit` for this pool's sessions, one of the levels the
    /// server accepts (`on`, `off`, ...); `None` keeps the server's.
    pub synchronous_commit: Option<&'static str>,
    /// PostgreSQL's `idle_in_transaction_session_timeout` for this pool's sessions: a
    /// transaction a cancelled job left open on a pooled connection is ended by the server
    /// after this long, releasing its locks. `None` keeps the server's.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// PostgreSQL's `application_name` for this pool's sessions (what `pg_stat_activity`
    /// and the server's logs show); one given in the URL wins. `None` sends none.
    pub application_name: Option<String>,
    /// What sits between this pool and PostgreSQL.
    pub pooler: Pooler,
}

/// Work PostgreSQL does in one statement that SQLite's dialect cannot (no `UPDATE ... FROM`
/// a data-modifying CTE, no `jsonb`): the jobs ask for each by name ([`Db::has_fast_path`])
/// and take their portable path without it; its repository methods refuse to run without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastPath {
    /// Population snapshots written together with their offers' and ad_events' copies
    /// (`BackfillRepo::fill_populations_and_copies`), and copies made from populations
    /// inside the database (`BackfillRepo::copy_population_snapshots`).
    CopiesInDatabase,
    /// A populate pushed and its target marked `populating` in one statement
    /// (`QueueJobRepo::push_populate_marking_target`).
    PopulatePushMarkingTarget,
}

impl FastPath {
    pub fn name(self) -> &'static str {
        match self {
            FastPath::CopiesInDatabase => "copying snapshots inside the database",
            FastPath::PopulatePushMarkingTarget => "pushing a populate that marks its target",
        }
    }
}

/// What sits between snapline's pool and PostgreSQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pooler {
    /// Each connection is a session of its own (direct, or a pooler in session mode).
    #[default]
    None,
    /// A pooler in transaction mode (PgBouncer's `pool_mode = transaction`): the server
    /// session behind a connection may change whenever no transaction is open.
    ///
    /// sqlx sends a statement's Parse and its Bind in two exchanges, each ended by a Sync,
    /// and names the statement it prepares; between the two such a pooler may hand the
    /// connection to another session, and the names collide with another client's on the
    /// same server session. So every checkout of a connection runs inside one transaction
    /// (`BEGIN` on checkout, `COMMIT` on release), which pins one server session for it; the
    /// statements another client left on that session are dropped first (`DEALLOCATE ALL`);
    /// no statement is cached across checkouts; session settings are set per transaction
    /// (`SET LOCAL`). A transaction the code begins inside a checkout is the same one (the
    /// server warns of the extra `BEGIN`, which is harmless).
    Transaction,
}

impl DbOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            synchronous_commit: None,
            idle_in_transaction_timeout: Some(Duration::from_secs(60)),
            application_name: None,
            pooler: Pooler::None,
        }
    }
}

/// The one handle to the database: a sqlx pool wrapped by sea-orm.
#[derive(Clone, Debug)]
pub struct Db {
    conn: crate::PoolConn,
    backend: Backend,
    /// The largest id of each table's `id` column, read once (see [`SchemaRepo::id_max`]).
    pub(crate) id_limits: Arc<OnceLock<HashMap<String, i64>>>,
    /// What writers tell the platform ([`crate::EventRepo`]); off by default.
    events: Arc<crate::EventOptions>,
    /// What it is connected to, as [`database_label`] says it.
    label: Arc<str>,
}

impl Db {
    pub async fn connect(options: &DbOptions) -> Result<Db, RepoError> {
        let url = options.url.trim();
        let connect_error = |cause| RepoError::Connect {
            url: redact_url(url),
            cause,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let synchronous_commit = options.synchronous_commit;
            let idle_in_transaction_ms = options
                .idle_in_transaction_timeout
                .map(|t| t.as_millis().max(1));
            let mut connect = PgConnectOptions::from_str(url).map_err(connect_error)?;
            if let (None, Some(name)) = (connect.get_application_name(), &options.application_name)
            {
                connect = connect.application_name(name);
            }
            let pooler = options.pooler;
            if pooler == Pooler::Transaction {
                // Nothing cached refers to a statement another session may not hold; no
                // startup parameter PgBouncer refuses unless told to ignore it.
                connect = connect.statement_cache_capacity(0).extra_float_digits(None);
            }
            let mut settings = Vec::new();
            if let Some(level) = synchronous_commit {
                settings.push(format!("synchronous_commit = {level}"));
            }
            if let Some(ms) = idle_in_transaction_ms {
                settings.push(format!("idle_in_transaction_session_timeout = {ms}"));
            }
            let session_sql: Arc<str> = settings
                .iter()
                .map(|setting| format!("SET {setting};"))
                .collect::<String>()
                .into();
            // The server warns of the code's own BEGIN inside the checkout's transaction, and
            // of the release's COMMIT after the code's own: both as planned, neither logged.
            let checkout_sql: Arc<str> = ["BEGIN;", "SET LOCAL client_min_messages = error;"]
                .into_iter()
                .map(str::to_owned)
                .chain(
                    settings
                        .iter()
                        .map(|setting| format!("SET LOCAL {setting};")),
                )
                .chain(std::iter::once("DEALLOCATE ALL;".to_owned()))
                .collect::<String>()
                .into();
            let mut pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .after_connect({
                    let checkout_sql = checkout_sql.clone();
                    move |conn, _meta| {
                        let sql = match pooler {
                            Pooler::None => session_sql.clone(),
                            // a new connection goes to its first user without the
                            // before_acquire hook
                            Pooler::Transaction => checkout_sql.clone(),
                        };
                        Box::pin(async move {
                            disable_nagle_on_tcp_sockets();
                            if !sql.is_empty() {
                                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                                    .execute(&mut *conn)
                                    .await?;
                            }
                            Ok(())
                        })
                    }
                });
            if pooler == Pooler::Transaction {
                pool = pool
                    .before_acquire(move |conn, _meta| {
                        let sql = checkout_sql.clone();
                        Box::pin(async move {
                            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                                .execute(&mut *conn)
                                .await?;
                            Ok(true)
                        })
                    })
                    .after_release(|conn, _meta| {
                        Box::pin(async move {
                            // Ends the checkout's transaction (a ROLLBACK if a statement
                            // failed in it), which frees the server session for others.
                            sqlx::raw_sql(
                                "SET client_min_messages = error; COMMIT; RESET client_min_messages",
                            )
                            .execute(&mut *conn)
                            .await?;
                            Ok(true)
                        })
                    });
            }
            let pool = pool
                // Connected by the warm-up: all its connections at once.
                .connect_lazy_with(connect.clone());
            let warming = tokio::spawn(warm_up(
                pool.clone(),
                options.max_connections.min(WARM_CONNECTIONS),
            ));
            // A connection of its own beside them says at once why the server cannot be
            // reached (the pool would retry until its acquire timeout, then only time out).
            if let Err(cause) =
                <sqlx::PgConnection as sqlx::Connection>::connect_with(&connect).await
            {
                warming.abort();
                return Err(connect_error(cause));
            }
            warming
                .await
                .unwrap_or_else(|join| Err(sqlx::Error::Io(std::io::Error::other(join))))
                .map_err(connect_error)?;
            Ok(Db {
                conn: crate::PoolConn::new(
                    SqlxPostgresConnector::from_sqlx_postgres_pool(pool),
                    pooler,
                ),
                backend: Backend::Postgres,
                id_limits: Arc::default(),
                events: Arc::default(),
                label: database_label(url).into(),
            })
        } else {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(connect_error)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(15));
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await
                .map_err(connect_error)?;
            Ok(Db {
                conn: crate::PoolConn::new(
                    SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
                    Pooler::None,
                ),
                backend: Backend::Sqlite,
                id_limits: Arc::default(),
                events: Arc::default(),
                label: database_label(url).into(),
            })
        }
    }

    /// Applies every pending migration (the embedded default and tests; production runs
    /// the `migration` binary).
    ///
    /// Several processes starting at once on one database (`just serve` runs three) race to
    /// apply the same migration; the losers fail on the migrations table's key. They try
    /// again: by then the winner has applied it and `up` finds nothing left to do.
    pub async fn migrate(&self) -> Result<(), RepoError> {
        if self.pooler() == Pooler::Transaction {
            return Err(RepoError::NeedsSession(
                "applying migrations (the queue tables' setup holds a session advisory lock)",
            ));
        }
        const TRIES: u32 = 10;
        let mut tries = 0;
        loop {
            tries += 1;
            match migration::Migrator::up(self.conn.inner(), None).await {
                Ok(()) => return Ok(()),
                Err(err) if tries < TRIES => {
                    tracing::debug!(error = %err, tries, "migrating raced another process; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(300 * u64::from(tries)))
                        .await;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// One round trip: whether the database answers.
    pub async fn ping(&self) -> Result<(), RepoError> {
        self.conn.ping().await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What this pool is connected to, never with a password: `PostgreSQL DB on HOST:PORT`
    /// or `SQLite FILE`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether this database takes `path`, one statement's work SQLite's dialect cannot do.
    pub fn has_fast_path(&self, path: FastPath) -> bool {
        match path {
            FastPath::CopiesInDatabase | FastPath::PopulatePushMarkingTarget => {
                self.backend == Backend::Postgres
            }
        }
    }

    /// Refuses a repository method of `path` on a database without it.
    pub(crate) fn require_fast_path(&self, path: FastPath) -> Result<(), RepoError> {
        if self.has_fast_path(path) {
            Ok(())
        } else {
            Err(RepoError::NeedsPostgres {
                what: path.name(),
                why: "it is one PostgreSQL statement; ask Db::has_fast_path first and take the portable path",
            })
        }
    }

    /// What sits between this pool and PostgreSQL.
    pub fn pooler(&self) -> Pooler {
        self.conn.pooler()
    }

    /// The pool, for entity queries and transactions (each statement on it a transaction of
    /// its own: [`crate::PoolConn`]).
    pub fn conn(&self) -> &crate::PoolConn {
        &self.conn
    }

    /// The shared sqlx pool on PostgreSQL (for the apalis-postgres queues).
    pub fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        (self.backend == Backend::Postgres).then(|| self.conn.get_postgres_connection_pool())
    }

    /// The pool's connections now: (open, idle, most it may open).
    pub fn pool_connections(&self) -> (u32, u32, u32) {
        match self.backend {
            Backend::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle() as u32,
                    pool.options().get_max_connections(),
                )
            }
            Backend::Sqlite => {
                let pool = self.conn.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle() as u32,
                    pool.options().get_max_connections(),
                )
            }
        }
    }

    /// The shared sqlx pool on SQLite (for the apalis-sqlite queues).
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        (self.backend == Backend::Sqlite).then(|| self.conn.get_sqlite_connection_pool())
    }

    pub async fn close(self) {
        let _ = self.conn.inner().clone().close().await;
    }

    pub fn targets(&self) -> TargetRepo<'_> {
        TargetRepo {
            db: self,
            conn: &self.conn,
        }
    }

    pub fn bands(&self) -> BandRepo<'_> {
        BandRepo {
            db: self,
            conn: &self.conn,
        }
    }

    pub fn tags(&self) -> TagRepo<'_> {
        TagRepo {
            db: self,
            conn: &self.conn,
        }
    }

    pub fn populations(&self) -> PopulationRepo<'_> {
        PopulationRepo {
            db: self,
            conn: &self.conn,
        }
    }

    pub fn sync(&self) -> SyncRepo<'_> {
        SyncRepo {
            db: self,
            conn: &self.conn,
        }
    }

    pub fn stats(&self) -> StatsRepo<'_> {
        StatsRepo { db: self }
    }

    pub fn board(&self) -> crate::BoardRepo<'_> {
        crate::BoardRepo { db: self }
    }

    pub fn queue_pauses(&self) -> crate::QueuePauseRepo<'_> {
        crate::QueuePauseRepo { db: self }
    }

    pub fn queue_scales(&self) -> crate::QueueScaleRepo<'_> {
        crate::QueueScaleRepo { db: self }
    }

    pub fn queue_history(&self) -> crate::QueueHistoryRepo<'_> {
        crate::QueueHistoryRepo { db: self }
    }

    pub fn job_admin(&self) -> crate::JobAdminRepo<'_> {
        crate::JobAdminRepo { db: self }
    }

    #[cfg(feature = "reference")]
    pub fn server_stats(&self) -> crate::ServerStatsRepo<'_> {
        crate::ServerStatsRepo { db: self }
    }

    pub fn bulk(&self) -> BulkLoader<'_> {
        BulkLoader { db: self }
    }

    pub fn queue_jobs(&self) -> QueueJobRepo<'_> {
        QueueJobRepo { db: self }
    }

    #[cfg(feature = "reference")]
    pub fn reference(&self) -> ReferenceRepo<'_> {
        ReferenceRepo { db: self }
    }

    pub fn audit(&self) -> crate::AuditRepo<'_> {
        crate::AuditRepo { db: self }
    }

    pub fn backfill(&self) -> BackfillRepo<'_> {
        BackfillRepo {
            db: self,
            conn: &self.conn,
        }
    }

    pub fn capture(&self) -> crate::CaptureRepo<'_> {
        crate::CaptureRepo { db: self }
    }

    pub fn bridge(&self) -> crate::BridgeRepo<'_> {
        crate::BridgeRepo { db: self }
    }

    pub fn doctor(&self) -> crate::DoctorRepo<'_> {
        crate::DoctorRepo { db: self }
    }

    /// The names of the migrations not yet applied.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, RepoError> {
        use migration::MigratorTrait as _;
        Ok(
            migration::Migrator::get_pending_migrations(self.conn.inner())
                .await?
                .iter()
                .map(|m| m.name().to_owned())
                .collect(),
        )
    }

    /// Refuses `what` on SQLite, saying `why` it needs PostgreSQL.
    pub(crate) fn require_postgres(
        &self,
        what: &'static str,
        why: &'static str,
    ) -> Result<(), RepoError> {
        match self.backend {
            Backend::Postgres => Ok(()),
            Backend::Sqlite => Err(RepoError::NeedsPostgres { what, why }),
        }
    }

    /// This handle, its writers emitting `events`.
    pub fn with_events(mut self, events: crate::EventOptions) -> Self {
        self.events = Arc::new(events);
        self
    }

    pub(crate) fn event_options(&self) -> &crate::EventOptions {
        &self.events
    }

    pub fn events(&self) -> crate::EventRepo<'_> {
        crate::EventRepo {
            db: self,
            conn: &self.conn,
        }
    }

    pub fn guard(&self) -> GuardRepo<'_> {
        GuardRepo { db: self }
    }

    pub fn schema(&self) -> SchemaRepo<'_> {
        SchemaRepo { db: self }
    }

    pub fn populate_runs(&self) -> crate::PopulateRunRepo<'_> {
        crate::PopulateRunRepo {
            db: self,
            conn: &self.conn,
        }
    }

    pub fn leases(&self) -> LeaseRepo<'_> {
        LeaseRepo {
            db: self,
            conn: &self.conn,
        }
    }

    /// Begins a transaction that writes: on SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before writing cannot fail to upgrade.
    ///
    /// The repositories of the returned [`Tx`] run in it; nothing is written unless it is
    /// committed.
    pub async fn begin_write(&self) -> Result<Tx<'_>, RepoError> {
        let options = TransactionOptions {
            sqlite_transaction_mode: (self.backend == Backend::Sqlite)
                .then_some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok(Tx {
            db: self,
            txn: self.conn.begin_with_options(options).await?,
        })
    }

    /// The database clock as seconds since the Unix epoch.
    pub(crate) fn epoch_now_sql(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)",
            Backend::Sqlite => "CAST(strftime('%s', 'now') AS INTEGER)",
        }
    }

    /// The current UTC time for a `timestamp` column: the moment of the write, not the
    /// transaction's start.
    pub(crate) fn timestamp_now_sql(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "(clock_timestamp() AT TIME ZONE 'utc')",
            Backend::Sqlite => "CURRENT_TIMESTAMP",
        }
    }

    pub(crate) fn statement(&self, sql: impl Into<String>, values: Vec<Value>) -> Statement {
        let backend = match self.backend {
            Backend::Postgres => DbBackend::Postgres,
            Backend::Sqlite => DbBackend::Sqlite,
        };
        Statement::from_sql_and_values(backend, sql, values)
    }

    /// The rows of a query, each decoded by column name into `T`.
    pub(crate) async fn fetch_all<T: FromQueryResult, C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: impl Into<String>,
        values: Vec<Value>,
    ) -> Result<Vec<T>, RepoError> {
        Ok(T::find_by_statement(self.statement(sql, values))
            .all(conn)
            .await?)
    }

    /// Runs one statement on `conn`; returns the rows it changed.
    pub(crate) async fn execute<C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: impl Into<String>,
        values: Vec<Value>,
    ) -> Result<u64, RepoError> {
        Ok(conn
            .execute_raw(self.statement(sql, values))
            .await?
            .rows_affected())
    }

    /// The first row of a query (if any), decoded by column name into `T`.
    pub(crate) async fn fetch_optional<T: FromQueryResult, C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: impl Into<String>,
        values: Vec<Value>,
    ) -> Result<Option<T>, RepoError> {
        Ok(T::find_by_statement(self.statement(sql, values))
            .one(conn)
            .await?)
    }

    /// The one row a query always returns (an aggregate), decoded into `T`.
    pub(crate) async fn fetch_one<T: FromQueryResult, C: ConnectionTrait>(
        &self,
        conn: &C,
        what: &'static str,
        sql: impl Into<String>,
        values: Vec<Value>,
    ) -> Result<T, RepoError> {
        self.fetch_optional(conn, sql, values)
            .await?
            .ok_or_else(|| RepoError::Data {
                what,
                detail: "the query returned no row".to_owned(),
            })
    }

    /// `column` is one of the ids bound at `$param` (see [`Db::id_list`]).
    pub(crate) fn in_id_list(&self, column: &str, param: usize) -> String {
        match self.backend {
            Backend::Postgres => format!("{column} = ANY(${param})"),
            Backend::Sqlite => format!("{column} IN (SELECT value FROM json_each(${param}))"),
        }
    }

    /// A list of ids as one parameter: a bigint array, or a JSON array on SQLite.
    pub(crate) fn id_list(&self, ids: &[i64]) -> Value {
        match self.backend {
            Backend::Postgres => Value::from(ids.to_vec()),
            Backend::Sqlite => Value::from(json_array(ids)),
        }
    }

    /// The snapshot column read as JSON text on both backends.
    pub(crate) fn snapshot_text(&self, column: &str) -> String {
        match self.backend {
            Backend::Postgres => format!("{column}::text"),
            Backend::Sqlite => column.to_owned(),
        }
    }
}

/// Connections a PostgreSQL pool opens at once when it is created.
const WARM_CONNECTIONS: u32 = 4;

/// Opens `n` connections at the same time and leaves them idle in `pool`. A new connection
/// costs ~90 ms on a server with TLS (measured against this machine's PostgreSQL with the
/// default `sslmode=prefer`; 5 ms with `sslmode=disable`): its handshake runs before
/// `TCP_NODELAY` can be set (see [`disable_nagle_on_tcp_sockets`]) and waits on delayed
/// ACKs. Opened one by one as a short run first needs them (migration check, then its
/// reads and writes side by side), they cost a few hundred milliseconds; opened together,
/// about one handshake.
async fn warm_up(pool: sqlx::PgPool, n: u32) -> Result<(), sqlx::Error> {
    let opened = futures::future::join_all((0..n).map(|_| pool.acquire())).await;
    for connection in opened {
        connection?;
    }
    Ok(())
}

/// sqlx 0.9.0 no longer sets `TCP_NODELAY` on its sockets (upstream issue
/// transact-rs/sqlx#4335, fixed after 0.9.0): a statement whose parameters span several TCP
/// segments then waits ~40 ms for the server's delayed ACK, which made a populate batch of
/// 250 rows cost 48 ms instead of 4 ms. Until a fixed sqlx is released, every new connection
/// sets it on the process's TCP sockets (harmless on any other TCP socket; other file
/// descriptors refuse the option and are skipped).
fn disable_nagle_on_tcp_sockets() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let one: libc::c_int = 1;
        // SAFETY: setsockopt only reads `one`; on a descriptor that is not a TCP socket it
        // fails with ENOTSOCK or ENOPROTOOPT and changes nothing.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

pub(crate) fn json_array(ids: &[i64]) -> String {
    let mut text = String::with_capacity(ids.len() * 8 + 2);
    text.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&id.to_string());
    }
    text.push(']');
    text
}

/// Query parameters of a connection URL that carry a secret (libpq's names).
const SECRET_PARAMETERS: [&str; 2] = ["password", "sslpassword"];

/// Hides the passwords of a connection URL in messages: the one in its user information
/// (`user:pw@host`) and any given as a query parameter (`?password=pw`).
/// The database `url` names, for people: `PostgreSQL DB on HOST:PORT` or `SQLite FILE`;
/// never its user or password.
pub fn database_label(url: &str) -> String {
    let url = url.trim();
    if let Some(file) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = file.split('?').next().unwrap_or_default();
        return format!("SQLite {file}");
    }
    match PgConnectOptions::from_str(url) {
        Ok(options) => format!(
            "PostgreSQL {} on {}:{}",
            options.get_database().unwrap_or("(default database)"),
            options.get_host(),
            options.get_port()
        ),
        Err(_) => "a database whose URL does not parse".to_owned(),
    }
}

pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let (base, query) = match url[scheme_end..].find('?') {
        Some(q) => url.split_at(scheme_end + q),
        None => (url, ""),
    };
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut redacted = match base[scheme_end..authority_end].rfind('@') {
        Some(at) => {
            let credentials = &base[scheme_end..scheme_end + at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &base[..scheme_end],
                    &credentials[..colon],
                    &base[scheme_end + at..]
                ),
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(parameters) = query.strip_prefix('?') {
        let parameters: Vec<String> = parameters
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _))
                    if SECRET_PARAMETERS.contains(&key.to_ascii_lowercase().as_str()) =>
                {
                    format!("{key}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&parameters.join("&"));
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_label_names_host_and_database_never_credentials() {
        assert_eq!(
            database_label("postgres://app:s3cret@db.internal:6432/platform?sslmode=require"),
            "PostgreSQL platform on db.internal:6432"
        );
        assert_eq!(
            database_label("sqlite://snapline.db?mode=rwc"),
            "SQLite snapline.db"
        );
        assert!(!database_label("postgres://app:s3cret@db/x").contains("s3cret"));
    }

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("sqlite://snapline.db"), "sqlite://snapline.db");
        assert_eq!(
            redact_url("postgres://app@db/x?sslmode=require&password=s3cret@x&PassWord=2"),
            "postgres://app@db/x?sslmode=require&password=***&PassWord=***"
        );
        assert_eq!(
            redact_url("postgres://db/x?user=app&sslpassword=k:ey"),
            "postgres://db/x?user=app&sslpassword=***"
        );
        assert_eq!(
            redact_url("postgres://app:pw@db/x?password=again"),
            "postgres://app:***@db/x?password=***"
        );
        assert_eq!(
            redact_url("postgres://app:p@ss@db/x"),
            "postgres://app:***@db/x"
        );
    }
}

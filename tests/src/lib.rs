//! Test harness shared by the end-to-end tests: each test gets its own freshly created,
//! uniquely named database (PostgreSQL) or file (SQLite), dropped when the test ends, so
//! tests run in parallel and never touch a developer's data.
//!
//! PostgreSQL is reached through `SNAPLINE_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), a role allowed to create databases.

pub mod cli;
pub mod oracle;
pub mod webdriver;

use repo::{Db, DbOptions};
use sqlx::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database that exists for one test.
pub struct TestDb {
    pub db: Db,
    /// What the code under test connects to: the database, or the pooler in front of it
    /// (see [`pooler_address`]).
    pub url: String,
    /// The database itself, never through a pooler (migrations need a session).
    pub direct_url: String,
    pub backend: Backend,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `host:port` of a transaction-mode pooler (PgBouncer) in front of the test server, when
/// the tests run through one (`POOLER_FOR_TESTS`): the PostgreSQL tests' databases are
/// then created and migrated directly and everything else reaches them through the pooler,
/// with `database.pooler = "transaction"` (which the run sets for the binaries it starts,
/// `SNAPLINE_DATABASE__POOLER`).
pub fn pooler_address() -> Option<String> {
    std::env::var("POOLER_FOR_TESTS")
        .ok()
        .filter(|address| !address.trim().is_empty())
}

/// The PostgreSQL URL tests create their databases through (`SNAPLINE_TEST_PG_URL`).
pub fn admin_url() -> String {
    std::env::var("SNAPLINE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "snapline_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

impl TestDb {
    /// An empty database, no tables.
    pub async fn empty(backend: Backend) -> TestDb {
        let name = unique_name();
        let (url, direct_url, dir) = match backend {
            Backend::Postgres => {
                let admin = admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL for tests at {admin}: {e}"));
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                let direct = format!("{base}/{name}");
                let url = match pooler_address() {
                    Some(address) => format!("postgres://postgres@{address}/{name}"),
                    None => direct.clone(),
                };
                (url, direct, None)
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join(format!("{name}.db"));
                let url = format!("sqlite://{}", path.display());
                (url.clone(), url, Some(dir))
            }
        };
        let pooled = url != direct_url;
        let db = Db::connect(&DbOptions {
            url: url.clone(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            synchronous_commit: None,
            idle_in_transaction_timeout: Some(Duration::from_secs(60)),
            application_name: None,
            pooler: if pooled {
                repo::Pooler::Transaction
            } else {
                repo::Pooler::None
            },
        })
        .await
        .expect("connect to test database");
        TestDb {
            db,
            url,
            direct_url,
            backend,
            name,
            _dir: dir,
        }
    }

    /// A database with every migration applied.
    pub async fn migrated(backend: Backend) -> TestDb {
        let test_db = Self::empty(backend).await;
        test_db.migrate().await;
        test_db
    }

    /// Applies every migration, on a connection of its own to the database itself when the
    /// tests run through a pooler (migrations need a session).
    pub async fn migrate(&self) {
        if self.url == self.direct_url {
            self.db.migrate().await.expect("migrations apply");
            return;
        }
        let direct = Db::connect(&DbOptions {
            max_connections: 2,
            ..DbOptions::new(self.direct_url.clone())
        })
        .await
        .expect("connect to the test database directly");
        direct.migrate().await.expect("migrations apply");
        direct.close().await;
    }

    /// A migrated database holding the synthetic data set for `options`, every target
    /// populated.
    pub async fn populated(backend: Backend, options: &synth::SeedOptions) -> TestDb {
        let test_db = Self::seeded(backend, options).await;
        for target in test_db.db.targets().all().await.expect("targets") {
            jobs::populate_target::populate_target(&test_db.db, target.id, &Default::default())
                .await
                .expect("populate");
        }
        test_db
    }

    /// A migrated database holding the synthetic data set for `options`.
    pub async fn seeded(backend: Backend, options: &synth::SeedOptions) -> TestDb {
        let test_db = Self::migrated(backend).await;
        synth::seed(&test_db.db, options, |_, _| {})
            .await
            .expect("seed data set");
        test_db
    }
}

/// The twelve platform tables of DESIGN section 1.
pub const PLATFORM_TABLES: [&str; 12] = [
    "traits",
    "me_files",
    "me_file_tags",
    "targets",
    "target_bands",
    "trait_groups",
    "trait_group_traits",
    "target_band_trait_groups",
    "campaigns",
    "target_populations",
    "offers",
    "ad_events",
];

/// The platform's twelve tables as its public schema defines them (integer ids, NULLable
/// references, NOT NULL columns only the platform fills, Ecto's index names), written for
/// these tests from the platform's pg_dump and Ecto migrations.
pub const PLATFORM_SCHEMA: &str = include_str!("../fixtures/platform_schema.sql");
/// Oban's job table as the platform has it (`oban_jobs`, its state type, `oban_peers`),
/// written for these tests from Oban's published migrations.
pub const OBAN_SCHEMA: &str = include_str!("../fixtures/oban_jobs.sql");
/// A small data set on [`PLATFORM_SCHEMA`]: the target shapes the rules must handle.
pub const PLATFORM_DATA: &str = include_str!("../fixtures/platform_data.sql");

impl TestDb {
    /// A PostgreSQL database built as the platform's ([`PLATFORM_SCHEMA`]) holding
    /// [`PLATFORM_DATA`]; snapline's migrations not applied.
    pub async fn platform() -> TestDb {
        let test = Self::empty(Backend::Postgres).await;
        // On a session of its own: a pg_dump sets session settings (search_path), which
        // must not stay on a pooler's server session.
        let mut direct = sqlx::PgConnection::connect(&test.direct_url)
            .await
            .expect("connect to the test database directly");
        for sql in [PLATFORM_SCHEMA, PLATFORM_DATA] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut direct)
                .await
                .expect("build the platform's schema and data");
        }
        direct.close().await.expect("close");
        test
    }
}

/// The `public` schema as PostgreSQL describes it: tables, columns (type, nullability,
/// default), indexes (full definition), constraints and storage settings, one line each,
/// sorted. Two equal catalogs are the same schema.
pub async fn public_catalog(db: &Db) -> Vec<String> {
    let rows = db
        .conn()
        .query_all_raw(sea_orm::Statement::from_string(
            db.conn().get_database_backend(),
            "SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' \
                    || is_nullable || ' ' || COALESCE(column_default, '-') \
             FROM information_schema.columns WHERE table_schema = 'public' \
             UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' \
             UNION ALL SELECT 'constraint ' || c.conrelid::regclass::text || ' ' || c.conname \
                    || ' ' || pg_get_constraintdef(c.oid) \
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
             WHERE n.nspname = 'public' \
             UNION ALL SELECT 'options ' || c.relname || ' ' || array_to_string(c.reloptions, ',') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.reloptions IS NOT NULL \
             ORDER BY 1",
        ))
        .await
        .expect("catalog query");
    rows.into_iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("text"))
        .collect()
}

/// Reads every row of every platform table through its sea-orm entity: fails when an
/// entity's types or nullability are not the table's.
pub async fn read_every_entity(db: &Db) {
    use entity::*;
    use sea_orm::EntityTrait;
    let conn = db.conn();
    macro_rules! read_all {
        ($($table:ident),*) => {$(
            $table::Entity::find()
                .all(conn)
                .await
                .unwrap_or_else(|e| panic!("entity {}: {e}", stringify!($table)));
        )*};
    }
    read_all!(
        traits,
        me_files,
        me_file_tags,
        targets,
        target_bands,
        trait_groups,
        trait_group_traits,
        target_band_trait_groups,
        campaigns,
        target_populations,
        offers,
        ad_events,
        snapline_leases
    );
}

/// A digest of every row of `tables`: equal digests, equal data.
pub async fn data_digest(db: &Db, tables: &[&str]) -> Vec<(String, String)> {
    let mut digests = Vec::new();
    for table in tables {
        let row = db
            .conn()
            .query_one_raw(sea_orm::Statement::from_string(
                db.conn().get_database_backend(),
                format!(
                    "SELECT COUNT(*) || ':' || md5(COALESCE(string_agg(t::text, '|' ORDER BY t::text), '')) \
                     FROM {table} AS t"
                ),
            ))
            .await
            .expect("digest query")
            .expect("a row");
        digests.push((
            table.to_string(),
            row.try_get_by_index::<String>(0).expect("text"),
        ));
    }
    digests
}

/// Runs `statements` (errors ignored: clean-up) on a connection to `url`, from a `Drop`: that
/// runs outside async context, so on a private runtime on a plain thread.
fn clean_up_on(url: String, statements: Vec<String>) {
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                for sql in statements {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            }
        });
    })
    .join();
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.backend == Backend::Postgres {
            clean_up_on(
                admin_url(),
                vec![format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                )],
            );
        }
    }
}

/// Login roles a test creates on the shared server, dropped when it ends (roles outlive
/// databases): whatever they own or were granted in the test's database first, then the roles.
/// Declare it before the [`TestDb`] it names so that it drops first.
pub struct TestRoles {
    database_url: String,
    pub names: Vec<String>,
}

impl TestRoles {
    /// Roles named `<database>_<suffix>` for `test`; creates none (a test or a deploy script
    /// does).
    pub fn for_test(test: &TestDb, suffixes: &[&str]) -> TestRoles {
        TestRoles {
            database_url: test.url.clone(),
            names: suffixes
                .iter()
                .map(|suffix| format!("{}_{suffix}", test.name))
                .collect(),
        }
    }

    /// The name of the role of `suffix`.
    pub fn name(&self, suffix: &str) -> &str {
        self.names
            .iter()
            .find(|name| name.ends_with(&format!("_{suffix}")))
            .unwrap_or_else(|| panic!("no role {suffix}"))
    }
}

impl Drop for TestRoles {
    fn drop(&mut self) {
        let quoted: Vec<String> = self.names.iter().map(|n| format!("\"{n}\"")).collect();
        clean_up_on(
            self.database_url.clone(),
            quoted
                .iter()
                .map(|role| format!("DROP OWNED BY {role} CASCADE"))
                .collect(),
        );
        clean_up_on(
            admin_url(),
            quoted
                .iter()
                .map(|role| format!("DROP ROLE IF EXISTS {role}"))
                .collect(),
        );
    }
}

/// Runs an async test body once per backend: `both_backends!(name, body)` defines
/// `name::postgres` and `name::sqlite`, each calling `body(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident => $body:ident;)*) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body($crate::Backend::Postgres).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::Backend::Sqlite).await
            }
        }
    )*};
}

use domain::{BandId, MeFileId, Snapshot, TargetId};
use sea_orm::ConnectionTrait;
use std::collections::BTreeMap;

/// A target's rows as stored: me_file -> (band, snapshot; `None` when NULL).
pub type StoredRows = BTreeMap<MeFileId, Vec<(BandId, Option<Snapshot>)>>;

/// A target's stored rows.
pub async fn stored_rows(db: &Db, target_id: TargetId) -> StoredRows {
    let mut stored: StoredRows = BTreeMap::new();
    let mut after = None;
    loop {
        let page = db
            .populations()
            .page_of_target(target_id, after, 10_000)
            .await
            .expect("page");
        for row in page.rows {
            stored.entry(row.me_file_id).or_default().push((
                row.band_id,
                row.snapshot
                    .map(|s| Snapshot::from_json(&s).expect("stored JSON parses")),
            ));
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return stored,
        }
    }
}

/// Asserts the target's stored rows are exactly what the rules give: one row per member, in
/// the right band, with the right snapshot, and nothing else. Checked against the rules'
/// model over plain SQL reads (both backends) and, on PostgreSQL, the set-based SQL too.
pub async fn assert_population_exact(db: &Db, target_id: TargetId) {
    oracle::assert_rows_as_rules_give(db, target_id).await;
    assert_population_as_sql_computes(db, target_id).await;
}

/// On PostgreSQL, asserts the target's stored rows equal the set-based SQL's
/// (`repo::ReferenceRepo`), an oracle that shares no code with the jobs or with the rules'
/// model: a rule, planner or band-reading bug they share still fails here.
pub async fn assert_population_as_sql_computes(db: &Db, target_id: TargetId) {
    if db.backend() != repo::Backend::Postgres {
        return;
    }
    let differences = db
        .reference()
        .population_differences_from_sql(target_id.0, 5)
        .await
        .expect("set-based reference");
    assert!(
        differences.is_empty(),
        "target {target_id} differs from the set-based SQL: {differences:#?}"
    );
}

/// The ids of rows with a NULL snapshot: target_populations, offers, ad_events.
pub async fn null_snapshot_ids(db: &Db) -> [Vec<i64>; 3] {
    let mut ids: [Vec<i64>; 3] = Default::default();
    for (i, table) in SNAPSHOT_TABLES.iter().enumerate() {
        ids[i] = entity_ids(
            db,
            &format!("SELECT id FROM {table} WHERE matching_tags_snapshot IS NULL ORDER BY id"),
        )
        .await;
    }
    ids
}

pub(crate) const SNAPSHOT_TABLES: [&str; 3] = ["target_populations", "offers", "ad_events"];

/// Asserts that each row that had a NULL snapshot (`before`, from [`null_snapshot_ids`])
/// now holds what a backfill owes it (see [`oracle::assert_backfill_owed_by_rules`]), by the
/// rules' model on both backends and, on PostgreSQL, by the set-based SQL too.
pub async fn assert_backfill_owed(db: &Db, before: &[Vec<i64>; 3]) {
    oracle::assert_backfill_owed_by_rules(db, before).await;
    if db.backend() != repo::Backend::Postgres {
        return;
    }
    for (table, ids) in SNAPSHOT_TABLES.iter().zip(before) {
        let differences = db
            .reference()
            .snapshot_differences_from_sql(table, ids, 5)
            .await
            .expect("set-based reference");
        assert!(
            differences.is_empty(),
            "{table}: not what the set-based SQL owes: {differences:#?}"
        );
    }
}

/// Runs a query returning one integer or bigint column.
pub async fn entity_ids(db: &Db, sql: &str) -> Vec<i64> {
    db.conn()
        .query_all_raw(sea_orm::Statement::from_string(
            db.conn().get_database_backend(),
            sql,
        ))
        .await
        .expect("query")
        .into_iter()
        .map(|row| row.try_get_by_index::<entity::Id>(0).expect("an id").0)
        .collect()
}

/// NULL snapshots per table, `(target_populations, offers, ad_events)`, each a plain
/// `COUNT(*)`: what the board and `snapctl status` show is checked against this, never
/// against the function they render.
pub async fn plain_null_counts(db: &Db) -> (i64, i64, i64) {
    let count = |table: &str| {
        format!("SELECT COUNT(*) AS id FROM {table} WHERE matching_tags_snapshot IS NULL")
    };
    (
        entity_ids(db, &count("target_populations")).await[0],
        entity_ids(db, &count("offers")).await[0],
        entity_ids(db, &count("ad_events")).await[0],
    )
}

/// Runs statements (test fixtures and mutations).
pub async fn execute(db: &Db, sql: &str) -> u64 {
    db.conn()
        .execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows_affected()
}

/// Orphan populations counted the plain way, by a scan of the whole table: the oracle for
/// `PopulationRepo::count_orphans`, which walks the indexes instead.
pub const ORPHAN_POPULATIONS_BY_SCAN: &str = "SELECT COUNT(*) FROM target_populations p \
     WHERE p.me_file_id IS NULL \
     OR NOT EXISTS (SELECT 1 FROM target_bands b WHERE b.id = p.target_band_id)";

/// One scalar bigint.
pub async fn scalar(db: &Db, sql: &str) -> i64 {
    entity_ids(db, sql).await.first().copied().unwrap_or(0)
}

/// Every population row of `targets`, with its snapshot as stored text: for byte-for-byte
/// comparisons. (target, me_file) -> [(band, snapshot text)].
pub async fn raw_rows(
    db: &Db,
    targets: &[TargetId],
) -> BTreeMap<(TargetId, MeFileId), Vec<(BandId, Option<String>)>> {
    let mut rows = BTreeMap::new();
    for target in targets {
        let mut after = None;
        loop {
            let page = db
                .populations()
                .page_of_target(*target, after, 10_000)
                .await
                .expect("page");
            for row in page.rows {
                rows.entry((*target, row.me_file_id))
                    .or_insert_with(Vec::new)
                    .push((row.band_id, row.snapshot));
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    rows
}

/// The value of one series (its name and labels, as Prometheus text prints them) in
/// `metrics`, a recorder's rendered text; 0 when absent.
pub fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{series} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// A SQL string literal.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Polls `done` every 100 ms until it holds; panics naming `what` after 90 s.
pub async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of the queue's job whose payload contains `needle`, if any.
pub async fn job_status(db: &Db, queue: &str, needle: &str) -> Option<repo::QueueJob> {
    db.queue_jobs()
        .of_queue(queue)
        .await
        .expect("queue jobs")
        .into_iter()
        .find(|job| job.payload.contains(needle))
}

/// A local TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `GET path` on 127.0.0.1:`port`: (status code, body), or `None` while nothing listens.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The path of the workspace binary `name` (`target/debug/NAME` beside the test's own
/// executable). `cargo test --workspace` builds the binaries before any test runs.
pub fn binary(name: &str) -> String {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p {name})",
        path.display()
    );
    path.display().to_string()
}

/// `snapctl ARGS` on the test database at `url`, as a user runs it (the `test` profile,
/// warnings only, no stdin); its output.
pub fn snapctl(url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary("snapctl"))
        .args(args)
        .env("SNAPLINE_PROFILE", "test")
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("snapctl starts")
}

/// A snapline binary serving in a child process, killed when dropped.
pub struct Served {
    pub child: std::process::Child,
}

impl Served {
    /// Starts `binary serve` on `url` with the `test` profile and `env` on top.
    pub fn start(binary: &str, url: &str, env: &[(&str, String)]) -> Served {
        Self::spawn(binary, &["serve"], url, env)
    }

    /// Starts `binary ARGS...` on `url` with the `test` profile and `env` on top.
    pub fn spawn(binary: &str, args: &[&str], url: &str, env: &[(&str, String)]) -> Served {
        let mut command = std::process::Command::new(binary);
        command
            .args(args)
            .env("SNAPLINE_PROFILE", "test")
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        Served {
            child: command.spawn().expect("the binary starts"),
        }
    }

    /// Sends `signal` (`TERM`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let number = match signal {
            "TERM" => libc::SIGTERM,
            "KILL" => libc::SIGKILL,
            other => panic!("unsupported signal {other}"),
        };
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with a child's pid and a valid signal number has no memory effects.
        let sent = unsafe { libc::kill(pid, number) };
        assert_eq!(sent, 0, "kill -{signal} {pid}");
    }

    /// Waits up to `limit` for the process to exit; its exit code (`None`: killed by a
    /// signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                started.elapsed() < limit,
                "the process did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many jobs of `queue` are done.
pub async fn done_jobs(db: &Db, queue: &str) -> i64 {
    db.queue_jobs()
        .count_by_status(queue)
        .await
        .expect("job counts")
        .into_iter()
        .filter(|(status, _)| status == "Done")
        .map(|(_, n)| n)
        .sum()
}

/// The jobs of snapline's queues that have not ended and those killed (failed for good), as
/// `queue: N status` lines.
pub async fn unfinished_jobs(db: &Db) -> (Vec<String>, Vec<String>) {
    let (mut open, mut killed) = (Vec::new(), Vec::new());
    for queue in jobs::queues::ALL {
        // A read that fails (the server restarting) proves nothing finished: it counts as
        // open, so a caller waiting for the queues to drain keeps waiting.
        let counts = match db.queue_jobs().count_by_status(queue).await {
            Ok(counts) => counts,
            Err(err) => {
                open.push(format!("{queue}: unknown ({err})"));
                continue;
            }
        };
        for (status, n) in counts {
            match status.as_str() {
                "Done" => {}
                "Killed" => killed.push(format!("{queue}: {n} {status}")),
                _ => open.push(format!("{queue}: {n} {status}")),
            }
        }
    }
    (open, killed)
}

/// The population status of `target`, which must exist (`None`: an unknown status text).
pub async fn target_status(db: &Db, target: TargetId) -> Option<domain::PopulationStatus> {
    db.targets()
        .find(target)
        .await
        .expect("target")
        .expect("the target exists")
        .status
}

/// Waits until `target` is `populating`: a populate is under way.
pub async fn wait_until_populating(db: &Db, target: TargetId) {
    // `populating` alone is set by the push too: a run under way also holds the lease.
    let lease = format!("populate_target:{target}");
    wait_for("the populate to be under way", || async {
        let running = db
            .leases()
            .holder(&lease)
            .await
            .expect("lease")
            .is_some_and(|holder| holder.expires_in_secs >= 0);
        running
            && db
                .targets()
                .find(target)
                .await
                .expect("target")
                .and_then(|t| t.status)
                == Some(domain::PopulationStatus::Populating)
    })
    .await;
}

/// A queue consumer running in this process until [`InProcessWorker::stop`].
pub struct InProcessWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), jobs::JobError>>,
}

impl InProcessWorker {
    /// Spawns `serve`, handing it the future that completes on [`InProcessWorker::stop`].
    pub fn start<F, Fut>(serve: F) -> InProcessWorker
    where
        F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
        Fut: std::future::Future<Output = Result<(), jobs::JobError>> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(serve(Box::pin(async move {
            let _ = stopped.await;
        })));
        InProcessWorker { stop, handle }
    }

    /// Whether the worker ended by itself.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Stops the worker and asserts it stopped cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.handle
            .await
            .expect("worker task")
            .expect("the worker stops cleanly");
    }
}

/// A board serving `db` on a free localhost port (read-only unless `allow_actions`, no
/// authentication, the default schedules) until [`ServedBoard::stop`]; dropped, it stops
/// too.
pub struct ServedBoard {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<(), board::BoardError>>>,
}

impl ServedBoard {
    pub fn start(db: &Db, allow_actions: bool) -> ServedBoard {
        let port = free_port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(board::serve(
            db.clone(),
            board::BoardOptions {
                listen: format!("127.0.0.1:{port}").parse().expect("an address"),
                allow_actions,
                basic_auth: None,
                allowed_hosts: vec![],
                backfill_cron: "0 * * * *".into(),
                audit_cron: None,
            },
            async move {
                let _ = stopped.await;
            },
        ));
        ServedBoard {
            port,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Stops the board and asserts it ended cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            served
                .await
                .expect("the board's task")
                .expect("the board stops cleanly");
        }
    }
}

impl Drop for ServedBoard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

//! `snapctl doctor`: what switching the platform over to snapline needs, checked on its
//! database, each miss with what to do. Reads only; PostgreSQL.

use crate::error::JobError;
use repo::Db;
use serde::Serialize;

/// One check: whether it holds, what was found, and what to do when it does not.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub found: String,
    /// What to do; empty when `ok`.
    pub fix: String,
}

/// What the checks compare the database with: the deployment's settings.
#[derive(Clone, Debug)]
pub struct DoctorOptions {
    /// The services' role (`deploy/postgres/roles.sql`); its rights are checked when given.
    pub service_role: Option<String>,
    /// Replicas of each of the three services.
    pub replicas: u32,
    /// `database.max_connections`: each process's pool.
    pub pool_per_process: u32,
    /// Jobs run at once per process of each queue (populate, sync, backfill).
    pub concurrency: [u32; 3],
    /// `syncer.me_files_per_transaction`: the locks one sync transaction may hold.
    pub me_files_per_transaction: u32,
    /// Whether `bridge.workers` maps the platform's hourly backfill worker, and its name.
    pub hourly_backfill_worker: Option<String>,
}

/// Indexes the jobs' hot queries need, by their fixed names (DESIGN section 1); the unique
/// (target_band_id, me_file_id) one is checked by what it is, as it has two names.
const REQUIRED_INDEXES: [&str; 3] = [
    "target_populations_null_snapshot_idx",
    "offers_null_snapshot_idx",
    "ad_events_null_snapshot_idx",
];

/// What the service role must be able to do.
const SERVICE_MUST: [&str; 6] = [
    "SELECT ON me_file_tags",
    "INSERT ON target_populations",
    "DELETE ON target_populations",
    "UPDATE (matching_tags_snapshot) ON offers",
    "UPDATE (population_status) ON targets",
    "INSERT ON apalis.jobs",
];

/// What it must not.
const SERVICE_MUST_NOT: [&str; 7] = [
    "UPDATE ON me_file_tags",
    "DELETE ON me_files",
    "UPDATE (media_run_id) ON offers",
    "DELETE ON offers",
    "UPDATE (title) ON targets",
    "SELECT (offer_amt) ON offers",
    "SELECT ON campaigns",
];

/// A waiting job older than this is a backlog worth a look.
const BACKLOG_SECS: f64 = 300.0;

fn check(name: &'static str, ok: bool, found: String, fix: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        found,
        fix: if ok { String::new() } else { fix.into() },
    }
}

/// Runs every check; the caller exits 0 only when all hold.
pub async fn doctor(db: &Db, options: &DoctorOptions) -> Result<Vec<Check>, JobError> {
    let mut checks = Vec::new();
    let pending = db.pending_migrations().await?;
    checks.push(check(
        "migrations",
        pending.is_empty(),
        if pending.is_empty() {
            "all applied".into()
        } else {
            format!("{} pending: {}", pending.len(), pending.join(", "))
        },
        "run `migration up` as the migration role",
    ));

    let limits = db.doctor().server_limits().await?;
    let processes = 3 * options.replicas.max(1) as i64;
    let pools = processes * options.pool_per_process as i64;
    let usable = limits.max_connections - limits.superuser_reserved_connections;
    checks.push(check(
        "connections",
        pools <= usable / 2,
        format!(
            "snapline's pools: {pools} ({processes} processes x {}); max_connections {} ({usable} usable)",
            options.pool_per_process, limits.max_connections
        ),
        "keep snapline's pools within half the usable connections (the platform needs the rest): fewer replicas, a smaller database.max_connections, a pooler, or a larger max_connections",
    ));
    let [populate, sync, backfill] = options.concurrency.map(i64::from);
    let locks = options.replicas.max(1) as i64
        * (sync * options.me_files_per_transaction as i64 + populate * 2 + backfill * 2);
    let slots = limits.max_locks_per_transaction
        * (limits.max_connections + limits.max_prepared_transactions);
    checks.push(check(
        "lock table",
        locks <= slots / 4,
        format!(
            "snapline may hold {locks} locks at once; the shared lock table has {slots} slots (max_locks_per_transaction {} x connections)",
            limits.max_locks_per_transaction
        ),
        "keep snapline's locks within a quarter of the lock table: raise max_locks_per_transaction (restart), or lower syncer.me_files_per_transaction or the sync concurrency",
    ));
    checks.push(check(
        "idle in transaction",
        limits.idle_in_transaction_session_timeout_ms > 0,
        format!(
            "idle_in_transaction_session_timeout {} ms in snapline's sessions",
            limits.idle_in_transaction_session_timeout_ms
        ),
        "set database.idle_in_transaction_timeout_secs above 0 (snapline sets it on its sessions) so a job cut off mid-transaction releases its locks",
    ));

    let mut missing = db.doctor().missing_indexes(&REQUIRED_INDEXES).await?;
    if !db
        .doctor()
        .has_unique_index("target_populations", &["target_band_id", "me_file_id"])
        .await?
    {
        missing.push("a unique index on target_populations (target_band_id, me_file_id)".into());
    }
    checks.push(check(
        "indexes",
        missing.is_empty(),
        if missing.is_empty() {
            "all present".into()
        } else {
            format!("missing: {}", missing.join(", "))
        },
        "run `migration up`; an index of the platform's with another name is the same index only when table, method, columns, predicate and uniqueness match",
    ));

    if let Some(role) = &options.service_role {
        let must = db.doctor().role_rights(role, &SERVICE_MUST).await?;
        let must_not = db.doctor().role_rights(role, &SERVICE_MUST_NOT).await?;
        let lacking: Vec<_> = must
            .iter()
            .filter(|(_, held)| !held)
            .map(|(w, _)| w.clone())
            .collect();
        let excess: Vec<_> = must_not
            .iter()
            .filter(|(_, held)| *held)
            .map(|(w, _)| w.clone())
            .collect();
        checks.push(check(
            "service role",
            lacking.is_empty() && excess.is_empty(),
            if lacking.is_empty() && excess.is_empty() {
                format!("{role} has what the jobs need and nothing it must not")
            } else {
                format!("{role} lacks [{}]; holds what it must not [{}]", lacking.join(", "), excess.join(", "))
            },
            "apply deploy/postgres/grants.sql as the migration role, and revoke what grants.sql does not give",
        ));
    }

    let capture: Vec<_> = db.capture().installed().await?;
    let current = capture
        .iter()
        .filter(|t| t.version == repo::CAPTURE_VERSION)
        .count();
    checks.push(check(
        "capture",
        current == repo::CaptureRepo::expected_triggers() && current == capture.len(),
        format!(
            "{current} of {} triggers of version {}; {} of other versions",
            repo::CaptureRepo::expected_triggers(),
            repo::CAPTURE_VERSION,
            capture.len() - current
        ),
        "run `snapctl capture enable` as the migration role",
    ));

    let bridge = db.bridge().state().await?;
    // Only while no bridge takes the platform's hourly backfill: with one on, its next cron
    // insert is taken whatever ran before.
    let bridged = |worker: &String| bridge.version.is_some() && bridge.workers.contains_key(worker);
    let untaken = match &options.hourly_backfill_worker {
        Some(worker) if !bridged(worker) => db.doctor().untaken_oban_jobs(worker, 2).await?,
        _ => None,
    };
    let has_oban = db.doctor().has_oban_jobs().await?;
    checks.push(check(
        "bridge",
        !has_oban || bridge.version == Some(repo::BRIDGE_VERSION),
        match bridge.version {
            Some(v) => format!(
                "version {v} installed, {} worker(s) bridged",
                bridge.workers.len()
            ),
            None if has_oban => "off, and the database has Oban's oban_jobs".into(),
            None => "no Oban table: nothing to bridge".into(),
        },
        "run `snapctl bridge enable` as the migration role",
    ));
    if let (Some(worker), Some(untaken)) = (&options.hourly_backfill_worker, untaken) {
        checks.push(check(
            "platform's hourly backfill",
            untaken == 0,
            format!("{untaken} `{worker}` job(s) of the last 2 hours left to the platform's own workers"),
            "with the bridge on, the platform's cron inserts are taken; otherwise remove the platform's cron entry: snapline's hourly backfill does its work",
        ));
    }

    let mut backlog = Vec::new();
    for queue in crate::queues::ALL {
        let depth = db.queue_jobs().depth(queue).await?;
        if let Some(age) = depth.oldest_waiting_secs.filter(|age| *age > BACKLOG_SECS) {
            backlog.push(format!("{queue}: oldest waiting {age:.0} s"));
        }
    }
    checks.push(check(
        "queue backlog",
        backlog.is_empty(),
        if backlog.is_empty() {
            format!("no job waiting longer than {BACKLOG_SECS:.0} s")
        } else {
            backlog.join("; ")
        },
        "start or scale the services of those queues (`snapctl status`, `snapctl queues list`)",
    ));

    let nulls = db.stats().null_snapshots().await?;
    checks.push(check(
        "NULL snapshots",
        nulls.total() == 0,
        format!(
            "{} populations, {} offers, {} ad_events",
            nulls.target_populations, nulls.offers, nulls.ad_events
        ),
        "run `backfiller enqueue --all` (or `backfiller run`) and check again",
    ));
    Ok(checks)
}

/// The checks as lines for a person: `ok` or `MISS`, what was found, and what to do.
pub fn report(checks: &[Check]) -> String {
    let mut text = String::new();
    for c in checks {
        text.push_str(&format!(
            "{:<4} {:<28} {}\n",
            if c.ok { "ok" } else { "MISS" },
            c.name,
            crate::status::printable(&c.found)
        ));
        if !c.ok {
            text.push_str(&format!("     {:<28} -> {}\n", "", c.fix));
        }
    }
    let missed = checks.iter().filter(|c| !c.ok).count();
    text.push_str(&if missed == 0 {
        "all checks hold: ready to switch over\n".to_owned()
    } else {
        format!("{missed} check(s) missed\n")
    });
    text
}

//! What every benchmark shares: fresh databases, seeding, child processes, queue waits.

use anyhow::{Context, bail};
use repo::Db;
use sqlx::Connection;
use std::process::Command;
use std::time::{Duration, Instant};
use synth::SeedOptions;

/// Runs `statements` in order on the server's `postgres` database.
async fn on_server(server: &str, statements: &[String]) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("connecting to {server}"))?;
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut admin)
            .await
            .with_context(|| format!("running `{sql}`"))?;
    }
    Ok(())
}

/// A new, empty database `name`, dropped first if it exists; returns its URL.
pub(crate) async fn fresh_database(server: &str, name: &str) -> anyhow::Result<String> {
    on_server(
        server,
        &[
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ],
    )
    .await?;
    Ok(format!("{server}/{name}"))
}

/// A new database `name`, a file-for-file copy of `template` (which nothing may be
/// connected to), dropped first if it exists; returns its URL.
pub(crate) async fn database_from_template(
    server: &str,
    name: &str,
    template: &str,
) -> anyhow::Result<String> {
    on_server(
        server,
        &[
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            // FILE_COPY: the files are copied on disk, none of their pages pass through
            // shared buffers (WAL_LOG, the default, would leave the last copy made warm)
            format!("CREATE DATABASE {name} TEMPLATE {template} STRATEGY = FILE_COPY"),
        ],
    )
    .await?;
    Ok(format!("{server}/{name}"))
}

/// Drops database `name` if it exists.
pub(crate) async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    on_server(
        server,
        &[format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")],
    )
    .await
}

/// A command running the release binary `name` beside this one, without the bench's own
/// `SNAPLINE_BENCH_PG` (a `SNAPLINE_*` variable the binary's settings would refuse).
pub(crate) fn sibling(name: &str) -> anyhow::Result<Command> {
    let path = std::env::current_exe()?.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p {name})",
            path.display()
        );
    }
    let mut command = Command::new(path);
    command.env_remove("SNAPLINE_BENCH_PG");
    Ok(command)
}

/// Runs a child to completion; returns (stdout, wall time, peak RSS in KiB), or an error
/// with its stderr when it fails.
pub(crate) fn run_child(command: Command) -> anyhow::Result<(String, Duration, u64)> {
    let (output, elapsed, peak) = run_child_accepting(command, &[0])?;
    Ok((
        String::from_utf8_lossy(&output.stdout).into_owned(),
        elapsed,
        peak,
    ))
}

/// Runs a child to completion whatever its exit code; returns its output, wall time and
/// peak RSS in KiB, or an error with its stderr when it exits with a code `accepted` does
/// not hold ([`run_child`]: success only). The peak is the child's own `VmHWM`, sampled until
/// it exits (rusage would also count the memory the child shared with this process between
/// fork and exec).
pub(crate) fn run_child_accepting(
    mut command: Command,
    accepted: &[i32],
) -> anyhow::Result<(std::process::Output, Duration, u64)> {
    let started = Instant::now();
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let sampler = peak_rss_sampler(child.id());
    let output = child.wait_with_output()?;
    let elapsed = started.elapsed();
    let peak = sampler.join().unwrap_or(0);
    if !output.status.code().is_some_and(|c| accepted.contains(&c)) {
        bail!(
            "{:?} failed: {}",
            command,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((output, elapsed, peak))
}

/// `snapctl audit --json` on `url` (exit 0: no drift, 1: drift): the report, wall time,
/// peak RSS in KiB and exit code.
pub(crate) fn snapctl_audit(
    url: &str,
) -> anyhow::Result<(serde_json::Value, Duration, u64, Option<i32>)> {
    let mut audit = sibling("snapctl")?;
    audit
        .args(["audit", "--json"])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn");
    let (output, elapsed, peak) = run_child_accepting(audit, &[0, 1])?;
    let report = serde_json::from_slice(&output.stdout).map_err(|e| {
        anyhow::anyhow!(
            "snapctl audit printed no report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    Ok((report, elapsed, peak, output.status.code()))
}

/// A thread sampling process `pid`'s peak RSS (`VmHWM`, KiB) until it exits; join it for
/// the figure.
pub(crate) fn peak_rss_sampler(pid: u32) -> std::thread::JoinHandle<u64> {
    let status_file = format!("/proc/{pid}/status");
    std::thread::spawn(move || {
        let mut peak = 0u64;
        while let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
            {
                peak = peak.max(kib);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    })
}

pub(crate) async fn wait_until_drained(
    db: &Db,
    queue: &str,
    expected: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let counts = db.queue_jobs().count_by_status(queue).await?;
        let done: i64 = counts
            .iter()
            .filter(|(s, _)| s == "Done")
            .map(|(_, n)| n)
            .sum();
        let stuck: Vec<_> = counts
            .iter()
            .filter(|(s, _)| s == "Killed" || s == "Failed")
            .collect();
        if !stuck.is_empty() {
            bail!("syncs failed: {stuck:?}");
        }
        if done as usize >= expected {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("syncs did not finish: {counts:?}");
        }
        // Counting by status reads the whole queue table: polling it often would take CPU
        // from the syncer being measured. The figures come from the jobs' own timestamps.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Migrates `db` and seeds it: the one seeding step of every benchmark.
pub(crate) async fn seed(db: &Db, options: SeedOptions) -> anyhow::Result<synth::SeedReport> {
    db.migrate().await?;
    let seeded = synth::seed(db, &options, |_, _| {}).await?;
    eprintln!(
        "seeded {} me_files ({} tags), {} targets in {:.1}s",
        options.me_files,
        seeded.me_file_tags,
        options.targets,
        seeded.elapsed.as_secs_f64()
    );
    Ok(seeded)
}

pub(crate) async fn seed_and_populate(
    db: &Db,
    me_files: u64,
    targets: usize,
) -> anyhow::Result<()> {
    seed(
        db,
        SeedOptions {
            me_files,
            targets,
            legacy_share: 0.0,
            ..SeedOptions::default()
        },
    )
    .await?;
    let started = Instant::now();
    let mut members = 0;
    for target in db.targets().all().await? {
        let summary = jobs::populate_target::populate_target(
            db,
            target.id,
            &jobs::populate_target::PopulateOptions::default(),
        )
        .await?;
        members += summary.inserted;
    }
    eprintln!(
        "populated {targets} targets ({members} rows) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // Fresh statistics, as autovacuum would have them in production after such a load.
    db.bulk().vacuum_analyze().await?;
    Ok(())
}

/// `syncer serve` on `url`, with `synchronous_commit` as deployed
/// (deploy/kubernetes/syncer.yaml: `off`) unless the caller's environment says otherwise;
/// returns the child and that setting.
///
/// `through`: a transaction-mode pooler's `host:port` in front of `url`'s server, which the
/// syncer then connects to instead, with `database.pooler = "transaction"`.
pub(crate) fn spawn_syncer(
    url: &str,
    through: Option<&str>,
) -> anyhow::Result<(std::process::Child, String)> {
    let synchronous_commit =
        std::env::var("SNAPLINE_DATABASE__SYNCHRONOUS_COMMIT").unwrap_or_else(|_| "off".into());
    let mut syncer = sibling("syncer")?;
    syncer
        .arg("serve")
        .env("SNAPLINE_DATABASE__SYNCHRONOUS_COMMIT", &synchronous_commit)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null());
    match through {
        Some(address) => syncer
            .env("DATABASE_URL", with_address(url, address)?)
            .env("SNAPLINE_DATABASE__POOLER", "transaction")
            .env("SNAPLINE_DATABASE__MIGRATE_ON_START", "false"),
        None => syncer.env("DATABASE_URL", url),
    };
    Ok((syncer.spawn()?, synchronous_commit))
}

/// `url` (`postgres://[user@]host:port/db...`) with `address` as its host and port.
fn with_address(url: &str, address: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("not a database URL: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    Ok(format!("{scheme}://{user}{address}{path}"))
}

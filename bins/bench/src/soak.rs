//! `bench soak` (`just soak`): the three services, two replicas each, under platform-shaped
//! writes through change capture while a fault injector kills their processes, terminates
//! their sessions, restarts PostgreSQL once and pauses queues. Then the writers stop, the
//! queues drain, and `snapctl audit` judges: zero drift and no NULL snapshot, or the soak
//! fails. The seed fixes the fault schedule and the writers' choices; both are printed, so a
//! failing run is replayed with `--seed`.

use crate::harness::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repo::{Db, DbOptions};
use std::collections::BTreeMap;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use synth::SeedOptions;
use tokio::sync::Mutex;

pub(crate) struct SoakOptions {
    pub(crate) minutes: f64,
    pub(crate) seed: u64,
    pub(crate) me_files: u64,
    pub(crate) targets: usize,
    /// Platform writes per second.
    pub(crate) writes_per_sec: u64,
    /// Restart the local PostgreSQL cluster once (pg_ctlcluster; needs the right to).
    pub(crate) restart_postgres: bool,
}

const SERVICES: [&str; 3] = ["populator", "syncer", "backfiller"];
const REPLICAS: usize = 2;

/// One fault of the schedule.
#[derive(Clone, Debug, PartialEq)]
enum Fault {
    /// SIGKILL a replica of a service, restarted a second later.
    Kill {
        service: &'static str,
        replica: usize,
    },
    /// `pg_terminate_backend` of every session of snapline's on the database.
    TerminateSessions,
    /// Restart the PostgreSQL server.
    RestartPostgres,
    /// Pause a queue on every replica for a few seconds.
    Pause { queue: &'static str, secs: u64 },
}

impl Fault {
    fn kind(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill -9",
            Fault::TerminateSessions => "sessions terminated",
            Fault::RestartPostgres => "PostgreSQL restarted",
            Fault::Pause { .. } => "queue paused",
        }
    }
}

/// The faults at their second of the run: about one every eight seconds, between 5% and
/// 80% of it, and one restart of PostgreSQL at half time.
fn fault_schedule(rng: &mut ChaCha8Rng, options: &SoakOptions) -> Vec<(f64, Fault)> {
    let total = options.minutes * 60.0;
    let count = ((total / 8.0) as usize).max(4);
    let mut faults: Vec<(f64, Fault)> = (0..count)
        .map(|_| {
            let at = rng.random_range(0.05 * total..0.8 * total);
            let fault = match rng.random_range(0..10) {
                0..=4 => Fault::Kill {
                    service: SERVICES[rng.random_range(0..SERVICES.len())],
                    replica: rng.random_range(0..REPLICAS),
                },
                5..=7 => Fault::TerminateSessions,
                _ => Fault::Pause {
                    queue: jobs::queues::ALL[rng.random_range(0..jobs::queues::ALL.len())],
                    secs: rng.random_range(2..8),
                },
            };
            (at, fault)
        })
        .collect();
    if options.restart_postgres {
        faults.push((0.5 * total, Fault::RestartPostgres));
    }
    faults.sort_by(|a, b| a.0.total_cmp(&b.0));
    faults
}

/// The replicas, restartable.
struct Replicas {
    url: String,
    logs: std::path::PathBuf,
    children: BTreeMap<(&'static str, usize), Child>,
}

impl Replicas {
    fn spawn(&mut self, service: &'static str, replica: usize) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{service}-{replica}.log")))?;
        let child = sibling(service)?
            .arg("serve")
            .env("DATABASE_URL", &self.url)
            .env("RUST_LOG", "warn")
            .env("HOSTNAME", format!("soak-{replica}"))
            .env(
                format!("SNAPLINE_SERVE__{}_HTTP", service.to_uppercase()),
                "",
            )
            .env("SNAPLINE_BACKFILLER__SCHEDULE", "*/20 * * * * *")
            .env("SNAPLINE_SERVE__SHUTDOWN_GRACE_SECS", "2")
            // A killed run's lease lapses in 15 s instead of 120: the drain waits less.
            .env("SNAPLINE_POPULATOR__LEASE_TTL_SECS", "15")
            .env("SNAPLINE_BACKFILLER__LEASE_TTL_SECS", "15")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.children.insert((service, replica), child);
        Ok(())
    }

    fn kill(&mut self, service: &'static str, replica: usize) {
        if let Some(mut child) = self.children.remove(&(service, replica)) {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    fn stop_all(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the writers did, by kind: (committed, failed).
type Writes = BTreeMap<&'static str, (u64, u64)>;

pub(crate) async fn soak(server: &str, options: SoakOptions) -> anyhow::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let schedule = fault_schedule(&mut rng, &options);
    println!(
        "soak: seed {}, {:.1} minutes, {} me_files, {} targets, {} writes/s, {} replicas of each service",
        options.seed,
        options.minutes,
        options.me_files,
        options.targets,
        options.writes_per_sec,
        REPLICAS
    );
    println!("fault schedule (replay: --seed {}):", options.seed);
    for (at, fault) in &schedule {
        println!("  {at:7.1} s  {fault:?}");
    }

    let name = "snapline_soak";
    let url = fresh_database(server, name).await?;
    let db = Db::connect(&DbOptions {
        application_name: Some("soak-platform".to_owned()),
        ..DbOptions::new(url.clone())
    })
    .await?;
    seed(
        &db,
        SeedOptions {
            me_files: options.me_files,
            targets: options.targets,
            legacy_share: 0.05,
            deleted_band_offers: false,
            seed: options.seed,
            ..SeedOptions::default()
        },
    )
    .await?;
    for target in db.targets().all().await? {
        jobs::populate_target::populate_target(&db, target.id, &Default::default()).await?;
    }
    db.capture().enable().await?;
    let logs = std::env::temp_dir().join(format!("snapline-soak-{}", options.seed));
    std::fs::create_dir_all(&logs)?;
    println!("service logs: {}", logs.display());
    let replicas = Arc::new(Mutex::new(Replicas {
        url: url.clone(),
        logs,
        children: BTreeMap::new(),
    }));
    for service in SERVICES {
        for replica in 0..REPLICAS {
            replicas.lock().await.spawn(service, replica)?;
        }
    }

    let started = Instant::now();
    let total = Duration::from_secs_f64(options.minutes * 60.0);
    let writing = Arc::new(AtomicBool::new(true));
    let writer = tokio::spawn(write_like_the_platform(
        db.clone(),
        ChaCha8Rng::seed_from_u64(options.seed.wrapping_add(1)),
        options.writes_per_sec,
        writing.clone(),
    ));
    let mut injected: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut not_injected: Vec<String> = Vec::new();
    let mut resumes: Vec<(f64, &'static str)> = Vec::new();
    for (at, fault) in &schedule {
        sleep_until(started, *at).await;
        resume_due(&db, &mut resumes, started.elapsed().as_secs_f64()).await;
        let mut outcome = inject(&db, &replicas, fault).await;
        for _ in 0..5 {
            // A statement of the injector's own may meet the restart it caused.
            if outcome.is_ok() || matches!(fault, Fault::Kill { .. } | Fault::RestartPostgres) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            outcome = inject(&db, &replicas, fault).await;
        }
        match outcome {
            Ok(()) => {
                *injected.entry(fault.kind()).or_default() += 1;
                if let Fault::Pause { queue, secs } = fault {
                    resumes.push((at + *secs as f64, queue));
                }
            }
            Err(err) => not_injected.push(format!("{at:.1} s {fault:?}: {err}")),
        }
    }
    for (at, queue) in std::mem::take(&mut resumes) {
        sleep_until(started, at).await;
        resume(&db, queue).await;
    }
    sleep_until(started, total.as_secs_f64()).await;
    writing.store(false, Ordering::Release);
    let writes = writer.await??;
    println!(
        "writers stopped after {:.1} s; draining",
        started.elapsed().as_secs_f64()
    );

    // The legacy NULLs and anything a kill left: one more backfill, then every queue empty
    // and no populate running.
    retry(|| {
        jobs::backfill_queue::enqueue(
            &db,
            jobs::backfill_queue::BackfillJob::All(Default::default()),
        )
    })
    .await?;
    let drained = drain(&db).await;
    replicas.lock().await.stop_all();
    let jobs_run = jobs_by_queue(&db).await?;
    println!("\nfaults injected:");
    for (kind, n) in &injected {
        println!("  {kind}: {n}");
    }
    for miss in &not_injected {
        println!("  NOT injected: {miss}");
    }
    println!("platform writes (committed / failed):");
    for (kind, (ok, failed)) in &writes {
        println!("  {kind}: {ok} / {failed}");
    }
    println!("jobs by queue and status:");
    for (queue, counts) in &jobs_run {
        println!("  {queue}: {counts:?}");
    }
    let drained = match drained {
        Ok(drained) => drained,
        Err(err) => {
            for (queue, held) in db.reference().unfinished_jobs().await? {
                println!("  left open in {queue}: {held}");
            }
            anyhow::bail!("{err} (seed {}; service logs above)", options.seed);
        }
    };

    let (report, _, _, exit) = snapctl_audit(&url)?;
    let nulls = db.stats().null_snapshots().await?;
    println!("drained in {:.1} s", drained.as_secs_f64());
    println!(
        "audit: {} me_files, {} targets, drift {} ({}), exit {:?}",
        report["me_files_checked"],
        report["targets_audited"],
        report["drift"]
            .as_object()
            .map_or(0, |d| d.values().filter_map(|v| v.as_u64()).sum::<u64>()),
        report["drift"],
        exit
    );
    println!(
        "NULL snapshots: {} populations, {} offers, {} ad_events",
        nulls.target_populations, nulls.offers, nulls.ad_events
    );
    anyhow::ensure!(
        injected.values().sum::<u64>() == schedule.len() as u64,
        "{} fault(s) of the schedule were not injected",
        schedule.len() as u64 - injected.values().sum::<u64>()
    );
    anyhow::ensure!(
        exit == Some(0),
        "the audit found drift after the soak (seed {}): {}",
        options.seed,
        report["examples"]
    );
    anyhow::ensure!(
        nulls.total() == 0,
        "NULL snapshots left after the soak (seed {})",
        options.seed
    );
    println!("soak passed: zero drift, no NULL snapshot");
    Ok(())
}

async fn sleep_until(started: Instant, at_secs: f64) {
    let due = started + Duration::from_secs_f64(at_secs);
    tokio::time::sleep_until(due.into()).await;
}

/// Retries a database call through a restart of the server.
async fn retry<T, E, F, Fut>(mut call: F) -> anyhow::Result<T>
where
    E: std::fmt::Display + Into<anyhow::Error>,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempts = 0;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(err) if attempts < 30 => {
                attempts += 1;
                eprintln!("soak: {err} (retrying)");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

async fn resume(db: &Db, queue: &'static str) {
    let _ = retry(|| jobs::admin::resume_queue(db, queue)).await;
}

async fn resume_due(db: &Db, resumes: &mut Vec<(f64, &'static str)>, now: f64) {
    let due: Vec<_> = resumes
        .iter()
        .filter(|(at, _)| *at <= now)
        .copied()
        .collect();
    resumes.retain(|(at, _)| *at > now);
    for (_, queue) in due {
        resume(db, queue).await;
    }
}

async fn inject(db: &Db, replicas: &Mutex<Replicas>, fault: &Fault) -> anyhow::Result<()> {
    match fault {
        Fault::Kill { service, replica } => {
            replicas.lock().await.kill(service, *replica);
            tokio::time::sleep(Duration::from_secs(1)).await;
            replicas.lock().await.spawn(service, *replica)?;
        }
        Fault::TerminateSessions => {
            let pool = db.pg_pool().expect("the soak runs on PostgreSQL");
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name LIKE 'snapline-%'",
            )
            .execute(pool)
            .await?;
        }
        Fault::RestartPostgres => {
            let version = std::fs::read_dir("/etc/postgresql")?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .max()
                .ok_or_else(|| anyhow::anyhow!("no cluster in /etc/postgresql"))?;
            let status = tokio::task::spawn_blocking(move || {
                std::process::Command::new("pg_ctlcluster")
                    .args(["--skip-systemctl-redirect", &version, "main", "restart"])
                    .status()
            })
            .await??;
            anyhow::ensure!(status.success(), "pg_ctlcluster restart failed");
        }
        Fault::Pause { queue, .. } => {
            jobs::admin::pause_queue(db, queue).await?;
        }
    }
    Ok(())
}

/// Waits until no job of any queue waits or runs and no target is `populating`; how long
/// it took.
async fn drain(db: &Db) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let open = async {
            let mut open = 0i64;
            for queue in jobs::queues::ALL {
                for (status, n) in db.queue_jobs().count_by_status(queue).await? {
                    if !matches!(status.as_str(), "Done" | "Killed") {
                        open += n;
                    }
                }
            }
            let populating = db
                .stats()
                .targets_by_status()
                .await?
                .into_iter()
                .filter(|(s, _)| s == "populating")
                .map(|(_, n)| n)
                .sum::<i64>();
            Ok::<i64, repo::RepoError>(open + populating)
        };
        // An error (the server restarting) is one more wait.
        if let Ok(0) = open.await {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the queues did not drain within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn jobs_by_queue(db: &Db) -> anyhow::Result<BTreeMap<&'static str, Vec<(String, i64)>>> {
    let mut all = BTreeMap::new();
    for queue in jobs::queues::ALL {
        all.insert(queue, db.queue_jobs().count_by_status(queue).await?);
    }
    Ok(all)
}

/// The platform's writes at `per_sec`, chosen by `rng`, until `writing` is cleared: tag
/// value edits, tags added and deleted, registrations, trait-group edits, a bulk "age
/// rollover" every 20 s, and a target deleted twice in the run. A write that fails (a
/// restart) rolled back: nothing to sync, only counted.
async fn write_like_the_platform(
    db: Db,
    mut rng: ChaCha8Rng,
    per_sec: u64,
    writing: Arc<AtomicBool>,
) -> anyhow::Result<Writes> {
    let pool = db.pg_pool().expect("the soak runs on PostgreSQL").clone();
    let mut writes = Writes::new();
    let interval = Duration::from_secs_f64(1.0 / per_sec.max(1) as f64);
    let max_me_file: i64 = sqlx::query_scalar("SELECT MAX(id)::bigint FROM me_files")
        .fetch_one(&pool)
        .await?;
    let children: Vec<i64> = sqlx::query_scalar(
        "SELECT id::bigint FROM traits WHERE parent_trait_id IS NOT NULL ORDER BY id",
    )
    .fetch_all(&pool)
    .await?;
    let groups: Vec<i64> = sqlx::query_scalar("SELECT id::bigint FROM trait_groups ORDER BY id")
        .fetch_all(&pool)
        .await?;
    let started = Instant::now();
    let mut next_rollover = 20.0;
    let mut deletions_left = 2;
    let mut n: u64 = 0;
    while writing.load(Ordering::Acquire) {
        n += 1;
        let me_file = rng.random_range(1..=max_me_file);
        let child = children[rng.random_range(0..children.len())];
        let elapsed = started.elapsed().as_secs_f64();
        let (kind, result) = if elapsed >= next_rollover {
            next_rollover += 20.0;
            let sql = "UPDATE me_file_tags SET tag_value = COALESCE(tag_value, '') || '+', modified_date = now() WHERE trait_id = $1";
            (
                "bulk age rollover",
                sqlx::query(sql)
                    .bind(child)
                    .execute(&pool)
                    .await
                    .map(|_| ()),
            )
        } else if deletions_left > 0 && n.is_multiple_of(1_500) {
            deletions_left -= 1;
            ("target deleted", delete_a_target(&pool).await)
        } else {
            match rng.random_range(0..100) {
                0..=49 => {
                    let sql = "UPDATE me_file_tags SET tag_value = $2, modified_date = now() \
                               WHERE id = (SELECT id FROM me_file_tags WHERE me_file_id = $1 ORDER BY id LIMIT 1)";
                    let value = format!("v{}", rng.random_range(0..1_000));
                    (
                        "tag value edited",
                        sqlx::query(sql)
                            .bind(me_file)
                            .bind(value)
                            .execute(&pool)
                            .await
                            .map(|_| ()),
                    )
                }
                50..=69 => {
                    let sql = "INSERT INTO me_file_tags (me_file_id, trait_id, tag_value) VALUES ($1, $2, 'soak')";
                    (
                        "tag added",
                        sqlx::query(sql)
                            .bind(me_file)
                            .bind(child)
                            .execute(&pool)
                            .await
                            .map(|_| ()),
                    )
                }
                70..=84 => {
                    let sql = "DELETE FROM me_file_tags WHERE id = (SELECT MAX(id) FROM me_file_tags WHERE me_file_id = $1)";
                    (
                        "tag deleted",
                        sqlx::query(sql)
                            .bind(me_file)
                            .execute(&pool)
                            .await
                            .map(|_| ()),
                    )
                }
                85..=94 => ("registration", register(&pool, &children, &mut rng).await),
                _ => {
                    let group = groups[rng.random_range(0..groups.len())];
                    let result = if rng.random_bool(0.5) {
                        sqlx::query("INSERT INTO trait_group_traits (trait_group_id, trait_id) VALUES ($1, $2)")
                            .bind(group)
                            .bind(child)
                            .execute(&pool)
                            .await
                    } else {
                        sqlx::query("DELETE FROM trait_group_traits WHERE id = (SELECT MAX(id) FROM trait_group_traits WHERE trait_group_id = $1)")
                            .bind(group)
                            .execute(&pool)
                            .await
                    };
                    ("trait group edited", result.map(|_| ()))
                }
            }
        };
        let entry = writes.entry(kind).or_default();
        match result {
            Ok(()) => entry.0 += 1,
            Err(_) => entry.1 += 1,
        }
        tokio::time::sleep(interval).await;
    }
    Ok(writes)
}

/// A new me_file with three tags, in one transaction.
async fn register(
    pool: &sqlx::PgPool,
    children: &[i64],
    rng: &mut ChaCha8Rng,
) -> Result<(), sqlx::Error> {
    let traits: Vec<i64> = (0..3)
        .map(|_| children[rng.random_range(0..children.len())])
        .collect();
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO me_files (display_name) VALUES ('soak') RETURNING id::bigint",
    )
    .fetch_one(&mut *tx)
    .await?;
    for t in traits {
        sqlx::query(
            "INSERT INTO me_file_tags (me_file_id, trait_id, tag_value) VALUES ($1, $2, 'new')",
        )
        .bind(id)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Deletes the target with the most bands as the platform does: its bands' group links,
/// its bands, the target, in one transaction.
async fn delete_a_target(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let target: Option<i64> = sqlx::query_scalar(
        "SELECT target_id::bigint FROM target_bands GROUP BY target_id ORDER BY COUNT(*) DESC, target_id LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(target) = target {
        for sql in [
            "DELETE FROM target_band_trait_groups WHERE target_band_id IN (SELECT id FROM target_bands WHERE target_id = $1)",
            "DELETE FROM target_bands WHERE target_id = $1",
            "DELETE FROM targets WHERE id = $1",
        ] {
            sqlx::query(sql).bind(target).execute(&mut *tx).await?;
        }
    }
    tx.commit().await
}

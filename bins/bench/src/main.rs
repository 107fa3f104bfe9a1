//! `bench`: seeds a fresh PostgreSQL database, runs a snapline binary on it as a user would
//! (a child process, release build), times the same result computed by one set-based SQL
//! statement inside PostgreSQL, checks both agree row for row, and prints the figures.
//!
//! Example: cargo build --release -p bench -p populator &&
//!          target/release/bench populate --me-files 1000000

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use repo::{Db, DbOptions};
use sqlx::Connection;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};
use synth::SeedOptions;

#[derive(Parser)]
#[command(name = "bench", about = "snapline benchmarks on PostgreSQL")]
struct Cli {
    /// A PostgreSQL server and role that may create databases (no database name).
    #[arg(
        long,
        env = "SNAPLINE_BENCH_PG",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    server: String,
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// `populator run` on the broad target (most me_files match its outer band) against one
    /// `INSERT ... SELECT`. Example: bench populate --me-files 100000 --me-files 1000000
    Populate {
        /// Data set sizes to measure, each in its own fresh database.
        #[arg(long, default_values_t = [100_000u64])]
        me_files: Vec<u64>,
        /// Me_files per populator batch (default: the configured populator.batch_size).
        #[arg(long)]
        batch_size: Option<u64>,
        /// The target to populate (1 is the broad nested target).
        #[arg(long, default_value_t = 1)]
        target: i64,
    },
    /// `backfiller run` (a child process) on legacy NULL snapshots in all three tables against
    /// the same backfill as set-based SQL on copies of the tables, plus `EXPLAIN` of the
    /// NULL-finding queries. Example: bench backfill --me-files 1000000
    Backfill {
        #[arg(long, default_value_t = 1_000_000)]
        me_files: u64,
        /// Rows per backfiller batch (default: backfiller.batch_size).
        #[arg(long)]
        batch_size: Option<u64>,
    },
    /// `syncer serve` (a child process, configured concurrency) on populated targets: a burst
    /// of syncs pushed at once (throughput), then syncs pushed one by one at a steady rate with
    /// the plain-SQL push other services use (latency from push to commit).
    /// Example: bench sync --me-files 1000000 --targets 100 --syncs 10000
    Sync {
        #[arg(long, default_value_t = 1_000_000)]
        me_files: u64,
        /// Targets, all populated before the syncs.
        #[arg(long, default_value_t = 100)]
        targets: usize,
        /// Syncs of distinct random me_files in the burst.
        #[arg(long, default_value_t = 10_000)]
        syncs: usize,
        /// Syncs pushed one by one for the latency figures, and their rate per second.
        #[arg(long, default_value_t = 2_000)]
        paced: usize,
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Reuse the database of an earlier run (already seeded and populated).
        #[arg(long)]
        reuse: bool,
        /// What changed before each sync: one tag value shown in at least one of the
        /// me_file's snapshots (the usual event), or every tag value of the me_file.
        #[arg(long, value_enum, default_value_t = TagEdit::One)]
        edit: TagEdit,
    },
    /// The cost of change capture to the platform's writers: single-row tag writes from
    /// several connections and one bulk update, with capture off and on; then, with capture
    /// on and `syncer serve` running, tag writes at a steady rate and the lag from each
    /// write's commit to its synced row. Example: bench capture --me-files 200000
    Capture {
        #[arg(long, default_value_t = 200_000)]
        me_files: u64,
        /// Connections writing at once, and single-row writes in all.
        #[arg(long, default_value_t = 8)]
        writers: usize,
        #[arg(long, default_value_t = 20_000)]
        writes: u64,
        /// Rows of the bulk update.
        #[arg(long, default_value_t = 100_000)]
        bulk: u64,
        /// Paced writes for the lag, and their rate per second.
        #[arg(long, default_value_t = 2_000)]
        paced: usize,
        #[arg(long, default_value_t = 200)]
        rate: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    runtime::run_main(async move {
        match cli.command {
            Bench::Populate {
                me_files,
                batch_size,
                target,
            } => {
                println!(
                    "| me_files | rows | populator | SQL INSERT ... SELECT | ratio | populator peak RSS |"
                );
                println!("|---:|---:|---:|---:|---:|---:|");
                for n in me_files {
                    bench_populate(&cli.server, n, batch_size, target).await?;
                }
                Ok(())
            }
            Bench::Backfill {
                me_files,
                batch_size,
            } => bench_backfill(&cli.server, me_files, batch_size).await,
            Bench::Sync {
                me_files,
                targets,
                syncs,
                paced,
                rate,
                reuse,
                edit,
            } => {
                bench_sync(
                    &cli.server,
                    me_files,
                    targets,
                    SyncLoad {
                        syncs,
                        paced,
                        rate,
                        edit,
                    },
                    reuse,
                )
                .await
            }
            Bench::Capture {
                me_files,
                writers,
                writes,
                bulk,
                paced,
                rate,
            } => {
                bench_capture(
                    &cli.server,
                    me_files,
                    CaptureLoad {
                        writers,
                        writes,
                        bulk,
                        paced,
                        rate,
                    },
                )
                .await
            }
        }
    })
}

async fn fresh_database(server: &str, name: &str) -> anyhow::Result<String> {
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("connecting to {server}"))?;
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await?;
    }
    Ok(format!("{server}/{name}"))
}

/// The release binary `name` beside this one.
/// A command running the release binary `name` beside this one, without the bench's own
/// `SNAPLINE_BENCH_PG` (a `SNAPLINE_*` variable the binary's settings would refuse).
fn sibling(name: &str) -> anyhow::Result<Command> {
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

/// Runs a child to completion; returns (stdout, wall time, peak RSS in KiB). The peak is
/// the child's own `VmHWM`, sampled until it exits (rusage would also count the memory the
/// child shared with this process between fork and exec).
fn run_child(mut command: Command) -> anyhow::Result<(String, Duration, u64)> {
    let started = Instant::now();
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let status_file = format!("/proc/{}/status", child.id());
    let sampler = std::thread::spawn(move || {
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
    });
    let output = child.wait_with_output()?;
    let elapsed = started.elapsed();
    let peak = sampler.join().unwrap_or(0);
    if !output.status.success() {
        bail!(
            "{:?} failed: {}",
            command,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((
        String::from_utf8_lossy(&output.stdout).into_owned(),
        elapsed,
        peak,
    ))
}

async fn bench_populate(
    server: &str,
    me_files: u64,
    batch_size: Option<u64>,
    target: i64,
) -> anyhow::Result<()> {
    let url = fresh_database(server, &format!("snapline_bench_populate_{me_files}")).await?;
    let db = Db::connect(&DbOptions::new(url.clone())).await?;
    db.migrate().await?;
    let seeded = synth::seed(
        &db,
        &SeedOptions {
            me_files,
            legacy_share: 0.0,
            ..SeedOptions::default()
        },
        |_, _| {},
    )
    .await?;
    eprintln!(
        "seeded {me_files} me_files ({} tags) in {:.1}s",
        seeded.me_file_tags,
        seeded.elapsed.as_secs_f64()
    );

    db.bulk().checkpoint().await?;
    let mut populator = sibling("populator")?;
    populator
        .args(["run", "--target", &target.to_string()])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn");
    if let Some(batch_size) = batch_size {
        populator.args(["--batch-size", &batch_size.to_string()]);
    }
    let (summary, populator_time, rss_kib) = run_child(populator)?;
    eprintln!("{}", summary.trim());

    let reference = db.reference();
    reference
        .create_population_table("reference_populations")
        .await?;
    db.bulk().checkpoint().await?;
    let started = Instant::now();
    let rows = reference
        .populate_target_into("reference_populations", target)
        .await?;
    let sql_time = started.elapsed();
    let differences = reference
        .population_differences("reference_populations", target)
        .await?;
    if differences != 0 {
        bail!("populator and SQL disagree on {differences} rows");
    }
    println!(
        "| {me_files} | {rows} | {:.2} s | {:.2} s | {:.2} | {:.0} MB |",
        populator_time.as_secs_f64(),
        sql_time.as_secs_f64(),
        populator_time.as_secs_f64() / sql_time.as_secs_f64(),
        rss_kib as f64 / 1024.0
    );
    db.close().await;
    Ok(())
}

async fn wait_until_drained(db: &Db, queue: &str, expected: usize) -> anyhow::Result<()> {
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

/// The tag edits before a sync benchmark's syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TagEdit {
    One,
    All,
}

/// The syncs of a sync benchmark.
struct SyncLoad {
    syncs: usize,
    paced: usize,
    rate: u64,
    edit: TagEdit,
}

async fn bench_sync(
    server: &str,
    me_files: u64,
    targets: usize,
    load: SyncLoad,
    reuse: bool,
) -> anyhow::Result<()> {
    let SyncLoad {
        syncs,
        paced,
        rate,
        edit,
    } = load;
    use rand::SeedableRng;
    use rand::seq::index::sample;
    let name = format!("snapline_bench_sync_{me_files}_{targets}");
    let url = if reuse {
        format!("{server}/{name}")
    } else {
        fresh_database(server, &name).await?
    };
    let db = Db::connect(&DbOptions::new(url.clone())).await?;
    if reuse {
        db.queue_jobs()
            .delete_finished(jobs::sync_me_file::QUEUE)
            .await?;
    } else {
        seed_and_populate(&db, me_files, targets).await?;
    }
    // Members of at least one target, so every sync rewrites snapshots and its commit shows
    // in the rows' updated_at.
    let members = db.reference().member_me_files().await?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let chosen: Vec<i64> = sample(&mut rng, members.len(), (syncs + paced).min(members.len()))
        .into_iter()
        .map(|i| members[i])
        .collect();
    let (burst, steady) = chosen.split_at(syncs.min(chosen.len()));
    // A new value every run, so that a rerun (--reuse) has snapshots to rewrite too.
    let round = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let edited = match edit {
        TagEdit::One => db.reference().touch_one_tag(&chosen, round).await?,
        TagEdit::All => db.reference().touch_tags(&chosen, round).await?,
    };
    eprintln!(
        "edited {edited} tags of {} me_files ({edit:?})",
        chosen.len()
    );
    db.bulk().checkpoint().await?;

    // Burst: every job is waiting before the syncer starts; time until all are done.
    let queue = jobs::sync_me_file::QUEUE;
    let started = Instant::now();
    for me_file in burst {
        db.queue_jobs()
            .push_plain_sql(queue, &format!("{{\"me_file_id\":{me_file}}}"), 5)
            .await?;
    }
    let pushed = started.elapsed();
    let concurrency =
        std::env::var("SNAPLINE_QUEUES__SYNC_ME_FILE__CONCURRENCY").unwrap_or_else(|_| "4".into());
    let started = Instant::now();
    let (mut syncer, synchronous_commit) = spawn_syncer(&url)?;
    wait_until_drained(&db, queue, burst.len()).await?;
    // From the first job taken to the last one done: the syncer's start-up is not counted.
    let burst_time = Duration::from_secs_f64(db.queue_jobs().latency(queue).await?.span_secs);
    eprintln!(
        "burst drained {:.2}s after the syncer was started",
        started.elapsed().as_secs_f64()
    );
    db.queue_jobs().delete_finished(queue).await?;

    // Steady: one push every 1/rate s; latency from push to commit.
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    for (i, me_file) in steady.iter().enumerate() {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        db.queue_jobs()
            .push_plain_sql(queue, &format!("{{\"me_file_id\":{me_file}}}"), 5)
            .await?;
    }
    wait_until_drained(&db, queue, steady.len()).await?;
    let latency = db.queue_jobs().latency(queue).await?;
    let commit = db.reference().sync_commit_latency().await?;
    let _ = syncer.kill();
    let _ = syncer.wait();

    println!(
        "| me_files | targets | edit | concurrency | synchronous_commit | burst (pushed in) | drained in | throughput | paced syncs | push to commit p50 / p99 / max | push to taken p50 / p99 | push to ack p50 / p99 |"
    );
    println!("|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {me_files} | {targets} | {edit:?} | {concurrency} | {synchronous_commit} | {} ({:.2} s) | {:.2} s | {:.0} syncs/s | {} at {rate}/s | {:.1} / {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.1} / {:.1} ms |",
        burst.len(),
        pushed.as_secs_f64(),
        burst_time.as_secs_f64(),
        burst.len() as f64 / burst_time.as_secs_f64(),
        commit.committed,
        commit.p50_ms,
        commit.p99_ms,
        commit.max_ms,
        commit.pickup_p50_ms,
        commit.pickup_p99_ms,
        latency.p50_ms,
        latency.p99_ms,
    );
    db.close().await;
    Ok(())
}

/// `syncer serve` on `url`, with `synchronous_commit` as deployed
/// (deploy/kubernetes/syncer.yaml: `off`) unless the caller's environment says otherwise;
/// returns the child and that setting.
fn spawn_syncer(url: &str) -> anyhow::Result<(std::process::Child, String)> {
    let synchronous_commit =
        std::env::var("SNAPLINE_DATABASE__SYNCHRONOUS_COMMIT").unwrap_or_else(|_| "off".into());
    let syncer = sibling("syncer")?
        .arg("serve")
        .env("DATABASE_URL", url)
        .env("SNAPLINE_DATABASE__SYNCHRONOUS_COMMIT", &synchronous_commit)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    Ok((syncer, synchronous_commit))
}

async fn seed_and_populate(db: &Db, me_files: u64, targets: usize) -> anyhow::Result<()> {
    db.migrate().await?;
    let seeded = synth::seed(
        db,
        &SeedOptions {
            me_files,
            targets,
            legacy_share: 0.0,
            ..SeedOptions::default()
        },
        |_, _| {},
    )
    .await?;
    eprintln!(
        "seeded {me_files} me_files, {targets} targets in {:.1}s",
        seeded.elapsed.as_secs_f64()
    );
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
    db.bulk().analyze().await?;
    Ok(())
}

async fn bench_backfill(
    server: &str,
    me_files: u64,
    batch_size: Option<u64>,
) -> anyhow::Result<()> {
    let url = fresh_database(server, &format!("snapline_bench_backfill_{me_files}")).await?;
    let db = Db::connect(&DbOptions::new(url.clone())).await?;
    db.migrate().await?;
    // Every member of the broad target is a legacy row: NULL population, offer, ad_event.
    let seeded = synth::seed(
        &db,
        &SeedOptions {
            me_files,
            targets: 1,
            legacy_share: 1.0,
            ..SeedOptions::default()
        },
        |_, _| {},
    )
    .await?;
    eprintln!(
        "seeded {me_files} me_files: {} NULL populations, {} NULL offers, {} NULL ad_events in {:.1}s",
        seeded.legacy_populations,
        seeded.offers,
        seeded.ad_events,
        seeded.elapsed.as_secs_f64()
    );
    for (query, plan) in db.backfill().explain_null_queries(5_000).await? {
        println!("```\nEXPLAIN {query}\n{plan}\n```");
    }
    let reference = db.reference();
    for (table, copy) in [
        ("target_populations", "ref_populations"),
        ("offers", "ref_offers"),
        ("ad_events", "ref_ad_events"),
    ] {
        reference.copy_table(table, copy).await?;
    }

    db.bulk().checkpoint().await?;
    let mut backfiller = sibling("backfiller")?;
    backfiller
        .arg("run")
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn");
    if let Some(batch_size) = batch_size {
        backfiller.args(["--batch-size", &batch_size.to_string()]);
    }
    let (summary, backfiller_time, rss_kib) = run_child(backfiller)?;
    eprintln!("{}", summary.trim());

    db.bulk().checkpoint().await?;
    let started = Instant::now();
    let sql_rows = reference
        .backfill_in_sql("ref_populations", "ref_offers", "ref_ad_events")
        .await?;
    let sql_time = started.elapsed();
    for (table, copy) in [
        ("target_populations", "ref_populations"),
        ("offers", "ref_offers"),
        ("ad_events", "ref_ad_events"),
    ] {
        let differences = reference.snapshot_differences(table, copy).await?;
        if differences != 0 {
            bail!("backfiller and SQL disagree on {differences} rows of {table}");
        }
    }
    let rows = seeded.legacy_populations + seeded.offers + seeded.ad_events;
    println!(
        "| me_files | NULL rows | backfiller | rows/s | SQL UPDATEs | rows/s | ratio | backfiller peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {me_files} | {rows} | {:.2} s | {:.0} | {:.2} s | {:.0} | {:.2} | {:.0} MB |",
        backfiller_time.as_secs_f64(),
        rows as f64 / backfiller_time.as_secs_f64(),
        sql_time.as_secs_f64(),
        sql_rows as f64 / sql_time.as_secs_f64(),
        backfiller_time.as_secs_f64() / sql_time.as_secs_f64(),
        rss_kib as f64 / 1024.0
    );
    db.close().await;
    Ok(())
}

/// The writes of a capture benchmark.
struct CaptureLoad {
    writers: usize,
    writes: u64,
    bulk: u64,
    paced: usize,
    rate: u64,
}

/// Single-row tag writes from `writers` connections; returns writes per second.
async fn single_row_writes(
    db: &Db,
    tags: &[i64],
    writers: usize,
    value: &str,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in tags.chunks(tags.len().div_ceil(writers.max(1)).max(1)) {
        let (db, chunk, value) = (db.clone(), chunk.to_vec(), value.to_owned());
        tasks.spawn(async move {
            for id in chunk {
                db.reference().set_tag_value(id, &value).await?;
            }
            Ok::<_, repo::RepoError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(tags.len() as f64 / started.elapsed().as_secs_f64())
}

async fn bench_capture(server: &str, me_files: u64, load: CaptureLoad) -> anyhow::Result<()> {
    use rand::SeedableRng;
    use rand::seq::index::sample;
    let CaptureLoad {
        writers,
        writes,
        bulk,
        paced,
        rate,
    } = load;
    let name = format!("snapline_bench_capture_{me_files}");
    let url = fresh_database(server, &name).await?;
    let db = Db::connect(&DbOptions {
        max_connections: writers as u32 + 2,
        ..DbOptions::new(url.clone())
    })
    .await?;
    seed_and_populate(&db, me_files, 10).await?;
    let queue = jobs::sync_me_file::QUEUE;
    println!(
        "| me_files | capture | single-row writes ({writers} connections) | bulk update of {bulk} rows | sync jobs pushed |"
    );
    println!("|---:|---|---:|---:|---:|");
    for (capture, value) in [(false, "bench off"), (true, "bench on")] {
        if capture {
            db.capture().enable().await?;
        }
        let tags = db.reference().random_tag_ids(writes).await?;
        db.bulk().checkpoint().await?;
        let per_sec = single_row_writes(&db, &tags, writers, value).await?;
        let started = Instant::now();
        let rows = db
            .reference()
            .set_tag_values_in_bulk(bulk, &format!("{value} bulk"))
            .await?;
        let bulk_time = started.elapsed();
        let pushed = db.queue_jobs().count_by_status(queue).await?;
        let pushed: i64 = pushed.iter().map(|(_, n)| n).sum();
        println!(
            "| {me_files} | {} | {per_sec:.0} writes/s | {rows} rows in {:.2} s |  {pushed} |",
            if capture { "on" } else { "off" },
            bulk_time.as_secs_f64()
        );
        db.queue_jobs().delete_all(queue).await?;
    }

    // Lag at a steady rate, capture on, the syncer serving.
    let (mut syncer, synchronous_commit) = spawn_syncer(&url)?;
    let members = db.reference().member_me_files().await?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let chosen: Vec<i64> = sample(&mut rng, members.len(), paced.min(members.len()))
        .into_iter()
        .map(|i| members[i])
        .collect();
    let round = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    for (i, me_file) in chosen.iter().enumerate() {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        // One tag shown in the me_file's snapshots: capture pushes its sync.
        db.reference().touch_one_tag(&[*me_file], round).await?;
    }
    wait_until_drained(&db, queue, chosen.len()).await?;
    let lag = db.reference().sync_commit_latency().await?;
    let _ = syncer.kill();
    let _ = syncer.wait();
    println!();
    println!(
        "| me_files | tag writes | rate | synchronous_commit | write commit to synced row p50 / p99 / max | to taken p50 / p99 |"
    );
    println!("|---:|---:|---:|---|---:|---:|");
    println!(
        "| {me_files} | {} | {rate}/s | {synchronous_commit} | {:.1} / {:.1} / {:.1} ms | {:.1} / {:.1} ms |",
        lag.committed, lag.p50_ms, lag.p99_ms, lag.max_ms, lag.pickup_p50_ms, lag.pickup_p99_ms
    );
    db.close().await;
    Ok(())
}

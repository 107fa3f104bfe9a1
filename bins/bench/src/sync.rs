//! `bench sync`: pushed syncs against the set-based SQL, throughput and latency.

use crate::harness::*;
use repo::{Db, DbOptions};
use std::time::{Duration, Instant};

/// The tag edits before a sync benchmark's syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TagEdit {
    One,
    All,
}

/// The syncs of a sync benchmark.
pub(crate) struct SyncLoad {
    pub(crate) syncs: usize,
    pub(crate) paced: usize,
    pub(crate) rate: u64,
    pub(crate) edit: TagEdit,
    /// A transaction-mode pooler's `host:port` the syncer goes through.
    pub(crate) through: Option<String>,
}

pub(crate) async fn bench_sync(
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
        through,
    } = load;
    use rand::SeedableRng;
    use rand::seq::index::sample;
    let name = format!("snapline_bench_sync_{me_files}_{targets}");
    let url = if reuse {
        format!("{server}/{name}")
    } else {
        fresh_database(server, &name).await?
    };
    // named: its pushes (the platform's, in production) show apart in the server's waits
    let db = Db::connect(&DbOptions {
        application_name: Some("bench-pusher".to_owned()),
        ..DbOptions::new(url.clone())
    })
    .await?;
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
    let (mut syncer, synchronous_commit) = spawn_syncer(&url, through.as_deref())?;
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
    let watch = ServerWatch::start(&url).await?;
    let started = Instant::now();
    for (i, me_file) in steady.iter().enumerate() {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        db.queue_jobs()
            .push_plain_sql(queue, &format!("{{\"me_file_id\":{me_file}}}"), 5)
            .await?;
    }
    wait_until_drained(&db, queue, steady.len()).await?;
    let syncer_server = watch.stop().await?;
    let latency = db.queue_jobs().latency(queue).await?;
    let commit = db.reference().sync_commit_latency().await?;
    let _ = syncer.kill();
    let _ = syncer.wait();

    // The limit: the same syncs as one SQL function call per me_file, from as many
    // connections as the syncer's workers, the same burst then the same pace, after the same
    // edits made again (so that there are snapshots to rewrite).
    let connections: usize = concurrency.parse().unwrap_or(4);
    let limit = SqlSyncLimit::connect(&url, connections, &synchronous_commit).await?;
    db.reference().create_sync_function().await?;
    match edit {
        TagEdit::One => db.reference().touch_one_tag(&chosen, round + 1).await?,
        TagEdit::All => db.reference().touch_tags(&chosen, round + 1).await?,
    };
    db.bulk().checkpoint().await?;
    let sql_burst = limit.burst(burst).await?;
    let watch = ServerWatch::start(&url).await?;
    let sql_paced = limit.paced(steady, interval).await?;
    let sql_server = watch.stop().await?;
    limit.db.close().await;

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
    let sql_throughput = burst.len() as f64 / sql_burst.as_secs_f64();
    let syncer_throughput = burst.len() as f64 / burst_time.as_secs_f64();
    println!();
    println!(
        "| me_files | targets | edit | connections | SQL function burst | throughput | syncer / SQL throughput | paced calls | due to done p50 / p99 / max |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {me_files} | {targets} | {edit:?} | {connections} | {:.2} s | {sql_throughput:.0} syncs/s | {:.2} | {} at {rate}/s | {:.1} / {:.1} / {:.1} ms |",
        sql_burst.as_secs_f64(),
        syncer_throughput / sql_throughput,
        steady.len(),
        percentile(&sql_paced, 0.50),
        percentile(&sql_paced, 0.99),
        percentile(&sql_paced, 1.0),
    );
    println!();
    println!(
        "The syncer connected {}.",
        match &through {
            Some(address) => format!("through the transaction-mode pooler at {address}"),
            None => "directly".to_owned(),
        }
    );
    println!("What the server did during the paced syncs:");
    println!("- syncer: {syncer_server}");
    println!("- SQL function: {sql_server}");
    db.close().await;
    Ok(())
}

/// Tables whose autovacuum and autoanalyze runs a sync can wait on.
const WATCHED_TABLES: [&str; 4] = ["me_file_tags", "target_populations", "offers", "jobs"];

/// Watches the server during one phase: samples what its active backends wait on every
/// [`ServerWatch::EVERY`], and reads its cumulative counters at the start and the end.
struct ServerWatch {
    db: Db,
    before: std::collections::BTreeMap<String, i64>,
    stop: tokio::sync::watch::Sender<bool>,
    sampler: tokio::task::JoinHandle<anyhow::Result<std::collections::BTreeMap<String, i64>>>,
}

/// What a [`ServerWatch`] saw.
struct ServerActivity {
    samples: u64,
    waits: std::collections::BTreeMap<String, i64>,
    counters: Vec<(String, i64)>,
}

impl ServerWatch {
    const EVERY: Duration = Duration::from_millis(5);

    async fn start(url: &str) -> anyhow::Result<Self> {
        let db = Db::connect(&DbOptions {
            max_connections: 2,
            ..DbOptions::new(url)
        })
        .await?;
        let before = db.server_stats().counters(&WATCHED_TABLES).await?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let sampling = db.clone();
        let sampler = tokio::spawn(async move {
            let mut waits = std::collections::BTreeMap::new();
            let mut samples = 0;
            let mut tick = tokio::time::interval(Self::EVERY);
            while !*stopped.borrow_and_update() {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                samples += 1;
                for (wait, n) in sampling.server_stats().active_waits().await? {
                    *waits.entry(wait).or_insert(0) += n;
                }
            }
            waits.insert(String::new(), samples);
            Ok(waits)
        });
        Ok(Self {
            db,
            before,
            stop,
            sampler,
        })
    }

    async fn stop(self) -> anyhow::Result<ServerActivity> {
        let _ = self.stop.send(true);
        let mut waits = self.sampler.await??;
        let samples = waits.remove("").unwrap_or(0) as u64;
        let after = self.db.server_stats().counters(&WATCHED_TABLES).await?;
        self.db.close().await;
        let counters = after
            .into_iter()
            .map(|(name, n)| {
                let change = n - self.before.get(&name).copied().unwrap_or(0);
                (name, change)
            })
            .filter(|(_, change)| *change != 0)
            .collect();
        Ok(ServerActivity {
            samples,
            waits,
            counters,
        })
    }
}

impl std::fmt::Display for ServerActivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut waits: Vec<(&String, &i64)> = self.waits.iter().collect();
        waits.sort_by(|a, b| b.1.cmp(a.1));
        let busy: i64 = waits.iter().map(|w| *w.1).sum();
        write!(
            f,
            "{} samples, {:.2} active backends on average (",
            self.samples,
            busy as f64 / self.samples.max(1) as f64
        )?;
        for (i, (wait, n)) in waits.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(
                f,
                "{sep}{wait} {:.0}%",
                **n as f64 * 100.0 / busy.max(1) as f64
            )?;
        }
        write!(f, "); counters changed: ")?;
        for (i, (name, change)) in self.counters.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} +{change}")?;
        }
        Ok(())
    }
}

/// `snapline_reference_sync` driven from a pool of its own.
struct SqlSyncLimit {
    db: Db,
    connections: usize,
}

impl SqlSyncLimit {
    async fn connect(
        url: &str,
        connections: usize,
        synchronous_commit: &str,
    ) -> anyhow::Result<Self> {
        let level: &'static str = match synchronous_commit {
            "off" => "off",
            "local" => "local",
            "remote_write" => "remote_write",
            "remote_apply" => "remote_apply",
            _ => "on",
        };
        let db = Db::connect(&DbOptions {
            max_connections: connections.max(1) as u32,
            synchronous_commit: Some(level),
            application_name: Some("bench-sql-function".to_owned()),
            ..DbOptions::new(url)
        })
        .await?;
        Ok(Self {
            db,
            connections: connections.max(1),
        })
    }

    /// Syncs every one of `me_files`, each connection taking the next; the wall time.
    async fn burst(&self, me_files: &[i64]) -> anyhow::Result<Duration> {
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let me_files: std::sync::Arc<[i64]> = me_files.into();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.connections {
            let (db, next, me_files) = (self.db.clone(), next.clone(), me_files.clone());
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(me_file) = me_files.get(i) else {
                        return Ok::<(), repo::RepoError>(());
                    };
                    db.reference().sync_in_sql(*me_file).await?;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(started.elapsed())
    }

    /// Syncs `me_files` one every `interval`, at most one per connection at a time; the
    /// milliseconds from each one's due time to its commit.
    async fn paced(&self, me_files: &[i64], interval: Duration) -> anyhow::Result<Vec<f64>> {
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(self.connections));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, me_file) in me_files.iter().copied().enumerate() {
            let due = started + interval * i as u32;
            tokio::time::sleep_until(due.into()).await;
            let (db, slots) = (self.db.clone(), slots.clone());
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await.expect("open semaphore");
                db.reference().sync_in_sql(me_file).await?;
                Ok::<f64, repo::RepoError>(due.elapsed().as_secs_f64() * 1000.0)
            });
        }
        let mut latencies = Vec::with_capacity(me_files.len());
        while let Some(done) = tasks.join_next().await {
            latencies.push(done??);
        }
        latencies.sort_by(f64::total_cmp);
        Ok(latencies)
    }
}

/// The `q` quantile (0..=1) of sorted `values`, nearest rank; 0 when empty.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

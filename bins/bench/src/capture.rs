//! `bench capture`: the cost of change capture on the platform's writes, and its lag.

use crate::harness::*;
use repo::{Db, DbOptions};
use std::time::{Duration, Instant};

/// The writes of a capture benchmark.
pub(crate) struct CaptureLoad {
    pub(crate) writers: usize,
    pub(crate) writes: u64,
    pub(crate) bulk: u64,
    pub(crate) paced: usize,
    pub(crate) rate: u64,
    pub(crate) profile: bool,
}

/// Single-row tag writes from `writers` connections; returns writes per second.
pub(crate) async fn single_row_writes(
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

/// The writers' sessions, as the profile finds them.
const WRITER_APPLICATION: &str = "bench-writer";

/// A fresh database `snapline_bench_<bench>_<me_files>`, seeded and its 10 targets populated,
/// with a pool for `writers` connections writing at once: its URL and pool.
async fn writers_database(
    server: &str,
    bench: &str,
    me_files: u64,
    writers: usize,
) -> anyhow::Result<(String, Db)> {
    let url = fresh_database(server, &format!("snapline_bench_{bench}_{me_files}")).await?;
    let db = Db::connect(&DbOptions {
        max_connections: writers as u32 + 2,
        application_name: Some(WRITER_APPLICATION.to_owned()),
        ..DbOptions::new(url.clone())
    })
    .await?;
    seed_and_populate(&db, me_files, 10).await?;
    Ok((url, db))
}

pub(crate) async fn bench_capture(
    server: &str,
    me_files: u64,
    load: CaptureLoad,
) -> anyhow::Result<()> {
    use rand::SeedableRng;
    use rand::seq::index::sample;
    let CaptureLoad {
        writers,
        writes,
        bulk,
        paced,
        rate,
        profile,
    } = load;
    let (url, db) = writers_database(server, "capture", me_files, writers).await?;
    let queue = jobs::sync_me_file::QUEUE;
    println!(
        "| me_files | capture | single-row writes ({writers} connections) | bulk update of {bulk} rows | me_files captured (outbox rows, or sync jobs pushed) |"
    );
    println!("|---:|---|---:|---:|---:|");
    for (capture, value) in [(false, "bench off"), (true, "bench on")] {
        if capture {
            db.capture().enable().await?;
        }
        let tags = db.reference().random_tag_ids(writes).await?;
        db.bulk().checkpoint().await?;
        let profiling = if profile {
            Some(crate::profile::ServerProfile::start(&url, WRITER_APPLICATION).await?)
        } else {
            None
        };
        let per_sec = single_row_writes(&db, &tags, writers, value).await?;
        if let Some(profiling) = profiling {
            profiling
                .finish(&format!(
                    "single-row writes, capture {}",
                    if capture { "on" } else { "off" }
                ))
                .await?;
        }
        let started = Instant::now();
        let rows = db
            .reference()
            .set_tag_values_in_bulk(bulk, &format!("{value} bulk"))
            .await?;
        let bulk_time = started.elapsed();
        let pushed = db.queue_jobs().count_by_status(queue).await?;
        let pushed: i64 = pushed.iter().map(|(_, n)| n).sum();
        let pushed = pushed as u64 + db.reference().clear_capture_outbox().await?;
        println!(
            "| {me_files} | {} | {per_sec:.0} writes/s | {rows} rows in {:.2} s |  {pushed} |",
            if capture { "on" } else { "off" },
            bulk_time.as_secs_f64()
        );
        db.queue_jobs().delete_all(queue).await?;
    }

    // Lag at a steady rate, capture on, the syncer serving.
    let (mut syncer, synchronous_commit) = spawn_syncer(&url, None)?;
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
    wait_until_drained(&db, queue, 1).await?;
    // Every write synced, or none more for 3 s (a me_file whose touched tag shows in no
    // snapshot keeps its rows' times).
    let (mut last, mut still) = (0, 0);
    let lag = loop {
        let lag = db.reference().write_to_sync_latency(round).await?;
        still = if lag.committed == last { still + 1 } else { 0 };
        last = lag.committed;
        if lag.committed as usize >= chosen.len() || still >= 6 {
            break lag;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = syncer.kill();
    let _ = syncer.wait();
    println!();
    println!(
        "| me_files | tag writes synced | rate | synchronous_commit | tag write to synced row p50 / p99 / max |"
    );
    println!("|---:|---:|---:|---|---:|");
    println!(
        "| {me_files} | {} of {} | {rate}/s | {synchronous_commit} | {:.1} / {:.1} / {:.1} ms |",
        lag.committed,
        chosen.len(),
        lag.p50_ms,
        lag.p99_ms,
        lag.max_ms
    );
    db.close().await;
    Ok(())
}

/// `bench bridge`: the platform's own Oban job inserts (a sync job per me_file, as its code
/// enqueues one per registration or tag write) from `writers` connections, with the bridge
/// off (Oban keeps them) and on (each is taken into snapline's queue in its transaction).
pub(crate) async fn bench_bridge(
    server: &str,
    me_files: u64,
    writers: usize,
    inserts: u64,
) -> anyhow::Result<()> {
    let (_, db) = writers_database(server, "bridge", me_files, writers).await?;
    db.reference()
        .install_oban_table(include_str!("../../../tests/fixtures/oban_jobs.sql"))
        .await?;
    let members = db.reference().member_me_files().await?;
    let worker = "Qlarius.Jobs.SyncMeFileToTargetPopulationsWorker";
    println!(
        "| me_files | bridge | Oban job inserts ({writers} connections) | rows stored | snapline jobs pushed |"
    );
    println!("|---:|---|---:|---|---:|");
    for bridge in [false, true] {
        if bridge {
            db.bridge()
                .enable(&settings::BridgeSettings::default().workers)
                .await?;
        }
        db.bulk().checkpoint().await?;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let per_writer = inserts.div_ceil(writers.max(1) as u64);
        for w in 0..writers {
            let (db, members) = (db.clone(), members.clone());
            tasks.spawn(async move {
                let mut states = std::collections::BTreeMap::<String, u64>::new();
                for i in 0..per_writer {
                    let me_file = members[((w as u64 * per_writer + i) as usize) % members.len()];
                    let state = db
                        .reference()
                        .insert_oban_job(
                            "targets",
                            worker,
                            &format!("{{\"me_file_id\": {me_file}}}"),
                        )
                        .await?;
                    *states.entry(state).or_default() += 1;
                }
                Ok::<_, repo::RepoError>(states)
            });
        }
        let mut states = std::collections::BTreeMap::<String, u64>::new();
        while let Some(done) = tasks.join_next().await {
            for (state, n) in done?? {
                *states.entry(state).or_default() += n;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let total: u64 = states.values().sum();
        let pushed: i64 = db
            .queue_jobs()
            .count_by_status(jobs::sync_me_file::QUEUE)
            .await?
            .iter()
            .map(|(_, n)| n)
            .sum();
        println!(
            "| {me_files} | {} | {:.0} inserts/s | {} | {pushed} |",
            if bridge { "on" } else { "off" },
            total as f64 / elapsed,
            states
                .iter()
                .map(|(state, n)| format!("{n} {state}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        db.queue_jobs()
            .delete_all(jobs::sync_me_file::QUEUE)
            .await?;
    }
    db.close().await;
    Ok(())
}

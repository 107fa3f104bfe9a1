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

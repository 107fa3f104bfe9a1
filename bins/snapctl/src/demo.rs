//! `snapctl demo`: the first five minutes, on a throwaway embedded SQLite database. Each step
//! is the real library code the binaries run; the demo only sequences them and reports.

use crate::seed;
use anyhow::Context;
use jobs::backfill::{self, BackfillScope};
use jobs::populate_target;
use jobs::sync_me_file;
use repo::Db;
use settings::Settings;
use std::time::{Duration, Instant};
use synth::SeedOptions;

/// Every this many populations loses its snapshot, as a writer from before snapshots did.
const FORGET_EVERY: i64 = 50;

pub async fn run(
    settings: &Settings,
    me_files: u64,
    changes: u64,
    database: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(path) = database.strip_prefix("sqlite://") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
    let db = runtime::connect_to(settings, database).await?;
    db.migrate().await.context("applying migrations")?;
    println!("snapline demo on {database}");

    // 1. The platform's data, with legacy rows whose snapshots were never computed.
    seed(
        &db,
        &SeedOptions {
            me_files,
            deleted_band_offers: false,
            ..SeedOptions::default()
        },
    )
    .await?;

    // 2. populate_target for every target.
    let step = Instant::now();
    let options = runtime::populate_options(settings);
    let targets = db.targets().all().await?;
    let (mut members, mut refreshed) = (0, 0);
    for target in &targets {
        let summary = populate_target::populate_target(&db, target.id, &options)
            .await
            .map_err(runtime::job_error)?;
        members += summary.inserted + summary.moved + summary.refreshed + summary.unchanged;
        refreshed += summary.refreshed;
    }
    let secs = step.elapsed().as_secs_f64();
    println!(
        "populated {} targets: {members} members with snapshots ({refreshed} legacy NULL snapshots filled) in {secs:.1}s ({:.0} rows/s)",
        targets.len(),
        members as f64 / secs.max(1e-9)
    );

    // 3. A burst of tag changes, each touched me_file synced through the real queue.
    let burst = synth::churn(&db, me_files, changes, 2026)
        .await
        .context("applying the burst of tag changes")?;
    println!(
        "tag burst: {} added, {} edited, {} deleted on {} me_files",
        burst.added,
        burst.edited,
        burst.deleted,
        burst.touched.len()
    );
    let step = Instant::now();
    let mut pushed = 0;
    for me_file in &burst.touched {
        pushed += u64::from(
            sync_me_file::enqueue(&db, *me_file)
                .await
                .map_err(runtime::job_error)?,
        );
    }
    let worker =
        runtime::worker_options(settings, sync_me_file::QUEUE, &settings.queues.sync_me_file);
    let ctx = runtime::syncer_context(settings, db.clone());
    sync_me_file::serve(ctx, &worker, queue_drained(db.clone(), sync_me_file::QUEUE))
        .await
        .map_err(runtime::job_error)?;
    let depth = db.queue_jobs().depth(sync_me_file::QUEUE).await?;
    let secs = step.elapsed().as_secs_f64();
    println!(
        "synced {pushed} me_files through queue {} ({} workers): {} done, {} failed in {secs:.1}s ({:.0} syncs/s)",
        sync_me_file::QUEUE,
        worker.concurrency,
        depth.done,
        depth.failed + depth.killed,
        depth.done as f64 / secs.max(1e-9)
    );

    // 4. Snapshots lost by a buggy writer, then the backfill.
    let forgotten = db.populations().forget_snapshots(FORGET_EVERY).await?;
    let nulls = db.stats().null_snapshots().await?;
    println!(
        "injected {forgotten} NULL population snapshots (every {FORGET_EVERY}th row); NULL now: {} target_populations, {} offers, {} ad_events",
        nulls.target_populations, nulls.offers, nulls.ad_events
    );
    let report = backfill::backfill(
        &db,
        &BackfillScope::All,
        &runtime::backfill_options(settings),
        &|_| {},
    )
    .await
    .map_err(runtime::job_error)?;
    println!("backfill: {report}");

    // 5. Proof: a fresh populate of every target finds nothing to change.
    let step = Instant::now();
    let mut changed = 0;
    for target in &targets {
        changed += populate_target::populate_target(&db, target.id, &options)
            .await
            .map_err(runtime::job_error)?
            .changes();
    }
    println!(
        "verified: a fresh populate of every target changes {changed} rows ({:.1}s)",
        step.elapsed().as_secs_f64()
    );
    let nulls = db.stats().null_snapshots().await?;
    println!(
        "NULL snapshots left: {} ({} target_populations, {} offers, {} ad_events)",
        nulls.total(),
        nulls.target_populations,
        nulls.offers,
        nulls.ad_events
    );
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    db.close().await;
    if changed > 0 || nulls.total() > 0 {
        anyhow::bail!("the demo's end state is not exact: see the lines above");
    }
    Ok(())
}

/// Completes once `queue` has no waiting or running job.
async fn queue_drained(db: Db, queue: &'static str) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match db.queue_jobs().depth(queue).await {
            Ok(depth) if depth.waiting == 0 && depth.running == 0 => return,
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "reading the queue's depth"),
        }
    }
}

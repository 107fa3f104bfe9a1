//! `bench populate`: the populator against one `INSERT ... SELECT`.

use crate::harness::*;
use anyhow::bail;
use repo::{Db, DbOptions};
use std::time::Instant;
use synth::SeedOptions;

/// What to measure beside `populator run`.
pub(crate) struct PopulateBench {
    pub batch_size: Option<u64>,
    pub target: i64,
    /// Numbers of `populator serve` processes to populate the target again with, from
    /// empty, through the queue (its chunks spread over them).
    pub replicas: Vec<usize>,
    /// `populator.chunk_me_files` of those processes (default: configured).
    pub chunk_me_files: Option<u64>,
}

pub(crate) async fn bench_populate(
    server: &str,
    me_files: u64,
    bench: &PopulateBench,
) -> anyhow::Result<()> {
    let (batch_size, target) = (bench.batch_size, bench.target);
    let url = fresh_database(server, &format!("snapline_bench_populate_{me_files}")).await?;
    let db = Db::connect(&DbOptions::new(url.clone())).await?;
    seed(
        &db,
        SeedOptions {
            me_files,
            legacy_share: 0.0,
            ..SeedOptions::default()
        },
    )
    .await?;

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
    if !bench.replicas.is_empty() {
        println!();
        println!(
            "| me_files | populator serve processes | chunks | enqueue to populated | vs 1 process | peak RSS per process |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
    }
    let mut one_process = None;
    for &replicas in &bench.replicas {
        reference.clear_populations().await?;
        db.bulk().checkpoint().await?;
        let (elapsed, chunks, peak_kib) =
            populate_with_replicas(&db, &url, target, replicas, bench).await?;
        let differences = reference
            .population_differences("reference_populations", target)
            .await?;
        if differences != 0 {
            bail!("{replicas} populators and SQL disagree on {differences} rows");
        }
        let baseline = *one_process.get_or_insert(elapsed);
        println!(
            "| {me_files} | {replicas} | {chunks} | {:.2} s | {:.2} | {:.0} MB |",
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() / baseline.as_secs_f64(),
            peak_kib as f64 / 1024.0
        );
    }
    db.close().await;
    Ok(())
}

/// Starts `replicas` `populator serve` processes, enqueues the target's populate and waits
/// until it is `populated`; returns the time from the push, the run's chunks and the
/// largest peak RSS of the processes.
async fn populate_with_replicas(
    db: &Db,
    url: &str,
    target: i64,
    replicas: usize,
    bench: &PopulateBench,
) -> anyhow::Result<(std::time::Duration, u64, u64)> {
    let mut children = Vec::new();
    for _ in 0..replicas {
        let mut command = sibling("populator")?;
        command
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("SNAPLINE_SERVE__POPULATOR_HTTP", "")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        if let Some(batch_size) = bench.batch_size {
            command.env("SNAPLINE_POPULATOR__BATCH_SIZE", batch_size.to_string());
        }
        if let Some(chunk) = bench.chunk_me_files {
            command.env("SNAPLINE_POPULATOR__CHUNK_ME_FILES", chunk.to_string());
        }
        let child = command.spawn()?;
        let sampler = peak_rss_sampler(child.id());
        children.push((child, sampler));
    }
    // Every process connected and serving before the clock starts.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let target_id = domain::TargetId(target);
    let started = Instant::now();
    jobs::populate_target::enqueue(db, target_id).await?;
    let outcome = loop {
        let status = db.targets().find(target_id).await?.and_then(|t| t.status);
        match status {
            Some(domain::PopulationStatus::Populated) => break Ok(started.elapsed()),
            // A populate that fails for good leaves the target `not_populated` (the enqueue
            // set `populating`).
            Some(domain::PopulationStatus::NotPopulated | domain::PopulationStatus::Failed) => {
                break Err(anyhow::anyhow!(
                    "the populate failed (snapctl status says why)"
                ));
            }
            _ if started.elapsed() > std::time::Duration::from_secs(3600) => {
                break Err(anyhow::anyhow!("the populate did not finish in an hour"));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    let mut peak = 0;
    for (mut child, sampler) in children {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        peak = u64::max(peak, sampler.join().unwrap_or(0));
    }
    let chunks = db
        .queue_jobs()
        .count_by_status(jobs::populate_target::CHUNK_QUEUE)
        .await?
        .iter()
        .map(|(_, n)| *n as u64)
        .sum::<u64>()
        .max(1);
    db.queue_jobs()
        .delete_all(jobs::populate_target::CHUNK_QUEUE)
        .await?;
    db.queue_jobs()
        .delete_all(jobs::populate_target::QUEUE)
        .await?;
    Ok((outcome?, chunks, peak))
}

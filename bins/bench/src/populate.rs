//! `bench populate`: the populator against one `INSERT ... SELECT`.

use crate::harness::*;
use anyhow::bail;
use repo::{Db, DbOptions};
use std::time::Instant;
use synth::SeedOptions;

pub(crate) async fn bench_populate(
    server: &str,
    me_files: u64,
    batch_size: Option<u64>,
    target: i64,
) -> anyhow::Result<()> {
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
    db.close().await;
    Ok(())
}

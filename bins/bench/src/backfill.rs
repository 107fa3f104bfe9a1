//! `bench backfill`: the backfiller against set-based UPDATEs.

use crate::harness::*;
use anyhow::bail;
use repo::{Db, DbOptions};
use std::time::Instant;
use synth::SeedOptions;

pub(crate) async fn bench_backfill(
    server: &str,
    me_files: u64,
    batch_size: Option<u64>,
    legacy_share: f64,
) -> anyhow::Result<()> {
    let url = fresh_database(server, &format!("snapline_bench_backfill_{me_files}")).await?;
    let db = Db::connect(&DbOptions::new(url.clone())).await?;
    // `legacy_share` of the broad target's members are legacy rows: NULL population, offer
    // and ad_event.
    let seeded = seed(
        &db,
        SeedOptions {
            me_files,
            targets: 1,
            legacy_share,
            ..SeedOptions::default()
        },
    )
    .await?;
    eprintln!(
        "NULL snapshots: {} populations, {} offers, {} ad_events",
        seeded.legacy_populations, seeded.offers, seeded.ad_events,
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
        "| me_files | legacy share | NULL rows | backfiller | rows/s | SQL UPDATEs | rows/s | ratio | backfiller peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {me_files} | {legacy_share} | {rows} | {:.2} s | {:.0} | {:.2} s | {:.0} | {:.2} | {:.0} MB |",
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

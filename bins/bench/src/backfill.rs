//! `bench backfill`: the backfiller against set-based UPDATEs.

use crate::harness::*;
use anyhow::{Context, bail};
use repo::{Db, DbOptions};
use std::time::Instant;
use synth::SeedOptions;

/// The tables a backfill writes.
const TABLES: [&str; 3] = ["target_populations", "offers", "ad_events"];

/// Rows compared per page when checking the two databases agree.
const COMPARE_PAGE: u64 = 50_000;

pub(crate) async fn bench_backfill(
    server: &str,
    me_files: u64,
    batch_size: Option<u64>,
    legacy_share: f64,
) -> anyhow::Result<()> {
    let name = format!("snapline_bench_backfill_{me_files}");
    let url = fresh_database(server, &name).await?;
    let db = Db::connect(&DbOptions::new(url.clone())).await?;
    // `legacy_share` of the broad target's members are legacy rows: NULL population, offer
    // and ad_event.
    let seeded = seed(
        &db,
        SeedOptions::sized(me_files, 1).with_legacy_share(legacy_share),
    )
    .await?;
    eprintln!(
        "NULL snapshots: {} populations, {} offers, {} ad_events",
        seeded.legacy_populations, seeded.offers, seeded.ad_events,
    );
    for (query, plan) in db.backfill().explain_null_queries(5_000).await? {
        println!("```\nEXPLAIN {query}\n{plan}\n```");
    }
    db.close().await;

    // Two copies of the seeded database, file for file: the backfiller fills one and the
    // set-based SQL the other, each on the same tables and indexes, each starting with none
    // of its pages in shared buffers (a new database's files are new to the server).
    let run_url = database_from_template(server, &format!("{name}_run"), &name).await?;
    let sql_url = database_from_template(server, &format!("{name}_sql"), &name).await?;
    let run_db = Db::connect(&DbOptions::new(run_url.clone())).await?;
    let sql_db = Db::connect(&DbOptions::new(sql_url)).await?;

    run_db.bulk().checkpoint().await?;
    let mut backfiller = sibling("backfiller")?;
    backfiller
        .args(["run", "--json"])
        .env("DATABASE_URL", &run_url)
        .env("RUST_LOG", "warn");
    if let Some(batch_size) = batch_size {
        backfiller.args(["--batch-size", &batch_size.to_string()]);
    }
    let (report, process_time, rss_kib) = run_child(backfiller)?;
    let report: serde_json::Value =
        serde_json::from_str(report.trim()).context("reading `backfiller run --json`")?;
    eprintln!("{report}");
    let backfill_ms = report["elapsed_ms"]
        .as_f64()
        .context("no elapsed_ms in the backfiller's report")?;

    sql_db.bulk().checkpoint().await?;
    let started = Instant::now();
    let sql_rows = sql_db
        .reference()
        .backfill_in_sql(TABLES[0], TABLES[1], TABLES[2])
        .await?;
    let sql_time = started.elapsed().as_secs_f64();
    for table in TABLES {
        let differences = differences(&run_db, &sql_db, table).await?;
        if differences != 0 {
            bail!("backfiller and SQL disagree on {differences} rows of {table}");
        }
    }
    run_db.close().await;
    sql_db.close().await;
    // the seeded database stays (for a look at the data); its two copies go
    for copy in ["run", "sql"] {
        drop_database(server, &format!("{name}_{copy}")).await?;
    }

    let rows = seeded.legacy_populations + seeded.offers + seeded.ad_events;
    let backfill_time = backfill_ms / 1000.0;
    let process_time = process_time.as_secs_f64();
    println!(
        "| me_files | legacy share | NULL rows | backfill | rows/s | SQL UPDATEs | rows/s | ratio | backfiller process | process ratio | backfiller peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {me_files} | {legacy_share} | {rows} | {backfill_time:.2} s | {:.0} | {sql_time:.2} s | {:.0} | {:.2} | {process_time:.2} s | {:.2} | {:.0} MB |",
        rows as f64 / backfill_time,
        sql_rows as f64 / sql_time,
        backfill_time / sql_time,
        process_time / sql_time,
        rss_kib as f64 / 1024.0
    );
    Ok(())
}

/// Rows of `table` whose snapshot differs between the two databases (or that only one has).
async fn differences(a: &Db, b: &Db, table: &str) -> anyhow::Result<u64> {
    let (a, b) = (a.reference(), b.reference());
    let mut after = i64::MIN;
    let mut differences = 0;
    loop {
        let (left, right) = tokio::try_join!(
            a.snapshots_after(table, after, COMPARE_PAGE),
            b.snapshots_after(table, after, COMPARE_PAGE)
        )?;
        // A full page covers ids up to its last; a short one, every id after `after`.
        let covered = |page: &[(i64, Option<String>)]| match page.last() {
            Some(last) if page.len() as u64 == COMPARE_PAGE => last.0,
            _ => i64::MAX,
        };
        let end = covered(&left).min(covered(&right));
        let left: std::collections::HashMap<i64, Option<String>> =
            left.into_iter().filter(|r| r.0 <= end).collect();
        let right: std::collections::HashMap<i64, Option<String>> =
            right.into_iter().filter(|r| r.0 <= end).collect();
        differences += left
            .iter()
            .filter(|(id, snapshot)| right.get(id) != Some(snapshot))
            .count() as u64;
        differences += right.keys().filter(|id| !left.contains_key(id)).count() as u64;
        if end == i64::MAX {
            return Ok(differences);
        }
        after = end;
    }
}

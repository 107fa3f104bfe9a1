//! `bench audit`: a whole `snapctl audit` against populating the same targets with
//! `populator run` (both release child processes), on a database with no drift, then with
//! drift planted by plain SQL that the audit must count exactly.

use crate::harness::*;
use repo::{Db, DbOptions};
use std::time::Duration;
use synth::SeedOptions;

/// What a run of `snapctl audit --json` printed and cost.
struct AuditRun {
    report: serde_json::Value,
    elapsed: Duration,
    peak_kib: u64,
    exit: Option<i32>,
}

fn audit(url: &str) -> anyhow::Result<AuditRun> {
    let (report, elapsed, peak_kib, exit) = snapctl_audit(url)?;
    Ok(AuditRun {
        report,
        elapsed,
        peak_kib,
        exit,
    })
}

fn drift_of(report: &serde_json::Value, kind: &str) -> u64 {
    report["drift"][kind].as_u64().unwrap_or(0)
}

pub(crate) async fn bench_audit(
    server: &str,
    me_files: u64,
    targets: usize,
    reuse: bool,
) -> anyhow::Result<()> {
    let name = format!("snapline_bench_audit_{me_files}_{targets}");
    let url = if reuse {
        format!("{server}/{name}")
    } else {
        fresh_database(server, &name).await?
    };
    let db = Db::connect(&DbOptions::new(url.clone())).await?;
    let mut populate_elapsed = Duration::ZERO;
    let mut populate_peak = 0u64;
    if !reuse {
        seed(
            &db,
            SeedOptions {
                me_files,
                targets,
                legacy_share: 0.0,
                deleted_band_offers: false,
                ..SeedOptions::default()
            },
        )
        .await?;
        for target in db.targets().all().await? {
            let mut populator = sibling("populator")?;
            populator
                .args(["run", "--target", &target.id.0.to_string()])
                .env("DATABASE_URL", &url)
                .env("RUST_LOG", "warn");
            let (_, elapsed, peak) = run_child(populator)?;
            populate_elapsed += elapsed;
            populate_peak = populate_peak.max(peak);
        }
        db.bulk().vacuum_analyze().await?;
        eprintln!(
            "populated {targets} targets in {:.1}s (populator run, one after the other)",
            populate_elapsed.as_secs_f64()
        );
    }

    let clean = audit(&url)?;
    anyhow::ensure!(
        clean.exit == Some(0),
        "the audit of a fresh populate found drift: {}",
        clean.report["drift"]
    );
    let pool = db
        .pg_pool()
        .ok_or_else(|| anyhow::anyhow!("bench audit runs on PostgreSQL"))?;
    // Drift planted: every 1,009th population stale, every 1,013th deleted (missing).
    let stale = sqlx::query(
        "UPDATE target_populations SET matching_tags_snapshot = '{\"tags\": [[1, \"planted\", null, []]]}' \
         WHERE id % 1009 = 0 AND id % 1013 <> 0",
    )
    .execute(pool)
    .await?
    .rows_affected();
    let missing = sqlx::query("DELETE FROM target_populations WHERE id % 1013 = 0")
        .execute(pool)
        .await?
        .rows_affected();
    let drifted = audit(&url)?;
    anyhow::ensure!(
        drifted.exit == Some(1)
            && drift_of(&drifted.report, "stale") == stale
            && drift_of(&drifted.report, "missing") == missing,
        "planted {stale} stale and {missing} missing, the audit found {}",
        drifted.report["drift"]
    );
    let checked = clean.report["me_files_checked"].as_u64().unwrap_or(0);
    println!(
        "| me_files | targets | populate all (populator run) | whole audit, no drift | audit / populate | audit with drift ({stale} stale, {missing} missing) | audit peak RSS | populator peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let populate = if reuse {
        "(reused)".to_owned()
    } else {
        format!("{:.1} s", populate_elapsed.as_secs_f64())
    };
    let ratio = if reuse {
        "-".to_owned()
    } else {
        format!(
            "{:.2}",
            clean.elapsed.as_secs_f64() / populate_elapsed.as_secs_f64()
        )
    };
    println!(
        "| {checked} | {targets} | {populate} | {:.1} s | {ratio} | {:.1} s | {:.1} MB | {} |",
        clean.elapsed.as_secs_f64(),
        drifted.elapsed.as_secs_f64(),
        clean.peak_kib.max(drifted.peak_kib) as f64 / 1024.0,
        if reuse {
            "-".to_owned()
        } else {
            format!("{:.1} MB", populate_peak as f64 / 1024.0)
        }
    );
    // Put the planted rows right again, so that --reuse starts clean.
    let mut fix = sibling("snapctl")?;
    fix.args(["audit", "--fix"])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn");
    let (_, fixed_in, _) = run_child(fix)?;
    eprintln!(
        "snapctl audit --fix repaired the planted drift in {:.1}s",
        fixed_in.as_secs_f64()
    );
    Ok(())
}

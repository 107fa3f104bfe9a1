//! The audit and explain, end to end on PostgreSQL and SQLite: drift of every kind planted
//! with plain SQL is found exactly (and, on PostgreSQL, the set-based SQL oracle sees it
//! too), `--fix` leaves none (the oracles agree), a waiting sync is pending, not drift, and
//! the `snapctl audit` and `snapctl explain` commands say so with their exit codes.

use domain::{MeFileId, TargetId};
use jobs::audit::{AuditOptions, AuditReport, AuditScope, audit};
use jobs::{BandCache, DriftKind};
use snapline_tests::{
    Backend, TestDb, assert_population_exact, binary, both_backends, entity_ids, execute, scalar,
};
use std::collections::BTreeSet;
use synth::SeedOptions;

fn data() -> SeedOptions {
    SeedOptions {
        me_files: 1_200,
        targets: 8,
        legacy_share: 0.05,
        seed: 11,
        chunk_size: 400,
        deleted_band_offers: false,
    }
}

/// A populated database with offers and ad_events, no NULL snapshot left.
async fn clean(backend: Backend) -> TestDb {
    let test = TestDb::populated(backend, &data()).await;
    jobs::backfill::backfill(
        &test.db,
        &jobs::backfill::BackfillScope::All,
        &Default::default(),
        &|_| {},
    )
    .await
    .expect("backfill");
    test
}

async fn run(test: &TestDb, scope: AuditScope, sample: Option<u64>, fix: bool) -> AuditReport {
    audit(
        &test.db,
        &AuditOptions {
            scope,
            sample,
            batch_size: 97,
            examples: 100,
            fix,
            ..AuditOptions::default()
        },
        &|_| {},
    )
    .await
    .expect("audit")
}

/// (kind, target, me_file, row) of every example.
type Found = BTreeSet<(DriftKind, Option<i64>, Option<i64>, Option<i64>)>;

fn found(report: &AuditReport) -> Found {
    report
        .examples
        .iter()
        .map(|d| (d.kind, d.target_id, d.me_file_id, d.row_id))
        .collect()
}

/// (population id, me_file) of a row of `target`, the `nth` by id.
async fn population_of(test: &TestDb, target: i64, nth: i64) -> (i64, i64) {
    let sql = |column: &str| {
        format!(
            "SELECT p.{column} FROM target_populations p JOIN target_bands b ON b.id = p.target_band_id \
             WHERE b.target_id = {target} ORDER BY p.id LIMIT 1 OFFSET {nth}"
        )
    };
    (
        scalar(&test.db, &sql("id")).await,
        scalar(&test.db, &sql("me_file_id")).await,
    )
}

async fn drift_of_every_kind_is_found_exactly_and_fixed(backend: Backend) {
    let test = clean(backend).await;
    let db = &test.db;
    let before = run(&test, AuditScope::All, None, false).await;
    assert_eq!(
        before.drift_rows(),
        0,
        "a fresh populate has no drift: {before}"
    );
    assert_eq!(before.me_files_checked, 1_200);

    // Target 1 (nested, three bands) gets one row of each population kind.
    let target = 1;
    let bands = entity_ids(
        db,
        &format!("SELECT id FROM target_bands WHERE target_id = {target} ORDER BY id"),
    )
    .await;
    assert!(bands.len() >= 2, "target {target} has several bands");
    let (missing_row, missing_me_file) = population_of(&test, target, 0).await;
    let missing_band = scalar(
        db,
        &format!("SELECT target_band_id FROM target_populations WHERE id = {missing_row}"),
    )
    .await;
    let (moved_row, moved_me_file) = population_of(&test, target, 1).await;
    let (stale_row, stale_me_file) = population_of(&test, target, 2).await;
    let (null_row, null_me_file) = population_of(&test, target, 3).await;
    let moved_from = scalar(
        db,
        &format!("SELECT target_band_id FROM target_populations WHERE id = {moved_row}"),
    )
    .await;
    let moved_to = *bands.iter().find(|b| **b != moved_from).unwrap();
    let outsider = scalar(
        db,
        &format!(
            "SELECT MIN(m.id) FROM me_files m WHERE NOT EXISTS (SELECT 1 FROM target_populations p \
             JOIN target_bands b ON b.id = p.target_band_id WHERE b.target_id = {target} AND p.me_file_id = m.id)"
        ),
    )
    .await;
    execute(
        db,
        &format!("DELETE FROM target_populations WHERE id = {missing_row}"),
    )
    .await;
    execute(
        db,
        &format!(
            "UPDATE target_populations SET target_band_id = {moved_to} WHERE id = {moved_row}"
        ),
    )
    .await;
    execute(
        db,
        &format!(
            "UPDATE target_populations SET matching_tags_snapshot = '{{\"tags\": [[1, \"planted\", null, []]]}}' \
             WHERE id = {stale_row}"
        ),
    )
    .await;
    execute(
        db,
        &format!(
            "UPDATE target_populations SET matching_tags_snapshot = NULL WHERE id = {null_row}"
        ),
    )
    .await;
    execute(
        db,
        &format!(
            "INSERT INTO target_populations (target_band_id, me_file_id, matching_tags_snapshot, created_at, updated_at) \
             VALUES ({}, {outsider}, '{{\"tags\": []}}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            bands[0]
        ),
    )
    .await;
    let extra_row = scalar(
        db,
        &format!("SELECT id FROM target_populations WHERE me_file_id = {outsider} AND target_band_id = {}", bands[0]),
    )
    .await;
    // One offer and one ad_event of the target's bands lose their snapshot.
    let in_target =
        format!("target_band_id IN (SELECT id FROM target_bands WHERE target_id = {target})");
    let mut copies = Vec::new();
    for table in ["offers", "ad_events"] {
        let id = scalar(
            db,
            &format!("SELECT MIN(id) FROM {table} WHERE {in_target}"),
        )
        .await;
        let me_file = scalar(
            db,
            &format!("SELECT me_file_id FROM {table} WHERE id = {id}"),
        )
        .await;
        execute(
            db,
            &format!("UPDATE {table} SET matching_tags_snapshot = NULL WHERE id = {id}"),
        )
        .await;
        copies.push((id, me_file));
    }

    let t = Some(target);
    let planted: Found = [
        (DriftKind::Missing, t, Some(missing_me_file), None),
        (
            DriftKind::WrongBand,
            t,
            Some(moved_me_file),
            Some(moved_row),
        ),
        (DriftKind::Stale, t, Some(stale_me_file), Some(stale_row)),
        (
            DriftKind::NullPopulation,
            t,
            Some(null_me_file),
            Some(null_row),
        ),
        (DriftKind::Extra, t, Some(outsider), Some(extra_row)),
        (
            DriftKind::NullOffer,
            None,
            Some(copies[0].1),
            Some(copies[0].0),
        ),
        (
            DriftKind::NullAdEvent,
            None,
            Some(copies[1].1),
            Some(copies[1].0),
        ),
    ]
    .into_iter()
    .collect();

    let whole = run(&test, AuditScope::All, None, false).await;
    assert_eq!(found(&whole), planted, "{whole}");
    for kind in DriftKind::ALL {
        assert_eq!(whole.drift[&kind], 1, "{kind:?}: {whole}");
    }
    assert_eq!(
        whole.by_target.keys().copied().collect::<Vec<_>>(),
        [target]
    );
    let missing = whole
        .examples
        .iter()
        .find(|d| d.kind == DriftKind::Missing)
        .unwrap();
    assert_eq!(
        missing.band_id,
        Some(missing_band),
        "the band it belongs in"
    );
    let wrong = whole
        .examples
        .iter()
        .find(|d| d.kind == DriftKind::WrongBand)
        .unwrap();
    assert_eq!(wrong.band_id, Some(moved_to), "the band it is stored in");

    // The set-based SQL oracle sees the target differ, and only that one.
    if backend == Backend::Postgres {
        for other in 1..=8 {
            let differences = db
                .reference()
                .population_differences_from_sql(other, 100)
                .await
                .unwrap();
            // missing 1, extra 1, and the moved, stale and NULL rows twice (stored and
            // computed sides).
            let expected = if other == target { 8 } else { 0 };
            assert_eq!(
                differences.len(),
                expected,
                "target {other}: {differences:#?}"
            );
        }
    }

    // Narrower scopes see their part; a sample of every me_file sees it all.
    let of_target = run(&test, AuditScope::Target(TargetId(target)), None, false).await;
    assert_eq!(found(&of_target), planted);
    let other = run(&test, AuditScope::Target(TargetId(2)), None, false).await;
    assert_eq!(other.drift_rows(), 0, "{other}");
    let one = run(
        &test,
        AuditScope::MeFile(MeFileId(stale_me_file)),
        None,
        false,
    )
    .await;
    assert_eq!(
        found(&one),
        [(DriftKind::Stale, t, Some(stale_me_file), Some(stale_row))]
            .into_iter()
            .collect()
    );
    let sampled = run(&test, AuditScope::All, Some(5_000), false).await;
    assert_eq!(sampled.me_files_checked, 1_200);
    assert_eq!(found(&sampled), planted);
    // The audit wrote nothing.
    let again = run(&test, AuditScope::All, None, false).await;
    assert_eq!(found(&again), planted);

    let fixed = run(&test, AuditScope::All, None, true).await;
    assert_eq!(found(&fixed), planted, "the fix reports what it found");
    let repaired = fixed.fixed.as_ref().expect("a fix ran");
    assert_eq!(repaired.me_files_synced, 5);
    assert_eq!(repaired.copies_filled, 2);
    let after = fixed.after_fix.as_ref().expect("audited again");
    assert_eq!(after.drift_rows(), 0, "{fixed}");
    assert_eq!(fixed.drift_left(), 0);
    for target in 1..=8 {
        assert_population_exact(db, TargetId(target)).await;
    }
    for table in ["offers", "ad_events"] {
        let nulls = scalar(
            db,
            &format!("SELECT COUNT(*) FROM {table} WHERE matching_tags_snapshot IS NULL"),
        )
        .await;
        assert_eq!(nulls, 0, "{table}");
    }
}

async fn a_change_whose_sync_waits_is_pending_not_drift(backend: Backend) {
    let test = clean(backend).await;
    let db = &test.db;
    let (_, member) = population_of(&test, 1, 10).await;
    // The platform drops the member's tags and pushes its sync, which has not run yet.
    execute(
        db,
        &format!("DELETE FROM me_file_tags WHERE me_file_id = {member}"),
    )
    .await;
    assert!(
        jobs::sync_me_file::enqueue(db, MeFileId(member))
            .await
            .unwrap()
    );
    let report = run(&test, AuditScope::All, None, false).await;
    assert_eq!(report.pending_sync, 1, "{report}");
    assert_eq!(report.drift_rows(), 0, "{report}");

    // Without the waiting job it is drift: one extra row in every target it was in.
    let in_targets = scalar(
        db,
        &format!("SELECT COUNT(*) FROM target_populations WHERE me_file_id = {member}"),
    )
    .await;
    db.queue_jobs()
        .delete_all(jobs::sync_me_file::QUEUE)
        .await
        .unwrap();
    let report = run(&test, AuditScope::MeFile(MeFileId(member)), None, false).await;
    assert_eq!(report.pending_sync, 0);
    assert_eq!(
        report.drift[&DriftKind::Extra],
        in_targets as u64,
        "{report}"
    );

    jobs::sync_me_file::sync_me_file(db, &BandCache::new(Default::default()), MeFileId(member))
        .await
        .unwrap();
    let report = run(&test, AuditScope::All, None, false).await;
    assert_eq!(report.drift_rows(), 0, "{report}");
}

async fn targets_not_populated_are_skipped_and_unknown_ids_refused(backend: Backend) {
    let test = clean(backend).await;
    let db = &test.db;
    execute(
        db,
        "UPDATE targets SET population_status = 'populating' WHERE id = 2",
    )
    .await;
    // Planted in a target being populated: not the audit's to judge.
    execute(db, "DELETE FROM target_populations WHERE target_band_id IN (SELECT id FROM target_bands WHERE target_id = 2)").await;
    let report = run(&test, AuditScope::All, None, false).await;
    assert!(
        report
            .targets_skipped
            .iter()
            .any(|s| s.target_id == 2 && s.status == "populating"),
        "{report}"
    );
    assert_eq!(report.drift_rows(), 0, "{report}");
    let one = run(&test, AuditScope::Target(TargetId(2)), None, false).await;
    assert_eq!(one.targets_audited, 0);

    let err = audit(
        db,
        &AuditOptions {
            scope: AuditScope::Target(TargetId(999_999)),
            ..AuditOptions::default()
        },
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
}

both_backends! {
    drift_of_every_kind => drift_of_every_kind_is_found_exactly_and_fixed;
    pending_sync => a_change_whose_sync_waits_is_pending_not_drift;
    skipped_and_unknown => targets_not_populated_are_skipped_and_unknown_ids_refused;
}

/// `snapctl ARGS` on the test's database; its output.
fn snapctl(test: &TestDb, args: &[&str]) -> std::process::Output {
    snapline_tests::snapctl(&test.url, args)
}

/// `snapctl audit` exits 0 without drift, 1 with, 2 on an unknown id; `--fix` repairs and
/// exits 0; its JSON is the report; the whole audit is kept for the board. `snapctl
/// explain` shows the verdicts and the diff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapctl_audit_and_explain_say_it_in_their_exit_codes() {
    let test = clean(Backend::Postgres).await;
    let db = &test.db;
    let out = snapctl(&test, &["audit"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no drift"));

    let (row, me_file) = population_of(&test, 1, 0).await;
    execute(
        db,
        &format!("UPDATE target_populations SET matching_tags_snapshot = '{{\"tags\": []}}' WHERE id = {row}"),
    )
    .await;
    let out = snapctl(&test, &["audit", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["drift"]["stale"], 1, "{report}");
    let kept = db.audit().last().await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].run.as_str(), kept[0].drift), ("snapctl", 1));

    let explained = snapctl(
        &test,
        &[
            "explain",
            "--me-file",
            &me_file.to_string(),
            "--target",
            "1",
        ],
    );
    assert_eq!(explained.status.code(), Some(0));
    let text = String::from_utf8_lossy(&explained.stdout);
    for needle in [
        "target 1",
        "band ",
        "group ",
        "passed",
        "chosen: band",
        "+ ",
        "drift: stale",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    let json: serde_json::Value = serde_json::from_slice(
        &snapctl(
            &test,
            &["explain", "--me-file", &me_file.to_string(), "--json"],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(json["targets"].as_array().unwrap().len(), 8);

    assert_eq!(
        snapctl(&test, &["audit", "--target", "999999"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        snapctl(&test, &["explain", "--me-file", "99999999999"])
            .status
            .code(),
        Some(2)
    );

    let out = snapctl(&test, &["audit", "--fix"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_population_exact(db, TargetId(1)).await;
    assert_eq!(db.audit().last().await.unwrap()[0].drift, 0);
}

async fn each_audit_tick_is_pushed_once_across_replicas(backend: Backend) {
    let test = TestDb::migrated(backend).await;
    let audit_tick = jobs::backfill_queue::Scheduled::Audit { sample: 10 };
    let (a, b) = tokio::join!(
        jobs::backfill_queue::on_tick(&test.db, audit_tick, 1_700_000_000, "replica-a"),
        jobs::backfill_queue::on_tick(&test.db, audit_tick, 1_700_000_000, "replica-b"),
    );
    let mut pushed = [a.unwrap(), b.unwrap()];
    pushed.sort();
    assert_eq!(pushed, [false, true], "exactly one replica pushes the tick");
    // The same second's backfill tick is another job.
    assert!(
        jobs::backfill_queue::on_cron_tick(&test.db, 1_700_000_000, "replica-a")
            .await
            .unwrap()
    );
    assert!(
        jobs::backfill_queue::on_tick(&test.db, audit_tick, 1_700_000_060, "replica-b")
            .await
            .unwrap()
    );
}

both_backends! {
    audit_tick_once => each_audit_tick_is_pushed_once_across_replicas;
}

/// Two `backfiller serve` replicas with `audit.schedule` set audit a sample every second:
/// the drift planted is kept as the last scheduled audit and every replica's /metrics
/// reports it; once repaired, the next audit reports none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_audit_runs_on_the_backfillers_and_reports_drift_in_metrics() {
    let test = clean(Backend::Postgres).await;
    let db = &test.db;
    let (row, _) = population_of(&test, 1, 0).await;
    execute(
        db,
        &format!("UPDATE target_populations SET matching_tags_snapshot = '{{\"tags\": []}}' WHERE id = {row}"),
    )
    .await;
    let ports = [snapline_tests::free_port(), snapline_tests::free_port()];
    let _replicas: Vec<snapline_tests::Served> = ports
        .iter()
        .map(|port| {
            snapline_tests::Served::start(
                &binary("backfiller"),
                &test.url,
                &[
                    ("SNAPLINE_AUDIT__SCHEDULE", "* * * * * *".to_owned()),
                    ("SNAPLINE_AUDIT__SAMPLE", "5000".to_owned()),
                    (
                        "SNAPLINE_SERVE__BACKFILLER_HTTP",
                        format!("127.0.0.1:{port}"),
                    ),
                ],
            )
        })
        .collect();
    snapline_tests::wait_for("a scheduled audit kept", || async {
        db.audit()
            .last()
            .await
            .unwrap()
            .iter()
            .any(|r| r.run == "scheduled" && r.drift == 1)
    })
    .await;
    let kept = db.audit().last().await.unwrap();
    let report: AuditReport = serde_json::from_str(&kept[0].report).unwrap();
    assert_eq!(
        report.me_files_checked, 1_200,
        "the sample covers every me_file"
    );
    assert_eq!(report.drift[&DriftKind::Stale], 1);
    for port in ports {
        snapline_tests::wait_for("the drift gauge", || async move {
            snapline_tests::http_get(port, "/metrics").is_some_and(|(_, body)| {
                body.contains("snapline_drift_rows{kind=\"stale\"} 1")
                    && body.contains("snapline_audit_last_run_timestamp_seconds")
            })
        })
        .await;
    }

    let fixed = run(&test, AuditScope::All, None, true).await;
    assert_eq!(fixed.drift_left(), 0);
    snapline_tests::wait_for("a scheduled audit without drift", || async {
        db.audit()
            .last()
            .await
            .unwrap()
            .iter()
            .any(|r| r.run == "scheduled" && r.drift == 0)
    })
    .await;
    // Each tick ran once: as many audit jobs as distinct ticks, whichever replica pushed.
    let jobs = scalar(
        db,
        "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'backfill' AND convert_from(job, 'UTF8') LIKE '%audit_sample%'",
    )
    .await;
    let ticks = scalar(
        db,
        "SELECT COUNT(DISTINCT idempotency_key) FROM apalis.jobs WHERE job_type = 'backfill' AND convert_from(job, 'UTF8') LIKE '%audit_sample%'",
    )
    .await;
    assert!(
        jobs >= 2 && jobs == ticks,
        "{jobs} audit jobs for {ticks} ticks"
    );
}

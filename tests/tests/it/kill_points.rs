//! kill -9 of each binary at several points of its work, on PostgreSQL; after a restart the
//! data is exactly what an uninterrupted run gives: every population equal to a fresh
//! computation by the rules, every fixable NULL filled with the right snapshot.

use domain::{MeFileId, PopulationStatus, TargetId};
use jobs::sync_me_file;
use snapline_tests::{
    Backend, Served, TestDb, assert_population_exact, binary, execute, oracle, quote, scalar,
    wait_for,
};
use std::time::Duration;
use synth::SeedOptions;

/// Kill points: milliseconds after the work is seen under way.
const KILL_AFTER_MS: [u64; 3] = [0, 150, 500];

async fn seeded(me_files: u64, legacy_share: f64) -> TestDb {
    TestDb::seeded(
        Backend::Postgres,
        &SeedOptions::sized(me_files, 6).with_legacy_share(legacy_share),
    )
    .await
}

fn env(pairs: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .map(|(k, v)| (&*Box::leak(k.to_string().into_boxed_str()), v.to_string()))
        .collect()
}

/// Runs `binary ARGS` to completion and asserts it succeeded.
fn run_to_completion(name: &str, args: &[&str], url: &str, env: &[(&'static str, String)]) {
    let mut run = Served::spawn(&binary(name), args, url, env);
    assert_eq!(
        run.wait_exit(Duration::from_secs(120)),
        Some(0),
        "{name} {args:?} finishes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populator_killed_at_several_points_then_rerun_is_exact() {
    let test = seeded(15_000, 0.05).await;
    let env = env(&[
        ("SNAPLINE_POPULATOR__BATCH_SIZE", "100"),
        ("SNAPLINE_POPULATOR__LEASE_TTL_SECS", "1"),
    ]);
    // Kill points: after the first, the 50th and the 400th row this run refreshed.
    for (round, rows_before_kill) in [1, 50, 400].into_iter().enumerate() {
        // Change tags between rounds so every rerun has inserts, moves and refreshes to do;
        // the new value marks the rows this round's process writes.
        execute(
            &test.db,
            &format!("UPDATE me_file_tags SET tag_value = 'round {round}' WHERE id % 7 = {round}"),
        )
        .await;
        let written_by_this_run = format!(
            "SELECT COUNT(*) FROM target_populations \
             WHERE matching_tags_snapshot::text LIKE '%\"round {round}\"%'"
        );
        let run = Served::spawn(
            &binary("populator"),
            &["run", "--target", "1"],
            &test.url,
            &env,
        );
        wait_for("batches of this run committed", || async {
            scalar(&test.db, &written_by_this_run).await >= rows_before_kill
        })
        .await;
        run.signal("KILL");
        drop(run);
        let written = scalar(&test.db, &written_by_this_run).await;
        // The kill took: nothing more of this run lands afterwards.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            scalar(&test.db, &written_by_this_run).await,
            written,
            "round {round}: rows written after the kill"
        );
        let target = test.db.targets().find(TargetId(1)).await.unwrap().unwrap();
        assert_eq!(
            target.status,
            Some(PopulationStatus::Populating),
            "round {round}: killed in the middle of the run, after {written} of its rows"
        );
    }
    run_to_completion("populator", &["run", "--target", "1"], &test.url, &env);
    let target = test.db.targets().find(TargetId(1)).await.unwrap().unwrap();
    assert_eq!(target.status, Some(PopulationStatus::Populated));
    assert_population_exact(&test.db, TargetId(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_killed_at_several_points_loses_no_sync() {
    let test = TestDb::populated(
        Backend::Postgres,
        &SeedOptions::sized(3_000, 6).with_legacy_share(0.0),
    )
    .await;
    let mut pushed = 0;
    for (round, delay) in KILL_AFTER_MS.into_iter().enumerate() {
        for me_file in (1 + round as i64 * 300)..=((round as i64 + 1) * 300) {
            execute(
                &test.db,
                &format!(
                    "UPDATE me_file_tags SET tag_value = {} WHERE id = (SELECT MIN(id) FROM me_file_tags WHERE me_file_id = {me_file})",
                    quote(&format!("round {round}"))
                ),
            )
            .await;
            execute(&test.db, &format!("DELETE FROM me_file_tags WHERE id = (SELECT MAX(id) FROM me_file_tags WHERE me_file_id = {me_file}) AND {me_file} % 3 = 0")).await;
            pushed += u64::from(
                sync_me_file::enqueue(&test.db, MeFileId(me_file))
                    .await
                    .unwrap(),
            );
        }
        // One sync at a time, so that the round's 300 are still under way at the kill.
        let syncer = Served::start(
            &binary("syncer"),
            &test.url,
            &env(&[
                ("SNAPLINE_QUEUES__SYNC_ME_FILE__CONCURRENCY", "1"),
                ("SNAPLINE_SYNCER__ME_FILES_PER_TRANSACTION", "1"),
            ]),
        );
        wait_for("some syncs done", || async {
            snapline_tests::done_jobs(&test.db, sync_me_file::QUEUE).await as u64 > pushed - 300
        })
        .await;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        syncer.signal("KILL");
        drop(syncer);
        let done = snapline_tests::done_jobs(&test.db, sync_me_file::QUEUE).await;
        assert!(
            (done as u64) < pushed,
            "round {round}: every sync was done before the kill ({done} of {pushed}): it hit an idle syncer"
        );
    }
    // A new replica picks up what the killed ones had taken (after their heartbeats stop).
    let _syncer = Served::start(&binary("syncer"), &test.url, &[]);
    wait_for("every sync done", || async {
        test.db
            .queue_jobs()
            .count_by_status(sync_me_file::QUEUE)
            .await
            .unwrap()
            == vec![("Done".to_owned(), pushed as i64)]
    })
    .await;
    for target in 1..=6 {
        assert_population_exact(&test.db, TargetId(target)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfiller_killed_at_several_points_then_rerun_fixes_everything_once() {
    let test = seeded(10_000, 0.5).await;
    let env = env(&[
        ("SNAPLINE_BACKFILLER__BATCH_SIZE", "200"),
        ("SNAPLINE_BACKFILLER__LEASE_TTL_SECS", "1"),
        ("RUST_LOG", "error"),
    ]);
    let nulls = || async {
        scalar(
            &test.db,
            "SELECT (SELECT COUNT(*) FROM target_populations WHERE matching_tags_snapshot IS NULL) \
             + (SELECT COUNT(*) FROM offers WHERE matching_tags_snapshot IS NULL) \
             + (SELECT COUNT(*) FROM ad_events WHERE matching_tags_snapshot IS NULL)",
        )
        .await
    };
    let null_ids = snapline_tests::null_snapshot_ids(&test.db).await;
    // The first kill lands among the populations, whose offers and ad_events are copied in
    // the same transactions: part of the populations filled, and no copy NULL beside a
    // population that was filled.
    let null_in = |table: &'static str| {
        let db = test.db.clone();
        async move {
            scalar(
                &db,
                &format!("SELECT COUNT(*) FROM {table} WHERE matching_tags_snapshot IS NULL"),
            )
            .await
        }
    };
    let copies_behind = || async {
        scalar(
            &test.db,
            "SELECT (SELECT COUNT(*) FROM offers c JOIN target_populations p \
               ON p.me_file_id = c.me_file_id AND p.target_band_id = c.target_band_id \
               WHERE c.matching_tags_snapshot IS NULL AND p.matching_tags_snapshot IS NOT NULL) \
             + (SELECT COUNT(*) FROM ad_events c JOIN target_populations p \
               ON p.me_file_id = c.me_file_id AND p.target_band_id = c.target_band_id \
               WHERE c.matching_tags_snapshot IS NULL AND p.matching_tags_snapshot IS NOT NULL)",
        )
        .await
    };
    // malformed legacy populations: their copies wait for the copy phase
    let behind_at_start = copies_behind().await;
    let populations_at_start = null_in("target_populations").await;
    let offers_at_start = null_in("offers").await;
    assert!(
        populations_at_start > 1_000,
        "{populations_at_start} NULL populations"
    );
    let slow = env
        .iter()
        .cloned()
        .chain([("SNAPLINE_BACKFILLER__BATCH_SIZE", "20".to_owned())])
        .collect::<Vec<_>>();
    let run = Served::spawn(&binary("backfiller"), &["run"], &test.url, &slow);
    wait_for("the populations under way", || async {
        null_in("target_populations").await < populations_at_start - 100
    })
    .await;
    run.signal("KILL");
    drop(run);
    let populations_left = null_in("target_populations").await;
    assert!(
        populations_left > 0,
        "killed among the populations: {populations_left} of {populations_at_start} left"
    );
    assert!(
        null_in("offers").await < offers_at_start,
        "offers copied with their populations"
    );
    assert_eq!(
        copies_behind().await,
        behind_at_start,
        "every population filled had its offers and ad_events filled in the same transaction"
    );

    let mut before = nulls().await;
    for delay in KILL_AFTER_MS {
        let run = Served::spawn(&binary("backfiller"), &["run"], &test.url, &slow);
        wait_for("the backfill to be under way", || async {
            nulls().await < before
        })
        .await;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        run.signal("KILL");
        drop(run);
        let now = nulls().await;
        // Killed with work left: more than the six rows nothing can fix are still NULL.
        assert!(
            now > 6,
            "the run killed after {delay} ms had already finished ({now} NULL left)"
        );
        before = now;
    }
    run_to_completion("backfiller", &["run"], &test.url, &env);
    snapline_tests::assert_backfill_owed(&test.db, &null_ids).await;
    let unfixable_populations = null_in("target_populations").await;
    let unfixable_offers = null_in("offers").await;

    // A kill in the copy phase: NULL offers on populations already filled (copied from
    // them) and orphan offers (a band the me_file is not in: built from its tags), with no
    // population left to fill.
    execute(
        &test.db,
        "INSERT INTO offers (campaign_id, me_file_id, target_band_id) \
         SELECT 1, me_file_id, target_band_id FROM target_populations \
         WHERE matching_tags_snapshot IS NOT NULL",
    )
    .await;
    execute(
        &test.db,
        "INSERT INTO offers (campaign_id, me_file_id, target_band_id) \
         SELECT 1, m.id, b.id FROM me_files m CROSS JOIN target_bands b \
         WHERE m.id % 40 = 0 AND NOT EXISTS (SELECT 1 FROM target_populations p \
           WHERE p.me_file_id = m.id AND p.target_band_id = b.id)",
    )
    .await;
    let copy_null_ids = snapline_tests::null_snapshot_ids(&test.db).await;
    let offers_at_copy = null_in("offers").await;
    assert!(offers_at_copy > 1_000, "{offers_at_copy} NULL offers");
    let run = Served::spawn(&binary("backfiller"), &["run"], &test.url, &slow);
    wait_for("the copies under way", || async {
        null_in("offers").await < offers_at_copy - 100
    })
    .await;
    run.signal("KILL");
    drop(run);
    let offers_left = null_in("offers").await;
    assert_eq!(
        null_in("target_populations").await,
        unfixable_populations,
        "killed in the copy phase: no population was left to fill"
    );
    assert!(
        offers_left > unfixable_offers,
        "killed in the middle of the copies: {offers_left} of {offers_at_copy} NULL offers left"
    );
    run_to_completion("backfiller", &["run"], &test.url, &env);
    snapline_tests::assert_backfill_owed(&test.db, &copy_null_ids).await;
    // Only the data set's six rows on deleted bands are left NULL.
    assert_eq!(nulls().await, 6);
    // Every (legacy) population carries the snapshot the rules give for its band.
    for target in 1..=6 {
        let wanted = oracle::rows_by_rules(&test.db, TargetId(target)).await;
        for (me_file, rows) in oracle::stored_json_rows(&test.db, TargetId(target)).await {
            let want = wanted
                .get(&me_file)
                .map(|(band, s)| vec![(*band, Some(s.clone()))]);
            assert_eq!(Some(rows), want, "target {target} me_file {me_file:?}");
        }
    }
    for table in ["offers", "ad_events"] {
        let wrong = scalar(
            &test.db,
            &format!(
                "SELECT COUNT(*) FROM {table} c JOIN target_populations p \
                 ON p.me_file_id = c.me_file_id AND p.target_band_id = c.target_band_id \
                 WHERE c.matching_tags_snapshot IS DISTINCT FROM p.matching_tags_snapshot"
            ),
        )
        .await;
        assert_eq!(wrong, 0, "{table} carry their population's snapshot");
    }
}

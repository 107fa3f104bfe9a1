//! The backfiller, end to end on PostgreSQL and SQLite.

use domain::{BandId, Snapshot, TargetId};
use jobs::backfill::{BackfillOptions, BackfillScope, backfill};
use jobs::backfill_queue::on_cron_tick;
use jobs::populate_target::{PopulateOptions, populate_target};
use snapline_tests::{
    Backend, InProcessWorker, TestDb, assert_backfill_owed, both_backends, entity_ids, execute,
    null_snapshot_ids, oracle, scalar, wait_for,
};
use std::collections::HashMap;
use synth::SeedOptions;

fn data(legacy_share: f64) -> SeedOptions {
    SeedOptions {
        me_files: 1_500,
        targets: 8,
        legacy_share,
        seed: 3,
        chunk_size: 500,
        deleted_band_offers: true,
    }
}

fn options() -> BackfillOptions {
    BackfillOptions {
        batch_size: 97,
        ..BackfillOptions::default()
    }
}

async fn nulls(test: &TestDb) -> [i64; 3] {
    let n = test.db.stats().null_snapshots().await.unwrap();
    [n.target_populations, n.offers, n.ad_events]
}

/// (me_file, band) -> snapshot of every population, parsed.
async fn population_snapshots(test: &TestDb) -> HashMap<(i64, i64), Snapshot> {
    let sql = match test.backend {
        Backend::Postgres => {
            "SELECT me_file_id, target_band_id, matching_tags_snapshot::text FROM target_populations WHERE matching_tags_snapshot IS NOT NULL"
        }
        Backend::Sqlite => {
            "SELECT me_file_id, target_band_id, matching_tags_snapshot FROM target_populations WHERE matching_tags_snapshot IS NOT NULL"
        }
    };
    rows3(test, sql)
        .await
        .into_iter()
        .map(|(m, b, s)| ((m, b), Snapshot::from_json(&s).unwrap()))
        .collect()
}

async fn copy_snapshots(test: &TestDb, table: &str) -> Vec<(i64, i64, Snapshot)> {
    let cast = if test.backend == Backend::Postgres {
        "::text"
    } else {
        ""
    };
    rows3(test, &format!("SELECT me_file_id, target_band_id, matching_tags_snapshot{cast} FROM {table} WHERE matching_tags_snapshot IS NOT NULL"))
        .await
        .into_iter()
        .map(|(m, b, s)| (m, b, Snapshot::from_json(&s).unwrap()))
        .collect()
}

async fn rows3(test: &TestDb, sql: &str) -> Vec<(i64, i64, String)> {
    use sea_orm::ConnectionTrait;
    let conn = test.db.conn();
    conn.query_all_raw(sea_orm::Statement::from_string(
        conn.get_database_backend(),
        sql,
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.try_get_by_index(0).unwrap(),
            r.try_get_by_index(1).unwrap(),
            r.try_get_by_index(2).unwrap(),
        )
    })
    .collect()
}

/// Populations, offers and ad_events are all fixed with the right snapshots; orphans are
/// computed from tags; rows on deleted bands stay NULL and are counted.
async fn everything_fixable_is_fixed(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.2)).await;
    let before = nulls(&test).await;
    assert!(before.iter().all(|n| *n > 0));
    let null_ids = null_snapshot_ids(&test.db).await;
    let report = backfill(&test.db, &BackfillScope::All, &options(), &|_| {})
        .await
        .unwrap();
    // Every fixed value, orphans' included, as the set-based SQL computes it (PostgreSQL).
    assert_backfill_owed(&test.db, &null_ids).await;
    assert_eq!(report.found, before);
    assert_eq!(report.populations_fixed as i64, before[0]);
    assert_eq!(
        report.unfixable, 6,
        "3 offers and 3 ad_events on deleted bands: {report}"
    );
    assert_eq!(report.unfixable_ids.len(), 6);
    assert!(
        report
            .unfixable_ids
            .iter()
            .all(|id| id.starts_with("offers:") || id.starts_with("ad_events:")),
        "{:?}",
        report.unfixable_ids
    );
    assert!(report.orphans > 0, "{report}");
    assert_eq!(nulls(&test).await, [0, 3, 3]);

    // populations in their member's band: the rules' snapshot of current tags
    for target in 1..=8 {
        let wanted = oracle::rows_by_rules(&test.db, TargetId(target)).await;
        for (me_file, rows) in oracle::stored_json_rows(&test.db, TargetId(target)).await {
            for (band, stored) in rows {
                if let Some((member_of, snapshot)) = wanted.get(&me_file)
                    && *member_of == band
                {
                    assert_eq!(
                        stored.as_ref(),
                        Some(snapshot),
                        "me_file {me_file} band {band}"
                    );
                }
            }
        }
    }
    let populations = population_snapshots(&test).await;
    // copies: their population's snapshot when there is one
    for table in ["offers", "ad_events"] {
        let copies = copy_snapshots(&test, table).await;
        assert!(!copies.is_empty());
        for (me_file, band, snapshot) in copies {
            if let Some(population) = populations.get(&(me_file, band)) {
                assert_eq!(population, &snapshot, "{table} of me_file {me_file}");
            }
        }
    }
}

async fn an_offer_is_fixed_when_its_population_is_already_fine(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.2)).await;
    for target in 1..=8 {
        populate_target(&test.db, TargetId(target), &PopulateOptions::default())
            .await
            .unwrap();
    }
    let before = nulls(&test).await;
    assert_eq!(before[0], 0, "the populator filled every population");
    assert!(before[1] > 3);
    let report = backfill(&test.db, &BackfillScope::All, &options(), &|_| {})
        .await
        .unwrap();
    assert_eq!(report.populations_fixed, 0);
    assert_eq!(report.offers_fixed as i64, before[1] - 3);
    assert_eq!(nulls(&test).await, [0, 3, 3]);
}

async fn existing_snapshots_are_never_overwritten(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.2)).await;
    let db = &test.db;
    // a history snapshot on an offer whose population is NULL, and one written "concurrently"
    execute(db, r#"UPDATE offers SET matching_tags_snapshot = '{"tags":[[1,"history",1,[]]]}' WHERE id = (SELECT MIN(id) FROM offers WHERE target_band_id < 1000)"#).await;
    let stale = vec![(
        domain::PopulationId(scalar(db, "SELECT MIN(id) FROM target_populations").await),
        r#"{"tags":[]}"#.to_owned(),
    )];
    execute(db, r#"UPDATE target_populations SET matching_tags_snapshot = '{"tags":[[9,"concurrent",1,[]]]}' WHERE id = (SELECT MIN(id) FROM target_populations)"#).await;
    let tx = db.begin_write().await.unwrap();
    assert_eq!(
        tx.backfill().fill_populations(&stale).await.unwrap(),
        0,
        "re-checks IS NULL"
    );
    tx.commit().await.unwrap();

    backfill(db, &BackfillScope::All, &options(), &|_| {})
        .await
        .unwrap();
    let kept = scalar(db, r#"SELECT COUNT(*) FROM offers WHERE matching_tags_snapshot IS NOT NULL AND id = (SELECT MIN(id) FROM offers WHERE target_band_id < 1000)"#).await;
    assert_eq!(kept, 1);
    let history: Vec<(i64, i64, Snapshot)> = copy_snapshots(&test, "offers").await;
    assert!(
        history
            .iter()
            .any(|(_, _, s)| s.tags.first().is_some_and(|p| p.1 == "history"))
    );
    let populations = population_snapshots(&test).await;
    assert!(
        populations
            .values()
            .any(|s| s.tags.first().is_some_and(|p| p.1 == "concurrent"))
    );
}

async fn a_dry_run_writes_nothing(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.2)).await;
    let before = nulls(&test).await;
    let report = backfill(
        &test.db,
        &BackfillScope::All,
        &BackfillOptions {
            dry_run: true,
            ..options()
        },
        &|_| {},
    )
    .await
    .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.populations_fixed as i64, before[0]);
    assert_eq!(report.offers_fixed as i64, before[1] - 3);
    assert_eq!(report.ad_events_fixed as i64, before[2] - 3);
    assert_eq!(report.unfixable, 6);
    assert_eq!(nulls(&test).await, before, "nothing written");

    // It reports what the real run then does, orphans included: offers whose population is
    // NULL now are filled from it by the real run, not computed as orphans.
    let real = backfill(&test.db, &BackfillScope::All, &options(), &|_| {})
        .await
        .unwrap();
    let counts = |r: &jobs::backfill::BackfillReport| {
        (
            r.populations_fixed,
            r.offers_fixed,
            r.ad_events_fixed,
            r.orphans,
            r.unfixable,
            r.without_references,
        )
    };
    assert_eq!(counts(&report), counts(&real), "dry {report} / real {real}");
}

/// Millions of rows on deleted bands cost no memory: the report keeps a count and the
/// first ids only.
async fn unfixable_rows_are_counted_and_only_the_first_ids_kept(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.2)).await;
    let report = backfill(
        &test.db,
        &BackfillScope::All,
        &BackfillOptions {
            unfixable_ids_kept: 2,
            batch_size: 2,
            ..options()
        },
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.unfixable, 6, "{report}");
    assert_eq!(report.unfixable_ids.len(), 2, "{:?}", report.unfixable_ids);
}

/// The warning threshold counts each table on its own: 3 + 4 + 4 NULLs under a threshold
/// of 10 warn about none; 11 in one table warns about that table only.
async fn the_null_warning_is_per_table(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.2)).await;
    let db = &test.db;
    let set_null = |table: &str, limit: i64| {
        format!(
            "UPDATE {table} SET matching_tags_snapshot = NULL WHERE id IN \
             (SELECT id FROM {table} ORDER BY id LIMIT {limit})"
        )
    };
    for table in ["target_populations", "offers", "ad_events"] {
        execute(
            db,
            &format!(
                "UPDATE {table} SET matching_tags_snapshot = '{{\"tags\": []}}' \
                 WHERE matching_tags_snapshot IS NULL"
            ),
        )
        .await;
        execute(db, &set_null(table, 4)).await;
    }
    execute(
        db,
        "UPDATE target_populations SET matching_tags_snapshot = '{\"tags\": []}' \
         WHERE id = (SELECT MIN(id) FROM target_populations WHERE matching_tags_snapshot IS NULL)",
    )
    .await;
    let threshold = BackfillOptions {
        warn_threshold: 10,
        dry_run: true,
        ..options()
    };
    let report = backfill(db, &BackfillScope::All, &threshold, &|_| {})
        .await
        .unwrap();
    assert_eq!(report.found, [3, 4, 4]);
    assert!(
        report.above_threshold.is_empty(),
        "{:?}",
        report.above_threshold
    );

    execute(db, &set_null("offers", 11)).await;
    let report = backfill(db, &BackfillScope::All, &threshold, &|_| {})
        .await
        .unwrap();
    assert_eq!(report.above_threshold, ["offers"]);
}

/// A population whose snapshot is not `{"tags": [...]}` (`"legacy"`, `{}`, JSON `null`) is
/// never copied into a NULL offer (offers are history): the offer gets the snapshot computed
/// from tags, and so does the population.
async fn malformed_population_snapshots_are_never_copied(backend: Backend) {
    let test = TestDb::populated(backend, &data(0.0)).await;
    let db = &test.db;
    let ids = entity_ids(db, "SELECT id FROM target_populations ORDER BY id LIMIT 3").await;
    let cast = if backend == Backend::Postgres {
        "::jsonb"
    } else {
        ""
    };
    for (id, bad) in ids.iter().zip([r#""legacy""#, "{}", "null"]) {
        execute(
            db,
            &format!(
                "UPDATE target_populations SET matching_tags_snapshot = '{bad}'{cast} WHERE id = {id}"
            ),
        )
        .await;
    }
    execute(
        db,
        &format!(
            "INSERT INTO offers (campaign_id, me_file_id, target_band_id) \
             SELECT 1, me_file_id, target_band_id FROM target_populations WHERE id IN ({}, {}, {})",
            ids[0], ids[1], ids[2]
        ),
    )
    .await;
    let null_offers = null_snapshot_ids(db).await;
    let report = backfill(db, &BackfillScope::All, &options(), &|_| {})
        .await
        .unwrap();
    assert_backfill_owed(db, &null_offers).await;
    assert_eq!(report.malformed_populations, 3, "{report}");
    assert_eq!(report.offers_fixed, 3, "{report}");
    assert_eq!(report.orphans, 0, "{report}");
    let populations = population_snapshots(&test).await;
    let offers = copy_snapshots(&test, "offers").await;
    assert_eq!(offers.len(), 3);
    for (me_file, band, snapshot) in &offers {
        assert_eq!(Some(snapshot), populations.get(&(*me_file, *band)));
    }
    for target in 1..=8 {
        snapline_tests::assert_population_exact(db, TargetId(target)).await;
    }
}

async fn a_killed_run_is_finished_by_the_next(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.5)).await;
    let db = test.db.clone();
    let small = BackfillOptions {
        batch_size: 20,
        lease_ttl: std::time::Duration::from_secs(1),
        ..options()
    };
    let null_ids = null_snapshot_ids(&db).await;
    let first = {
        let db = db.clone();
        let small = small.clone();
        tokio::spawn(async move { backfill(&db, &BackfillScope::All, &small, &|_| {}).await })
    };
    let total_before = nulls(&test).await[0];
    let started = std::time::Instant::now();
    while nulls(&test).await[0] > total_before / 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        tokio::task::yield_now().await;
    }
    first.abort();
    let _ = first.await;
    assert!(nulls(&test).await[0] > 0, "killed before the end");
    let report = backfill(&db, &BackfillScope::All, &small, &|_| {})
        .await
        .unwrap();
    assert!(report.populations_fixed > 0);
    assert_eq!(nulls(&test).await, [0, 3, 3]);
    assert_backfill_owed(&db, &null_ids).await;
}

async fn a_clean_database_exits_early(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.0)).await;
    let report = backfill(&test.db, &BackfillScope::All, &options(), &|_| {})
        .await
        .unwrap();
    assert_eq!(report.found, [0, 0, 0]);
    assert_eq!(report.batches, 0);
    assert_eq!(report.fixed(), 0);
}

async fn a_band_job_touches_only_its_band(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.3)).await;
    let db = &test.db;
    let band = BandId(scalar(db, "SELECT MIN(target_band_id) FROM target_populations").await);
    let report = backfill(db, &BackfillScope::Bands(vec![band]), &options(), &|_| {})
        .await
        .unwrap();
    assert!(report.populations_fixed > 0);
    let sql = |table: &str, op: &str| {
        format!(
            "SELECT COUNT(*) FROM {table} WHERE matching_tags_snapshot IS NULL AND target_band_id {op} {}",
            band.0
        )
    };
    assert_eq!(scalar(db, &sql("target_populations", "=")).await, 0);
    assert_eq!(scalar(db, &sql("offers", "=")).await, 0);
    assert!(
        scalar(db, &sql("target_populations", "<>")).await > 0,
        "other bands untouched"
    );
    assert!(scalar(db, &sql("offers", "<>")).await > 0);
}

/// Two replicas see the same cron tick: exactly one pushes the job.
async fn a_cron_tick_runs_once_with_two_backfillers(backend: Backend) {
    let test = TestDb::migrated(backend).await;
    let db = test.db.clone();
    // Two replicas racing on one tick: one job; a later call for that tick adds nothing.
    let (a, b) = tokio::join!(
        on_cron_tick(&db, 1_700_000_000, "replica-a"),
        on_cron_tick(&db, 1_700_000_000, "replica-b")
    );
    let mut pushed = [a.unwrap(), b.unwrap()];
    pushed.sort();
    assert_eq!(
        pushed,
        [false, true],
        "exactly one of them pushed, neither failed"
    );
    assert!(
        !on_cron_tick(&db, 1_700_000_000, "replica-c").await.unwrap(),
        "no second job for a tick"
    );
    assert_eq!(
        db.queue_jobs()
            .of_queue(jobs::backfill_queue::QUEUE)
            .await
            .unwrap()
            .len(),
        1,
        "one job for the tick"
    );
    assert!(
        on_cron_tick(&db, 1_700_003_600, "replica-b").await.unwrap(),
        "the next tick"
    );
    execute(
        &db,
        match test.backend {
            Backend::Postgres => "DELETE FROM apalis.jobs",
            Backend::Sqlite => "DELETE FROM Jobs",
        },
    )
    .await;

    // Two real schedulers firing every second for a while.
    let now_secs = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let table = match test.backend {
        Backend::Postgres => "apalis.jobs",
        Backend::Sqlite => "Jobs",
    };
    let ticks_sql = |what: &str| {
        format!("SELECT {what} FROM {table} WHERE idempotency_key LIKE 'backfill_tick:%'",)
    };
    let tick_second = "CAST(substr(idempotency_key, 15) AS BIGINT)";
    let started_at = now_secs();
    let schedule = jobs::backfill_queue::parse_schedule("* * * * * *").unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut crons = Vec::new();
    for replica in ["replica-a", "replica-b"] {
        let db = db.clone();
        let schedule = schedule.clone();
        let mut stopped = stopped.clone();
        crons.push(tokio::spawn(async move {
            jobs::backfill_queue::serve_cron(
                db,
                schedule,
                replica.into(),
                jobs::backfill_queue::Scheduled::Backfill,
                async move {
                    let _ = stopped.changed().await;
                },
            )
            .await
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    // Stopped only once the tick of this second is in: none may be missing at the end.
    let last_due = now_secs();
    wait_for(
        "the tick of the second the schedulers are stopped in",
        || async {
            entity_ids(&db, &ticks_sql(&format!("COALESCE(MAX({tick_second}), 0)"))).await[0]
                >= last_due
        },
    )
    .await;
    stop.send(true).unwrap();
    for cron in crons {
        cron.await.unwrap().unwrap();
    }
    let jobs = db
        .queue_jobs()
        .of_queue(jobs::backfill_queue::QUEUE)
        .await
        .unwrap();
    let distinct_ticks = entity_ids(&db, &ticks_sql("COUNT(DISTINCT idempotency_key)")).await[0];
    let first = entity_ids(&db, &ticks_sql(&format!("MIN({tick_second})"))).await[0];
    let last = entity_ids(&db, &ticks_sql(&format!("MAX({tick_second})"))).await[0];
    assert_eq!(
        jobs.len() as i64,
        distinct_ticks,
        "one job per tick: {jobs:?}"
    );
    // None lost: every second from the first tick to the last has its tick, the first is
    // the next second after the start (or the one after, when a scheduler's task started
    // across a second boundary) and the last is the second they were stopped in.
    assert_eq!(
        last - first + 1,
        distinct_ticks,
        "every second from {first} to {last} has its tick"
    );
    assert!(
        first <= started_at + 2,
        "first tick {first}, schedulers started at {started_at}"
    );
    assert!(last >= last_due, "last tick {last}, stopped at {last_due}");
}

async fn backfill_jobs_run_through_a_worker(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.2)).await;
    let db = test.db.clone();
    jobs::backfill_queue::enqueue(
        &db,
        jobs::backfill_queue::BackfillJob::All(Default::default()),
    )
    .await
    .unwrap();
    let ctx = jobs::backfill_queue::BackfillerContext {
        db: db.clone(),
        options: options(),
        replica: "test".into(),
    };
    let worker = InProcessWorker::start(move |stopped| async move {
        jobs::backfill_queue::serve(
            ctx,
            &jobs::worker::WorkerOptions::new("backfill-test"),
            stopped,
        )
        .await
    });
    let started = std::time::Instant::now();
    while !db
        .queue_jobs()
        .of_queue(jobs::backfill_queue::QUEUE)
        .await
        .unwrap()
        .iter()
        .all(|j| j.status == "Done")
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    worker.stop().await;
    assert_eq!(nulls(&test).await, [0, 3, 3]);
}

/// Rows whose band or me_file is NULL (the platform's columns allow it): every job counts
/// them, leaves them as they are, and does not fail on them.
async fn rows_without_band_or_me_file_are_left_alone(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.2)).await;
    let db = &test.db;
    let band = entity_ids(db, "SELECT MIN(id) FROM target_bands WHERE target_id = 1")
        .await
        .remove(0);
    execute(
        db,
        &format!(
            "INSERT INTO target_populations (target_band_id, me_file_id) \
             VALUES ({band}, NULL), (NULL, 5), (NULL, NULL); \
             INSERT INTO ad_events (offer_id, me_file_id, target_band_id) \
             VALUES (NULL, 5, NULL), (1, NULL, {band})"
        ),
    )
    .await;
    let orphans = "SELECT (SELECT COUNT(*) FROM target_populations WHERE (target_band_id IS NULL \
                   OR me_file_id IS NULL) AND matching_tags_snapshot IS NULL) \
                   + (SELECT COUNT(*) FROM ad_events WHERE (target_band_id IS NULL \
                   OR me_file_id IS NULL) AND matching_tags_snapshot IS NULL)";
    populate_target(db, TargetId(1), &PopulateOptions::default())
        .await
        .expect("populate");
    snapline_tests::assert_population_exact(db, TargetId(1)).await;
    let cache = jobs::BandCache::new(std::time::Duration::ZERO);
    jobs::sync_me_file::sync_me_file(db, &cache, domain::MeFileId(5))
        .await
        .expect("sync");
    let report = backfill(db, &BackfillScope::All, &options(), &|_| {})
        .await
        .expect("backfill");
    assert_eq!(report.without_references, 5, "{report}");
    snapline_tests::read_every_entity(db).await;
    assert_eq!(scalar(db, orphans).await, 5, "left as they are");
    assert_eq!(
        nulls(&test).await[0],
        3,
        "every other population has its snapshot"
    );
    let again = backfill(db, &BackfillScope::All, &options(), &|_| {})
        .await
        .expect("the hourly run does not fail on them");
    assert_eq!((again.fixed(), again.without_references), (0, 5));
}

both_backends! {
    null_references => rows_without_band_or_me_file_are_left_alone;
    unfixable_ids_bounded => unfixable_rows_are_counted_and_only_the_first_ids_kept;
    warning_per_table => the_null_warning_is_per_table;
    malformed_snapshots => malformed_population_snapshots_are_never_copied;
    everything_fixable_is_fixed => everything_fixable_is_fixed;
    offer_with_healthy_population => an_offer_is_fixed_when_its_population_is_already_fine;
    never_overwrites => existing_snapshots_are_never_overwritten;
    dry_run => a_dry_run_writes_nothing;
    kill_and_rerun => a_killed_run_is_finished_by_the_next;
    early_exit => a_clean_database_exits_early;
    band_job_scope => a_band_job_touches_only_its_band;
    cron_tick_once => a_cron_tick_runs_once_with_two_backfillers;
    worker => backfill_jobs_run_through_a_worker;
}

/// A replica that dies in the middle of its push of a cron tick (its insert made, its
/// transaction never committed) does not lose the tick: another replica's push of the same
/// tick waits for it, then lands once the dead one's transaction is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_is_not_lost_when_a_replica_dies_mid_push() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let test = TestDb::migrated(Backend::Postgres).await;
    let db = test.db.clone();
    let tick = 1_700_007_200u64;
    let dying = db.conn().begin().await.unwrap();
    dying
        .execute_unprepared(&format!(
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, \
             priority, idempotency_key) VALUES (apalis.generate_ulid(), 'backfill', \
             convert_to('{{}}', 'UTF8'), 'Pending', 0, 5, now(), 0, 'backfill_tick:{tick}')"
        ))
        .await
        .unwrap();
    let other = {
        let db = db.clone();
        tokio::spawn(async move { on_cron_tick(&db, tick, "replica-b").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !other.is_finished(),
        "the other replica's push waits for the in-flight one"
    );
    drop(dying); // the replica dies: its transaction rolls back
    assert!(
        other.await.unwrap().expect("the push lands"),
        "the other replica pushed the tick"
    );
    assert_eq!(
        scalar(
            &db,
            &format!(
                "SELECT COUNT(*) FROM apalis.jobs WHERE idempotency_key = 'backfill_tick:{tick}'"
            )
        )
        .await,
        1,
        "the tick has exactly one job"
    );
}

/// The optional guard: once enabled no writer can add a NULL; it validates once the backfill
/// left none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_blocks_new_nulls_and_validates_after_the_backfill() {
    let test = TestDb::seeded(Backend::Postgres, &data(0.2)).await;
    let db = &test.db;
    db.guard().enable().await.unwrap();
    db.guard()
        .enable()
        .await
        .expect("enabling twice is harmless");
    use sea_orm::ConnectionTrait;
    let insert = db
        .conn()
        .execute_unprepared(
            "INSERT INTO offers (campaign_id, me_file_id, target_band_id) VALUES (1, 1, 1)",
        )
        .await;
    let refused = insert.expect_err("a new NULL is refused").to_string();
    assert!(
        refused.contains("offers_snapshot_not_null"),
        "refused by the guard's constraint, not another error: {refused}"
    );
    assert!(db.guard().validate().await.is_err(), "legacy NULLs remain");

    backfill(db, &BackfillScope::All, &options(), &|_| {})
        .await
        .unwrap();
    execute(
        db,
        "DELETE FROM offers WHERE matching_tags_snapshot IS NULL",
    )
    .await;
    execute(
        db,
        "DELETE FROM ad_events WHERE matching_tags_snapshot IS NULL",
    )
    .await;
    assert_eq!(db.guard().validate().await.unwrap(), 3);
    assert!(
        db.guard()
            .state()
            .await
            .unwrap()
            .iter()
            .all(|s| s.present && s.validated)
    );
    db.guard().disable().await.unwrap();
    assert!(db.guard().state().await.unwrap().iter().all(|s| !s.present));
}

/// A backfill running under `backfiller serve` logs its progress (rows done, total, rate)
/// between "found" and "finished", as `run` does without a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_backfill_logs_its_progress() {
    let test = TestDb::seeded(Backend::Postgres, &data(0.3)).await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("backfiller.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut serve = std::process::Command::new(snapline_tests::binary("backfiller"))
        .arg("serve")
        .env("SNAPLINE_PROFILE", "test")
        .env("DATABASE_URL", &test.url)
        .env("RUST_LOG", "info")
        .env("SNAPLINE_LOG__FORMAT", "json")
        .env("SNAPLINE_BACKFILLER__BATCH_SIZE", "50")
        .env("SNAPLINE_BACKFILLER__PROGRESS_LOG_SECS", "0")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("backfiller serve starts");
    jobs::backfill_queue::enqueue(
        &test.db,
        jobs::backfill_queue::BackfillJob::All(Default::default()),
    )
    .await
    .unwrap();
    snapline_tests::wait_for("the backfill job to finish", || async {
        nulls(&test).await[0] == 0 && snapline_tests::unfinished_jobs(&test.db).await.0.is_empty()
    })
    .await;
    let _ = serve.kill();
    let _ = serve.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let progress: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("backfill progress"))
        .collect();
    assert!(progress.len() >= 3, "{text}");
    assert!(
        progress.iter().all(|l| l.contains("\"done\"")
            && l.contains("\"total\"")
            && l.contains("rows_per_sec")),
        "{progress:?}"
    );
    assert!(
        progress
            .iter()
            .all(|l| l.contains("backfill_missing_snapshots")),
        "each line carries the job's span: {progress:?}"
    );
}

/// The in-database copy of offers' and ad_events' snapshots takes a population's snapshot
/// only when its check says it is well-formed: that check must never take one the domain
/// refuses (it would copy a malformed snapshot into history), and must take every snapshot
/// the jobs write (or nothing is copied inside the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_databases_snapshot_check_is_never_looser_than_the_domain() {
    let test = TestDb::populated(Backend::Postgres, &data(0.0)).await;
    let db = &test.db;
    let reference = db.reference();
    let written = population_snapshots(&test).await;
    assert!(written.len() > 100);
    for snapshot in written.values() {
        assert!(
            reference
                .snapshot_is_well_formed(&snapshot.to_json())
                .await
                .unwrap(),
            "{snapshot:?}"
        );
    }
    // (stored JSON, what the check says)
    let cases = [
        (r#"{"tags": []}"#, true),
        (r#"{"tags": [], "other": 1}"#, true),
        (r#"{"tags": [[1, "Gender", null, []]]}"#, true),
        (
            r#"{"tags": [[1, "Gender", 1, [[11, "", null], [12, "<b>", -3]]]]}"#,
            true,
        ),
        (r#"{"tags": [[-0, "G", 1e2, []]]}"#, true),
        (
            r#"{"tags": [[123456789, "G", -123456789, [[987654321, "v", null]]]]}"#,
            true,
        ),
        (r#"{"tags": [[1234567890, "G", 1, []]]}"#, false),
        (r#""legacy""#, false),
        ("{}", false),
        ("null", false),
        ("[]", false),
        (r#"{"tags": {}}"#, false),
        (r#"{"tags": null}"#, false),
        (r#"{"tags": [1]}"#, false),
        (r#"{"tags": [[1, "G", 1]]}"#, false),
        (r#"{"tags": [[1, "G", 1, [], 5]]}"#, false),
        (r#"{"tags": [["1", "G", 1, []]]}"#, false),
        (r#"{"tags": [[1.5, "G", 1, []]]}"#, false),
        (r#"{"tags": [[1.0, "G", 1, []]]}"#, false),
        (r#"{"tags": [[1, "G", 2.0, []]]}"#, false),
        (r#"{"tags": [[1, "G", 1, [[2, "v", 1.0]]]]}"#, false),
        (
            r#"{"tags": [[1, "G", 1, [[2, "B.A. 2.5, hons", 1]]]]}"#,
            false,
        ),
        (r#"{"tags": [[1, 2, 1, []]]}"#, false),
        (r#"{"tags": [[1, "G", "1", []]]}"#, false),
        (r#"{"tags": [[1, "G", 1, {}]]}"#, false),
        (r#"{"tags": [[1, "G", 1, [[2, "v"]]]]}"#, false),
        (r#"{"tags": [[1, "G", 1, [[2, "v", 1, 4]]]]}"#, false),
        (r#"{"tags": [[1, "G", 1, [[2, null, 1]]]]}"#, false),
        (r#"{"tags": [[1, "G", 1, [[2, "v", 3000000000]]]]}"#, false),
        (r#"{"tags": [[99999999999999999999, "G", 1, []]]}"#, false),
        (r#"{"tags": [[1, "G", 1, [[2, "v", true]]]]}"#, false),
        (r#"{"tags": [[1, "G", 1, []]], "tags": 5}"#, false),
    ];
    for (json, expected) in cases {
        let checked = reference.snapshot_is_well_formed(json).await.unwrap();
        assert_eq!(checked, expected, "{json}");
        // What the backfill would read of it: PostgreSQL's own text of the jsonb.
        let stored: String = sqlx::query_scalar("SELECT $1::jsonb::text")
            .bind(json)
            .fetch_one(db.pg_pool().unwrap())
            .await
            .unwrap();
        if checked {
            assert!(
                Snapshot::from_json(&stored).is_ok(),
                "looser than the domain: {json}"
            );
        }
    }
}

/// The PostgreSQL-only fast paths are asked for by name: PostgreSQL has them, SQLite has
/// none, and a method of one refuses to run where it is missing (it used to return nothing
/// written on SQLite, silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_paths_are_named_and_refused_where_missing() {
    use repo::{CopyTable, FastPath, RepoError};
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let test = TestDb::migrated(backend).await;
        let db = &test.db;
        for path in [
            FastPath::CopiesInDatabase,
            FastPath::PopulatePushMarkingTarget,
        ] {
            assert_eq!(
                db.has_fast_path(path),
                backend == Backend::Postgres,
                "{backend:?} {path:?}"
            );
        }
        let copies = db
            .backfill()
            .copy_population_snapshots(CopyTable::Offers, &[])
            .await;
        let push = db.queue_jobs().push_populate_marking_target(1, 5).await;
        match backend {
            Backend::Postgres => {
                assert!(copies.unwrap().is_empty());
                // no target 1 in an empty database: the statement runs and marks nothing
                assert!(push.is_ok(), "{push:?}");
            }
            Backend::Sqlite => {
                for err in [copies.err(), push.err()] {
                    assert!(
                        matches!(err, Some(RepoError::NeedsPostgres { .. })),
                        "{err:?}"
                    );
                }
            }
        }
    }
}

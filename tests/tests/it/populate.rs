//! The populator's behaviour end to end, on PostgreSQL and SQLite.

use domain::MeFileId;
use domain::{PopulationStatus, TargetId};
use jobs::JobError;
use jobs::populate_target::{
    CHUNK_QUEUE, PopulateChunk, PopulateOptions, populate_chunk, populate_target,
    populate_target_on_queue,
};
use jobs::sync_me_file::sync_me_file;
use snapline_tests::{
    Backend, TestDb, assert_population_exact, both_backends, execute, scalar, stored_rows, wait_for,
};
use std::time::Duration;
use synth::SeedOptions;

fn data(legacy_share: f64) -> SeedOptions {
    SeedOptions {
        me_files: 3_000,
        targets: 8,
        legacy_share,
        seed: 11,
        chunk_size: 1_000,
        deleted_band_offers: true,
    }
}

fn small_batches() -> PopulateOptions {
    PopulateOptions {
        batch_size: 257,
        // Runs of three chunks and more: every test crosses chunk boundaries.
        chunk_me_files: 1_000,
        ..PopulateOptions::default()
    }
}

async fn populate_from_empty_then_rerun_is_a_no_op(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.0)).await;
    for target in 1..=5 {
        let summary = populate_target(&test.db, TargetId(target), &small_batches())
            .await
            .expect("populates");
        assert_eq!(summary.status, "populated");
        assert_eq!(summary.moved + summary.deleted + summary.refreshed, 0);
        assert_population_exact(&test.db, TargetId(target)).await;
        assert_eq!(
            snapline_tests::target_status(&test.db, TargetId(target)).await,
            Some(PopulationStatus::Populated)
        );
    }
    let first = stored_rows(&test.db, TargetId(1)).await;
    assert!(first.len() > 2_000, "the broad target holds most me_files");
    let stamped = scalar(
        &test.db,
        "SELECT COUNT(*) FROM targets WHERE last_populated_at IS NOT NULL",
    )
    .await;
    assert_eq!(stamped, 5);

    let again = populate_target(&test.db, TargetId(1), &small_batches())
        .await
        .unwrap();
    assert_eq!(again.changes(), 0, "{again}");
    assert_eq!(again.unchanged as usize, first.len());
    assert_eq!(stored_rows(&test.db, TargetId(1)).await, first);
}

/// Deleting tags drops members, adding tags moves them inward or brings new ones, editing a
/// value and legacy NULL rows refresh snapshots.
async fn repopulate_after_tags_change(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.2)).await;
    let db = &test.db;
    let target = TargetId(1);
    let first = populate_target(db, target, &small_batches()).await.unwrap();
    assert!(first.refreshed > 0, "legacy NULL rows were filled: {first}");

    // Age tags (the outer band's only group) gone for me_files 1..=200: they leave.
    execute(
        db,
        "DELETE FROM me_file_tags WHERE me_file_id <= 200 AND trait_id BETWEEN 20001 AND 20006",
    )
    .await;
    // Everyone 201..=600 becomes a home owner: outer and middle members move to the bullseye.
    execute(db, "DELETE FROM me_file_tags WHERE me_file_id BETWEEN 201 AND 600 AND trait_id IN (40001, 40002)").await;
    execute(db, "INSERT INTO me_file_tags (me_file_id, trait_id, tag_value) SELECT id, 40001, 'own' FROM me_files WHERE id BETWEEN 201 AND 600").await;
    // New age tags for me_files that had none: new members.
    execute(db, "INSERT INTO me_file_tags (me_file_id, trait_id, tag_value) SELECT m.id, 20003, NULL FROM me_files m WHERE m.id > 600 AND NOT EXISTS (SELECT 1 FROM me_file_tags t WHERE t.me_file_id = m.id AND t.trait_id BETWEEN 20001 AND 20006)").await;
    // A value edit changes the snapshot only.
    execute(db, "UPDATE me_file_tags SET tag_value = 'edited ''value'' \\ ✓' WHERE me_file_id BETWEEN 601 AND 700 AND trait_id BETWEEN 20001 AND 20006").await;
    // A snapshot someone else nulled out.
    execute(db, "UPDATE target_populations SET matching_tags_snapshot = NULL WHERE me_file_id BETWEEN 701 AND 720").await;

    let summary = populate_target(db, target, &small_batches()).await.unwrap();
    assert!(summary.deleted >= 150, "{summary}");
    assert!(summary.moved >= 50, "{summary}");
    assert!(summary.inserted > 0, "{summary}");
    assert!(summary.refreshed >= 90, "{summary}");
    assert_population_exact(db, target).await;
    let again = populate_target(db, target, &small_batches()).await.unwrap();
    assert_eq!(again.changes(), 0, "{again}");
}

async fn unknown_target_fails_permanently(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.0)).await;
    let err = populate_target(&test.db, TargetId(4_242), &small_batches())
        .await
        .expect_err("unknown target");
    assert!(
        matches!(err, JobError::UnknownTarget(TargetId(4_242))),
        "{err}"
    );
    assert!(!err.is_transient());
    assert!(err.to_string().contains("4242"));
}

async fn target_without_bands_ends_not_populated(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.0)).await;
    let summary = populate_target(&test.db, TargetId(6), &small_batches())
        .await
        .unwrap();
    assert_eq!(summary.status, "not_populated");
    assert_eq!(summary.changes(), 0);
    assert_eq!(
        snapline_tests::target_status(&test.db, TargetId(6)).await,
        Some(PopulationStatus::NotPopulated)
    );
}

async fn empty_trait_group_and_non_nested_targets(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.0)).await;
    let db = &test.db;
    populate_target(db, TargetId(4), &small_batches())
        .await
        .unwrap();
    assert_population_exact(db, TargetId(4)).await;
    let inner = db.bands().of_target(TargetId(4)).await.unwrap().bands()[1].id;
    let rows = stored_rows(db, TargetId(4)).await;
    assert!(!rows.is_empty());
    assert!(
        rows.values().flatten().all(|(band, _)| *band != inner),
        "nobody reaches a band with an empty trait group"
    );

    populate_target(db, TargetId(3), &small_batches())
        .await
        .unwrap();
    assert_population_exact(db, TargetId(3)).await;
    let bands = db.bands().of_target(TargetId(3)).await.unwrap();
    let rows = stored_rows(db, TargetId(3)).await;
    for band in bands.bands() {
        assert!(
            rows.values().flatten().any(|(b, _)| *b == band.id),
            "band {} of the non-nested target has members",
            band.id
        );
    }
}

async fn orphan_rows_are_left_alone_and_counted(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.0)).await;
    let db = &test.db;
    // Three bands that are gone, below and above the ids of the bands that exist.
    execute(db, "INSERT INTO target_populations (target_band_id, me_file_id) VALUES (777777, 1), (777777, 2), (0, 3), (-5, 4)").await;
    let summary = populate_target(db, TargetId(1), &small_batches())
        .await
        .unwrap();
    assert_eq!(summary.orphans, 4);
    assert_eq!(
        scalar(db, snapline_tests::ORPHAN_POPULATIONS_BY_SCAN).await,
        4
    );
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM target_populations WHERE target_band_id = 777777"
        )
        .await,
        2
    );
    if backend == Backend::Postgres {
        // Planned at every call, never kept as a connection's prepared statement: a plan
        // made while the table was small would stay as it grew (see `count_orphans`).
        let mut options = repo::DbOptions::new(test.url.clone());
        options.max_connections = 1;
        let one = repo::Db::connect(&options).await.unwrap();
        assert_eq!(one.populations().count_orphans().await.unwrap(), 4);
        assert_eq!(one.populations().count_orphans().await.unwrap(), 4);
        assert_eq!(
            scalar(
                &one,
                "SELECT COUNT(*) FROM pg_prepared_statements \
                 WHERE statement NOT LIKE '%pg_prepared_statements%' \
                 AND (statement LIKE '%RECURSIVE bands%' OR statement LIKE '%me_file_id IS NULL%')"
            )
            .await,
            0
        );
    }
}

/// A reader that waits for `populated` must never see a NULL snapshot in the target, even
/// when the target starts with legacy NULL rows.
async fn populated_readers_never_see_null_snapshots(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.5)).await;
    let db = test.db.clone();
    let nulls_in_target = "SELECT COUNT(*) FROM target_populations p JOIN target_bands b ON b.id = p.target_band_id \
                           WHERE b.target_id = 1 AND p.matching_tags_snapshot IS NULL";
    assert!(scalar(&db, nulls_in_target).await > 0);
    let reader = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut populated_reads = 0;
            loop {
                let status = snapline_tests::target_status(&db, TargetId(1)).await;
                if status == Some(PopulationStatus::Populated) {
                    assert_eq!(
                        scalar(&db, nulls_in_target).await,
                        0,
                        "NULL while populated"
                    );
                    populated_reads += 1;
                    if populated_reads >= 3 {
                        return populated_reads;
                    }
                }
                tokio::task::yield_now().await;
            }
        })
    };
    populate_target(&db, TargetId(1), &small_batches())
        .await
        .unwrap();
    assert!(reader.await.expect("reader saw no NULL") >= 3);
}

/// A target the platform deletes while it is being populated does not end `populated`: the
/// run stops at its next batch, removes the rows of the target's bands and fails for good.
async fn a_target_deleted_during_its_populate_leaves_no_rows(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.0)).await;
    let db = test.db.clone();
    populate_target(&db, TargetId(2), &small_batches())
        .await
        .unwrap();
    let rows_of_target_2 = stored_rows(&db, TargetId(2)).await;
    // 300 batches, 10 ms apart: the run lasts seconds however fast the backend.
    let options = PopulateOptions {
        batch_size: 10,
        batch_pause: std::time::Duration::from_millis(10),
        ..PopulateOptions::default()
    };
    let run = {
        let db = db.clone();
        tokio::spawn(async move { populate_target(&db, TargetId(1), &options).await })
    };
    let rows_of_target_1 = "SELECT COUNT(*) FROM target_populations p \
                            JOIN target_bands b ON b.id = p.target_band_id WHERE b.target_id = 1";
    let started = std::time::Instant::now();
    while scalar(&db, rows_of_target_1).await == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        tokio::task::yield_now().await;
    }
    // As the platform's delete_target does: the target row only (there are no foreign keys).
    execute(&db, "DELETE FROM targets WHERE id = 1").await;
    let err = run
        .await
        .unwrap()
        .expect_err("a deleted target cannot end populated");
    match &err {
        JobError::TargetDeleted { target, removed } => {
            assert_eq!(*target, TargetId(1));
            assert!(*removed > 0, "{err}");
        }
        other => panic!("expected TargetDeleted, got {other}"),
    }
    assert!(!err.is_transient() && err.is_bad_input(), "{err}");
    assert_eq!(scalar(&db, rows_of_target_1).await, 0, "no row left behind");
    assert!(!rows_of_target_2.is_empty());
    assert_eq!(
        stored_rows(&db, TargetId(2)).await,
        rows_of_target_2,
        "other targets' rows are untouched"
    );
}

/// `populator run --chunks-at-once`: chunks populated side by side (each on its own
/// connection; on SQLite they take turns at the write lock) give the same rows, legacy NULL
/// rows refreshed, and exactly one of them marks the target populated.
async fn chunks_populated_at_once_are_exact(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.2)).await;
    let db = &test.db;
    let options = PopulateOptions {
        chunk_me_files: 500,
        chunks_at_once: 3,
        ..small_batches()
    };
    let summary = populate_target(db, TargetId(1), &options).await.unwrap();
    assert_eq!(summary.status, "populated", "{summary}");
    assert!(
        summary.chunks >= 6,
        "3,000 me_files in chunks of 500: {summary}"
    );
    assert!(summary.inserted > 0 && summary.refreshed > 0, "{summary}");
    assert_population_exact(db, TargetId(1)).await;
    assert_eq!(
        snapline_tests::target_status(db, TargetId(1)).await,
        Some(PopulationStatus::Populated)
    );
    let rows = stored_rows(db, TargetId(1)).await;
    let again = populate_target(db, TargetId(1), &options).await.unwrap();
    assert_eq!(again.changes(), 0, "{again}");
    assert_eq!(again.unchanged as usize, rows.len());
    assert_eq!(again.status, "populated");
}

both_backends! {
    populate_from_empty => populate_from_empty_then_rerun_is_a_no_op;
    chunks_at_once => chunks_populated_at_once_are_exact;
    repopulate_after_changes => repopulate_after_tags_change;
    unknown_target => unknown_target_fails_permanently;
    no_bands => target_without_bands_ends_not_populated;
    empty_group_and_non_nested => empty_trait_group_and_non_nested_targets;
    orphans => orphan_rows_are_left_alone_and_counted;
    readers_never_see_null => populated_readers_never_see_null_snapshots;
    target_deleted_midway => a_target_deleted_during_its_populate_leaves_no_rows;
}

/// A run killed mid-way (its future dropped between batches, its transaction rolled back, its
/// lease left to expire) is finished by the next run, and the rows are exactly right.
async fn a_run_killed_midway_is_finished_by_the_retry(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.3)).await;
    let db = test.db.clone();
    let options = PopulateOptions {
        batch_size: 50,
        lease_ttl: std::time::Duration::from_secs(2),
        lock_wait: std::time::Duration::from_secs(30),
        ..PopulateOptions::default()
    };
    let first = {
        let db = db.clone();
        let options = options.clone();
        tokio::spawn(async move { populate_target(&db, TargetId(1), &options).await })
    };
    // Let it write some batches, then kill it.
    let started = std::time::Instant::now();
    while scalar(
        &db,
        "SELECT COUNT(*) FROM target_populations WHERE matching_tags_snapshot IS NOT NULL",
    )
    .await
        < 200
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        tokio::task::yield_now().await;
    }
    first.abort();
    let _ = first.await;
    assert_eq!(
        snapline_tests::target_status(&test.db, TargetId(1)).await,
        Some(PopulationStatus::Populating)
    );

    let summary = populate_target(&db, TargetId(1), &options)
        .await
        .expect("retry finishes");
    assert!(
        summary.unchanged > 0,
        "the retry keeps what the first run wrote: {summary}"
    );
    assert_population_exact(&db, TargetId(1)).await;
    assert_eq!(
        snapline_tests::target_status(&test.db, TargetId(1)).await,
        Some(PopulationStatus::Populated)
    );
}

/// Two populates of one target never run at once: the second, started while the first runs,
/// waits for its lease, and its result reflects a change made during the first.
async fn a_second_populate_of_the_same_target_waits(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.0)).await;
    let db = test.db.clone();
    // 300 batches, 10 ms apart: the run lasts seconds however fast the backend.
    let options = PopulateOptions {
        batch_size: 10,
        batch_pause: std::time::Duration::from_millis(10),
        ..PopulateOptions::default()
    };
    let first = {
        let (db, options) = (db.clone(), options.clone());
        tokio::spawn(async move { populate_target(&db, TargetId(1), &options).await })
    };
    let rows_of_target_1 = "SELECT COUNT(*) FROM target_populations p \
                            JOIN target_bands b ON b.id = p.target_band_id WHERE b.target_id = 1";
    wait_for("the first run's batches", || async {
        scalar(&db, rows_of_target_1).await >= 100
    })
    .await;
    // Runs of target 1 started so far: a run counts itself once it holds the lease.
    let runs_started =
        "SELECT COALESCE(MAX(started), 0) FROM snapline_populate_runs WHERE target_id = 1";
    let first_run = scalar(&db, runs_started).await;
    assert!(first_run > 0);
    let second = {
        let (db, options) = (db.clone(), options.clone());
        tokio::spawn(async move { populate_target(&db, TargetId(1), &options).await })
    };
    // Members the first run has already written lose the outer band's only group (age): the
    // first run has passed them, the second must remove them.
    let passed = scalar(
        &db,
        "SELECT MAX(p.me_file_id) FROM target_populations p \
         JOIN target_bands b ON b.id = p.target_band_id WHERE b.target_id = 1",
    )
    .await;
    let leaving = execute(
        &db,
        &format!(
            "DELETE FROM me_file_tags WHERE me_file_id <= {passed} AND trait_id BETWEEN 20001 AND 20006"
        ),
    )
    .await;
    assert!(leaving > 0);
    assert!(
        !first.is_finished(),
        "the change was made during the first run"
    );
    // Until the first run is over, no second run has started: the count is read before
    // asking whether the first is over, so a second run counted while the first still
    // runs is an overlap, never a race of the check.
    let mut samples = 0;
    loop {
        let started = scalar(&db, runs_started).await;
        if first.is_finished() {
            break;
        }
        assert_eq!(
            started, first_run,
            "a second run started while the first still ran"
        );
        samples += 1;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(samples > 0, "the first run was watched while it ran");
    let a = first.await.unwrap().expect("first run");
    let b = second.await.unwrap().expect("second run");
    assert!(a.inserted > 0, "{a}");
    assert_eq!(
        scalar(&db, runs_started).await,
        first_run + 1,
        "the second run started after the first"
    );
    assert_eq!(b.inserted, 0, "the first run inserted everything: {b}");
    assert!(
        b.deleted > 0,
        "the second run saw the change made during the first: {b}"
    );
    assert_population_exact(&db, TargetId(1)).await;

    // A holder that does not let go makes a waiting run give up with a transient error.
    assert!(
        db.leases()
            .try_acquire(
                "populate_target:2",
                "someone else",
                std::time::Duration::from_secs(60)
            )
            .await
            .unwrap()
    );
    let err = populate_target(
        &db,
        TargetId(2),
        &PopulateOptions {
            lock_wait: std::time::Duration::from_secs(1),
            ..PopulateOptions::default()
        },
    )
    .await
    .expect_err("busy");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("someone else"), "{err}");
}

/// The `populate_chunk` jobs waiting on the queue, by run and me_file range.
async fn waiting_chunks(db: &repo::Db) -> Vec<PopulateChunk> {
    let mut chunks = db
        .queue_jobs()
        .of_queue(CHUNK_QUEUE)
        .await
        .unwrap()
        .into_iter()
        .filter(|job| job.status == "Pending")
        .map(|job| serde_json::from_str::<PopulateChunk>(&job.payload).expect("a chunk payload"))
        .collect::<Vec<_>>();
    chunks.sort_by_key(|c| (c.run, c.after));
    chunks
}

/// A run split into chunks on the queue: the target is `populated` only once its last chunk
/// commits; a chunk that fails is retried alone; syncs between chunks stay; a second
/// populate waits for the run's lease; a chunk of an older run never finishes a newer one.
async fn a_chunked_run_is_populated_by_its_last_chunk(backend: Backend) {
    let test = TestDb::seeded(backend, &data(0.1)).await;
    let db = &test.db;
    let target = TargetId(1);
    let lease = "populate_target:1";
    let options = PopulateOptions {
        chunk_me_files: 700,
        lease_ttl: Duration::from_secs(3),
        lock_wait: Duration::from_secs(1),
        ..small_batches()
    };
    let started = populate_target_on_queue(db, target, &options)
        .await
        .unwrap();
    assert_eq!(started.status, "populating", "{started}");
    let chunks = waiting_chunks(db).await;
    assert_eq!(chunks.len() as u64, started.chunks);
    assert!(
        chunks.len() >= 4,
        "3,000 me_files in chunks of 700: {chunks:?}"
    );
    assert!(chunks.iter().all(|c| c.run == started.run));
    // The chunks tile the id space: each starts where the one before ended.
    assert_eq!(chunks[0].after, 0);
    assert!(chunks.windows(2).all(|w| w[0].up_to == w[1].after));
    assert_eq!(chunks.last().unwrap().up_to, i64::MAX);
    // The run's lease passed to its chunks: a second populate waits, then gives up (retried).
    let busy = populate_target_on_queue(db, target, &options)
        .await
        .expect_err("the run holds the target's lease");
    assert!(busy.is_transient(), "{busy}");

    let done = populate_chunk(db, &chunks[0], &options, false)
        .await
        .unwrap();
    assert_eq!(done.status, "populating");
    assert!(done.inserted > 0, "{done}");
    // A chunk stopped (SIGTERM) fails with a transient error and changes nothing else.
    let stopping = PopulateOptions {
        stop: jobs::StopRequest::default(),
        ..options.clone()
    };
    stopping.stop.request();
    let stopped = populate_chunk(db, &chunks[1], &stopping, false)
        .await
        .expect_err("stopped");
    assert!(stopped.is_transient(), "{stopped}");
    assert_eq!(
        snapline_tests::target_status(db, target).await,
        Some(PopulationStatus::Populating)
    );
    // A me_file of the finished first chunk loses its tags, one of the last chunk gains a
    // member's tags; each is synced between chunks.
    let cache = jobs::BandCache::new(Duration::ZERO);
    let member = scalar(
        db,
        "SELECT MIN(p.me_file_id) FROM target_populations p JOIN target_bands b \
         ON b.id = p.target_band_id WHERE b.target_id = 1",
    )
    .await;
    execute(
        db,
        &format!("DELETE FROM me_file_tags WHERE me_file_id = {member}"),
    )
    .await;
    execute(
        db,
        &format!(
            "INSERT INTO me_file_tags (me_file_id, trait_id, tag_value) \
             SELECT 2990, trait_id, tag_value FROM me_file_tags WHERE me_file_id = {}",
            member + 1
        ),
    )
    .await;
    for me_file in [member, 2990] {
        sync_me_file(db, &cache, MeFileId(me_file)).await.unwrap();
    }
    // The stopped chunk's retry and the others; only the last sets `populated`.
    for chunk in &chunks[1..chunks.len() - 1] {
        let done = populate_chunk(db, chunk, &options, false).await.unwrap();
        assert_eq!(done.status, "populating", "{done}");
    }
    let last = populate_chunk(db, chunks.last().unwrap(), &options, false)
        .await
        .unwrap();
    assert_eq!(last.status, "populated", "{last}");
    assert_eq!(
        snapline_tests::target_status(db, target).await,
        Some(PopulationStatus::Populated)
    );
    assert_population_exact(db, target).await;
    assert_eq!(db.leases().holder(lease).await.unwrap(), None, "released");
    // A chunk run again (its job acknowledged late) changes and records nothing.
    let again = populate_chunk(db, &chunks[0], &options, false)
        .await
        .unwrap();
    assert_eq!((again.status.as_str(), again.changes()), ("populated", 0));
    assert_eq!(db.leases().holder(lease).await.unwrap(), None);

    // Run 2 starts and its chunks wait; nobody runs them, so its lease expires and run 3
    // takes over. Run 1's and run 2's chunks are now stale: they skip, and finish nothing.
    let second = populate_target_on_queue(db, target, &options)
        .await
        .unwrap();
    assert_eq!(second.run, started.run + 1);
    let second_chunks = waiting_chunks(db).await;
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let third = populate_target_on_queue(db, target, &options)
        .await
        .unwrap();
    assert_eq!(third.run, started.run + 2);
    for stale in [&chunks[2], &second_chunks[0], second_chunks.last().unwrap()] {
        let skipped = populate_chunk(db, stale, &options, false).await.unwrap();
        assert_eq!(
            (skipped.status.as_str(), skipped.changes()),
            ("superseded", 0)
        );
    }
    assert_eq!(
        snapline_tests::target_status(db, target).await,
        Some(PopulationStatus::Populating)
    );
    let third_chunks: Vec<_> = waiting_chunks(db)
        .await
        .into_iter()
        .filter(|c| c.run == third.run)
        .collect();
    let mut statuses = Vec::new();
    for chunk in &third_chunks {
        statuses.push(
            populate_chunk(db, chunk, &options, false)
                .await
                .unwrap()
                .status,
        );
    }
    assert_eq!(statuses.last().map(String::as_str), Some("populated"));
    assert!(
        statuses[..statuses.len() - 1]
            .iter()
            .all(|s| s == "populating")
    );
    assert_population_exact(db, target).await;
}

both_backends! {
    chunked_run => a_chunked_run_is_populated_by_its_last_chunk;
    killed_midway => a_run_killed_midway_is_finished_by_the_retry;
    same_target_waits => a_second_populate_of_the_same_target_waits;
}

/// The benchmark's set-based SQL and the populator compute the same rows, byte for byte as
/// jsonb, for every kind of target; this is what lets the benchmark compare their times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populator_agrees_with_the_set_based_sql_reference() {
    let test = TestDb::seeded(
        Backend::Postgres,
        &SeedOptions {
            targets: 12,
            ..data(0.0)
        },
    )
    .await;
    let db = &test.db;
    for target in 1..=12 {
        populate_target(db, TargetId(target), &small_batches())
            .await
            .unwrap();
        let reference = db.reference();
        reference
            .create_population_table("reference_populations")
            .await
            .unwrap();
        reference
            .populate_target_into("reference_populations", target)
            .await
            .unwrap();
        assert_eq!(
            reference
                .population_differences("reference_populations", target)
                .await
                .unwrap(),
            0,
            "target {target}"
        );
    }
}

/// A populate's pass reads the page of me_files, then the target's rows in that id range,
/// and deletes rows whose me_file was not in the page ("no longer exists"). A me_file
/// registered and synced between those two statements is not in the page but its row is in
/// the range: the delete must check that the me_file is really gone, in its own statement.
/// The pass is run here statement by statement, as `populate_target` runs it, with the
/// registration and sync in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_me_file_registered_and_synced_during_the_last_pass_keeps_its_row() {
    use domain::MeFileId;
    let test = TestDb::populated(Backend::Postgres, &data(0.0)).await;
    let db = &test.db;
    let target_id = TargetId(1);
    let target = db.bands().of_target(target_id).await.unwrap();
    let band_ids: Vec<_> = target.bands().iter().map(|b| b.id).collect();
    let traits: Vec<_> = target.trait_ids().collect();
    let last = MeFileId(scalar(db, "SELECT MAX(id) FROM me_files").await);
    let member = scalar(
        db,
        &format!(
            "SELECT MIN(me_file_id) FROM target_populations WHERE target_band_id = {}",
            band_ids[0]
        ),
    )
    .await;

    // The last pass: the page after the last me_file is empty.
    let tx = db.begin_write().await.unwrap();
    let page = tx
        .tags()
        .me_file_ids_after(last, MeFileId(i64::MAX), 100)
        .await
        .unwrap();
    assert!(page.is_empty());

    // Meanwhile the platform registers a me_file that belongs to the target, and it is synced.
    let new = last.0 + 1;
    execute(
        db,
        &format!(
            "INSERT INTO me_files (id) VALUES ({new}); \
             INSERT INTO me_file_tags (me_file_id, trait_id, tag_value) \
             SELECT {new}, trait_id, tag_value FROM me_file_tags WHERE me_file_id = {member}"
        ),
    )
    .await;
    let cache = jobs::BandCache::new(std::time::Duration::ZERO);
    let synced = jobs::sync_me_file::sync_me_file(db, &cache, MeFileId(new))
        .await
        .unwrap();
    assert!(synced.inserted >= 1, "{synced}");

    // The pass goes on: its read of the range sees the new row.
    let up_to = MeFileId(i64::MAX);
    let tags = tx
        .tags()
        .in_me_file_range(last, up_to, &traits)
        .await
        .unwrap();
    let existing = tx
        .populations()
        .in_me_file_range(&band_ids, last, up_to)
        .await
        .unwrap();
    assert!(existing.iter().any(|r| r.me_file_id.0 == new));
    let plan = jobs::plan_population(&target, &page, &tags, existing);
    tx.populations().apply_changes(&plan.changes).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(
        scalar(
            db,
            &format!(
                "SELECT COUNT(*) FROM target_populations p JOIN target_bands b \
                 ON b.id = p.target_band_id WHERE p.me_file_id = {new} AND b.target_id = 1"
            )
        )
        .await,
        1,
        "the synced row survives the pass"
    );
    assert_population_exact(db, target_id).await;
}

/// Four populates at once on a stock PostgreSQL (`max_locks_per_transaction` 64,
/// `max_connections` 100: 6,400 lock slots shared by every session): each batch of 5,000
/// me_files locks a few id ranges, not 5,000 me_files, so none runs out of shared memory
/// (5,000 locks per batch, four batches at once, would need 20,000 slots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_populator_runs_at_once_fit_a_stock_lock_table() {
    let test = TestDb::seeded(
        Backend::Postgres,
        &SeedOptions {
            me_files: 20_000,
            targets: 6,
            legacy_share: 0.0,
            seed: 5,
            chunk_size: 10_000,
            deleted_band_offers: false,
        },
    )
    .await;
    let slots = scalar(
        &test.db,
        "SELECT current_setting('max_locks_per_transaction')::bigint \
         * current_setting('max_connections')::bigint",
    )
    .await;
    assert!(
        slots <= 6_400,
        "a stock server's lock table ({slots} slots here)"
    );
    let runs: Vec<_> = ["1", "2", "3", "4"]
        .iter()
        .map(|target| spawn_populator_run(&test.url, target, 5_000))
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for target in 1..=4 {
        assert_population_exact(&test.db, TargetId(target)).await;
    }
}

/// Ctrl-C on `populator run` stops it between batches and releases its lease: the next run
/// starts at once instead of waiting two minutes for the lease to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_run_releases_the_lease_for_the_next_run() {
    let test = TestDb::seeded(
        Backend::Postgres,
        &SeedOptions {
            me_files: 30_000,
            targets: 4,
            legacy_share: 0.0,
            seed: 9,
            chunk_size: 10_000,
            deleted_band_offers: false,
        },
    )
    .await;
    let run = || spawn_populator_run(&test.url, "1", 200);
    let first = run();
    snapline_tests::wait_for("the first run to commit a batch", || async {
        scalar(&test.db, "SELECT COUNT(*) FROM target_populations").await > 0
    })
    .await;
    let pid = libc::pid_t::try_from(first.id()).unwrap();
    // SAFETY: kill(2) with a child's pid and SIGINT has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped on request"), "{stderr}");
    assert_eq!(
        scalar(&test.db, "SELECT COUNT(*) FROM snapline_leases").await,
        0,
        "the lease is released"
    );
    assert_eq!(
        snapline_tests::target_status(&test.db, TargetId(1)).await,
        Some(PopulationStatus::Populating)
    );

    let started = std::time::Instant::now();
    let out = run().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the second run did not wait for an expired lease"
    );
    assert_population_exact(&test.db, TargetId(1)).await;
}

/// `populator run --target TARGET` on `url` in a child process, output captured.
fn spawn_populator_run(url: &str, target: &str, batch_size: u64) -> std::process::Child {
    std::process::Command::new(snapline_tests::binary("populator"))
        .args(["run", "--target", target])
        .env("SNAPLINE_PROFILE", "test")
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .env("SNAPLINE_POPULATOR__BATCH_SIZE", batch_size.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("populator starts")
}

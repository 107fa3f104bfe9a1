//! The syncer, end to end on PostgreSQL and SQLite, and its equivalence with the populator.

use domain::{MeFileId, PopulationStatus, TargetId};
use jobs::BandCache;
use jobs::populate_target::{PopulateOptions, populate_target};
use jobs::sync_me_file::sync_me_file;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snapline_tests::{
    Backend, InProcessWorker, TestDb, assert_population_exact, both_backends, entity_ids, execute,
    quote, raw_rows, scalar, wait_for,
};
use std::sync::Arc;
use std::time::Duration;
use synth::SeedOptions;

const TARGETS: i64 = 8;

fn data() -> SeedOptions {
    SeedOptions {
        me_files: 1_500,
        targets: TARGETS as usize,
        legacy_share: 0.05,
        seed: 5,
        chunk_size: 500,
        deleted_band_offers: true,
    }
}

fn fresh_cache() -> BandCache {
    BandCache::new(Duration::ZERO)
}

async fn populate_all(test: &TestDb) {
    for target in 1..=TARGETS {
        populate_target(&test.db, TargetId(target), &PopulateOptions::default())
            .await
            .expect("populate");
    }
}

fn all_targets() -> Vec<TargetId> {
    (1..=TARGETS).map(TargetId).collect()
}

/// Every child trait id of the catalog.
fn catalog_traits() -> Vec<i64> {
    synth::parents()
        .iter()
        .flat_map(|p| p.children.iter().map(|c| c.id))
        .collect()
}

/// One random change to the tags (or the existence) of a me_file; returns the me_file.
async fn random_change(test: &TestDb, rng: &mut ChaCha8Rng, traits: &[i64]) -> MeFileId {
    let db = &test.db;
    let me_file = rng.random_range(1..=1_520i64);
    let values = [
        "x",
        "",
        "  ",
        "O'Brien \\ \"q\"",
        "ünïcödé ✓",
        "SELECT 1; --",
    ];
    match rng.random_range(0..100) {
        // add a tag (sometimes a duplicate of one it has)
        0..40 => {
            let trait_id = traits[rng.random_range(0..traits.len())];
            let value = if rng.random_bool(0.4) {
                "NULL".to_owned()
            } else {
                quote(values[rng.random_range(0..values.len())])
            };
            execute(db, &format!("INSERT INTO me_file_tags (me_file_id, trait_id, tag_value) VALUES ({me_file}, {trait_id}, {value})")).await;
        }
        // edit a value
        40..65 => {
            let value = quote(values[rng.random_range(0..values.len())]);
            execute(db, &format!("UPDATE me_file_tags SET tag_value = {value} WHERE id = (SELECT MIN(id) FROM me_file_tags WHERE me_file_id = {me_file})")).await;
        }
        // delete a tag
        65..92 => {
            execute(db, &format!("DELETE FROM me_file_tags WHERE id = (SELECT MAX(id) FROM me_file_tags WHERE me_file_id = {me_file})")).await;
        }
        // register (ids past the seeded ones) or re-register
        92..97 => {
            execute(db, &format!("INSERT INTO me_files (id, display_name) SELECT {me_file}, 'new' WHERE NOT EXISTS (SELECT 1 FROM me_files WHERE id = {me_file})")).await;
        }
        // the user is deleted (tags stay behind, as the platform leaves them)
        _ => {
            execute(db, &format!("DELETE FROM me_files WHERE id = {me_file}")).await;
        }
    }
    MeFileId(me_file)
}

/// The core test: populate, apply random tag changes syncing each touched me_file, and get
/// exactly, byte for byte, what a fresh populate of every target gives.
async fn syncing_every_change_equals_a_fresh_populate(backend: Backend) {
    let test = TestDb::seeded(backend, &data()).await;
    populate_all(&test).await;
    let cache = BandCache::new(Duration::from_secs(60));
    let traits = catalog_traits();
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let mut changed = 0;
    for _ in 0..400 {
        let me_file = random_change(&test, &mut rng, &traits).await;
        let summary = sync_me_file(&test.db, &cache, me_file).await.expect("sync");
        changed += summary.changes();
    }
    assert!(changed > 50, "the changes moved rows: {changed}");
    // The syncs' rows against the set-based SQL (PostgreSQL), which shares no code with the
    // populate they are compared with next.
    for target in all_targets() {
        snapline_tests::assert_population_as_sql_computes(&test.db, target).await;
    }
    let synced = raw_rows(&test.db, &all_targets()).await;

    execute(&test.db, "DELETE FROM target_populations").await;
    populate_all(&test).await;
    let fresh = raw_rows(&test.db, &all_targets()).await;
    assert_eq!(synced.len(), fresh.len(), "same members");
    for (key, rows) in &fresh {
        assert_eq!(synced.get(key), Some(rows), "{key:?}");
    }
    assert_eq!(synced, fresh);
}

/// The sync benchmark's limit, `snapline_reference_sync` (one SQL function per me_file),
/// leaves exactly the rows the rules give after random changes: what makes the syncer's
/// throughput comparable with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_sync_function_writes_what_a_sync_writes() {
    let test = TestDb::seeded(Backend::Postgres, &data()).await;
    populate_all(&test).await;
    let reference = test.db.reference();
    reference.create_sync_function().await.unwrap();
    let traits = catalog_traits();
    let mut rng = ChaCha8Rng::seed_from_u64(2027);
    for _ in 0..300 {
        let me_file = random_change(&test, &mut rng, &traits).await;
        reference.sync_in_sql(me_file.0).await.expect("sql sync");
    }
    for target in all_targets() {
        assert_population_exact(&test.db, target).await;
    }
}

async fn register_add_update_delete(backend: Backend) {
    let test = TestDb::seeded(backend, &data()).await;
    let db = &test.db;
    populate_all(&test).await;
    let cache = fresh_cache();

    // register: a new me_file with an age and gender joins the broad target's middle band
    execute(
        db,
        "INSERT INTO me_files (id, display_name) VALUES (5000, 'new user')",
    )
    .await;
    execute(db, "INSERT INTO me_file_tags (me_file_id, trait_id, tag_value) VALUES (5000, 20002, NULL), (5000, 30001, 'she')").await;
    let summary = sync_me_file(db, &cache, MeFileId(5000)).await.unwrap();
    assert!(summary.inserted >= 1, "{summary}");
    assert_population_exact(db, TargetId(1)).await;

    // register without any tag yet: known, in no band, nothing written
    execute(
        db,
        "INSERT INTO me_files (id, display_name) VALUES (5001, 'no tags yet')",
    )
    .await;
    let summary = sync_me_file(db, &cache, MeFileId(5001)).await.unwrap();
    assert!(summary.me_file_exists, "{summary}");
    assert_eq!(summary.changes(), 0, "{summary}");

    // add: becomes a home owner, moves to the bullseye
    execute(
        db,
        "INSERT INTO me_file_tags (me_file_id, trait_id) VALUES (5000, 40001)",
    )
    .await;
    let summary = sync_me_file(db, &cache, MeFileId(5000)).await.unwrap();
    assert_eq!(summary.moved, 1, "{summary}");

    // update: a value edit rewrites the snapshot only
    execute(
        db,
        "UPDATE me_file_tags SET tag_value = 'mine' WHERE me_file_id = 5000 AND trait_id = 40001",
    )
    .await;
    let summary = sync_me_file(db, &cache, MeFileId(5000)).await.unwrap();
    assert_eq!(
        (summary.refreshed, summary.inserted, summary.moved),
        (1, 0, 0),
        "{summary}"
    );

    // nothing changed: nothing written
    let summary = sync_me_file(db, &cache, MeFileId(5000)).await.unwrap();
    assert_eq!(summary.changes(), 0, "{summary}");

    // delete: without an age it leaves the broad target
    execute(
        db,
        "DELETE FROM me_file_tags WHERE me_file_id = 5000 AND trait_id = 20002",
    )
    .await;
    let summary = sync_me_file(db, &cache, MeFileId(5000)).await.unwrap();
    assert!(summary.deleted >= 1, "{summary}");
    for target in all_targets() {
        assert_population_exact(db, target).await;
    }
}

async fn targets_outside_the_scope_are_never_touched(backend: Backend) {
    let test = TestDb::seeded(backend, &data()).await;
    let db = &test.db;
    populate_target(db, TargetId(1), &PopulateOptions::default())
        .await
        .unwrap();
    // Target 2 is not populated: its legacy rows stay exactly as they are.
    let before = raw_rows(db, &[TargetId(2)]).await;
    assert!(!before.is_empty());
    let cache = fresh_cache();
    for (_, me_file) in before.keys() {
        execute(
            db,
            &format!("DELETE FROM me_file_tags WHERE me_file_id = {}", me_file.0),
        )
        .await;
        sync_me_file(db, &cache, *me_file).await.unwrap();
    }
    assert_eq!(raw_rows(db, &[TargetId(2)]).await, before);
    // ...while the populated target lost them.
    assert_population_exact(db, TargetId(1)).await;
}

async fn an_unknown_me_file_loses_its_rows(backend: Backend) {
    let test = TestDb::seeded(backend, &data()).await;
    let db = &test.db;
    populate_all(&test).await;
    let member = scalar(db, "SELECT MIN(me_file_id) FROM target_populations").await;
    execute(db, &format!("DELETE FROM me_files WHERE id = {member}")).await;
    let summary = sync_me_file(db, &fresh_cache(), MeFileId(member))
        .await
        .expect("success");
    assert!(!summary.me_file_exists);
    assert!(summary.deleted >= 1, "{summary}");
    assert_eq!(
        scalar(
            db,
            &format!("SELECT COUNT(*) FROM target_populations WHERE me_file_id = {member}")
        )
        .await,
        0
    );
    let never_existed = sync_me_file(db, &fresh_cache(), MeFileId(987_654))
        .await
        .unwrap();
    assert_eq!(never_existed.changes(), 0);
}

async fn a_waiting_sync_absorbs_duplicate_pushes(backend: Backend) {
    let test = TestDb::seeded(backend, &data()).await;
    let db = &test.db;
    assert!(jobs::sync_me_file::enqueue(db, MeFileId(7)).await.unwrap());
    assert!(
        !jobs::sync_me_file::enqueue(db, MeFileId(7)).await.unwrap(),
        "deduplicated"
    );
    assert!(jobs::sync_me_file::enqueue(db, MeFileId(8)).await.unwrap());
    let jobs = db
        .queue_jobs()
        .of_queue(jobs::sync_me_file::QUEUE)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");

    // A push while the sync of me_file 7 runs adds a job: the running one may have read its
    // tags before the change this push announces.
    let of_7 = || async {
        db.queue_jobs()
            .of_queue(jobs::sync_me_file::QUEUE)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.payload == r#"{"me_file_id":7}"#)
            .map(|j| j.status)
            .collect::<Vec<_>>()
    };
    match backend {
        Backend::Postgres => {
            // A real sync in flight: held at me_file 7's write lock, which a transaction of
            // the test takes first. apalis keeps it `Queued`, locked by the worker.
            let holder = db.begin_write().await.unwrap();
            holder
                .populations()
                .lock_me_files(&[MeFileId(7)])
                .await
                .unwrap();
            let worker = start_syncer(db, "in-flight", 1);
            wait_for("the sync of me_file 7 taken by the worker", || async {
                scalar(
                    db,
                    "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'sync_me_file' \
                     AND convert_from(job, 'UTF8') = '{\"me_file_id\":7}' AND lock_by IS NOT NULL",
                )
                .await
                    == 1
            })
            .await;
            assert!(
                jobs::sync_me_file::enqueue(db, MeFileId(7)).await.unwrap(),
                "a push while the sync runs is kept"
            );
            // Two jobs now; the worker may already have fetched the second into its batch
            // (`Queued` too), but neither has run.
            let statuses = of_7().await;
            assert_eq!(statuses.len(), 2, "{statuses:?}");
            assert!(
                statuses.iter().all(|s| s == "Pending" || s == "Queued"),
                "{statuses:?}"
            );
            drop(holder); // rolled back: the lock is released
            wait_for("both syncs of me_file 7 done", || async {
                of_7().await == ["Done", "Done"]
            })
            .await;
            worker.stop().await;
        }
        Backend::Sqlite => {
            // apalis's SQLite storage marks a job it runs `Running` (a sync cannot be held
            // in flight here without holding the write lock its worker's fetch needs too).
            execute(
                db,
                "UPDATE Jobs SET status = 'Running' WHERE CAST(job AS TEXT) = '{\"me_file_id\":7}'",
            )
            .await;
            assert!(
                jobs::sync_me_file::enqueue(db, MeFileId(7)).await.unwrap(),
                "a push while the sync runs is kept"
            );
            assert_eq!(of_7().await, ["Running", "Pending"]);
        }
    }
}

/// A band edit without a repopulate reaches syncs once their cached band metadata is older
/// than `syncer.band_cache_secs` (1 s here).
async fn a_band_edit_reaches_syncs_within_the_cache_age(backend: Backend) {
    let test = TestDb::seeded(backend, &data()).await;
    populate_all(&test).await;
    let db = &test.db;
    let cache = BandCache::new(Duration::from_secs(1));
    let member = MeFileId(
        scalar(
            db,
            "SELECT MIN(p.me_file_id) FROM target_populations p \
         JOIN target_bands b ON b.id = p.target_band_id WHERE b.target_id = 1",
        )
        .await,
    );
    sync_me_file(db, &cache, member)
        .await
        .expect("sync caches the bands");
    // Every band of target 1 gains a group of a trait nobody is tagged with: nobody matches.
    execute(
        db,
        "INSERT INTO traits (id, trait_name, parent_trait_id, display_order) \
         VALUES (990001, 'Nobody', NULL, 1); \
         INSERT INTO trait_groups (id, title) VALUES (990001, 'edit'); \
         INSERT INTO trait_group_traits (trait_group_id, trait_id) VALUES (990001, 990001); \
         INSERT INTO target_band_trait_groups (target_band_id, trait_group_id) \
         SELECT id, 990001 FROM target_bands WHERE target_id = 1",
    )
    .await;
    let rows_of_member = format!(
        "SELECT COUNT(*) FROM target_populations p JOIN target_bands b \
         ON b.id = p.target_band_id WHERE b.target_id = 1 AND p.me_file_id = {}",
        member.0
    );
    assert_eq!(scalar(db, &rows_of_member).await, 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    sync_me_file(db, &cache, member).await.expect("sync");
    assert_eq!(
        scalar(db, &rows_of_member).await,
        0,
        "the sync used the edited bands"
    );
}

/// Many syncs at once, of the same and of different me_files, of tags changed while a
/// populate of target 1 runs (so every sync finds it `populating`, in its scope): no
/// deadlock left unretried, and the rows end exactly right. And the scope rule itself: a
/// change to a me_file the populate has already passed reaches target 1 only through a
/// sync, which must not skip a `populating` target.
async fn concurrent_syncs_and_a_populate(backend: Backend) {
    let test = TestDb::seeded(backend, &data()).await;
    populate_all(&test).await;
    let db = test.db.clone();
    let cache = std::sync::Arc::new(BandCache::new(Duration::from_secs(60)));
    // Target 1's rows written again from none: its committed rows show how far the
    // populate has got (it takes the me_files in ascending order).
    let rows_of_target_1 = "FROM target_populations WHERE target_band_id IN \
                            (SELECT id FROM target_bands WHERE target_id = 1)";
    execute(&db, &format!("DELETE {rows_of_target_1}")).await;
    let populate = {
        let db = db.clone();
        tokio::spawn(async move {
            populate_target(
                &db,
                TargetId(1),
                // 150 batches, 20 ms apart: the run lasts seconds however fast the backend.
                &PopulateOptions {
                    batch_size: 10,
                    batch_pause: Duration::from_millis(20),
                    ..PopulateOptions::default()
                },
            )
            .await
        })
    };
    wait_for("the populate's first batches committed", || async {
        scalar(&db, &format!("SELECT COUNT(*) {rows_of_target_1}")).await >= 100
    })
    .await;
    let passed = scalar(&db, &format!("SELECT MAX(me_file_id) {rows_of_target_1}")).await;
    execute(
        &db,
        &format!(
            "UPDATE me_file_tags SET tag_value = 'changed' WHERE me_file_id % 3 = 0 AND me_file_id <= {passed}"
        ),
    )
    .await;
    execute(
        &db,
        &format!(
            "DELETE FROM me_file_tags WHERE me_file_id % 7 = 0 AND me_file_id <= {passed} \
             AND trait_id BETWEEN 20001 AND 20006"
        ),
    )
    .await;
    // The passed me_files whose tags changed, synced while the populate still runs: target
    // 1's rows of them carry the new values, which only these syncs can have written.
    for me_file in (1..=passed).filter(|m| m % 3 == 0) {
        sync_me_file(&db, &cache, MeFileId(me_file))
            .await
            .expect("sync");
    }
    let synced_into_target_1 = scalar(
        &db,
        &format!(
            "SELECT COUNT(*) {rows_of_target_1} AND me_file_id <= {passed} \
             AND CAST(matching_tags_snapshot AS TEXT) LIKE '%changed%'"
        ),
    )
    .await;
    assert!(
        !populate.is_finished(),
        "target 1 was still populating when its rows were read"
    );
    assert!(
        synced_into_target_1 > 0,
        "syncs wrote target 1's rows of me_files its populate had passed"
    );

    let mut tasks = Vec::new();
    for worker in 0..6i64 {
        let db = db.clone();
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            // overlapping ranges: every me_file is synced by two workers
            for me_file in (1..=1_500i64).filter(|m| m % 3 == worker % 3) {
                let mut attempt = 0;
                loop {
                    match sync_me_file(&db, &cache, MeFileId(me_file)).await {
                        Ok(_) => break,
                        Err(err) if err.is_transient() && attempt < 5 => attempt += 1,
                        Err(err) => panic!("sync {me_file}: {err}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("sync task");
    }
    populate.await.unwrap().expect("populate");
    for target in all_targets() {
        assert_population_exact(&db, target).await;
    }
    assert_eq!(
        snapline_tests::target_status(&db, TargetId(1)).await,
        Some(PopulationStatus::Populated)
    );
}

/// Bands past three quarters of the cache's TTL are reloaded in the background: syncs keep
/// using the entries meanwhile, and new ones are in place before the old would have expired,
/// so no sync waits for a reload (all of them used to reload at once, every TTL).
async fn band_cache_reloads_ahead_of_expiry(backend: Backend) {
    let test = TestDb::seeded(backend, &data()).await;
    let db = &test.db;
    let ttl = Duration::from_secs(4);
    let cache = BandCache::new(ttl);
    let targets = all_targets();
    let started = std::time::Instant::now();
    let first = cache.get(db, &targets).await.unwrap();
    assert_eq!(first.len(), targets.len());
    tokio::time::sleep(ttl * 4 / 5).await;
    let aging = cache.get(db, &targets).await.unwrap();
    assert!(
        first.iter().zip(&aging).all(|(a, b)| Arc::ptr_eq(a, b)),
        "entries still valid are used as they are"
    );
    loop {
        let now = cache.get(db, &targets).await.unwrap();
        if now.iter().zip(&first).all(|(a, b)| !Arc::ptr_eq(a, b)) {
            assert_eq!(
                now.iter().map(|b| b.target_id()).collect::<Vec<_>>(),
                targets,
                "the same targets, reloaded"
            );
            break;
        }
        assert!(
            started.elapsed() < ttl,
            "not reloaded in the background before the TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A syncer consuming the test database's queue in this process, as `syncer serve` does.
fn start_syncer(db: &repo::Db, name: &str, concurrency: usize) -> InProcessWorker {
    let ctx = jobs::sync_me_file::SyncerContext::new(db.clone(), Arc::new(fresh_cache()));
    let mut options = jobs::worker::WorkerOptions::new(name);
    options.concurrency = concurrency;
    InProcessWorker::start(move |stopped| async move {
        jobs::sync_me_file::serve(ctx, &options, stopped).await
    })
}

/// Each job's wait from push to taken, in ms, in push order.
async fn raw_pickups(db: &repo::Db) -> Vec<i64> {
    entity_ids(
        db,
        "SELECT CAST(EXTRACT(EPOCH FROM lock_at - run_at) * 1000 AS BIGINT) \
         FROM apalis.jobs ORDER BY run_at",
    )
    .await
}

/// Transactions committed in the test's database so far (PostgreSQL's statistics, which
/// backends report within about a second).
async fn commits(db: &repo::Db) -> i64 {
    scalar(
        db,
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .await
}

/// With nothing to do, a syncer's workers wait for a push (or their heartbeat) instead of
/// fetching again and again: joined in one task they once woke each other into about a
/// thousand empty fetches a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_wait_instead_of_polling() {
    let test = TestDb::migrated(Backend::Postgres).await;
    let db = test.db.clone();
    let worker = start_syncer(&db, "idle-test-worker", 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = commits(&db).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = commits(&db).await - before;
    assert!(!worker.is_finished());
    // Each of the 4 workers beats (and fetches) about once a second: a few dozen commits.
    assert!(
        during < 300,
        "{during} transactions in 3 s from idle workers"
    );
    // ...and a push still reaches them at once.
    jobs::sync_me_file::enqueue(&db, MeFileId(1)).await.unwrap();
    wait_for("the pushed sync to finish", || async {
        db.queue_jobs()
            .of_queue(jobs::sync_me_file::QUEUE)
            .await
            .unwrap()
            .iter()
            .all(|j| j.status == "Done")
    })
    .await;
    worker.stop().await;
}

/// A push wakes an idle worker at once, also after a burst. apalis took one notification of
/// the worker's LISTEN stream per poll: those that arrived while it ran a sync piled up, and
/// the workers came to sleep until their heartbeat (a second) with jobs waiting; here most of
/// the single pushes then waited 250-830 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_after_a_burst_are_taken_at_once() {
    let test = TestDb::seeded(Backend::Postgres, &data()).await;
    populate_all(&test).await;
    let db = test.db.clone();
    let worker = start_syncer(&db, "burst-test-worker", 4);
    let all_done = |expected: usize| {
        let db = db.clone();
        move || {
            let db = db.clone();
            async move {
                let jobs = db
                    .queue_jobs()
                    .of_queue(jobs::sync_me_file::QUEUE)
                    .await
                    .unwrap();
                jobs.len() == expected && jobs.iter().all(|j| j.status == "Done")
            }
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Pushed with the plain SQL, whose `run_at` is the push's time (apalis's own push keeps
    // whole seconds), so that `lock_at - run_at` is the wait to be taken.
    let push = |me_file: i64| {
        let db = db.clone();
        async move {
            let payload = format!("{{\"me_file_id\":{me_file}}}");
            let queue = jobs::sync_me_file::QUEUE;
            assert!(
                db.queue_jobs()
                    .push_plain_sql(queue, &payload, 5)
                    .await
                    .unwrap()
            );
        }
    };
    // A burst of real syncs: notifications arrive while the workers are busy.
    for me_file in 1..=400 {
        push(me_file).await;
    }
    wait_for("the burst to be done", all_done(400)).await;
    // Then single pushes, 50 a second, on idle workers.
    for me_file in 1001..=1100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        push(me_file).await;
    }
    wait_for("the single pushes to be done", all_done(500)).await;
    worker.stop().await;
    // Push to taken, per job: woken by the push it is a few ms; left to the heartbeat, up
    // to a second. A few slow ones are allowed for a loaded machine.
    let late = scalar(
        &db,
        "SELECT COUNT(*) FROM apalis.jobs WHERE lock_at - run_at > interval '250 milliseconds' \
         AND (convert_from(job, 'UTF8')::jsonb ->> 'me_file_id')::bigint > 1000",
    )
    .await;
    assert!(
        late <= 10,
        "{late} of 100 single pushes waited over 250 ms to be taken; waits in ms: {:?}",
        raw_pickups(&db).await
    );
}

/// The README's plain-SQL enqueue, run by "another service" inside its own transaction with
/// its tag change, then consumed by a real syncer worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_service_enqueues_with_plain_sql_in_its_transaction() {
    let test = TestDb::seeded(Backend::Postgres, &data()).await;
    let db = test.db.clone();
    populate_all(&test).await;
    let member = scalar(&db, "SELECT MIN(p.me_file_id) FROM target_populations p JOIN target_bands b ON b.id = p.target_band_id WHERE b.target_id = 1").await;
    // Exactly the README's statement, in the other service's own transaction with its change.
    {
        use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
        let txn = db.conn().begin().await.unwrap();
        txn.execute_unprepared(&format!(
            "DELETE FROM me_file_tags WHERE me_file_id = {member} AND trait_id BETWEEN 20001 AND 20006"
        ))
        .await
        .unwrap();
        let payload = format!("{{\"me_file_id\":{member}}}");
        for _ in 0..2 {
            txn.execute_raw(Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                repo::PLAIN_SQL_PUSH,
                ["sync_me_file".into(), payload.clone().into(), 5i32.into()],
            ))
            .await
            .unwrap();
        }
        txn.commit().await.unwrap();
    }
    // a malformed payload from a buggy service
    execute(&db, "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) VALUES (apalis.generate_ulid(), 'sync_me_file', convert_to('{\"me_file\":\"x\"}', 'UTF8'), 'Pending', 0, 5, now(), 0)").await;

    let worker = start_syncer(&db, "sync-test-worker", 1);
    let started = std::time::Instant::now();
    loop {
        let jobs = db
            .queue_jobs()
            .of_queue(jobs::sync_me_file::QUEUE)
            .await
            .unwrap();
        if jobs.iter().any(|j| j.status == "Done")
            && jobs
                .iter()
                .all(|j| j.status != "Pending" && j.status != "Running" && j.status != "Queued")
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{jobs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.stop().await;
    assert_eq!(
        entity_ids(&db, &format!("SELECT COUNT(*) FROM target_populations p JOIN target_bands b ON b.id = p.target_band_id WHERE b.target_id = 1 AND p.me_file_id = {member}")).await,
        vec![0]
    );
    assert_population_exact(&db, TargetId(1)).await;
    let jobs = db
        .queue_jobs()
        .of_queue(jobs::sync_me_file::QUEUE)
        .await
        .unwrap();
    let malformed = jobs
        .iter()
        .find(|j| j.payload.contains("\"x\""))
        .expect("kept");
    assert_eq!(malformed.status, "Killed", "{malformed:?}");
    assert_eq!(malformed.attempts, 1, "not retried: {malformed:?}");
    // The second push in the same transaction was absorbed by the first: one job.
    let member_payload = format!("{{\"me_file_id\":{member}}}");
    let member_jobs: Vec<_> = jobs
        .iter()
        .filter(|j| j.payload == member_payload)
        .collect();
    assert_eq!(member_jobs.len(), 1, "{member_jobs:?}");
    assert_eq!(member_jobs[0].status, "Done");
}

/// A band edit is followed by a repopulate; a sync that starts after that populate began
/// never uses bands read before it, however long the cache would keep them.
async fn a_sync_after_a_repopulate_uses_the_edited_bands(backend: Backend) {
    let test = TestDb::populated(backend, &data()).await;
    let db = &test.db;
    let target = TargetId(1);
    let innermost = db
        .bands()
        .of_target(target)
        .await
        .unwrap()
        .bands()
        .last()
        .unwrap()
        .id;
    let member = MeFileId(
        snapline_tests::scalar(
            db,
            &format!(
                "SELECT MIN(me_file_id) FROM target_populations WHERE target_band_id = {innermost}"
            ),
        )
        .await,
    );
    let cache = BandCache::new(Duration::from_secs(600));
    sync_me_file(db, &cache, member).await.unwrap(); // the target's bands are cached

    // The platform edits the innermost band (no trait group left: it matches nobody, and
    // as the band with fewest groups it is now the outermost), then repopulates.
    snapline_tests::execute(
        db,
        &format!("DELETE FROM target_band_trait_groups WHERE target_band_id = {innermost}"),
    )
    .await;
    populate_target(db, target, &PopulateOptions::default())
        .await
        .unwrap();
    snapline_tests::assert_population_exact(db, target).await;

    sync_me_file(db, &cache, member).await.unwrap();
    snapline_tests::assert_population_exact(db, target).await;
}

/// Syncing me_files in groups (one transaction each, as a syncer does with the jobs waiting
/// at once) gives each me_file the summary, and the database the rows, that syncing them one
/// at a time gives: two databases, the same random changes (tags added, edited, deleted,
/// me_files registered and deleted), one synced me_file by me_file, the other in groups of
/// up to 16 with a me_file given twice and one that never existed.
async fn a_group_syncs_as_its_me_files_one_at_a_time(backend: Backend) {
    let seed = data();
    let (one_by_one, grouped) = tokio::join!(
        TestDb::seeded(backend, &seed),
        TestDb::seeded(backend, &seed)
    );
    tokio::join!(populate_all(&one_by_one), populate_all(&grouped));
    let traits = catalog_traits();
    let mut touched: Vec<MeFileId> = Vec::new();
    for test in [&one_by_one, &grouped] {
        let mut rng = ChaCha8Rng::seed_from_u64(77);
        touched.clear();
        for _ in 0..300 {
            let me_file = random_change(test, &mut rng, &traits).await;
            if !touched.contains(&me_file) {
                touched.push(me_file);
            }
        }
    }
    touched.push(MeFileId(987_654));
    let cache = fresh_cache();
    let mut singles = Vec::new();
    for me_file in &touched {
        singles.push(
            sync_me_file(&one_by_one.db, &cache, *me_file)
                .await
                .expect("sync"),
        );
    }
    let mut groups = Vec::new();
    for (i, group) in touched.chunks(16).enumerate() {
        let mut group = group.to_vec();
        if i == 3 {
            group.push(group[0]);
        }
        let summaries = jobs::sync_me_file::sync_me_files(&grouped.db, &cache, &group)
            .await
            .expect("group sync");
        assert_eq!(
            summaries.len(),
            group.len(),
            "one summary per me_file given"
        );
        if i == 3 {
            assert_eq!(
                summaries[0],
                summaries[group.len() - 1],
                "a me_file given twice"
            );
        }
        groups.extend(summaries.into_iter().take(group.len().min(16)));
    }
    assert_eq!(groups, singles, "the same summaries, me_file by me_file");
    assert!(
        singles.iter().any(|s| !s.me_file_exists && s.deleted > 0),
        "a deleted me_file lost rows: {singles:?}"
    );
    assert!(singles.iter().map(|s| s.changes()).sum::<u64>() > 50);
    assert_eq!(
        raw_rows(&grouped.db, &all_targets()).await,
        raw_rows(&one_by_one.db, &all_targets()).await
    );
    for target in all_targets() {
        assert_population_exact(&grouped.db, target).await;
    }
}

/// A syncer takes the jobs waiting at once in groups (several me_files per transaction),
/// and a group whose write fails is synced again one me_file per transaction: only the job
/// of the me_file that cannot be written fails. (The platform's trigger here refuses one
/// me_file's rows.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_me_file_fails_only_its_own_job_of_a_group() {
    let test = TestDb::seeded(Backend::Postgres, &data()).await;
    let db = test.db.clone();
    populate_all(&test).await;
    let members = entity_ids(
        &db,
        "SELECT DISTINCT me_file_id FROM target_populations ORDER BY me_file_id LIMIT 40",
    )
    .await;
    let list = members
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    // Every tag of theirs edited: each sync rewrites their snapshots.
    execute(
        &db,
        &format!("UPDATE me_file_tags SET tag_value = 'grouped' WHERE me_file_id IN ({list})"),
    )
    .await;
    let poison = members[17];
    execute(
        &db,
        &format!(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'me_file {poison} is refused'; END $$"
        ),
    )
    .await;
    execute(
        &db,
        &format!(
            "CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON target_populations \
             FOR EACH ROW WHEN (NEW.me_file_id = {poison}) EXECUTE FUNCTION refuse_poison()"
        ),
    )
    .await;
    // xmin is the 32-bit transaction id
    let before = scalar(&db, "SELECT txid_current() % 4294967296").await;
    for me_file in &members {
        assert!(
            jobs::sync_me_file::enqueue(&db, MeFileId(*me_file))
                .await
                .unwrap()
        );
    }
    // One transaction at a time, up to 8 me_files each: the 40 jobs wait in groups. A
    // syncer of its own, whose metrics no other test's workers write to.
    let port = snapline_tests::free_port();
    let syncer = snapline_tests::Served::start(
        &snapline_tests::binary("syncer"),
        &test.url,
        &[
            ("SNAPLINE_SERVE__SYNCER_HTTP", format!("127.0.0.1:{port}")),
            ("SNAPLINE_SYNCER__ME_FILES_PER_TRANSACTION", "8".to_owned()),
            ("SNAPLINE_QUEUES__SYNC_ME_FILE__CONCURRENCY", "1".to_owned()),
        ],
    );
    let started = std::time::Instant::now();
    let jobs = loop {
        let jobs = db
            .queue_jobs()
            .of_queue(jobs::sync_me_file::QUEUE)
            .await
            .unwrap();
        if jobs
            .iter()
            .all(|j| j.status == "Done" || j.status == "Killed")
        {
            break jobs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "jobs still open: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, metrics) = snapline_tests::http_get(port, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    drop(syncer);
    for job in &jobs {
        if job.payload == format!(r#"{{"me_file_id":{poison}}}"#) {
            assert_eq!(
                (job.status.as_str(), job.attempts),
                ("Killed", 1),
                "{job:?}"
            );
            let error = job.error.clone().unwrap_or_default();
            assert!(
                error.contains(&format!("me_file {poison} is refused")),
                "{error}"
            );
        } else {
            assert_eq!(job.status, "Done", "{job:?}");
        }
    }
    assert!(
        snapline_tests::metric_value(
            &metrics,
            r#"snapline_sync_transactions_total{outcome="split"}"#
        ) > 0.0,
        "the poisoned group was split: {metrics}"
    );
    // Rows rewritten by one transaction share its id (xmin): fewer transactions than
    // me_files means groups.
    let written = format!(
        "FROM target_populations WHERE me_file_id IN ({list}) \
         AND CAST(CAST(xmin AS TEXT) AS BIGINT) > {before}"
    );
    let me_files = scalar(&db, &format!("SELECT COUNT(DISTINCT me_file_id) {written}")).await;
    let transactions = scalar(
        &db,
        &format!("SELECT COUNT(DISTINCT CAST(CAST(xmin AS TEXT) AS BIGINT)) {written}"),
    )
    .await;
    assert_eq!(me_files, 39, "every me_file but the refused one was synced");
    assert!(
        transactions <= 20,
        "{me_files} me_files synced in {transactions} transactions"
    );
    // The refused me_file kept its old rows; without the trigger it syncs like the rest.
    execute(&db, "DROP TRIGGER refuse_poison ON target_populations").await;
    sync_me_file(&db, &fresh_cache(), MeFileId(poison))
        .await
        .unwrap();
    for target in all_targets() {
        assert_population_exact(&db, target).await;
    }
}

both_backends! {
    stale_bands_after_repopulate => a_sync_after_a_repopulate_uses_the_edited_bands;
    equivalence_with_populate => syncing_every_change_equals_a_fresh_populate;
    register_add_update_delete => register_add_update_delete;
    out_of_scope_untouched => targets_outside_the_scope_are_never_touched;
    unknown_me_file => an_unknown_me_file_loses_its_rows;
    dedup_of_waiting_pushes => a_waiting_sync_absorbs_duplicate_pushes;
    band_edit_within_cache_age => a_band_edit_reaches_syncs_within_the_cache_age;
    concurrency => concurrent_syncs_and_a_populate;
    band_cache_reloads_ahead => band_cache_reloads_ahead_of_expiry;
    group_equals_one_at_a_time => a_group_syncs_as_its_me_files_one_at_a_time;
}

/// A sync scheduled far in the future does not absorb a push needed now, and does not count
/// as the oldest waiting job.
async fn a_job_scheduled_far_ahead_does_not_swallow_pushes(backend: Backend) {
    let test = TestDb::migrated(backend).await;
    let db = &test.db;
    let future = match backend {
        Backend::Postgres => {
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
             VALUES ('01HQ0000000000000000000009', 'sync_me_file', convert_to('{\"me_file_id\":9}', 'UTF8'), \
             'Pending', 0, 5, now() + interval '100 years', 0)"
        }
        Backend::Sqlite => {
            "INSERT INTO Jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
             VALUES ('01HQ0000000000000000000009', 'sync_me_file', '{\"me_file_id\":9}', \
             'Pending', 0, 5, CAST(strftime('%s', 'now') AS INTEGER) + 3153600000, 0)"
        }
    };
    snapline_tests::execute(db, future).await;
    assert!(
        jobs::sync_me_file::enqueue(db, MeFileId(9)).await.unwrap(),
        "the push is added"
    );
    assert!(
        !jobs::sync_me_file::enqueue(db, MeFileId(9)).await.unwrap(),
        "and the due one absorbs the next"
    );
    let depth = db
        .queue_jobs()
        .depth(jobs::sync_me_file::QUEUE)
        .await
        .unwrap();
    assert_eq!(depth.waiting, 2);
    let age = depth.oldest_waiting_secs.expect("the due job");
    assert!((0.0..60.0).contains(&age), "{age}");
    if backend == Backend::Postgres {
        assert!(
            !db.queue_jobs()
                .push_plain_sql(jobs::sync_me_file::QUEUE, r#"{"me_file_id":9}"#, 5)
                .await
                .unwrap(),
            "the plain-SQL push sees the due one"
        );
    }
}

both_backends! {
    far_future_job => a_job_scheduled_far_ahead_does_not_swallow_pushes;
}

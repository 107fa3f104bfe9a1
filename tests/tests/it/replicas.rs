//! Four replicas of each binary against one PostgreSQL database while a driver pushes
//! populate, sync and backfill jobs, changes tags and leaves NULL snapshots behind (as a
//! buggy writer would), all at once for a bounded period. Afterwards: no me_file twice in a
//! target, every population equal to a fresh computation, no NULL snapshot, every cron tick
//! executed once, and every job done (deadlocks and lost races retried, nothing failed).
//!
//! In its own test binary, so that no other test shares the database server's connections
//! while twelve processes run.

use domain::{BandId, MeFileId, TargetId, TraitId};
use jobs::{backfill_queue, populate_target, sync_me_file};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use snapline_tests::{
    Backend, Served, TestDb, assert_population_exact, binary, execute, scalar, wait_for,
};
use std::time::{Duration, Instant};
use synth::SeedOptions;

const ME_FILES: i64 = 3_000;
const DRIVE_FOR: Duration = Duration::from_secs(12);
/// Enough for every kind of job the driver pushes to come up several times.
const MIN_CHANGES: i64 = 360;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_of_each_binary_under_a_driver_leave_everything_exact() {
    let test = TestDb::populated(
        Backend::Postgres,
        &SeedOptions {
            me_files: ME_FILES as u64,
            targets: 6,
            legacy_share: 0.05,
            deleted_band_offers: false,
            ..SeedOptions::default()
        },
    )
    .await;
    let db = test.db.clone();
    let bands: Vec<i64> =
        snapline_tests::entity_ids(&db, "SELECT id FROM target_bands ORDER BY id").await;
    let traits: Vec<TraitId> = synth::parents()
        .iter()
        .flat_map(|p| p.children.iter().map(|c| TraitId(c.id)))
        .collect();

    let env = vec![
        ("SNAPLINE_BACKFILLER__SCHEDULE", "* * * * * *".to_owned()),
        ("SNAPLINE_QUEUES__SYNC_ME_FILE__CONCURRENCY", "2".to_owned()),
        ("SNAPLINE_POPULATOR__BATCH_SIZE", "500".to_owned()),
        ("RUST_LOG", "error".to_owned()),
    ];
    let mut replicas = Vec::new();
    for _ in 0..4 {
        for name in ["populator", "syncer", "backfiller"] {
            replicas.push(Served::start(&binary(name), &test.url, &env));
        }
    }
    // Each service's sessions carry its name, for `pg_stat_activity` and the server's logs.
    wait_for("the three services' sessions named", || async {
        scalar(
            &db,
            "SELECT COUNT(DISTINCT application_name) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name IN \
             ('snapline-populator', 'snapline-syncer', 'snapline-backfiller')",
        )
        .await
            == 3
    })
    .await;

    // The driver: tag changes each followed by its sync, populates, band backfills and
    // NULL offers, interleaved.
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let started = Instant::now();
    let (mut changes, mut populates, mut band_jobs, mut null_offers) = (0, 0, 0, 0);
    // For at least DRIVE_FOR and at least MIN_CHANGES changes, however loaded the machine.
    while started.elapsed() < DRIVE_FOR || changes < MIN_CHANGES {
        let me_file = MeFileId(rng.random_range(1..=ME_FILES));
        let tags = db.tags();
        match rng.random_range(0..100) {
            0..40 => {
                let trait_id = traits[rng.random_range(0..traits.len())];
                tags.platform_add(me_file, trait_id, Some("driver"))
                    .await
                    .unwrap();
            }
            40..70 => {
                tags.platform_edit_first(me_file, &format!("edit {changes}"))
                    .await
                    .unwrap();
            }
            _ => {
                tags.platform_delete_last(me_file).await.unwrap();
            }
        }
        sync_me_file::enqueue(&db, me_file).await.unwrap();
        changes += 1;
        if changes % 60 == 0 {
            populate_target::enqueue(&db, TargetId(rng.random_range(1..=6)))
                .await
                .unwrap();
            populates += 1;
        }
        if changes % 90 == 0 {
            let band = bands[rng.random_range(0..bands.len())];
            backfill_queue::enqueue(
                &db,
                backfill_queue::BackfillJob::Band(backfill_queue::SnapshotBandPopulations {
                    band_id: band,
                }),
            )
            .await
            .unwrap();
            band_jobs += 1;
        }
        if changes % 40 == 0 {
            // A buggy writer: an offer without its snapshot, on a band the me_file may or may
            // not be a member of (then it is an orphan, computed from tags).
            let band = BandId(bands[rng.random_range(0..bands.len())]);
            execute(
                &db,
                &format!(
                    "INSERT INTO offers (campaign_id, me_file_id, target_band_id) VALUES (1, {}, {})",
                    me_file.0, band.0
                ),
            )
            .await;
            null_offers += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(changes > 300 && populates > 3 && band_jobs > 2 && null_offers > 5);

    // Drain: every job ends, and the next cron ticks leave no NULL behind.
    let drained = Instant::now();
    loop {
        let (open, killed) = snapline_tests::unfinished_jobs(&db).await;
        assert!(killed.is_empty(), "{killed:?}");
        let nulls = db.stats().null_snapshots().await.unwrap().total();
        if open.is_empty() && nulls == 0 {
            break;
        }
        assert!(
            drained.elapsed() < Duration::from_secs(120),
            "jobs still open: {open:?}; {nulls} NULL snapshots left"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Offers written once the tags are still: each backfilled (by the next cron tick) with
    // exactly what the set-based SQL owes it, its population's snapshot or, for a band the
    // me_file is not in, the snapshot of its tags.
    execute(
        &db,
        "INSERT INTO offers (campaign_id, me_file_id, target_band_id) \
         SELECT 1, m.id, b.id FROM me_files m CROSS JOIN target_bands b WHERE m.id % 50 = 0",
    )
    .await;
    let null_ids = snapline_tests::null_snapshot_ids(&db).await;
    assert!(null_ids[1].len() > 100, "{} NULL offers", null_ids[1].len());
    wait_for("the next cron tick to fill the new offers", || async {
        db.stats().null_snapshots().await.unwrap().total() == 0
    })
    .await;
    let stopped_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Stopped only once the tick of this second is in: none may be missing at the end.
    wait_for("the tick of the second the replicas are stopped in", || async {
        scalar(&db, "SELECT COALESCE(MAX(CAST(substr(idempotency_key, 15) AS bigint)), 0) FROM apalis.jobs WHERE job_type = 'backfill' AND idempotency_key LIKE 'backfill_tick:%'").await >= stopped_at
    })
    .await;
    drop(replicas);
    snapline_tests::assert_backfill_owed(&db, &null_ids).await;

    let doubled = scalar(
        &db,
        "SELECT COUNT(*) FROM (SELECT b.target_id, p.me_file_id FROM target_populations p \
         JOIN target_bands b ON b.id = p.target_band_id GROUP BY 1, 2 HAVING COUNT(*) > 1) d",
    )
    .await;
    assert_eq!(doubled, 0, "no me_file twice in a target");
    for target in 1..=6 {
        assert_population_exact(&db, TargetId(target)).await;
    }
    // Each cron tick ran once across four schedulers, and none was lost.
    let (tick_jobs, distinct_ticks) = (
        scalar(&db, "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'backfill' AND idempotency_key LIKE 'backfill_tick:%'").await,
        scalar(&db, "SELECT COUNT(DISTINCT idempotency_key) FROM apalis.jobs WHERE job_type = 'backfill' AND idempotency_key LIKE 'backfill_tick:%'").await,
    );
    assert_eq!(tick_jobs, distinct_ticks, "one job per cron tick");
    // None lost: the ticks' seconds are contiguous from the first to the last, and they
    // went on until the replicas stopped (however long twelve processes took to start on
    // a loaded machine).
    let (first, last) = (
        scalar(&db, "SELECT MIN(CAST(substr(idempotency_key, 15) AS bigint)) FROM apalis.jobs WHERE job_type = 'backfill' AND idempotency_key LIKE 'backfill_tick:%'").await,
        scalar(&db, "SELECT MAX(CAST(substr(idempotency_key, 15) AS bigint)) FROM apalis.jobs WHERE job_type = 'backfill' AND idempotency_key LIKE 'backfill_tick:%'").await,
    );
    assert_eq!(
        last - first + 1,
        distinct_ticks,
        "every second from {first} to {last} has its tick"
    );
    assert!(
        last >= stopped_at,
        "the last tick at {last}, the replicas stopped at {stopped_at}"
    );
    assert!(
        distinct_ticks >= 5,
        "{distinct_ticks} ticks, from {first} to {last}"
    );
}

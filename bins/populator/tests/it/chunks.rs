//! One target populated by two `populator serve` processes: its chunks spread over both,
//! the rows are exact, and syncs served during the populate (a `syncer serve` beside
//! them) stay correct.

use domain::{MeFileId, PopulationStatus, TargetId};
use jobs::{populate_target, sync_me_file};
use snapline_tests::{Backend, Served, TestDb, assert_population_exact, execute, scalar, wait_for};
use std::time::Duration;
use synth::SeedOptions;

const POPULATOR: &str = env!("CARGO_BIN_EXE_populator");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_populators_share_a_targets_chunks_and_the_rows_are_exact() {
    let test = TestDb::seeded(
        Backend::Postgres,
        &SeedOptions::sized(12_000, 4).with_legacy_share(0.05),
    )
    .await;
    let env = [
        ("SNAPLINE_POPULATOR__CHUNK_ME_FILES", "1000".to_owned()),
        ("SNAPLINE_POPULATOR__BATCH_SIZE", "250".to_owned()),
    ];
    let mut replicas = [
        Served::start(POPULATOR, &test.url, &env),
        Served::start(POPULATOR, &test.url, &env),
        Served::start(&snapline_tests::binary("syncer"), &test.url, &[]),
    ];
    for target in [1, 2] {
        populate_target::enqueue(&test.db, TargetId(target))
            .await
            .unwrap();
    }
    // Meanwhile the platform changes tags of me_files all over the id space and pushes
    // their syncs: whichever chunk has or has not passed them, the rows end exact.
    snapline_tests::wait_until_populating(&test.db, TargetId(1)).await;
    for me_file in (1..=12_000).step_by(600) {
        execute(
            &test.db,
            &format!(
                "DELETE FROM me_file_tags WHERE me_file_id BETWEEN {me_file} AND {}",
                me_file + 20
            ),
        )
        .await;
        for synced in me_file..=me_file + 20 {
            sync_me_file::enqueue(&test.db, MeFileId(synced))
                .await
                .unwrap();
        }
    }
    let db = test.db.clone();
    wait_for("both targets populated and the syncs done", || {
        let db = db.clone();
        async move {
            let mut all = db
                .queue_jobs()
                .depth(sync_me_file::QUEUE)
                .await
                .is_ok_and(|d| d.waiting + d.running == 0);
            for target in [1, 2] {
                all &= snapline_tests::target_status(&db, TargetId(target)).await
                    == Some(PopulationStatus::Populated);
            }
            all
        }
    })
    .await;
    for target in [1, 2] {
        assert_population_exact(&test.db, TargetId(target)).await;
    }
    let chunk_jobs = scalar(
        &test.db,
        "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'populate_chunk' AND status = 'Done'",
    )
    .await;
    assert!(chunk_jobs >= 24, "12 chunks per target: {chunk_jobs}");
    let processes = scalar(
        &test.db,
        "SELECT COUNT(DISTINCT split_part(lock_by, '#', 1)) FROM apalis.jobs \
         WHERE job_type = 'populate_chunk' AND status = 'Done'",
    )
    .await;
    assert_eq!(processes, 2, "both replicas populated chunks");
    let open = scalar(
        &test.db,
        "SELECT COUNT(*) FROM snapline_populate_chunks WHERE NOT done",
    )
    .await;
    assert_eq!(open, 0);
    let leases = scalar(
        &test.db,
        "SELECT COUNT(*) FROM snapline_leases WHERE name LIKE 'populate_target:%'",
    )
    .await;
    assert_eq!(leases, 0, "the last chunk of each run released its lease");
    for replica in &mut replicas {
        replica.signal("TERM");
        assert_eq!(replica.wait_exit(Duration::from_secs(30)), Some(0));
    }
}

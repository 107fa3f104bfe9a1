//! Beside the platform: change capture pushing snapline's jobs inside the platform's own
//! transactions, and the events snapline tells the platform in its own.

use super::{TARGETS, assert_every_target_exact};
use domain::{PopulationStatus, TargetId};
use jobs::BandCache;
use jobs::populate_target::{self, PopulateOptions, PopulatorContext, populate_target};
use jobs::sync_me_file::{self, SyncerContext, sync_me_file};
use jobs::worker::WorkerOptions;
use migration::{Migrator, MigratorTrait};
use repo::Db;
use sea_orm::{ConnectionTrait, TransactionTrait};
use snapline_tests::{InProcessWorker, TestDb, execute, scalar, wait_for};
use std::sync::Arc;
use std::time::Duration;

/// The platform's schema and data, migrated, every target populated, capture on.
async fn captured_platform() -> TestDb {
    let test = TestDb::platform().await;
    test.migrate().await;
    for target in TARGETS {
        populate_target(&test.db, TargetId(target), &PopulateOptions::default())
            .await
            .expect("populate");
    }
    test.db.capture().enable().await.expect("capture enable");
    test
}

/// The payloads of the waiting jobs of `queue`, sorted, once the capture outbox is drained
/// (what a syncer does every `syncer.capture_poll_ms`).
async fn waiting(db: &Db, queue: &str) -> Vec<String> {
    while db.capture().drain(10_000).await.unwrap().0 > 0 {}
    let mut payloads: Vec<String> = db
        .queue_jobs()
        .of_queue(queue)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.status == "Pending")
        .map(|j| j.payload)
        .collect();
    payloads.sort();
    payloads
}

async fn clear_queues(db: &Db) {
    execute(db, "DELETE FROM apalis.jobs").await;
    execute(db, "DELETE FROM snapline_capture_outbox").await;
}

/// Runs `statements` in one transaction, as the platform's code would.
async fn in_one_transaction(db: &Db, statements: &[&str]) {
    let txn = db.conn().begin().await.unwrap();
    for sql in statements {
        txn.execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    txn.commit().await.unwrap();
}

const TAG_COLUMNS: &str = "me_file_tags (me_file_id, trait_id, tag_value, modified_date, modified_by, added_date, added_by)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_pushes_one_job_per_me_file_and_per_target() {
    let test = captured_platform().await;
    let db = &test.db;
    let installed = db.capture().installed().await.unwrap();
    assert_eq!(installed.len(), repo::CaptureRepo::expected_triggers());
    assert!(installed.iter().all(|t| t.version == repo::CAPTURE_VERSION));
    db.capture()
        .enable()
        .await
        .expect("enabling twice is harmless");
    assert_eq!(db.capture().installed().await.unwrap(), installed);
    // An older version's objects (left by an earlier snapline) are listed as such, and
    // `enable` replaces them with this version's.
    execute(
        db,
        "CREATE FUNCTION snapline_capture_v0_tags_ins() RETURNS trigger LANGUAGE plpgsql \
         AS $f$ BEGIN RETURN NULL; END $f$; \
         CREATE TRIGGER snapline_capture_v0_tags_ins AFTER INSERT ON me_file_tags \
         FOR EACH STATEMENT EXECUTE FUNCTION snapline_capture_v0_tags_ins()",
    )
    .await;
    let with_old = db.capture().installed().await.unwrap();
    assert!(
        with_old
            .iter()
            .any(|t| t.version == 0 && t.table == "me_file_tags")
    );
    db.capture().enable().await.expect("upgrade");
    assert_eq!(db.capture().installed().await.unwrap(), installed);
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM pg_proc WHERE proname = 'snapline_capture_v0_tags_ins'"
        )
        .await,
        0,
        "the old version's functions are gone"
    );
    let syncs = |db: &Db| {
        let db = db.clone();
        async move { waiting(&db, sync_me_file::QUEUE).await }
    };

    // Registration: the me_file and its tags, one transaction: one sync.
    in_one_transaction(
        db,
        &[
            "INSERT INTO me_files (id, display_name, created_at, updated_at) VALUES (401, 'new', now(), now())",
            &format!("INSERT INTO {TAG_COLUMNS} VALUES (401, 11, NULL, now(), 1, now(), 1), (401, 22, 'x', now(), 1, now(), 1), (401, 31, NULL, now(), 1, now(), 1)"),
        ],
    )
    .await;
    assert_eq!(syncs(db).await, [r#"{"me_file_id":401}"#]);
    clear_queues(db).await;

    // The platform replacing a parent's tags: delete, then insert, one transaction: one sync.
    in_one_transaction(
        db,
        &[
            "DELETE FROM me_file_tags WHERE me_file_id = 5 AND trait_id IN (21, 22, 23)",
            &format!("INSERT INTO {TAG_COLUMNS} VALUES (5, 21, 'new age', now(), 1, now(), 1)"),
        ],
    )
    .await;
    assert_eq!(syncs(db).await, [r#"{"me_file_id":5}"#]);
    // A second change while that sync waits adds nothing: the waiting one reads both.
    execute(
        db,
        "DELETE FROM me_file_tags WHERE me_file_id = 5 AND trait_id = 31",
    )
    .await;
    assert_eq!(syncs(db).await, [r#"{"me_file_id":5}"#]);
    clear_queues(db).await;

    // A write that changes none of the captured columns pushes nothing.
    execute(
        db,
        "UPDATE me_file_tags SET modified_date = now() WHERE me_file_id <= 50",
    )
    .await;
    assert!(syncs(db).await.is_empty());

    // A bulk rollover (every 18-24 becomes 25-34): at most one sync per me_file.
    let rolled = scalar(
        db,
        "SELECT COUNT(DISTINCT me_file_id) FROM me_file_tags WHERE trait_id = 21",
    )
    .await;
    assert!(rolled > 50, "{rolled}");
    execute(
        db,
        "UPDATE me_file_tags SET trait_id = 22 WHERE trait_id = 21",
    )
    .await;
    let pushed = syncs(db).await;
    let mut distinct = pushed.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), pushed.len(), "one job per me_file");
    assert_eq!(pushed.len() as i64, rolled);
    clear_queues(db).await;

    // A band edit: one populate of its target, which is marked populating at once.
    execute(
        db,
        "INSERT INTO target_band_trait_groups (target_band_id, trait_group_id, created_at, updated_at) \
         VALUES (102, 8, now(), now())",
    )
    .await;
    assert_eq!(
        waiting(db, populate_target::QUEUE).await,
        [r#"{"target_id":1}"#]
    );
    assert_eq!(
        snapline_tests::target_status(db, TargetId(1)).await,
        Some(PopulationStatus::Populating)
    );
    clear_queues(db).await;

    // A parent trait renamed shows in the snapshots of every band listing one of its
    // children: targets 1 (Golf, Tennis) and 5 (Cooking). A target not populated (2, failed)
    // is left alone.
    execute(
        db,
        "UPDATE targets SET population_status = 'failed' WHERE id = 2",
    )
    .await;
    execute(
        db,
        "UPDATE traits SET trait_name = 'Sports & hobbies' WHERE id = 3",
    )
    .await;
    assert_eq!(
        waiting(db, populate_target::QUEUE).await,
        [r#"{"target_id":1}"#, r#"{"target_id":5}"#]
    );
    clear_queues(db).await;
    execute(
        db,
        "UPDATE trait_group_traits SET updated_at = now() WHERE trait_group_id = 6",
    )
    .await;
    assert!(
        waiting(db, populate_target::QUEUE).await.is_empty(),
        "target 2 is failed: out of capture's scope"
    );

    // Off: no trigger left, writes push nothing.
    db.capture().disable().await.unwrap();
    assert!(db.capture().installed().await.unwrap().is_empty());
    execute(db, "DELETE FROM me_file_tags WHERE me_file_id = 7").await;
    assert!(syncs(db).await.is_empty());

    // `migration down` removes it too; `up` again leaves it off.
    db.capture().enable().await.unwrap();
    // Down past the eighth migration, capture's teardown.
    let past_capture_teardown = Migrator::migrations().len() as u32 - 7;
    Migrator::down(db.conn().inner(), Some(past_capture_teardown))
        .await
        .expect("down");
    assert!(db.capture().installed().await.unwrap().is_empty());
    Migrator::up(db.conn().inner(), None).await.expect("up");
    assert!(db.capture().installed().await.unwrap().is_empty());
}

/// Platform-style writes done only with SQL while `syncer` and `populator` workers run: once
/// the queues drain, every population is what a fresh populate gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_writes_keep_every_population_exact() {
    let test = captured_platform().await;
    let db = test.db.clone();
    let syncer = {
        let ctx = SyncerContext::new(db.clone(), Arc::new(BandCache::new(Duration::from_secs(5))));
        let options = WorkerOptions {
            concurrency: 2,
            ..WorkerOptions::new("capture-syncer")
        };
        InProcessWorker::start(move |stopped| async move {
            sync_me_file::serve(ctx, &options, stopped).await
        })
    };
    let populator = {
        let ctx = PopulatorContext {
            db: db.clone(),
            options: PopulateOptions::default(),
        };
        let options = WorkerOptions::new("capture-populator");
        InProcessWorker::start(move |stopped| async move {
            populate_target::serve(ctx, &options, stopped).await
        })
    };

    // Registration.
    in_one_transaction(
        &db,
        &[
            "INSERT INTO me_files (id, display_name, created_at, updated_at) VALUES (401, 'new', now(), now())",
            &format!("INSERT INTO {TAG_COLUMNS} VALUES (401, 11, NULL, now(), 1, now(), 1), (401, 21, 'x', now(), 1, now(), 1), (401, 32, NULL, now(), 1, now(), 1)"),
        ],
    )
    .await;
    // Delete-then-insert of a parent's tags.
    in_one_transaction(
        &db,
        &[
            "DELETE FROM me_file_tags WHERE me_file_id = 12 AND trait_id IN (11, 12)",
            &format!("INSERT INTO {TAG_COLUMNS} VALUES (12, 11, 'now male', now(), 1, now(), 1)"),
        ],
    )
    .await;
    // A tag delete, a value edit, a me_file deleted.
    execute(
        &db,
        "DELETE FROM me_file_tags WHERE me_file_id = 30 AND trait_id = 11",
    )
    .await;
    execute(
        &db,
        "UPDATE me_file_tags SET tag_value = 'edited' WHERE me_file_id = 60",
    )
    .await;
    in_one_transaction(
        &db,
        &[
            "DELETE FROM me_file_tags WHERE me_file_id = 90",
            "DELETE FROM me_files WHERE id = 90",
        ],
    )
    .await;
    // The bulk age rollover.
    execute(
        &db,
        "UPDATE me_file_tags SET trait_id = 22 WHERE trait_id = 21",
    )
    .await;
    // A band edit and a trait rename.
    execute(
        &db,
        "INSERT INTO target_band_trait_groups (target_band_id, trait_group_id, created_at, updated_at) \
         VALUES (202, 8, now(), now())",
    )
    .await;
    execute(
        &db,
        "UPDATE traits SET trait_name = 'Pooches' WHERE id = 51",
    )
    .await;

    wait_for("the queues to drain", || {
        let db = db.clone();
        async move {
            let (open, killed) = snapline_tests::unfinished_jobs(&db).await;
            assert!(killed.is_empty(), "{killed:?}");
            let populating = scalar(
                &db,
                "SELECT COUNT(*) FROM targets WHERE population_status = 'populating'",
            )
            .await;
            open.is_empty() && populating == 0
        }
    })
    .await;
    syncer.stop().await;
    populator.stop().await;
    assert!(
        scalar(
            &db,
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'populate_target'"
        )
        .await
            >= 2,
        "the band edit and the rename were populated"
    );
    assert_every_target_exact(&db).await;
}

/// Receives the notifications on `snapline_events` until none comes for `quiet`.
async fn drain(listener: &mut sqlx::postgres::PgListener, quiet: Duration) -> Vec<String> {
    let mut received = Vec::new();
    while let Ok(Ok(notification)) = tokio::time::timeout(quiet, listener.recv()).await {
        received.push(notification.payload().to_owned());
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_told_in_the_transaction_of_the_change() {
    let test = TestDb::platform().await;
    test.migrate().await;
    let pool = test.db.pg_pool().unwrap().clone();
    sqlx::raw_sql(sqlx::AssertSqlSafe(snapline_tests::OBAN_SCHEMA))
        .execute(&pool)
        .await
        .expect("an Oban job table");
    let recipe = include_str!("../../../../deploy/events/oban_reconcile_offers.sql");
    let db = test.db.clone().with_events(repo::EventOptions {
        notify: true,
        me_file_bands_changed_sql: Some(recipe.to_owned()),
        target_populated_sql: None,
    });
    // The platform listens on a session of its own: LISTEN never goes through a
    // transaction-mode pooler (it would leave the server session listening for others).
    let mut listener = sqlx::postgres::PgListener::connect(&test.direct_url)
        .await
        .unwrap();
    listener.listen(repo::EVENTS_CHANNEL).await.unwrap();
    let reconciliations = |db: &Db, me_file: i64| {
        let db = db.clone();
        async move {
            scalar(
                &db,
                &format!(
                    "SELECT COUNT(*) FROM oban_jobs WHERE queue = 'offers' \
                     AND worker = 'Qlarius.Jobs.ReconcileOffersForMeFileWorker' \
                     AND args = '{{\"me_file_id\": {me_file}}}'::jsonb"
                ),
            )
            .await
        }
    };

    // A populate tells the platform once, for the target: not once per member (a 1M-member
    // populate must not enqueue a million reconciliations).
    populate_target(&db, TargetId(1), &PopulateOptions::default())
        .await
        .unwrap();
    let members = snapline_tests::stored_rows(&db, TargetId(1)).await;
    assert!(members.len() > 50);
    let events = drain(&mut listener, Duration::from_millis(500)).await;
    assert_eq!(events, [r#"{"event":"target_populated","target_id":1}"#]);
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM oban_jobs").await,
        0,
        "no reconciliation from a populate"
    );

    // A sync that changes nothing tells nothing; one that moves the me_file tells it once,
    // and the platform's job is not doubled within its uniqueness period.
    let cache = BandCache::new(Duration::ZERO);
    let member = *members.keys().next().unwrap();
    sync_me_file(&db, &cache, member).await.unwrap();
    assert!(
        drain(&mut listener, Duration::from_millis(300))
            .await
            .is_empty()
    );
    execute(
        &db,
        &format!("DELETE FROM me_file_tags WHERE me_file_id = {member}"),
    )
    .await;
    let summary = sync_me_file(&db, &cache, member).await.unwrap();
    assert!(summary.deleted > 0);
    assert_eq!(
        drain(&mut listener, Duration::from_millis(300)).await,
        [format!(
            r#"{{"event":"me_file_bands_changed","me_file_id":{member}}}"#
        )]
    );
    assert_eq!(reconciliations(&db, member.0).await, 1);

    // A transaction that fails tells nothing: a populate whose configured statement fails
    // rolls back its `populated`, and its notifications with it.
    let failing = test.db.clone().with_events(repo::EventOptions {
        notify: true,
        me_file_bands_changed_sql: None,
        target_populated_sql: Some("SELECT 1 / (0 * $1::bigint)".into()),
    });
    let err = populate_target(&failing, TargetId(2), &PopulateOptions::default())
        .await
        .expect_err("the statement fails");
    assert!(err.to_string().contains("division by zero"), "{err}");
    let events = drain(&mut listener, Duration::from_millis(300)).await;
    assert!(
        !events.iter().any(|e| e.contains("target_populated")),
        "{events:?}"
    );
    assert_ne!(
        snapline_tests::target_status(&failing, TargetId(2)).await,
        Some(PopulationStatus::Populated)
    );
}

/// The documented plain-SQL populate push, run by the platform in its own transaction, marks
/// the target `populating` with the push, and a second push while one waits adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_sql_populate_push_marks_the_target() {
    let test = TestDb::platform().await;
    let db = &test.db;
    test.migrate().await;
    populate_target(db, TargetId(2), &PopulateOptions::default())
        .await
        .unwrap();
    for _ in 0..2 {
        let txn = db.conn().begin().await.unwrap();
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            repo::PLAIN_SQL_PUSH_POPULATE,
            [2i64.into(), 5i32.into()],
        ))
        .await
        .unwrap();
        txn.commit().await.unwrap();
    }
    assert_eq!(
        waiting(db, populate_target::QUEUE).await,
        [r#"{"target_id":2}"#]
    );
    assert_eq!(
        snapline_tests::target_status(db, TargetId(2)).await,
        Some(PopulationStatus::Populating)
    );
}

/// What a worker's fetch takes now (apalis's own `get_jobs`, as a poll runs it), committed.
async fn fetch_now(db: &Db, queue: &str) -> Vec<String> {
    let rows = db
        .conn()
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT convert_from(job, 'UTF8') FROM apalis.get_jobs('probe-worker', $1, 10)",
            [queue.into()],
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect()
}

/// Nothing is pushed before the writer commits: capture's outbox row is invisible to the
/// drain until then, and a waiting job taken in between (it reads the tags from before the
/// change, right at that moment) no longer absorbs the drain's push, so the committed change
/// gets a sync of its own. A plain-SQL push absorbed by a waiting job keeps that job from
/// being taken until the writer commits: taken in between, the job would read the tags from
/// before the change, and the change would never be synced. A job a fetch already holds is
/// not counted as waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_pushed_only_once_committed_and_never_lost_to_a_taken_job() {
    let test = captured_platform().await;
    let db = &test.db;
    clear_queues(db).await;
    execute(
        db,
        "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen) VALUES \
         ('probe-worker', 'sync_me_file', 'test', '', now()), \
         ('slow-worker', 'sync_me_file', 'test', '', now())",
    )
    .await;
    let sync_60 = r#"{"me_file_id":60}"#;
    let push = |payload: &'static str| {
        sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            repo::PLAIN_SQL_PUSH,
            ["sync_me_file".into(), payload.into(), 5i32.into()],
        )
    };

    // Capture: a tag edit of me_file 60, uncommitted, while a sync of it waits.
    db.conn().execute_raw(push(sync_60)).await.unwrap();
    let writer = db.conn().begin().await.unwrap();
    writer
        .execute_unprepared("UPDATE me_file_tags SET tag_value = 'edited' WHERE me_file_id = 60")
        .await
        .unwrap();
    assert_eq!(
        db.capture().drain(100).await.unwrap(),
        (0, 0),
        "nothing to drain yet"
    );
    assert_eq!(
        fetch_now(db, "sync_me_file").await,
        [sync_60],
        "the waiting job is taken before the edit commits"
    );
    writer.commit().await.unwrap();
    assert_eq!(
        db.capture().drain(100).await.unwrap(),
        (1, 1),
        "the committed edit gets a sync of its own: the taken one read the old tags"
    );
    assert_eq!(fetch_now(db, "sync_me_file").await, [sync_60]);
    // Committed while a sync waits untaken: that one absorbs it.
    db.conn().execute_raw(push(sync_60)).await.unwrap();
    execute(
        db,
        "UPDATE me_file_tags SET tag_value = 'again' WHERE me_file_id = 60",
    )
    .await;
    assert_eq!(db.capture().drain(100).await.unwrap(), (1, 0), "absorbed");
    assert_eq!(db.capture().outbox_len().await.unwrap(), 0);

    // The plain-SQL push, the same way.
    clear_queues(db).await;
    db.conn().execute_raw(push(sync_60)).await.unwrap();
    let writer = db.conn().begin().await.unwrap();
    let added = writer.execute_raw(push(sync_60)).await.unwrap();
    assert_eq!(added.rows_affected(), 0, "absorbed");
    assert!(fetch_now(db, "sync_me_file").await.is_empty());
    writer.commit().await.unwrap();
    assert_eq!(fetch_now(db, "sync_me_file").await, [sync_60]);

    // A waiting job a fetch holds (its transaction still open) is not waiting any more: the
    // push adds a job instead of waiting for the fetch.
    clear_queues(db).await;
    db.conn().execute_raw(push(sync_60)).await.unwrap();
    let fetcher = db.conn().begin().await.unwrap();
    fetcher
        .execute_unprepared("SELECT * FROM apalis.get_jobs('slow-worker', 'sync_me_file', 10)")
        .await
        .unwrap();
    let added = tokio::time::timeout(Duration::from_secs(5), db.conn().execute_raw(push(sync_60)))
        .await
        .expect("the push does not wait for the fetch")
        .unwrap();
    assert_eq!(added.rows_affected(), 1);
    fetcher.rollback().await.unwrap();
}

/// A trait, a trait group or a link row deleted no longer counts (the platform's code
/// ignores link rows whose trait or group is gone, and it has no foreign keys to delete them):
/// the deletion is captured like an edit, and the populate it pushes drops what the deleted
/// rows gave, in membership and in snapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_traits_and_trait_groups_no_longer_count() {
    let test = captured_platform().await;
    let db = &test.db;
    clear_queues(db).await;
    // Members of the young sporty band (103: men, young, sporty = Golf or Tennis) by Golf
    // alone; and band 502 (pet owners who cook: groups 7 and 8).
    let golf_only = snapline_tests::entity_ids(
        db,
        "SELECT p.me_file_id::bigint FROM target_populations p WHERE p.target_band_id = 103 \
         AND NOT EXISTS (SELECT 1 FROM me_file_tags t WHERE t.me_file_id = p.me_file_id AND t.trait_id = 32) \
         ORDER BY 1",
    )
    .await;
    assert!(!golf_only.is_empty(), "the data set has Golf-only members");

    execute(db, "DELETE FROM traits WHERE id = 31").await;
    assert_eq!(
        waiting(db, populate_target::QUEUE).await,
        [r#"{"target_id":1}"#],
        "a deleted trait is captured"
    );
    clear_queues(db).await;
    execute(db, "DELETE FROM trait_groups WHERE id = 8").await;
    assert_eq!(
        waiting(db, populate_target::QUEUE).await,
        [r#"{"target_id":5}"#],
        "a deleted trait group is captured"
    );
    for target in [1, 5] {
        populate_target(db, TargetId(target), &PopulateOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(
        scalar(
            db,
            &format!(
                "SELECT COUNT(*) FROM target_populations WHERE target_band_id = 103 \
                 AND me_file_id IN ({})",
                golf_only
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        )
        .await,
        0,
        "a tag of a deleted trait matches nothing"
    );
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM target_populations p JOIN target_bands b ON b.id = p.target_band_id \
             WHERE b.target_id = 1 AND p.matching_tags_snapshot::text LIKE '%[31,%'"
        )
        .await,
        0,
        "no snapshot shows a deleted trait"
    );
    // Band 502 lost its Cooks group: with one group, like band 501, it is the innermost of
    // the two, and takes every pet owner.
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM target_populations WHERE target_band_id = 501"
        )
        .await,
        0
    );
    assert!(
        scalar(
            db,
            "SELECT COUNT(*) FROM target_populations WHERE target_band_id = 502"
        )
        .await
            > 0
    );
    // A link row deleted, likewise.
    clear_queues(db).await;
    execute(
        db,
        "DELETE FROM trait_group_traits WHERE trait_group_id = 7 AND trait_id = 52",
    )
    .await;
    assert_eq!(
        waiting(db, populate_target::QUEUE).await,
        [r#"{"target_id":2}"#, r#"{"target_id":5}"#],
        "the two targets whose bands list the group"
    );
    for target in [2, 5] {
        populate_target(db, TargetId(target), &PopulateOptions::default())
            .await
            .unwrap();
    }
    assert_every_target_exact(db).await;
    for target in [1, 2, 5] {
        snapline_tests::assert_population_as_sql_computes(db, TargetId(target)).await;
    }
}

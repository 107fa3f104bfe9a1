//! snapline behind a transaction-mode pooler (PgBouncer), with `database.pooler =
//! "transaction"`. These run only through one: `.ci/run` starts Debian's PgBouncer
//! (`.ci/pgbouncer`) and runs them, with the populate, sync, backfill, capture and
//! queue-admin tests, under `POOLER_FOR_TESTS=127.0.0.1:6432` (`just test-pooler`).

use domain::MeFileId;
use jobs::sync_me_file;
use repo::{Db, DbOptions, Pooler};
use snapline_tests::{Backend, Served, TestDb, binary, scalar, wait_for};
use synth::SeedOptions;

/// A database reached through the pooler; panics when the run has none.
async fn through_the_pooler(options: &SeedOptions) -> TestDb {
    assert!(
        snapline_tests::pooler_address().is_some(),
        "these tests need a transaction-mode pooler: start one (.ci/pgbouncer) and set POOLER_FOR_TESTS=127.0.0.1:6432"
    );
    let test = TestDb::seeded(Backend::Postgres, options).await;
    assert_ne!(test.url, test.direct_url);
    test
}

/// Reads of the targets from `tasks` tasks at once, `rounds` each: the errors met.
async fn read_concurrently(db: &Db, tasks: usize, rounds: usize) -> Vec<String> {
    let mut set = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let db = db.clone();
        set.spawn(async move {
            let mut errors = Vec::new();
            for round in 0..rounds {
                // a statement with a parameter: prepared, then bound
                if let Err(err) = db
                    .bands()
                    .of_target(domain::TargetId(((task + round) % 4 + 1) as i64))
                    .await
                {
                    errors.push(err.to_string());
                }
            }
            errors
        });
    }
    let mut errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(found) => errors.extend(found),
            // sqlx reading another statement's rows as this one's (seen: an index out of
            // bounds in its row decoding)
            Err(err) => errors.push(format!("reader panicked: {err}")),
        }
    }
    errors
}

/// The setting is what makes it work: the same load through the pooler fails on sqlx's
/// prepared statements without it, and passes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PgBouncer in transaction mode: .ci/run starts one (.ci/pgbouncer) and runs these (just test-pooler)"]
async fn prepared_statements_through_the_pooler_need_the_setting() {
    let test = through_the_pooler(&SeedOptions::sized(100, 4)).await;
    let errors = read_concurrently(&test.db, 6, 40).await;
    assert!(errors.is_empty(), "with pooler = transaction: {errors:?}");

    let unset = Db::connect(&DbOptions {
        max_connections: 6,
        ..DbOptions::new(test.url.clone())
    })
    .await
    .expect("connect through the pooler");
    assert_eq!(unset.pooler(), Pooler::None);
    let errors = read_concurrently(&unset, 6, 40).await;
    assert!(
        errors
            .iter()
            .any(|e| e.contains("prepared statement") || e.contains("reader panicked")),
        "without the setting the pooler hands sqlx's named statements to other clients' sessions: {errors:?}"
    );
    unset.close().await;
}

/// Workers find their jobs through the pooler by polling (no LISTEN session is opened),
/// and the syncer's jobs run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PgBouncer in transaction mode: .ci/run starts one (.ci/pgbouncer) and runs these (just test-pooler)"]
async fn workers_poll_through_the_pooler_and_listen_nowhere() {
    let test = through_the_pooler(&SeedOptions::sized(500, 3)).await;
    let _syncer = Served::start(
        &binary("syncer"),
        &test.url,
        &[
            ("SNAPLINE_DATABASE__POOLER", "transaction".to_owned()),
            ("SNAPLINE_DATABASE__MIGRATE_ON_START", "false".to_owned()),
            (
                "SNAPLINE_SERVE__SYNCER_HTTP",
                format!("127.0.0.1:{}", snapline_tests::free_port()),
            ),
        ],
    );
    for me_file in 1..=50 {
        sync_me_file::enqueue(&test.db, MeFileId(me_file))
            .await
            .expect("push a sync");
    }
    wait_for("the 50 syncs done through the pooler", || async {
        snapline_tests::done_jobs(&test.db, sync_me_file::QUEUE).await == 50
    })
    .await;
    let direct = Db::connect(&DbOptions::new(test.direct_url.clone()))
        .await
        .expect("connect directly");
    let database = test.direct_url.rsplit('/').next().unwrap().to_owned();
    let listening = scalar(
        &direct,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND query ILIKE 'LISTEN%'"
        ),
    )
    .await;
    assert_eq!(listening, 0, "no session of this database ran LISTEN");
    direct.close().await;
}

/// What needs a session says so at start instead of failing on the pooler's first reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PgBouncer in transaction mode: .ci/run starts one (.ci/pgbouncer) and runs these (just test-pooler)"]
async fn migrations_refuse_a_transaction_pooler_with_a_clear_error() {
    let test = through_the_pooler(&SeedOptions::sized(10, 1)).await;
    let migration = std::process::Command::new(binary("migration"))
        .arg("up")
        .env("DATABASE_URL", &test.url)
        .env("SNAPLINE_DATABASE__POOLER", "transaction")
        .output()
        .expect("migration starts");
    let stderr = String::from_utf8_lossy(&migration.stderr);
    assert_eq!(migration.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("set DATABASE_URL to PostgreSQL itself"),
        "{stderr}"
    );

    let populator = std::process::Command::new(binary("populator"))
        .arg("serve")
        .env("SNAPLINE_PROFILE", "test")
        .env("DATABASE_URL", &test.url)
        .env("SNAPLINE_DATABASE__POOLER", "transaction")
        .env("SNAPLINE_DATABASE__MIGRATE_ON_START", "true")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("populator starts");
    let stderr = String::from_utf8_lossy(&populator.stderr);
    assert!(!populator.status.success(), "{stderr}");
    assert!(
        stderr.contains("database.migrate_on_start needs a session of its own"),
        "{stderr}"
    );
}

//! Hostile and malformed job payloads, table-driven, through real apalis workers on
//! PostgreSQL: each is pushed with the plain SQL other services use, and each must end with a
//! clear outcome (a permanent failure naming what was wrong, kept as `Killed` after one
//! attempt, or a harmless success) while the data stays exactly as it was.

use jobs::BandCache;
use jobs::backfill_queue::{self, BackfillerContext};
use jobs::populate_target::{self, PopulatorContext};
use jobs::sync_me_file::{self, SyncerContext};
use jobs::worker::WorkerOptions;
use repo::Db;
use snapline_tests::{Backend, TestDb, raw_rows, scalar};
use std::sync::Arc;
use std::time::Duration;
use synth::SeedOptions;

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Failed permanently, not retried, with this in its error.
    Killed(&'static str),
    /// Succeeded (and changed nothing: the data was already right).
    Done,
}

struct Case {
    queue: &'static str,
    payload: String,
    expect: Expect,
}

fn case(queue: &'static str, payload: &str, expect: Expect) -> Case {
    Case {
        queue,
        payload: payload.to_owned(),
        expect,
    }
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let populate = populate_target::QUEUE;
    let sync = sync_me_file::QUEUE;
    let backfill = backfill_queue::QUEUE;
    let shape_target = r#"is not {"target_id": <integer>}"#;
    let shape_me_file = r#"is not {"me_file_id": <integer>}"#;
    let shape_band = r#"is not {} or {"band_id": <integer>}"#;
    let huge = format!(r#"{{"target_id":1,"pad":"{}"}}"#, "x".repeat(1_000_000));
    let mut cases = vec![
        case(populate, "{}", Killed(shape_target)),
        case(populate, r#"{"target_id":"1"}"#, Killed(shape_target)),
        case(populate, r#"{"target_id":null}"#, Killed(shape_target)),
        case(populate, r#"{"target_id":1.5}"#, Killed(shape_target)),
        case(
            populate,
            r#"{"target_id":-1}"#,
            Killed("target -1 does not exist"),
        ),
        case(
            populate,
            r#"{"target_id":0}"#,
            Killed("target 0 does not exist"),
        ),
        case(
            populate,
            r#"{"target_id":9223372036854775807}"#,
            Killed("target 9223372036854775807 does not exist"),
        ),
        case(
            populate,
            r#"{"target_id":9223372036854775808}"#,
            Killed(shape_target),
        ),
        case(
            populate,
            r#"{"target_id":1,"extra":true}"#,
            Killed(shape_target),
        ),
        case(populate, r#"[1]"#, Killed(shape_target)),
        case(populate, r#""populate""#, Killed(shape_target)),
        case(populate, "null", Killed(shape_target)),
        case(populate, r#"{"target_id": 1}"#, Done),
        case(sync, r#"{"me_file":"x"}"#, Killed(shape_me_file)),
        case(sync, r#"{"me_file_id":"42"}"#, Killed(shape_me_file)),
        case(sync, r#"{"me_file_id":1e3}"#, Killed(shape_me_file)),
        case(
            sync,
            r#"{"me_file_id":42,"me_file_id":43}"#,
            Killed(shape_me_file),
        ),
        case(sync, "{}", Killed(shape_me_file)),
        case(sync, r#"{"me_file_id":-42}"#, Done),
        case(sync, r#"{"me_file_id":999999999}"#, Done),
        case(sync, r#"{"me_file_id":7}"#, Done),
        // What the platform's own sync job carries.
        case(
            sync,
            r#"{"me_file_id":8,"deleted_trait_ids":[20001,20002]}"#,
            Done,
        ),
        case(sync, r#"{"me_file_id":9,"deleted_trait_ids":[]}"#, Done),
        case(
            sync,
            r#"{"me_file_id":10,"deleted_trait_ids":"x"}"#,
            Killed(shape_me_file),
        ),
        case(backfill, r#"{"band_id":"x"}"#, Killed(shape_band)),
        case(backfill, r#"{"band":1}"#, Killed(shape_band)),
        case(backfill, r#"{"band_id":1,"all":true}"#, Killed(shape_band)),
        case(backfill, "[]", Killed(shape_band)),
        case(backfill, "{}", Done),
        case(
            backfill,
            r#"{"band_id":-5}"#,
            Killed("band -5 does not exist and no population refers to it"),
        ),
        case(
            backfill,
            r#"{"band_id":123456789}"#,
            Killed("band 123456789 does not exist"),
        ),
    ];
    cases.push(Case {
        queue: populate,
        payload: huge,
        expect: Killed("bytes) is not"),
    });
    cases.push(case(
        sync,
        r#"{"me_file_id":"'; DROP TABLE me_files; --"}"#,
        Killed(shape_me_file),
    ));
    cases
}

/// Everything the jobs could touch, as stored.
async fn state(db: &Db) -> (String, [i64; 4]) {
    let targets: Vec<domain::TargetId> = (1..=6).map(domain::TargetId).collect();
    let rows = format!("{:?}", raw_rows(db, &targets).await);
    let counts = [
        scalar(db, "SELECT COUNT(*) FROM me_files").await,
        scalar(db, "SELECT COUNT(*) FROM me_file_tags").await,
        scalar(
            db,
            "SELECT COUNT(*) FROM offers WHERE matching_tags_snapshot IS NULL",
        )
        .await,
        scalar(
            db,
            "SELECT COUNT(*) FROM ad_events WHERE matching_tags_snapshot IS NULL",
        )
        .await,
    ];
    (rows, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_payload_gets_a_clear_outcome_and_leaves_the_data_alone() {
    let test = TestDb::populated(
        Backend::Postgres,
        &SeedOptions {
            me_files: 800,
            targets: 6,
            legacy_share: 0.05,
            deleted_band_offers: false,
            ..SeedOptions::default()
        },
    )
    .await;
    let db = test.db.clone();
    jobs::backfill::backfill(
        &db,
        &jobs::backfill::BackfillScope::All,
        &Default::default(),
        &|_| {},
    )
    .await
    .unwrap();
    let before = state(&db).await;

    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for case in &cases {
        assert!(
            db.queue_jobs()
                .push_plain_sql(case.queue, &case.payload, 3)
                .await
                .unwrap(),
            "pushed {}",
            case.payload
        );
    }

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    // Worker names are unique per queue, as the runtime names them.
    let options = |queue: &str| WorkerOptions {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        ..WorkerOptions::new(format!("hostile-{queue}"))
    };
    let workers = tokio::spawn({
        let db = db.clone();
        let stopped = stopped.clone();
        async move {
            let (populate_options, sync_options, backfill_options) = (
                options(populate_target::QUEUE),
                options(sync_me_file::QUEUE),
                options(backfill_queue::QUEUE),
            );
            tokio::try_join!(
                populate_target::serve(
                    PopulatorContext {
                        db: db.clone(),
                        options: Default::default()
                    },
                    &populate_options,
                    wait(stopped.clone())
                ),
                sync_me_file::serve(
                    SyncerContext::new(
                        db.clone(),
                        Arc::new(BandCache::new(Duration::from_secs(5)))
                    ),
                    &sync_options,
                    wait(stopped.clone())
                ),
                backfill_queue::serve(
                    BackfillerContext {
                        db: db.clone(),
                        options: Default::default(),
                        replica: "test".into(),
                    },
                    &backfill_options,
                    wait(stopped)
                ),
            )
        }
    });
    let started = std::time::Instant::now();
    loop {
        let mut open = Vec::new();
        for queue in jobs::queues::ALL {
            for job in db.queue_jobs().of_queue(queue).await.unwrap() {
                if job.status != "Done" && job.status != "Killed" {
                    open.push(format!(
                        "{} {} {} attempts {}: {:?}",
                        queue,
                        job.payload.chars().take(80).collect::<String>(),
                        job.status,
                        job.attempts,
                        job.last_result
                    ));
                }
            }
        }
        if open.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "jobs still open:\n{}",
            open.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    workers.await.unwrap().expect("workers stop cleanly");

    // The 1 MB payload's error quotes exactly its first 200 characters.
    let huge_job = db
        .queue_jobs()
        .of_queue(populate_target::QUEUE)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.payload.len() > 1_000_000)
        .expect("the 1 MB job is kept");
    let huge_error = huge_job.error.clone().unwrap_or_default();
    let quoted = huge_error
        .split_once("malformed job payload: ")
        .and_then(|(_, rest)| rest.split_once("... ("))
        .map(|(quote, _)| quote.chars().count());
    assert_eq!(
        quoted,
        Some(200),
        "{}",
        &huge_error[..huge_error.len().min(400)]
    );

    let mut failures = Vec::new();
    for case in &cases {
        let jobs = db.queue_jobs().of_queue(case.queue).await.unwrap();
        let job = jobs
            .iter()
            .find(|j| j.payload == case.payload)
            .expect("the job is kept");
        let error = job.error.clone().unwrap_or_default();
        let ok = match case.expect {
            Expect::Killed(needle) => {
                job.status == "Killed"
                    && job.attempts == 1
                    && error.contains(needle)
                    && payload_quote_within_200_chars(&error)
            }
            Expect::Done => job.status == "Done",
        };
        if !ok {
            failures.push(format!(
                "{} {}: expected {:?}, got {} after {} attempts: {}",
                case.queue,
                &case.payload.chars().take(80).collect::<String>(),
                case.expect,
                job.status,
                job.attempts,
                error.chars().take(300).collect::<String>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(state(&db).await, before, "the data is untouched");
}

/// A job whose bytes are not JSON at all (empty, or not UTF-8), or whose id is not a ULID, is
/// fetched in one poll with
/// valid jobs and a typed-wrong one: it is `Killed` after one attempt with a clear error, and
/// the others in its poll run normally (it used to stop the worker on every poll, forever).
async fn an_undecodable_job_is_killed_and_its_poll_mates_run(backend: Backend) {
    let test = TestDb::populated(
        backend,
        &SeedOptions {
            me_files: 200,
            targets: 4,
            legacy_share: 0.0,
            deleted_band_offers: false,
            ..SeedOptions::default()
        },
    )
    .await;
    let db = test.db.clone();
    let queue = sync_me_file::QUEUE;
    let insert = match backend {
        Backend::Postgres => {
            "BEGIN; \
             INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) VALUES \
             ('01HQ0000000000000000000001', 'sync_me_file', ''::bytea, 'Pending', 0, 5, now(), 0), \
             ('01HQ0000000000000000000002', 'sync_me_file', '\\xfffe00'::bytea, 'Pending', 0, 5, now(), 0), \
             ('01HQ0000000000000000000003', 'sync_me_file', convert_to('{\"me_file_id\":1}', 'UTF8'), 'Pending', 0, 5, now(), 0), \
             ('01HQ0000000000000000000004', 'sync_me_file', convert_to('{\"me_file_id\":2}', 'UTF8'), 'Pending', 0, 5, now(), 0), \
             ('01HQ0000000000000000000005', 'sync_me_file', convert_to('{\"me_file_id\":3}', 'UTF8'), 'Pending', 0, 5, now(), 0), \
             ('01HQ0000000000000000000006', 'sync_me_file', convert_to('{\"me_file_id\":4}', 'UTF8'), 'Pending', 0, 5, now(), 0), \
             ('01HQ0000000000000000000007', 'sync_me_file', convert_to('{\"me_file_id\":\"x\"}', 'UTF8'), 'Pending', 0, 5, now(), 0), \
             ('not-a-ulid', 'sync_me_file', convert_to('{\"me_file_id\":5}', 'UTF8'), 'Pending', 0, 5, now(), 0); \
             COMMIT;"
        }
        Backend::Sqlite => {
            "BEGIN; \
             INSERT INTO Jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) VALUES \
             ('01HQ0000000000000000000001', 'sync_me_file', X'', 'Pending', 0, 5, strftime('%s','now'), 0), \
             ('01HQ0000000000000000000002', 'sync_me_file', X'FFFE00', 'Pending', 0, 5, strftime('%s','now'), 0), \
             ('01HQ0000000000000000000003', 'sync_me_file', '{\"me_file_id\":1}', 'Pending', 0, 5, strftime('%s','now'), 0), \
             ('01HQ0000000000000000000004', 'sync_me_file', '{\"me_file_id\":2}', 'Pending', 0, 5, strftime('%s','now'), 0), \
             ('01HQ0000000000000000000005', 'sync_me_file', '{\"me_file_id\":3}', 'Pending', 0, 5, strftime('%s','now'), 0), \
             ('01HQ0000000000000000000006', 'sync_me_file', '{\"me_file_id\":4}', 'Pending', 0, 5, strftime('%s','now'), 0), \
             ('01HQ0000000000000000000007', 'sync_me_file', '{\"me_file_id\":\"x\"}', 'Pending', 0, 5, strftime('%s','now'), 0), \
             ('not-a-ulid', 'sync_me_file', '{\"me_file_id\":5}', 'Pending', 0, 5, strftime('%s','now'), 0); \
             COMMIT;"
        }
    };
    snapline_tests::execute(&db, insert).await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn({
        let db = db.clone();
        async move {
            let mut stopped = stopped;
            sync_me_file::serve(
                SyncerContext::new(db, Arc::new(BandCache::new(Duration::from_secs(5)))),
                &WorkerOptions {
                    backoff_min: Duration::from_millis(20),
                    backoff_max: Duration::from_millis(100),
                    ..WorkerOptions::new("poisoned")
                },
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )
            .await
        }
    });
    let started = std::time::Instant::now();
    let jobs = loop {
        let jobs = db.queue_jobs().of_queue(queue).await.unwrap();
        if jobs.len() == 8
            && jobs
                .iter()
                .all(|j| j.status == "Done" || j.status == "Killed")
        {
            break jobs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "jobs still open: {:?}",
            jobs.iter()
                .map(|j| (&j.id, &j.status, j.attempts, &j.last_result))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.send(true).unwrap();
    worker.await.unwrap().expect("the worker stops cleanly");

    for job in &jobs {
        let error = job.error.clone().unwrap_or_default();
        match job.id.as_str() {
            "01HQ0000000000000000000001" | "01HQ0000000000000000000002" | "not-a-ulid" => {
                assert_eq!(job.status, "Killed", "{job:?}");
                assert_eq!(job.attempts, 1, "{job:?}");
                assert!(error.contains("cannot be decoded"), "{error}");
            }
            "01HQ0000000000000000000007" => {
                assert_eq!(
                    (job.status.as_str(), job.attempts),
                    ("Killed", 1),
                    "{job:?}"
                );
                assert!(
                    error.contains(r#"is not {"me_file_id": <integer>}"#),
                    "{error}"
                );
            }
            _ => assert_eq!(job.status, "Done", "{job:?}"),
        }
    }
}

snapline_tests::both_backends! {
    undecodable_job => an_undecodable_job_is_killed_and_its_poll_mates_run;
}

/// Whatever a malformed payload quotes in its error is at most 200 characters: the error is
/// its prefix, at most 200 quoted characters, the size note and the expected shape.
fn payload_quote_within_200_chars(error: &str) -> bool {
    match error.split_once("malformed job payload: ") {
        Some((_, rest)) => {
            let quote = rest
                .rsplit_once(" is not ")
                .map_or(rest, |(quote, _)| quote);
            let quote = quote.split_once("... (").map_or(quote, |(quote, _)| quote);
            quote.chars().count() <= 200
        }
        None => error.chars().count() <= 300,
    }
}

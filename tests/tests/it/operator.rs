//! An operator's `snapctl jobs` session, end to end on both backends: real `populator serve`
//! and `syncer serve` processes work the queues while `snapctl` finds a job that failed for
//! good, the cause is fixed, the job is retried and completes; kill, bulk retry, purge and
//! the filters are held to what they say.

use jobs::{populate_target, sync_me_file};
use snapline_tests::{Backend, Served, TestDb, binary, execute, wait_for};
use std::process::Output;
use synth::SeedOptions;

/// `snapctl ARGS` on the test's database; its output.
fn snapctl(test: &TestDb, args: &[&str]) -> std::process::Output {
    snapline_tests::snapctl(&test.url, args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `snapctl ARGS --json` parsed, after checking it succeeded.
fn snapctl_json(test: &TestDb, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = snapctl(test, &args);
    assert!(
        out.status.success(),
        "snapctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// How many jobs `snapctl jobs list FILTERS` lists.
fn listed(test: &TestDb, filters: &[&str]) -> usize {
    let mut args = vec!["jobs", "list"];
    args.extend_from_slice(filters);
    snapctl_json(test, &args).as_array().map_or(0, Vec::len)
}

/// The status of job `id` as `snapctl jobs show` reads it.
fn status_of(test: &TestDb, id: &str) -> String {
    snapctl_json(test, &["jobs", "show", id])["status"]
        .as_str()
        .expect("status")
        .to_owned()
}

async fn a_failed_job_is_found_fixed_retried_and_completes(backend: Backend) {
    let test = TestDb::populated(backend, &SeedOptions::sized(300, 6)).await;
    let db = &test.db;
    // Target 7 does not exist yet: its populate fails for good.
    jobs::queue::push(
        db,
        populate_target::QUEUE,
        populate_target::PopulateTarget { target_id: 7 },
        5,
    )
    .await
    .unwrap();
    for me_file in [41, 42, 43] {
        sync_me_file::enqueue(db, domain::MeFileId(me_file))
            .await
            .unwrap();
    }
    let env = [("RUST_LOG", "error".to_owned())];
    let _populator = Served::start(&binary("populator"), &test.url, &env);
    let syncer = Served::start(&binary("syncer"), &test.url, &env);

    // Found: listed by status and by queue with its error, and by target.
    let killed = || {
        snapctl_json(
            &test,
            &[
                "jobs",
                "list",
                "--queue",
                "populate_target",
                "--status",
                "killed",
            ],
        )
    };
    wait_for("the populate of target 7 killed", || async {
        killed().as_array().is_some_and(|jobs| jobs.len() == 1)
    })
    .await;
    let job = killed()[0].clone();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["payload"], r#"{"target_id":7}"#);
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("target 7 does not exist"),
        "{job}"
    );
    let by_target = snapctl_json(&test, &["jobs", "list", "--target", "7"]);
    assert_eq!(by_target.as_array().unwrap().len(), 1, "{by_target}");
    assert_eq!(by_target[0]["id"], id.as_str());
    let table = stdout(&snapctl(&test, &["jobs", "list", "--status", "killed"]));
    assert!(
        table.contains(&id) && table.contains("target 7 does not exist"),
        "{table}"
    );
    let shown = stdout(&snapctl(&test, &["jobs", "show", &id]));
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("last error:") && l.ends_with("target 7 does not exist")),
        "{shown}"
    );

    // The me_file filter finds the syncs of that me_file and no other.
    wait_for("the three syncs done", || async {
        listed(&test, &["--queue", "sync_me_file", "--status", "done"]) == 3
    })
    .await;
    let of_42 = snapctl_json(&test, &["jobs", "list", "--me-file", "42"]);
    assert_eq!(of_42.as_array().unwrap().len(), 1, "{of_42}");
    assert_eq!(of_42[0]["payload"], r#"{"me_file_id":42}"#);
    assert_eq!(
        snapctl_json(&test, &["jobs", "list", "--me-file", "4"])
            .as_array()
            .unwrap()
            .len(),
        0,
        "me_file 4 is not 41, 42 or 43"
    );

    // A running or waiting job cannot be retried, an unknown id is said so: exit code 2.
    let out = snapctl(&test, &["jobs", "retry", "no-such-job"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("not found: no-such-job"));

    // Fixed, then retried: it completes.
    execute(db, "INSERT INTO targets (id, title) VALUES (7, 'late')").await;
    let out = snapctl(&test, &["jobs", "retry", &id]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("retried {id}")));
    wait_for("the retried populate done", || async {
        status_of(&test, &id) == "Done"
    })
    .await;
    let done = snapctl_json(&test, &["jobs", "show", &id]);
    assert_eq!(done["error"], serde_json::Value::Null, "{done}");
    assert_eq!(done["attempts"], 1);

    // A bulk retry asks first, and refuses without a terminal unless --yes.
    let out = snapctl(
        &test,
        &[
            "jobs",
            "retry",
            "--queue",
            "sync_me_file",
            "--status",
            "done",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("add --yes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = snapctl(
        &test,
        &[
            "jobs",
            "retry",
            "--queue",
            "sync_me_file",
            "--status",
            "done",
            "--yes",
        ],
    );
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "retried 3 Done job(s) of sync_me_file");
    wait_for("the three syncs done again", || async {
        listed(&test, &["--queue", "sync_me_file", "--status", "done"]) == 3
    })
    .await;

    // Kill takes a waiting job (the syncer stopped, so none takes it first); a done one is
    // skipped with its status.
    drop(syncer);
    sync_me_file::enqueue(db, domain::MeFileId(44))
        .await
        .unwrap();
    let waiting = snapctl_json(
        &test,
        &["jobs", "list", "--me-file", "44", "--status", "pending"],
    );
    let later = waiting[0]["id"]
        .as_str()
        .expect("the waiting sync")
        .to_owned();
    let out = snapctl(&test, &["jobs", "kill", &later, &id]);
    assert_eq!(out.status.code(), Some(2), "one of two was not killed");
    assert!(stdout(&out).contains(&format!("killed {later}")));
    assert!(stdout(&out).contains(&format!("skipped {id}: it is Done")));
    assert_eq!(status_of(&test, &later), "Killed");
    let shown = snapctl_json(&test, &["jobs", "show", &later]);
    assert!(
        shown["error"]
            .as_str()
            .unwrap()
            .contains("killed by an operator"),
        "{shown}"
    );
    // The kill is one ended attempt in the job's story, with no worker.
    let ended = shown["attempts_ended"].as_array().expect("attempts_ended");
    assert_eq!(ended.len(), 1, "{shown}");
    assert_eq!(ended[0]["status"], "Killed", "{shown}");
    assert!(ended[0]["worker"].is_null(), "{shown}");
    let text = stdout(&snapctl(&test, &["jobs", "show", &later]));
    assert!(text.contains("attempt 0:   Killed at "), "{text}");

    // Delete takes any job no worker holds: the killed one goes, an unknown id is named.
    let out = snapctl(
        &test,
        &["jobs", "delete", &later, "01HQ0000000000000000000000"],
    );
    assert_eq!(out.status.code(), Some(2), "one id named no job");
    assert!(
        stdout(&out).contains(&format!("deleted {later}")),
        "{}",
        stdout(&out)
    );
    let gone = snapctl(&test, &["jobs", "show", &later]);
    assert_eq!(gone.status.code(), Some(2), "the deleted job is no job");

    // Purge: nothing is older than a day; everything done is older than 0s. A running
    // status is refused.
    let out = snapctl(
        &test,
        &[
            "jobs",
            "purge",
            "--queue",
            "sync_me_file",
            "--status",
            "done",
            "--older-than",
            "1d",
            "--yes",
        ],
    );
    assert!(
        stdout(&out).contains("nothing to purge"),
        "{}",
        stdout(&out)
    );
    let out = snapctl(
        &test,
        &[
            "jobs",
            "purge",
            "--queue",
            "sync_me_file",
            "--status",
            "done",
            "--older-than",
            "0s",
            "--yes",
        ],
    );
    assert_eq!(stdout(&out).trim(), "purged 3 Done job(s) of sync_me_file");
    let out = snapctl(
        &test,
        &[
            "jobs",
            "purge",
            "--queue",
            "sync_me_file",
            "--status",
            "running",
            "--older-than",
            "1d",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = snapctl(&test, &["jobs", "list", "--queue", "sync"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown queue `sync`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_found_fixed_retried_and_completes_postgres() {
    a_failed_job_is_found_fixed_retried_and_completes(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_found_fixed_retried_and_completes_sqlite() {
    a_failed_job_is_found_fixed_retried_and_completes(Backend::Sqlite).await;
}

/// The job of `queue` whose payload names target `target`, as `snapctl jobs list` reads it.
fn populate_job(test: &TestDb, target: i64) -> serde_json::Value {
    let jobs = snapctl_json(
        test,
        &[
            "jobs",
            "list",
            "--queue",
            "populate_target",
            "--target",
            &target.to_string(),
        ],
    );
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    jobs[0].clone()
}

/// Held by a worker: `Running`, or `Queued` (apalis's PostgreSQL storage leaves a job it
/// runs `Queued`).
fn is_held(job: &serde_json::Value) -> bool {
    job["status"] == "Running" || job["status"] == "Queued"
}

async fn a_paused_queue_is_taken_by_no_replica(backend: Backend) {
    let test = TestDb::seeded(backend, &SeedOptions::sized(20_000, 6)).await;
    let ports = [snapline_tests::free_port(), snapline_tests::free_port()];
    let _replicas: Vec<Served> = ports
        .iter()
        .map(|port| {
            Served::start(
                &binary("populator"),
                &test.url,
                &[
                    (
                        "SNAPLINE_SERVE__POPULATOR_HTTP",
                        format!("127.0.0.1:{port}"),
                    ),
                    // a populate of 6 s or more (40 batches, 150 ms apart), to pause the
                    // queue while it runs
                    ("SNAPLINE_POPULATOR__BATCH_SIZE", "500".to_owned()),
                    ("SNAPLINE_POPULATOR__BATCH_PAUSE_MS", "150".to_owned()),
                    ("RUST_LOG", "error".to_owned()),
                ],
            )
        })
        .collect();
    populate_target::enqueue(&test.db, domain::TargetId(1))
        .await
        .unwrap();
    wait_for("the populate of target 1 running", || async {
        is_held(&populate_job(&test, 1))
    })
    .await;

    let out = snapctl(&test, &["queues", "pause", "populate_target"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).starts_with("paused populate_target"));
    // The queue table refuses the queue's jobs from the pause on; the replicas' gauges show
    // it within a second or two.
    tokio::time::sleep(2 * jobs::pause::PAUSE_POLL + std::time::Duration::from_millis(500)).await;
    // A push still lands; the running job finishes; no replica takes the new one.
    let running = populate_job(&test, 1);
    assert!(
        is_held(&running),
        "the populate still runs now that every replica has paused: {running}"
    );
    populate_target::enqueue(&test.db, domain::TargetId(2))
        .await
        .unwrap();
    wait_for("the running populate finished while paused", || async {
        populate_job(&test, 1)["status"] == "Done"
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(populate_job(&test, 2)["status"], "Pending");
    // What an operator does to a paused queue's job still applies (the refusal is only of
    // fetches): a waiting job is killed, and retried back to waiting.
    populate_target::enqueue(&test.db, domain::TargetId(3))
        .await
        .unwrap();
    let third = populate_job(&test, 3)["id"].as_str().unwrap().to_owned();
    jobs::admin::change(
        &test.db,
        repo::JobChange::Kill,
        std::slice::from_ref(&third),
    )
    .await
    .unwrap();
    assert_eq!(populate_job(&test, 3)["status"], "Killed");
    jobs::admin::change(
        &test.db,
        repo::JobChange::Retry,
        std::slice::from_ref(&third),
    )
    .await
    .unwrap();
    assert_eq!(populate_job(&test, 3)["status"], "Pending");
    for port in ports {
        let ready = snapline_tests::http_get(port, "/readyz").expect("/readyz answers");
        assert_eq!(ready.0, 200, "a paused replica stays ready: {}", ready.1);
        let metrics = snapline_tests::http_get(port, "/metrics").expect("/metrics answers");
        assert!(
            metrics
                .1
                .contains("snapline_queue_paused{queue=\"populate_target\"} 1"),
            "{}",
            metrics.1
        );
        assert!(
            metrics
                .1
                .contains("snapline_queue_paused{queue=\"sync_me_file\"} 0"),
            "{}",
            metrics.1
        );
    }
    let status = stdout(&snapctl(&test, &["status"]));
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("populate_target") && l.contains("PAUSED")),
        "{status}"
    );
    let queues = snapctl_json(&test, &["queues", "list"]);
    let paused: Vec<&str> = queues
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["paused"] == true)
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(paused, ["populate_target"], "{queues}");
    let again = snapctl(&test, &["queues", "pause", "populate_target"]);
    assert_eq!(stdout(&again).trim(), "populate_target was already paused");
    let unknown = snapctl(&test, &["queues", "pause", "populate"]);
    assert_eq!(unknown.status.code(), Some(2));

    // Resumed: a replica takes the waiting job.
    let out = snapctl(&test, &["queues", "resume", "populate_target"]);
    assert_eq!(stdout(&out).trim(), "resumed populate_target");
    wait_for("the waiting populates done after the resume", || async {
        populate_job(&test, 2)["status"] == "Done" && populate_job(&test, 3)["status"] == "Done"
    })
    .await;
    snapline_tests::assert_population_exact(&test.db, domain::TargetId(2)).await;
    snapline_tests::assert_population_exact(&test.db, domain::TargetId(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_taken_by_no_replica_postgres() {
    a_paused_queue_is_taken_by_no_replica(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_taken_by_no_replica_sqlite() {
    a_paused_queue_is_taken_by_no_replica(Backend::Sqlite).await;
}

/// A queue paused and resumed again and again while two replicas fetch and run its jobs:
/// after the last resume every job pushed is done. (The thirty-minute soak once found a
/// populate fetched just before a pause stay locked by its live worker for good: the resume
/// woke nothing that would run it.)
async fn pauses_in_a_row_strand_no_job(backend: Backend) {
    const TARGETS: i64 = 24;
    let test = TestDb::seeded(backend, &SeedOptions::sized(3_000, TARGETS as usize)).await;
    let _replicas: Vec<Served> = (0..2)
        .map(|_| {
            Served::start(
                &binary("populator"),
                &test.url,
                &[
                    (
                        "SNAPLINE_SERVE__POPULATOR_HTTP",
                        format!("127.0.0.1:{}", snapline_tests::free_port()),
                    ),
                    ("SNAPLINE_POPULATOR__BATCH_SIZE", "500".to_owned()),
                    ("RUST_LOG", "error".to_owned()),
                ],
            )
        })
        .collect();
    let mut next = 1;
    for round in 0..8u64 {
        // a few pushes land while the queue runs, a few while it is paused
        for _ in 0..2 {
            populate_target::enqueue(&test.db, domain::TargetId(next))
                .await
                .unwrap();
            next += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(150 * round)).await;
        jobs::admin::pause_queue(&test.db, "populate_target")
            .await
            .unwrap();
        populate_target::enqueue(&test.db, domain::TargetId(next))
            .await
            .unwrap();
        next += 1;
        tokio::time::sleep(jobs::pause::PAUSE_POLL + std::time::Duration::from_millis(100 * round))
            .await;
        jobs::admin::resume_queue(&test.db, "populate_target")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(next, TARGETS + 1);
    wait_for("every populate done after the last resume", || async {
        let jobs = snapctl_json(&test, &["jobs", "list", "--queue", "populate_target"]);
        let jobs = jobs.as_array().unwrap();
        jobs.len() == TARGETS as usize && jobs.iter().all(|job| job["status"] == "Done")
    })
    .await;
    for target in 1..=TARGETS {
        snapline_tests::assert_population_exact(&test.db, domain::TargetId(target)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_in_a_row_strand_no_job_postgres() {
    pauses_in_a_row_strand_no_job(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_in_a_row_strand_no_job_sqlite() {
    pauses_in_a_row_strand_no_job(Backend::Sqlite).await;
}

/// A job that changes status while `jobs list` reads is listed once: the list reads every
/// (queue, status) range in one statement. Read one range after the other, a job taken
/// between the `Pending` and the `Queued` read was listed twice (seen once in the paused-queue
/// test above: the same job `Pending` and `Queued` in one listing).
async fn a_job_changing_status_is_listed_once(backend: Backend) {
    let test = TestDb::migrated(backend).await;
    let db = test.db.clone();
    for me_file in 1..=40 {
        sync_me_file::enqueue(&db, domain::MeFileId(me_file))
            .await
            .unwrap();
    }
    let table = match backend {
        Backend::Postgres => "apalis.jobs",
        Backend::Sqlite => "Jobs",
    };
    // Every job flips between Pending and Queued as fast as the database allows.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (db, stop) = (db.clone(), stop.clone());
        let flip = format!(
            "UPDATE {table} SET status = CASE status WHEN 'Pending' THEN 'Queued' ELSE 'Pending' END \
             WHERE job_type = 'sync_me_file'"
        );
        tokio::spawn(async move {
            let mut flips = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                execute(&db, &flip).await;
                flips += 1;
            }
            flips
        })
    };
    let filter = repo::JobFilter {
        queue: Some(sync_me_file::QUEUE.to_owned()),
        ..Default::default()
    };
    for _ in 0..150 {
        let jobs = jobs::admin::list(&db, &filter, 1_000).await.unwrap();
        let ids: std::collections::BTreeSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(
            (jobs.len(), ids.len()),
            (40, 40),
            "each job listed once: {:?}",
            jobs.iter().map(|j| (&j.id, &j.status)).collect::<Vec<_>>()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        flipper.await.unwrap() > 10,
        "the statuses flipped meanwhile"
    );
}

snapline_tests::both_backends! {
    listed_once_while_changing => a_job_changing_status_is_listed_once;
}

/// Nothing `snapctl` prints drives the terminal: control characters in a job's id, payload
/// and result, and in an id given on the command line, come out escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapctl_prints_no_control_character() {
    let test = TestDb::migrated(Backend::Postgres).await;
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J\rhidden";
    execute(
        &test.db,
        &format!(
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, last_result) \
             VALUES ({id}, 'sync_me_file', convert_to({payload}, 'UTF8'), 'Killed', 5, 5, now(), 0, {result})",
            id = snapline_tests::quote(&format!("job{hostile}")),
            payload = snapline_tests::quote(&format!("{{\"me_file_id\":\"{hostile}\"}}")),
            result = snapline_tests::quote(&serde_json::json!({ "Err": hostile }).to_string()),
        ),
    )
    .await;
    let id = format!("job{hostile}");
    let raw = |text: &str| text.contains(['\u{1b}', '\u{7}', '\r']);
    let list = snapctl(&test, &["jobs", "list"]);
    assert!(list.status.success());
    let listed = stdout(&list);
    assert!(listed.contains("job\\u{1b}]0;owned"), "{listed:?}");
    assert!(!raw(&listed), "{listed:?}");
    let shown = snapctl(&test, &["jobs", "show", &id]);
    assert!(shown.status.success(), "{shown:?}");
    assert!(!raw(&stdout(&shown)), "{:?}", stdout(&shown));
    assert!(stdout(&shown).contains("\\r"), "{:?}", stdout(&shown));
    let unknown = snapctl(&test, &["jobs", "show", &format!("nosuch{hostile}")]);
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "{stderr:?}");
    assert!(stderr.contains("nosuch\\u{1b}"), "{stderr:?}");
    assert!(!raw(&stderr), "{stderr:?}");
    let retried = snapctl(&test, &["jobs", "retry", &format!("nosuch{hostile}")]);
    assert!(!raw(&stdout(&retried)), "{:?}", stdout(&retried));
}

/// An age beyond what a timestamp can subtract is refused (exit 2) and purges nothing: on
/// SQLite it once wrapped into a negative age and purged every finished job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_refuses_an_age_out_of_range() {
    let test = TestDb::migrated(Backend::Sqlite).await;
    sync_me_file::enqueue(&test.db, domain::MeFileId(1))
        .await
        .unwrap();
    execute(
        &test.db,
        "UPDATE Jobs SET status = 'Done', done_at = unixepoch()",
    )
    .await;
    for age in ["18446744073709551615s", "36501d"] {
        let out = snapctl(
            &test,
            &[
                "jobs",
                "purge",
                "--queue",
                "sync_me_file",
                "--status",
                "done",
                "--older-than",
                age,
                "--yes",
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{age}: {stderr}");
        assert!(stderr.contains("out of range"), "{stderr}");
    }
    assert_eq!(listed(&test, &["--status", "done"]), 1, "nothing purged");
}

/// A running populate's progress, read as it goes: chunks done of all, rows written, a rate
/// and the time left, in `snapctl status` (text and JSON) and on the board's targets page;
/// gone from both once the target is populated.
async fn a_running_populate_shows_its_progress(backend: Backend) {
    let test = TestDb::seeded(backend, &SeedOptions::sized(20_000, 6)).await;
    let _populator = Served::start(
        &binary("populator"),
        &test.url,
        &[
            (
                "SNAPLINE_SERVE__POPULATOR_HTTP",
                format!("127.0.0.1:{}", snapline_tests::free_port()),
            ),
            // chunks of 4,000 me_files (six: the last is open-ended), each 8 batches 150 ms
            // apart: a few seconds
            ("SNAPLINE_POPULATOR__CHUNK_ME_FILES", "4000".to_owned()),
            ("SNAPLINE_POPULATOR__BATCH_SIZE", "500".to_owned()),
            ("SNAPLINE_POPULATOR__BATCH_PAUSE_MS", "150".to_owned()),
            ("RUST_LOG", "error".to_owned()),
        ],
    );
    populate_target::enqueue(&test.db, domain::TargetId(1))
        .await
        .unwrap();
    // A chunk of the populate done, others not.
    let started = std::time::Instant::now();
    let progress = loop {
        let running = jobs::status::populating(&test.db, 20).await.unwrap();
        if let [progress] = running.as_slice()
            && progress.run.chunks_done > 0
            && progress.run.chunks_done < progress.run.chunks
        {
            break progress.clone();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no populate part-way: {running:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(progress.target_id, 1);
    assert_eq!(progress.run.chunks, 6, "{progress:?}");
    assert!(progress.run.rows_written > 0, "{progress:?}");
    assert!(progress.run.elapsed_secs.is_some(), "{progress:?}");
    assert!(progress.secs_left.is_some(), "{progress:?}");

    let text = stdout(&snapctl(&test, &["status"]));
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("target 1 "))
        .unwrap_or_else(|| panic!("no progress line: {text}"));
    assert!(line.contains(" of 6, ") && line.contains(" rows"), "{line}");
    let json = snapctl_json(&test, &["status"]);
    assert_eq!(json["populating"][0]["target_id"], 1, "{json}");
    assert_eq!(json["populating"][0]["chunks"], 6, "{json}");

    let board = snapline_tests::ServedBoard::start(&test.db, false);
    let port = board.port;
    wait_for("the board's targets page", || async {
        snapline_tests::http_get(port, "/targets").is_some()
    })
    .await;
    let (status, page) = snapline_tests::http_get(port, "/targets").unwrap();
    assert_eq!(status, 200);
    if jobs::status::populating(&test.db, 20).await.unwrap().len() == 1 {
        assert!(page.contains("id=\"populating\""), "{page}");
        assert!(page.contains(" of 6</td>"), "{page}");
    }

    wait_for("the populate done", || async {
        jobs::status::populating(&test.db, 20)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    snapline_tests::assert_population_exact(&test.db, domain::TargetId(1)).await;
    let (_, page) = snapline_tests::http_get(port, "/targets").unwrap();
    assert!(!page.contains("id=\"populating\""), "{page}");
    assert!(!stdout(&snapctl(&test, &["status"])).contains("populates running"));
    board.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_populate_shows_its_progress_postgres() {
    a_running_populate_shows_its_progress(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_populate_shows_its_progress_sqlite() {
    a_running_populate_shows_its_progress(Backend::Sqlite).await;
}

/// `snapline_queue_workers{queue}` of the replica serving /metrics on `port`.
fn workers_of(port: u16, queue: &str) -> Option<f64> {
    let (_, metrics) = snapline_tests::http_get(port, "/metrics")?;
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("snapline_queue_workers{{queue=\"{queue}\"}} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn populator(test: &TestDb, port: u16) -> Served {
    Served::start(
        &binary("populator"),
        &test.url,
        &[
            (
                "SNAPLINE_SERVE__POPULATOR_HTTP",
                format!("127.0.0.1:{port}"),
            ),
            ("RUST_LOG", "error".to_owned()),
        ],
    )
}

/// `snapctl queues scale Q N` changes the workers of every running replica within seconds,
/// a restarted replica starts with it, and `--configured` gives each its setting back; the
/// jobs pushed after a scale-down are taken by the workers left alone.
async fn every_replica_obeys_a_queue_scaled_live(backend: Backend) {
    let test = TestDb::seeded(backend, &SeedOptions::sized(300, 6)).await;
    let ports = [snapline_tests::free_port(), snapline_tests::free_port()];
    let replicas: Vec<Served> = ports.iter().map(|port| populator(&test, *port)).collect();
    let all_show = |n: f64| async move {
        ports
            .iter()
            .all(|port| workers_of(*port, "populate_target") == Some(n))
    };
    // The configured concurrency of populate_target (config/default.toml).
    wait_for("both replicas at the configured 1 worker", || all_show(1.0)).await;

    let out = snapctl(&test, &["queues", "scale", "populate_target", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("every replica runs 3 worker(s)"),
        "{}",
        stdout(&out)
    );
    wait_for("both replicas at 3 workers", || all_show(3.0)).await;
    let listed = snapctl_json(&test, &["queues", "list"]);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "populate_target")
        .expect("populate_target listed")
        .clone();
    assert_eq!(row["workers_set"], 3, "{row}");
    // Each replica's third worker registered with the queue.
    let (workers_table, jobs_table) = match backend {
        Backend::Postgres => ("apalis.workers", "apalis.jobs"),
        Backend::Sqlite => ("Workers", "Jobs"),
    };
    let third_workers =
        format!("SELECT COUNT(*) FROM {workers_table} WHERE id LIKE 'populate_target@%#2'");
    wait_for("each replica's third worker registered", || async {
        snapline_tests::scalar(&test.db, &third_workers).await == 2
    })
    .await;

    let out = snapctl(&test, &["queues", "scale", "populate_target", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("both replicas back at 1 worker", || all_show(1.0)).await;
    for target in 1..=6 {
        populate_target::enqueue(&test.db, domain::TargetId(target))
            .await
            .unwrap();
    }
    wait_for("the six populates done", || async {
        snapline_tests::done_jobs(&test.db, "populate_target").await == 6
    })
    .await;
    let taken_by_others = snapline_tests::scalar(
        &test.db,
        &format!(
            "SELECT COUNT(*) FROM {jobs_table} WHERE job_type = 'populate_target' \
             AND lock_by NOT LIKE '%#0'"
        ),
    )
    .await;
    assert_eq!(
        taken_by_others, 0,
        "only the first worker of each replica is left to take jobs"
    );

    // A restart keeps the setting.
    drop(replicas);
    let port = snapline_tests::free_port();
    let _restarted = populator(&test, port);
    let scaled = snapctl(&test, &["queues", "scale", "populate_target", "2"]);
    assert!(scaled.status.success());
    wait_for("the restarted replica at 2 workers", || async {
        workers_of(port, "populate_target") == Some(2.0)
    })
    .await;
    let out = snapctl(
        &test,
        &["queues", "scale", "populate_target", "--configured"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("configured workers again"),
        "{}",
        stdout(&out)
    );
    wait_for("the replica back at its configured 1", || async {
        workers_of(port, "populate_target") == Some(1.0)
    })
    .await;

    // Bad input is refused with a clear error and changes nothing.
    for (args, says) in [
        (
            vec!["queues", "scale", "populate_target", "0"],
            "from 1 to 64, not 0",
        ),
        (
            vec!["queues", "scale", "populate_target", "65"],
            "from 1 to 64, not 65",
        ),
        (
            vec!["queues", "scale", "no_such_queue", "2"],
            "unknown queue `no_such_queue`",
        ),
        (vec!["queues", "scale", "populate_target"], "required"),
    ] {
        let out = snapctl(&test, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(
        snapline_tests::scalar(&test.db, "SELECT COUNT(*) FROM snapline_queue_scales").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_obeys_a_queue_scaled_live_postgres() {
    every_replica_obeys_a_queue_scaled_live(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_obeys_a_queue_scaled_live_sqlite() {
    every_replica_obeys_a_queue_scaled_live(Backend::Sqlite).await;
}

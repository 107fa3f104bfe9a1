//! The web board in a real browser: Debian's headless Chromium driven through chromedriver
//! (`snapline_tests::webdriver`). The overview shows the seeded database's figures and
//! refreshes them without a reload; a permanently failed job is found from the overview,
//! retried from its page (confirmed) after its cause is fixed, and then shows done; a
//! hostile payload renders as text. Screenshots of the overview and a job page are taken
//! (into `BOARD_SCREENSHOTS_DIR` when set: `just screenshots` writes docs/screenshots).
//!
//! Ignored by `cargo test` (it needs Chromium); `.ci/run` installs Chromium and runs it with
//! the other ignored test, one at a time.

use jobs::{populate_target, sync_me_file};
use snapline_tests::webdriver::Browser;
use snapline_tests::{Backend, Served, TestDb, binary, execute, wait_for};
use synth::SeedOptions;

/// Saves `png` as `name` in `BOARD_SCREENSHOTS_DIR` (when set), after checking it is a PNG.
fn keep_screenshot(png: &[u8], name: &str) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 10_000,
        "{name}: {} bytes, not a rendered page",
        png.len()
    );
    if let Ok(dir) = std::env::var("BOARD_SCREENSHOTS_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromium-driver: .ci/run installs them and runs it"]
async fn in_a_browser_a_failed_job_is_found_retried_and_done_and_hostile_text_stays_text() {
    let test = TestDb::populated(Backend::Postgres, &SeedOptions::sized(2_000, 6)).await;
    let db = test.db.clone();
    let hostile = "<script>alert('board')</script><b>bold</b>";
    jobs::queue::push(
        &db,
        sync_me_file::QUEUE,
        serde_json::json!({ "me_file_id": hostile }),
        1,
    )
    .await
    .unwrap();
    jobs::queue::push(
        &db,
        populate_target::QUEUE,
        populate_target::PopulateTarget { target_id: 7 },
        5,
    )
    .await
    .unwrap();
    let env = [("RUST_LOG", "error".to_owned())];
    // A slow populator, so a populate's progress can be watched: four chunks of 500
    // me_files, batches of 100 with 300 ms between them.
    let slow = [
        ("RUST_LOG", "error".to_owned()),
        ("SNAPLINE_POPULATOR__CHUNK_ME_FILES", "500".to_owned()),
        ("SNAPLINE_POPULATOR__BATCH_SIZE", "100".to_owned()),
        ("SNAPLINE_POPULATOR__BATCH_PAUSE_MS", "300".to_owned()),
    ];
    let _populator = Served::start(&binary("populator"), &test.url, &slow);
    let _syncer = Served::start(&binary("syncer"), &test.url, &env);
    wait_for("both jobs killed", || async {
        jobs::admin::list(
            &db,
            &repo::JobFilter {
                status: Some(repo::JobStatus::Killed),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap()
        .len()
            == 2
    })
    .await;

    let board = snapline_tests::ServedBoard::start(&db, true);
    let base = format!("http://127.0.0.1:{}", board.port);
    let (_, null_offers, null_ad_events) = snapline_tests::plain_null_counts(&db).await;
    let db_for_browser = db.clone();
    let url = test.url.clone();

    tokio::task::spawn_blocking(move || {
        let browser = Browser::start();
        // The overview, with the database's figures.
        browser.open(&format!("{base}/"));
        let killed = "#queues tr[data-queue='populate_target'] td.killed";
        assert_eq!(browser.text(killed), "1");
        assert_eq!(
            browser.text("#queues tr[data-queue='sync_me_file'] td.killed"),
            "1"
        );
        let nulls_text = browser.text("#nulls");
        assert!(
            nulls_text.contains(&format!("offers {null_offers}"))
                && nulls_text.contains(&format!("ad_events {null_ad_events}")),
            "{nulls_text}"
        );
        keep_screenshot(&browser.screenshot(), "overview.png");

        // Found from the overview: the killed count links to the list, the list to the job.
        browser.click(&format!("{killed} a"));
        browser.click("#jobs tr[data-job] td a");
        let job_url = browser.url();
        assert!(
            browser
                .text("#job td.error")
                .ends_with("target 7 does not exist"),
            "{}",
            browser.source()
        );
        // Its story: the one attempt, failed for good by a populator's worker.
        let attempts = browser.text("#attempts");
        assert!(
            attempts.contains("failed, not retried") && attempts.contains("populate_target@"),
            "{attempts}"
        );
        keep_screenshot(&browser.screenshot(), "job.png");

        // The cause fixed, retried from the page (confirmed), then done.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(execute(
            &db_for_browser,
            "INSERT INTO targets (id, title) VALUES (7, 'late')",
        ));
        browser.click("a.action[href$='/retry']");
        assert!(browser.text("#question").starts_with("Retry job"));
        browser.click("#confirm");
        let started = std::time::Instant::now();
        while browser.url() != job_url {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "not back on the job's page: {}",
                browser.source()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let started = std::time::Instant::now();
        while browser.text("#job td.status") != "Done" {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the retried populate did not finish: {}",
                browser.source()
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
            browser.open(&job_url);
        }

        // The hostile payload renders as text: no element, no script ran.
        browser.open(&format!("{base}/jobs?queue=sync_me_file&status=killed"));
        browser.click("#jobs tr[data-job] td a");
        assert!(browser.text("#payload").contains(hostile), "shown as text");
        assert_eq!(
            browser.run("return document.querySelectorAll('script, b').length;"),
            0
        );

        // Every other page renders, under the header naming the database: the targets, a
        // me_file explained, and the two replicas' workers, alive.
        browser.open(&format!("{base}/targets"));
        assert_eq!(browser.text("main h1"), "targets");
        assert!(
            browser
                .text("#watching")
                .starts_with("watching PostgreSQL "),
            "{}",
            browser.source()
        );
        keep_screenshot(&browser.screenshot(), "targets.png");
        browser.open(&format!("{base}/me_files/1"));
        assert_eq!(browser.text("main h1"), "me_file 1");
        keep_screenshot(&browser.screenshot(), "me_file.png");
        browser.open(&format!("{base}/nodes"));
        let nodes = browser.text("#nodes");
        assert!(
            nodes.contains("populator") && nodes.contains("syncer") && nodes.contains("alive"),
            "{nodes}"
        );
        keep_screenshot(&browser.screenshot(), "nodes.png");
        browser.open(&format!("{base}/schedules"));
        assert!(
            browser
                .text("#schedules")
                .contains("backfill_missing_snapshots"),
            "{}",
            browser.source()
        );
        keep_screenshot(&browser.screenshot(), "schedules.png");

        // A queue's charts, rolled up as the services do: drawn, in words and as a table.
        // An hour of work, written as apalis writes finished jobs, and the minutes the
        // services already rolled up forgotten so they count it.
        rt.block_on(async {
            execute(
                &db_for_browser,
                "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen, started_at) \
                 VALUES ('sync_me_file@earlier:1#0', 'sync_me_file', 'test', '', now(), now()); \
                 INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, \
                   priority, lock_at, lock_by, done_at, last_result) \
                 SELECT apalis.generate_ulid(), 'sync_me_file', convert_to('{\"me_file_id\":1}', 'UTF8'), \
                   CASE WHEN i % 25 = 0 THEN 'Killed' ELSE 'Done' END, 1, 3, at, 0, at, \
                   'sync_me_file@earlier:1#0', at, '{\"Ok\":null}'::jsonb \
                 FROM generate_series(1, 2000) AS i, \
                   LATERAL (SELECT now() - interval '2 minutes' \
                     - (i % 57) * interval '1 minute' * (1 + (i % 3)) / 3 AS at) AS s; \
                 DELETE FROM snapline_queue_minutes WHERE queue = 'sync_me_file'",
            )
            .await;
            jobs::history::roll_up_once(&db_for_browser).await.unwrap()
        });
        browser.open(&format!("{base}/queues/sync_me_file"));
        assert_eq!(browser.text("main h1"), "queue sync_me_file");
        assert_eq!(
            browser.run("return document.querySelectorAll('#per-minute g.slot').length;"),
            60,
            "every minute of the last hour rolled up"
        );
        assert_eq!(
            browser.run(
                "return document.querySelector('#per-minute svg').getBoundingClientRect().width > 300;"
            ),
            true,
            "the chart is drawn at a readable width"
        );
        assert!(browser.text("#per-minute .legend").contains("done"));
        assert!(
            browser
                .run("return document.querySelectorAll('#per-minute rect.done').length;")
                .as_u64()
                .unwrap()
                > 10,
            "the hour's work drawn: {}",
            browser.source()
        );
        keep_screenshot(&browser.screenshot(), "queue.png");

        // Its workers per replica set from the page, confirmed, obeyed by the syncer.
        browser.run(
            "document.querySelector('#scale input[name=workers]').value = '3'; return null;",
        );
        browser.click("#scale button");
        assert!(
            browser.text("#question").starts_with("Run 3 worker(s) of sync_me_file"),
            "{}",
            browser.source()
        );
        browser.click("#confirm");
        let started = std::time::Instant::now();
        while !browser.url().ends_with("/queues/sync_me_file") {
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(browser.text("#workers").contains("3 (set by an operator)"));
        let scaled = rt.block_on(async { db_for_browser.queue_scales().all().await.unwrap() });
        assert_eq!(scaled, [("sync_me_file".to_owned(), 3)]);

        // A bulk delete from a filtered list: the confirmation counts, the list empties.
        let killed = rt.block_on(snapline_tests::scalar(
            &db_for_browser,
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = 'sync_me_file' AND status = 'Killed'",
        ));
        assert!(killed > 1, "the hostile job and the hour's kills");
        browser.open(&format!("{base}/jobs?queue=sync_me_file&status=killed"));
        keep_screenshot(&browser.screenshot(), "jobs.png");
        browser.click("a[href^='/jobs/bulk/delete']");
        assert!(
            browser.text("#question").starts_with(&format!(
                "Delete {killed} job(s) matching queue=sync_me_file, status=killed?"
            )),
            "{}",
            browser.text("#question")
        );
        browser.click("#confirm");
        let started = std::time::Instant::now();
        while browser.run("return document.querySelectorAll('#jobs tr[data-job]').length;") != 0 {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "{}", browser.source());
            std::thread::sleep(std::time::Duration::from_millis(100));
            browser.open(&format!("{base}/jobs?queue=sync_me_file&status=killed"));
        }

        // A populate's progress on the targets page while it runs: chunks done of all, rows
        // written and the time left, once a chunk is done.
        rt.block_on(async {
            // From empty, so each chunk writes rows.
            execute(
                &db_for_browser,
                "DELETE FROM target_populations WHERE target_band_id IN \
                 (SELECT id FROM target_bands WHERE target_id = 2)",
            )
            .await;
            populate_target::enqueue(&db_for_browser, domain::TargetId(2))
                .await
                .unwrap()
        });
        let started = std::time::Instant::now();
        loop {
            browser.open(&format!("{base}/targets"));
            let chunks = browser.run(
                "const c = document.querySelector('tr[data-populating=\"2\"] td.chunks'); \
                 return c ? c.textContent : null;",
            );
            if let Some(chunks) = chunks.as_str()
                && !chunks.starts_with("0 of")
            {
                let (done, all) = chunks.split_once(" of ").unwrap();
                assert!(done.parse::<u32>().unwrap() < all.parse::<u32>().unwrap(), "{chunks}");
                assert!(browser.text("tr[data-populating='2'] td.rows").parse::<i64>().unwrap() > 0);
                assert!(browser.text("tr[data-populating='2'] td.left").starts_with("about "));
                keep_screenshot(&browser.screenshot(), "targets-populating.png");
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "no chunk of the populate seen done while it ran: {}",
                browser.source()
            );
            std::thread::sleep(std::time::Duration::from_millis(150));
        }

        // On a phone the pages fit the screen's width: a wide table scrolls inside itself,
        // the page does not.
        browser.resize(390, 844);
        for page in ["/", "/jobs", "/nodes", "/schedules", "/queues/sync_me_file"] {
            browser.open(&format!("{base}{page}"));
            // Any element reaching past the screen's right edge, but what a table scrolls
            // inside itself.
            let wider = browser.run(
                "const w = document.documentElement.clientWidth; \
                 return Array.from(document.querySelectorAll('body *')) \
                   .filter(e => e.getBoundingClientRect().right > w + 0.5 \
                     && !(e.parentElement && e.parentElement.closest('table'))) \
                   .map(e => e.tagName + (e.id ? '#' + e.id : ''));",
            );
            assert_eq!(
                wider,
                serde_json::json!([]),
                "on {page} these reach past a phone's screen"
            );
        }
        browser.open(&format!("{base}/"));
        keep_screenshot(&browser.screenshot(), "overview-phone.png");
        browser.resize(1280, 900);

        // The overview refreshes by itself: a push shows up with no reload.
        rt.block_on(async {
            db_for_browser
                .queue_pauses()
                .pause(sync_me_file::QUEUE)
                .await
                .unwrap()
        });
        browser.open(&format!("{base}/"));
        browser.run("window.__not_reloaded = true; return null;");
        let waiting = "#queues tr[data-queue='sync_me_file'] td.waiting";
        let before: i64 = browser.text(waiting).parse().unwrap();
        // the syncer takes no job within a second or two of the pause
        std::thread::sleep(std::time::Duration::from_secs(3));
        rt.block_on(async {
            for me_file in [11, 12, 13] {
                sync_me_file::enqueue(&db_for_browser, domain::MeFileId(me_file))
                    .await
                    .unwrap();
            }
        });
        let started = std::time::Instant::now();
        while browser.text(waiting).parse::<i64>().unwrap() != before + 3 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(15),
                "the overview did not refresh: {}",
                browser.text(waiting)
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        assert_eq!(
            browser.run("return window.__not_reloaded === true;"),
            true,
            "refreshed without a reload"
        );
        drop(url);
    })
    .await
    .unwrap();
    board.stop().await;
}

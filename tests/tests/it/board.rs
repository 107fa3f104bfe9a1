//! The web board (`snapctl board`) over HTTP on both backends: the overview's figures are
//! the database's, the job pages find and show jobs, the targets page counts each band's
//! members, bad input is a clear 400/404, and a hostile value is shown as text.

use jobs::{populate_target, sync_me_file};
use snapline_tests::{Backend, TestDb, free_port, scalar};
use synth::SeedOptions;

/// GET `path` from the board on `port`: (status, body).
async fn get(port: u16, path: &str) -> (u16, String) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || snapline_tests::http_get(port, &path))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the board answers on {port}"))
}

/// The text of the cell of class `class` in the row `data-queue="queue"` of the overview.
fn queue_cell(page: &str, queue: &str, class: &str) -> String {
    let row = page
        .split("<tr")
        .find(|r| r.contains(&format!("data-queue=\"{queue}\"")))
        .unwrap_or_else(|| panic!("no row for {queue}:\n{page}"));
    let cell = row
        .split(&format!("class=\"n {class}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {class} cell for {queue}:\n{row}"));
    cell.split('<').next().unwrap().to_owned()
}

async fn the_board_shows_the_database_and_escapes_every_value(backend: Backend) {
    let test = TestDb::populated(
        backend,
        &SeedOptions {
            me_files: 300,
            targets: 6,
            ..SeedOptions::default()
        },
    )
    .await;
    let db = &test.db;
    // No worker runs: the jobs stay waiting.
    let hostile = "<script>alert('board')</script>";
    jobs::queue::push(
        db,
        sync_me_file::QUEUE,
        serde_json::json!({ "me_file_id": hostile }),
        1,
    )
    .await
    .unwrap();
    sync_me_file::enqueue(db, domain::MeFileId(42))
        .await
        .unwrap();
    populate_target::enqueue(db, domain::TargetId(2))
        .await
        .unwrap();

    let port = free_port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let board = tokio::spawn(board::serve(
        db.clone(),
        format!("127.0.0.1:{port}").parse().unwrap(),
        async move {
            let _ = stopped.await;
        },
    ));
    snapline_tests::wait_for("the board listening", || async {
        tokio::task::spawn_blocking(move || snapline_tests::http_get(port, "/overview"))
            .await
            .unwrap()
            .is_some()
    })
    .await;

    // The overview: the queues' figures, NULL snapshots, targets by status, and the refresh.
    let (status, page) = get(port, "/").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(queue_cell(&page, "sync_me_file", "waiting"), "2");
    assert_eq!(queue_cell(&page, "populate_target", "waiting"), "1");
    assert_eq!(queue_cell(&page, "backfill", "waiting"), "0");
    let nulls = db.stats().null_snapshots().await.unwrap();
    assert!(nulls.offers > 0, "the data set has NULL offers");
    assert!(
        page.contains(&format!(
            "<td>offers</td><td class=\"n\">{}</td>",
            nulls.offers
        )),
        "{page}"
    );
    assert!(
        page.contains("fetch('/overview')"),
        "the overview refreshes itself"
    );
    let (status, fragment) = get(port, "/overview").await;
    assert_eq!(status, 200);
    assert!(fragment.contains("id=\"queues\"") && !fragment.contains("<html"));

    // Jobs: filtered, with the hostile payload shown as text, never as markup.
    let (status, list) = get(port, "/jobs?queue=sync_me_file&status=pending").await;
    assert_eq!(status, 200);
    assert_eq!(list.matches("data-job=").count(), 2, "{list}");
    assert!(
        !list.contains(hostile),
        "a payload is never markup:\n{list}"
    );
    assert!(list.contains("&lt;script&gt;"), "{list}");
    let (_, by_me_file) = get(port, "/jobs?me_file=42").await;
    assert_eq!(by_me_file.matches("data-job=").count(), 1, "{by_me_file}");
    let id = by_me_file
        .split("data-job=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let (status, job) = get(port, &format!("/jobs/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        job.contains(r#"{"me_file_id":42}"#) || job.contains("{&quot;me_file_id&quot;:42}"),
        "{job}"
    );
    let hostile_id = list
        .split("data-job=\"")
        .skip(1)
        .map(|r| r.split('"').next().unwrap().to_owned())
        .find(|i| *i != id)
        .unwrap();
    let (_, hostile_page) = get(port, &format!("/jobs/{hostile_id}")).await;
    assert!(!hostile_page.contains(hostile) && hostile_page.contains("&lt;script&gt;"));

    // Bad input: a clear 400 or 404, its text escaped too.
    let (status, bad) = get(port, "/jobs?status=%3Cb%3Estuck").await;
    assert_eq!(status, 400);
    assert!(bad.contains("unknown job status `&lt;b&gt;stuck`"), "{bad}");
    let (status, missing) = get(port, "/jobs/no-such-job").await;
    assert_eq!(status, 404);
    assert!(missing.contains("no job has id no-such-job"));

    // Targets: each band's members as the database counts them.
    let (status, targets) = get(port, "/targets").await;
    assert_eq!(status, 200);
    let band = scalar(db, "SELECT MIN(id) FROM target_bands WHERE target_id = 1").await;
    let members = scalar(
        db,
        &format!("SELECT COUNT(*) FROM target_populations WHERE target_band_id = {band}"),
    )
    .await;
    assert!(members > 0);
    assert!(
        targets.contains(&format!(
            "<td class=\"n\">{band}</td><td class=\"n\">{members}</td>"
        )),
        "band {band} with {members} members:\n{targets}"
    );
    assert_eq!(
        targets.matches("data-target=\"").count() as i64,
        scalar(db, "SELECT COUNT(*) FROM target_bands").await
            + scalar(
                db,
                "SELECT COUNT(*) FROM targets t WHERE NOT EXISTS \
                 (SELECT 1 FROM target_bands b WHERE b.target_id = t.id)"
            )
            .await,
        "one row per band, and one per target without bands"
    );

    let _ = stop.send(());
    board.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_the_database_and_escapes_every_value_postgres() {
    the_board_shows_the_database_and_escapes_every_value(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_the_database_and_escapes_every_value_sqlite() {
    the_board_shows_the_database_and_escapes_every_value(Backend::Sqlite).await;
}

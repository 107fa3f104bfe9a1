//! The web board (`snapctl board`) over HTTP on both backends: the overview's figures are
//! the database's, the job pages find and show jobs, the targets page counts each band's
//! members, bad input is a clear 400/404, a hostile value is shown as text; actions only
//! when allowed, confirmed, with the board's CSRF token, behind basic auth when set.

use jobs::{populate_target, sync_me_file};
use snapline_tests::{Backend, TestDb, free_port, scalar};
use synth::SeedOptions;

/// Serves a board on a free localhost port until the sender is used or dropped.
async fn start(
    db: &repo::Db,
    allow_actions: bool,
    basic_auth: Option<(String, String)>,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), board::BoardError>>,
) {
    start_with(db, allow_actions, basic_auth, vec![]).await
}

/// [`start`], answering to `allowed_hosts` too.
async fn start_with(
    db: &repo::Db,
    allow_actions: bool,
    basic_auth: Option<(String, String)>,
    allowed_hosts: Vec<String>,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), board::BoardError>>,
) {
    let port = free_port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = board::BoardOptions {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        allow_actions,
        basic_auth,
        allowed_hosts,
        backfill_cron: "0 * * * *".into(),
        audit_cron: Some("30 2 * * *".into()),
    };
    let served = tokio::spawn(board::serve(db.clone(), options, async move {
        let _ = stopped.await;
    }));
    snapline_tests::wait_for("the board listening", || async {
        request(port, "GET", "/healthz-nothing", &[], "").await.0 != 0
    })
    .await;
    (port, stop, served)
}

/// An HTTP/1.1 request to the board: (status, head and body); status 0 when nothing answers.
async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        text.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        text.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    text.push_str("\r\n");
    text.push_str(body);
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return (0, String::new());
        };
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(text.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, response)
    })
    .await
    .unwrap()
}

/// The CSRF token in a confirmation page.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no token in:\n{page}"))
        .to_owned()
}

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
    let test = TestDb::populated(backend, &SeedOptions::sized(300, 6)).await;
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

    let (port, stop, board) = start(db, false, None).await;

    // The overview: the queues' figures, NULL snapshots, targets by status, and the refresh.
    let (status, page) = get(port, "/").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(queue_cell(&page, "sync_me_file", "waiting"), "2");
    assert_eq!(queue_cell(&page, "populate_target", "waiting"), "1");
    assert_eq!(queue_cell(&page, "backfill", "waiting"), "0");
    let (populations, offers, ad_events) = snapline_tests::plain_null_counts(db).await;
    assert!(offers > 0, "the data set has NULL offers");
    for (table, nulls) in [
        ("target_populations", populations),
        ("offers", offers),
        ("ad_events", ad_events),
    ] {
        assert!(
            page.contains(&format!("<td>{table}</td><td class=\"n\">{nulls}</td>")),
            "{table}: {nulls} NULL: {page}"
        );
    }
    assert!(
        page.contains("<script src=\"/static/overview.js\">"),
        "the overview refreshes itself: {page}"
    );
    let (status, script) = get(port, "/static/overview.js").await;
    assert_eq!(status, 200);
    assert!(script.contains("fetch('/overview')"), "{script}");
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
    // The last runs: target 2's waiting populate, linked.
    let row_of_2 = targets
        .split("<tr")
        .find(|r| r.contains("data-target=\"2\""))
        .expect("target 2's row");
    assert!(row_of_2.contains(">Pending</a>"), "{row_of_2}");
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

    // Read-only: actions are refused, their confirmation pages too.
    for (method, path) in [
        ("GET", format!("/jobs/{id}/retry")),
        ("POST", format!("/jobs/{id}/retry")),
        ("POST", "/queues/sync_me_file/pause".to_owned()),
    ] {
        let (status, page) = request(port, method, &path, &[], "csrf=x").await;
        assert_eq!(status, 403, "{method} {path}: {page}");
        assert!(page.contains("read-only"), "{page}");
    }
    let (_, job) = get(port, &format!("/jobs/{id}")).await;
    assert!(
        !job.contains(&format!("/jobs/{id}/retry")),
        "no action links when read-only"
    );
    let _ = stop.send(());
    board.await.unwrap().unwrap();

    // With actions: confirmed, with the token, the same code as `snapctl jobs`/`queues`.
    let (port, stop, served) = start(db, true, None).await;
    let (_, job) = get(port, &format!("/jobs/{hostile_id}")).await;
    assert!(job.contains(&format!("/jobs/{hostile_id}/kill")), "{job}");
    let (status, confirm) = get(port, &format!("/jobs/{hostile_id}/kill")).await;
    assert_eq!(status, 200);
    assert!(
        confirm.contains("Kill job") && !confirm.contains(hostile),
        "{confirm}"
    );
    let token = csrf_of(&confirm);
    let kill = format!("/jobs/{hostile_id}/kill");
    let (status, _) = request(port, "POST", &kill, &[], "csrf=forged").await;
    assert_eq!(status, 403, "a forged token is refused");
    assert_eq!(
        jobs::admin::show(db, &hostile_id).await.unwrap().status,
        "Pending",
        "nothing changed"
    );
    let (status, response) = request(port, "POST", &kill, &[], &format!("csrf={token}")).await;
    assert_eq!(status, 303, "{response}");
    assert!(
        response.contains(&format!("location: /jobs/{hostile_id}")),
        "{response}"
    );
    assert_eq!(
        jobs::admin::show(db, &hostile_id).await.unwrap().status,
        "Killed"
    );
    let (status, conflict) = request(port, "POST", &kill, &[], &format!("csrf={token}")).await;
    assert_eq!(status, 409, "a killed job is not killed twice: {conflict}");
    let retry = format!("/jobs/{hostile_id}/retry");
    let (status, _) = request(port, "POST", &retry, &[], &format!("csrf={token}")).await;
    assert_eq!(status, 303);
    assert_eq!(
        jobs::admin::show(db, &hostile_id).await.unwrap().status,
        "Pending"
    );
    let pause = "/queues/sync_me_file/pause";
    let (status, confirm) = get(port, pause).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("Pause sync_me_file?"), "{confirm}");
    let (status, _) = request(port, "POST", pause, &[], &format!("csrf={token}")).await;
    assert_eq!(status, 303);
    let paused = db.queue_pauses().paused().await.unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].0, "sync_me_file");
    let (_, overview) = get(port, "/").await;
    assert!(
        overview.contains("/queues/sync_me_file/resume"),
        "{overview}"
    );
    let (status, _) = request(
        port,
        "POST",
        "/queues/sync_me_file/resume",
        &[],
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(status, 303);
    assert!(db.queue_pauses().paused().await.unwrap().is_empty());
    let (status, _) = get(port, "/queues/nope/pause").await;
    assert_eq!(status, 400, "an unknown queue");
    // Workers per replica, from the queue's page: confirmed, CSRF-checked, kept in the
    // table every replica reads; bad numbers refused before anything changes.
    let (_, page) = get(port, "/queues/sync_me_file").await;
    assert!(page.contains("id=\"scale\""), "{page}");
    assert!(page.contains("as each replica is configured"), "{page}");
    let scale = "/queues/sync_me_file/scale?workers=5";
    let (status, confirm) = get(port, scale).await;
    assert_eq!(status, 200, "{confirm}");
    assert!(
        confirm.contains("Run 5 worker(s) of sync_me_file on every replica?"),
        "{confirm}"
    );
    assert!(
        confirm.contains("action=\"/queues/sync_me_file/scale?workers=5\""),
        "{confirm}"
    );
    let (status, _) = request(port, "POST", scale, &[], "csrf=wrong").await;
    assert_eq!(status, 403);
    assert!(db.queue_scales().all().await.unwrap().is_empty());
    let (status, _) = request(port, "POST", scale, &[], &format!("csrf={token}")).await;
    assert_eq!(status, 303);
    assert_eq!(
        db.queue_scales().all().await.unwrap(),
        [("sync_me_file".to_owned(), 5)]
    );
    let (_, page) = get(port, "/queues/sync_me_file").await;
    assert!(
        page.contains("<strong>5</strong> (set by an operator)"),
        "{page}"
    );
    for bad in ["0", "65", "many"] {
        let path = format!("/queues/sync_me_file/scale?workers={bad}");
        let (status, refused) = get(port, &path).await;
        assert_eq!(status, 400, "{bad}: {refused}");
        let (status, _) = request(port, "POST", &path, &[], &format!("csrf={token}")).await;
        assert_eq!(status, 400, "{bad}");
    }
    let back = "/queues/sync_me_file/scale?workers=configured";
    let (status, _) = request(port, "POST", back, &[], &format!("csrf={token}")).await;
    assert_eq!(status, 303);
    assert!(db.queue_scales().all().await.unwrap().is_empty());
    let _ = stop.send(());
    served.await.unwrap().unwrap();

    // Basic auth, asked of every page when configured.
    let (port, stop, served) = start(db, true, Some(("ops".to_owned(), "s3cret".to_owned()))).await;
    let (status, page) = request(port, "GET", "/", &[], "").await;
    assert_eq!(status, 401, "{page}");
    assert!(
        page.to_lowercase().contains("www-authenticate: basic"),
        "{page}"
    );
    // base64("ops:wrong") and base64("ops:s3cret")
    let (status, _) = request(
        port,
        "GET",
        "/",
        &[("Authorization", "Basic b3BzOndyb25n")],
        "",
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = request(
        port,
        "GET",
        "/",
        &[("Authorization", "Basic b3BzOnMzY3JldA==")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let _ = stop.send(());
    served.await.unwrap().unwrap();

    // Actions beyond localhost without auth: refused before listening.
    let refused = board::serve(
        db.clone(),
        board::BoardOptions {
            listen: format!("0.0.0.0:{}", free_port()).parse().unwrap(),
            allow_actions: true,
            basic_auth: None,
            allowed_hosts: vec![],
            backfill_cron: "0 * * * *".into(),
            audit_cron: None,
        },
        async {},
    )
    .await;
    assert!(
        matches!(refused, Err(board::BoardError::ActionsWithoutAuth(_))),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_the_database_and_escapes_every_value_postgres() {
    the_board_shows_the_database_and_escapes_every_value(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_the_database_and_escapes_every_value_sqlite() {
    the_board_shows_the_database_and_escapes_every_value(Backend::Sqlite).await;
}

/// The response head of `response`, lower-cased, for header checks.
fn head_of(response: &str) -> String {
    response
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

/// The headers every response of the board carries, whatever its status.
fn assert_security_headers(response: &str) {
    let head = head_of(response);
    for expected in [
        "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'",
        "frame-ancestors 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "referrer-policy: same-origin",
        "cache-control: no-store",
    ] {
        assert!(head.contains(expected), "{expected} missing:\n{head}");
    }
}

/// What a page on a shared host must refuse: a foreign `Host` (DNS rebinding), a
/// cross-origin POST, being framed or running inline code, links that an id could turn into
/// another page, database messages in an error page, and a page that grows with the bands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_acts_for_no_stranger() {
    let test = TestDb::migrated(Backend::Postgres).await;
    let db = &test.db;
    let path_id = "../../queues/sync_me_file/pause?";
    let crlf_id = "crlf\r\nSet-Cookie: stolen=1";
    for id in [path_id, crlf_id] {
        snapline_tests::execute(
            db,
            &format!(
                "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
                 VALUES ({}, 'sync_me_file', convert_to('{{\"me_file_id\":1}}', 'UTF8'), 'Pending', 0, 5, now(), 0)",
                snapline_tests::quote(id)
            ),
        )
        .await;
    }
    snapline_tests::execute(
        db,
        "INSERT INTO targets (id, title, population_status) VALUES (1, 'Wide', 'populated'); \
         INSERT INTO target_bands (target_id) SELECT 1 FROM generate_series(1, 20000)",
    )
    .await;
    let (port, stop, served) =
        start_with(db, true, None, vec!["board.example.com".to_owned()]).await;
    let as_host = |host: &'static str| [("Host", host)];

    // DNS rebinding: a name that is not the board's reaches nothing, not even a token.
    for host in [
        "rebind.attacker.example",
        "rebind.attacker.example:9180",
        "localhost.evil.example",
    ] {
        for path in ["/", "/queues/sync_me_file/pause"] {
            let (status, response) = request(port, "GET", path, &as_host(host), "").await;
            assert_eq!(status, 421, "{host}{path}: {response}");
            assert!(!response.contains("csrf"), "{response}");
            assert_security_headers(&response);
        }
    }
    for host in [
        "localhost",
        "127.0.0.1:9180",
        "[::1]:9180",
        "app.localhost",
        "board.example.com",
        "BOARD.example.com:8443",
    ] {
        let (status, response) = request(port, "GET", "/", &as_host(host), "").await;
        assert_eq!(status, 200, "{host}: {response}");
    }

    // Security headers; no inline script or style for the policy to allow.
    let (status, overview) = request(port, "GET", "/", &[], "").await;
    assert_eq!(status, 200);
    assert_security_headers(&overview);
    assert!(!overview.contains("<style"), "{overview}");
    assert_eq!(
        overview.matches("<script").count(),
        overview.matches("<script src=\"/static/").count(),
        "{overview}"
    );
    let (status, css) = request(port, "GET", "/static/board.css", &[], "").await;
    assert_eq!(status, 200);
    assert!(head_of(&css).contains("content-type: text/css"), "{css}");

    // Cross-origin POSTs are refused, with a good token too.
    let (_, confirm) = request(port, "GET", "/queues/sync_me_file/pause", &[], "").await;
    assert_security_headers(&confirm);
    let token = format!("csrf={}", csrf_of(&confirm));
    let pause = "/queues/sync_me_file/pause";
    for source in [
        ("Origin", "https://evil.example"),
        ("Origin", "null"),
        ("Origin", "http://localhost.evil.example"),
        ("Referer", "http://evil.example/board"),
    ] {
        let (status, response) = request(port, "POST", pause, &[source], &token).await;
        assert_eq!(status, 403, "{source:?}: {response}");
        assert!(db.queue_pauses().paused().await.unwrap().is_empty());
    }
    let (status, response) = request(
        port,
        "POST",
        pause,
        &[("Origin", "http://localhost")],
        &token,
    )
    .await;
    assert_eq!(status, 303, "the board's own page posts: {response}");
    assert_eq!(db.queue_pauses().paused().await.unwrap().len(), 1);
    jobs::admin::resume_queue(db, "sync_me_file").await.unwrap();

    // An id is one path segment in every link, form and redirect.
    let (_, list) = request(port, "GET", "/jobs", &[], "").await;
    let encoded_path_id = "%2E%2E%2F%2E%2E%2Fqueues%2Fsync_me_file%2Fpause%3F";
    assert!(
        list.contains(&format!("href=\"/jobs/{encoded_path_id}\"")),
        "{list}"
    );
    assert!(!list.contains("href=\"/jobs/../"), "{list}");
    let (status, job) = request(port, "GET", &format!("/jobs/{encoded_path_id}"), &[], "").await;
    assert_eq!(status, 200, "{job}");
    assert!(
        job.contains(&format!("href=\"/jobs/{encoded_path_id}/kill\"")),
        "{job}"
    );
    let (_, confirm) = request(
        port,
        "GET",
        &format!("/jobs/{encoded_path_id}/kill"),
        &[],
        "",
    )
    .await;
    assert!(
        confirm.contains(&format!("action=\"/jobs/{encoded_path_id}/kill\"")),
        "{confirm}"
    );
    let encoded_crlf_id = "crlf%0D%0ASet-Cookie%3A%20stolen%3D1";
    let (status, response) = request(
        port,
        "POST",
        &format!("/jobs/{encoded_crlf_id}/kill"),
        &[],
        &token,
    )
    .await;
    assert_eq!(status, 303, "{response}");
    let head = head_of(&response);
    assert!(
        head.contains(&format!(
            "location: /jobs/{}",
            encoded_crlf_id.to_lowercase()
        )),
        "{head}"
    );
    assert!(
        !head.lines().any(|line| line.starts_with("set-cookie")),
        "no header comes out of an id: {head}"
    );
    assert_eq!(
        jobs::admin::show(db, crlf_id).await.unwrap().status,
        "Killed"
    );

    // The targets page of a target with 20,000 bands: bounded rows, one line said so.
    let (status, targets) = request(port, "GET", "/targets", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(targets.matches("data-target=\"1\"").count(), 500);
    assert!(
        targets.contains("The first 500 bands shown."),
        "{targets:.2000}"
    );
    assert!(targets.len() < 200_000, "{} bytes", targets.len());

    // Failures: a short message with an id, never the database's words.
    let (status, response) = request(port, "GET", "/jobs/%00", &[], "").await;
    assert_eq!(status, 404, "{response}");
    snapline_tests::execute(db, "DROP TABLE target_bands").await;
    let (status, response) = request(port, "GET", "/targets", &[], "").await;
    assert_eq!(status, 500, "{response}");
    assert_security_headers(&response);
    assert!(response.contains("(error "), "{response}");
    assert!(
        !response.contains("target_bands") && !response.contains("relation"),
        "{response}"
    );
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}

/// Empty credentials are none: a board with actions beyond localhost and an empty user and
/// password refuses to start, as with no credentials at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_board_credentials_are_none() {
    let test = TestDb::migrated(Backend::Sqlite).await;
    let port = free_port().to_string();
    let out = std::process::Command::new(snapline_tests::binary("snapctl"))
        .args([
            "board",
            "--allow-actions",
            "--listen",
            &format!("0.0.0.0:{port}"),
        ])
        .env("SNAPLINE_PROFILE", "test")
        .env("DATABASE_URL", &test.url)
        .env("SNAPLINE_BOARD__USER", "")
        .env("SNAPLINE_BOARD__PASSWORD", "")
        .output()
        .expect("snapctl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to serve actions on 0.0.0.0"),
        "{stderr}"
    );
    let out = std::process::Command::new(snapline_tests::binary("snapctl"))
        .args(["board", "--listen", &format!("127.0.0.1:{port}")])
        .env("SNAPLINE_PROFILE", "test")
        .env("DATABASE_URL", &test.url)
        .env("SNAPLINE_BOARD__USER", "ops")
        .env("SNAPLINE_BOARD__PASSWORD", "")
        .output()
        .expect("snapctl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("an empty one counts as unset"), "{stderr}");
}

/// The overview shows the last whole audit with its examples, each linking to the me_file's
/// page, which explains it band by band; a bad or unknown me_file id is refused.
async fn the_board_shows_the_last_audit_and_explains_a_me_file(backend: Backend) {
    let test = TestDb::populated(backend, &SeedOptions::sized(300, 6).with_legacy_share(0.0)).await;
    let db = &test.db;
    let (port, _stop, _served) = start(db, false, None).await;
    let (_, page) = get(port, "/overview").await;
    assert!(page.contains("id=\"no-audit\""), "{page}");

    let row = scalar(
        db,
        "SELECT MIN(p.id) FROM target_populations p JOIN target_bands b ON b.id = p.target_band_id WHERE b.target_id = 1",
    )
    .await;
    let me_file = scalar(
        db,
        &format!("SELECT me_file_id FROM target_populations WHERE id = {row}"),
    )
    .await;
    snapline_tests::execute(
        db,
        &format!("UPDATE target_populations SET matching_tags_snapshot = NULL WHERE id = {row}"),
    )
    .await;
    let report = jobs::audit::audit(db, &Default::default(), &|_| {})
        .await
        .unwrap();
    jobs::audit::record(db, "snapctl", "test", &report)
        .await
        .unwrap();

    let (status, page) = get(port, "/overview").await;
    assert_eq!(status, 200);
    assert!(page.contains("data-run=\"snapctl\""), "{page}");
    assert!(page.contains("1 (drift)"), "{page}");
    let link = format!("href=\"/me_files/{me_file}\"");
    assert!(page.contains(&link), "{link} in {page}");

    let (status, page) = get(port, &format!("/me_files/{me_file}?target=1")).await;
    assert_eq!(status, 200, "{page}");
    for needle in [
        "target 1",
        "chosen: band",
        "matched",
        "passed",
        "drift: null_population",
    ] {
        assert!(page.contains(needle), "{needle:?} in {page}");
    }
    assert_eq!(get(port, "/me_files/abc").await.0, 400);
    assert_eq!(get(port, "/me_files/99999999").await.0, 404);
    assert_eq!(
        get(port, &format!("/me_files/{me_file}?target=999999"))
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_the_last_audit_and_explains_a_me_file_postgres() {
    the_board_shows_the_last_audit_and_explains_a_me_file(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_the_last_audit_and_explains_a_me_file_sqlite() {
    the_board_shows_the_last_audit_and_explains_a_me_file(Backend::Sqlite).await
}

/// The nodes page lists every worker of every replica with its binary, queue, replica,
/// heartbeat and the jobs it holds, and says which stopped beating; a job page offers only
/// the actions that apply to the job's state, and delete removes a job no worker holds; the
/// header names the database the board watches, never its password.
async fn the_board_shows_nodes_and_only_the_actions_that_apply(backend: Backend) {
    let test = TestDb::populated(backend, &SeedOptions::sized(200, 6)).await;
    let db = &test.db;
    let (port, _stop, _served) = start(db, true, Some(("ops".into(), "pw".into()))).await;
    let auth = ("Authorization", "Basic b3BzOnB3"); // ops:pw
    let get = |path: &'static str| async move { request(port, "GET", path, &[auth], "").await };

    // No replica yet.
    let (status, page) = get("/nodes").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"no-nodes\""), "{page}");
    assert!(page.contains(&format!("watching {}", db.label())), "{page}");
    assert!(!page.contains(":pw@") && !page.contains("s3cret"), "{page}");

    // A real worker of the syncer's queue, and a replica that died holding a job.
    let context = sync_me_file::SyncerContext::new(
        db.clone(),
        std::sync::Arc::new(jobs::BandCache::new(std::time::Duration::from_secs(1))),
    );
    let options = jobs::worker::WorkerOptions::new("sync_me_file@test-host:4242");
    let worker = snapline_tests::InProcessWorker::start(|stop| {
        let options = options.clone();
        async move { sync_me_file::serve(context, &options, stop).await }
    });
    let (dead, workers, jobs_table, long_ago, now) = match backend {
        Backend::Postgres => (
            "populate_target@gone-host:7#0",
            "apalis.workers",
            "apalis.jobs",
            "now() - interval '1 hour'",
            "now()",
        ),
        Backend::Sqlite => (
            "populate_target@gone-host:7#0",
            "Workers",
            "Jobs",
            "CAST(strftime('%s', 'now') AS INTEGER) - 3600",
            "CAST(strftime('%s', 'now') AS INTEGER)",
        ),
    };
    snapline_tests::execute(
        db,
        &format!(
            "INSERT INTO {workers} (id, worker_type, storage_name, layers, last_seen, started_at) \
             VALUES ('{dead}', 'populate_target', 'test', '', {long_ago}, {long_ago})"
        ),
    )
    .await;
    populate_target::enqueue(db, domain::TargetId(1))
        .await
        .unwrap();
    snapline_tests::execute(
        db,
        &format!(
            "UPDATE {jobs_table} SET status = 'Running', lock_by = '{dead}', lock_at = {now} \
             WHERE job_type = 'populate_target'"
        ),
    )
    .await;
    snapline_tests::wait_for("the syncer's worker registered", || async {
        get("/nodes")
            .await
            .1
            .contains("sync_me_file@test-host:4242#0")
    })
    .await;
    let (_, page) = get("/nodes").await;
    let row_of = |id: &str| {
        page.split("<tr")
            .find(|r| r.contains(&format!("data-worker=\"{id}\"")))
            .unwrap_or_else(|| panic!("no row for {id}: {page}"))
            .to_owned()
    };
    let live = row_of("sync_me_file@test-host:4242#0");
    for needle in [
        "<td>test-host:4242</td>",
        "<td>syncer</td>",
        ">sync_me_file</a>",
        ">alive<",
    ] {
        assert!(live.contains(needle), "{needle} in {live}");
    }
    assert!(live.contains("class=\"n holding\">0<"), "{live}");
    let gone = row_of(dead);
    for needle in [
        "<td>gone-host:7</td>",
        "<td>populator</td>",
        ">heartbeat stopped<",
    ] {
        assert!(gone.contains(needle), "{needle} in {gone}");
    }
    assert!(gone.contains("class=\"n holding\">1<"), "{gone}");
    worker.stop().await;

    // A held job offers no action; a waiting one kill and delete; a killed one retry and
    // delete. The state shows as text, its colour a class.
    let held = jobs::admin::list(
        db,
        &repo::JobFilter {
            queue: Some(populate_target::QUEUE.into()),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap()
    .remove(0);
    let actions_of = |page: &str| -> Vec<String> {
        ["retry", "kill", "delete"]
            .iter()
            .filter(|a| page.contains(&format!("/{a}\"")))
            .map(|a| a.to_string())
            .collect()
    };
    let path = format!("/jobs/{}", held.id);
    let (_, page) = request(port, "GET", &path, &[auth], "").await;
    assert!(actions_of(&page).is_empty(), "{page}");
    assert!(
        page.contains("<span class=\"state busy\">Running</span>"),
        "{page}"
    );
    assert!(page.contains("A worker holds this job"), "{page}");
    let (status, _) = request(port, "GET", &format!("{path}/delete"), &[auth], "").await;
    assert_eq!(
        status, 200,
        "the confirmation page is shown; the POST is refused"
    );

    sync_me_file::enqueue(db, domain::MeFileId(7))
        .await
        .unwrap();
    let waiting = jobs::admin::list(
        db,
        &repo::JobFilter {
            queue: Some(sync_me_file::QUEUE.into()),
            status: Some(repo::JobStatus::Pending),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap()
    .remove(0);
    let path = format!("/jobs/{}", waiting.id);
    let (_, page) = request(port, "GET", &path, &[auth], "").await;
    assert_eq!(actions_of(&page), ["kill", "delete"], "{page}");
    assert!(
        page.contains("<span class=\"state idle\">Pending</span>"),
        "{page}"
    );
    let token = csrf_of(
        &request(port, "GET", &format!("{path}/kill"), &[auth], "")
            .await
            .1,
    );
    let (status, _) = request(
        port,
        "POST",
        &format!("{path}/kill"),
        &[auth],
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(status, 303);
    let (_, page) = request(port, "GET", &path, &[auth], "").await;
    assert_eq!(actions_of(&page), ["retry", "delete"], "{page}");
    assert!(
        page.contains("<span class=\"state failed\">Killed</span>"),
        "{page}"
    );

    // Delete: confirmed, then gone (the list is where it lands); a held job is refused.
    let (status, confirm) = request(port, "GET", &format!("{path}/delete"), &[auth], "").await;
    assert_eq!(status, 200);
    assert!(confirm.contains("Delete job"), "{confirm}");
    let (status, response) = request(
        port,
        "POST",
        &format!("{path}/delete"),
        &[auth],
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(status, 303, "{response}");
    assert!(response.contains("location: /jobs\r\n"), "{response}");
    assert_eq!(request(port, "GET", &path, &[auth], "").await.0, 404);
    let (status, conflict) = request(
        port,
        "POST",
        &format!("/jobs/{}/delete", held.id),
        &[auth],
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(
        jobs::admin::show(db, &held.id).await.unwrap().status,
        "Running",
        "a held job stays"
    );

    // Bulk, from a filtered list: the confirmation says how many, the change takes every
    // job matching (the same code as `snapctl jobs`), the list comes back.
    for me_file in 100..106 {
        sync_me_file::enqueue(db, domain::MeFileId(me_file))
            .await
            .unwrap();
    }
    let list = "/jobs?queue=sync_me_file&status=Pending";
    let (_, page) = request(port, "GET", list, &[auth], "").await;
    assert!(page.contains("id=\"bulk\""), "{page}");
    assert!(
        page.contains("href=\"/jobs/bulk/kill?queue=sync_me_file&amp;status=Pending\""),
        "{page}"
    );
    let bulk_kill = "/jobs/bulk/kill?queue=sync_me_file&status=Pending";
    let (status, confirm) = request(port, "GET", bulk_kill, &[auth], "").await;
    assert_eq!(status, 200, "{confirm}");
    assert!(
        confirm.contains("Kill 6 job(s) matching queue=sync_me_file, status=Pending?"),
        "{confirm}"
    );
    let (status, _) = request(port, "POST", bulk_kill, &[auth], "csrf=forged").await;
    assert_eq!(status, 403, "a forged token is refused");
    let (status, response) =
        request(port, "POST", bulk_kill, &[auth], &format!("csrf={token}")).await;
    assert_eq!(status, 303, "{response}");
    assert!(
        response.contains("location: /jobs?queue=sync_me_file&status=Pending\r\n"),
        "{response}"
    );
    let killed = repo::JobFilter {
        queue: Some(sync_me_file::QUEUE.into()),
        status: Some(repo::JobStatus::Killed),
        ..Default::default()
    };
    assert_eq!(jobs::admin::list(db, &killed, 100).await.unwrap().len(), 6);
    // A status the action does not take is refused; bulk delete empties the killed.
    let (status, refused) = request(
        port,
        "GET",
        "/jobs/bulk/kill?queue=sync_me_file&status=Done",
        &[auth],
        "",
    )
    .await;
    assert_eq!(status, 200, "asking costs nothing: {refused}");
    assert!(refused.contains("Kill 0 job(s)"), "{refused}");
    let (status, refused) = request(
        port,
        "POST",
        "/jobs/bulk/kill?queue=sync_me_file&status=Done",
        &[auth],
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let bulk_delete = "/jobs/bulk/delete?queue=sync_me_file&status=Killed";
    let (_, confirm) = request(port, "GET", bulk_delete, &[auth], "").await;
    assert!(confirm.contains("Delete 6 job(s)"), "{confirm}");
    let (status, _) = request(port, "POST", bulk_delete, &[auth], &format!("csrf={token}")).await;
    assert_eq!(status, 303);
    assert!(
        jobs::admin::list(db, &killed, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        jobs::admin::show(db, &held.id).await.unwrap().status,
        "Running",
        "the held job is no bulk action's"
    );

    // Schedules: no tick kept yet; a tick pushed shows with its job, state and the next tick;
    // a tick's job finished by a replica shows who ran it and its result.
    let (status, page) = get("/schedules").await;
    assert_eq!(status, 200, "{page}");
    let row = |page: &str, name: &str| {
        page.split("<tr")
            .find(|r| r.contains(&format!("data-schedule=\"{name}\"")))
            .unwrap_or_else(|| panic!("no {name} row: {page}"))
            .to_owned()
    };
    let backfill = row(&page, "backfill_missing_snapshots");
    assert!(
        backfill.contains("none kept") && backfill.contains("<code>0 * * * *</code>"),
        "{backfill}"
    );
    assert!(
        backfill.contains("class=\"next\">20"),
        "a next tick: {backfill}"
    );
    let audit = row(&page, "audit");
    assert!(audit.contains("<code>30 2 * * *</code>"), "{audit}");
    let tick: u64 = 1_764_000_000; // 2025-11-24T16:00:00Z
    assert!(
        jobs::backfill_queue::on_cron_tick(db, tick, "test")
            .await
            .unwrap()
    );
    snapline_tests::execute(
        db,
        &format!(
            "UPDATE {jobs_table} SET status = 'Done', lock_by = '{dead}', done_at = {now}, \
             last_result = '{{\"Ok\":\"fixed 0\"}}' WHERE job_type = 'backfill'"
        ),
    )
    .await;
    let (_, page) = get("/schedules").await;
    let backfill = row(&page, "backfill_missing_snapshots");
    for needle in [
        "2025-11-24T16:00:00Z",
        "<span class=\"state ok\">Done</span>",
        "class=\"ran-by\">gone-host:7<",
        "fixed 0",
    ] {
        assert!(backfill.contains(needle), "{needle} in {backfill}");
    }
    assert!(row(&page, "audit").contains("none kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_nodes_and_only_the_actions_that_apply_postgres() {
    the_board_shows_nodes_and_only_the_actions_that_apply(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_shows_nodes_and_only_the_actions_that_apply_sqlite() {
    the_board_shows_nodes_and_only_the_actions_that_apply(Backend::Sqlite).await
}

/// The row of chart `chart`'s figures table for the slot that starts at `start`.
fn chart_row(page: &str, chart: &str, start: i64) -> String {
    let figure = page
        .split(&format!("id=\"{chart}\""))
        .nth(1)
        .and_then(|rest| rest.split("</figure>").next())
        .unwrap_or_else(|| panic!("no chart {chart}:\n{page}"));
    figure
        .split("<tr")
        .find(|r| r.starts_with(&format!(" data-start=\"{start}\"")))
        .unwrap_or_else(|| panic!("no row for {start} in {chart}:\n{figure}"))
        .to_owned()
}

async fn the_board_charts_each_queue_and_tells_each_jobs_story(backend: Backend) {
    let test = TestDb::populated(backend, &SeedOptions::sized(200, 6)).await;
    let db = &test.db;
    let (port, _stop, _served) = start(db, false, None).await;
    let jobs_table = match backend {
        Backend::Postgres => "apalis.jobs",
        Backend::Sqlite => "Jobs",
    };
    let minutes_ago = |n: i64| match backend {
        Backend::Postgres => format!("to_timestamp($NOW / 60 * 60 - {n} * 60 + 7)"),
        Backend::Sqlite => format!("($NOW / 60 * 60 - {n} * 60 + 7)"),
    };
    let now = scalar(
        db,
        match backend {
            Backend::Postgres => "SELECT CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)",
            Backend::Sqlite => "SELECT CAST(strftime('%s', 'now') AS INTEGER)",
        },
    )
    .await;
    let at = |n: i64| minutes_ago(n).replace("$NOW", &now.to_string());
    let minute = |n: i64| now / 60 * 60 - n * 60;
    for me_file in 1..=12 {
        sync_me_file::enqueue(db, domain::MeFileId(me_file))
            .await
            .unwrap();
    }
    let id_of = |me_file: i64| async move {
        snapline_tests::job_status(db, "sync_me_file", &format!("\"me_file_id\":{me_file}}}"))
            .await
            .unwrap_or_else(|| panic!("the job of me_file {me_file}"))
            .id
    };

    // A story told by the queue table's own transitions, as apalis writes them: taken by
    // w1, failed; taken by w2, done.
    let (workers, long_ago) = match backend {
        Backend::Postgres => ("apalis.workers", "now() - interval '1 hour'"),
        Backend::Sqlite => ("Workers", "CAST(strftime('%s', 'now') AS INTEGER) - 3600"),
    };
    for worker in ["sync_me_file@a:1#0", "sync_me_file@b:2#0"] {
        snapline_tests::execute(
            db,
            &format!(
                "INSERT INTO {workers} (id, worker_type, storage_name, layers, last_seen, started_at) \
                 VALUES ('{worker}', 'sync_me_file', 'test', '', {long_ago}, {long_ago})"
            ),
        )
        .await;
    }
    let story = id_of(1).await;
    for set in [
        "status = 'Queued', lock_by = 'sync_me_file@a:1#0', attempts = 0",
        "status = 'Failed', attempts = 1, last_result = '{\"Err\":\"boom one\"}'",
        "status = 'Queued', lock_by = 'sync_me_file@b:2#0'",
        "status = 'Done', attempts = 2, last_result = '{\"Ok\":null}'",
    ] {
        let set = match backend {
            // PostgreSQL keeps the result as jsonb
            Backend::Postgres => set.replace("}'", "}'::jsonb"),
            Backend::Sqlite => set.to_owned(),
        };
        snapline_tests::execute(
            db,
            &format!(
                "UPDATE {jobs_table} SET {set}, done_at = {} WHERE id = '{story}'",
                at(0)
            ),
        )
        .await;
    }
    // Killed while waiting, by an operator.
    let killed = id_of(2).await;
    jobs::admin::change(db, repo::JobChange::Kill, std::slice::from_ref(&killed))
        .await
        .unwrap();
    // A job a real worker refuses (not a me_file id): killed after one attempt.
    jobs::queue::push(
        db,
        "sync_me_file",
        serde_json::json!({"me_file_id": "x"}),
        3,
    )
    .await
    .unwrap();
    let hostile = snapline_tests::job_status(db, "sync_me_file", "\"x\"")
        .await
        .unwrap()
        .id;
    // The worker takes the waiting jobs too; the charts are checked on minutes set below.
    let context = sync_me_file::SyncerContext::new(
        db.clone(),
        std::sync::Arc::new(jobs::BandCache::new(std::time::Duration::from_secs(1))),
    );
    let options = jobs::worker::WorkerOptions::new("sync_me_file@story-host:9");
    let worker = snapline_tests::InProcessWorker::start(|stop| {
        let options = options.clone();
        async move { sync_me_file::serve(context, &options, stop).await }
    });
    snapline_tests::wait_for("the hostile job killed", || async {
        snapline_tests::job_status(db, "sync_me_file", "\"x\"")
            .await
            .is_some_and(|job| job.status == "Killed")
    })
    .await;
    worker.stop().await;
    // Jobs left waiting, for the oldest waiting sample.
    for me_file in 20..=22 {
        sync_me_file::enqueue(db, domain::MeFileId(me_file))
            .await
            .unwrap();
    }

    let (status, page) = get(port, &format!("/jobs/{story}")).await;
    assert_eq!(status, 200, "{page}");
    let attempts: Vec<&str> = page.split("<tr class=\"attempt\"").skip(1).collect();
    assert_eq!(attempts.len(), 2, "{page}");
    for needle in [
        "data-attempt=\"1\" data-outcome=\"Failed\"",
        ">failed, retried<",
        "sync_me_file@a:1#0",
        "boom one",
    ] {
        assert!(attempts[0].contains(needle), "{needle} in {}", attempts[0]);
    }
    for needle in [
        "data-attempt=\"2\" data-outcome=\"done\"",
        "sync_me_file@b:2#0",
    ] {
        assert!(attempts[1].contains(needle), "{needle} in {}", attempts[1]);
    }
    let (_, page) = get(port, &format!("/jobs/{killed}")).await;
    assert!(page.contains(">killed by an operator<"), "{page}");
    assert_eq!(page.matches("<tr class=\"attempt\"").count(), 1, "{page}");
    let (_, page) = get(port, &format!("/jobs/{hostile}")).await;
    let row = page
        .split("<tr class=\"attempt\"")
        .nth(1)
        .unwrap_or_else(|| panic!("an attempt in {page}"));
    for needle in [
        "data-attempt=\"1\" data-outcome=\"Killed\"",
        ">failed, not retried<",
        "sync_me_file@story-host:9#0",
        "me_file_id",
    ] {
        assert!(row.contains(needle), "{needle} in {row}");
    }
    assert_eq!(page.matches("<tr class=\"attempt\"").count(), 1, "{page}");

    // Jobs done in closed minutes (three 5 minutes ago, one 3 minutes ago), and failed
    // attempts moved back to 3 minutes ago; then a roll-up, as the services run it.
    let done_ids: Vec<String> = {
        let mut ids = Vec::new();
        for me_file in 3..=6 {
            ids.push(id_of(me_file).await);
        }
        ids
    };
    for (i, id) in done_ids.iter().enumerate() {
        let when = if i < 3 { at(5) } else { at(3) };
        snapline_tests::execute(
            db,
            &format!("UPDATE {jobs_table} SET status = 'Done', done_at = {when} WHERE id = '{id}'"),
        )
        .await;
    }
    snapline_tests::execute(
        db,
        &format!(
            "UPDATE snapline_job_attempts SET finished_at = {} WHERE status IN ('Failed', 'Killed')",
            minute(3) + 30
        ),
    )
    .await;
    // What the queue table and the attempts hold per minute, counted plainly.
    let plain_done = |n: i64| {
        let range = match backend {
            Backend::Postgres => format!(
                "done_at >= to_timestamp({}) AND done_at < to_timestamp({})",
                minute(n),
                minute(n) + 60
            ),
            Backend::Sqlite => format!("done_at >= {} AND done_at < {}", minute(n), minute(n) + 60),
        };
        format!(
            "SELECT COUNT(*) FROM {jobs_table} WHERE job_type = 'sync_me_file' AND status = 'Done' AND {range}"
        )
    };
    let done_5 = scalar(db, &plain_done(5)).await;
    let done_3 = scalar(db, &plain_done(3)).await;
    assert_eq!((done_5, done_3), (3, 1));
    let failed_3 = scalar(
        db,
        "SELECT COUNT(*) FROM snapline_job_attempts WHERE queue = 'sync_me_file' \
         AND status IN ('Failed', 'Killed')",
    )
    .await;
    assert_eq!(
        failed_3, 3,
        "boom one, the operator's kill, the hostile job"
    );

    let (status, page) = get(port, "/queues/sync_me_file").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("id=\"no-history\""),
        "nothing rolled up yet: {page}"
    );
    let written = jobs::history::roll_up_once(db).await.unwrap();
    assert!(written >= 4 * 59, "every queue's closed minutes: {written}");
    assert_eq!(jobs::history::roll_up_once(db).await.unwrap() % 4, 0);
    let (status, page) = get(port, "/queues/sync_me_file").await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("id=\"no-history\""), "{page}");
    let row = chart_row(&page, "per-minute", minute(5));
    assert!(
        row.contains("<td class=\"n\">3</td><td class=\"n\">0</td>"),
        "{row}"
    );
    let row = chart_row(&page, "per-minute", minute(3));
    assert!(
        row.contains("<td class=\"n\">1</td><td class=\"n\">3</td>"),
        "{row}"
    );
    assert!(
        page.contains(&format!(
            "data-start=\"{}\" data-done=\"1\" data-failed=\"3\"",
            minute(3)
        )),
        "{page}"
    );
    assert!(page.contains(": 1 done, 3 failed</title>"), "{page}");
    // The hour holding those minutes sums the minutes rolled up in it.
    let newest = scalar(
        db,
        "SELECT MAX(minute) FROM snapline_queue_minutes WHERE queue = 'sync_me_file'",
    )
    .await;
    let hour = minute(3).div_euclid(3600) * 3600;
    let (from, to) = (hour.max(newest - 59 * 60), (hour + 3600).min(newest + 60));
    let range = match backend {
        Backend::Postgres => {
            format!("done_at >= to_timestamp({from}) AND done_at < to_timestamp({to})")
        }
        Backend::Sqlite => format!("done_at >= {from} AND done_at < {to}"),
    };
    let done_in_hour = scalar(
        db,
        &format!(
            "SELECT COUNT(*) FROM {jobs_table} WHERE job_type = 'sync_me_file' \
             AND status = 'Done' AND {range}"
        ),
    )
    .await;
    let row = chart_row(&page, "per-hour", hour);
    assert!(
        row.contains(&format!(
            "<td class=\"n\">{done_in_hour}</td><td class=\"n\">3</td>"
        )),
        "{done_in_hour} done in {row}"
    );
    // The newest rolled minute sampled the oldest waiting job (three wait).
    let row = chart_row(&page, "oldest-waiting", newest);
    assert!(row.contains(" s</td>"), "{row}");
    // An unknown queue is no page.
    let (status, page) = get(port, "/queues/no_such_queue").await;
    assert_eq!(status, 404, "{page}");
    // The overview links each queue to its charts.
    let (_, page) = get(port, "/").await;
    assert!(page.contains("href=\"/queues/sync_me_file\""), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_charts_each_queue_and_tells_each_jobs_story_postgres() {
    the_board_charts_each_queue_and_tells_each_jobs_story(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_charts_each_queue_and_tells_each_jobs_story_sqlite() {
    the_board_charts_each_queue_and_tells_each_jobs_story(Backend::Sqlite).await
}

/// A me_file filter on the job list reads the payloads of the newest 5,000 jobs of each
/// queue and status only, and says so; `snapctl jobs list --me-file` reads them all.
async fn the_job_list_searches_payloads_within_a_bound(backend: Backend) {
    let test = TestDb::migrated(backend).await;
    let db = &test.db;
    let (jobs_table, payload, at) = match backend {
        Backend::Postgres => (
            "apalis.jobs",
            "convert_to('{\"me_file_id\":' || CASE WHEN i = 5001 THEN 77 ELSE 5 END || '}', 'UTF8')",
            "now() - i * interval '1 second'",
        ),
        Backend::Sqlite => (
            "Jobs",
            "CAST('{\"me_file_id\":' || CASE WHEN i = 5001 THEN 77 ELSE 5 END || '}' AS BLOB)",
            "CAST(strftime('%s', 'now') AS INTEGER) - i",
        ),
    };
    // 5,001 done jobs: the oldest names me_file 77, the 5,000 newer ones me_file 5.
    snapline_tests::execute(
        db,
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5001) \
             INSERT INTO {jobs_table} (id, job_type, job, status, attempts, max_attempts, run_at, priority, lock_at, done_at) \
             SELECT 'bounded-' || i, 'sync_me_file', {payload}, 'Done', 1, 3, {at}, 0, {at}, {at} FROM n"
        ),
    )
    .await;
    let (port, _stop, _served) = start(db, false, None).await;
    let (status, page) = get(port, "/jobs?queue=sync_me_file&status=done&me_file=77").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"searched\""), "{page}");
    assert!(
        !page.contains("bounded-5001"),
        "beyond the newest 5,000: {page}"
    );
    let (_, page) = get(port, "/jobs?queue=sync_me_file&status=done&me_file=5").await;
    assert!(page.contains("bounded-1<"), "{page}");
    let (_, page) = get(port, "/jobs?queue=sync_me_file&status=done").await;
    assert!(
        !page.contains("id=\"searched\""),
        "no search, no note: {page}"
    );
    let listed = jobs::admin::list(
        db,
        &repo::JobFilter {
            me_file_id: Some(77),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        listed.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["bounded-5001"],
        "the CLI's list reads every payload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_list_searches_payloads_within_a_bound_postgres() {
    the_job_list_searches_payloads_within_a_bound(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_list_searches_payloads_within_a_bound_sqlite() {
    the_job_list_searches_payloads_within_a_bound(Backend::Sqlite).await
}

//! snapline's web board (`snapctl board`): server-rendered pages for the people who run it,
//! over the same reads and actions as `snapctl status`, `snapctl jobs` and `snapctl queues`
//! (an overview that refreshes itself, jobs with filters, one job, targets). Read-only unless
//! started with actions: then retry and kill a job, pause and resume a queue, each behind a
//! confirmation page, a CSRF token and, when configured, HTTP basic auth.
//!
//! It never writes SQL (it reads through `jobs::admin` and `repo`) and never renders a value
//! unescaped: every page is a maud template, which escapes each value it interpolates, and
//! every value in a link or form action is percent-encoded. It never acts for a stranger:
//! a `Host` that is not a loopback name, an IP address or a configured name is refused (DNS
//! rebinding), a cross-origin POST is refused, every response forbids framing and inline
//! code (Content-Security-Policy), and a failure shows an error id, never the database's
//! message.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use repo::{Db, JobDetail, JobFilter, JobStatus};
use std::net::SocketAddr;

/// Jobs a list page shows at most.
const LIST_LIMIT: u64 = 100;
/// Counts on a page stop here (shown as `N+`): no page reads more than this many rows for a
/// count, however big the table.
const COUNT_CAP: u64 = 100_000;
/// Targets the targets page shows at most.
const TARGETS_LIMIT: u64 = 200;
/// (target, band) rows the targets page shows at most, however many bands a target has.
const TARGET_BAND_ROWS_LIMIT: u64 = 500;
/// Members counted per band on the targets page (shown as `N+` beyond): bounds the page's
/// one count query to `TARGET_BAND_ROWS_LIMIT` x this many index entries.
const BAND_MEMBERS_CAP: u64 = 10_000;
/// Characters of a payload or result a job page shows; `snapctl jobs show --json` has all.
const JOB_TEXT_SHOWN_CHARS: usize = 20_000;
/// How often the overview reloads its figures in the browser.
const REFRESH_MS: u64 = 5_000;

/// How the board serves.
#[derive(Clone, Debug)]
pub struct BoardOptions {
    pub listen: SocketAddr,
    /// Retry, kill, pause and resume from the pages; refused otherwise (403).
    pub allow_actions: bool,
    /// HTTP basic auth asked of every request: (user, password).
    pub basic_auth: Option<(String, String)>,
    /// Host names the board answers to beyond loopback names and IP addresses
    /// (`board.allowed_hosts`): `name` for any port, `name:port` for that port only.
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error(
        "refusing to serve actions on {0} without authentication: set board.user and \
         board.password (SNAPLINE_BOARD__USER, SNAPLINE_BOARD__PASSWORD), listen on localhost, \
         or drop --allow-actions"
    )]
    ActionsWithoutAuth(SocketAddr),
    #[error("no random source for the board's CSRF token: {0}")]
    Random(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the board stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// What every handler shares.
#[derive(Clone)]
struct Board {
    db: Db,
    allow_actions: bool,
    /// This process's CSRF token: every action's form carries it.
    csrf: String,
}

/// Binds `options.listen` and serves the board until `shutdown`; logs the address it serves
/// on. Refuses actions beyond localhost without basic auth.
pub async fn serve(
    db: Db,
    options: BoardOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), BoardError> {
    if options.allow_actions && options.basic_auth.is_none() && !options.listen.ip().is_loopback() {
        return Err(BoardError::ActionsWithoutAuth(options.listen));
    }
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| BoardError::Bind {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(BoardError::Serve)?;
    let mode = if options.allow_actions {
        "actions allowed"
    } else {
        "read-only"
    };
    tracing::info!(%addr, mode, auth = options.basic_auth.is_some(), "board serving");
    eprintln!("board: http://{addr}/ ({mode})");
    axum::serve(listener, router(db, &options)?)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(BoardError::Serve)
}

/// The board's routes (DESIGN: `/` overview, `/jobs?queue=Q&status=S`, `/jobs/{id}`,
/// `POST /jobs/{id}/retry` and `/jobs/{id}/kill` (refused when read-only), `/targets`;
/// `/overview` is the overview's figures alone, for its refresh; `/queues/{q}/pause` and
/// `/resume`). A `GET` of an action's path is its confirmation page.
pub fn router(db: Db, options: &BoardOptions) -> Result<Router, BoardError> {
    let mut token = [0u8; 24];
    getrandom::fill(&mut token).map_err(|e| BoardError::Random(e.to_string()))?;
    let board = Board {
        db,
        allow_actions: options.allow_actions,
        csrf: token.iter().map(|b| format!("{b:02x}")).collect(),
    };
    let router = Router::new()
        .route("/", get(overview_page))
        .route("/overview", get(overview_fragment))
        .route("/jobs", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route(
            "/jobs/{id}/{action}",
            get(confirm_job_action).post(job_action),
        )
        .route(
            "/queues/{queue}/{action}",
            get(confirm_queue_action).post(queue_action),
        )
        .route("/targets", get(targets_page))
        .route("/me_files/{id}", get(me_file_page))
        .route(STYLESHEET_PATH, get(stylesheet))
        .route(OVERVIEW_SCRIPT_PATH, get(overview_script))
        .with_state(board);
    let router = match &options.basic_auth {
        Some((user, password)) => {
            use base64::Engine as _;
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            );
            router.layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let expected = expected.clone();
                    async move {
                        let given = request
                            .headers()
                            .get(axum::http::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok());
                        if given.is_some_and(|g| same_secret(g, &expected)) {
                            next.run(request).await
                        } else {
                            (
                                StatusCode::UNAUTHORIZED,
                                [(
                                    axum::http::header::WWW_AUTHENTICATE,
                                    "Basic realm=\"snapline\"",
                                )],
                                "authentication required\n",
                            )
                                .into_response()
                        }
                    }
                },
            ))
        }
        None => router,
    };
    // Outermost first: the host is checked before anything else answers (even the
    // authentication challenge), and every response, a refusal too, carries the headers.
    let hosts = std::sync::Arc::new(options.allowed_hosts.clone());
    Ok(router
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let hosts = hosts.clone();
                async move {
                    match refusal(request.method(), request.headers(), &hosts) {
                        Some(refused) => refused.into_response(),
                        None => next.run(request).await,
                    }
                }
            },
        ))
        .layer(axum::middleware::map_response(with_security_headers)))
}

/// Why a request is refused before any handler sees it, if it is: a `Host` the board does
/// not answer to, or a state-changing request from another origin.
fn refusal(method: &Method, headers: &HeaderMap, allowed_hosts: &[String]) -> Option<PageError> {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return Some(PageError(
            StatusCode::BAD_REQUEST,
            "a request needs a Host header".into(),
        ));
    };
    if !host_allowed(host, allowed_hosts) {
        tracing::warn!(host = %jobs::status::printable(host), "board refused a request for another host");
        return Some(PageError(
            StatusCode::MISDIRECTED_REQUEST,
            "this board does not answer to that host name: add it to board.allowed_hosts".into(),
        ));
    }
    if matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    // Browsers send Origin with every POST (Referer where a policy hides Origin); a client
    // that sends neither is not a browser a foreign page could drive.
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .map(|v| v.to_str().unwrap_or("(not text)"));
    match source {
        Some(source) if authority_of(source).is_none_or(|a| !a.eq_ignore_ascii_case(host)) => {
            tracing::warn!(
                origin = %jobs::status::printable(source),
                host = %jobs::status::printable(host),
                "board refused a cross-origin request"
            );
            Some(PageError(
                StatusCode::FORBIDDEN,
                "refused: the request comes from another site's page".into(),
            ))
        }
        _ => None,
    }
}

/// `host[:port]` of an absolute URL (`https://host:port/path`), `None` for `null` or
/// anything else.
fn authority_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|a| !a.is_empty() && !a.contains('@'))
}

/// Whether the board answers to `host` (a `Host` header: name or address, maybe a port): an
/// IP address (a page an attacker serves is reached by name, never by the board's address),
/// `localhost` and names under it, or an allowed name.
fn host_allowed(host: &str, allowed_hosts: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((address, _)) => return address.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host.as_str(),
        }
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || allowed_hosts.iter().any(|allowed| {
            let allowed = allowed.trim().to_ascii_lowercase();
            allowed == host || allowed == name
        })
}

/// The stylesheet and the overview's refresh, served by the board: the
/// Content-Security-Policy allows code and styles from the board itself only.
const STYLESHEET_PATH: &str = "/static/board.css";
const OVERVIEW_SCRIPT_PATH: &str = "/static/overview.js";

/// What every response says about itself: no framing (clickjacking of a confirmation),
/// scripts and styles from the board alone, no sniffing, no referrer beyond the board, and
/// no copy kept (pages carry the CSRF token).
async fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

async fn overview_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        format!(
            "setInterval(async () => {{ try {{ const r = await fetch('/overview'); \
             if (r.ok) document.getElementById('overview').innerHTML = await r.text(); }} \
             catch (e) {{}} }}, {REFRESH_MS});\n"
        ),
    )
}

/// The characters of a path segment or query value left as they are: RFC 3986's
/// unreserved ones. Everything else (`/`, `?`, `#`, `%`, `.`, controls) is percent-encoded,
/// so that an id is one segment and names no other page.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// `value` as one path segment or query value.
fn encoded(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// A failed page: its status and an escaped message.
struct PageError(StatusCode, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = layout("error", html! { p.error { (self.1) } });
        (self.0, Html(body.into_string())).into_response()
    }
}

impl From<repo::RepoError> for PageError {
    /// The database's message stays in the log (it can name tables, roles and values); the
    /// page shows an id to find it by.
    fn from(err: repo::RepoError) -> Self {
        let mut id = [0u8; 4];
        let error_id = match getrandom::fill(&mut id) {
            Ok(()) => id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            Err(_) => format!("{:08x}", std::process::id()),
        };
        tracing::error!(error_id, error = %err, "board page failed");
        PageError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The page failed (error {error_id}); the board's log has the detail."),
        )
    }
}

impl From<jobs::JobError> for PageError {
    fn from(err: jobs::JobError) -> Self {
        match err {
            jobs::JobError::Repo(err) => err.into(),
            jobs::JobError::UnknownMeFile(_) | jobs::JobError::UnknownTarget(_) => {
                PageError(StatusCode::NOT_FOUND, err.to_string())
            }
            other if other.is_bad_input() => PageError(StatusCode::BAD_REQUEST, other.to_string()),
            other => {
                tracing::warn!(error = %other, "board page");
                PageError(StatusCode::INTERNAL_SERVER_ERROR, "the page failed".into())
            }
        }
    }
}

impl From<jobs::admin::AdminError> for PageError {
    fn from(err: jobs::admin::AdminError) -> Self {
        match err {
            jobs::admin::AdminError::Repo(err) => err.into(),
            jobs::admin::AdminError::UnknownJob(_) => {
                PageError(StatusCode::NOT_FOUND, err.to_string())
            }
            other => PageError(StatusCode::BAD_REQUEST, other.to_string()),
        }
    }
}

type Page = Result<Html<String>, PageError>;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}\
nav a{margin-right:1rem}table{border-collapse:collapse;margin:.5rem 0 1.5rem}\
td,th{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left;vertical-align:top}\
td.n,th.n{text-align:right}.paused{color:#b35c00;font-weight:bold}.error{color:#a00}.ok{color:#1a6b1a}.failed,.drift{color:#a00;font-weight:bold}pre.diff{background:#f6f6f6;padding:.5rem}\
code,pre{font-size:.9em}pre{white-space:pre-wrap;word-break:break-all;max-width:60rem}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "snapline: " (title) }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body {
                nav {
                    a href="/" { "overview" }
                    a href="/jobs" { "jobs" }
                    a href="/targets" { "targets" }
                }
                h1 { (title) }
                (body)
            }
        }
    }
}

/// `n`, or `n+` when it reached [`COUNT_CAP`].
fn capped(n: i64) -> String {
    capped_at(n, COUNT_CAP)
}

/// `n`, or `n+` when it reached `cap`.
fn capped_at(n: i64, cap: u64) -> String {
    if n >= cap as i64 {
        format!("{n}+")
    } else {
        n.to_string()
    }
}

async fn overview(board: &Board) -> Result<Markup, PageError> {
    let db = &board.db;
    let queues = jobs::admin::queues(db).await?;
    let mut last_hour = Vec::with_capacity(queues.len());
    for q in &queues {
        last_hour.push(
            db.board()
                .done_within(&q.depth.queue, 3600, COUNT_CAP)
                .await?,
        );
    }
    let nulls = db.stats().null_snapshots().await?;
    let targets = db.stats().targets_by_status().await?;
    let failures = db
        .populate_runs()
        .failures(jobs::status::FAILED_POPULATES_SHOWN)
        .await?;
    let audits = db.audit().last().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok(html! {
        h2 { "queues" }
        table #queues {
            tr {
                th { "queue" } th { "state" } th.n { "waiting" } th.n { "running" }
                th.n { "done" } th.n { "failed" } th.n { "killed" } th.n { "done in the last hour" }
                th { "oldest waiting" }
            }
            @for (q, hour) in queues.iter().zip(&last_hour) {
                @let d = &q.depth;
                tr data-queue=(d.queue) {
                    td { a href={ "/jobs?queue=" (encoded(&d.queue)) } { (d.queue) } }
                    td {
                        @if q.paused { span.paused { "paused" } } @else { "running" }
                        @if board.allow_actions {
                            " "
                            @if q.paused {
                                a.action href={ "/queues/" (encoded(&d.queue)) "/resume" } { "resume" }
                            } @else {
                                a.action href={ "/queues/" (encoded(&d.queue)) "/pause" } { "pause" }
                            }
                        }
                    }
                    td.n.waiting { (d.waiting) }
                    td.n.running { (d.running) }
                    td.n.done { (d.done) }
                    td.n.failed { a href={ "/jobs?queue=" (encoded(&d.queue)) "&status=failed" } { (d.failed) } }
                    td.n.killed { a href={ "/jobs?queue=" (encoded(&d.queue)) "&status=killed" } { (d.killed) } }
                    td.n { (capped(*hour)) }
                    td { @match d.oldest_waiting_secs { Some(s) => { (format!("{:.0} s ago", s.max(0.0))) }, None => { "-" } } }
                }
            }
        }
        h2 { "NULL snapshots" }
        table #nulls {
            tr { th { "table" } th.n { "NULL" } }
            tr { td { "target_populations" } td.n { (nulls.target_populations) } }
            tr { td { "offers" } td.n { (nulls.offers) } }
            tr { td { "ad_events" } td.n { (nulls.ad_events) } }
        }
        @if !failures.is_empty() {
            h2 { "populates that failed for good" }
            p { "Each target was left not_populated; a populate that succeeds clears it." }
            table #failed-populates {
                tr { th.n { "target" } th { "failed" } th { "error" } }
                @for failure in &failures {
                    tr data-target=(failure.target_id) {
                        td.n { (failure.target_id) }
                        td { ((now - failure.failed_at).max(0)) " s ago" }
                        td.error { (shorten(&failure.error, 300)) }
                    }
                }
            }
        }
        h2 { "last audits" }
        @if audits.is_empty() {
            p #no-audit { "No audit of the whole database yet: `snapctl audit`, or set audit.schedule." }
        } @else {
            table #audits {
                tr { th { "run" } th { "finished" } th { "by" } th.n { "me_files" } th.n { "drift" } th { "examples" } }
                @for record in &audits {
                    @let report = serde_json::from_str::<jobs::audit::AuditReport>(&record.report).ok();
                    tr data-run=(record.run) {
                        td { (record.run) }
                        td { ((now - record.finished_at).max(0)) " s ago" }
                        td { (record.ran_by) }
                        td.n { (report.as_ref().map_or(0, |r| r.me_files_checked)) }
                        td.n {
                            @if record.drift > 0 { span.drift { (record.drift) " (drift)" } } @else { "0" }
                        }
                        td {
                            @for drift in report.as_ref().map(|r| r.examples.as_slice()).unwrap_or_default().iter().take(10) {
                                @if let Some(me_file) = drift.me_file_id {
                                    a.example href={ "/me_files/" (me_file) } { (jobs::audit::describe(drift)) }
                                } @else {
                                    span.example { (jobs::audit::describe(drift)) }
                                }
                                br;
                            }
                        }
                    }
                }
            }
        }
        h2 { "targets by status" }
        table #targets-by-status {
            tr { th { "status" } th.n { "targets" } }
            @for (status, n) in &targets {
                tr { td { (status) } td.n { (n) } }
            }
        }
    })
}

async fn overview_page(State(board): State<Board>) -> Page {
    let figures = overview(&board).await?;
    Ok(Html(
        layout(
            "overview",
            html! {
                p { "Refreshes every " (REFRESH_MS / 1000) " s." }
                div #overview { (figures) }
                script src=(OVERVIEW_SCRIPT_PATH) {}
            },
        )
        .into_string(),
    ))
}

async fn overview_fragment(State(board): State<Board>) -> Page {
    Ok(Html(overview(&board).await?.into_string()))
}

#[derive(Debug, serde::Deserialize)]
struct JobsQuery {
    queue: Option<String>,
    status: Option<String>,
    me_file: Option<i64>,
    target: Option<i64>,
}

async fn jobs_page(State(board): State<Board>, Query(query): Query<JobsQuery>) -> Page {
    let db = &board.db;
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => Some(
            text.parse::<JobStatus>()
                .map_err(|e| PageError(StatusCode::BAD_REQUEST, e))?,
        ),
        None => None,
    };
    let filter = JobFilter {
        queue: query.queue.clone().filter(|q| !q.is_empty()),
        status,
        me_file_id: query.me_file,
        target_id: query.target,
    };
    let jobs = jobs::admin::list(db, &filter, LIST_LIMIT).await?;
    Ok(Html(
        layout(
            "jobs",
            html! {
                form method="get" action="/jobs" {
                    label { "queue " select name="queue" {
                        option value="" { "any" }
                        @for q in jobs::queues::ALL {
                            option value=(q) selected[filter.queue.as_deref() == Some(q)] { (q) }
                        }
                    } }
                    " "
                    label { "status " select name="status" {
                        option value="" { "any" }
                        @for s in JobStatus::ALL {
                            option value=(s.as_str()) selected[filter.status == Some(s)] { (s.as_str()) }
                        }
                    } }
                    " "
                    label { "me_file " input type="number" name="me_file" value=[filter.me_file_id]; }
                    " "
                    label { "target " input type="number" name="target" value=[filter.target_id]; }
                    " "
                    button type="submit" { "filter" }
                }
                (jobs_table(&jobs))
                @if jobs.len() as u64 == LIST_LIMIT {
                    p { "The newest " (LIST_LIMIT) " shown; narrow the filter for others." }
                }
            },
        )
        .into_string(),
    ))
}

fn jobs_table(jobs: &[JobDetail]) -> Markup {
    html! {
        @if jobs.is_empty() {
            p #no-jobs { "No job matches." }
        } @else {
            table #jobs {
                tr {
                    th { "id" } th { "queue" } th { "status" } th.n { "attempts" }
                    th { "last activity (UTC)" } th { "payload" } th { "error" }
                }
                @for job in jobs {
                    tr data-job=(job.id) {
                        td { a href={ "/jobs/" (encoded(&job.id)) } { code { (job.id) } } }
                        td { (job.queue) }
                        td.status { (job.status) }
                        td.n { (job.attempts) "/" (job.max_attempts) }
                        td { (job.finished_at.as_deref().or(job.started_at.as_deref()).or(job.run_at.as_deref()).unwrap_or("-")) }
                        td { code { (shorten(&job.payload, 60)) } }
                        td.error { (shorten(job.error.as_deref().unwrap_or(""), 120)) }
                    }
                }
            }
        }
    }
}

/// A job's payload or result as a page shows it: whole up to [`JOB_TEXT_SHOWN_CHARS`],
/// else cut with its length said.
fn shown_in_full_or_cut(text: &str) -> String {
    let total = text.chars().count();
    if total <= JOB_TEXT_SHOWN_CHARS {
        text.to_owned()
    } else {
        format!(
            "{} ({total} characters; `snapctl jobs show ID --json` has all)",
            shorten(text, JOB_TEXT_SHOWN_CHARS)
        )
    }
}

/// `text` cut to `max` characters.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(max - 3).collect::<String>())
    }
}

/// The job of `id`; an id no database can hold (a NUL byte) is no job's.
async fn find_job(board: &Board, id: &str) -> Result<JobDetail, PageError> {
    if id.contains('\0') {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            "no job has that id".into(),
        ));
    }
    Ok(jobs::admin::show(&board.db, id).await?)
}

async fn job_page(State(board): State<Board>, Path(id): Path<String>) -> Page {
    let job = find_job(&board, &id).await?;
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    Ok(Html(
        layout(
            &format!("job {}", job.id),
            html! {
                table #job {
                    tr { th { "queue" } td { a href={ "/jobs?queue=" (encoded(&job.queue)) } { (job.queue) } } }
                    tr { th { "status" } td.status { (job.status) } }
                    tr { th { "attempts" } td { (job.attempts) " of " (job.max_attempts) } }
                    tr { th { "due" } td { (or_dash(&job.run_at)) } }
                    tr { th { "started" } td { (or_dash(&job.started_at)) } }
                    tr { th { "finished" } td { (or_dash(&job.finished_at)) } }
                    tr { th { "worker" } td { (or_dash(&job.worker)) } }
                    tr { th { "last error" } td.error { (or_dash(&job.error)) } }
                }
                @if board.allow_actions {
                    p {
                        a.action href={ "/jobs/" (encoded(&job.id)) "/retry" } { "retry" }
                        " "
                        a.action href={ "/jobs/" (encoded(&job.id)) "/kill" } { "kill" }
                    }
                }
                h2 { "payload" }
                pre #payload { (shown_in_full_or_cut(&job.payload)) }
                h2 { "last result" }
                pre #last-result { (shown_in_full_or_cut(&or_dash(&job.last_result))) }
            },
        )
        .into_string(),
    ))
}

#[derive(Debug, serde::Deserialize)]
struct MeFileQuery {
    target: Option<i64>,
}

/// Why a me_file is or is not in each target (`snapctl explain`).
async fn me_file_page(
    State(board): State<Board>,
    Path(id): Path<String>,
    Query(query): Query<MeFileQuery>,
) -> Page {
    let me_file: i64 = id
        .parse()
        .map_err(|_| PageError(StatusCode::BAD_REQUEST, "a me_file id is a number".into()))?;
    let explanation = jobs::explain::explain(
        &board.db,
        domain::MeFileId(me_file),
        query.target.map(domain::TargetId),
    )
    .await?;
    Ok(Html(
        layout(
            &format!("me_file {me_file}"),
            html! {
                p {
                    @if explanation.exists { (explanation.tags) " tag(s)" } @else { "does not exist (rows left from it are shown)" }
                }
                @for target in &explanation.targets {
                    section.target data-target=(target.target_id) {
                        h2 {
                            "target " (target.target_id)
                            @if let Some(title) = &target.title { " " (title) }
                            " (" (target.status) ")"
                        }
                        @if target.bands.is_empty() { p { "no bands: matches nobody" } }
                        table.bands {
                            tr { th { "band (innermost first)" } th { "verdict" } th { "trait groups" } }
                            @for band in &target.bands {
                                tr data-band=(band.band_id) {
                                    td.n { (band.band_id) }
                                    td { @if band.matched { span.ok { "matched" } } @else { span.failed { "not matched" } } }
                                    td {
                                        @for group in &band.groups {
                                            div.group {
                                                "group " (group.group_id) ": "
                                                @if group.passed { span.ok { "passed" } } @else { span.failed { "failed" } }
                                                @for tag in &group.matching_tags {
                                                    " tag " (tag.tag_id) " on "
                                                    (tag.trait_name.clone().unwrap_or_default()) " (" (tag.trait_id) ") = "
                                                    (tag.value.clone().unwrap_or_else(|| "NULL".into()))
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        p.chosen {
                            @match target.chosen_band {
                                Some(band) => { "chosen: band " (band) },
                                None => { "chosen: none (the outermost band is not matched)" },
                            }
                        }
                        @for row in &target.stored {
                            p.stored { "stored: population " (row.population_id) " in band " (row.band_id) }
                        }
                        @if target.stored.is_empty() { p.stored { "stored: no row" } }
                        @if !target.diff.is_empty() {
                            pre.diff { @for line in &target.diff { (line) "\n" } }
                        }
                        @if target.drift.is_empty() {
                            p.agree { "stored rows agree with the rules" }
                        }
                        @for drift in &target.drift {
                            p.drift { "drift: " (jobs::audit::describe(drift)) }
                        }
                    }
                }
            },
        )
        .into_string(),
    ))
}

/// Populate runs the targets page reads, newest first, to show each target's last ones.
const RECENT_POPULATES: u64 = 500;
/// Runs shown per target.
const RUNS_PER_TARGET: usize = 3;

async fn targets_page(State(board): State<Board>) -> Page {
    let db = &board.db;
    let rows = db
        .board()
        .targets_with_bands(TARGETS_LIMIT, TARGET_BAND_ROWS_LIMIT, BAND_MEMBERS_CAP)
        .await?;
    // The last runs of each target: from the newest populate jobs (their payload names the
    // target), so the page reads a bounded number of jobs however many targets there are.
    let recent = jobs::admin::list(
        db,
        &JobFilter {
            queue: Some(jobs::populate_target::QUEUE.to_owned()),
            ..JobFilter::default()
        },
        RECENT_POPULATES,
    )
    .await?;
    let mut runs: std::collections::HashMap<i64, Vec<&JobDetail>> = Default::default();
    for job in &recent {
        let target = serde_json::from_str::<serde_json::Value>(&job.payload)
            .ok()
            .and_then(|p| p["target_id"].as_i64());
        if let Some(target) = target {
            let of_target = runs.entry(target).or_default();
            if of_target.len() < RUNS_PER_TARGET {
                of_target.push(job);
            }
        }
    }
    Ok(Html(
        layout(
            "targets",
            html! {
                table #target-bands {
                    tr {
                        th.n { "target" } th { "title" } th { "status" } th { "last populated" }
                        th.n { "band" } th.n { "members" } th { "last runs" }
                    }
                    @for row in &rows {
                        tr data-target=(row.target_id) {
                            td.n { (row.target_id) }
                            td { (row.title.as_deref().unwrap_or("")) }
                            td { (row.status.as_deref().unwrap_or("-")) }
                            td { (row.last_populated_at.as_deref().unwrap_or("-")) }
                            td.n { @match row.band_id { Some(b) => { (b) }, None => { "-" } } }
                            td.n { @match row.members { Some(n) => { (capped_at(n, BAND_MEMBERS_CAP)) }, None => { "-" } } }
                            td.runs {
                                @for job in runs.get(&row.target_id).into_iter().flatten() {
                                    a href={ "/jobs/" (encoded(&job.id)) } { (job.status) }
                                    " " (job.finished_at.as_deref().or(job.started_at.as_deref()).or(job.run_at.as_deref()).unwrap_or("")) br;
                                }
                                a href={ "/jobs?target=" (row.target_id) } { "all jobs" }
                            }
                        }
                    }
                }
                @if rows.len() as u64 == TARGET_BAND_ROWS_LIMIT {
                    p #cut { "The first " (TARGET_BAND_ROWS_LIMIT) " bands shown." }
                } @else if rows.iter().map(|r| r.target_id).collect::<std::collections::BTreeSet<_>>().len() as u64 == TARGETS_LIMIT {
                    p #cut { "The first " (TARGETS_LIMIT) " targets shown." }
                }
            },
        )
        .into_string(),
    ))
}

/// An action's form: the CSRF token of this process.
#[derive(Debug, serde::Deserialize)]
struct ActionForm {
    csrf: String,
}

/// An action a job page offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobAction {
    Retry,
    Kill,
}

impl JobAction {
    fn parse(text: &str) -> Result<Self, PageError> {
        match text {
            "retry" => Ok(JobAction::Retry),
            "kill" => Ok(JobAction::Kill),
            other => Err(PageError(
                StatusCode::NOT_FOUND,
                format!("no action `{other}`: retry or kill"),
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            JobAction::Retry => "retry",
            JobAction::Kill => "kill",
        }
    }
}

/// Refuses an action when the board is read-only.
fn actions_allowed(board: &Board) -> Result<(), PageError> {
    if board.allow_actions {
        Ok(())
    } else {
        Err(PageError(
            StatusCode::FORBIDDEN,
            "the board is read-only: start it with --allow-actions".into(),
        ))
    }
}

/// Refuses a form without this process's CSRF token.
fn check_csrf(board: &Board, form: &ActionForm) -> Result<(), PageError> {
    if same_secret(&form.csrf, &board.csrf) {
        Ok(())
    } else {
        Err(PageError(
            StatusCode::FORBIDDEN,
            "the form's token is not this board's (reload the page and confirm again)".into(),
        ))
    }
}

/// A confirmation page: what will happen, and one button that posts it.
fn confirmation(board: &Board, question: &str, action: &str, back: &str) -> Html<String> {
    Html(
        layout(
            "confirm",
            html! {
                p #question { (question) }
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(board.csrf);
                    button #confirm type="submit" { "confirm" }
                    " "
                    a href=(back) { "cancel" }
                }
            },
        )
        .into_string(),
    )
}

async fn confirm_job_action(
    State(board): State<Board>,
    Path((id, action)): Path<(String, String)>,
) -> Page {
    actions_allowed(&board)?;
    let action = JobAction::parse(&action)?;
    let job = find_job(&board, &id).await?;
    let question = match action {
        JobAction::Retry => format!(
            "Retry job {} ({}, now {})? It becomes due now with all its attempts.",
            job.id, job.queue, job.status
        ),
        JobAction::Kill => format!(
            "Kill job {} ({}, now {})? No worker takes it again.",
            job.id, job.queue, job.status
        ),
    };
    Ok(confirmation(
        &board,
        &question,
        &format!("/jobs/{}/{}", encoded(&job.id), action.name()),
        &format!("/jobs/{}", encoded(&job.id)),
    ))
}

async fn job_action(
    State(board): State<Board>,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, PageError> {
    actions_allowed(&board)?;
    check_csrf(&board, &form)?;
    let action = JobAction::parse(&action)?;
    let ids = [id.clone()];
    let outcome = match action {
        JobAction::Retry => jobs::admin::retry(&board.db, &ids).await?,
        JobAction::Kill => jobs::admin::kill(&board.db, &ids).await?,
    };
    if !outcome.not_found.is_empty() {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            format!("no job has id {id}"),
        ));
    }
    if let Some((_, status)) = outcome.skipped.first() {
        return Err(PageError(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {status}: {} takes {}",
                action.name(),
                match action {
                    JobAction::Retry => "Failed, Killed or Done jobs",
                    JobAction::Kill => "Pending or Failed jobs; a job a worker holds finishes",
                }
            ),
        ));
    }
    tracing::info!(job = %jobs::status::printable(&id), action = action.name(), "job changed from the board");
    Ok(axum::response::Redirect::to(&format!("/jobs/{}", encoded(&id))).into_response())
}

/// `pause` or `resume`.
fn queue_switch(action: &str) -> Result<bool, PageError> {
    match action {
        "pause" => Ok(true),
        "resume" => Ok(false),
        other => Err(PageError(
            StatusCode::NOT_FOUND,
            format!("no action `{other}`: pause or resume"),
        )),
    }
}

async fn confirm_queue_action(
    State(board): State<Board>,
    Path((queue, action)): Path<(String, String)>,
) -> Page {
    actions_allowed(&board)?;
    let pause = queue_switch(&action)?;
    let queue = jobs::admin::known_queue(&queue)?;
    let question = if pause {
        format!("Pause {queue}? Every replica stops taking its jobs; running jobs finish.")
    } else {
        format!("Resume {queue}? The replicas take its jobs again.")
    };
    Ok(confirmation(
        &board,
        &question,
        &format!("/queues/{}/{action}", encoded(queue)),
        "/",
    ))
}

async fn queue_action(
    State(board): State<Board>,
    Path((queue, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, PageError> {
    actions_allowed(&board)?;
    check_csrf(&board, &form)?;
    if queue_switch(&action)? {
        jobs::admin::pause_queue(&board.db, &queue).await?;
    } else {
        jobs::admin::resume_queue(&board.db, &queue).await?;
    }
    tracing::info!(queue, action, "queue switched from the board");
    Ok(axum::response::Redirect::to("/").into_response())
}

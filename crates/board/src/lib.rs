//! snapline's web board (`snapctl board`): server-rendered pages for the people who run it,
//! over the same reads as `snapctl status`, `snapctl jobs` and `snapctl queues` (an
//! overview that refreshes itself, jobs with filters, one job, targets). Read-only.
//!
//! It never writes SQL (it reads through `jobs::admin` and `repo`) and never renders a value
//! unescaped: every page is a maud template, which escapes each value it interpolates.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use repo::{Db, JobDetail, JobFilter, JobStatus};
use std::net::SocketAddr;

/// Jobs a list page shows at most.
const LIST_LIMIT: u64 = 100;
/// Counts on a page stop here (shown as `N+`): no page reads more than this many rows for a
/// count, however big the table.
const COUNT_CAP: u64 = 100_000;
/// Targets the targets page shows at most.
const TARGETS_LIMIT: u64 = 200;
/// How often the overview reloads its figures in the browser.
const REFRESH_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the board stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// Binds `listen` and serves the board until `shutdown`; logs the address it serves on.
pub async fn serve(
    db: Db,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), BoardError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| BoardError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(BoardError::Serve)?;
    tracing::info!(%addr, "board serving (read-only)");
    eprintln!("board: http://{addr}/ (read-only)");
    axum::serve(listener, router(db))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(BoardError::Serve)
}

/// The board's routes (DESIGN: `/` overview, `/jobs?queue=Q&status=S`, `/jobs/{id}`,
/// `/targets`; `/overview` is the overview's figures alone, for its refresh).
pub fn router(db: Db) -> Router {
    Router::new()
        .route("/", get(overview_page))
        .route("/overview", get(overview_fragment))
        .route("/jobs", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route("/targets", get(targets_page))
        .with_state(db)
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
    fn from(err: repo::RepoError) -> Self {
        tracing::warn!(error = %err, "board page failed");
        PageError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("database: {err}"),
        )
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
td.n,th.n{text-align:right}.paused{color:#b35c00;font-weight:bold}.error{color:#a00}\
code,pre{font-size:.9em}pre{white-space:pre-wrap;word-break:break-all;max-width:60rem}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "snapline: " (title) }
                style { (PreEscaped(STYLE)) }
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

/// `n`, or `n+` when it reached the cap.
fn capped(n: i64) -> String {
    if n >= COUNT_CAP as i64 {
        format!("{n}+")
    } else {
        n.to_string()
    }
}

async fn overview(db: &Db) -> Result<Markup, PageError> {
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
                    td { a href={ "/jobs?queue=" (d.queue) } { (d.queue) } }
                    td { @if q.paused { span.paused { "paused" } } @else { "running" } }
                    td.n.waiting { (d.waiting) }
                    td.n.running { (d.running) }
                    td.n.done { (d.done) }
                    td.n.failed { a href={ "/jobs?queue=" (d.queue) "&status=failed" } { (d.failed) } }
                    td.n.killed { a href={ "/jobs?queue=" (d.queue) "&status=killed" } { (d.killed) } }
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
        h2 { "targets by status" }
        table #targets-by-status {
            tr { th { "status" } th.n { "targets" } }
            @for (status, n) in &targets {
                tr { td { (status) } td.n { (n) } }
            }
        }
    })
}

async fn overview_page(State(db): State<Db>) -> Page {
    let figures = overview(&db).await?;
    let refresh = format!(
        "setInterval(async () => {{ try {{ const r = await fetch('/overview'); \
         if (r.ok) document.getElementById('overview').innerHTML = await r.text(); }} \
         catch (e) {{}} }}, {REFRESH_MS});"
    );
    Ok(Html(
        layout(
            "overview",
            html! {
                p { "Refreshes every " (REFRESH_MS / 1000) " s." }
                div #overview { (figures) }
                script { (PreEscaped(refresh)) }
            },
        )
        .into_string(),
    ))
}

async fn overview_fragment(State(db): State<Db>) -> Page {
    Ok(Html(overview(&db).await?.into_string()))
}

#[derive(Debug, serde::Deserialize)]
struct JobsQuery {
    queue: Option<String>,
    status: Option<String>,
    me_file: Option<i64>,
    target: Option<i64>,
}

async fn jobs_page(State(db): State<Db>, Query(query): Query<JobsQuery>) -> Page {
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
    let jobs = jobs::admin::list(&db, &filter, LIST_LIMIT).await?;
    Ok(Html(
        layout(
            "jobs",
            html! {
                form method="get" action="/jobs" {
                    label { "queue " select name="queue" {
                        option value="" { "any" }
                        @for q in jobs::status::QUEUES {
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
                        td { a href={ "/jobs/" (job.id) } { code { (job.id) } } }
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

/// `text` cut to `max` characters.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(max - 3).collect::<String>())
    }
}

async fn job_page(State(db): State<Db>, Path(id): Path<String>) -> Page {
    let job = jobs::admin::show(&db, &id).await?;
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    Ok(Html(
        layout(
            &format!("job {}", job.id),
            html! {
                table #job {
                    tr { th { "queue" } td { a href={ "/jobs?queue=" (job.queue) } { (job.queue) } } }
                    tr { th { "status" } td.status { (job.status) } }
                    tr { th { "attempts" } td { (job.attempts) " of " (job.max_attempts) } }
                    tr { th { "due" } td { (or_dash(&job.run_at)) } }
                    tr { th { "started" } td { (or_dash(&job.started_at)) } }
                    tr { th { "finished" } td { (or_dash(&job.finished_at)) } }
                    tr { th { "worker" } td { (or_dash(&job.worker)) } }
                    tr { th { "last error" } td.error { (or_dash(&job.error)) } }
                }
                h2 { "payload" }
                pre #payload { (job.payload) }
                h2 { "last result" }
                pre #last-result { (or_dash(&job.last_result)) }
            },
        )
        .into_string(),
    ))
}

async fn targets_page(State(db): State<Db>) -> Page {
    let rows = db.board().targets_with_bands(TARGETS_LIMIT).await?;
    let mut members = Vec::with_capacity(rows.len());
    for row in &rows {
        members.push(match row.band_id {
            Some(band) => Some(
                db.board()
                    .band_members(domain::BandId(band), COUNT_CAP)
                    .await?,
            ),
            None => None,
        });
    }
    Ok(Html(
        layout(
            "targets",
            html! {
                table #target-bands {
                    tr {
                        th.n { "target" } th { "title" } th { "status" } th { "last populated" }
                        th.n { "band" } th.n { "members" } th { "runs" }
                    }
                    @for (row, n) in rows.iter().zip(&members) {
                        tr data-target=(row.target_id) {
                            td.n { (row.target_id) }
                            td { (row.title.as_deref().unwrap_or("")) }
                            td { (row.status.as_deref().unwrap_or("-")) }
                            td { (row.last_populated_at.as_deref().unwrap_or("-")) }
                            td.n { @match row.band_id { Some(b) => { (b) }, None => { "-" } } }
                            td.n { @match n { Some(n) => { (capped(*n)) }, None => { "-" } } }
                            td { a href={ "/jobs?target=" (row.target_id) } { "jobs" } }
                        }
                    }
                }
                @if rows.iter().map(|r| r.target_id).collect::<std::collections::BTreeSet<_>>().len() as u64 == TARGETS_LIMIT {
                    p { "The first " (TARGETS_LIMIT) " targets shown." }
                }
            },
        )
        .into_string(),
    ))
}

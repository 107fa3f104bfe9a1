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

mod actions;
mod auth;
mod charts;
mod pages;

use actions::*;
use auth::*;
use pages::*;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use repo::{Db, JobChange, JobFilter, JobStatus, QueueJob};
use std::net::SocketAddr;

/// Jobs a list page shows at most.
const LIST_LIMIT: u64 = 100;
/// Counts on a page stop here (shown as `N+`): no page reads more than this many rows for a
/// count, however big the table.
const COUNT_CAP: u64 = 100_000;
/// The overview's and a queue page's counts per status stop here (shown as `N+`): four
/// queues of five statuses each stay within the page's 100 ms on a queue of millions.
const OVERVIEW_COUNT_CAP: i64 = 10_000;
/// Jobs of each queue and status whose payloads the job list reads for a me_file or target
/// filter (the newest): the page's search stays bounded on a queue of millions.
const PAYLOADS_SEARCHED: u64 = 5_000;
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
    /// The schedules the schedules page shows: `backfiller.schedule`, and `audit.schedule`
    /// when set.
    pub backfill_cron: String,
    pub audit_cron: Option<String>,
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
    backfill_cron: String,
    audit_cron: Option<String>,
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
        backfill_cron: options.backfill_cron.clone(),
        audit_cron: options.audit_cron.clone(),
        csrf: token.iter().map(|b| format!("{b:02x}")).collect(),
    };
    let router = Router::new()
        .route("/", get(overview_page))
        .route("/overview", get(overview_fragment))
        .route("/jobs", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route(
            "/jobs/bulk/{action}",
            get(confirm_bulk_action).post(bulk_action),
        )
        .route(
            "/jobs/{id}/{action}",
            get(confirm_job_action).post(job_action),
        )
        .route(
            "/queues/{queue}/{action}",
            get(confirm_queue_action).post(queue_action),
        )
        .route("/targets", get(targets_page))
        .route("/queues/{queue}", get(queue_page))
        .route("/nodes", get(nodes_page))
        .route("/schedules", get(schedules_page))
        .route("/me_files/{id}", get(me_file_page))
        .route(STYLESHEET_PATH, get(stylesheet))
        .route(OVERVIEW_SCRIPT_PATH, get(overview_script))
        .with_state(board);
    let router = match &options.basic_auth {
        Some((user, password)) => with_basic_auth(router, user, password),
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

/// A failed page: its status and an escaped message.
struct PageError(StatusCode, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = layout("", "error", html! { p.error { (self.1) } });
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

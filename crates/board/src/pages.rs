//! The pages: the overview (and the fragment its script refreshes), the job list and one
//! job, the targets, a me_file, and the stylesheet and script they load.

use crate::*;
use jobs::history::utc;

/// The stylesheet and the overview's refresh, served by the board: the
/// Content-Security-Policy allows code and styles from the board itself only.
pub(crate) const STYLESHEET_PATH: &str = "/static/board.css";
pub(crate) const OVERVIEW_SCRIPT_PATH: &str = "/static/overview.js";

pub(crate) async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

pub(crate) async fn overview_script() -> impl IntoResponse {
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
pub(crate) const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// `value` as one path segment or query value.
pub(crate) fn encoded(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

/// The board's one stylesheet: light and dark following the system, states coloured and
/// always also written, numbers aligned right in tabular figures, wide tables scrolling on
/// a phone rather than the page.
pub(crate) const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1f2328;--bg:#fff;--muted:#59636e;--line:#d1d9e0;--head:#f6f8fa;\
--ok:#1a7f37;--bad:#cf222e;--busy:#0969da;--warn:#9a6700;--link:#0969da}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#30363d;\
--head:#161b22;--ok:#3fb950;--bad:#f85149;--busy:#4493f8;--warn:#d29922;--link:#4493f8}}\
body{font-family:system-ui,sans-serif;margin:0;color:var(--fg);background:var(--bg);line-height:1.4}\
header{display:flex;flex-wrap:wrap;gap:.3rem 1rem;align-items:baseline;padding:.6rem 1.2rem;\
border-bottom:1px solid var(--line);background:var(--head)}\
.brand{font-weight:700;font-size:1.15rem;color:var(--fg);text-decoration:none}#watching{color:var(--muted)}\
nav{padding:.4rem 1.2rem;border-bottom:1px solid var(--line)}nav a{margin-right:1rem}\
main{padding:0 1.2rem 1.5rem;max-width:90rem}a{color:var(--link)}h1{font-size:1.4rem}h2{font-size:1.1rem}\
table{border-collapse:collapse;margin:.5rem 0 1.5rem;display:block;overflow-x:auto;max-width:100%}\
td,th{border-bottom:1px solid var(--line);padding:.3rem .6rem;text-align:left;vertical-align:top}\
th{background:var(--head)}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.state{font-weight:600}.state::before{content:'\\25CF  ';font-size:.8em}\
.ok{color:var(--ok)}.failed,.drift,.error{color:var(--bad)}.failed,.drift{font-weight:bold}\
.busy{color:var(--busy)}.idle{color:var(--muted)}.paused{color:var(--warn);font-weight:bold}\
pre.diff{background:var(--head);padding:.5rem}code,pre{font-size:.9em}\
pre{white-space:pre-wrap;word-break:break-all;max-width:60rem}\
form label{margin-right:.6rem;white-space:nowrap}\
figure.chart{margin:.5rem 0 1.5rem}.chart svg{width:100%;max-width:720px;height:auto;display:block}\
rect.done{fill:var(--ok)}rect.failed{fill:var(--bad)}line.axis{stroke:var(--line)}\
polyline.age{fill:none;stroke:var(--busy);stroke-width:1.5}circle.age{fill:var(--busy)}\
text.scale,text.time{fill:var(--muted);font-size:10px}.legend{margin:.2rem 0}";
/// A whole page: the header naming snapline and the database it watches (`watching`, as
/// `Db::label` says it: never a password; empty when unknown), the navigation, `title` and
/// `body`.
pub(crate) fn layout(watching: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { "snapline: " (title) }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body {
                header {
                    a.brand href="/" { "snapline" }
                    @if !watching.is_empty() { span #watching { "watching " (watching) } }
                }
                nav {
                    a href="/" { "overview" }
                    a href="/jobs" { "jobs" }
                    a href="/targets" { "targets" }
                    a href="/nodes" { "nodes" }
                    a href="/schedules" { "schedules" }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A job's state as text in a span whose class colours it (the text says it without the
/// colour).
pub(crate) fn job_state(status: &str) -> Markup {
    let class = match status {
        "Done" => "state ok",
        "Failed" | "Killed" => "state failed",
        "Queued" | "Running" => "state busy",
        _ => "state idle",
    };
    html! { span class=(class) { (status) } }
}

/// A count on the overview: `n`, or `n+` when it reached [`OVERVIEW_COUNT_CAP`].
pub(crate) fn overview_count(n: i64) -> String {
    capped_at(n, OVERVIEW_COUNT_CAP as u64)
}

/// `n`, or `n+` when it reached [`COUNT_CAP`].
pub(crate) fn capped(n: i64) -> String {
    capped_at(n, COUNT_CAP)
}

/// `n`, or `n+` when it reached `cap`.
pub(crate) fn capped_at(n: i64, cap: u64) -> String {
    if n >= cap as i64 {
        format!("{n}+")
    } else {
        n.to_string()
    }
}

pub(crate) async fn overview(board: &Board) -> Result<Markup, PageError> {
    let db = &board.db;
    let queues = jobs::admin::queues_counted_to(db, OVERVIEW_COUNT_CAP).await?;
    let mut last_hour = Vec::with_capacity(queues.len());
    for q in &queues {
        last_hour.push(jobs::history::done_in_the_last_hour(db, &q.depth.queue).await?);
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
                    td { a href={ "/queues/" (encoded(&d.queue)) } { (d.queue) } }
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
                    td.n.waiting { (overview_count(d.waiting)) }
                    td.n.running { (overview_count(d.running)) }
                    td.n.done { (overview_count(d.done)) }
                    td.n.failed { a href={ "/jobs?queue=" (encoded(&d.queue)) "&status=failed" } { (overview_count(d.failed)) } }
                    td.n.killed { a href={ "/jobs?queue=" (encoded(&d.queue)) "&status=killed" } { (overview_count(d.killed)) } }
                    td.n { @match hour { Some(n) => { (n) }, None => { "-" } } }
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

pub(crate) async fn overview_page(State(board): State<Board>) -> Page {
    let figures = overview(&board).await?;
    Ok(Html(
        layout(
            board.db.label(),
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

pub(crate) async fn overview_fragment(State(board): State<Board>) -> Page {
    Ok(Html(overview(&board).await?.into_string()))
}

/// A job list's filter as its query gives it.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct JobsQuery {
    pub(crate) queue: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) me_file: Option<i64>,
    pub(crate) target: Option<i64>,
}

impl JobsQuery {
    /// The filter; an unknown status is a 400.
    pub(crate) fn filter(&self) -> Result<JobFilter, PageError> {
        let status = match self.status.as_deref().filter(|s| !s.is_empty()) {
            Some(text) => Some(
                text.parse::<JobStatus>()
                    .map_err(|e| PageError(StatusCode::BAD_REQUEST, e))?,
            ),
            None => None,
        };
        Ok(JobFilter {
            queue: self.queue.clone().filter(|q| !q.is_empty()),
            status,
            me_file_id: self.me_file,
            target_id: self.target,
        })
    }
}

pub(crate) async fn jobs_page(State(board): State<Board>, Query(query): Query<JobsQuery>) -> Page {
    let db = &board.db;
    let filter = query.filter()?;
    let jobs =
        jobs::admin::list_searching(db, &filter, LIST_LIMIT, Some(PAYLOADS_SEARCHED)).await?;
    let searched = filter.me_file_id.is_some() || filter.target_id.is_some();
    let filter_text = filter_query(&query);
    Ok(Html(
        layout(
            board.db.label(),
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
                @if searched {
                    p #searched {
                        "A me_file or target is looked for in the payloads of the newest "
                        (PAYLOADS_SEARCHED) " jobs of each queue and status; `snapctl jobs list \
                         --me-file` reads them all."
                    }
                }
                @if board.allow_actions && !jobs.is_empty() {
                    p #bulk {
                        "Every job this filter matches: "
                        @for change in JobChange::ALL {
                            a.action href={ "/jobs/bulk/" (change.name()) "?" (filter_text) } { (change.name()) " all" }
                            " "
                        }
                        "(each asks first, saying how many)"
                    }
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

pub(crate) fn jobs_table(jobs: &[QueueJob]) -> Markup {
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
                        td.status { (job_state(&job.status)) }
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
pub(crate) fn shown_in_full_or_cut(text: &str) -> String {
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
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(max - 3).collect::<String>())
    }
}

/// The job of `id`; an id no database can hold (a NUL byte) is no job's.
pub(crate) async fn find_job(board: &Board, id: &str) -> Result<QueueJob, PageError> {
    if id.contains('\0') {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            "no job has that id".into(),
        ));
    }
    Ok(jobs::admin::show(&board.db, id).await?)
}

pub(crate) async fn job_page(State(board): State<Board>, Path(id): Path<String>) -> Page {
    let job = find_job(&board, &id).await?;
    let attempts = jobs::history::attempts_of(&board.db, &job.id).await?;
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    Ok(Html(
        layout(
            board.db.label(),
            &format!("job {}", job.id),
            html! {
                table #job {
                    tr { th { "queue" } td { a href={ "/jobs?queue=" (encoded(&job.queue)) } { (job.queue) } } }
                    tr { th { "status" } td.status { (job_state(&job.status)) } }
                    tr { th { "attempts" } td { (job.attempts) " of " (job.max_attempts) } }
                    tr { th { "due" } td { (or_dash(&job.run_at)) } }
                    tr { th { "started" } td { (or_dash(&job.started_at)) } }
                    tr { th { "finished" } td { (or_dash(&job.finished_at)) } }
                    tr { th { "worker" } td { (or_dash(&job.worker)) } }
                    tr { th { "last error" } td.error { (or_dash(&job.error)) } }
                }
                @if board.allow_actions {
                    @let actions: Vec<JobChange> = JobChange::ALL.into_iter().filter(|a| a.applies_to(&job.status)).collect();
                    p #actions {
                        @if actions.is_empty() {
                            "A worker holds this job: nothing can change it until it finishes."
                        }
                        @for action in actions {
                            a.action href={ "/jobs/" (encoded(&job.id)) "/" (action.name()) } { (action.name()) }
                            " "
                        }
                    }
                }
                h2 { "attempts" }
                (attempts_table(&job, &attempts))
                h2 { "payload" }
                pre #payload { (shown_in_full_or_cut(&job.payload)) }
                h2 { "last result" }
                pre #last-result { (shown_in_full_or_cut(&or_dash(&job.last_result))) }
            },
        )
        .into_string(),
    ))
}

/// Every attempt of `job`, oldest first: those that did not end it done, as the queue's
/// trigger recorded them (migration 19), then the one in its own row when it ended it done
/// or is running now.
fn attempts_table(job: &QueueJob, attempts: &[repo::JobAttemptRecord]) -> Markup {
    let current = match job.status.as_str() {
        "Done" => Some(("done", job.finished_at.clone())),
        "Queued" | "Running" if job.worker.is_some() => Some(("running", job.started_at.clone())),
        _ => None,
    };
    html! {
        @if attempts.is_empty() && current.is_none() {
            p #no-attempts { "No attempt has ended yet." }
        } @else {
            table #attempts {
                tr { th.n { "attempt" } th { "outcome" } th { "when (UTC)" } th { "worker" } th { "error" } }
                @for record in attempts {
                    tr.attempt data-attempt=(record.attempt) data-outcome=(record.status) {
                        td.n { (record.attempt) }
                        td { (attempt_outcome(&record.status, record.worker.is_some())) }
                        td { (utc(record.finished_at)) }
                        td { code { (record.worker.as_deref().unwrap_or("-")) } }
                        td.error { (shorten(&record.error().unwrap_or_else(|| "-".into()), 300)) }
                    }
                }
                @if let Some((outcome, at)) = current {
                    tr.attempt data-attempt=(job.attempts) data-outcome=(outcome) {
                        td.n { (job.attempts) }
                        td { @if outcome == "done" { span.state.ok { "done" } } @else { span.state.busy { "running" } } }
                        td { (at.as_deref().unwrap_or("-")) }
                        td { code { (job.worker.as_deref().unwrap_or("-")) } }
                        td.error { "-" }
                    }
                }
            }
        }
    }
}

/// What an attempt's recorded status means, in words with its colour.
fn attempt_outcome(status: &str, had_worker: bool) -> Markup {
    match status {
        "Failed" => html! { span.state.failed { "failed, retried" } },
        "Killed" if had_worker => html! { span.state.failed { "failed, not retried" } },
        "Killed" => html! { span.state.failed { "killed by an operator" } },
        "Pending" => html! { span.state.idle { "worker lost, handed back" } },
        other => html! { span.state.idle { (other) } },
    }
}

/// A queue's charts: jobs done and failed per minute over the last hour and per hour over
/// the last day, and the oldest waiting job's age, from the minutes the services rolled up.
pub(crate) async fn queue_page(State(board): State<Board>, Path(queue): Path<String>) -> Page {
    // An unknown queue is no page (a 404, where an action naming one is a 400).
    jobs::admin::known_queue(&queue)
        .map_err(|err| PageError(StatusCode::NOT_FOUND, err.to_string()))?;
    let history = jobs::history::queue_history(&board.db, &queue).await?;
    let depth = board
        .db
        .queue_jobs()
        .depth_counted_to(&queue, OVERVIEW_COUNT_CAP)
        .await?;
    let workers_set = board
        .db
        .queue_scales()
        .all()
        .await?
        .into_iter()
        .find(|(q, _)| *q == queue)
        .map(|(_, n)| n);
    let paused = board
        .db
        .queue_pauses()
        .paused()
        .await?
        .iter()
        .any(|(q, _)| *q == queue);
    // The newest minute a service has rolled up (they roll a minute once it closed), else
    // the last whole minute.
    let newest = history
        .minutes
        .last()
        .map_or(history.now - 60, |m| m.minute);
    let minutes = crate::charts::slots(&history.minutes, newest, 60, 60);
    let hours = crate::charts::slots(&history.hours, history.now, 3600, 24);
    Ok(Html(
        layout(
            board.db.label(),
            &format!("queue {queue}"),
            html! {
                p {
                    a href={ "/jobs?queue=" (encoded(&queue)) } { "its jobs" }
                    " - now " (overview_count(depth.waiting)) " waiting, " (overview_count(depth.running)) " running; oldest waiting "
                    @match depth.oldest_waiting_secs { Some(s) => { (format!("{:.0} s", s.max(0.0))) }, None => { "-" } }
                    "."
                }
                p #workers {
                    "Workers per replica: "
                    @match workers_set {
                        Some(n) => { strong { (n) } " (set by an operator)" }
                        None => { "as each replica is configured (queues." (queue) ".concurrency)" }
                    }
                    "; " @if paused { span.paused { "paused" } } @else { "running" } "."
                }
                @if board.allow_actions {
                    form #scale method="get" action={ "/queues/" (encoded(&queue)) "/scale" } {
                        label { "workers per replica "
                            input type="number" name="workers" min="1" max=(jobs::admin::MAX_WORKERS_PER_REPLICA) required
                                value=(workers_set.map_or(String::new(), |n| n.to_string())); }
                        button type="submit" { "scale" }
                        @if workers_set.is_some() {
                            " " a.action href={ "/queues/" (encoded(&queue)) "/scale?workers=configured" } { "back to configured" }
                        }
                        " "
                        @if paused {
                            a.action href={ "/queues/" (encoded(&queue)) "/resume" } { "resume" }
                        } @else {
                            a.action href={ "/queues/" (encoded(&queue)) "/pause" } { "pause" }
                        }
                    }
                }
                @if history.minutes.is_empty() {
                    p #no-history {
                        "No minute of the last hour has been rolled up: the services roll each closed minute up while they run (every 15 s)."
                    }
                }
                (crate::charts::done_and_failed("per-minute", "done and failed per minute, last hour (UTC)", &minutes))
                (crate::charts::done_and_failed("per-hour", "done and failed per hour, last day (UTC)", &hours))
                (crate::charts::oldest_waiting("oldest-waiting", "oldest waiting job's age per minute, last hour", &minutes))
            },
        )
        .into_string(),
    ))
}

/// Every worker of every replica (apalis's worker records), heard from last first.
pub(crate) async fn nodes_page(State(board): State<Board>) -> Page {
    let nodes = jobs::admin::nodes(&board.db).await?;
    let silent_after = jobs::queue::SILENT_AFTER.as_secs();
    Ok(Html(
        layout(
            board.db.label(),
            "nodes",
            html! {
                p {
                    "Every worker of every replica, heard from last first (at most "
                    (jobs::admin::NODES_SHOWN) "). A worker silent for " (silent_after)
                    " s or more has stopped beating; the queue hands its jobs out again."
                }
                @if nodes.is_empty() {
                    p #no-nodes { "No worker has registered: no replica serves a queue." }
                } @else {
                    table #nodes {
                        tr {
                            th { "replica" } th { "binary" } th { "queue" } th { "worker" }
                            th { "started (UTC)" } th.n { "last heartbeat" } th.n { "jobs held" } th { "state" }
                        }
                        @for node in &nodes {
                            @let worker = &node.worker;
                            tr data-worker=(worker.id) {
                                td { (node.process.as_deref().unwrap_or("-")) }
                                td { (node.binary.unwrap_or("-")) }
                                td { a href={ "/jobs?queue=" (encoded(&worker.queue)) } { (worker.queue) } }
                                td { code { (worker.id) } }
                                td { (worker.started_at.as_deref().unwrap_or("-")) }
                                td.n { (format!("{:.0} s ago", worker.silent_secs)) }
                                td.n.holding { (worker.holding) }
                                td {
                                    @if node.alive { span.state.ok { "alive" } }
                                    @else { span.state.failed { "heartbeat stopped" } }
                                }
                            }
                        }
                    }
                }
            },
        )
        .into_string(),
    ))
}

/// The backfill's and the audit's schedules: the last tick, its job, result and replica,
/// and the next tick.
pub(crate) async fn schedules_page(State(board): State<Board>) -> Page {
    let schedules = jobs::backfill_queue::schedules(
        &board.db,
        &board.backfill_cron,
        board.audit_cron.as_deref(),
    )
    .await?;
    let now = chrono::Utc::now().timestamp();
    Ok(Html(
        layout(
            board.db.label(),
            "schedules",
            html! {
                p { "Each tick pushes one job onto queue backfill, once across the backfiller replicas." }
                table #schedules {
                    tr {
                        th { "schedule" } th { "cron" } th { "last tick (UTC)" } th { "its job" }
                        th { "state" } th { "ran by" } th { "finished (UTC)" } th { "result" } th { "next tick (UTC)" }
                    }
                    @for schedule in &schedules {
                        tr data-schedule=(schedule.name) {
                            td { (schedule.name) }
                            td { code { (schedule.cron.as_deref().unwrap_or("off")) } }
                            @match &schedule.last_tick {
                                Some((tick, job)) => {
                                    td.tick { (utc(*tick as i64)) }
                                    td { a href={ "/jobs/" (encoded(&job.id)) } { code { (job.id) } } }
                                    td.status { (job_state(&job.status)) }
                                    td.ran-by { (schedule.ran_by.as_deref().unwrap_or("-")) }
                                    td { (job.finished_at.as_deref().unwrap_or("-")) }
                                    td.result {
                                        @match (&job.error, &job.last_result) {
                                            (Some(error), _) => span.error { (shorten(error, 200)) },
                                            (None, Some(result)) => code { (shorten(result, 200)) },
                                            (None, None) => "-",
                                        }
                                    }
                                }
                                None => {
                                    td.tick { "none kept" } td { "-" } td { "-" } td { "-" } td { "-" } td { "-" }
                                }
                            }
                            td.next {
                                @match schedule.next_tick {
                                    Some(next) => { (utc(next)) " (in " ((next - now).max(0)) " s)" }
                                    None => "-",
                                }
                            }
                        }
                    }
                }
            },
        )
        .into_string(),
    ))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct MeFileQuery {
    target: Option<i64>,
}

/// Why a me_file is or is not in each target (`snapctl explain`).
pub(crate) async fn me_file_page(
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
            board.db.label(),
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
pub(crate) const RECENT_POPULATES: u64 = 500;
/// Runs shown per target.
pub(crate) const RUNS_PER_TARGET: usize = 3;

pub(crate) async fn targets_page(State(board): State<Board>) -> Page {
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
    let populating = jobs::status::populating(db, jobs::status::POPULATING_SHOWN).await?;
    let mut runs: std::collections::HashMap<i64, Vec<&QueueJob>> = Default::default();
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
            board.db.label(),
            "targets",
            html! {
                @if !populating.is_empty() {
                    h2 { "populates running" }
                    table #populating {
                        tr { th.n { "target" } th.n { "run" } th.n { "chunks done" } th.n { "rows written" } th.n { "rows/s" } th.n { "time left" } }
                        @for progress in &populating {
                            tr data-populating=(progress.target_id) {
                                td.n { (progress.target_id) }
                                td.n { (progress.run.run) }
                                td.n.chunks { (progress.run.chunks_done) " of " (progress.run.chunks) }
                                td.n.rows { (progress.run.rows_written) }
                                td.n { @match progress.rows_per_sec { Some(rate) => { (format!("{rate:.0}")) }, None => { "-" } } }
                                td.n.left { @match progress.secs_left { Some(secs) => { "about " (secs) " s" }, None => { "after the first chunk" } } }
                            }
                        }
                    }
                }
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

//! The actions (`--allow-actions`): retry, kill or delete a job or every job a filtered
//! list matches, pause, resume and scale a queue; each a confirmation page (GET) and the change it
//! posts (POST), through `jobs::admin` as `snapctl jobs` and `snapctl queues` do.

use crate::*;

/// An action's form: the CSRF token of this process.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ActionForm {
    pub(crate) csrf: String,
}

/// The change named `text` in a path (`retry`, `kill`, `delete`).
fn job_change(text: &str) -> Result<JobChange, PageError> {
    JobChange::ALL
        .into_iter()
        .find(|change| change.name() == text)
        .ok_or_else(|| {
            PageError(
                StatusCode::NOT_FOUND,
                format!("no action `{text}`: retry, kill or delete"),
            )
        })
}

/// The statuses `change` takes, as a page says them.
fn statuses_taken(change: JobChange) -> String {
    change
        .takes()
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A confirmation page: what will happen, and one button that posts it.
pub(crate) fn confirmation(
    board: &Board,
    question: &str,
    action: &str,
    back: &str,
) -> Html<String> {
    Html(
        layout(
            board.db.label(),
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

pub(crate) async fn confirm_job_action(
    State(board): State<Board>,
    Path((id, action)): Path<(String, String)>,
) -> Page {
    actions_allowed(&board)?;
    let action = job_change(&action)?;
    let job = find_job(&board, &id).await?;
    let question = match action {
        JobChange::Retry => format!(
            "Retry job {} ({}, now {})? It becomes due now with all its attempts.",
            job.id, job.queue, job.status
        ),
        JobChange::Kill => format!(
            "Kill job {} ({}, now {})? No worker takes it again.",
            job.id, job.queue, job.status
        ),
        JobChange::Delete => format!(
            "Delete job {} ({}, now {})? Its row and record go for good.",
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

pub(crate) async fn job_action(
    State(board): State<Board>,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, PageError> {
    actions_allowed(&board)?;
    check_csrf(&board, &form)?;
    let action = job_change(&action)?;
    let outcome = jobs::admin::change(&board.db, action, std::slice::from_ref(&id)).await?;
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
                "job {id} is {status}: {} takes {} jobs; a job a worker holds finishes first",
                action.name(),
                statuses_taken(action)
            ),
        ));
    }
    tracing::info!(job = %jobs::status::printable(&id), action = action.name(), "job changed from the board");
    let to = match action {
        JobChange::Delete => "/jobs".to_owned(),
        _ => format!("/jobs/{}", encoded(&id)),
    };
    Ok(axum::response::Redirect::to(&to).into_response())
}

/// What a queue action does.
pub(crate) enum QueueAction {
    Pause,
    Resume,
    /// Workers per replica (`None`: each replica's configured concurrency).
    Scale(Option<i64>),
}

/// A scale's query: `workers=N`, or `workers=configured`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ScaleQuery {
    pub(crate) workers: Option<String>,
}

/// `pause`, `resume` or `scale` (with its query's workers).
pub(crate) fn queue_action_of(action: &str, query: &ScaleQuery) -> Result<QueueAction, PageError> {
    match action {
        "pause" => Ok(QueueAction::Pause),
        "resume" => Ok(QueueAction::Resume),
        "scale" => match query.workers.as_deref().map(str::trim) {
            Some("configured") => Ok(QueueAction::Scale(None)),
            Some(text) => text
                .parse()
                .map(|n| QueueAction::Scale(Some(n)))
                .map_err(|_| {
                    PageError(
                        StatusCode::BAD_REQUEST,
                        format!("workers must be a number or `configured`, not {text:?}"),
                    )
                }),
            None => Err(PageError(
                StatusCode::BAD_REQUEST,
                "scale needs workers=N or workers=configured".into(),
            )),
        },
        other => Err(PageError(
            StatusCode::NOT_FOUND,
            format!("no action `{other}`: pause, resume or scale"),
        )),
    }
}

pub(crate) async fn confirm_queue_action(
    State(board): State<Board>,
    Path((queue, action)): Path<(String, String)>,
    Query(query): Query<ScaleQuery>,
) -> Page {
    actions_allowed(&board)?;
    let what = queue_action_of(&action, &query)?;
    let queue = jobs::admin::known_queue(&queue)?;
    let (question, form) = match what {
        QueueAction::Pause => (
            format!("Pause {queue}? Every replica stops taking its jobs; running jobs finish."),
            format!("/queues/{}/pause", encoded(queue)),
        ),
        QueueAction::Resume => (
            format!("Resume {queue}? The replicas take its jobs again."),
            format!("/queues/{}/resume", encoded(queue)),
        ),
        QueueAction::Scale(Some(n)) => {
            jobs::admin::check_scale(n)?;
            (
                format!(
                    "Run {n} worker(s) of {queue} on every replica? Each starts or stops workers \
                     within seconds (a stopped worker finishes its job first); a restart keeps it."
                ),
                format!("/queues/{}/scale?workers={n}", encoded(queue)),
            )
        }
        QueueAction::Scale(None) => (
            format!("Let every replica run its configured workers of {queue} again?"),
            format!("/queues/{}/scale?workers=configured", encoded(queue)),
        ),
    };
    Ok(confirmation(
        &board,
        &question,
        &form,
        &format!("/queues/{}", encoded(queue)),
    ))
}

pub(crate) async fn queue_action(
    State(board): State<Board>,
    Path((queue, action)): Path<(String, String)>,
    Query(query): Query<ScaleQuery>,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, PageError> {
    actions_allowed(&board)?;
    check_csrf(&board, &form)?;
    match queue_action_of(&action, &query)? {
        QueueAction::Pause => {
            jobs::admin::pause_queue(&board.db, &queue).await?;
        }
        QueueAction::Resume => {
            jobs::admin::resume_queue(&board.db, &queue).await?;
        }
        QueueAction::Scale(workers) => {
            jobs::admin::scale_queue(&board.db, &queue, workers).await?;
        }
    }
    tracing::info!(queue, action, "queue changed from the board");
    Ok(axum::response::Redirect::to(&format!("/queues/{}", encoded(&queue))).into_response())
}

/// What a bulk action's confirmation says and its form posts: the list's filter, as its
/// query.
pub(crate) fn filter_query(query: &JobsQuery) -> String {
    let mut parts = Vec::new();
    for (key, value) in [
        ("queue", query.queue.clone()),
        ("status", query.status.clone()),
        ("me_file", query.me_file.map(|v| v.to_string())),
        ("target", query.target.map(|v| v.to_string())),
    ] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            parts.push(format!("{key}={}", encoded(&value)));
        }
    }
    parts.join("&")
}

/// The confirmation of a bulk action on every job the list's filter matches: how many it
/// takes (counted up to the board's cap) and what the filter is.
pub(crate) async fn confirm_bulk_action(
    State(board): State<Board>,
    Path(action): Path<String>,
    Query(query): Query<JobsQuery>,
) -> Page {
    actions_allowed(&board)?;
    let action = job_change(&action)?;
    let filter = query.filter()?;
    let n = jobs::admin::count_matching(&board.db, action, &filter, COUNT_CAP).await?;
    let filter_text = filter_query(&query);
    let question = format!(
        "{} {} job(s) matching {}? It takes {} jobs; a job a worker holds is left alone.",
        match action {
            JobChange::Retry => "Retry",
            JobChange::Kill => "Kill",
            JobChange::Delete => "Delete",
        },
        capped(n),
        if filter_text.is_empty() {
            "every queue".to_owned()
        } else {
            filter_text.replace('&', ", ")
        },
        statuses_taken(action)
    );
    Ok(confirmation(
        &board,
        &question,
        &format!("/jobs/bulk/{}?{filter_text}", action.name()),
        &format!("/jobs?{filter_text}"),
    ))
}

/// A bulk action on every job the list's filter matches, then back to the list.
pub(crate) async fn bulk_action(
    State(board): State<Board>,
    Path(action): Path<String>,
    Query(query): Query<JobsQuery>,
    axum::Form(form): axum::Form<ActionForm>,
) -> Result<Response, PageError> {
    actions_allowed(&board)?;
    check_csrf(&board, &form)?;
    let action = job_change(&action)?;
    let filter = query.filter()?;
    let changed = jobs::admin::change_matching(&board.db, action, &filter).await?;
    tracing::info!(action = action.name(), changed, filter = %filter_query(&query), "jobs changed from the board");
    Ok(axum::response::Redirect::to(&format!("/jobs?{}", filter_query(&query))).into_response())
}

//! The actions (`--allow-actions`): retry and kill a job, pause and resume a queue, each a
//! confirmation page (GET) and the change it posts (POST).

use crate::*;

/// An action's form: the CSRF token of this process.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ActionForm {
    pub(crate) csrf: String,
}

/// An action a job page offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobAction {
    Retry,
    Kill,
    Delete,
}

impl JobAction {
    pub(crate) const ALL: [JobAction; 3] = [JobAction::Retry, JobAction::Kill, JobAction::Delete];

    fn parse(text: &str) -> Result<Self, PageError> {
        JobAction::ALL
            .into_iter()
            .find(|action| action.name() == text)
            .ok_or_else(|| {
                PageError(
                    StatusCode::NOT_FOUND,
                    format!("no action `{text}`: retry, kill or delete"),
                )
            })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            JobAction::Retry => "retry",
            JobAction::Kill => "kill",
            JobAction::Delete => "delete",
        }
    }

    /// The statuses it takes a job from, the same as `snapctl jobs`.
    fn takes(self) -> &'static [JobStatus] {
        match self {
            JobAction::Retry => &JobStatus::RETRYABLE,
            JobAction::Kill => &JobStatus::KILLABLE,
            JobAction::Delete => &JobStatus::DELETABLE,
        }
    }

    /// Whether it applies to a job in `status` (a job page offers only those that do).
    pub(crate) fn applies_to(self, status: &str) -> bool {
        self.takes().iter().any(|s| s.as_str() == status)
    }
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
        JobAction::Delete => format!(
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
    let action = JobAction::parse(&action)?;
    let ids = [id.clone()];
    let outcome = match action {
        JobAction::Retry => jobs::admin::retry(&board.db, &ids).await?,
        JobAction::Kill => jobs::admin::kill(&board.db, &ids).await?,
        JobAction::Delete => jobs::admin::delete(&board.db, &ids).await?,
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
                "job {id} is {status}: {} takes {} jobs; a job a worker holds finishes first",
                action.name(),
                action
                    .takes()
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    tracing::info!(job = %jobs::status::printable(&id), action = action.name(), "job changed from the board");
    let to = match action {
        JobAction::Delete => "/jobs".to_owned(),
        _ => format!("/jobs/{}", encoded(&id)),
    };
    Ok(axum::response::Redirect::to(&to).into_response())
}

/// `pause` or `resume`.
pub(crate) fn queue_switch(action: &str) -> Result<bool, PageError> {
    match action {
        "pause" => Ok(true),
        "resume" => Ok(false),
        other => Err(PageError(
            StatusCode::NOT_FOUND,
            format!("no action `{other}`: pause or resume"),
        )),
    }
}

pub(crate) async fn confirm_queue_action(
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

pub(crate) async fn queue_action(
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

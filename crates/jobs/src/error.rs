use domain::TargetId;
use repo::RepoError;
use std::time::Duration;

/// Why a job failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("target {0} does not exist")]
    UnknownTarget(TargetId),
    #[error(
        "{what} id {id} is out of range: {table}.id holds at most {max} on this database (the platform's ids are integer)"
    )]
    IdOutOfRange {
        what: &'static str,
        table: &'static str,
        id: i64,
        max: i64,
    },
    #[error("malformed job payload: {0}")]
    Malformed(String),
    #[error("{what} is held by {owner}; still busy after waiting {waited:?}")]
    Busy {
        what: String,
        owner: String,
        waited: Duration,
    },
    #[error("lost the lease on {0} (another run took it over after this one stalled)")]
    LeaseLost(String),
    #[error(
        "{0} stopped on request between batches; the batches done are kept, run it again to finish"
    )]
    Interrupted(String),
    #[error("queue error: {0}")]
    Queue(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl JobError {
    /// Transient failures are retried with backoff; permanent ones fail the job at once.
    pub fn is_transient(&self) -> bool {
        match self {
            JobError::UnknownTarget(_) | JobError::IdOutOfRange { .. } | JobError::Malformed(_) => {
                false
            }
            JobError::Busy { .. }
            | JobError::LeaseLost(_)
            | JobError::Interrupted(_)
            | JobError::Queue(_) => true,
            JobError::Repo(err) => err.is_transient(),
        }
    }
}

/// Refuses an id that `table.id` cannot hold (beyond `integer` on the platform's database),
/// so it fails as bad input instead of reading as an unknown or deleted row.
pub(crate) async fn check_id_range(
    db: &repo::Db,
    what: &'static str,
    table: &'static str,
    id: i64,
) -> Result<(), JobError> {
    let max = db.schema().id_max(table).await?;
    if id > max {
        return Err(JobError::IdOutOfRange {
            what,
            table,
            id,
            max,
        });
    }
    Ok(())
}

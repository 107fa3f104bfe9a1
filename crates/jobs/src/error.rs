use domain::{BandId, TargetId};
use repo::RepoError;
use std::time::Duration;

/// The underlying error of a queue or configuration failure, kept as the `source`.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a job failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("target {0} does not exist")]
    UnknownTarget(TargetId),
    #[error("band {0} does not exist and no population refers to it")]
    UnknownBand(BandId),
    #[error("me_file {0} does not exist and no population refers to it")]
    UnknownMeFile(domain::MeFileId),
    #[error(
        "target {target} was deleted while it was being populated; the {removed} populations of its bands were removed"
    )]
    TargetDeleted { target: TargetId, removed: u64 },
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
    Queue(#[source] Cause),
    #[error("invalid {what}: {source}")]
    Config {
        what: String,
        #[source]
        source: Cause,
    },
    #[error("gave up after {attempts} attempt(s); the last failed with: {last}")]
    Exhausted { attempts: usize, last: String },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl JobError {
    /// Transient failures are retried with backoff; permanent ones fail the job at once.
    pub fn is_transient(&self) -> bool {
        match self {
            JobError::Busy { .. }
            | JobError::LeaseLost(_)
            | JobError::Interrupted(_)
            | JobError::Queue(_) => true,
            JobError::Repo(err) => err.is_transient(),
            JobError::UnknownTarget(_)
            | JobError::UnknownBand(_)
            | JobError::UnknownMeFile(_)
            | JobError::TargetDeleted { .. }
            | JobError::IdOutOfRange { .. }
            | JobError::Malformed(_)
            | JobError::Config { .. }
            | JobError::Exhausted { .. } => false,
        }
    }

    /// An id that does not (or no longer) exist, a payload that cannot be read, or a
    /// setting that cannot be used: the caller's to fix (exit code 2), never retried.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            JobError::UnknownTarget(_)
                | JobError::UnknownBand(_)
                | JobError::UnknownMeFile(_)
                | JobError::TargetDeleted { .. }
                | JobError::IdOutOfRange { .. }
                | JobError::Malformed(_)
                | JobError::Config { .. }
        )
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

/// Refuses a target id out of range or not in `targets`.
pub(crate) async fn check_target_exists(db: &repo::Db, target: TargetId) -> Result<(), JobError> {
    check_id_range(db, "target", "targets", target.0).await?;
    if db.targets().find(target).await?.is_none() {
        return Err(JobError::UnknownTarget(target));
    }
    Ok(())
}

/// Refuses a band id out of range, or one that neither exists nor has populations.
pub(crate) async fn check_band_known(db: &repo::Db, band: BandId) -> Result<(), JobError> {
    check_id_range(db, "band", "target_bands", band.0).await?;
    if !db.bands().is_known(band).await? {
        return Err(JobError::UnknownBand(band));
    }
    Ok(())
}

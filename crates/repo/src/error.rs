use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

/// A repository failure, classified so the job runtime can decide whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// The cause is part of the message (not a `source`), so a report of the error chain
    /// does not say it twice.
    #[error(
        "cannot connect to {url}: {cause} (is the database server up, and are DATABASE_URL / database.url right?)"
    )]
    Connect { url: String, cause: sqlx::Error },
    #[error("unexpected data in {what}: {detail}")]
    Data { what: &'static str, detail: String },
    #[error("{what} needs PostgreSQL: {why}")]
    NeedsPostgres {
        what: &'static str,
        why: &'static str,
    },
    #[error(
        "{0} needs a database session of its own, which a transaction-mode pooler does not give: connect to PostgreSQL itself (not the pooler) for it, with database.pooler = \"none\""
    )]
    NeedsSession(&'static str),
}

impl RepoError {
    /// Whether trying again later may succeed: deadlocks, serialization failures, lost or
    /// refused connections, pool timeouts, a busy SQLite file, statement timeouts.
    pub fn is_transient(&self) -> bool {
        match self {
            RepoError::Db(err) => db_err_is_transient(err),
            RepoError::Sqlx(err) => sqlx_is_transient(err),
            RepoError::Connect { cause, .. } => sqlx_is_transient(cause),
            RepoError::Data { .. }
            | RepoError::NeedsPostgres { .. }
            | RepoError::NeedsSession(_) => false,
        }
    }
}

fn db_err_is_transient(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => {
            true
        }
        DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            sqlx_is_transient(e)
        }
        _ => false,
    }
}

fn sqlx_is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => is_transient_code(db.code().unwrap_or_default().as_ref()),
        _ => false,
    }
}

/// Whether a database error code (PostgreSQL's SQLSTATE, SQLite's result code) is one a
/// retry can outlive.
fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        // PostgreSQL: serialization failure, deadlock, statement timeout / query canceled,
        // lock not available, admin shutdown, crash shutdown, cannot connect now, too many
        // connections, out of memory ("out of shared memory": the lock table is full for
        // now), connection exceptions
        "40001" | "40P01" | "57014" | "55P03" | "57P01" | "57P02" | "57P03" | "53300" | "53200"
            | "08000" | "08003" | "08006" | "08001" | "08004"
            // SQLite: SQLITE_BUSY, SQLITE_LOCKED and their extended codes
            | "5" | "6" | "261" | "262" | "517" | "773"
    )
}

#[cfg(test)]
mod tests {
    use super::is_transient_code;

    #[test]
    fn a_full_lock_table_is_worth_a_retry_and_bad_input_is_not() {
        assert!(is_transient_code("53200"), "out of shared memory");
        assert!(is_transient_code("40P01"), "deadlock");
        assert!(!is_transient_code("22003"), "numeric value out of range");
        assert!(!is_transient_code("42P01"), "undefined table");
    }
}

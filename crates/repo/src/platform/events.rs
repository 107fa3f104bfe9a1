//! What snapline tells the platform, inside the transaction of the change it reports (so a
//! rolled-back change says nothing): `NOTIFY snapline_events` with a small JSON payload, and
//! an optional statement per event from configuration, run with the ids as bound parameters.
//! PostgreSQL only; off unless configured.

use crate::{Backend, Db, RepoError};
use sea_orm::{ConnectionTrait, Value};

/// The channel of snapline's notifications.
pub const EVENTS_CHANNEL: &str = "snapline_events";

/// What to emit (see the module documentation). The default emits nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventOptions {
    /// `NOTIFY snapline_events` for each event:
    /// `{"event":"me_file_bands_changed","me_file_id":42}` and
    /// `{"event":"target_populated","target_id":7}`.
    pub notify: bool,
    /// Run when me_files' bands changed, with `$1` the array (`bigint[]`) of their ids: one
    /// statement per transaction, whatever the number of me_files.
    pub me_file_bands_changed_sql: Option<String>,
    /// Run when a populate finished, with `$1` the target id (`bigint`).
    pub target_populated_sql: Option<String>,
}

impl EventOptions {
    pub fn is_off(&self) -> bool {
        !self.notify
            && self.me_file_bands_changed_sql.is_none()
            && self.target_populated_sql.is_none()
    }
}

/// Emits events on a connection or transaction of [`Db`].
pub struct EventRepo<'a, C = crate::PoolConn> {
    pub(crate) db: &'a Db,
    /// The pool, or the transaction of a [`crate::Tx`].
    pub(crate) conn: &'a C,
}

impl<C: ConnectionTrait> EventRepo<'_, C> {
    /// Reports that the bands of `me_files` changed, in `txn` (the transaction that changed
    /// them). Nothing when `me_files` is empty or events are off.
    pub async fn me_file_bands_changed(&self, me_files: &[i64]) -> Result<(), RepoError> {
        let options = self.db.event_options();
        if me_files.is_empty() || options.is_off() || self.db.backend() != Backend::Postgres {
            return Ok(());
        }
        self.tell(
            format!(
                "SELECT pg_notify('{EVENTS_CHANNEL}', \
                 '{{\"event\":\"me_file_bands_changed\",\"me_file_id\":' || m || '}}') \
                 FROM unnest($1::bigint[]) AS m"
            ),
            (
                "me_file_bands_changed_sql",
                &options.me_file_bands_changed_sql,
            ),
            vec![Value::from(me_files.to_vec())],
        )
        .await
    }

    /// Reports that a populate of `target` finished, in `txn` (the one setting `populated`).
    pub async fn target_populated(&self, target: i64) -> Result<(), RepoError> {
        let options = self.db.event_options();
        if options.is_off() || self.db.backend() != Backend::Postgres {
            return Ok(());
        }
        self.tell(
            format!(
                "SELECT pg_notify('{EVENTS_CHANNEL}', \
                 '{{\"event\":\"target_populated\",\"target_id\":' || $1::bigint || '}}')"
            ),
            ("target_populated_sql", &options.target_populated_sql),
            vec![Value::from(target)],
        )
        .await
    }

    /// Sends `notify` (a `SELECT pg_notify(...)` over `values`) when notifications are on,
    /// then runs the statement configured as `events.<setting>`, if any, with the same
    /// values: both in the transaction of the change.
    async fn tell(
        &self,
        notify: String,
        (setting, configured): (&'static str, &Option<String>),
        values: Vec<Value>,
    ) -> Result<(), RepoError> {
        if self.db.event_options().notify {
            self.db.execute(self.conn, notify, values.clone()).await?;
        }
        if let Some(sql) = configured {
            self.conn
                .execute_raw(self.db.statement(sql.clone(), values))
                .await
                .map_err(|err| configured_statement_failed(setting, err))?;
        }
        Ok(())
    }
}

/// A configured statement's failure, naming the setting (the change it reports rolls back
/// with it, and the job is retried).
fn configured_statement_failed(setting: &'static str, err: sea_orm::DbErr) -> RepoError {
    let err = RepoError::from(err);
    tracing::warn!(setting = %format!("events.{setting}"), error = %err, "the configured event statement failed; the change rolls back");
    err
}

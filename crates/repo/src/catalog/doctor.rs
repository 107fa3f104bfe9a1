//! What `snapctl doctor` reads from PostgreSQL's catalog and settings: the server's limits,
//! the indexes the jobs need, a role's rights, and whether the platform's own hourly backfill
//! still runs. Reads only.

use crate::{Db, RepoError};
use sea_orm::{FromQueryResult, Value};

/// The server settings the switch-over depends on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, FromQueryResult)]
pub struct ServerLimits {
    pub max_connections: i64,
    pub superuser_reserved_connections: i64,
    pub max_locks_per_transaction: i64,
    pub max_prepared_transactions: i64,
    /// As this session runs with it (snapline sets its own unless configured 0), ms.
    pub idle_in_transaction_session_timeout_ms: i64,
}

/// A right a role must or must not hold: (what, held).
pub type RoleRight = (String, bool);

#[derive(FromQueryResult)]
struct NameRow {
    name: String,
}

#[derive(FromQueryResult)]
struct HeldRow {
    what: String,
    held: bool,
}

/// Catalog reads for the preflight.
pub struct DoctorRepo<'a> {
    pub(crate) db: &'a Db,
}

impl DoctorRepo<'_> {
    pub async fn server_limits(&self) -> Result<ServerLimits, RepoError> {
        self.require_postgres()?;
        self.db
            .fetch_one(
                self.db.conn(),
                "server limits",
                "SELECT current_setting('max_connections')::bigint AS max_connections, \
                   current_setting('superuser_reserved_connections')::bigint AS superuser_reserved_connections, \
                   current_setting('max_locks_per_transaction')::bigint AS max_locks_per_transaction, \
                   current_setting('max_prepared_transactions')::bigint AS max_prepared_transactions, \
                   (SELECT setting::bigint FROM pg_settings \
                    WHERE name = 'idle_in_transaction_session_timeout') AS idle_in_transaction_session_timeout_ms",
                vec![],
            )
            .await
    }

    /// Those of `names` that no index of the current schema is called.
    pub async fn missing_indexes(&self, names: &[&str]) -> Result<Vec<String>, RepoError> {
        self.require_postgres()?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let rows: Vec<NameRow> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT n AS name FROM unnest($1::text[]) AS n \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_indexes i \
                                   WHERE i.schemaname = current_schema() AND i.indexname = n) \
                 ORDER BY 1",
                vec![Value::from(names)],
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.name).collect())
    }

    /// Whether `table` has a unique index (no predicate) whose key is exactly `columns`, in
    /// order, whatever its name (the platform's Ecto name or snapline's).
    pub async fn has_unique_index(&self, table: &str, columns: &[&str]) -> Result<bool, RepoError> {
        self.require_postgres()?;
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        let row: HeldRow = self
            .db
            .fetch_one(
                self.db.conn(),
                "unique index",
                "SELECT $1 AS what, EXISTS ( \
                   SELECT 1 FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid \
                   JOIN pg_namespace n ON n.oid = t.relnamespace \
                   WHERE n.nspname = current_schema() AND t.relname = $1 AND i.indisunique \
                     AND i.indpred IS NULL \
                     AND (SELECT array_agg(a.attname::text ORDER BY k.ord) \
                          FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
                          WHERE k.ord <= i.indnkeyatts) = $2::text[]) AS held",
                vec![Value::from(table), Value::from(columns)],
            )
            .await?;
        Ok(row.held)
    }

    /// Whether `role` holds each of `rights`, written `PRIVILEGE ON table` or `PRIVILEGE
    /// (column) ON table`; an unknown role is an error.
    pub async fn role_rights(
        &self,
        role: &str,
        rights: &[&str],
    ) -> Result<Vec<RoleRight>, RepoError> {
        self.require_postgres()?;
        let exists: Option<NameRow> = self
            .db
            .fetch_optional(
                self.db.conn(),
                "SELECT rolname::text AS name FROM pg_roles WHERE rolname = $1",
                vec![Value::from(role)],
            )
            .await?;
        if exists.is_none() {
            return Err(RepoError::Data {
                what: "role",
                detail: format!("no role named {role}"),
            });
        }
        let mut held = Vec::with_capacity(rights.len());
        for right in rights {
            let (privilege, table) = right.split_once(" ON ").unwrap_or((right, ""));
            let row: HeldRow = match privilege.split_once(" (") {
                Some((privilege, column)) => {
                    self.db
                        .fetch_one(
                            self.db.conn(),
                            "column privilege",
                            "SELECT $4 AS what, COALESCE(to_regclass($2) IS NOT NULL \
                               AND has_column_privilege($1, to_regclass($2), $3, $5), false) AS held",
                            vec![
                                Value::from(role),
                                Value::from(table),
                                Value::from(column.trim_end_matches(')')),
                                Value::from(right.to_string()),
                                Value::from(privilege),
                            ],
                        )
                        .await?
                }
                None => {
                    self.db
                        .fetch_one(
                            self.db.conn(),
                            "table privilege",
                            "SELECT $4 AS what, COALESCE(to_regclass($2) IS NOT NULL \
                               AND has_table_privilege($1, to_regclass($2), $3), false) AS held",
                            vec![
                                Value::from(role),
                                Value::from(table),
                                Value::from(privilege),
                                Value::from(right.to_string()),
                            ],
                        )
                        .await?
                }
            };
            held.push((row.what, row.held));
        }
        Ok(held)
    }

    /// Whether the current schema has Oban's `oban_jobs`.
    pub async fn has_oban_jobs(&self) -> Result<bool, RepoError> {
        self.require_postgres()?;
        Ok(
            crate::installed::bridge::oban_jobs_schema(self.db, self.db.conn())
                .await?
                .is_some(),
        )
    }

    /// Rows of `worker` inserted into Oban's `oban_jobs` in the last `hours` hours and not
    /// taken by the bridge (the platform's own workers ran or will run them); `None` when
    /// the database has no `oban_jobs`.
    pub async fn untaken_oban_jobs(
        &self,
        worker: &str,
        hours: u32,
    ) -> Result<Option<i64>, RepoError> {
        if !self.has_oban_jobs().await? {
            return Ok(None);
        }
        let row: crate::rows::Count = self
            .db
            .fetch_one(
                self.db.conn(),
                "untaken Oban jobs",
                "SELECT COUNT(*) AS count FROM oban_jobs WHERE worker = $1 \
                 AND inserted_at > timezone('UTC', now()) - make_interval(hours => $2) \
                 AND NOT (COALESCE(meta, '{}'::jsonb) ? 'snapline')",
                vec![Value::from(worker), Value::from(hours as i32)],
            )
            .await?;
        Ok(Some(row.count))
    }

    fn require_postgres(&self) -> Result<(), RepoError> {
        self.db.require_postgres(
            "snapctl doctor",
            "the switch-over it checks is the platform's PostgreSQL database",
        )
    }
}

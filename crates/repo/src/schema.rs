//! What the jobs need to know of the database's own schema.

use crate::{Backend, Db, RepoError};
use sea_orm::ConnectionTrait;
use std::collections::HashMap;

/// Reads of the catalog.
pub struct SchemaRepo<'a> {
    pub(crate) db: &'a Db,
}

impl SchemaRepo<'_> {
    /// The largest id `table.id` can hold: 2,147,483,647 where the column is `integer` (the
    /// platform's), `i64::MAX` where it is `bigint` (a schema snapline created) and on
    /// SQLite. Read from the catalog once per pool.
    pub async fn id_max(&self, table: &str) -> Result<i64, RepoError> {
        if let Some(limits) = self.db.id_limits.get() {
            return Ok(limits.get(table).copied().unwrap_or(i64::MAX));
        }
        let mut limits = HashMap::new();
        if self.db.backend() == Backend::Postgres {
            let rows = self
                .db
                .conn()
                .query_all_raw(self.db.statement(
                    "SELECT table_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND column_name = 'id'",
                    vec![],
                ))
                .await?;
            for row in rows {
                let table: String = row.try_get_by_index(0)?;
                let data_type: String = row.try_get_by_index(1)?;
                let max = match data_type.as_str() {
                    "integer" => i64::from(i32::MAX),
                    "smallint" => i64::from(i16::MAX),
                    _ => i64::MAX,
                };
                limits.insert(table, max);
            }
        }
        let max = limits.get(table).copied().unwrap_or(i64::MAX);
        let _ = self.db.id_limits.set(limits);
        Ok(max)
    }

    /// The columns of `table` an insert naming only `columns` cannot fill: NOT NULL, no
    /// default, not named (the platform's own columns, such as `traits.input_type`).
    /// PostgreSQL; on SQLite the tables are always snapline's and nothing is missing.
    pub async fn columns_needing_values(
        &self,
        table: &str,
        columns: &[&str],
    ) -> Result<Vec<String>, RepoError> {
        if self.db.backend() != Backend::Postgres {
            return Ok(Vec::new());
        }
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.statement(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 AND is_nullable = 'NO' AND column_default IS NULL ORDER BY ordinal_position",
                vec![table.into()],
            ))
            .await?;
        let mut missing = Vec::new();
        for row in rows {
            let column: String = row.try_get_by_index(0)?;
            if !columns.contains(&column.as_str()) {
                missing.push(column);
            }
        }
        Ok(missing)
    }

    /// PostgreSQL's `max_locks_per_transaction` and `max_connections` (the shared lock table
    /// has their product's slots); `None` on SQLite.
    pub async fn lock_table_settings(&self) -> Result<Option<(i64, i64)>, RepoError> {
        if self.db.backend() != Backend::Postgres {
            return Ok(None);
        }
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.statement(
                "SELECT current_setting('max_locks_per_transaction')::bigint, \
                 current_setting('max_connections')::bigint",
                vec![],
            ))
            .await?;
        row.map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
            .transpose()
    }
}

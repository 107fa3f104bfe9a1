//! What the jobs need to know of the database's own schema.

use crate::{Backend, Db, RepoError};
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
            let rows: Vec<IdColumnType> = self
                .db
                .fetch_all(
                    self.db.conn(),
                    "SELECT table_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND column_name = 'id'",
                    vec![],
                )
                .await?;
            for IdColumnType {
                table_name: table,
                data_type,
            } in rows
            {
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
        let rows: Vec<ColumnName> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 AND is_nullable = 'NO' AND column_default IS NULL ORDER BY ordinal_position",
                vec![table.into()],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| row.column_name)
            .filter(|column| !columns.contains(&column.as_str()))
            .collect())
    }

    /// PostgreSQL's `max_locks_per_transaction` and `max_connections` (the shared lock table
    /// has their product's slots); `None` on SQLite.
    pub async fn lock_table_settings(&self) -> Result<Option<(i64, i64)>, RepoError> {
        if self.db.backend() != Backend::Postgres {
            return Ok(None);
        }
        let row: LockTableSettings = self
            .db
            .fetch_one(
                self.db.conn(),
                "lock table settings",
                "SELECT current_setting('max_locks_per_transaction')::bigint AS locks, \
                 current_setting('max_connections')::bigint AS connections",
                vec![],
            )
            .await?;
        Ok(Some((row.locks, row.connections)))
    }
}

#[derive(sea_orm::FromQueryResult)]
struct IdColumnType {
    table_name: String,
    data_type: String,
}

#[derive(sea_orm::FromQueryResult)]
struct ColumnName {
    column_name: String,
}

#[derive(sea_orm::FromQueryResult)]
struct LockTableSettings {
    locks: i64,
    connections: i64,
}

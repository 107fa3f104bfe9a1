//! A populate's progress: when its run started (`snapline_populate_runs.started_at`), and per
//! chunk the rows it wrote and when it was done (`snapline_populate_chunks.rows_written`,
//! `done_at`), all Unix seconds; what `snapctl status` and the board's targets page estimate
//! the time left from. Columns of snapline's own tables; `down` drops them again.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (table, column, its type and default).
const COLUMNS: [(&str, &str, &str); 3] = [
    ("snapline_populate_runs", "started_at", "BIGINT"),
    (
        "snapline_populate_chunks",
        "rows_written",
        "BIGINT NOT NULL DEFAULT 0",
    ),
    ("snapline_populate_chunks", "done_at", "BIGINT"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column, definition) in COLUMNS {
            // SQLite has no ADD COLUMN IF NOT EXISTS: ask first (a rerun adds nothing).
            if !manager.has_column(table, column).await? {
                manager
                    .get_connection()
                    .execute_unprepared(&format!(
                        "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                    ))
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column, _) in COLUMNS {
            if manager.has_table(table).await? && manager.has_column(table, column).await? {
                let sql = match manager.get_database_backend() {
                    DbBackend::Postgres => {
                        format!("ALTER TABLE {table} DROP COLUMN IF EXISTS {column}")
                    }
                    _ => format!("ALTER TABLE {table} DROP COLUMN {column}"),
                };
                manager.get_connection().execute_unprepared(&sql).await?;
            }
        }
        Ok(())
    }
}

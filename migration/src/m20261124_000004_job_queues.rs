//! The apalis queue tables (schema `apalis` on PostgreSQL), created by apalis's own
//! migrations, so the release pipeline's `migration up` prepares everything the services
//! need and they never migrate in production.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseExecutor, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // apalis migrates through its own pool connection, outside any transaction.
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let DatabaseExecutor::Connection(conn) = manager.get_connection() else {
            return Err(DbErr::Migration(
                "the job queue migration must run outside a transaction".into(),
            ));
        };
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                apalis_postgres::PostgresStorage::setup(conn.get_postgres_connection_pool())
                    .await
                    .map_err(|e| DbErr::Migration(format!("apalis-postgres setup: {e}")))
            }
            _ => apalis_sqlite::SqliteStorage::setup(conn.get_sqlite_connection_pool())
                .await
                .map_err(|e| DbErr::Migration(format!("apalis-sqlite setup: {e}"))),
        }
    }

    /// Keeps the queue tables: they hold jobs (including failed ones kept for inspection),
    /// and apalis owns their schema. Drop schema `apalis` by hand to remove them.
    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

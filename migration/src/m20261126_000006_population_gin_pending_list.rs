//! A small pending list (64 kB, PostgreSQL's minimum, from the 4 MB default) for the GIN
//! index on `target_populations.matching_tags_snapshot`.
//!
//! With `fastupdate` (the default) new GIN entries go to a pending list, and the write that
//! fills it moves the whole list into the index before it commits. The syncer rewrites a
//! few snapshots per sync, so with 4 MB that move fell on one sync in a few thousand and
//! took it 200-360 ms; with 64 kB it comes sixty times as often and costs 20-40 ms, and the
//! syncer's p99 from push to commit went from 22-41 ms to 12-14 ms (docs/benchmarks.md).
//! The populator's bulk writes measured the same. `down` restores the server default.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "target_populations_matching_tags_snapshot_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(()); // no GIN index on SQLite
        }
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "ALTER INDEX IF EXISTS {INDEX} SET (gin_pending_list_limit = 64)"
            ))
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "ALTER INDEX IF EXISTS {INDEX} RESET (gin_pending_list_limit)"
            ))
            .await
            .map(|_| ())
    }
}

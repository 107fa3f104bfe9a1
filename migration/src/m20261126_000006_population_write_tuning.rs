//! Storage settings for `target_populations`, which the syncer rewrites a few rows at a time
//! all day (PostgreSQL only; `down` restores the server defaults).
//!
//! - A 64 kB pending list (PostgreSQL's minimum, from 4 MB) for the GIN index on its
//!   snapshots. New GIN entries go to the pending list, and the write that fills it moves the
//!   whole list into the index before it commits: with 4 MB that fell on one sync in a few
//!   thousand and took it 200-380 ms; with 64 kB it comes sixty times as often and costs
//!   20-40 ms. The populator's bulk writes measured the same with either.
//! - Autovacuum after 2% of the rows changed, not 20%. No snapshot rewrite can be a HOT
//!   update (the snapshot is indexed), so each leaves a dead row version and dead index
//!   entries that every later read of the me_file's rows walks; at 20% of 28M rows, 5.5M of
//!   them pile up between vacuums. With 1.6M the syncer's throughput had fallen from about
//!   1,200 to 835 syncs/s; a vacuum brought it back.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "ALTER INDEX IF EXISTS target_populations_matching_tags_snapshot_idx \
     SET (gin_pending_list_limit = 64)",
    "ALTER TABLE target_populations SET (autovacuum_vacuum_scale_factor = 0.02)",
];

const DOWN: &[&str] = &[
    "ALTER INDEX IF EXISTS target_populations_matching_tags_snapshot_idx \
     RESET (gin_pending_list_limit)",
    "ALTER TABLE target_populations RESET (autovacuum_vacuum_scale_factor)",
];

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(()); // SQLite has neither setting
    }
    for sql in statements {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, DOWN).await
    }
}

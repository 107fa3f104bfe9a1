//! `snapline_populate_failures`: the targets whose last populate failed for good, when and
//! why. snapline leaves such a target `not_populated` (the only statuses it writes are the
//! platform's own, which knows no other), so the failure is kept here, for `snapctl status`,
//! the board and the `snapline_populate_failures` gauge, until a populate of it succeeds.

use crate::ledger::{self, IndexBuild, SchemaObject, TableSpec};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn objects() -> Vec<SchemaObject> {
    vec![SchemaObject::Table(TableSpec {
        name: "snapline_populate_failures",
        create_sql: "CREATE TABLE IF NOT EXISTS snapline_populate_failures \
                     (target_id BIGINT PRIMARY KEY, failed_at BIGINT NOT NULL, error TEXT NOT NULL)"
            .into(),
    })]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::up(manager, &objects(), IndexBuild::Plain).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::down(manager, &objects()).await
    }
}

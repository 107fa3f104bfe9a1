//! `snapline_populate_runs`: how many populates of each target have started. A populate
//! counts itself before it sets the target `populating`; a sync reads the count with the
//! targets in its scope, so band metadata it cached before a populate began is never used
//! after (a target's own `last_populated_at` is `timestamp(0)` on the platform: two
//! populates in one second would look the same).

use crate::ledger::{self, IndexBuild, SchemaObject, TableSpec};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn objects() -> Vec<SchemaObject> {
    vec![SchemaObject::Table(TableSpec {
        name: "snapline_populate_runs",
        create_sql: "CREATE TABLE IF NOT EXISTS snapline_populate_runs \
                     (target_id BIGINT PRIMARY KEY, started BIGINT NOT NULL)"
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

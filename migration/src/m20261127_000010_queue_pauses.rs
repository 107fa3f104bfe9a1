//! `snapline_queue_pauses`: the queues an operator paused (`snapctl queues pause Q`). Every
//! replica reads it about once a second and stops fetching from a queue listed here (the jobs
//! it runs finish); pushes still land. `snapctl queues resume Q` deletes the row.

use crate::ledger::{self, IndexBuild, SchemaObject, TableSpec};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn objects() -> Vec<SchemaObject> {
    vec![SchemaObject::Table(TableSpec {
        name: "snapline_queue_pauses",
        create_sql: "CREATE TABLE IF NOT EXISTS snapline_queue_pauses \
                     (queue VARCHAR(64) NOT NULL PRIMARY KEY, \
                     paused_at BIGINT NOT NULL)"
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

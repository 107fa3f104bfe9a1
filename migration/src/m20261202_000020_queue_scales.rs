//! `snapline_queue_scales`: the workers per replica an operator set for a queue
//! (`snapctl queues scale Q N`, or the board), over the configured `queues.<name>.concurrency`.
//! Every serving replica reads it about once a second and starts or stops workers to match;
//! `snapctl queues scale Q --configured` deletes the row, and the configured value applies
//! again. A restart keeps what is set here.

use crate::ledger::{self, IndexBuild, SchemaObject, TableSpec};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn objects() -> Vec<SchemaObject> {
    vec![SchemaObject::Table(TableSpec {
        name: "snapline_queue_scales",
        create_sql: "CREATE TABLE IF NOT EXISTS snapline_queue_scales \
                     (queue VARCHAR(64) NOT NULL PRIMARY KEY, \
                     workers INTEGER NOT NULL CHECK (workers > 0), \
                     set_at BIGINT NOT NULL)"
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

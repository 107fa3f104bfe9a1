//! `snapline_capture_outbox`: the me_files change capture's triggers write in the platform's
//! transactions (one narrow row per me_file and statement: no index, so a writer pays for
//! nothing but the row), drained by the syncers into `sync_me_file` jobs. A table of its
//! own, not installed by `capture enable`, so that `capture disable` or an upgrade never
//! drops changes not yet drained.

use crate::ledger::{self, IndexBuild, SchemaObject, TableSpec};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn objects() -> Vec<SchemaObject> {
    vec![SchemaObject::Table(TableSpec {
        name: "snapline_capture_outbox",
        create_sql:
            "CREATE TABLE IF NOT EXISTS snapline_capture_outbox (me_file_id BIGINT NOT NULL)".into(),
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

//! `snapline_audits`: the last audit of the whole database (`snapctl audit` without a
//! scope, or the scheduled sampled audit), one row per kind of run: when, which replica,
//! how much drift, and the report with its examples, for the board and the
//! `snapline_drift_rows` gauges every replica reports alike.

use crate::ledger::{self, IndexBuild, SchemaObject, TableSpec};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn objects() -> Vec<SchemaObject> {
    vec![SchemaObject::Table(TableSpec {
        name: "snapline_audits",
        create_sql: "CREATE TABLE IF NOT EXISTS snapline_audits \
                     (run TEXT PRIMARY KEY, finished_at BIGINT NOT NULL, ran_by TEXT NOT NULL, \
                      drift BIGINT NOT NULL, report TEXT NOT NULL)"
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

//! `snapline_leases`: named, expiring locks that keep two runs of the same job (two
//! populates of one target, two backfills) from working at once, across processes and on
//! both backends. An expired lease (its holder crashed) can be taken over.

use crate::ledger::{self, IndexBuild, SchemaObject, TableSpec};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn objects() -> Vec<SchemaObject> {
    vec![SchemaObject::Table(TableSpec {
        name: "snapline_leases",
        // expires_at: seconds since the Unix epoch, by the database's clock
        create_sql: "CREATE TABLE IF NOT EXISTS snapline_leases (name TEXT PRIMARY KEY, \
                     owner TEXT NOT NULL, expires_at BIGINT NOT NULL)"
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

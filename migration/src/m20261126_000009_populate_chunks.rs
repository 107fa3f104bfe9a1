//! `snapline_populate_chunks`: the me_file ranges one populate run was split into, and which
//! of them have committed. Any populator replica takes a chunk from the queue; the chunk that
//! finds every other chunk of its run done (under a lock on the run's row of
//! `snapline_populate_runs`) sets the target `populated`. `run` is the target's
//! `snapline_populate_runs.started` when the run began, so a chunk of an older run can never
//! finish a newer one.

use crate::ledger::{self, IndexBuild, SchemaObject, TableSpec};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn objects() -> Vec<SchemaObject> {
    vec![SchemaObject::Table(TableSpec {
        name: "snapline_populate_chunks",
        create_sql: "CREATE TABLE IF NOT EXISTS snapline_populate_chunks \
                     (target_id BIGINT NOT NULL, run BIGINT NOT NULL, \
                     after_me_file BIGINT NOT NULL, up_to_me_file BIGINT NOT NULL, \
                     done BOOLEAN NOT NULL DEFAULT FALSE, \
                     PRIMARY KEY (target_id, run, after_me_file))"
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

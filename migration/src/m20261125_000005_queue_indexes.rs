//! Indexes on apalis's job tables for the two queries whose cost otherwise grows with the
//! table: the "is a job for this payload already waiting?" check behind every deduplicated
//! push (the platform's plain-SQL push and `push_unless_waiting`), and apalis's periodic
//! search for jobs held by dead workers, which otherwise visits every finished job those
//! workers ever ran (finished jobs keep `lock_by` until pruned).

use crate::ledger::{self, Kind, SchemaObject};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn objects(backend: DbBackend) -> Vec<SchemaObject> {
    match backend {
        DbBackend::Postgres => vec![
            // Hash, not B-tree: a payload of any size can be indexed (a B-tree entry is
            // limited to about 2.7 kB, and a too-large payload must still be accepted and
            // then fail as malformed). The query's `job = convert_to($2, 'UTF8')` uses it.
            SchemaObject {
                kind: Kind::Index,
                name: "apalis.jobs_waiting_payload_idx",
                create_sql: "CREATE INDEX IF NOT EXISTS jobs_waiting_payload_idx \
                             ON apalis.jobs USING hash (job) WHERE status = 'Pending'"
                    .into(),
            },
            // Same predicate as apalis's query, so the planner can prove it.
            SchemaObject {
                kind: Kind::Index,
                name: "apalis.jobs_held_lock_by_idx",
                create_sql: "CREATE INDEX IF NOT EXISTS jobs_held_lock_by_idx \
                             ON apalis.jobs (lock_by) WHERE status = 'Running' OR status = 'Queued'"
                    .into(),
            },
        ],
        _ => vec![SchemaObject {
            kind: Kind::Index,
            name: "Jobs_waiting_payload_idx",
            create_sql: "CREATE INDEX IF NOT EXISTS Jobs_waiting_payload_idx \
                         ON Jobs (job_type, CAST(job AS TEXT)) WHERE status = 'Pending'"
                .into(),
        }],
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::ensure_ledger(manager).await?;
        ledger::create_missing(manager, &objects(manager.get_database_backend())).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::ensure_ledger(manager).await?;
        ledger::drop_created(manager, &objects(manager.get_database_backend())).await
    }
}

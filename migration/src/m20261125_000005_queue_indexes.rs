//! Indexes on apalis's job tables for the two queries whose cost otherwise grows with the
//! table: the "is a job for this payload already waiting?" check behind every deduplicated
//! push (the platform's plain-SQL push and `push_unless_waiting`), and apalis's periodic
//! search for jobs held by dead workers, which otherwise visits every finished job those
//! workers ever ran (finished jobs keep `lock_by` until pruned).

use crate::ledger::{self, IndexBuild, IndexSpec, Method, SchemaObject};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn objects(backend: DbBackend) -> Vec<SchemaObject> {
    let specs = match backend {
        DbBackend::Postgres => vec![
            // Hash, not B-tree: a payload of any size can be indexed (a B-tree entry is
            // limited to about 2.7 kB, and a too-large payload must still be accepted and
            // then fail as malformed). The query's `job = convert_to($2, 'UTF8')` uses it.
            IndexSpec::btree("jobs_waiting_payload_idx", "apalis.jobs", &["job"])
                .method(Method::Hash)
                .predicate("status = 'Pending'"),
            // Same predicate as apalis's query, so the planner can prove it.
            IndexSpec::btree("jobs_held_lock_by_idx", "apalis.jobs", &["lock_by"])
                .predicate("status = 'Running' OR status = 'Queued'"),
        ],
        _ => vec![
            IndexSpec::btree(
                "Jobs_waiting_payload_idx",
                "Jobs",
                &["job_type", "CAST(job AS TEXT)"],
            )
            .predicate("status = 'Pending'"),
        ],
    };
    specs.into_iter().map(SchemaObject::Index).collect()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::up(
            manager,
            &objects(manager.get_database_backend()),
            IndexBuild::Plain,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::down(manager, &objects(manager.get_database_backend())).await
    }
}

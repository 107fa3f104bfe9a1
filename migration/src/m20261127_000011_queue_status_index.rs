//! An index on apalis's job tables by queue, status and last activity
//! (`COALESCE(done_at, lock_at, run_at)`: when it finished, else started, else became due),
//! so that what `snapctl status`, `snapctl queues`, `/metrics` and the board count or look
//! up per queue and status reads a bounded range of it: a capped count of one status, the
//! oldest waiting job, the jobs done in the last hour. Without it each of those read every
//! row of the queue, which a week of retention at 200 syncs a second makes about 120 million.

use crate::ledger::{self, IndexBuild, IndexSpec, SchemaObject};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn objects(backend: DbBackend) -> Vec<SchemaObject> {
    let spec = match backend {
        DbBackend::Postgres => IndexSpec::btree(
            "jobs_queue_status_activity_idx",
            "apalis.jobs",
            &["job_type", "status", "COALESCE(done_at, lock_at, run_at)"],
        ),
        _ => IndexSpec::btree(
            "Jobs_queue_status_activity_idx",
            "Jobs",
            &["job_type", "status", "COALESCE(done_at, lock_at, run_at)"],
        ),
    };
    vec![SchemaObject::Index(spec)]
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

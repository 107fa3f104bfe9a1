//! snapline's schema: the platform tables (DESIGN section 1) and the indexes the jobs need,
//! on PostgreSQL and SQLite.
//!
//! The platform's database already holds these tables, so every object is created only when
//! missing, and a ledger table (`snapline_schema_objects`) records which objects snapline
//! itself created. `down` drops only those: rolling back never drops a platform table or an
//! index that existed before snapline. This crate must never touch data rows.

mod ledger;
mod m20261124_000001_platform_tables;
mod m20261124_000002_snapshot_indexes;
mod m20261124_000003_job_leases;
mod m20261124_000004_job_queues;
mod m20261125_000005_queue_indexes;
mod m20261126_000006_population_write_tuning;

pub use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_platform_tables::Migration),
            Box::new(m20261124_000002_snapshot_indexes::Migration),
            Box::new(m20261124_000003_job_leases::Migration),
            Box::new(m20261124_000004_job_queues::Migration),
            Box::new(m20261125_000005_queue_indexes::Migration),
            Box::new(m20261126_000006_population_write_tuning::Migration),
        ]
    }
}

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
mod m20261126_000007_populate_runs;
mod m20261126_000008_capture_teardown;
mod m20261126_000009_populate_chunks;
mod m20261127_000010_queue_pauses;
mod m20261127_000011_queue_status_index;
mod m20261127_000012_covering_tag_index;
mod m20261202_000013_bridge_teardown;
mod m20261202_000014_populate_failures;
mod m20261202_000015_audits;
mod m20261202_000016_capture_outbox;
mod m20261202_000017_paused_queue_gate;
mod m20261202_000018_populate_progress;
mod m20261202_000019_queue_history;
mod m20261202_000020_queue_scales;

pub use m20261126_000008_capture_teardown::drop_capture_sql;
pub use m20261202_000013_bridge_teardown::drop_bridge_sql;

pub use ledger::CONCURRENTLY_VAR;
pub use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseConnection, DbBackend, Statement};

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
            Box::new(m20261126_000007_populate_runs::Migration),
            Box::new(m20261126_000008_capture_teardown::Migration),
            Box::new(m20261126_000009_populate_chunks::Migration),
            Box::new(m20261127_000010_queue_pauses::Migration),
            Box::new(m20261127_000011_queue_status_index::Migration),
            Box::new(m20261127_000012_covering_tag_index::Migration),
            Box::new(m20261202_000013_bridge_teardown::Migration),
            Box::new(m20261202_000014_populate_failures::Migration),
            Box::new(m20261202_000015_audits::Migration),
            Box::new(m20261202_000016_capture_outbox::Migration),
            Box::new(m20261202_000017_paused_queue_gate::Migration),
            Box::new(m20261202_000018_populate_progress::Migration),
            Box::new(m20261202_000019_queue_history::Migration),
            Box::new(m20261202_000020_queue_scales::Migration),
        ]
    }
}

/// Tables of the database's schema that snapline did not create: neither recorded in its
/// ledger nor its own bookkeeping or queue tables. `migration fresh` would drop them.
pub async fn tables_not_created_by_snapline(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let backend = db.get_database_backend();
    let list = match backend {
        DbBackend::Postgres => {
            "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        }
        _ => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1"
        }
    };
    let tables = db
        .query_all_raw(Statement::from_string(backend, list))
        .await?;
    let created = ledger::recorded_tables(db).await?;
    // snapline's bookkeeping, and apalis-sqlite's queue tables (its own migrations make them)
    const OWN: [&str; 6] = [
        "seaql_migrations",
        "snapline_schema_objects",
        "snapline_schema_settings",
        "Jobs",
        "Workers",
        "_sqlx_migrations",
    ];
    let mut foreign = Vec::new();
    for row in tables {
        let name: String = row.try_get("", "name")?;
        if !OWN.contains(&name.as_str()) && !created.contains(&name) {
            foreign.push(name);
        }
    }
    Ok(foreign)
}

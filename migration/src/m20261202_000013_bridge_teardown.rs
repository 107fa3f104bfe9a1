//! The bridge (`snapctl bridge enable`) is opt-in and installed outside migrations; this step
//! exists so that rolling snapline back (`migration down`) also removes it, giving the
//! platform's Oban workers their jobs back: its down drops every `snapline_bridge_v*`
//! trigger and function, of any version. Its up does nothing.

use crate::m20261126_000008_capture_teardown::drop_installed_sql;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Drops every `snapline_bridge_v*` trigger and function of the current schema.
pub fn drop_bridge_sql() -> String {
    drop_installed_sql("snapline\\_bridge\\_v%")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        if conn.get_database_backend() == DbBackend::Postgres {
            conn.execute_unprepared(&drop_bridge_sql()).await?;
        }
        Ok(())
    }
}

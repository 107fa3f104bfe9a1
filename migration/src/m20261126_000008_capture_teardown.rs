//! Change capture (`snapctl capture enable`) is opt-in and installed outside migrations; this
//! step exists so that rolling snapline back (`migration down`) also removes it: its down
//! drops every `snapline_capture_v*` trigger and function, of any version. Its up does
//! nothing. (The migration crate stands alone, so the drop is written here in SQL.)

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Drops every trigger and function of the current schema whose name matches `like` (a
/// LIKE pattern, `_` escaped): what snapline installed outside migrations.
pub fn drop_installed_sql(like: &str) -> String {
    format!(
        r#"
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT t.tgname, c.relname FROM pg_catalog.pg_trigger t
           JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE NOT t.tgisinternal AND n.nspname = pg_catalog.current_schema()
             AND t.tgname LIKE '{like}'
  LOOP
    EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %I', r.tgname, r.relname);
  END LOOP;
  FOR r IN SELECT p.oid::pg_catalog.regprocedure AS signature FROM pg_catalog.pg_proc p
           JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = pg_catalog.current_schema() AND p.proname LIKE '{like}'
  LOOP
    EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS %s', r.signature);
  END LOOP;
END
$$"#
    )
}

/// Drops every `snapline_capture_v*` trigger and function of the current schema.
pub fn drop_capture_sql() -> String {
    drop_installed_sql("snapline\\_capture\\_v%")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        if conn.get_database_backend() == DbBackend::Postgres {
            conn.execute_unprepared(&drop_capture_sql()).await?;
        }
        Ok(())
    }
}

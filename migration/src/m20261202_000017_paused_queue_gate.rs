//! A paused queue is fetched by no worker, enforced by the queue table itself: a trigger on
//! apalis's job table skips (leaves as it was, and out of the fetch's result) every row a
//! fetch would take (`Pending` or `Failed` to `Queued` or `Running`) while its queue has a row
//! in `snapline_queue_pauses`. The workers of a paused queue keep running and find nothing,
//! so a pause needs no worker to stop, and no fetch is ever left half done by one (a stopping
//! apalis worker stops polling a fetch in flight until its running jobs end: on SQLite that
//! fetch's open transaction held the database's write lock those jobs were waiting for).
//!
//! The PostgreSQL function runs as its caller (no `SECURITY DEFINER`: it lends no rights),
//! with `search_path = pg_catalog, pg_temp` and the pause table named with its schema.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The trigger's name on both backends (and the PostgreSQL function's).
const GATE: &str = "snapline_paused_queue_gate";

/// The rows a fetch takes: waiting (`Pending`, or `Failed` with attempts left) before,
/// taken (`Queued`, or `Running` as PostgreSQL's `get_jobs` marks them) after. Retries,
/// kills and re-enqueues by an operator or apalis set other states and pass.
const TAKEN: &str = "OLD.status IN ('Pending', 'Failed') AND NEW.status IN ('Queued', 'Running')";

fn postgres_up() -> String {
    // The function names the pause table with the schema the migration runs in (the
    // platform's), computed here rather than read from the caller's search_path.
    format!(
        "DO $do$ BEGIN EXECUTE format($create$
            CREATE OR REPLACE FUNCTION %1$I.{GATE}() RETURNS trigger
            LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
            BEGIN
                IF EXISTS (SELECT 1 FROM %1$I.snapline_queue_pauses WHERE queue = NEW.job_type) THEN
                    RETURN NULL;
                END IF;
                RETURN NEW;
            END $body$;
            REVOKE ALL ON FUNCTION %1$I.{GATE}() FROM PUBLIC;
            DROP TRIGGER IF EXISTS {GATE} ON apalis.jobs;
            CREATE TRIGGER {GATE} BEFORE UPDATE OF status ON apalis.jobs FOR EACH ROW
                WHEN ({TAKEN}) EXECUTE FUNCTION %1$I.{GATE}();
        $create$, current_schema()); END $do$"
    )
}

fn postgres_down() -> String {
    format!(
        "DROP TRIGGER IF EXISTS {GATE} ON apalis.jobs; \
         DO $do$ BEGIN EXECUTE format('DROP FUNCTION IF EXISTS %I.{GATE}()', current_schema()); END $do$"
    )
}

fn sqlite_up() -> String {
    format!(
        "CREATE TRIGGER IF NOT EXISTS {GATE} BEFORE UPDATE OF status ON Jobs \
         WHEN {TAKEN} AND EXISTS (SELECT 1 FROM snapline_queue_pauses WHERE queue = NEW.job_type) \
         BEGIN SELECT RAISE(IGNORE); END"
    )
}

fn sqlite_down() -> String {
    format!("DROP TRIGGER IF EXISTS {GATE}")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => postgres_up(),
            _ => sqlite_up(),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => postgres_down(),
            _ => sqlite_down(),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }
}

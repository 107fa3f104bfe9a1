//! What the queue table forgets: every attempt of a job that did not end it done, and the
//! jobs done and failed per minute.
//!
//! apalis keeps one row per job and overwrites its result at each attempt, so a job that
//! failed twice and then succeeded shows only the success. A trigger on apalis's job table
//! (`snapline_job_attempt_log`, `AFTER UPDATE OF status`) writes a row to
//! `snapline_job_attempts` each time a job's status becomes `Failed` or `Killed` (a failed
//! attempt, an aborted job, an operator's kill) or a taken job is handed back to `Pending`
//! (its worker died): the job, its attempt, the worker, when, and the result apalis stored.
//! A successful attempt ends the job and stays in the job's own row. Only those transitions
//! fire it, so a job that succeeds first time costs nothing.
//!
//! `snapline_queue_minutes` holds, per queue and minute (Unix seconds of the minute's start),
//! the jobs done and the attempts failed in it and the oldest waiting job's age when it was
//! rolled up: what the board's charts draw. The serving processes roll each minute up once it
//! has closed (`QueueHistoryRepo::roll_up`), reading one minute of the `(job_type, status,
//! last activity)` index of migration 11 and of the attempts' `(queue, finished_at)` index.
//!
//! The PostgreSQL function runs as its caller (no `SECURITY DEFINER`: it lends no rights),
//! with `search_path = pg_catalog, pg_temp` and the attempts table named with its schema; the
//! roles that update apalis's jobs (the services, operators) need INSERT on the attempts table
//! (deploy/postgres/grants.sql).

use crate::ledger::{self, IndexBuild, IndexSpec, SchemaObject, TableSpec};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The trigger's name on both backends (and the PostgreSQL function's).
const LOG: &str = "snapline_job_attempt_log";

/// The transitions that end an attempt without ending the job done: a failure or a kill
/// (from any other state), or a taken job given back as `Pending` (its worker died).
const ENDED: &str = "OLD.status IS DISTINCT FROM NEW.status \
    AND (NEW.status IN ('Failed', 'Killed') \
         OR (NEW.status = 'Pending' AND OLD.status IN ('Queued', 'Running')))";

fn objects() -> Vec<SchemaObject> {
    vec![
        SchemaObject::Table(TableSpec {
            name: "snapline_job_attempts",
            create_sql: "CREATE TABLE IF NOT EXISTS snapline_job_attempts \
                         (job_id VARCHAR(64) NOT NULL, \
                         queue VARCHAR(64) NOT NULL, \
                         attempt INTEGER NOT NULL, \
                         status VARCHAR(16) NOT NULL, \
                         worker TEXT, \
                         finished_at BIGINT NOT NULL, \
                         result TEXT)"
                .into(),
        }),
        SchemaObject::Index(IndexSpec::btree(
            "snapline_job_attempts_job_idx",
            "snapline_job_attempts",
            &["job_id"],
        )),
        SchemaObject::Index(IndexSpec::btree(
            "snapline_job_attempts_queue_time_idx",
            "snapline_job_attempts",
            &["queue", "finished_at"],
        )),
        SchemaObject::Table(TableSpec {
            name: "snapline_queue_minutes",
            create_sql: "CREATE TABLE IF NOT EXISTS snapline_queue_minutes \
                         (queue VARCHAR(64) NOT NULL, \
                         minute BIGINT NOT NULL, \
                         done BIGINT NOT NULL, \
                         failed BIGINT NOT NULL, \
                         oldest_waiting_secs DOUBLE PRECISION, \
                         PRIMARY KEY (queue, minute))"
                .into(),
        }),
    ]
}

fn postgres_up() -> String {
    format!(
        "DO $do$ BEGIN EXECUTE format($create$
            CREATE OR REPLACE FUNCTION %1$I.{LOG}() RETURNS trigger
            LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
            BEGIN
                INSERT INTO %1$I.snapline_job_attempts
                    (job_id, queue, attempt, status, worker, finished_at, result)
                VALUES (NEW.id, NEW.job_type, NEW.attempts, NEW.status,
                        COALESCE(NEW.lock_by, OLD.lock_by),
                        EXTRACT(EPOCH FROM now())::bigint, NEW.last_result::text);
                RETURN NULL;
            END $body$;
            REVOKE ALL ON FUNCTION %1$I.{LOG}() FROM PUBLIC;
            DROP TRIGGER IF EXISTS {LOG} ON apalis.jobs;
            CREATE TRIGGER {LOG} AFTER UPDATE OF status ON apalis.jobs FOR EACH ROW
                WHEN ({ENDED}) EXECUTE FUNCTION %1$I.{LOG}();
        $create$, current_schema()); END $do$"
    )
}

fn postgres_down() -> String {
    format!(
        "DROP TRIGGER IF EXISTS {LOG} ON apalis.jobs; \
         DO $do$ BEGIN EXECUTE format('DROP FUNCTION IF EXISTS %I.{LOG}()', current_schema()); END $do$"
    )
}

fn sqlite_up() -> String {
    format!(
        "CREATE TRIGGER IF NOT EXISTS {LOG} AFTER UPDATE OF status ON Jobs WHEN {ENDED} \
         BEGIN INSERT INTO snapline_job_attempts \
             (job_id, queue, attempt, status, worker, finished_at, result) \
         VALUES (NEW.id, NEW.job_type, NEW.attempts, NEW.status, \
                 COALESCE(NEW.lock_by, OLD.lock_by), CAST(strftime('%s', 'now') AS INTEGER), \
                 NEW.last_result); END"
    )
}

fn sqlite_down() -> String {
    format!("DROP TRIGGER IF EXISTS {LOG}")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::up(manager, &objects(), IndexBuild::Plain).await?;
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
        ledger::down(manager, &objects()).await
    }
}

//! The bridge (PostgreSQL, opt-in): the platform's own Oban jobs for the workers snapline
//! replaces are taken over in the transaction that inserts them. A `BEFORE INSERT` trigger on
//! Oban's `oban_jobs` pushes snapline's job (with the usual de-duplication: a waiting job of
//! the same payload absorbs it) and stores the platform's row already `completed`, with
//! `meta.snapline` naming the queue and job that took it, so Oban never runs it and the
//! platform's `INSERT ... RETURNING` still returns its row.
//!
//! - a `populate_target` worker's `{"target_id": N}`: `populate_target` `{"target_id":N}`,
//!   the target marked `populating` (the platform's caller did so already);
//! - a `sync_me_file` worker's `{"me_file_id": N, ...}`: `sync_me_file` `{"me_file_id":N}`
//!   (`deleted_trait_ids` is not needed: the current tags are read), the payload capture
//!   pushes, so a tag write with both on gives one job;
//! - a `backfill` worker's `{"band_id": N}`: a band backfill; its `{}`: taken, nothing pushed,
//!   as snapline's own hourly backfill covers it (`meta.snapline.covered_by`).
//!
//! Rows of other workers, rows inserted in another state, and rows whose id is not an integer
//! are left to Oban (the last with a warning in the server's log). The worker -> queue map is
//! written into the trigger function at `enable` (settings `bridge.workers`).
//!
//! As capture: only the trigger function runs as its owner (`SECURITY DEFINER`), every
//! function has `search_path = pg_catalog, pg_temp` and names every relation with its
//! schema, and EXECUTE on all of them is revoked from PUBLIC. Objects are named
//! `snapline_bridge_v<N>_...`; `disable` (and `migration down`) drops every version's.

use crate::installed::capture::{
    SAFE_SEARCH_PATH, quote_ident, quote_literal, revoke_from_public_sql, version_of,
    waiting_job_function_sql,
};
use crate::{Db, RepoError};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};
use std::collections::BTreeMap;

/// The version of the bridge this build installs.
pub const BRIDGE_VERSION: u32 = 1;

/// The prefix of every bridge object of any version.
const PREFIX: &str = "snapline_bridge_v";

/// The bridge as installed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BridgeState {
    /// The version of the installed trigger, `None` when the bridge is off.
    pub version: Option<u32>,
    /// Worker -> queue, as the installed trigger maps them.
    pub workers: BTreeMap<String, String>,
    /// Rows of `oban_jobs` the bridge took, by worker (those Oban's pruner has not deleted).
    pub taken: BTreeMap<String, i64>,
}

/// Installs, reads and removes the bridge.
pub struct BridgeRepo<'a> {
    pub(crate) db: &'a Db,
}

/// The SQL `enable` runs in `schema` for `workers`.
fn install_sql(schema: &str, workers: &BTreeMap<String, String>) -> String {
    let v = BRIDGE_VERSION;
    let s = quote_ident(schema);
    let cases: String = workers
        .iter()
        .map(|(worker, queue)| {
            format!(
                " WHEN {} THEN {}",
                quote_literal(worker),
                quote_literal(queue)
            )
        })
        .collect();
    let map = quote_literal(&serde_json::to_string(workers).unwrap_or_default());
    format!(
        r#"
{waiting_function}
CREATE OR REPLACE FUNCTION {s}.snapline_bridge_v{v}_take() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER {SAFE_SEARCH_PATH} AS $f$
DECLARE
  queue text;
  id_value jsonb;
  payload bytea;
  job_id text;
  taken jsonb;
BEGIN
  queue := CASE NEW.worker{cases} ELSE NULL END;
  IF queue IS NULL OR NEW.state::text NOT IN ('available', 'scheduled') THEN
    RETURN NEW;
  END IF;
  id_value := NEW.args -> (CASE queue WHEN 'populate_target' THEN 'target_id'
                                      WHEN 'sync_me_file' THEN 'me_file_id'
                                      ELSE 'band_id' END);
  IF queue = 'backfill' AND id_value IS NULL THEN
    -- The hourly backfill of everything: snapline's own hourly backfill covers it.
    taken := jsonb_build_object('queue', 'backfill', 'covered_by', 'the hourly backfill');
  ELSIF id_value IS NULL OR jsonb_typeof(id_value) <> 'number'
        OR id_value::text !~ '^[0-9]{{1,18}}$' THEN
    RAISE WARNING 'snapline bridge: % job with args % left to Oban: no integer id',
      NEW.worker, NEW.args;
    RETURN NEW;
  ELSE
    payload := convert_to(CASE queue WHEN 'populate_target' THEN '{{"target_id":'
                                     WHEN 'sync_me_file' THEN '{{"me_file_id":'
                                     ELSE '{{"band_id":' END || id_value::text || '}}', 'UTF8');
    IF queue = 'populate_target' THEN
      UPDATE {s}.targets SET population_status = 'populating'
      WHERE id = id_value::text::bigint AND population_status IS DISTINCT FROM 'populating';
    END IF;
    job_id := {s}.snapline_bridge_v{v}_waiting(queue, payload);
    IF job_id IS NULL THEN
      INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority)
      VALUES (apalis.generate_ulid(), queue, payload, 'Pending', 0, 5, now(), 0)
      RETURNING id INTO job_id;
    END IF;
    taken := jsonb_build_object('queue', queue, 'job_id', job_id);
  END IF;
  NEW.meta := COALESCE(NEW.meta, '{{}}'::jsonb) || jsonb_build_object('snapline', taken);
  NEW.state := 'completed';
  NEW.completed_at := timezone('UTC', now());
  RETURN NEW;
END
$f$;
COMMENT ON FUNCTION {s}.snapline_bridge_v{v}_take() IS {map};

DROP TRIGGER IF EXISTS snapline_bridge_v{v}_take ON {s}.oban_jobs;
CREATE TRIGGER snapline_bridge_v{v}_take BEFORE INSERT ON {s}.oban_jobs
  FOR EACH ROW EXECUTE FUNCTION {s}.snapline_bridge_v{v}_take();
{revoke}
"#,
        waiting_function = waiting_job_function_sql(&format!("{s}.snapline_bridge_v{v}_waiting")),
        revoke = revoke_from_public_sql(schema, &format!("{PREFIX}{v}")),
    )
}

#[derive(FromQueryResult)]
struct SchemaRow {
    name: Option<String>,
}

#[derive(FromQueryResult)]
struct InstalledRow {
    name: String,
    workers: Option<String>,
}

#[derive(FromQueryResult)]
struct TakenRow {
    worker: String,
    taken: i64,
}

/// The current schema when it holds Oban's `oban_jobs` (where the bridge installs and the
/// preflight looks), `None` otherwise.
pub(crate) async fn oban_jobs_schema<C: ConnectionTrait>(
    db: &Db,
    conn: &C,
) -> Result<Option<String>, RepoError> {
    let row: Option<SchemaRow> = db
        .fetch_optional(
            conn,
            "SELECT n.nspname::text AS name FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = 'oban_jobs' AND n.nspname = current_schema()",
            vec![],
        )
        .await?;
    Ok(row.and_then(|row| row.name))
}

impl BridgeRepo<'_> {
    /// Installs this version's bridge for `workers` (worker -> queue) in place of any
    /// version's, in one transaction. Refused when the database has no `oban_jobs` in its
    /// current schema.
    pub async fn enable(&self, workers: &BTreeMap<String, String>) -> Result<(), RepoError> {
        self.require_postgres()?;
        let txn = self.db.conn().begin().await?;
        let Some(schema) = oban_jobs_schema(self.db, &txn).await? else {
            return Err(RepoError::Data {
                what: "oban_jobs",
                detail: "the bridge needs Oban's oban_jobs table in the current schema; \
                         this database has none"
                    .into(),
            });
        };
        crate::installed::capture::replace_installed(
            txn,
            &migration::drop_bridge_sql(),
            &install_sql(&schema, workers),
        )
        .await
    }

    /// Removes every bridge trigger and function, of any version: the platform's next
    /// inserts are left to its own workers.
    pub async fn disable(&self) -> Result<(), RepoError> {
        self.require_postgres()?;
        crate::installed::capture::remove_installed(self.db, &migration::drop_bridge_sql()).await
    }

    /// What is installed, what it maps and how many rows it took.
    pub async fn state(&self) -> Result<BridgeState, RepoError> {
        self.require_postgres()?;
        let conn = self.db.conn();
        let installed: Option<InstalledRow> = self
            .db
            .fetch_optional(
                conn,
                "SELECT p.proname::text AS name, obj_description(p.oid, 'pg_proc') AS workers \
                 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                 JOIN pg_catalog.pg_trigger t ON t.tgfoid = p.oid \
                 WHERE n.nspname = current_schema() AND p.proname LIKE $1 \
                 ORDER BY 1 DESC LIMIT 1",
                vec![Value::from(format!("{PREFIX}%"))],
            )
            .await?;
        let (version, workers) = match installed {
            Some(row) => (
                Some(version_of(PREFIX, &row.name)),
                row.workers
                    .and_then(|w| serde_json::from_str(&w).ok())
                    .unwrap_or_default(),
            ),
            None => (None, BTreeMap::new()),
        };
        let taken = if oban_jobs_schema(self.db, conn).await?.is_some() {
            let rows: Vec<TakenRow> = self
                .db
                .fetch_all(
                    conn,
                    "SELECT worker, COUNT(*) AS taken FROM oban_jobs \
                     WHERE meta ? 'snapline' GROUP BY worker ORDER BY worker",
                    vec![],
                )
                .await?;
            rows.into_iter().map(|r| (r.worker, r.taken)).collect()
        } else {
            BTreeMap::new()
        };
        Ok(BridgeState {
            version,
            workers,
            taken,
        })
    }

    fn require_postgres(&self) -> Result<(), RepoError> {
        self.db.require_postgres(
            "the bridge",
            "it takes over rows of Oban's oban_jobs table, which lives in PostgreSQL",
        )
    }
}

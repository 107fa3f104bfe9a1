//! Change capture (PostgreSQL, opt-in): statement-level triggers on the platform's tables that
//! push snapline's jobs inside the writer's own transaction, so a job exists exactly when the
//! change commits and the platform changes no code.
//!
//! - `me_file_tags` insert, delete, and update of `me_file_id`, `trait_id` or `tag_value`;
//!   `me_files` insert and delete: each affected me_file once per statement into
//!   `snapline_capture_outbox`, a narrow append-only table of snapline's own (no index, no
//!   notification, no lookup: the writer pays one small insert per statement). The syncers
//!   drain it ([`CaptureRepo::drain`]): in one transaction, they delete what they take and
//!   push one `sync_me_file` per me_file unless one for it is already waiting (the plain-SQL
//!   push's rule), so a bulk update of 100,000 rows pushes at most one job per me_file. A
//!   change rolled back leaves no outbox row; nothing is pushed before the writer commits.
//! - `target_bands`, `target_band_trait_groups`, `trait_group_traits` (any change), a
//!   trait's `trait_name`, `parent_trait_id` or `display_order`, a deleted trait, and a
//!   trait group deleted or created (link rows to a missing group or trait do not count):
//!   one `populate_target` per
//!   affected target that is `populated` or `populating`, unless one is waiting; the target is
//!   marked `populating` in the same transaction, as any populate push does.
//!
//! The trigger functions run as their owner (`SECURITY DEFINER`, the role that ran
//! `capture enable`), so the platform's own role needs no right on snapline's queue tables.
//! What runs with the owner's rights must not lend them (PostgreSQL's "Writing SECURITY
//! DEFINER Functions Safely"): every function has `search_path = pg_catalog, pg_temp`, names
//! every relation and function with its schema, and no role but the owner may execute it (a
//! trigger function cannot be called directly at all). Versions before
//! [`FIRST_SAFE_CAPTURE_VERSION`] did not, and `capture status` says so.
//!
//! Every object is named `snapline_capture_v<N>_...`: `enable` replaces any version's objects
//! with this one's, `disable` (and `migration down`) drops every version's. An installed
//! version keeps working after snapline is upgraded, until `enable` replaces it.

use crate::{Db, RepoError};
use sea_orm::{ConnectionTrait, TransactionTrait, Value};

/// The version of the trigger functions this build installs.
pub const CAPTURE_VERSION: u32 = 5;

/// The first version safe to leave installed. Earlier ones ran their pushing functions as
/// their owner with the caller's temporary schema first in `search_path` and EXECUTE open to
/// PUBLIC: any login could run its own SQL as the role that enabled capture.
pub const FIRST_SAFE_CAPTURE_VERSION: u32 = 3;

/// The prefix of every capture object of any version.
const PREFIX: &str = "snapline_capture_v";

/// One installed capture trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureTrigger {
    pub table: String,
    pub name: String,
    /// The version in its name (`snapline_capture_v1_...` is 1).
    pub version: u32,
}

impl CaptureTrigger {
    /// Whether this trigger's version lends its owner's rights to any login
    /// ([`FIRST_SAFE_CAPTURE_VERSION`]).
    pub fn is_unsafe(&self) -> bool {
        self.version < FIRST_SAFE_CAPTURE_VERSION
    }
}

/// The `search_path` every capture function runs with: PostgreSQL's own first, then nothing
/// a session can add to but its temporary schema, searched last (where it cannot shadow a
/// built-in). Relations and snapline's functions are named with their schema anyway.
pub(crate) const SAFE_SEARCH_PATH: &str = "SET search_path = pg_catalog, pg_temp";

/// `CREATE FUNCTION {function}(queue text, payload bytea) RETURNS text`: the id of a job of
/// `queue` with this payload that is waiting and due within a minute (the plain-SQL push's
/// rule), or NULL: what capture and the bridge ask before they push.
///
/// A function probing one payload, not a NOT EXISTS in the pushing statement: the planner
/// cannot see how many me_files an array holds, and the anti join it chose as if they were
/// ten rescanned every waiting job per me_file (10 s for 8,000 me_files). Its query names no
/// column but the payload and the status, so the hash index on waiting payloads is the only
/// index that can serve it; it is planned at each call, so a plan made while the queue was
/// nearly empty is not kept once the queue is long.
/// The waiting job it finds stays locked until the writer commits: a worker's fetch skips a
/// locked row, so the job that absorbed this push cannot start, and read the tags from
/// before this change, while the change is uncommitted. One a fetch holds is skipped (it may
/// already be reading): then the caller pushes a job.
pub(crate) fn waiting_job_function_sql(function: &str) -> String {
    format!(
        r#"
CREATE OR REPLACE FUNCTION {function}(queue text, payload bytea) RETURNS text
LANGUAGE plpgsql VOLATILE {SAFE_SEARCH_PATH}
SET plan_cache_mode = force_custom_plan AS $f$
DECLARE
  waiting record;
BEGIN
  FOR waiting IN SELECT j.id, j.job_type, j.run_at FROM apalis.jobs j
                 WHERE j.status = 'Pending' AND j.job = payload
                 FOR UPDATE SKIP LOCKED LOOP
    IF waiting.job_type = queue AND waiting.run_at <= now() + interval '60 seconds' THEN
      RETURN waiting.id;
    END IF;
  END LOOP;
  RETURN NULL;
END
$f$;
"#
    )
}

/// `name` as an SQL identifier, quoted.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal.
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A block revoking EXECUTE from PUBLIC (which PostgreSQL grants on every new function) on
/// every function of `schema` whose name starts with `prefix`, so that no role but the owner
/// may call one or build a trigger with it.
pub(crate) fn revoke_from_public_sql(schema: &str, prefix: &str) -> String {
    let like = format!("{}\\_%", prefix.replace('_', "\\_"));
    format!(
        r#"
DO $revoke$
DECLARE f record;
BEGIN
  FOR f IN SELECT p.oid::pg_catalog.regprocedure AS signature FROM pg_catalog.pg_proc p
           WHERE p.pronamespace = pg_catalog.to_regnamespace({schema})
             AND p.proname LIKE {like}
  LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.signature);
  END LOOP;
END
$revoke$;
"#,
        schema = quote_literal(&quote_ident(schema)),
        like = quote_literal(&like),
    )
}

/// What `enable` installs into `schema` (the platform's, where its tables are), in order: the
/// functions that push, then one function and trigger per captured event, then the revoke
/// that leaves every function to its owner alone.
///
/// Only the trigger functions run as their owner (`SECURITY DEFINER`): PostgreSQL never lets
/// a trigger function be called directly, and creating a trigger on a table of one's own
/// needs EXECUTE on it, revoked here from PUBLIC. The functions they call run with the rights
/// of their caller, which inside a trigger is the owner, and no other role may call them.
fn install_sql(schema: &str) -> String {
    let v = CAPTURE_VERSION;
    let s = quote_ident(schema);
    let waiting_function = waiting_job_function_sql(&format!("{s}.snapline_capture_v{v}_waiting"));
    let mut sql = format!(
        r#"
{waiting_function}
CREATE OR REPLACE FUNCTION {s}.snapline_capture_v{v}_push_populates(target_ids bigint[]) RETURNS void
LANGUAGE sql {SAFE_SEARCH_PATH} AS $f$
  WITH affected AS (
    SELECT id FROM {s}.targets
    WHERE id = ANY(target_ids) AND population_status IN ('populated', 'populating')
  ), marked AS (
    UPDATE {s}.targets SET population_status = 'populating'
    WHERE id IN (SELECT id FROM affected) AND population_status <> 'populating'
  )
  INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority)
  SELECT apalis.generate_ulid(), 'populate_target', p.payload, 'Pending', 0, 5, now(), 0
  FROM (SELECT convert_to('{{"target_id":' || id || '}}', 'UTF8') AS payload FROM affected) AS p
  WHERE {s}.snapline_capture_v{v}_waiting('populate_target', p.payload) IS NULL
$f$;

CREATE OR REPLACE FUNCTION {s}.snapline_capture_v{v}_targets_of_groups(group_ids bigint[]) RETURNS bigint[]
LANGUAGE sql STABLE {SAFE_SEARCH_PATH} AS $f$
  SELECT ARRAY(SELECT DISTINCT b.target_id::bigint FROM {s}.target_band_trait_groups l
               JOIN {s}.target_bands b ON b.id = l.target_band_id
               WHERE l.trait_group_id = ANY(group_ids) AND b.target_id IS NOT NULL)
$f$;
"#
    );
    for capture in captures(v, &s) {
        let name = format!("snapline_capture_v{v}_{}", capture.name);
        let transition = match capture.event {
            "INSERT" => "REFERENCING NEW TABLE AS new_rows",
            "DELETE" => "REFERENCING OLD TABLE AS old_rows",
            _ => "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        };
        // The outbox inserts are static: planned once, they join nothing, so one plan fits
        // a single-row write and a 100,000-row update alike, and a single-row write pays no
        // planning. The others run by EXECUTE, planned at each statement for the size of
        // its transition tables: a plan kept from single-row writes (a nested loop over
        // them) took minutes over a 100,000-row update, and a query without parameters
        // keeps its first plan whatever `plan_cache_mode` says.
        let statement = if capture.planned_each_time {
            format!("EXECUTE $q${}$q$", capture.body)
        } else {
            capture.body.clone()
        };
        sql.push_str(&format!(
            r#"
CREATE OR REPLACE FUNCTION {s}.{name}() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER {SAFE_SEARCH_PATH} AS $f$
BEGIN
  {statement};
  RETURN NULL;
END
$f$;
DROP TRIGGER IF EXISTS {name} ON {s}.{table};
CREATE TRIGGER {name} AFTER {event} ON {s}.{table} {transition}
  FOR EACH STATEMENT EXECUTE FUNCTION {s}.{name}();
"#,
            table = capture.table,
            event = capture.event,
        ));
    }
    sql.push_str(&revoke_from_public_sql(
        schema,
        &format!("snapline_capture_v{v}"),
    ));
    sql
}

/// One captured (table, event) and what its trigger pushes.
struct Capture {
    name: String,
    table: &'static str,
    event: &'static str,
    /// A query over the transition tables `new_rows` and/or `old_rows`.
    body: String,
    /// Run by EXECUTE, planned for each statement's transition tables.
    planned_each_time: bool,
}

/// The rows a statement changed, as a FROM item: an update's old and new rows together.
fn changed_rows(event: &str) -> &'static str {
    match event {
        "INSERT" => "new_rows",
        "DELETE" => "old_rows",
        _ => "(SELECT * FROM old_rows UNION ALL SELECT * FROM new_rows) AS both_rows",
    }
}

/// Every captured (table, event). A trigger with transition tables takes one event and no
/// column list, so an update's trigger compares old and new rows itself.
fn captures(v: u32, s: &str) -> Vec<Capture> {
    let capture = |short: &str, table: &'static str, event: &'static str, body: String| Capture {
        name: format!("{short}_{}", &event[..3].to_lowercase()),
        table,
        event,
        planned_each_time: !body.starts_with("INSERT INTO"),
        body,
    };
    // `ids` is a query of one column `m`.
    let syncs = |ids: String| {
        format!(
            "INSERT INTO {s}.snapline_capture_outbox (me_file_id) \
             SELECT DISTINCT m FROM ({ids}) AS changed WHERE m IS NOT NULL"
        )
    };
    let populates =
        |ids: String| format!("SELECT {s}.snapline_capture_v{v}_push_populates(ARRAY({ids}))");
    let of_groups = |groups: String| {
        format!(
            "SELECT {s}.snapline_capture_v{v}_push_populates({s}.snapline_capture_v{v}_targets_of_groups(ARRAY({groups})))"
        )
    };
    let mut all = Vec::new();
    for event in ["INSERT", "DELETE"] {
        let rows = changed_rows(event);
        all.push(capture(
            "tags",
            "me_file_tags",
            event,
            syncs(format!("SELECT me_file_id::bigint AS m FROM {rows}")),
        ));
        all.push(capture(
            "me_files",
            "me_files",
            event,
            syncs(format!("SELECT id::bigint AS m FROM {rows}")),
        ));
    }
    // Only rows whose me_file, trait or value changed (a row of one side not on the other,
    // NULLs equal, as IS DISTINCT FROM): both the old and the new me_file. Set operations,
    // not a join: the static plan hashes or sorts, whatever the statement's size.
    let tag_columns = "id, me_file_id, trait_id, tag_value";
    all.push(capture(
        "tags",
        "me_file_tags",
        "UPDATE",
        syncs(format!(
            "SELECT me_file_id::bigint AS m FROM ( \
               (SELECT {tag_columns} FROM new_rows EXCEPT ALL SELECT {tag_columns} FROM old_rows) \
               UNION ALL \
               (SELECT {tag_columns} FROM old_rows EXCEPT ALL SELECT {tag_columns} FROM new_rows)) AS moved"
        )),
    ));
    for event in ["INSERT", "DELETE", "UPDATE"] {
        let rows = changed_rows(event);
        all.push(capture(
            "bands",
            "target_bands",
            event,
            populates(format!("SELECT target_id::bigint FROM {rows}")),
        ));
        all.push(capture(
            "band_groups",
            "target_band_trait_groups",
            event,
            populates(format!(
                "SELECT b.target_id::bigint FROM {s}.target_bands b \
                 WHERE b.id IN (SELECT target_band_id FROM {rows})"
            )),
        ));
        all.push(capture(
            "group_traits",
            "trait_group_traits",
            event,
            of_groups(format!("SELECT trait_group_id::bigint FROM {rows}")),
        ));
    }
    // A renamed or reordered trait shows in the snapshots of every band listing it or one of
    // its children; a new parent moves it under another parent.
    all.push(capture(
        "traits",
        "traits",
        "UPDATE",
        of_groups(format!(
            "SELECT g.trait_group_id::bigint FROM {s}.trait_group_traits g \
             JOIN {s}.traits c ON c.id = g.trait_id \
             WHERE c.id IN (SELECT o.id FROM old_rows o JOIN new_rows n ON n.id = o.id \
                            WHERE o.trait_name IS DISTINCT FROM n.trait_name \
                               OR o.parent_trait_id IS DISTINCT FROM n.parent_trait_id \
                               OR o.display_order IS DISTINCT FROM n.display_order) \
                OR c.parent_trait_id IN (SELECT o.id FROM old_rows o JOIN new_rows n ON n.id = o.id \
                            WHERE o.trait_name IS DISTINCT FROM n.trait_name \
                               OR o.display_order IS DISTINCT FROM n.display_order)"
        )),
    ));
    // A deleted trait no longer counts: the groups listing it, or listing a child of it (a
    // child without its parent leaves the snapshots), change.
    all.push(capture(
        "traits",
        "traits",
        "DELETE",
        of_groups(format!(
            "SELECT g.trait_group_id::bigint FROM {s}.trait_group_traits g \
             WHERE g.trait_id IN (SELECT id FROM old_rows) \
                OR g.trait_id IN (SELECT c.id FROM {s}.traits c \
                                  WHERE c.parent_trait_id IN (SELECT id FROM old_rows))"
        )),
    ));
    // A deleted trait group no longer counts for the bands linking it; one created under the
    // id of a link row makes that row count again.
    for event in ["INSERT", "DELETE"] {
        let rows = changed_rows(event);
        all.push(capture(
            "trait_groups",
            "trait_groups",
            event,
            of_groups(format!("SELECT id::bigint FROM {rows}")),
        ));
    }
    all
}

/// The tables capture puts triggers on.
pub const CAPTURED_TABLES: [&str; 7] = [
    "me_file_tags",
    "me_files",
    "target_bands",
    "target_band_trait_groups",
    "trait_group_traits",
    "traits",
    "trait_groups",
];

/// Runs `drop` (removing every version of what snapline installed: capture, the bridge) then
/// `install` in `txn`, and commits: the platform's writers see the old version or the new one.
pub(crate) async fn replace_installed(
    txn: sea_orm::DatabaseTransaction,
    drop: &str,
    install: &str,
) -> Result<(), RepoError> {
    txn.execute_unprepared(drop).await?;
    txn.execute_unprepared(install).await?;
    txn.commit().await?;
    Ok(())
}

/// Runs `drop`, removing every version of what snapline installed (capture, the bridge).
pub(crate) async fn remove_installed(db: &Db, drop: &str) -> Result<(), RepoError> {
    db.conn().execute_unprepared(drop).await?;
    Ok(())
}

/// Installs, lists and removes change capture.
pub struct CaptureRepo<'a> {
    pub(crate) db: &'a Db,
}

impl CaptureRepo<'_> {
    /// Installs this version's triggers and functions in place of any version's, in one
    /// transaction.
    pub async fn enable(&self) -> Result<(), RepoError> {
        self.require_postgres()?;
        let txn = self.db.conn().begin().await?;
        // The schema the triggers' tables are in, named in every statement the functions run.
        let schema: Option<SchemaRow> = self
            .db
            .fetch_optional(&txn, "SELECT current_schema()::text AS name", vec![])
            .await?;
        let Some(SchemaRow { name: Some(schema) }) = schema else {
            return Err(RepoError::Data {
                what: "search_path",
                detail: "no current schema: set search_path to the platform's schema".into(),
            });
        };
        replace_installed(txn, &migration::drop_capture_sql(), &install_sql(&schema)).await
    }

    /// Removes every capture trigger and function, of any version (what `migration down`
    /// does too).
    pub async fn disable(&self) -> Result<(), RepoError> {
        self.require_postgres()?;
        remove_installed(self.db, &migration::drop_capture_sql()).await
    }

    /// Takes up to `limit` me_files from `snapline_capture_outbox` (rows another drainer
    /// holds are skipped) and pushes one `sync_me_file` per distinct me_file unless one for
    /// it is waiting, in one statement: what is taken is pushed, or neither happens. Returns
    /// (outbox rows taken, jobs pushed). Runs as the services' role.
    pub async fn drain(&self, limit: u64) -> Result<(u64, u64), RepoError> {
        self.require_postgres()?;
        let row: Drained = self
            .db
            .fetch_one(
                self.db.conn(),
                "capture outbox drain",
                "WITH taken AS ( \
                   DELETE FROM snapline_capture_outbox WHERE ctid = ANY(ARRAY( \
                     SELECT ctid FROM snapline_capture_outbox LIMIT $1 FOR UPDATE SKIP LOCKED)) \
                   RETURNING me_file_id), \
                 payloads AS ( \
                   SELECT DISTINCT convert_to('{\"me_file_id\":' || me_file_id || '}', 'UTF8') AS job \
                   FROM taken), \
                 pushed AS ( \
                   INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority) \
                   SELECT apalis.generate_ulid(), 'sync_me_file', p.job, 'Pending', 0, 5, now(), 0 \
                   FROM payloads p WHERE NOT EXISTS ( \
                     SELECT 1 FROM apalis.jobs j WHERE j.job = p.job AND j.status = 'Pending' \
                     AND j.job_type = 'sync_me_file' AND j.run_at <= now() + interval '60 seconds') \
                   RETURNING 1) \
                 SELECT (SELECT COUNT(*) FROM taken) AS taken, (SELECT COUNT(*) FROM pushed) AS pushed",
                vec![Value::from(limit as i64)],
            )
            .await?;
        Ok((row.taken as u64, row.pushed as u64))
    }

    /// Me_files in the outbox not yet drained (rows, not distinct me_files).
    pub async fn outbox_len(&self) -> Result<u64, RepoError> {
        self.require_postgres()?;
        let row: crate::rows::Count = self
            .db
            .fetch_one(
                self.db.conn(),
                "capture outbox",
                "SELECT COUNT(*) AS count FROM snapline_capture_outbox",
                vec![],
            )
            .await?;
        Ok(row.count as u64)
    }

    /// The capture triggers installed, by table and name.
    pub async fn installed(&self) -> Result<Vec<CaptureTrigger>, RepoError> {
        self.require_postgres()?;
        self.installed_on(self.db.conn()).await
    }

    /// How many triggers this version installs.
    pub fn expected_triggers() -> usize {
        captures(CAPTURE_VERSION, "").len()
    }

    async fn installed_on<C: ConnectionTrait>(
        &self,
        conn: &C,
    ) -> Result<Vec<CaptureTrigger>, RepoError> {
        let rows: Vec<TriggerRow> = self
            .db
            .fetch_all(
                conn,
                "SELECT c.relname::text AS table_name, t.tgname::text AS name FROM pg_trigger t \
                 JOIN pg_class c ON c.oid = t.tgrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE NOT t.tgisinternal AND n.nspname = current_schema() \
                   AND t.tgname LIKE $1 ORDER BY 1, 2",
                vec![Value::from(format!("{PREFIX}%"))],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| CaptureTrigger {
                version: version_of(PREFIX, &row.name),
                table: row.table_name,
                name: row.name,
            })
            .collect())
    }

    fn require_postgres(&self) -> Result<(), RepoError> {
        self.db.require_postgres(
            "change capture",
            "it uses triggers with transition tables; on SQLite, push sync_me_file jobs from the writer",
        )
    }
}

#[derive(sea_orm::FromQueryResult)]
struct Drained {
    taken: i64,
    pushed: i64,
}

#[derive(sea_orm::FromQueryResult)]
struct SchemaRow {
    name: Option<String>,
}

#[derive(sea_orm::FromQueryResult)]
struct TriggerRow {
    table_name: String,
    name: String,
}

/// The version in the name of an object snapline installs, after `prefix`
/// (`snapline_capture_v1_...` is 1); 0 when it has none.
pub(crate) fn version_of(prefix: &str, name: &str) -> u32 {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.split('_').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

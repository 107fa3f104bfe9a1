//! Set-based reference computations inside PostgreSQL: the same result as a job, computed
//! by one statement. Benchmarks time them as the physical limit and compare results row for
//! row; nothing in production calls them.

use crate::rows::{Count, IdOnly};
use crate::{Db, RepoError};
use entity::Id;
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

pub struct ReferenceRepo<'a> {
    pub(crate) db: &'a Db,
}

/// The band metadata of the targets `{TARGETS}` picks (a condition on `b.target_id`), as
/// the CTEs `bands (id, target_id, groups, pos)`, `band_traits (band_id, trait_group_id,
/// trait_id)` and `band_trait_pairs (band_id, trait_id)` that [`TARGET_POPULATION_SQL`]
/// continues.
const BAND_METADATA_CTES: &str = "
WITH bands AS (
  SELECT b.id, b.target_id, COUNT(DISTINCT l.trait_group_id) AS groups,
         row_number() OVER (PARTITION BY b.target_id
                            ORDER BY COUNT(DISTINCT l.trait_group_id), b.id) AS pos
  FROM target_bands b LEFT JOIN target_band_trait_groups l ON l.target_band_id = b.id
    AND {LIVE_GROUP_OF_LINK}
  WHERE {TARGETS} GROUP BY b.id, b.target_id
),
band_traits AS (
  SELECT DISTINCT l.target_band_id AS band_id, l.trait_group_id, gt.trait_id
  FROM target_band_trait_groups l
  JOIN bands b ON b.id = l.target_band_id
  JOIN trait_group_traits gt ON gt.trait_group_id = l.trait_group_id
  WHERE {LIVE_GROUP_OF_LINK} AND {LIVE_TRAIT_OF_LINK}
),
band_trait_pairs AS (SELECT DISTINCT band_id, trait_id FROM band_traits)";

/// Membership (DESIGN section 3) and snapshots (section 2), continuing the band metadata
/// CTEs, yielding (band_id, me_file_id, snapshot jsonb) for the me_files `{ME_FILES}` picks
/// (a condition on `t.me_file_id`); `{CHILDREN}` is empty or `MATERIALIZED `.
const TARGET_POPULATION_SQL: &str = ",
matches AS (
  SELECT t.me_file_id, bt.band_id, COUNT(DISTINCT bt.trait_group_id) AS n
  FROM me_file_tags t
  JOIN band_traits bt ON bt.trait_id = t.trait_id
  JOIN me_files m ON m.id = t.me_file_id
  WHERE {ME_FILES}
  GROUP BY t.me_file_id, bt.band_id
),
chain AS (
  SELECT m.me_file_id, b.id AS band_id, b.target_id, b.pos,
         row_number() OVER (PARTITION BY m.me_file_id, b.target_id ORDER BY b.pos) AS rn
  FROM matches m JOIN bands b ON b.id = m.band_id
  WHERE m.n = b.groups AND b.groups > 0
),
members AS (
  SELECT DISTINCT ON (me_file_id, target_id) me_file_id, band_id
  FROM chain WHERE rn = pos ORDER BY me_file_id, target_id, pos DESC
){SNAPSHOTS_OF_MEMBERS}
SELECT band_id, me_file_id, snapshot FROM snapshots";

/// Snapshots (DESIGN section 2) continuing CTEs `members (me_file_id, band_id)` and
/// `band_trait_pairs (band_id, trait_id)` (each band's live traits), as the CTEs ending in
/// `snapshots (band_id, me_file_id, snapshot jsonb)`, one per member; `{CHILDREN}` is empty
/// or `MATERIALIZED `. The one statement of the rule in SQL: populates, syncs and backfills
/// of the reference all continue it.
const SNAPSHOTS_OF_MEMBERS_CTES: &str = ",
child_tags AS (
  SELECT DISTINCT ON (mb.me_file_id, mb.band_id, t.trait_id) mb.me_file_id, mb.band_id, t.trait_id, t.tag_value
  FROM members mb
  JOIN me_file_tags t ON t.me_file_id = mb.me_file_id
  JOIN band_trait_pairs bt ON bt.band_id = mb.band_id AND bt.trait_id = t.trait_id
  ORDER BY mb.me_file_id, mb.band_id, t.trait_id, t.id
),
children AS {CHILDREN}(
  SELECT ct.me_file_id, ct.band_id, p.id AS parent_id, p.trait_name AS parent_name,
         p.display_order AS parent_order,
         jsonb_agg(jsonb_build_array(c.id,
                     CASE WHEN ct.tag_value IS NULL OR btrim(ct.tag_value, {BLANK}) = '' THEN c.trait_name
                          ELSE ct.tag_value END,
                     c.display_order)
                   ORDER BY c.display_order NULLS LAST, c.id) AS kids
  FROM child_tags ct
  JOIN traits c ON c.id = ct.trait_id
  JOIN traits p ON p.id = c.parent_trait_id
  GROUP BY ct.me_file_id, ct.band_id, p.id, p.trait_name, p.display_order
),
snapshots AS (
  SELECT mb.band_id, mb.me_file_id,
         jsonb_build_object('tags', COALESCE(
           jsonb_agg(jsonb_build_array(ch.parent_id, ch.parent_name, ch.parent_order, ch.kids)
                     ORDER BY ch.parent_order NULLS LAST, ch.parent_id)
             FILTER (WHERE ch.parent_id IS NOT NULL),
           '[]'::jsonb)) AS snapshot
  FROM members mb
  LEFT JOIN children ch ON ch.me_file_id = mb.me_file_id AND ch.band_id = mb.band_id
  GROUP BY mb.band_id, mb.me_file_id
)";

/// [`SNAPSHOTS_OF_MEMBERS_CTES`] with `children` evaluated as `children` says.
fn snapshots_of_members(children: Children) -> String {
    SNAPSHOTS_OF_MEMBERS_CTES
        .replace("{BLANK}", BLANK_CHARACTERS_SQL)
        .replace(
            "{CHILDREN}",
            match children {
                Children::AsPlanned => "",
                Children::Once => "MATERIALIZED ",
            },
        )
}

/// [`TARGET_POPULATION_SQL`] for every me_file of target `$1`.
fn target_population_sql() -> String {
    population_sql("b.target_id = $1", "TRUE")
}

/// [`TARGET_POPULATION_SQL`] after the band metadata of the targets `targets` picks, for
/// the me_files `me_files` picks.
fn population_sql(targets: &str, me_files: &str) -> String {
    population_sql_after(&band_metadata_ctes(targets), me_files, Children::AsPlanned)
}

/// How [`TARGET_POPULATION_SQL`]'s `children` CTE is evaluated.
#[derive(Clone, Copy)]
enum Children {
    /// Inlined or not, as PostgreSQL plans it.
    AsPlanned,
    /// Computed once (`MATERIALIZED`).
    Once,
}

/// [`TARGET_POPULATION_SQL`] after `band_metadata` (CTEs named as [`BAND_METADATA_CTES`]'s).
fn population_sql_after(band_metadata: &str, me_files: &str, children: Children) -> String {
    let rest = TARGET_POPULATION_SQL
        .replace("{SNAPSHOTS_OF_MEMBERS}", &snapshots_of_members(children))
        .replace("{ME_FILES}", me_files);
    format!("{band_metadata}{rest}")
}

/// The targets a sync keeps right (the syncer's scope), as a condition on `b.target_id`.
const SYNCED_TARGETS_SQL: &str = "b.target_id IN (SELECT id FROM targets \
     WHERE population_status IN ('populated', 'populating'))";

/// The band metadata of the syncer's scope, kept in two tables (as the syncer keeps it in
/// its cache) so that a reference sync does only the work of one me_file.
fn reference_band_tables_sql() -> Vec<String> {
    let metadata = band_metadata_ctes(SYNCED_TARGETS_SQL);
    vec![
        "DROP TABLE IF EXISTS snapline_reference_band_trait_pairs, \
         snapline_reference_band_traits, snapline_reference_bands"
            .into(),
        format!(
            "CREATE TABLE snapline_reference_bands AS {metadata} SELECT id, target_id, groups, pos FROM bands"
        ),
        format!(
            "CREATE TABLE snapline_reference_band_traits AS {metadata} \
             SELECT band_id, trait_group_id, trait_id FROM band_traits"
        ),
        format!(
            "CREATE TABLE snapline_reference_band_trait_pairs AS {metadata} \
             SELECT band_id, trait_id FROM band_trait_pairs"
        ),
        "CREATE INDEX ON snapline_reference_band_traits (trait_id)".into(),
        "CREATE INDEX ON snapline_reference_band_trait_pairs (band_id, trait_id)".into(),
        "ANALYZE snapline_reference_bands, snapline_reference_band_traits, \
         snapline_reference_band_trait_pairs"
            .into(),
    ]
}

/// A sync of me_file `$1` as one SQL statement in a PL/pgSQL function (its plan is cached
/// per session, as the syncer's statements are prepared): the rows of every target in the
/// syncer's scope computed set-based from the band tables, then one data-modifying
/// statement that deletes the rows no longer matching, rewrites changed snapshots and
/// inserts new members (a move is a delete and an insert here). The work of a
/// `sync_me_file` job without its queue, locks or round trips: what the sync benchmark
/// compares the syncer with.
fn reference_sync_function_sql() -> String {
    // `children` computed once, not once per member row: planned as one row, the members
    // of one me_file (a few dozen) made PostgreSQL rerun the children join for each of them
    // on the 1M data set (7 ms a call instead of 2-3 ms; the 200K one was planned well).
    let desired = population_sql_after(BAND_METADATA_OF_SYNC, "t.me_file_id = $1", Children::Once);
    format!(
        "CREATE OR REPLACE FUNCTION snapline_reference_sync(bigint) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
WITH desired AS ({desired}),
existing AS (
  SELECT p.id, p.target_band_id, p.matching_tags_snapshot::jsonb AS snapshot
  FROM target_populations p JOIN target_bands b ON b.id = p.target_band_id
  WHERE p.me_file_id = $1 AND {SYNCED_TARGETS_SQL}
),
gone AS (
  DELETE FROM target_populations p USING existing e
  WHERE p.id = e.id AND NOT EXISTS (SELECT 1 FROM desired d WHERE d.band_id = e.target_band_id)
  RETURNING 1
),
changed AS (
  UPDATE target_populations p
  SET matching_tags_snapshot = d.snapshot, updated_at = now() AT TIME ZONE 'utc'
  FROM existing e JOIN desired d ON d.band_id = e.target_band_id
  WHERE p.id = e.id AND e.snapshot IS DISTINCT FROM d.snapshot
  RETURNING 1
)
INSERT INTO target_populations (target_band_id, me_file_id, matching_tags_snapshot, created_at, updated_at)
SELECT d.band_id, d.me_file_id, d.snapshot, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'
FROM desired d WHERE NOT EXISTS (SELECT 1 FROM existing e WHERE e.target_band_id = d.band_id);
END
$fn$",
    )
}

/// The band metadata CTEs of `snapline_reference_sync`, read from the tables
/// [`reference_band_tables_sql`] builds.
const BAND_METADATA_OF_SYNC: &str = "
WITH bands AS NOT MATERIALIZED (SELECT id, target_id, groups, pos FROM snapline_reference_bands),
band_traits AS NOT MATERIALIZED (
  SELECT band_id, trait_group_id, trait_id FROM snapline_reference_band_traits),
band_trait_pairs AS NOT MATERIALIZED (
  SELECT band_id, trait_id FROM snapline_reference_band_trait_pairs)";

impl ReferenceRepo<'_> {
    /// Empties `target_populations` (a benchmark's database only), so the next populate
    /// starts from nothing again.
    pub async fn clear_populations(&self) -> Result<(), RepoError> {
        self.require_postgres()?;
        self.db
            .conn()
            .execute_unprepared("TRUNCATE target_populations")
            .await?;
        Ok(())
    }

    /// Creates `table` shaped like `target_populations`, with the same indexes (so writes
    /// cost the same), empty.
    pub async fn create_population_table(&self, table: &str) -> Result<(), RepoError> {
        self.require_postgres()?;
        self.db
            .conn()
            .execute_unprepared(&format!(
                "DROP TABLE IF EXISTS {table}; \
                 CREATE TABLE {table} (LIKE target_populations INCLUDING ALL)"
            ))
            .await?;
        Ok(())
    }

    /// Writes the target's population into `table` with one `INSERT ... SELECT`; returns rows.
    pub async fn populate_target_into(
        &self,
        table: &str,
        target_id: i64,
    ) -> Result<u64, RepoError> {
        self.require_postgres()?;
        let sql = format!(
            "INSERT INTO {table} (target_band_id, me_file_id, matching_tags_snapshot, created_at, updated_at) \
             SELECT band_id, me_file_id, snapshot, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc' \
             FROM ({}) AS computed",
            target_population_sql()
        );
        let result = self
            .db
            .execute(self.db.conn(), sql, vec![Value::from(target_id)])
            .await?;
        Ok(result)
    }

    /// Rows that differ (band, me_file or snapshot) between the target's populations and
    /// `table`, both ways (rows without a me_file are orphans no job writes: not compared).
    pub async fn population_differences(
        &self,
        table: &str,
        target_id: i64,
    ) -> Result<i64, RepoError> {
        self.require_postgres()?;
        let ours = "SELECT p.target_band_id, p.me_file_id, p.matching_tags_snapshot \
                    FROM target_populations p JOIN target_bands b ON b.id = p.target_band_id \
                    WHERE b.target_id = $1 AND p.me_file_id IS NOT NULL";
        let theirs = format!(
            "SELECT r.target_band_id, r.me_file_id, r.matching_tags_snapshot FROM {table} r"
        );
        let differences: Count = self
            .db
            .fetch_one(
                self.db.conn(),
                "population differences",
                format!(
                    "SELECT COUNT(*) AS count FROM (({ours} EXCEPT ALL {theirs}) \
                     UNION ALL ({theirs} EXCEPT ALL {ours})) AS d"
                ),
                vec![Value::from(target_id)],
            )
            .await?;
        Ok(differences.count)
    }

    /// Creates `snapline_reference_sync(me_file bigint)` and its band tables, from the
    /// targets and bands as they are now (a benchmark's database only).
    pub async fn create_sync_function(&self) -> Result<(), RepoError> {
        self.require_postgres()?;
        for sql in reference_band_tables_sql()
            .into_iter()
            .chain([reference_sync_function_sql()])
        {
            self.db.conn().execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    /// Syncs `me_file` with `snapline_reference_sync`, in one statement of its own.
    pub async fn sync_in_sql(&self, me_file: i64) -> Result<(), RepoError> {
        self.db
            .execute(
                self.db.conn(),
                "SELECT snapline_reference_sync($1)",
                vec![Value::from(me_file)],
            )
            .await?;
        Ok(())
    }

    fn require_postgres(&self) -> Result<(), RepoError> {
        self.db.require_postgres(
            "the reference computation",
            "it is written in PostgreSQL SQL",
        )
    }
}

impl ReferenceRepo<'_> {
    /// Changes the value of every tag of each of `me_files` (a benchmark's worst case: every
    /// snapshot of theirs that holds a tag is rewritten by their syncs).
    pub async fn touch_tags(&self, me_files: &[i64], round: i64) -> Result<u64, RepoError> {
        let db = self.db;
        let result = db
            .execute(
                db.conn(),
                format!(
                    "UPDATE me_file_tags SET tag_value = 'edit ' || $2 || ' of ' || id \
                     WHERE {} ",
                    db.in_id_list("me_file_id", 1)
                ),
                vec![db.id_list(me_files), Value::from(round)],
            )
            .await?;
        Ok(result)
    }
}

impl ReferenceRepo<'_> {
    /// Changes the value of one tag of each of `me_files`, the one with the lowest id among
    /// its tags on a trait of a band it belongs to, so each sync follows one tag edit that
    /// shows in at least one of its snapshots (a benchmark's stand-in for the usual event).
    pub async fn touch_one_tag(&self, me_files: &[i64], round: i64) -> Result<u64, RepoError> {
        self.require_postgres()?;
        let result = self
            .db
            .execute(
                self.db.conn(),
                "UPDATE me_file_tags SET tag_value = 'edit ' || $2 || ' of ' || id, \
                 modified_date = clock_timestamp() AT TIME ZONE 'utc' \
                 WHERE id IN ( \
                   SELECT DISTINCT ON (p.me_file_id) t.id \
                   FROM target_populations p \
                   JOIN target_band_trait_groups bg ON bg.target_band_id = p.target_band_id \
                   JOIN trait_group_traits gt ON gt.trait_group_id = bg.trait_group_id \
                   JOIN me_file_tags t ON t.me_file_id = p.me_file_id AND t.trait_id = gt.trait_id \
                   WHERE p.me_file_id = ANY($1) \
                   ORDER BY p.me_file_id, t.id)",
                vec![Value::from(me_files.to_vec()), Value::from(round)],
            )
            .await?;
        Ok(result)
    }

    /// Me_files with at least one population row, ascending (benchmarks pick syncs whose
    /// commit is visible in `updated_at`).
    pub async fn member_me_files(&self) -> Result<Vec<i64>, RepoError> {
        let rows: Vec<IdOnly> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT DISTINCT me_file_id AS id FROM target_populations ORDER BY me_file_id",
                vec![],
            )
            .await?;
        Ok(rows.into_iter().map(|row| row.id.0).collect())
    }

    /// `n` tag ids at random (a benchmark's single-row writes).
    pub async fn random_tag_ids(&self, n: u64) -> Result<Vec<i64>, RepoError> {
        let rows: Vec<IdOnly> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT id FROM me_file_tags ORDER BY random() LIMIT $1",
                vec![Value::from(n as i64)],
            )
            .await?;
        Ok(rows.into_iter().map(|row| row.id.0).collect())
    }

    /// Creates Oban's job table from `ddl` (the bridge benchmark's platform queue).
    pub async fn install_oban_table(&self, ddl: &str) -> Result<(), RepoError> {
        self.require_postgres()?;
        self.db.conn().execute_unprepared(ddl).await?;
        Ok(())
    }

    /// One job inserted into Oban's `oban_jobs` as Oban's `insert` writes it (every column
    /// given, `ON CONFLICT DO NOTHING RETURNING`), in its own transaction: what the platform's
    /// code does for each job it enqueues. Returns the state the row was stored in.
    pub async fn insert_oban_job(
        &self,
        queue: &str,
        worker: &str,
        args: &str,
    ) -> Result<String, RepoError> {
        let row: Option<ObanStateRow> = self
            .db
            .fetch_optional(
                self.db.conn(),
                "INSERT INTO oban_jobs (state, queue, worker, args, errors, attempt, max_attempts, \
                   inserted_at, scheduled_at, priority, tags, meta) \
                 VALUES ('available', $1, $2, CAST($3 AS jsonb), ARRAY[]::jsonb[], 0, 3, \
                   timezone('UTC', now()), timezone('UTC', now()), 0, ARRAY[]::text[], '{}'::jsonb) \
                 ON CONFLICT DO NOTHING RETURNING state::text AS state",
                vec![Value::from(queue), Value::from(worker), Value::from(args)],
            )
            .await?;
        Ok(row.map(|r| r.state).unwrap_or_default())
    }

    /// One platform-style write: the value of tag `id`, in its own transaction.
    pub async fn set_tag_value(&self, id: i64, value: &str) -> Result<(), RepoError> {
        self.db
            .execute(
                self.db.conn(),
                "UPDATE me_file_tags SET tag_value = $1 WHERE id = $2",
                vec![Value::from(value), Value::from(id)],
            )
            .await?;
        Ok(())
    }

    /// One bulk write of `rows` tags (the lowest ids), as the platform's daily age rollover;
    /// returns the rows written.
    pub async fn set_tag_values_in_bulk(&self, rows: u64, value: &str) -> Result<u64, RepoError> {
        let result = self
            .db
            .execute(
                self.db.conn(),
                "UPDATE me_file_tags SET tag_value = $1 \
                 WHERE id IN (SELECT id FROM me_file_tags ORDER BY id LIMIT $2)",
                vec![Value::from(value), Value::from(rows as i64)],
            )
            .await?;
        Ok(result)
    }

    /// For each finished `sync_me_file` job, the time from its push (`run_at`) to the commit
    /// of its rows (the latest `updated_at` it wrote), and the part of it spent waiting to be
    /// taken (`lock_at`): where a slow sync lost its time.
    pub async fn sync_commit_latency(&self) -> Result<SyncCommitLatency, RepoError> {
        self.latency(
            "SELECT EXTRACT(EPOCH FROM MAX(p.updated_at) - (j.run_at AT TIME ZONE 'utc'))::float8 * 1000 AS ms, \
                    EXTRACT(EPOCH FROM j.lock_at - j.run_at)::float8 * 1000 AS pickup_ms \
             FROM apalis.jobs j \
             JOIN target_populations p \
               ON p.me_file_id = (convert_from(j.job, 'UTF8')::jsonb ->> 'me_file_id')::bigint \
             WHERE j.job_type = 'sync_me_file' AND j.status = 'Done' AND p.updated_at >= (j.run_at AT TIME ZONE 'utc') \
             GROUP BY j.id, j.run_at, j.lock_at",
            vec![],
        )
        .await
    }

    /// Percentiles of `ms` and `pickup_ms` over the rows of `durations`.
    async fn latency(
        &self,
        durations: &str,
        values: Vec<Value>,
    ) -> Result<SyncCommitLatency, RepoError> {
        self.require_postgres()?;
        let row: SyncCommitLatencyRow = self
            .db
            .fetch_one(
                self.db.conn(),
                "latency",
                format!(
                    "SELECT COUNT(*) AS committed, \
                     COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), 0) AS p50_ms, \
                     COALESCE(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), 0) AS p99_ms, \
                     COALESCE(MAX(ms), 0) AS max_ms, \
                     COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY pickup_ms), 0) AS pickup_p50_ms, \
                     COALESCE(percentile_cont(0.99) WITHIN GROUP (ORDER BY pickup_ms), 0) AS pickup_p99_ms \
                     FROM ({durations}) AS d"
                ),
                values,
            )
            .await?;
        Ok(SyncCommitLatency {
            committed: row.committed,
            p50_ms: row.p50_ms,
            p99_ms: row.p99_ms,
            max_ms: row.max_ms,
            pickup_p50_ms: row.pickup_p50_ms,
            pickup_p99_ms: row.pickup_p99_ms,
        })
    }
}

impl ReferenceRepo<'_> {
    /// The jobs neither done nor killed, described (queue, `status payload locked by ...
    /// since ...`): what a drain that timed out left.
    pub async fn unfinished_jobs(&self) -> Result<Vec<(String, String)>, RepoError> {
        self.require_postgres()?;
        let rows: Vec<UnfinishedJob> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT job_type, status || ' ' || convert_from(job, 'UTF8') || ' attempts ' || attempts \
                 || COALESCE(' locked by ' || lock_by || ' since ' || lock_at::text, '') AS held \
                 FROM apalis.jobs WHERE status NOT IN ('Done', 'Killed') ORDER BY job_type, id LIMIT 50",
                vec![],
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.job_type, r.held)).collect())
    }

    /// Forgets every change capture left in its outbox (a benchmark between phases, as it
    /// deletes the queue's jobs).
    pub async fn clear_capture_outbox(&self) -> Result<u64, RepoError> {
        self.require_postgres()?;
        Ok(self
            .db
            .conn()
            .execute_unprepared("DELETE FROM snapline_capture_outbox")
            .await?
            .rows_affected())
    }

    /// From each tag write of round `round` ([`ReferenceRepo::touch_one_tag`], which stamps
    /// `modified_date` as the statement ends, just before its commit) to the last commit of
    /// its me_file's rows: the lag a platform's write sees, whatever carried it to the
    /// syncer (a job pushed in the write, or capture's outbox drained after it). Only
    /// me_files synced since their write count.
    pub async fn write_to_sync_latency(&self, round: i64) -> Result<SyncCommitLatency, RepoError> {
        self.latency(
            "SELECT EXTRACT(EPOCH FROM MAX(p.updated_at) - t.modified_date)::float8 * 1000 AS ms, \
                    NULL::float8 AS pickup_ms \
             FROM me_file_tags t JOIN target_populations p ON p.me_file_id = t.me_file_id \
             WHERE t.tag_value LIKE 'edit ' || $1 || ' of %' AND p.updated_at >= t.modified_date \
             GROUP BY t.id, t.modified_date",
            vec![Value::from(round.to_string())],
        )
        .await
    }
}

#[derive(FromQueryResult)]
struct UnfinishedJob {
    job_type: String,
    held: String,
}

#[derive(FromQueryResult)]
struct SyncCommitLatencyRow {
    committed: i64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    pickup_p50_ms: f64,
    pickup_p99_ms: f64,
}

/// A row where stored and computed populations differ, and on which side.
#[derive(FromQueryResult)]
struct IdSnapshot {
    id: i64,
    snapshot: Option<String>,
}

#[derive(FromQueryResult)]
struct PopulationDifference {
    side: String,
    band_id: Id,
    me_file_id: Id,
    snapshot: Option<String>,
}

/// A row whose stored snapshot is not the one owed.
#[derive(FromQueryResult)]
struct SnapshotDifference {
    id: Id,
    stored: Option<String>,
    owed: Option<String>,
}

/// Push-to-commit latency of finished syncs, in milliseconds; `pickup` is push to taken.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SyncCommitLatency {
    pub committed: i64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub pickup_p50_ms: f64,
    pub pickup_p99_ms: f64,
}

/// The snapshot of each (me_file_id, band_id) of `{pairs}` (a query yielding those two
/// columns) from current tags, as CTEs ending in `snapshots (band_id, me_file_id, snapshot)`;
/// pairs whose band does not exist get none.
const SNAPSHOTS_OF_PAIRS_CTE: &str = "
WITH members AS (
  SELECT DISTINCT pr.me_file_id, pr.band_id
  FROM ({pairs}) pr JOIN target_bands b ON b.id = pr.band_id
),
band_trait_pairs AS (
  SELECT DISTINCT l.target_band_id AS band_id, gt.trait_id
  FROM target_band_trait_groups l
  JOIN trait_group_traits gt ON gt.trait_group_id = l.trait_group_id
  WHERE l.target_band_id IN (SELECT DISTINCT band_id FROM members)
    AND {LIVE_GROUP_OF_LINK} AND {LIVE_TRAIT_OF_LINK}
){SNAPSHOTS_OF_MEMBERS}";

/// Every character Unicode calls white space (what Rust's `char::is_whitespace` and
/// Elixir's `String.trim` strip), as a PostgreSQL string: a tag value made only of these is
/// blank. `btrim(x)` alone strips spaces only.
const BLANK_CHARACTERS_SQL: &str = r"E'\u0009\u000A\u000B\u000C\u000D\u0020\u0085\u00A0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200A\u2028\u2029\u202F\u205F\u3000'";

/// [`SNAPSHOTS_OF_PAIRS_CTE`] over `pairs`.
fn snapshots_of_pairs(pairs: &str) -> String {
    with_live_links(SNAPSHOTS_OF_PAIRS_CTE)
        .replace(
            "{SNAPSHOTS_OF_MEMBERS}",
            &snapshots_of_members(Children::AsPlanned),
        )
        .replace("{pairs}", pairs)
}

/// [`BAND_METADATA_CTES`] for the targets `targets` picks.
fn band_metadata_ctes(targets: &str) -> String {
    with_live_links(BAND_METADATA_CTES).replace("{TARGETS}", targets)
}

/// `sql` with its link rows counted only while their group and trait exist.
fn with_live_links(sql: &str) -> String {
    sql.replace(
        "{LIVE_GROUP_OF_LINK}",
        crate::platform::bands::LIVE_GROUP_OF_LINK,
    )
    .replace(
        "{LIVE_TRAIT_OF_LINK}",
        crate::platform::bands::LIVE_TRAIT_OF_LINK,
    )
}

/// Fills the NULL snapshots of `populations` (a table shaped like `target_populations`) from
/// current tags, in one statement: the backfiller's first phase as set-based SQL.
fn backfill_populations_sql(populations: &str) -> String {
    format!(
        "{}
UPDATE {populations} AS p SET matching_tags_snapshot = s.snapshot, updated_at = now() AT TIME ZONE 'utc'
FROM snapshots s
WHERE p.me_file_id = s.me_file_id AND p.target_band_id = s.band_id AND p.matching_tags_snapshot IS NULL",
        snapshots_of_pairs(&format!(
            "SELECT me_file_id, target_band_id AS band_id FROM {populations} \
             WHERE matching_tags_snapshot IS NULL"
        ))
    )
}

impl ReferenceRepo<'_> {
    /// The backfill as set-based SQL on the three tables (or tables shaped like them): populations from tags,
    /// then offers and ad_events from their populations, and those without one (orphans)
    /// from tags. Returns rows written.
    pub async fn backfill_in_sql(
        &self,
        populations: &str,
        offers: &str,
        ad_events: &str,
    ) -> Result<u64, RepoError> {
        self.require_postgres()?;
        let conn = self.db.conn();
        let mut written = conn
            .execute_unprepared(&backfill_populations_sql(populations))
            .await?
            .rows_affected();
        for copy in [offers, ad_events] {
            written += conn
                .execute_unprepared(&format!(
                    "UPDATE {copy} AS c SET matching_tags_snapshot = p.matching_tags_snapshot, \
                     updated_at = now() AT TIME ZONE 'utc' FROM {populations} p \
                     WHERE p.me_file_id = c.me_file_id AND p.target_band_id = c.target_band_id \
                     AND c.matching_tags_snapshot IS NULL AND p.matching_tags_snapshot IS NOT NULL"
                ))
                .await?
                .rows_affected();
            // Orphans: rows on a (me_file, band) without a population get the snapshot
            // computed from tags, as the backfiller gives them.
            written += conn
                .execute_unprepared(&format!(
                    "{}
UPDATE {copy} AS c SET matching_tags_snapshot = s.snapshot, updated_at = now() AT TIME ZONE 'utc'
FROM snapshots s
WHERE c.me_file_id = s.me_file_id AND c.target_band_id = s.band_id AND c.matching_tags_snapshot IS NULL",
                    snapshots_of_pairs(&format!(
                        "SELECT DISTINCT c.me_file_id, c.target_band_id AS band_id FROM {copy} c \
                         WHERE c.matching_tags_snapshot IS NULL AND c.me_file_id IS NOT NULL \
                         AND c.target_band_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {populations} p \
                         WHERE p.me_file_id = c.me_file_id AND p.target_band_id = c.target_band_id)"
                    ))
                ))
                .await?
                .rows_affected();
        }
        Ok(written)
    }

    /// Up to `limit` rows of `table` (`target_populations`, `offers` or `ad_events`) after
    /// id `after`, by id: (id, snapshot as PostgreSQL's text of the jsonb, so equal
    /// snapshots compare equal). For comparing two databases page by page.
    pub async fn snapshots_after(
        &self,
        table: &str,
        after: i64,
        limit: u64,
    ) -> Result<Vec<(i64, Option<String>)>, RepoError> {
        self.require_postgres()?;
        let rows: Vec<IdSnapshot> = self
            .db
            .fetch_all(
                self.db.conn(),
                format!(
                    "SELECT id::bigint AS id, matching_tags_snapshot::jsonb::text AS snapshot \
                     FROM {table} WHERE id > $1 ORDER BY id LIMIT $2"
                ),
                vec![Value::from(after), Value::from(limit as i64)],
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.id, r.snapshot)).collect())
    }
}

/// Test oracles: what the jobs should have stored, computed by the set-based SQL above,
/// which shares no code with the jobs (no planner, no domain rules, no band metadata read).
impl ReferenceRepo<'_> {
    /// Up to `limit` rows, described, where the target's stored populations and the
    /// set-based computation differ (either way); empty when they agree. Rows without a
    /// me_file are orphans no job writes: not compared.
    pub async fn population_differences_from_sql(
        &self,
        target_id: i64,
        limit: u64,
    ) -> Result<Vec<String>, RepoError> {
        self.require_postgres()?;
        let stored = "SELECT p.target_band_id::bigint AS band_id, p.me_file_id::bigint AS me_file_id, \
                      p.matching_tags_snapshot::jsonb AS snapshot \
                      FROM target_populations p JOIN target_bands b ON b.id = p.target_band_id \
                      WHERE b.target_id = $1 AND p.me_file_id IS NOT NULL";
        let computed = format!(
            "SELECT band_id::bigint, me_file_id::bigint, snapshot FROM ({}) AS r",
            target_population_sql()
        );
        let rows: Vec<PopulationDifference> = self
            .db
            .fetch_all(
                self.db.conn(),
                format!(
                    "SELECT side, band_id, me_file_id, snapshot::text AS snapshot FROM ( \
                       SELECT 'stored, not computed' AS side, * FROM ({stored} EXCEPT ALL {computed}) a \
                       UNION ALL \
                       SELECT 'computed, not stored' AS side, * FROM ({computed} EXCEPT ALL {stored}) b \
                     ) d ORDER BY me_file_id, side LIMIT $2"
                ),
                vec![Value::from(target_id), Value::from(limit as i64)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                format!(
                    "{}: band {}, me_file {}, {}",
                    row.side,
                    row.band_id,
                    row.me_file_id,
                    row.snapshot.as_deref().unwrap_or("NULL")
                )
            })
            .collect())
    }

    /// Rows of `table` among `ids` whose snapshot is not what a backfill owes them, up to
    /// `limit`, described. A population is owed one computed from tags; an offer or ad_event
    /// its population's snapshot when that exists, else one computed from tags (an orphan);
    /// a row whose band does not exist, or with a NULL reference, stays NULL.
    pub async fn snapshot_differences_from_sql(
        &self,
        table: &str,
        ids: &[i64],
        limit: u64,
    ) -> Result<Vec<String>, RepoError> {
        self.require_postgres()?;
        let snapshots = snapshots_of_pairs(&format!(
            "SELECT me_file_id, target_band_id AS band_id FROM {table} WHERE id = ANY($1)"
        ));
        let (population_join, owed) = if table == "target_populations" {
            ("", "s.snapshot")
        } else {
            (
                "LEFT JOIN target_populations p \
                 ON p.me_file_id = c.me_file_id AND p.target_band_id = c.target_band_id",
                "COALESCE(p.matching_tags_snapshot::jsonb, s.snapshot)",
            )
        };
        let rows: Vec<SnapshotDifference> = self
            .db
            .fetch_all(
                self.db.conn(),
                // MATERIALIZED: inlined, the `LIMIT` made the planner pick a fast-start
                // nested loop over the snapshots for every row (37 s for 27K populations
                // where the hash join takes 0.5 s), as differences are rare.
                format!(
                    "{snapshots}, expected AS MATERIALIZED ( \
                       SELECT c.id, c.matching_tags_snapshot::jsonb AS stored, {owed} AS owed \
                       FROM {table} c {population_join} \
                       LEFT JOIN snapshots s \
                         ON s.me_file_id = c.me_file_id AND s.band_id = c.target_band_id \
                       WHERE c.id = ANY($1)) \
                     SELECT id::bigint AS id, stored::text AS stored, owed::text AS owed \
                     FROM expected \
                     WHERE stored IS DISTINCT FROM owed ORDER BY id LIMIT $2"
                ),
                vec![Value::from(ids.to_vec()), Value::from(limit as i64)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                format!(
                    "{table} {}: stored {}, owed {}",
                    row.id,
                    row.stored.as_deref().unwrap_or("NULL"),
                    row.owed.as_deref().unwrap_or("NULL")
                )
            })
            .collect())
    }
}

impl ReferenceRepo<'_> {
    /// Whether the backfill's in-database copy takes `snapshot` (JSON text) as well-formed
    /// (PostgreSQL), for tests that hold it to the domain's parse.
    pub async fn snapshot_is_well_formed(&self, snapshot: &str) -> Result<bool, RepoError> {
        self.require_postgres()?;
        let row: WellFormed = self
            .db
            .fetch_one(
                self.db.conn(),
                "snapshot check",
                format!(
                    "SELECT {} AS well_formed FROM (SELECT $1::jsonb AS s) AS t",
                    crate::platform::backfill::well_formed_snapshot_sql("t.s")
                ),
                vec![Value::from(snapshot)],
            )
            .await?;
        Ok(row.well_formed)
    }
}

#[derive(FromQueryResult)]
struct WellFormed {
    well_formed: bool,
}

#[derive(sea_orm::FromQueryResult)]
struct ObanStateRow {
    state: String,
}

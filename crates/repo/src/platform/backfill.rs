use crate::batch::RowBatch;
use crate::rows::{Count, MeFileBand, Present};
use crate::{Backend, Db, FastPath, RepoError};
use domain::{BandId, MeFileId, PopulationId};
use entity::Id;
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use std::collections::HashMap;

/// The tables whose snapshot is a copy of a population's: never overwritten once set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopyTable {
    Offers,
    AdEvents,
}

impl CopyTable {
    pub const ALL: [CopyTable; 2] = [CopyTable::Offers, CopyTable::AdEvents];

    pub fn name(self) -> &'static str {
        match self {
            CopyTable::Offers => "offers",
            CopyTable::AdEvents => "ad_events",
        }
    }
}

/// Rows written by [`BackfillRepo::fill_populations_and_copies`], per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilledRows {
    pub populations: u64,
    pub offers: u64,
    pub ad_events: u64,
}

#[derive(FromQueryResult)]
struct FilledRecord {
    populations: i64,
    offers: i64,
    ad_events: i64,
}

/// A population with a NULL snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NullPopulation {
    pub id: PopulationId,
    pub band_id: BandId,
    pub me_file_id: MeFileId,
}

#[derive(FromQueryResult)]
struct NullPopulationRecord {
    id: Id,
    band_id: Id,
    me_file_id: Id,
}

/// `SELECT me_file_id, band_id, snapshot`: a population's snapshot by its pair.
#[derive(FromQueryResult)]
struct PairSnapshot {
    me_file_id: Id,
    band_id: Id,
    snapshot: Option<String>,
}

/// `SELECT me_file_id, band_id, count`: rows written per pair.
#[derive(FromQueryResult)]
struct PairCount {
    me_file_id: Id,
    band_id: Id,
    count: i64,
}

/// `SELECT id, me_file_id, band_id` of a copy table's row.
#[derive(FromQueryResult)]
struct CopyRow {
    id: Id,
    me_file_id: Id,
    band_id: Id,
}

/// One line of `EXPLAIN`'s output.
#[derive(FromQueryResult)]
struct PlanLine {
    #[sea_orm(from_alias = "QUERY PLAN")]
    line: String,
}

/// The backfiller's reads and writes of NULL snapshots. Every read of NULL rows goes through
/// the partial `*_null_snapshot_idx` indexes; every write re-checks `IS NULL`, so a snapshot
/// written meanwhile by the populator or the syncer is never overwritten.
pub struct BackfillRepo<'a, C = crate::PoolConn> {
    pub(crate) db: &'a Db,
    /// The pool, or the transaction of a [`crate::Tx`].
    pub(crate) conn: &'a C,
}

impl<C: ConnectionTrait> BackfillRepo<'_, C> {
    /// Whether each table has a NULL snapshot (within `bands` when given): three index probes.
    pub async fn nulls_present(&self, bands: Option<&[BandId]>) -> Result<[bool; 3], RepoError> {
        let mut present = [false; 3];
        for (i, table) in ["target_populations", "offers", "ad_events"]
            .iter()
            .enumerate()
        {
            let (filter, values) = self.band_filter(bands, 1);
            let row: Option<Present> = self
                .db
                .fetch_optional(
                    self.conn,
                    format!(
                        "SELECT 1 AS present FROM {table} \
                         WHERE matching_tags_snapshot IS NULL{filter} LIMIT 1"
                    ),
                    values,
                )
                .await?;
            present[i] = row.is_some();
        }
        Ok(present)
    }

    /// NULL snapshots per table (within `bands` when given), for progress totals.
    pub async fn null_counts(&self, bands: Option<&[BandId]>) -> Result<[i64; 3], RepoError> {
        self.count_null_snapshots(bands, "").await
    }

    /// Rows with a NULL snapshot whose band or me_file reference is NULL (the platform allows
    /// it in `target_populations` and `ad_events`), per table, within `bands` when given.
    /// Nothing can say which snapshot they should carry: the backfill counts them and leaves
    /// them as they are.
    pub async fn null_rows_without_references(
        &self,
        bands: Option<&[BandId]>,
    ) -> Result<[i64; 3], RepoError> {
        self.count_null_snapshots(bands, " AND (target_band_id IS NULL OR me_file_id IS NULL)")
            .await
    }

    async fn count_null_snapshots(
        &self,
        bands: Option<&[BandId]>,
        condition: &str,
    ) -> Result<[i64; 3], RepoError> {
        let mut counts = [0; 3];
        for (i, table) in ["target_populations", "offers", "ad_events"]
            .iter()
            .enumerate()
        {
            let (filter, values) = self.band_filter(bands, 1);
            let row: Count = self
                .db
                .fetch_one(
                    self.conn,
                    "NULL snapshot count",
                    format!(
                        "SELECT COUNT(*) AS count FROM {table} \
                         WHERE matching_tags_snapshot IS NULL{filter}{condition}"
                    ),
                    values,
                )
                .await?;
            counts[i] = row.count;
        }
        Ok(counts)
    }

    /// The next populations with a NULL snapshot after population id `after`, by id; rows
    /// whose band or me_file is NULL are skipped (see [`Self::null_rows_without_references`]).
    pub async fn null_populations_after(
        &self,
        after: PopulationId,
        limit: u64,
        bands: Option<&[BandId]>,
    ) -> Result<Vec<NullPopulation>, RepoError> {
        let (filter, mut values) = self.band_filter(bands, 3);
        values.insert(0, Value::from(after.0));
        values.insert(1, Value::from(limit as i64));
        let rows: Vec<NullPopulationRecord> = self
            .db
            .fetch_all(self.conn, null_populations_sql(&filter), values)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| NullPopulation {
                id: PopulationId(row.id.0),
                band_id: BandId(row.band_id.0),
                me_file_id: MeFileId(row.me_file_id.0),
            })
            .collect())
    }

    /// Writes snapshots of populations that are still NULL; returns rows written.
    pub async fn fill_populations(
        &self,
        snapshots: &[(PopulationId, String)],
    ) -> Result<u64, RepoError> {
        if snapshots.is_empty() {
            return Ok(0);
        }
        let (conn, db) = (self.conn, self.db);
        let now = db.timestamp_now_sql();
        let (rows, values) = RowBatch::new()
            .ids("id", snapshots.iter().map(|s| s.0.0))
            .json("snapshot", snapshots.iter().map(|s| s.1.as_str()))
            .source(db, 1);
        let sql = format!(
            "UPDATE target_populations AS p SET matching_tags_snapshot = u.snapshot, \
             updated_at = {now} FROM {rows} AS u \
             WHERE p.id = u.id AND p.matching_tags_snapshot IS NULL"
        );
        db.execute(conn, sql, values).await
    }

    /// Writes snapshots of populations that are still NULL and, in the same statement, copies
    /// each snapshot written into the rows of offers and ad_events on that population's
    /// (me_file, band) that are still NULL. The copies take only what this statement wrote
    /// (its `RETURNING`), snapshots the backfill built, so no shape check is needed; rows on
    /// populations that were already set are left to the copy phase. Only with
    /// [`FastPath::CopiesInDatabase`] (elsewhere [`Self::fill_populations`] and the copy
    /// phase). Call it on a [`crate::Tx`]: it turns hash and merge joins off for the rest of
    /// the transaction.
    pub async fn fill_populations_and_copies(
        &self,
        snapshots: &[(PopulationId, String)],
    ) -> Result<FilledRows, RepoError> {
        self.db.require_fast_path(FastPath::CopiesInDatabase)?;
        if snapshots.is_empty() {
            return Ok(FilledRows::default());
        }
        let db = self.db;
        let now = db.timestamp_now_sql();
        let (rows, values) = RowBatch::new()
            .ids("id", snapshots.iter().map(|s| s.0.0))
            .json("snapshot", snapshots.iter().map(|s| s.1.as_str()))
            .source(db, 1);
        // One index lookup per population written: with hash joins PostgreSQL may hash every
        // NULL offer for each batch (the partial index makes that scan look cheap).
        self.index_lookups_only().await?;
        let copy = |table: &str| {
            format!(
                "UPDATE {table} AS c SET matching_tags_snapshot = f.snapshot, updated_at = {now} \
                 FROM filled AS f WHERE c.me_file_id = f.me_file_id \
                 AND c.target_band_id = f.band_id AND c.matching_tags_snapshot IS NULL \
                 RETURNING 1"
            )
        };
        let counts: FilledRecord = db
            .fetch_one(
                self.conn,
                "populations and copies fill",
                format!(
                    "WITH filled AS ( \
                       UPDATE target_populations AS p SET matching_tags_snapshot = u.snapshot, \
                       updated_at = {now} FROM {rows} AS u \
                       WHERE p.id = u.id AND p.matching_tags_snapshot IS NULL \
                       RETURNING p.me_file_id, p.target_band_id AS band_id, \
                       p.matching_tags_snapshot AS snapshot), \
                     offers_copied AS ({}), ad_events_copied AS ({}) \
                     SELECT (SELECT COUNT(*) FROM filled) AS populations, \
                     (SELECT COUNT(*) FROM offers_copied) AS offers, \
                     (SELECT COUNT(*) FROM ad_events_copied) AS ad_events",
                    copy(CopyTable::Offers.name()),
                    copy(CopyTable::AdEvents.name()),
                ),
                values,
            )
            .await?;
        Ok(FilledRows {
            populations: counts.populations as u64,
            offers: counts.offers as u64,
            ad_events: counts.ad_events as u64,
        })
    }

    /// The next distinct (me_file, band) pairs with a NULL snapshot in `table` after `after`.
    pub async fn null_pairs_after(
        &self,
        table: CopyTable,
        after: (MeFileId, BandId),
        limit: u64,
        bands: Option<&[BandId]>,
    ) -> Result<Vec<(MeFileId, BandId)>, RepoError> {
        let (filter, mut values) = self.band_filter(bands, 4);
        values.insert(0, Value::from(after.0.0));
        values.insert(1, Value::from(after.1.0));
        values.insert(2, Value::from(limit as i64));
        let rows: Vec<MeFileBand> = self
            .db
            .fetch_all(self.conn, null_pairs_sql(table, &filter), values)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (MeFileId(row.me_file_id.0), BandId(row.band_id.0)))
            .collect())
    }

    /// The snapshots (JSON text) of the populations of `pairs` that exist, `None` where the
    /// population's own snapshot is still NULL.
    pub async fn population_snapshots(
        &self,
        pairs: &[(MeFileId, BandId)],
    ) -> Result<HashMap<(MeFileId, BandId), Option<String>>, RepoError> {
        if pairs.is_empty() {
            return Ok(HashMap::new());
        }
        let db = self.db;
        let (of_pairs, values) = self.pair_columns_filter(pairs);
        let rows: Vec<PairSnapshot> = db
            .fetch_all(
                self.conn,
                format!(
                    "SELECT me_file_id, target_band_id AS band_id, {} AS snapshot \
                     FROM target_populations WHERE {of_pairs}",
                    db.snapshot_text("matching_tags_snapshot"),
                ),
                values,
            )
            .await?;
        let wanted: std::collections::HashSet<(MeFileId, BandId)> = pairs.iter().copied().collect();
        let mut found = HashMap::new();
        for row in rows {
            let key = (MeFileId(row.me_file_id.0), BandId(row.band_id.0));
            if wanted.contains(&key) {
                found.insert(key, row.snapshot);
            }
        }
        Ok(found)
    }

    /// Copies, inside the database, each pair's population snapshot into the rows of `table`
    /// on that pair that are still NULL, where the population's snapshot is well-formed
    /// ([`well_formed_snapshot_sql`]); returns the rows written per pair copied. Nothing
    /// travels but the pairs. Only with [`FastPath::CopiesInDatabase`] (elsewhere every pair
    /// goes to [`Self::fill_copies`]). Call it on a [`crate::Tx`]: it turns hash and merge
    /// joins off for the rest of the transaction.
    pub async fn copy_population_snapshots(
        &self,
        table: CopyTable,
        pairs: &[(MeFileId, BandId)],
    ) -> Result<HashMap<(MeFileId, BandId), u64>, RepoError> {
        self.db.require_fast_path(FastPath::CopiesInDatabase)?;
        if pairs.is_empty() {
            return Ok(HashMap::new());
        }
        let db = self.db;
        let now = db.timestamp_now_sql();
        let name = table.name();
        let (keys, values) = RowBatch::new()
            .ids("me_file_id", pairs.iter().map(|p| p.0.0))
            .ids("band_id", pairs.iter().map(|p| p.1.0))
            .source(db, 1);
        // Index lookups per pair, whatever the batch size: planned for the batch's real size
        // (a custom plan), PostgreSQL hashed every population for each batch (0.5 s a batch
        // of 20,000 at 200,000 populations, growing with the table). `set_config(.., true)`
        // lasts until the end of the caller's transaction.
        self.index_lookups_only().await?;
        let rows: Vec<PairCount> = db
            .fetch_all(
                self.conn,
                // The batch's populations first (MATERIALIZED), and the shape check on them
                // only: left in the join, the planner may push it into a scan of every
                // population (2.4 s a batch instead of 0.1 s, seen with custom plans).
                format!(
                    "WITH source AS MATERIALIZED ( \
                       SELECT k.me_file_id, k.band_id, p.matching_tags_snapshot AS snapshot \
                       FROM {keys} AS k JOIN target_populations AS p \
                       ON p.me_file_id = k.me_file_id AND p.target_band_id = k.band_id), \
                     copied AS ( \
                       UPDATE {name} AS c SET matching_tags_snapshot = s.snapshot, \
                       updated_at = {now} FROM source AS s \
                       WHERE c.me_file_id = s.me_file_id AND c.target_band_id = s.band_id \
                       AND c.matching_tags_snapshot IS NULL AND {} \
                       RETURNING c.me_file_id, c.target_band_id) \
                     SELECT me_file_id, target_band_id AS band_id, COUNT(*) AS count \
                     FROM copied GROUP BY me_file_id, target_band_id",
                    well_formed_snapshot_sql("s.snapshot::jsonb")
                ),
                values,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    (MeFileId(row.me_file_id.0), BandId(row.band_id.0)),
                    row.count as u64,
                )
            })
            .collect())
    }

    /// Writes the snapshot of every row of `table` on each (me_file, band) that is still
    /// NULL; returns rows written.
    pub async fn fill_copies(
        &self,
        table: CopyTable,
        snapshots: &[(MeFileId, BandId, String)],
    ) -> Result<u64, RepoError> {
        let conn = self.conn;
        if snapshots.is_empty() {
            return Ok(0);
        }
        let db = self.db;
        let now = db.timestamp_now_sql();
        let name = table.name();
        let (rows, values) = RowBatch::new()
            .ids("me_file_id", snapshots.iter().map(|s| s.0.0))
            .ids("band_id", snapshots.iter().map(|s| s.1.0))
            .json("snapshot", snapshots.iter().map(|s| s.2.as_str()))
            .source(db, 1);
        let sql = format!(
            "UPDATE {name} AS c SET matching_tags_snapshot = u.snapshot, updated_at = {now} \
             FROM {rows} AS u WHERE c.me_file_id = u.me_file_id AND c.target_band_id = u.band_id \
             AND c.matching_tags_snapshot IS NULL"
        );
        db.execute(conn, sql, values).await
    }

    /// Replaces populations' malformed snapshots: each of `rows` is (me_file, band, the
    /// text read, the new snapshot); a population whose snapshot changed since it was read
    /// is left alone. Returns rows written.
    pub async fn replace_malformed_population_snapshots(
        &self,
        rows: &[(MeFileId, BandId, String, String)],
    ) -> Result<u64, RepoError> {
        let conn = self.conn;
        let db = self.db;
        let now = db.timestamp_now_sql();
        let (new, old) = match db.backend() {
            Backend::Postgres => ("$4::jsonb", "matching_tags_snapshot::text = $3"),
            Backend::Sqlite => ("$4", "matching_tags_snapshot = $3"),
        };
        let mut written = 0;
        for (me_file, band, read, snapshot) in rows {
            written += db
                .execute(
                    conn,
                    format!(
                        "UPDATE target_populations SET matching_tags_snapshot = {new}, \
                         updated_at = {now} WHERE me_file_id = $1 AND target_band_id = $2 AND {old}"
                    ),
                    vec![
                        Value::from(me_file.0),
                        Value::from(band.0),
                        Value::from(read.clone()),
                        Value::from(snapshot.clone()),
                    ],
                )
                .await?;
        }
        Ok(written)
    }

    /// Ids of the rows of `table` on `pairs` that are NULL (for logging rows left unfixed).
    pub async fn null_copy_ids(
        &self,
        table: CopyTable,
        pairs: &[(MeFileId, BandId)],
    ) -> Result<Vec<i64>, RepoError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let (of_pairs, values) = self.pair_columns_filter(pairs);
        let rows: Vec<CopyRow> = self
            .db
            .fetch_all(
                self.conn,
                format!(
                    "SELECT id, me_file_id, target_band_id AS band_id FROM {} \
                     WHERE matching_tags_snapshot IS NULL AND {of_pairs} ORDER BY id",
                    table.name(),
                ),
                values,
            )
            .await?;
        let wanted: std::collections::HashSet<(i64, i64)> =
            pairs.iter().map(|p| (p.0.0, p.1.0)).collect();
        Ok(rows
            .into_iter()
            .filter(|row| wanted.contains(&(row.me_file_id.0, row.band_id.0)))
            .map(|row| row.id.0)
            .collect())
    }

    /// `EXPLAIN` of the three NULL-finding queries of a whole-database run, as PostgreSQL
    /// plans them now: (query, plan lines).
    pub async fn explain_null_queries(
        &self,
        batch: u64,
    ) -> Result<Vec<(String, String)>, RepoError> {
        let mut plans = Vec::new();
        let queries = [
            (
                null_populations_sql(""),
                vec![Value::from(0i64), Value::from(batch as i64)],
            ),
            (
                null_pairs_sql(CopyTable::Offers, ""),
                vec![
                    Value::from(i64::MIN),
                    Value::from(i64::MIN),
                    Value::from(batch as i64),
                ],
            ),
            (
                null_pairs_sql(CopyTable::AdEvents, ""),
                vec![
                    Value::from(i64::MIN),
                    Value::from(i64::MIN),
                    Value::from(batch as i64),
                ],
            ),
        ];
        for (sql, values) in queries {
            let rows: Vec<PlanLine> = self
                .db
                .fetch_all(self.conn, format!("EXPLAIN {sql}"), values)
                .await?;
            let plan: Vec<String> = rows.into_iter().map(|r| r.line).collect();
            plans.push((sql, plan.join("\n")));
        }
        Ok(plans)
    }

    /// Turns hash and merge joins off until the end of the caller's transaction: a batch's
    /// joins become one index lookup per row, whatever PostgreSQL estimates.
    async fn index_lookups_only(&self) -> Result<(), RepoError> {
        self.db
            .execute(
                self.conn,
                "SELECT set_config('enable_hashjoin', 'off', true), \
                 set_config('enable_mergejoin', 'off', true)",
                vec![],
            )
            .await?;
        Ok(())
    }

    /// Rows whose me_file is one of `pairs`' and whose band is one of `pairs`' (bound at `$1`
    /// and `$2`): a superset of the pairs, which the caller narrows to them.
    fn pair_columns_filter(&self, pairs: &[(MeFileId, BandId)]) -> (String, Vec<Value>) {
        let me_files: Vec<i64> = pairs.iter().map(|p| p.0.0).collect();
        let bands: Vec<i64> = pairs.iter().map(|p| p.1.0).collect();
        (
            format!(
                "{} AND {}",
                self.db.in_id_list("me_file_id", 1),
                self.db.in_id_list("target_band_id", 2)
            ),
            vec![self.db.id_list(&me_files), self.db.id_list(&bands)],
        )
    }

    /// ` AND target_band_id IN (...)` bound at `$param`, or nothing.
    fn band_filter(&self, bands: Option<&[BandId]>, param: usize) -> (String, Vec<Value>) {
        match bands {
            None => (String::new(), vec![]),
            Some(bands) => {
                let ids: Vec<i64> = bands.iter().map(|b| b.0).collect();
                (
                    format!(" AND {}", self.db.in_id_list("target_band_id", param)),
                    vec![self.db.id_list(&ids)],
                )
            }
        }
    }
}

fn null_populations_sql(filter: &str) -> String {
    format!(
        "SELECT id, target_band_id AS band_id, me_file_id FROM target_populations \
         WHERE matching_tags_snapshot IS NULL AND id > $1{filter} \
         AND target_band_id IS NOT NULL AND me_file_id IS NOT NULL ORDER BY id LIMIT $2"
    )
}

fn null_pairs_sql(table: CopyTable, filter: &str) -> String {
    format!(
        "SELECT DISTINCT me_file_id, target_band_id AS band_id FROM {} \
         WHERE matching_tags_snapshot IS NULL AND (me_file_id, target_band_id) > ($1, $2){filter} \
         AND me_file_id IS NOT NULL AND target_band_id IS NOT NULL \
         ORDER BY me_file_id, target_band_id LIMIT $3",
        table.name()
    )
}

/// Whether the jsonb `snapshot` has the shape of a snapshot (PostgreSQL): `{"tags": [[id,
/// name, order, [[id, value, order], ...]], ...]}` with ids and orders integers of at most 9
/// digits (orders may be NULL). Stricter than `domain::Snapshot::from_json` (which takes any
/// 64-bit id and 32-bit order), never looser: what passes here parses there, so copying it
/// inside the database copies nothing the backfill would refuse; what fails here goes
/// through the process, where the domain decides.
///
/// Two cheap checks, about 2 µs a row (numeric comparisons inside the jsonpath cost four
/// times as much): a jsonpath over the types and sizes (it errors, NULL so refused, where
/// `tags` is missing or not an array), and a regular expression over PostgreSQL's text of
/// the jsonb, where every number in an array follows `[` or a space and precedes `,` or `]`,
/// refusing a decimal (`1.0`, which serde refuses as an id) or a number of 10 digits or more.
/// A tag value holding such text (`" 2.5,"`) takes the slower way.
pub(crate) fn well_formed_snapshot_sql(snapshot: &str) -> String {
    let child = "@.type() == \"array\" && @.size() == 3 && @[0].type() == \"number\" \
                 && @[1].type() == \"string\" \
                 && (@[2].type() == \"number\" || @[2].type() == \"null\")";
    let parent = "@.type() == \"array\" && @.size() == 4 && @[0].type() == \"number\" \
                  && @[1].type() == \"string\" \
                  && (@[2].type() == \"number\" || @[2].type() == \"null\") \
                  && @[3].type() == \"array\"";
    // The parents that are not well-formed, or hold a child that is not.
    let malformed_parents =
        format!("strict $.tags[*] ? (!({parent} && !(exists(@[3][*] ? (!({child}))))))");
    format!(
        "(COALESCE(NOT ({snapshot} @? '{malformed_parents}'), false) \
         AND {snapshot}::text !~ '[\\[ ]-?([0-9]+\\.[0-9]+|[0-9]{{10,}})[],]')"
    )
}

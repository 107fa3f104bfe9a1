use crate::batch::RowBatch;
use crate::rows::{Count, IdOnly};
use crate::{Backend, Db, RepoError};
use domain::{BandId, MeFileId, PopulationId, TargetId};
use entity::Id;
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

/// One `target_populations` row, its snapshot as JSON text (`None` when NULL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PopulationRow {
    pub id: PopulationId,
    pub band_id: BandId,
    pub me_file_id: MeFileId,
    pub snapshot: Option<String>,
}

/// A keyset page of a target's populations, ordered by (me_file_id, id).
#[derive(Clone, Debug)]
pub struct PopulationPage {
    pub rows: Vec<PopulationRow>,
    /// Pass back as `after` for the next page; `None` when this was the last page.
    pub next: Option<(MeFileId, PopulationId)>,
}

/// How [`PopulationRow`] is read: `SELECT id, band_id, me_file_id, snapshot`.
#[derive(FromQueryResult)]
struct PopulationRecord {
    id: Id,
    band_id: Id,
    me_file_id: Id,
    snapshot: Option<String>,
}

/// `... RETURNING me_file_id` of a deleted population.
#[derive(FromQueryResult)]
struct GoneRow {
    me_file_id: Id,
}

impl From<PopulationRecord> for PopulationRow {
    fn from(row: PopulationRecord) -> Self {
        PopulationRow {
            id: PopulationId(row.id.0),
            band_id: BandId(row.band_id.0),
            me_file_id: MeFileId(row.me_file_id.0),
            snapshot: row.snapshot,
        }
    }
}

/// Reads and writes of `target_populations`.
pub struct PopulationRepo<'a, C = crate::PoolConn> {
    pub(crate) db: &'a Db,
    /// The pool, or the transaction of a [`crate::Tx`].
    pub(crate) conn: &'a C,
}

impl<C: ConnectionTrait> PopulationRepo<'_, C> {
    /// The populations of a target's bands after `after` (exclusive), at most `limit`.
    pub async fn page_of_target(
        &self,
        target_id: TargetId,
        after: Option<(MeFileId, PopulationId)>,
        limit: u64,
    ) -> Result<PopulationPage, RepoError> {
        let db = self.db;
        let (after_me_file, after_id) = after
            .map(|(m, id)| (m.0, id.0))
            .unwrap_or((i64::MIN, i64::MIN));
        let rows: Vec<PopulationRecord> = db
            .fetch_all(
                self.conn,
                format!(
                    "SELECT p.id, p.target_band_id AS band_id, p.me_file_id, {} AS snapshot \
                     FROM target_populations p JOIN target_bands b ON b.id = p.target_band_id \
                     WHERE b.target_id = $1 AND (p.me_file_id, p.id) > ($2, $3) \
                     ORDER BY p.me_file_id, p.id LIMIT $4",
                    db.snapshot_text("p.matching_tags_snapshot")
                ),
                vec![
                    Value::from(target_id.0),
                    Value::from(after_me_file),
                    Value::from(after_id),
                    Value::from(limit as i64),
                ],
            )
            .await?;
        let rows: Vec<PopulationRow> = rows.into_iter().map(PopulationRow::from).collect();
        let next = (rows.len() as u64 == limit)
            .then(|| rows.last().map(|r| (r.me_file_id, r.id)))
            .flatten();
        Ok(PopulationPage { rows, next })
    }
}

/// One batch of population changes, applied in three statements (delete, update, insert)
/// whatever its size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PopulationChanges {
    /// Population ids to delete.
    pub deletes: Vec<PopulationId>,
    /// Population ids to delete if their me_file no longer exists, checked by the deleting
    /// statement itself: a writer never locked a me_file it did not read, and one registered
    /// (and synced) since the page was read must keep its row.
    pub deletes_if_me_file_gone: Vec<PopulationId>,
    /// Rows to rewrite in place: (population id, band, snapshot JSON). A move changes the
    /// band; a refresh keeps it and changes the snapshot.
    pub updates: Vec<(PopulationId, BandId, String)>,
    /// New rows: (band, me_file, snapshot JSON).
    pub inserts: Vec<(BandId, MeFileId, String)>,
}

impl PopulationChanges {
    /// Adds `other`'s changes to these (one batch for several targets).
    pub fn append(&mut self, other: PopulationChanges) {
        self.deletes.extend(other.deletes);
        self.deletes_if_me_file_gone
            .extend(other.deletes_if_me_file_gone);
        self.updates.extend(other.updates);
        self.inserts.extend(other.inserts);
    }

    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty()
            && self.deletes_if_me_file_gone.is_empty()
            && self.updates.is_empty()
            && self.inserts.is_empty()
    }
}

/// Rows each statement of [`PopulationRepo::apply_changes`] touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppliedChanges {
    /// Both kinds of delete.
    pub deleted: u64,
    /// The me_file of each row deleted because its me_file was gone (one entry per row).
    pub deleted_of_gone_me_files: Vec<MeFileId>,
    pub updated: u64,
    pub inserted: u64,
}

impl<C: ConnectionTrait> PopulationRepo<'_, C> {
    /// Takes the write locks of snapline's writers on `me_file_ids` for the rest of `txn`:
    /// one PostgreSQL advisory lock per range of [`ME_FILE_LOCK_RANGE`] me_file ids
    /// ([`me_file_lock_range`]), in ascending order (so two writers never wait on each other
    /// in a cycle). Every writer takes them before reading tags, so none commits a row
    /// computed from tags another writer has already seen replaced. One lock per range, not
    /// per me_file, keeps PostgreSQL's shared lock table (64 x `max_connections` slots on a
    /// stock server) far from full: a populate batch limits itself to a few ranges. On SQLite
    /// the write transaction itself serializes writers, so there is nothing to take.
    pub async fn lock_me_files(&self, me_file_ids: &[MeFileId]) -> Result<(), RepoError> {
        let txn = self.conn;
        if self.db.backend() != Backend::Postgres || me_file_ids.is_empty() {
            return Ok(());
        }
        self.db
            .execute(
                txn,
                lock_ranges_sql("$1"),
                vec![me_file_lock_ranges(me_file_ids)],
            )
            .await?;
        Ok(())
    }

    /// The populations of `band_ids` whose me_file id is in `(after, up_to]`.
    pub async fn in_me_file_range(
        &self,
        band_ids: &[BandId],
        after: MeFileId,
        up_to: MeFileId,
    ) -> Result<Vec<PopulationRow>, RepoError> {
        let conn = self.conn;
        if band_ids.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.db;
        let bands: Vec<i64> = band_ids.iter().map(|b| b.0).collect();
        let rows: Vec<PopulationRecord> = db
            .fetch_all(
                conn,
                format!(
                    "SELECT id, target_band_id AS band_id, me_file_id, {} AS snapshot \
                     FROM target_populations \
                     WHERE me_file_id > $1 AND me_file_id <= $2 AND {} ORDER BY me_file_id, id",
                    db.snapshot_text("matching_tags_snapshot"),
                    db.in_id_list("target_band_id", 3)
                ),
                vec![
                    Value::from(after.0),
                    Value::from(up_to.0),
                    db.id_list(&bands),
                ],
            )
            .await?;
        Ok(rows.into_iter().map(PopulationRow::from).collect())
    }

    /// Applies one batch: deletes (those of gone me_files re-checked), then in-place rewrites,
    /// then inserts (an insert that
    /// meets an existing (band, me_file) row rewrites its snapshot instead).
    pub async fn apply_changes(
        &self,
        changes: &PopulationChanges,
    ) -> Result<AppliedChanges, RepoError> {
        let txn = self.conn;
        let db = self.db;
        let now = db.timestamp_now_sql();
        let mut applied = AppliedChanges::default();
        if !changes.deletes.is_empty() {
            let sql = format!(
                "DELETE FROM target_populations WHERE {}",
                db.in_id_list("id", 1)
            );
            applied.deleted = db
                .execute(txn, sql, vec![population_id_list(db, &changes.deletes)])
                .await?;
        }
        if !changes.deletes_if_me_file_gone.is_empty() {
            let sql = format!(
                "DELETE FROM target_populations WHERE {} AND NOT EXISTS \
                 (SELECT 1 FROM me_files m WHERE m.id = target_populations.me_file_id)",
                db.in_id_list("id", 1)
            );
            let gone: Vec<GoneRow> = db
                .fetch_all(
                    txn,
                    format!("{sql} RETURNING me_file_id"),
                    vec![population_id_list(db, &changes.deletes_if_me_file_gone)],
                )
                .await?;
            applied.deleted += gone.len() as u64;
            applied.deleted_of_gone_me_files = gone
                .into_iter()
                .map(|row| MeFileId(row.me_file_id.0))
                .collect();
        }
        if !changes.updates.is_empty() {
            let (rows, values) = RowBatch::new()
                .ids("id", changes.updates.iter().map(|u| u.0.0))
                .ids("band_id", changes.updates.iter().map(|u| u.1.0))
                .json("snapshot", changes.updates.iter().map(|u| u.2.as_str()))
                .source(db, 1);
            let sql = format!(
                "UPDATE target_populations AS p SET target_band_id = u.band_id, \
                 matching_tags_snapshot = u.snapshot, updated_at = {now} \
                 FROM {rows} AS u WHERE p.id = u.id"
            );
            applied.updated = db.execute(txn, sql, values).await?;
        }
        if !changes.inserts.is_empty() {
            let (rows, values) = RowBatch::new()
                .ids("band_id", changes.inserts.iter().map(|i| i.0.0))
                .ids("me_file_id", changes.inserts.iter().map(|i| i.1.0))
                .json("snapshot", changes.inserts.iter().map(|i| i.2.as_str()))
                .source(db, 1);
            // `WHERE true` lets SQLite tell the upsert clause from a join constraint.
            let sql = format!(
                "INSERT INTO target_populations \
                 (target_band_id, me_file_id, matching_tags_snapshot, created_at, updated_at) \
                 SELECT u.band_id, u.me_file_id, u.snapshot, {now}, {now} FROM {rows} AS u \
                 WHERE true ON CONFLICT (target_band_id, me_file_id) DO UPDATE SET \
                 matching_tags_snapshot = excluded.matching_tags_snapshot, updated_at = {now}"
            );
            applied.inserted = db.execute(txn, sql, values).await?;
        }
        Ok(applied)
    }
}

impl PopulationRepo<'_, crate::PoolConn> {
    /// Deletes up to `limit` populations of `band_ids`; returns how many (0 when none are
    /// left). Called in a loop, so a big target is removed in bounded transactions.
    pub async fn delete_some_of_bands(
        &self,
        band_ids: &[BandId],
        limit: u64,
    ) -> Result<u64, RepoError> {
        if band_ids.is_empty() {
            return Ok(0);
        }
        let db = self.db;
        let bands: Vec<i64> = band_ids.iter().map(|b| b.0).collect();
        let result = db
            .execute(
                db.conn(),
                format!(
                    "DELETE FROM target_populations WHERE id IN \
                     (SELECT id FROM target_populations WHERE {} LIMIT $2)",
                    db.in_id_list("target_band_id", 1)
                ),
                vec![db.id_list(&bands), Value::from(limit as i64)],
            )
            .await?;
        Ok(result)
    }

    /// Populations whose band no longer exists (the platform has no foreign keys), or whose
    /// band or me_file reference is NULL (the platform's columns allow it). No job reads or
    /// changes them. On the pool, not in a transaction.
    ///
    /// Through the indexes on the band and on the me_file alone: the distinct bands of the
    /// table are walked one index probe each (a recursive CTE, as PostgreSQL has no skip
    /// scan), and only the rows of bands that are gone are counted, in a second statement
    /// (in one, the planner guessed a hundred gone bands, chose a scan of the table and
    /// spent 140 ms compiling it). A scan of the whole table, as before, took 5.4 s at 10M
    /// me_files, in every populate.
    ///
    /// On PostgreSQL both statements are planned at every call (unnamed statements), not
    /// once per connection: a long-lived process's first populate planned the walk while
    /// `target_populations` was nearly empty (a scan of the table per band is cheapest then)
    /// and, with no `ANALYZE` in between to invalidate it, kept that plan as the table grew:
    /// a hundred populates in one process took over a minute each at 4.5M rows.
    pub async fn count_orphans(&self) -> Result<i64, RepoError> {
        let db = self.db;
        const GONE_BANDS: &str = "WITH RECURSIVE bands(id) AS ( \
               SELECT MIN(target_band_id) FROM target_populations \
               UNION ALL \
               SELECT (SELECT MIN(p.target_band_id) FROM target_populations p \
                       WHERE p.target_band_id > bands.id) \
               FROM bands WHERE bands.id IS NOT NULL) \
             SELECT CAST(bands.id AS BIGINT) AS id FROM bands WHERE bands.id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM target_bands b WHERE b.id = bands.id)";
        let count_sql = format!(
            "SELECT CAST((SELECT COUNT(*) FROM target_populations WHERE me_file_id IS NULL) \
             + (SELECT COUNT(*) FROM target_populations \
                WHERE target_band_id IS NULL AND me_file_id IS NOT NULL) \
             + (SELECT COUNT(*) FROM target_populations \
                WHERE me_file_id IS NOT NULL AND {}) AS BIGINT) AS count",
            db.in_id_list("target_band_id", 1)
        );
        if let Some(pool) = db.pg_pool() {
            let gone: Vec<i64> = sqlx::query_scalar(GONE_BANDS)
                .persistent(false)
                .fetch_all(pool)
                .await?;
            // Built from constants alone (the id list is a bound parameter).
            let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql))
                .bind(gone)
                .persistent(false)
                .fetch_one(pool)
                .await?;
            return Ok(count);
        }
        let gone: Vec<IdOnly> = db.fetch_all(db.conn(), GONE_BANDS, vec![]).await?;
        let gone: Vec<i64> = gone.into_iter().map(|band| band.id.0).collect();
        let orphans: Count = db
            .fetch_one(
                db.conn(),
                "orphan populations",
                count_sql,
                vec![db.id_list(&gone)],
            )
            .await?;
        Ok(orphans.count)
    }
}

fn population_id_list(db: &Db, ids: &[PopulationId]) -> Value {
    db.id_list(&ids.iter().map(|id| id.0).collect::<Vec<i64>>())
}

/// The advisory-lock key space of snapline's per-me_file locks ("SNAP").
const ME_FILE_LOCK_SPACE: i32 = 0x534E_4150;

/// Me_file ids per write lock: ids `[k * R, (k + 1) * R)` share lock `k`.
pub const ME_FILE_LOCK_RANGE: i64 = 1024;

/// The lock range of a me_file (its id divided by [`ME_FILE_LOCK_RANGE`], rounded down).
pub fn me_file_lock_range(me_file: MeFileId) -> i64 {
    me_file.0.div_euclid(ME_FILE_LOCK_RANGE)
}

/// The call that takes the lock of range `expr` (PostgreSQL).
fn range_lock_sql(expr: &str) -> String {
    format!("pg_advisory_xact_lock({ME_FILE_LOCK_SPACE}, CAST(({expr}) % 2147483647 AS INTEGER))")
}

/// The lock ranges of `me_files`, ascending and distinct, as one `bigint[]` parameter for
/// [`lock_ranges_sql`].
pub(crate) fn me_file_lock_ranges(me_files: &[MeFileId]) -> Value {
    let mut ranges: Vec<i64> = me_files.iter().map(|m| me_file_lock_range(*m)).collect();
    ranges.sort_unstable();
    ranges.dedup();
    Value::from(ranges)
}

/// A statement taking the locks of the ranges in `param` ([`me_file_lock_ranges`]) one by
/// one in ascending order, the order every writer takes them in (so two writers never wait
/// on each other in a cycle); it returns how many it took.
pub(crate) fn lock_ranges_sql(param: &str) -> String {
    format!(
        "SELECT COUNT({}) FROM (SELECT r FROM unnest({param}::bigint[]) AS r ORDER BY r) AS ordered",
        range_lock_sql("r")
    )
}

impl PopulationRepo<'_, crate::PoolConn> {
    /// Sets the snapshot of every `every`-th population (by id) to NULL, as a writer from
    /// before snapshots did; returns how many. For the demo and tests of the backfill: no job
    /// calls it.
    pub async fn forget_snapshots(&self, every: i64) -> Result<u64, RepoError> {
        let db = self.db;
        let result = db
            .execute(
                db.conn(),
                "UPDATE target_populations SET matching_tags_snapshot = NULL \
                 WHERE id % $1 = 0 AND matching_tags_snapshot IS NOT NULL",
                vec![every.max(1).into()],
            )
            .await?;
        Ok(result)
    }
}

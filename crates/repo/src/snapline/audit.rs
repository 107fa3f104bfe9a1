//! The reads of an audit that no writer needs (a random sample of me_files, the NULL copies
//! in a scope with a few of their ids) and `snapline_audits`, the last audit of the whole
//! database. The audit reads populations and tags through the same statements as the
//! populate and the sync, so it judges what they read.

use crate::rows::{Count, IdOnly};
use crate::{CopyTable, Db, RepoError};
use domain::{BandId, MeFileId};
use sea_orm::{FromQueryResult, Value};

/// Audits and their record.
pub struct AuditRepo<'a> {
    pub(crate) db: &'a Db,
}

/// NULL snapshots of one copy table in a scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NullCopies {
    /// Those a backfill can fill: both references set, the band still there.
    pub count: i64,
    /// Those it cannot: a NULL reference, or a band that no longer exists.
    pub unrepairable: i64,
    /// The lowest ids, at most as many as asked for.
    pub examples: Vec<(i64, Option<i64>)>,
}

#[derive(FromQueryResult)]
struct RepairableCounts {
    /// NULL when no row matches (a SUM of nothing).
    repairable: Option<i64>,
    all_nulls: i64,
}

#[derive(FromQueryResult)]
struct CopyExample {
    id: entity::Id,
    me_file_id: Option<entity::Id>,
}

/// The last audit of one kind of run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, FromQueryResult)]
pub struct AuditRecord {
    /// `scheduled` (the sampled audit on `audit.schedule`) or `snapctl` (a whole audit).
    pub run: String,
    /// Unix seconds, the database's clock.
    pub finished_at: i64,
    /// The replica or host that ran it.
    pub ran_by: String,
    /// Rows of drift found (confirmed), all kinds.
    pub drift: i64,
    /// The audit's report as JSON.
    pub report: String,
}

impl AuditRepo<'_> {
    /// How many me_files there are (the total of an audit's progress).
    pub async fn me_file_count(&self) -> Result<u64, RepoError> {
        let row: Count = self
            .db
            .fetch_one(
                self.db.conn(),
                "me_file count",
                "SELECT COUNT(*) AS count FROM me_files",
                vec![],
            )
            .await?;
        Ok(row.count as u64)
    }

    /// Up to `n` me_file ids drawn at random, ascending.
    pub async fn sample_me_files(&self, n: u64) -> Result<Vec<MeFileId>, RepoError> {
        let rows: Vec<IdOnly> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT id FROM me_files ORDER BY random() LIMIT $1",
                vec![Value::from(n as i64)],
            )
            .await?;
        let mut ids: Vec<MeFileId> = rows.into_iter().map(|r| MeFileId(r.id.0)).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The rows of `table` with a NULL snapshot, within `bands` and `me_file` when given:
    /// how many a backfill can fill, with the first `examples` (id, me_file) of them by id,
    /// and how many it cannot. All through the table's partial NULL-snapshot index.
    pub async fn null_copies(
        &self,
        table: CopyTable,
        bands: Option<&[BandId]>,
        me_file: Option<MeFileId>,
        examples: u64,
    ) -> Result<NullCopies, RepoError> {
        let db = self.db;
        let mut filter = String::new();
        let mut values = Vec::new();
        if let Some(bands) = bands {
            let ids: Vec<i64> = bands.iter().map(|b| b.0).collect();
            values.push(db.id_list(&ids));
            filter += &format!(" AND {}", db.in_id_list("target_band_id", values.len()));
        }
        if let Some(me_file) = me_file {
            values.push(Value::from(me_file.0));
            filter += &format!(" AND me_file_id = ${}", values.len());
        }
        let from = format!(
            "FROM {} WHERE matching_tags_snapshot IS NULL{filter}",
            table.name()
        );
        let repairable = "me_file_id IS NOT NULL AND target_band_id IS NOT NULL \
                          AND EXISTS (SELECT 1 FROM target_bands b WHERE b.id = target_band_id)";
        let counts: RepairableCounts = db
            .fetch_one(
                db.conn(),
                "NULL copies",
                format!(
                    "SELECT SUM(CASE WHEN {repairable} THEN 1 ELSE 0 END) AS repairable, \
                     COUNT(*) AS all_nulls {from}"
                ),
                values.clone(),
            )
            .await?;
        values.push(Value::from(examples as i64));
        let rows: Vec<CopyExample> = db
            .fetch_all(
                db.conn(),
                format!(
                    "SELECT id, me_file_id {from} AND {repairable} ORDER BY id LIMIT ${}",
                    values.len()
                ),
                values,
            )
            .await?;
        let repairable = counts.repairable.unwrap_or(0);
        Ok(NullCopies {
            count: repairable,
            unrepairable: counts.all_nulls - repairable,
            examples: rows
                .into_iter()
                .map(|r| (r.id.0, r.me_file_id.map(|m| m.0)))
                .collect(),
        })
    }

    /// Keeps `report` as the last audit of kind `run`.
    pub async fn record(
        &self,
        run: &str,
        ran_by: &str,
        drift: i64,
        report: &str,
    ) -> Result<(), RepoError> {
        self.db
            .execute(
                self.db.conn(),
                format!(
                    "INSERT INTO snapline_audits (run, finished_at, ran_by, drift, report) \
                     VALUES ($1, CAST({} AS BIGINT), $2, $3, $4) \
                     ON CONFLICT (run) DO UPDATE SET finished_at = excluded.finished_at, \
                     ran_by = excluded.ran_by, drift = excluded.drift, report = excluded.report",
                    self.db.epoch_now_sql()
                ),
                vec![run.into(), ran_by.into(), drift.into(), report.into()],
            )
            .await?;
        Ok(())
    }

    /// The last audit of every kind of run, newest first.
    pub async fn last(&self) -> Result<Vec<AuditRecord>, RepoError> {
        self.db
            .fetch_all(
                self.db.conn(),
                "SELECT run, finished_at, ran_by, drift, report FROM snapline_audits \
                 ORDER BY finished_at DESC, run",
                vec![],
            )
            .await
    }
}

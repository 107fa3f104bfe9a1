use crate::{Db, RepoError};
use sea_orm::ConnectionTrait;

/// NULL snapshots per table; each count is answered from its partial index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NullSnapshotCounts {
    pub target_populations: i64,
    pub offers: i64,
    pub ad_events: i64,
}

impl NullSnapshotCounts {
    pub fn total(&self) -> i64 {
        self.target_populations + self.offers + self.ad_events
    }
}

/// Row counts of the tables a data set fills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableCounts {
    pub traits: i64,
    pub me_files: i64,
    pub me_file_tags: i64,
    pub targets: i64,
    pub target_bands: i64,
    pub trait_groups: i64,
    pub campaigns: i64,
    pub target_populations: i64,
    pub offers: i64,
    pub ad_events: i64,
}

/// Counts for reports, `snapctl status` and tests.
pub struct StatsRepo<'a> {
    pub(crate) db: &'a Db,
}

impl StatsRepo<'_> {
    pub async fn null_snapshots(&self) -> Result<NullSnapshotCounts, RepoError> {
        let count = |table: &'static str| async move {
            self.count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE matching_tags_snapshot IS NULL"
            ))
            .await
        };
        Ok(NullSnapshotCounts {
            target_populations: count("target_populations").await?,
            offers: count("offers").await?,
            ad_events: count("ad_events").await?,
        })
    }

    pub async fn tables(&self) -> Result<TableCounts, RepoError> {
        let count = |table: &'static str| async move {
            self.count(&format!("SELECT COUNT(*) FROM {table}")).await
        };
        Ok(TableCounts {
            traits: count("traits").await?,
            me_files: count("me_files").await?,
            me_file_tags: count("me_file_tags").await?,
            targets: count("targets").await?,
            target_bands: count("target_bands").await?,
            trait_groups: count("trait_groups").await?,
            campaigns: count("campaigns").await?,
            target_populations: count("target_populations").await?,
            offers: count("offers").await?,
            ad_events: count("ad_events").await?,
        })
    }

    /// Targets per `population_status`, in status order.
    pub async fn targets_by_status(&self) -> Result<Vec<(String, i64)>, RepoError> {
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.statement(
                "SELECT COALESCE(population_status, '(none)'), COUNT(*) FROM targets \
                 GROUP BY 1 ORDER BY 1",
                vec![],
            ))
            .await?;
        rows.into_iter()
            .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
            .collect()
    }

    async fn count(&self, sql: &str) -> Result<i64, RepoError> {
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.statement(sql, vec![]))
            .await?
            .ok_or(RepoError::Data {
                what: "count",
                detail: format!("no row from `{sql}`"),
            })?;
        Ok(row.try_get_by_index(0)?)
    }
}

use crate::{Db, RepoError};
use entity::{
    ad_events, campaigns, me_file_tags, me_files, offers, target_bands, target_populations,
    targets, trait_groups, traits,
};
use sea_orm::{EntityTrait, FromQueryResult, PaginatorTrait, Select};

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

#[derive(FromQueryResult)]
struct NullSnapshotRow {
    target_populations: i64,
    offers: i64,
    ad_events: i64,
}

/// Counts for reports, `snapctl status` and tests.
pub struct StatsRepo<'a> {
    pub(crate) db: &'a Db,
}

impl StatsRepo<'_> {
    /// The counts name no column but the snapshot: the service role may read only a few
    /// columns of offers and ad_events (`deploy/postgres/grants.sql`), and an ORM count
    /// selects every column in its subquery.
    pub async fn null_snapshots(&self) -> Result<NullSnapshotCounts, RepoError> {
        let row: NullSnapshotRow = self
            .db
            .fetch_one(
                self.db.conn(),
                "NULL snapshot counts",
                "SELECT (SELECT COUNT(*) FROM target_populations WHERE matching_tags_snapshot IS NULL) AS target_populations, \
                        (SELECT COUNT(*) FROM offers WHERE matching_tags_snapshot IS NULL) AS offers, \
                        (SELECT COUNT(*) FROM ad_events WHERE matching_tags_snapshot IS NULL) AS ad_events",
                vec![],
            )
            .await?;
        Ok(NullSnapshotCounts {
            target_populations: row.target_populations,
            offers: row.offers,
            ad_events: row.ad_events,
        })
    }

    pub async fn tables(&self) -> Result<TableCounts, RepoError> {
        let conn = self.db.conn();
        Ok(TableCounts {
            traits: count(traits::Entity::find(), conn).await?,
            me_files: count(me_files::Entity::find(), conn).await?,
            me_file_tags: count(me_file_tags::Entity::find(), conn).await?,
            targets: count(targets::Entity::find(), conn).await?,
            target_bands: count(target_bands::Entity::find(), conn).await?,
            trait_groups: count(trait_groups::Entity::find(), conn).await?,
            campaigns: count(campaigns::Entity::find(), conn).await?,
            target_populations: count(target_populations::Entity::find(), conn).await?,
            offers: count(offers::Entity::find(), conn).await?,
            ad_events: count(ad_events::Entity::find(), conn).await?,
        })
    }

    /// Targets per `population_status`, in status order.
    pub async fn targets_by_status(&self) -> Result<Vec<(String, i64)>, RepoError> {
        let rows: Vec<crate::rows::StatusCount> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT COALESCE(population_status, '(none)') AS status, COUNT(*) AS count \
                 FROM targets GROUP BY 1 ORDER BY 1",
                vec![],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.status, row.count))
            .collect())
    }
}

/// The rows `select` finds (`COUNT(*)` in the database).
async fn count<E>(select: Select<E>, conn: &crate::PoolConn) -> Result<i64, RepoError>
where
    E: EntityTrait,
    E::Model: FromQueryResult + Send + Sync,
{
    Ok(i64::try_from(select.count(conn).await?).unwrap_or(i64::MAX))
}

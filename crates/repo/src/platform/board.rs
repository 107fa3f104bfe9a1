//! The web board's reads (`snapctl board`) that no other part of snapline needs. Each is
//! bounded: counts stop at a cap (a page shows "cap+"), lists are limited.

use crate::{Db, RepoError};
use sea_orm::{FromQueryResult, Value};

/// A target and one of its bands (`band_id` is `None` for a target without bands).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TargetBandRow {
    pub target_id: i64,
    pub title: Option<String>,
    pub status: Option<String>,
    pub last_populated_at: Option<String>,
    pub band_id: Option<i64>,
    /// The band's populations, counted up to a cap; `None` without a band.
    pub members: Option<i64>,
}

#[derive(FromQueryResult)]
struct TargetBandRecord {
    target_id: i64,
    title: Option<String>,
    status: Option<String>,
    last_populated_at: Option<String>,
    band_id: Option<i64>,
    members: Option<i64>,
}

/// Bounded reads for the board.
pub struct BoardRepo<'a> {
    pub(crate) db: &'a Db,
}

impl BoardRepo<'_> {
    /// The first `targets` targets (by id) with their bands, one row per (target, band), at
    /// most `rows` rows, each band's populations counted up to `members_cap`: one statement,
    /// whose cost is bounded by `rows` x `members_cap` index entries whatever the bands.
    pub async fn targets_with_bands(
        &self,
        targets: u64,
        rows: u64,
        members_cap: u64,
    ) -> Result<Vec<TargetBandRow>, RepoError> {
        let records: Vec<TargetBandRecord> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT r.*, CASE WHEN r.band_id IS NULL THEN NULL ELSE \
                   (SELECT COUNT(*) FROM (SELECT 1 FROM target_populations p \
                    WHERE p.target_band_id = r.band_id LIMIT $3) capped) END AS members \
                 FROM (SELECT CAST(t.id AS BIGINT) AS target_id, t.title, \
                       t.population_status AS status, \
                       CAST(t.last_populated_at AS TEXT) AS last_populated_at, \
                       CAST(b.id AS BIGINT) AS band_id \
                       FROM (SELECT * FROM targets ORDER BY id LIMIT $1) t \
                       LEFT JOIN target_bands b ON b.target_id = t.id \
                       ORDER BY t.id, b.id LIMIT $2) r \
                 ORDER BY r.target_id, r.band_id",
                vec![
                    Value::from(targets as i64),
                    Value::from(rows as i64),
                    Value::from(members_cap as i64),
                ],
            )
            .await?;
        Ok(records
            .into_iter()
            .map(|r| TargetBandRow {
                target_id: r.target_id,
                title: r.title,
                status: r.status,
                last_populated_at: r.last_populated_at,
                band_id: r.band_id,
                members: r.members,
            })
            .collect())
    }
}

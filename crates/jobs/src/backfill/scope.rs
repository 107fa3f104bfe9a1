//! What a backfill of `--target` and of `--all` bands covers.

use crate::JobError;
use domain::{BandId, PopulationId, TargetId};
use repo::Db;

/// The bands a `--target` backfill covers (all of the target's bands).
pub async fn bands_of_target(db: &Db, target: TargetId) -> Result<Vec<BandId>, JobError> {
    crate::error::check_target_exists(db, target).await?;
    Ok(db
        .bands()
        .of_target(target)
        .await?
        .bands()
        .iter()
        .map(|b| b.id)
        .collect())
}

/// Bands that hold populations with a NULL snapshot (for `enqueue --all`: one job each).
pub async fn bands_with_null_populations(db: &Db) -> Result<Vec<BandId>, JobError> {
    let mut bands = std::collections::BTreeSet::new();
    let mut after = PopulationId(0);
    loop {
        let rows = db
            .backfill()
            .null_populations_after(after, 10_000, None)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        bands.extend(rows.iter().map(|r| r.band_id));
    }
    Ok(bands.into_iter().collect())
}

use crate::id_columns::IdColumns;
use crate::{Db, RepoError};
use domain::{
    Band, BandId, BandTrait, TargetBands, TargetId, TraitGroup, TraitGroupId, TraitId, TraitInfo,
};
use entity::{Id, target_bands};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use std::collections::{BTreeMap, HashMap};

/// Band metadata: which bands a target has, their trait groups, and the traits (with
/// parents) those groups name. Two statements however many targets are asked for.
pub struct BandRepo<'a> {
    pub(crate) db: &'a Db,
}

impl BandRepo<'_> {
    /// The bands of one target (an empty list when it has none or does not exist).
    pub async fn of_target(&self, target_id: TargetId) -> Result<TargetBands, RepoError> {
        let mut all = self.of_targets(&[target_id]).await?;
        Ok(all
            .remove(&target_id)
            .unwrap_or_else(|| TargetBands::new(target_id, [], [])))
    }

    /// The bands of each of `target_ids` that has at least one band.
    pub async fn of_targets(
        &self,
        target_ids: &[TargetId],
    ) -> Result<HashMap<TargetId, TargetBands>, RepoError> {
        self.of_targets_on(self.db.conn(), target_ids).await
    }

    /// [`Self::of_targets`] on `conn`, e.g. inside a transaction that must not wait for a
    /// second pooled connection.
    pub async fn of_targets_on<C: ConnectionTrait>(
        &self,
        conn: &C,
        target_ids: &[TargetId],
    ) -> Result<HashMap<TargetId, TargetBands>, RepoError> {
        if target_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<i64> = target_ids.iter().map(|t| t.0).collect();
        let db = self.db;

        let structure = conn
            .query_all_raw(db.statement(
                format!(
                    "SELECT b.target_id, b.id, l.trait_group_id, gt.trait_id \
                     FROM target_bands b \
                     LEFT JOIN target_band_trait_groups l ON l.target_band_id = b.id \
                     LEFT JOIN trait_group_traits gt ON gt.trait_group_id = l.trait_group_id \
                     WHERE {}",
                    db.in_id_list("b.target_id", 1)
                ),
                vec![db.id_list(&ids)],
            ))
            .await?;

        // target -> band -> group -> traits
        type Groups = BTreeMap<TraitGroupId, Vec<TraitId>>;
        let mut targets: BTreeMap<TargetId, BTreeMap<BandId, Groups>> = BTreeMap::new();
        for row in structure {
            let target = TargetId(row.id_at(0)?);
            let band = BandId(row.id_at(1)?);
            let group: Option<i64> = row.opt_id_at(2)?;
            let trait_id: Option<i64> = row.opt_id_at(3)?;
            let groups = targets.entry(target).or_default().entry(band).or_default();
            if let Some(group) = group {
                let traits = groups.entry(TraitGroupId(group)).or_default();
                traits.extend(trait_id.map(TraitId));
            }
        }

        let metadata = conn
            .query_all_raw(db.statement(
                format!(
                    "SELECT c.id, c.trait_name, c.display_order, p.id, p.trait_name, p.display_order \
                     FROM traits c LEFT JOIN traits p ON p.id = c.parent_trait_id \
                     WHERE c.id IN ( \
                       SELECT gt.trait_id FROM target_bands b \
                       JOIN target_band_trait_groups l ON l.target_band_id = b.id \
                       JOIN trait_group_traits gt ON gt.trait_group_id = l.trait_group_id \
                       WHERE {})",
                    db.in_id_list("b.target_id", 1)
                ),
                vec![db.id_list(&ids)],
            ))
            .await?;
        let mut traits: HashMap<TraitId, BandTrait> = HashMap::with_capacity(metadata.len());
        for row in metadata {
            let child = TraitInfo {
                id: TraitId(row.id_at(0)?),
                name: row.try_get_by_index(1)?,
                display_order: row.try_get_by_index(2)?,
            };
            let parent_id: Option<i64> = row.opt_id_at(3)?;
            let parent = match parent_id {
                Some(id) => Some(TraitInfo {
                    id: TraitId(id),
                    name: row.try_get_by_index(4)?,
                    display_order: row.try_get_by_index(5)?,
                }),
                None => None,
            };
            traits.insert(child.id, BandTrait { child, parent });
        }

        Ok(targets
            .into_iter()
            .map(|(target_id, bands)| {
                let bands: Vec<Band> = bands
                    .into_iter()
                    .map(|(band_id, groups)| {
                        Band::new(
                            band_id,
                            groups
                                .into_iter()
                                .map(|(id, traits)| TraitGroup::new(id, traits)),
                        )
                    })
                    .collect();
                let used: Vec<BandTrait> = bands
                    .iter()
                    .flat_map(|b| b.trait_ids())
                    .filter_map(|t| traits.get(&t).cloned())
                    .collect();
                (target_id, TargetBands::new(target_id, bands, used))
            })
            .collect())
    }

    /// Whether a job may name `band`: it exists, or populations still refer to it (a deleted
    /// band whose rows a backfill reports as unfixable).
    pub async fn is_known(&self, band: BandId) -> Result<bool, RepoError> {
        let db = self.db;
        let row = db
            .conn()
            .query_one_raw(db.statement(
                "SELECT 1 WHERE EXISTS (SELECT 1 FROM target_bands WHERE id = $1) \
                 OR EXISTS (SELECT 1 FROM target_populations WHERE target_band_id = $1)",
                vec![band.0.into()],
            ))
            .await?;
        Ok(row.is_some())
    }

    /// The target of each band that exists and names one, for jobs given band ids (a band
    /// whose `target_id` is NULL belongs to no target: absent, like a deleted one).
    pub async fn targets_of_bands(
        &self,
        band_ids: &[BandId],
    ) -> Result<HashMap<BandId, TargetId>, RepoError> {
        if band_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut found = HashMap::with_capacity(band_ids.len());
        // sea-orm binds one parameter per id: chunked below PostgreSQL's 65,535.
        for chunk in band_ids.chunks(10_000) {
            let bands = target_bands::Entity::find()
                .filter(target_bands::Column::Id.is_in(chunk.iter().map(|b| Id(b.0))))
                .all(self.db.conn())
                .await?;
            found.extend(bands.into_iter().filter_map(|band| {
                band.target_id
                    .map(|target| (BandId(band.id.0), TargetId(target.0)))
            }));
        }
        Ok(found)
    }
}

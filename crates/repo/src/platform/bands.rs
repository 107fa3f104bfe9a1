use crate::rows::Present;
use crate::{Db, RepoError};
use domain::{
    Band, BandId, BandTrait, TargetBands, TargetId, TraitGroup, TraitGroupId, TraitId, TraitInfo,
};
use entity::{Id, target_bands};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter};
use std::collections::{BTreeMap, HashMap};

/// A band with one of its groups and one trait of that group (NULL where it has none).
#[derive(FromQueryResult)]
struct BandStructureRow {
    target_id: Id,
    band_id: Id,
    trait_group_id: Option<Id>,
    trait_id: Option<Id>,
}

/// A trait named by a band, with its parent (NULL when it has none).
#[derive(FromQueryResult)]
struct TraitMetadataRow {
    id: Id,
    trait_name: String,
    display_order: Option<i32>,
    parent_id: Option<Id>,
    parent_name: Option<String>,
    parent_display_order: Option<i32>,
}

/// Band metadata: which bands a target has, their trait groups, and the traits (with
/// parents) those groups name. Two statements however many targets are asked for.
pub struct BandRepo<'a, C = crate::PoolConn> {
    pub(crate) db: &'a Db,
    /// The pool, or the transaction of a [`crate::Tx`].
    pub(crate) conn: &'a C,
}

/// A `target_band_trait_groups` row `l` counts only while its trait group exists, and a
/// `trait_group_traits` row `gt` only while its trait does: the platform has no foreign keys,
/// and its own code ignores link rows whose group or trait is gone. Every statement that
/// reads band structure applies both.
pub(crate) const LIVE_GROUP_OF_LINK: &str =
    "EXISTS (SELECT 1 FROM trait_groups live_g WHERE live_g.id = l.trait_group_id)";
pub(crate) const LIVE_TRAIT_OF_LINK: &str =
    "EXISTS (SELECT 1 FROM traits live_t WHERE live_t.id = gt.trait_id)";

impl<C: ConnectionTrait> BandRepo<'_, C> {
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
        let conn = self.conn;
        if target_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<i64> = target_ids.iter().map(|t| t.0).collect();
        let db = self.db;

        let structure: Vec<BandStructureRow> = db
            .fetch_all(
                conn,
                format!(
                    "SELECT b.target_id, b.id AS band_id, l.trait_group_id, gt.trait_id \
                     FROM target_bands b \
                     LEFT JOIN target_band_trait_groups l ON l.target_band_id = b.id \
                       AND {LIVE_GROUP_OF_LINK} \
                     LEFT JOIN trait_group_traits gt ON gt.trait_group_id = l.trait_group_id \
                       AND {LIVE_TRAIT_OF_LINK} \
                     WHERE {}",
                    db.in_id_list("b.target_id", 1)
                ),
                vec![db.id_list(&ids)],
            )
            .await?;

        // target -> band -> group -> traits
        type Groups = BTreeMap<TraitGroupId, Vec<TraitId>>;
        let mut targets: BTreeMap<TargetId, BTreeMap<BandId, Groups>> = BTreeMap::new();
        for row in structure {
            let groups = targets
                .entry(TargetId(row.target_id.0))
                .or_default()
                .entry(BandId(row.band_id.0))
                .or_default();
            if let Some(group) = row.trait_group_id {
                let traits = groups.entry(TraitGroupId(group.0)).or_default();
                traits.extend(row.trait_id.map(|t| TraitId(t.0)));
            }
        }

        let metadata: Vec<TraitMetadataRow> = db
            .fetch_all(
                conn,
                format!(
                    "SELECT c.id, c.trait_name, c.display_order, p.id AS parent_id, \
                     p.trait_name AS parent_name, p.display_order AS parent_display_order \
                     FROM traits c LEFT JOIN traits p ON p.id = c.parent_trait_id \
                     WHERE c.id IN ( \
                       SELECT gt.trait_id FROM target_bands b \
                       JOIN target_band_trait_groups l ON l.target_band_id = b.id \
                       JOIN trait_group_traits gt ON gt.trait_group_id = l.trait_group_id \
                       WHERE {})",
                    db.in_id_list("b.target_id", 1)
                ),
                vec![db.id_list(&ids)],
            )
            .await?;
        let mut traits: HashMap<TraitId, BandTrait> = HashMap::with_capacity(metadata.len());
        for row in metadata {
            let child = TraitInfo {
                id: TraitId(row.id.0),
                name: row.trait_name,
                display_order: row.display_order,
            };
            let parent = match row.parent_id {
                Some(id) => Some(TraitInfo {
                    id: TraitId(id.0),
                    name: row.parent_name.ok_or_else(|| RepoError::Data {
                        what: "trait metadata",
                        detail: format!("parent trait {id} of trait {} has no name", child.id),
                    })?,
                    display_order: row.parent_display_order,
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
        let row: Option<Present> = db
            .fetch_optional(
                self.conn,
                "SELECT 1 AS present WHERE EXISTS (SELECT 1 FROM target_bands WHERE id = $1) \
                 OR EXISTS (SELECT 1 FROM target_populations WHERE target_band_id = $1)",
                vec![band.0.into()],
            )
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
                .all(self.conn)
                .await?;
            found.extend(bands.into_iter().filter_map(|band| {
                band.target_id
                    .map(|target| (BandId(band.id.0), TargetId(target.0)))
            }));
        }
        Ok(found)
    }
}

use crate::ids::{BandId, MeFileTagId, TargetId, TraitGroupId, TraitId};
use crate::snapshot::{Snapshot, SnapshotChild, SnapshotParent};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One row of `traits` as the snapshot shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraitInfo {
    pub id: TraitId,
    pub name: String,
    pub display_order: Option<i32>,
}

/// A trait named by a band's trait group, with its parent. `parent` is `None` when the trait
/// is itself a parent or when its parent row is missing; such a trait still counts for
/// membership but never appears in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BandTrait {
    pub child: TraitInfo,
    pub parent: Option<TraitInfo>,
}

/// A trait group as one band uses it: OR over its traits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraitGroup {
    pub id: TraitGroupId,
    pub traits: HashSet<TraitId>,
}

impl TraitGroup {
    pub fn new(id: TraitGroupId, traits: impl IntoIterator<Item = TraitId>) -> Self {
        Self {
            id,
            traits: traits.into_iter().collect(),
        }
    }

    /// A group with no traits matches nobody.
    fn matches(&self, tags: &[Tag]) -> bool {
        tags.iter().any(|tag| self.traits.contains(&tag.trait_id))
    }
}

/// A target band: AND over its trait groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Band {
    pub id: BandId,
    pub groups: Vec<TraitGroup>,
    /// Union of the groups' traits: what a snapshot of this band may contain.
    traits: HashSet<TraitId>,
}

impl Band {
    /// Groups are de-duplicated by id (a group linked twice to a band counts once) and kept
    /// in id order, so the band's group count is the number of distinct groups.
    pub fn new(id: BandId, groups: impl IntoIterator<Item = TraitGroup>) -> Self {
        let mut by_id: BTreeMap<TraitGroupId, TraitGroup> = BTreeMap::new();
        for group in groups {
            by_id
                .entry(group.id)
                .and_modify(|g| g.traits.extend(group.traits.iter().copied()))
                .or_insert(group);
        }
        let groups: Vec<TraitGroup> = by_id.into_values().collect();
        let traits = groups
            .iter()
            .flat_map(|g| g.traits.iter().copied())
            .collect();
        Self { id, groups, traits }
    }

    /// A band with no trait groups matches nobody.
    pub fn matches(&self, tags: &[Tag]) -> bool {
        !self.groups.is_empty() && self.groups.iter().all(|g| g.matches(tags))
    }

    /// Whether `trait_id` belongs to one of the band's groups.
    pub fn has_trait(&self, trait_id: TraitId) -> bool {
        self.traits.contains(&trait_id)
    }

    pub fn trait_ids(&self) -> impl Iterator<Item = TraitId> + '_ {
        self.traits.iter().copied()
    }
}

/// One row of `me_file_tags`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub id: MeFileTagId,
    pub trait_id: TraitId,
    pub tag_value: Option<String>,
}

/// A target's bands, outermost first, with the metadata of every trait they name: all that
/// membership and snapshots need.
#[derive(Clone, Debug)]
pub struct TargetBands {
    target_id: TargetId,
    bands: Vec<Band>,
    traits: HashMap<TraitId, BandTrait>,
}

impl TargetBands {
    /// Orders the bands outermost to innermost by (number of trait groups, band id).
    pub fn new(
        target_id: TargetId,
        bands: impl IntoIterator<Item = Band>,
        traits: impl IntoIterator<Item = BandTrait>,
    ) -> Self {
        let mut bands: Vec<Band> = bands.into_iter().collect();
        bands.sort_by_key(|b| (b.groups.len(), b.id));
        bands.dedup_by_key(|b| b.id);
        let traits = traits.into_iter().map(|t| (t.child.id, t)).collect();
        Self {
            target_id,
            bands,
            traits,
        }
    }

    pub fn target_id(&self) -> TargetId {
        self.target_id
    }

    /// Outermost first.
    pub fn bands(&self) -> &[Band] {
        &self.bands
    }

    pub fn band(&self, band_id: BandId) -> Option<&Band> {
        self.bands.iter().find(|b| b.id == band_id)
    }

    /// Every trait named by any band of the target: the only tags that can affect membership
    /// or snapshots, so callers load only these.
    pub fn trait_ids(&self) -> impl Iterator<Item = TraitId> + '_ {
        let all: HashSet<TraitId> = self.bands.iter().flat_map(|b| b.trait_ids()).collect();
        all.into_iter()
    }

    pub fn trait_info(&self, trait_id: TraitId) -> Option<&BandTrait> {
        self.traits.get(&trait_id)
    }

    /// Band membership (DESIGN section 3): the innermost band k such that the me_file matches
    /// every band 1..=k, or `None` when it does not match the outermost band.
    pub fn band_for(&self, tags: &[Tag]) -> Option<&Band> {
        self.bands
            .iter()
            .take_while(|band| band.matches(tags))
            .last()
    }

    /// The matching-tags snapshot (DESIGN section 2) of a me_file's `tags` for `band_id`, or
    /// `None` when the band is not one of this target's.
    pub fn snapshot(&self, band_id: BandId, tags: &[Tag]) -> Option<Snapshot> {
        let band = self.band(band_id)?;
        Some(self.snapshot_of(band, tags))
    }

    /// The snapshot of `tags` for `band`, which must be one of this target's bands.
    pub fn snapshot_of(&self, band: &Band, tags: &[Tag]) -> Snapshot {
        // A trait tagged twice (duplicate me_file_tags rows) is listed once, from its lowest
        // tag id, so the result does not depend on row order.
        let mut chosen: BTreeMap<TraitId, (&Tag, &BandTrait, &TraitInfo)> = BTreeMap::new();
        for tag in tags.iter().filter(|t| band.has_trait(t.trait_id)) {
            let Some(meta) = self.traits.get(&tag.trait_id) else {
                continue;
            };
            let Some(parent) = meta.parent.as_ref() else {
                continue;
            };
            chosen
                .entry(tag.trait_id)
                .and_modify(|kept| {
                    if tag.id < kept.0.id {
                        kept.0 = tag;
                    }
                })
                .or_insert((tag, meta, parent));
        }

        let mut parents: BTreeMap<(OrderKey, TraitId), SnapshotParent> = BTreeMap::new();
        for (tag, meta, parent) in chosen.into_values() {
            let entry = parents
                .entry((order_key(parent.display_order), parent.id))
                .or_insert_with(|| {
                    SnapshotParent(parent.id, parent.name.clone(), parent.display_order, vec![])
                });
            entry.3.push(SnapshotChild(
                meta.child.id,
                shown_value(tag, &meta.child),
                meta.child.display_order,
            ));
        }
        let tags = parents
            .into_values()
            .map(|mut parent| {
                parent.3.sort_by_key(|c| (order_key(c.2), c.0));
                parent
            })
            .collect();
        Snapshot { tags }
    }
}

/// Sort key that puts a NULL display_order after every number.
type OrderKey = (bool, i32);

fn order_key(display_order: Option<i32>) -> OrderKey {
    (display_order.is_none(), display_order.unwrap_or(0))
}

/// A snapshot never carries a null or blank value: the child trait's name stands in.
fn shown_value(tag: &Tag, child: &TraitInfo) -> String {
    match &tag.tag_value {
        Some(value) if !value.trim().is_empty() => value.clone(),
        _ => child.name.clone(),
    }
}

/// Why a me_file is or is not in a target ([`TargetBands::explain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// Every band, innermost first.
    pub bands: Vec<BandVerdict>,
    /// The band the me_file belongs to ([`TargetBands::band_for`]), if any.
    pub chosen: Option<BandId>,
}

/// One band of an [`Explanation`]: matched when every group passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BandVerdict {
    pub band_id: BandId,
    pub matched: bool,
    pub groups: Vec<GroupVerdict>,
}

/// One trait group of a band: passed when one of the me_file's tags is on one of its traits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupVerdict {
    pub group_id: TraitGroupId,
    pub passed: bool,
    /// The group's traits, ascending.
    pub traits: Vec<TraitId>,
    /// The me_file's tags on those traits, by tag id.
    pub matching_tags: Vec<Tag>,
}

impl TargetBands {
    /// Every band's and every group's verdict for `tags`, by the same rules as
    /// [`TargetBands::band_for`]: what "why is this me_file (not) in my target?" needs.
    pub fn explain(&self, tags: &[Tag]) -> Explanation {
        let bands = self
            .bands
            .iter()
            .rev()
            .map(|band| {
                let groups: Vec<GroupVerdict> = band
                    .groups
                    .iter()
                    .map(|group| {
                        let mut traits: Vec<TraitId> = group.traits.iter().copied().collect();
                        traits.sort_unstable();
                        let mut matching_tags: Vec<Tag> = tags
                            .iter()
                            .filter(|t| group.traits.contains(&t.trait_id))
                            .cloned()
                            .collect();
                        matching_tags.sort_by_key(|t| t.id);
                        GroupVerdict {
                            group_id: group.id,
                            passed: !matching_tags.is_empty(),
                            traits,
                            matching_tags,
                        }
                    })
                    .collect();
                BandVerdict {
                    band_id: band.id,
                    matched: band.matches(tags),
                    groups,
                }
            })
            .collect();
        Explanation {
            bands,
            chosen: self.band_for(tags).map(|b| b.id),
        }
    }
}

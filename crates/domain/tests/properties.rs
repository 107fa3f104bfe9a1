//! Property tests of the two rules: membership (DESIGN section 3) and snapshots (section 2).

use domain::{
    Band, BandId, BandTrait, MeFileTagId, Tag, TargetBands, TargetId, TraitGroup, TraitGroupId,
    TraitId, TraitInfo,
};
use proptest::prelude::*;
use std::collections::HashSet;

const TRAITS: i64 = 24;
const PARENTS: i64 = 4;

/// Child traits 1..=TRAITS under parents 1001..=1000+PARENTS, some display orders NULL or tied.
fn all_traits() -> Vec<BandTrait> {
    (1..=TRAITS)
        .map(|id| {
            let parent = 1000 + (id % PARENTS) + 1;
            BandTrait {
                child: TraitInfo {
                    id: TraitId(id),
                    name: format!("child {id}"),
                    display_order: if id % 5 == 0 {
                        None
                    } else {
                        Some((id % 3) as i32)
                    },
                },
                parent: Some(TraitInfo {
                    id: TraitId(parent),
                    name: format!("parent {parent}"),
                    display_order: if parent % 3 == 0 { None } else { Some(1) },
                }),
            }
        })
        .collect()
}

fn arb_group() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(1..=TRAITS, 0..5)
}

/// A target of 0..5 bands, each with 0..4 groups of 0..5 traits.
fn arb_target() -> impl Strategy<Value = TargetBands> {
    prop::collection::vec(prop::collection::vec(arb_group(), 0..4), 0..5).prop_map(|bands| {
        let mut group_id = 0;
        let bands: Vec<Band> = bands
            .into_iter()
            .enumerate()
            .map(|(i, groups)| {
                let groups: Vec<TraitGroup> = groups
                    .into_iter()
                    .map(|traits| {
                        group_id += 1;
                        TraitGroup::new(TraitGroupId(group_id), traits.into_iter().map(TraitId))
                    })
                    .collect();
                Band::new(BandId(100 + i as i64), groups)
            })
            .collect();
        TargetBands::new(TargetId(1), bands, all_traits())
    })
}

fn arb_tags() -> impl Strategy<Value = Vec<Tag>> {
    prop::collection::vec(
        (
            1..=TRAITS,
            prop::option::of(prop_oneof!["", " ", "[a-z\"\\\\]{1,6}"]),
        ),
        0..12,
    )
    .prop_map(|tags| {
        tags.into_iter()
            .enumerate()
            .map(|(i, (trait_id, value))| Tag {
                id: MeFileTagId(i as i64 + 1),
                trait_id: TraitId(trait_id),
                tag_value: value,
            })
            .collect()
    })
}

fn position(target: &TargetBands, band: Option<&Band>) -> usize {
    band.map(|b| target.bands().iter().position(|x| x.id == b.id).unwrap() + 1)
        .unwrap_or(0)
}

proptest! {
    #[test]
    fn membership_is_the_innermost_band_of_the_matching_chain(
        target in arb_target(), tags in arb_tags()
    ) {
        let found = position(&target, target.band_for(&tags));
        for (i, band) in target.bands().iter().enumerate() {
            if i < found {
                prop_assert!(band.matches(&tags), "matches every band up to its own");
            }
            if i == found {
                prop_assert!(!band.matches(&tags), "stops at the first band it misses");
            }
        }
    }

    #[test]
    fn membership_is_monotone_in_tags(
        target in arb_target(), tags in arb_tags(), more in arb_tags()
    ) {
        let mut superset = tags.clone();
        superset.extend(more.into_iter().map(|mut t| { t.id.0 += 1000; t }));
        prop_assert!(
            position(&target, target.band_for(&tags))
                <= position(&target, target.band_for(&superset))
        );
    }

    #[test]
    fn bands_are_ordered_by_group_count_then_id(target in arb_target()) {
        let keys: Vec<(usize, BandId)> =
            target.bands().iter().map(|b| (b.groups.len(), b.id)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        prop_assert_eq!(keys, sorted);
    }

    #[test]
    fn empty_bands_and_empty_groups_match_nobody(target in arb_target(), tags in arb_tags()) {
        if let Some(band) = target.band_for(&tags) {
            prop_assert!(!band.groups.is_empty());
            prop_assert!(band.groups.iter().all(|g| !g.traits.is_empty()));
        }
    }

    #[test]
    fn snapshot_holds_only_the_bands_traits_with_non_blank_values(
        target in arb_target(), tags in arb_tags()
    ) {
        for band in target.bands() {
            let snapshot = target.snapshot_of(band, &tags);
            let tagged: HashSet<TraitId> = tags.iter().map(|t| t.trait_id).collect();
            let mut seen = HashSet::new();
            for parent in &snapshot.tags {
                prop_assert!(!parent.3.is_empty());
                for child in &parent.3 {
                    prop_assert!(band.has_trait(child.0));
                    prop_assert!(tagged.contains(&child.0));
                    prop_assert!(!child.1.trim().is_empty());
                    prop_assert!(seen.insert(child.0), "a trait is listed once");
                }
            }
            let expected: HashSet<TraitId> =
                tagged.into_iter().filter(|t| band.has_trait(*t)).collect();
            prop_assert_eq!(seen, expected);
        }
    }

    #[test]
    fn snapshot_is_stable_under_tag_permutation(
        target in arb_target(), tags in arb_tags(), seed in any::<u64>()
    ) {
        let mut shuffled = tags.clone();
        // a deterministic permutation driven by the seed
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(i as u64 + 7) % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        for band in target.bands() {
            prop_assert_eq!(
                target.snapshot_of(band, &tags).to_json(),
                target.snapshot_of(band, &shuffled).to_json()
            );
        }
        prop_assert_eq!(
            target.band_for(&tags).map(|b| b.id),
            target.band_for(&shuffled).map(|b| b.id)
        );
    }

    #[test]
    fn snapshot_json_round_trips(target in arb_target(), tags in arb_tags()) {
        for band in target.bands() {
            let snapshot = target.snapshot_of(band, &tags);
            prop_assert_eq!(domain::Snapshot::from_json(&snapshot.to_json()).unwrap(), snapshot);
        }
    }

    #[test]
    fn parents_and_children_are_sorted_with_null_orders_last(
        target in arb_target(), tags in arb_tags()
    ) {
        let key = |order: Option<i32>, id: TraitId| (order.is_none(), order.unwrap_or(0), id);
        for band in target.bands() {
            let snapshot = target.snapshot_of(band, &tags);
            let parents: Vec<_> = snapshot.tags.iter().map(|p| key(p.2, p.0)).collect();
            prop_assert!(parents.windows(2).all(|w| w[0] < w[1]));
            for parent in &snapshot.tags {
                let children: Vec<_> = parent.3.iter().map(|c| key(c.2, c.0)).collect();
                prop_assert!(children.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}

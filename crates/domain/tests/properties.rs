//! Property tests of the two rules: membership (DESIGN section 3) and snapshots (section 2).

use domain::{
    Band, BandId, BandTrait, MeFileTagId, Tag, TargetBands, TargetId, TraitGroup, TraitGroupId,
    TraitId, TraitInfo,
};
use proptest::prelude::*;
use std::collections::HashSet;

const TRAITS: i64 = 24;
const PARENTS: i64 = 4;

/// Child traits 1..=TRAITS under parents 1001..=1000+PARENTS, some display orders NULL or tied;
/// every seventh trait has no parent (or its parent row is missing).
fn all_traits() -> Vec<BandTrait> {
    (1..=TRAITS)
        .map(|id| {
            let parent = 1000 + (id % PARENTS) + 1;
            if id % 7 == 0 {
                return BandTrait {
                    child: TraitInfo {
                        id: TraitId(id),
                        name: format!("child {id}"),
                        display_order: Some(1),
                    },
                    parent: None,
                };
            }
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

/// A target as plain data: 0..5 bands, each linked to 0..5 groups (group id, its 0..5
/// trait ids) drawn from a pool of 0..6: a group may be linked to one band twice and shared
/// between bands, as the platform's link table allows.
type RawTarget = Vec<RawBand>;
/// One band's group links: (group id, the group's trait ids).
type RawBand = Vec<(i64, Vec<i64>)>;

fn arb_raw_target() -> impl Strategy<Value = RawTarget> {
    prop::collection::vec(arb_group(), 0..6).prop_flat_map(|pool| {
        let picks = if pool.is_empty() {
            prop::collection::vec(Just(0usize), 0..1).boxed()
        } else {
            prop::collection::vec(0..pool.len(), 0..5).boxed()
        };
        prop::collection::vec(picks, 0..5).prop_map(move |bands| {
            bands
                .into_iter()
                .map(|picks| {
                    picks
                        .into_iter()
                        .map(|i| (i as i64 + 1, pool[i].clone()))
                        .collect()
                })
                .collect()
        })
    })
}

/// Band `i` of the raw target is band id 100 + i; group ids are the pool's, from 1.
fn build_target(raw: &RawTarget) -> TargetBands {
    let bands: Vec<Band> = raw
        .iter()
        .enumerate()
        .map(|(i, groups)| {
            let groups: Vec<TraitGroup> = groups
                .iter()
                .map(|(id, traits)| {
                    TraitGroup::new(TraitGroupId(*id), traits.iter().copied().map(TraitId))
                })
                .collect();
            Band::new(BandId(100 + i as i64), groups)
        })
        .collect();
    TargetBands::new(TargetId(1), bands, all_traits())
}

fn arb_target() -> impl Strategy<Value = TargetBands> {
    arb_raw_target().prop_map(|raw| build_target(&raw))
}

fn arb_tags() -> impl Strategy<Value = Vec<Tag>> {
    prop::collection::vec(
        (
            1..=TRAITS,
            prop::option::of(prop_oneof![
                Just(String::new()),
                "[ \t\n\u{a0}\u{3000}\u{2028}]{1,3}",
                "[a-z\"\\\\]{1,6}",
                "[ \u{a0}]?[日本ü\u{200b}x]{1,3}[ \u{3000}]?",
            ]),
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
    fn explain_agrees_with_membership_band_by_band_and_group_by_group(
        target in arb_target(), tags in arb_tags()
    ) {
        let explanation = target.explain(&tags);
        prop_assert_eq!(explanation.chosen, target.band_for(&tags).map(|b| b.id));
        let innermost_first: Vec<BandId> = target.bands().iter().rev().map(|b| b.id).collect();
        let explained: Vec<BandId> = explanation.bands.iter().map(|b| b.band_id).collect();
        prop_assert_eq!(explained, innermost_first);
        for verdict in &explanation.bands {
            let band = target.band(verdict.band_id).unwrap();
            prop_assert_eq!(verdict.matched, band.matches(&tags));
            prop_assert_eq!(
                verdict.matched,
                !verdict.groups.is_empty() && verdict.groups.iter().all(|g| g.passed)
            );
            for group in &verdict.groups {
                let on_group: HashSet<i64> = tags
                    .iter()
                    .filter(|t| group.traits.contains(&t.trait_id))
                    .map(|t| t.id.0)
                    .collect();
                let shown: HashSet<i64> = group.matching_tags.iter().map(|t| t.id.0).collect();
                prop_assert_eq!(&shown, &on_group, "every tag on the group's traits, and only those");
                prop_assert_eq!(group.passed, !on_group.is_empty());
            }
        }
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
            // A trait without a parent counts for membership but is not listed.
            let parentless: HashSet<TraitId> = all_traits()
                .into_iter()
                .filter(|t| t.parent.is_none())
                .map(|t| t.child.id)
                .collect();
            let expected: HashSet<TraitId> = tagged
                .into_iter()
                .filter(|t| band.has_trait(*t) && !parentless.contains(t))
                .collect();
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

/// The trait table [`all_traits`] describes, as rows for the model: every child, and each
/// parent once.
fn trait_rows() -> rules_model::Traits {
    let mut rows = rules_model::Traits::new();
    for t in all_traits() {
        if let Some(parent) = &t.parent {
            rows.insert(
                parent.id.0,
                rules_model::TraitRow {
                    id: parent.id.0,
                    name: parent.name.clone(),
                    display_order: parent.display_order,
                    parent_id: None,
                },
            );
        }
        rows.insert(
            t.child.id.0,
            rules_model::TraitRow {
                id: t.child.id.0,
                name: t.child.name.clone(),
                display_order: t.child.display_order,
                parent_id: t.parent.as_ref().map(|p| p.id.0),
            },
        );
    }
    rows
}

/// The raw target as the model reads it: band 100 + i.
fn model_bands(raw: &RawTarget) -> Vec<rules_model::BandLinks> {
    raw.iter()
        .enumerate()
        .map(|(i, groups)| rules_model::BandLinks {
            band_id: 100 + i as i64,
            groups: groups.clone(),
        })
        .collect()
}

proptest! {
    #[test]
    fn membership_and_snapshots_agree_with_an_independent_model(
        raw in arb_raw_target(), tags in arb_tags()
    ) {
        let target = build_target(&raw);
        let traits = trait_rows();
        let bands = model_bands(&raw);
        let model_tags: Vec<rules_model::TagRow> = tags
            .iter()
            .map(|t| rules_model::TagRow {
                id: t.id.0,
                trait_id: t.trait_id.0,
                value: t.tag_value.clone(),
            })
            .collect();
        prop_assert_eq!(
            target.band_for(&tags).map(|b| b.id.0),
            rules_model::band(&bands, &model_tags, &traits)
        );
        for band_links in &bands {
            let band = target
                .bands()
                .iter()
                .find(|b| b.id == BandId(band_links.band_id))
                .expect("every band kept");
            let ours: serde_json::Value =
                serde_json::from_str(&target.snapshot_of(band, &tags).to_json()).unwrap();
            prop_assert_eq!(ours, rules_model::snapshot(band_links, &model_tags, &traits));
        }
    }
}

//! Golden JSON of snapshots: the shape of the platform's example (seed 004) and the edge
//! rules of DESIGN section 2, pinned byte for byte.

use domain::{
    Band, BandId, BandTrait, MeFileTagId, Tag, TargetBands, TargetId, TraitGroup, TraitGroupId,
    TraitId, TraitInfo,
};

fn info(id: i64, name: &str, order: Option<i32>) -> TraitInfo {
    TraitInfo {
        id: TraitId(id),
        name: name.into(),
        display_order: order,
    }
}

fn child(id: i64, name: &str, order: Option<i32>, parent: &TraitInfo) -> BandTrait {
    BandTrait {
        child: info(id, name, order),
        parent: Some(parent.clone()),
    }
}

fn tag(id: i64, trait_id: i64, value: Option<&str>) -> Tag {
    Tag {
        id: MeFileTagId(id),
        trait_id: TraitId(trait_id),
        tag_value: value.map(str::to_owned),
    }
}

/// The traits of the platform's example snapshot (seed 004).
fn home_target() -> TargetBands {
    let own_rent = info(164, "Home Own/Rent", Some(1));
    let zip = info(4, "Home Zip Code", Some(1));
    let props = info(869, "Home Properties", Some(2));
    let home_type = info(885, "Home Type", Some(2));
    let styles = info(2839, "Home Fashion/Styles", Some(1011));
    let traits = vec![
        child(166, "Rent", Some(2), &own_rent),
        child(36566, "02140", Some(2140), &zip),
        child(894, "Multi-story", Some(1), &props),
        child(878, "Central Heat/AC", Some(2), &props),
        child(882, "Fireplace - Gas", Some(2), &props),
        child(893, "Duplex", Some(3), &home_type),
        child(2845, "Casual", Some(6), &styles),
        child(2846, "Contemporary", Some(7), &styles),
        child(2850, "English Country", Some(11), &styles),
    ];
    let group = |id: i64, traits: &[i64]| {
        TraitGroup::new(TraitGroupId(id), traits.iter().map(|t| TraitId(*t)))
    };
    let band = Band::new(
        BandId(1),
        [
            group(1, &[166, 36566]),
            group(2, &[894, 878, 882, 893]),
            group(3, &[2845, 2846, 2850]),
        ],
    );
    TargetBands::new(TargetId(60), [band], traits)
}

#[test]
fn platform_example_shape() {
    let target = home_target();
    let tags = vec![
        tag(10, 2850, None),
        tag(11, 166, Some("Rent")),
        tag(12, 36566, Some("02140")),
        tag(13, 882, Some("")),
        tag(14, 878, None),
        tag(15, 894, Some("Multi-story")),
        tag(16, 893, None),
        tag(17, 2845, None),
        tag(18, 2846, None),
        // not a trait of the band: never in the snapshot
        tag(19, 999_999, Some("Other")),
    ];
    let band = target.band_for(&tags).expect("matches the band");
    let snapshot = target.snapshot_of(band, &tags);
    insta::assert_snapshot!(snapshot.to_json());
}

#[test]
fn null_and_blank_values_fall_back_to_the_trait_name_and_null_orders_sort_last() {
    let parent_a = info(1, "Interests", None);
    let parent_b = info(2, "Age", Some(5));
    let traits = vec![
        child(10, "Hiking", None, &parent_a),
        child(11, "Chess", Some(3), &parent_a),
        child(12, "Baking", Some(3), &parent_a),
        child(20, "25-34", Some(2), &parent_b),
    ];
    let band = Band::new(
        BandId(7),
        [TraitGroup::new(
            TraitGroupId(1),
            [10, 11, 12, 20].map(TraitId),
        )],
    );
    let target = TargetBands::new(TargetId(1), [band], traits);
    let tags = vec![
        tag(1, 10, Some("   ")),
        tag(2, 11, None),
        tag(3, 12, Some("sourdough \"levain\" \\ ✓")),
        tag(4, 20, Some("30")),
        // a duplicate tag row for trait 20: the lowest tag id wins
        tag(5, 20, Some("31")),
    ];
    let snapshot = target
        .snapshot(BandId(7), &tags)
        .expect("band of the target");
    insta::assert_snapshot!(snapshot.to_json());
}

#[test]
fn no_matching_tag_is_an_empty_list_not_null() {
    let target = home_target();
    let snapshot = target.snapshot(BandId(1), &[]).expect("band of the target");
    assert_eq!(snapshot.to_json(), r#"{"tags":[]}"#);
}

#[test]
fn a_trait_in_two_groups_is_listed_once() {
    let parent = info(1, "Gender", Some(1));
    let band = Band::new(
        BandId(3),
        [
            TraitGroup::new(TraitGroupId(1), [TraitId(10)]),
            TraitGroup::new(TraitGroupId(2), [TraitId(10), TraitId(11)]),
        ],
    );
    let target = TargetBands::new(
        TargetId(1),
        [band],
        [
            child(10, "Female", Some(1), &parent),
            child(11, "Male", Some(2), &parent),
        ],
    );
    let snapshot = target.snapshot(BandId(3), &[tag(1, 10, None)]).unwrap();
    assert_eq!(
        snapshot.to_json(),
        r#"{"tags":[[1,"Gender",1,[[10,"Female",1]]]]}"#
    );
}

#[test]
fn parentless_and_orphan_traits_count_for_membership_but_not_in_snapshots() {
    let band = Band::new(BandId(3), [TraitGroup::new(TraitGroupId(1), [TraitId(10)])]);
    let target = TargetBands::new(
        TargetId(1),
        [band],
        [BandTrait {
            child: info(10, "Parent itself", Some(1)),
            parent: None,
        }],
    );
    let tags = [tag(1, 10, None)];
    let band = target.band_for(&tags).expect("membership counts the tag");
    assert!(target.snapshot_of(band, &tags).is_empty());
}

#[test]
fn stored_jsonb_text_parses_back_to_the_same_snapshot() {
    let target = home_target();
    let tags = vec![tag(1, 166, None), tag(2, 894, None), tag(3, 2845, None)];
    let snapshot = target.snapshot(BandId(1), &tags).unwrap();
    // PostgreSQL prints jsonb with a space after each comma and colon.
    let as_jsonb = snapshot.to_json().replace(',', ", ").replace(':', ": ");
    assert_eq!(domain::Snapshot::from_json(&as_jsonb).unwrap(), snapshot);
}

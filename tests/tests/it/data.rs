//! The synthetic data set and the repository reads the jobs build on, on both backends.

use domain::{BandId, MeFileId, TargetId, TraitId};
use entity::{me_file_tags, offers, target_populations};
use sea_orm::{EntityTrait, QueryOrder};
use snapline_tests::{Backend, TestDb, both_backends};
use std::collections::{HashMap, HashSet};
use synth::SeedOptions;

fn small(legacy_share: f64) -> SeedOptions {
    SeedOptions {
        me_files: 1_500,
        targets: 10,
        legacy_share,
        seed: 7,
        chunk_size: 400,
        deleted_band_offers: true,
    }
}

type TagRow = (i64, i64, i64, Option<String>);

async fn all_tags(test: &TestDb) -> Vec<TagRow> {
    me_file_tags::Entity::find()
        .order_by_asc(me_file_tags::Column::Id)
        .all(test.db.conn())
        .await
        .expect("read tags")
        .into_iter()
        .map(|t| (t.id.0, t.me_file_id.0, t.trait_id.0, t.tag_value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_options_write_the_same_rows_on_both_backends() {
    let pg = TestDb::seeded(Backend::Postgres, &small(0.1)).await;
    let lite = TestDb::seeded(Backend::Sqlite, &small(0.1)).await;
    let pg_tags = all_tags(&pg).await;
    assert!(!pg_tags.is_empty());
    assert_eq!(pg_tags, all_tags(&lite).await);
    assert_eq!(
        pg.db.stats().tables().await.unwrap(),
        lite.db.stats().tables().await.unwrap()
    );
    // the chunk size does not change the rows
    let rechunked = TestDb::seeded(
        Backend::Sqlite,
        &SeedOptions {
            chunk_size: 333,
            ..small(0.1)
        },
    )
    .await;
    assert_eq!(pg_tags, all_tags(&rechunked).await);
}

async fn seed_refuses_a_database_that_holds_data(backend: Backend) {
    let test = TestDb::seeded(backend, &small(0.0)).await;
    let err = synth::seed(&test.db, &small(0.0), |_, _| {})
        .await
        .expect_err("second seed refused");
    assert!(
        matches!(
            err,
            synth::SeedError::NotEmpty {
                me_files: 1_500,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(test.db.stats().tables().await.unwrap().me_files, 1_500);
}

async fn the_data_set_has_the_shapes_the_rules_must_handle(backend: Backend) {
    let test = TestDb::seeded(backend, &small(0.1)).await;
    let tags = all_tags(&test).await;
    assert!(tags.iter().any(|t| t.3.is_none()), "NULL tag values");
    assert!(
        tags.iter().any(|t| t.3.as_deref() == Some("")),
        "empty tag values"
    );
    assert!(
        tags.iter().any(|t| t.3.as_deref() == Some("  ")),
        "blank tag values"
    );
    let mut seen = HashSet::new();
    assert!(
        tags.iter().any(|t| !seen.insert((t.1, t.2))),
        "a me_file tagged twice with the same trait"
    );
    let zip_codes = synth::parents()[0].children.len();
    assert_eq!(zip_codes, 1_000);

    let nulls = test.db.stats().null_snapshots().await.unwrap();
    assert!(nulls.target_populations > 0 && nulls.offers > 0 && nulls.ad_events > 0);
    let offers = offers::Entity::find().all(test.db.conn()).await.unwrap();
    assert!(
        offers.iter().any(|o| o.target_band_id.0 > 800_000_000),
        "offers on bands that no longer exist"
    );
}

async fn band_metadata_follows_the_definition(backend: Backend) {
    let test = TestDb::seeded(backend, &small(0.0)).await;
    let bands = test.db.bands();

    let nested = bands.of_target(TargetId(1)).await.unwrap();
    let groups: Vec<usize> = nested.bands().iter().map(|b| b.groups.len()).collect();
    assert_eq!(groups, vec![1, 2, 3], "outermost first");
    let age = TraitId(20_001);
    let info = nested.trait_info(age).expect("metadata of a band trait");
    assert_eq!(info.child.name, "18-24");
    assert_eq!(info.parent.as_ref().unwrap().name, "Age Range");

    let empty_group = bands.of_target(TargetId(4)).await.unwrap();
    let inner = &empty_group.bands()[1];
    assert!(inner.groups.iter().any(|g| g.traits.is_empty()));

    assert!(
        bands
            .of_target(TargetId(6))
            .await
            .unwrap()
            .bands()
            .is_empty()
    );
    assert!(
        bands
            .of_target(TargetId(999))
            .await
            .unwrap()
            .bands()
            .is_empty()
    );

    let many = bands
        .of_targets(&[TargetId(1), TargetId(2), TargetId(6), TargetId(999)])
        .await
        .unwrap();
    let mut with_bands: Vec<i64> = many.keys().map(|t| t.0).collect();
    with_bands.sort();
    assert_eq!(with_bands, vec![1, 2]);

    let owners = bands
        .targets_of_bands(&[BandId(1), BandId(123_456)])
        .await
        .unwrap();
    assert_eq!(owners, HashMap::from([(BandId(1), TargetId(1))]));
}

async fn tags_of_a_batch_of_me_files(backend: Backend) {
    let test = TestDb::seeded(backend, &small(0.0)).await;
    let expected = all_tags(&test).await;
    let ids: Vec<MeFileId> = (1..=50).map(MeFileId).collect();
    let batch = test.db.tags().of_me_files(&ids, None).await.unwrap();
    let from_batch: usize = batch.values().map(Vec::len).sum();
    assert_eq!(
        from_batch,
        expected.iter().filter(|t| t.1 <= 50).count(),
        "every tag of the batch, nothing else"
    );
    let zips: Vec<TraitId> = synth::parents()[0].child_ids().collect();
    let only_zips = test.db.tags().of_me_files(&ids, Some(&zips)).await.unwrap();
    assert!(
        only_zips
            .values()
            .flatten()
            .all(|t| t.trait_id.0 / 10_000 == 1)
    );
    assert!(!only_zips.is_empty());
}

async fn population_pages_cover_every_row_once(backend: Backend) {
    let test = TestDb::seeded(backend, &small(0.5)).await;
    let repo = test.db.populations();
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = repo.page_of_target(TargetId(1), after, 7).await.unwrap();
        seen.extend(page.rows.iter().map(|r| r.id.0));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let target_bands: HashSet<i64> = test
        .db
        .bands()
        .of_target(TargetId(1))
        .await
        .unwrap()
        .bands()
        .iter()
        .map(|b| b.id.0)
        .collect();
    let mut expected: Vec<i64> = target_populations::Entity::find()
        .all(test.db.conn())
        .await
        .unwrap()
        .into_iter()
        .filter(|p| {
            p.target_band_id
                .is_some_and(|b| target_bands.contains(&b.0))
        })
        .map(|p| p.id.0)
        .collect();
    assert!(expected.len() > 100);
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no row twice");
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
}

async fn legacy_populations_sit_in_the_band_the_rules_give(backend: Backend) {
    let test = TestDb::seeded(backend, &small(0.3)).await;
    let populations = target_populations::Entity::find()
        .all(test.db.conn())
        .await
        .unwrap();
    assert!(
        populations
            .iter()
            .all(|p| p.matching_tags_snapshot.is_none())
    );
    let owners = test
        .db
        .bands()
        .targets_of_bands(
            &populations
                .iter()
                .map(|p| BandId(p.target_band_id.expect("seeded rows have a band").0))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let targets: Vec<TargetId> = owners.values().copied().collect();
    let all_bands = test.db.bands().of_targets(&targets).await.unwrap();
    let me_files: Vec<MeFileId> = populations
        .iter()
        .map(|p| MeFileId(p.me_file_id.expect("seeded rows have a me_file").0))
        .collect();
    let tags = test.db.tags().of_me_files(&me_files, None).await.unwrap();
    for p in &populations {
        let band_id = BandId(p.target_band_id.expect("seeded rows have a band").0);
        let me_file = MeFileId(p.me_file_id.expect("seeded rows have a me_file").0);
        let target = &all_bands[&owners[&band_id]];
        let band = target
            .band_for(&tags[&me_file])
            .expect("a legacy member matches its target");
        assert_eq!(band.id, band_id);
    }
}

both_backends! {
    seed_refuses_non_empty => seed_refuses_a_database_that_holds_data;
    data_set_shapes => the_data_set_has_the_shapes_the_rules_must_handle;
    band_metadata => band_metadata_follows_the_definition;
    tags_of_batch => tags_of_a_batch_of_me_files;
    population_pages => population_pages_cover_every_row_once;
    legacy_membership => legacy_populations_sit_in_the_band_the_rules_give;
}

//! Hostile and odd platform data, table-driven, on both backends: every case is a me_file
//! with particular tags on a hand-built catalog. Populating, syncing and backfilling must
//! give exactly what the domain rules give, and string values must come back verbatim in
//! the stored snapshots (every statement binds its parameters; none splices values in).

use domain::{MeFileId, Snapshot, TargetId, TraitId};
use jobs::BandCache;
use jobs::backfill::{self, BackfillScope};
use jobs::populate_target;
use jobs::sync_me_file::sync_me_file;
use repo::Db;
use snapline_tests::{
    Backend, TestDb, assert_backfill_owed, assert_population_exact, both_backends, execute,
    null_snapshot_ids, quote,
};
use std::time::Duration;

/// What a case expects of its me_file in target 1.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Member of band `band` and child `trait` listed with exactly `value`.
    Listed {
        band: i64,
        trait_id: i64,
        value: &'static str,
    },
    /// Member of `band`, and `trait` appears nowhere in the snapshot.
    NotListed { band: i64, trait_id: i64 },
    /// Not a member of target 1 at all.
    NoRow,
}

struct Case {
    name: &'static str,
    /// (trait, tag_value) rows of the me_file, in insertion order.
    tags: Vec<(i64, Option<String>)>,
    expect: Expect,
}

fn ten_kb() -> &'static str {
    Box::leak("é".repeat(5_120).into_boxed_str())
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let v = |s: &str| Some(s.to_owned());
    let listed = |trait_id, value| Listed {
        band: 1,
        trait_id,
        value,
    };
    vec![
        Case {
            name: "SQL-looking value",
            tags: vec![(11, v("'); DROP TABLE target_populations; --"))],
            expect: listed(11, "'); DROP TABLE target_populations; --"),
        },
        Case {
            name: "quotes and backslashes",
            tags: vec![(11, v(r#"O'Brien "q" \n \\ \"#))],
            expect: listed(11, r#"O'Brien "q" \n \\ \"#),
        },
        Case {
            name: "multi-byte text",
            tags: vec![(11, v("日本語 ✓ 🎯 ünïcödé"))],
            expect: listed(11, "日本語 ✓ 🎯 ünïcödé"),
        },
        Case {
            name: "10 KB value",
            tags: vec![(11, Some(ten_kb().to_owned()))],
            expect: listed(11, ten_kb()),
        },
        Case {
            name: "control characters",
            tags: vec![(11, v("a\u{1}b\tc\nd\re\u{7f}"))],
            expect: listed(11, "a\u{1}b\tc\nd\re\u{7f}"),
        },
        Case {
            name: "NUL-like escapes",
            tags: vec![(11, v(r"\0 \x00 \u0000 %00"))],
            expect: listed(11, r"\0 \x00 \u0000 %00"),
        },
        Case {
            name: "JSON-looking value",
            tags: vec![(11, v(r#"{"tags": [[1, "x"]]}"#))],
            expect: listed(11, r#"{"tags": [[1, "x"]]}"#),
        },
        Case {
            name: "percent and underscore",
            tags: vec![(11, v("100% _x_ %%"))],
            expect: listed(11, "100% _x_ %%"),
        },
        Case {
            name: "NULL value falls back to the trait name",
            tags: vec![(11, None)],
            expect: listed(11, "Music"),
        },
        Case {
            name: "blank value falls back to the trait name",
            tags: vec![(11, v(" \t "))],
            expect: listed(11, "Music"),
        },
        Case {
            name: "Unicode white space only (NBSP, ideographic space, line separator) is blank",
            tags: vec![(11, v("\u{a0}\t\u{3000}\u{2028}\u{85}"))],
            expect: listed(11, "Music"),
        },
        Case {
            name: "a value between Unicode white space is kept verbatim",
            tags: vec![(11, v("\u{a0}x\u{3000}"))],
            expect: listed(11, "\u{a0}x\u{3000}"),
        },
        Case {
            name: "zero-width space is not white space: kept",
            tags: vec![(11, v("\u{200b}"))],
            expect: listed(11, "\u{200b}"),
        },
        Case {
            name: "empty value falls back to the trait name",
            tags: vec![(11, v(""))],
            expect: listed(11, "Music"),
        },
        Case {
            name: "trait with NULL display_order",
            tags: vec![(12, v("art"))],
            expect: listed(12, "art"),
        },
        Case {
            name: "tied display_orders",
            tags: vec![(13, v("film")), (11, v("music"))],
            expect: listed(13, "film"),
        },
        Case {
            name: "duplicate tag rows list once",
            tags: vec![(11, v("first")), (11, v("second"))],
            expect: listed(11, "first"),
        },
        Case {
            name: "child whose parent is missing",
            tags: vec![(41, v("orphan"))],
            expect: NotListed {
                band: 1,
                trait_id: 41,
            },
        },
        Case {
            name: "trait without a parent",
            tags: vec![(50, v("root"))],
            expect: NotListed {
                band: 1,
                trait_id: 50,
            },
        },
        Case {
            name: "child of a parent that has a parent",
            tags: vec![(31, v("nested"))],
            expect: listed(31, "nested"),
        },
        Case {
            name: "tag on a trait that does not exist",
            tags: vec![(999, v("ghost"))],
            expect: NoRow,
        },
        Case {
            name: "no tags at all",
            tags: vec![],
            expect: NoRow,
        },
        Case {
            name: "inner band: both groups",
            tags: vec![(11, v("m")), (21, v("02139"))],
            expect: Listed {
                band: 2,
                trait_id: 21,
                value: "02139",
            },
        },
        Case {
            name: "a band with no groups matches nobody",
            tags: vec![(11, v("m")), (21, v("z")), (60, v("x"))],
            expect: Listed {
                band: 2,
                trait_id: 11,
                value: "m",
            },
        },
    ]
}

/// The catalog: parents 1 (display_order 1), 2 (NULL) and 3 (itself under 1); children 11,
/// 13 (tied order 2), 12 (NULL order) under 1, 21 under 2, 31 under 3, 41 under a missing
/// parent 99, 50 without parent, 60 under 1. Target 1: band 1 (group 1: every child), band 2
/// (groups 1 and 2: {21}), band 3 (groups 1, 2 and 4 with no traits: matches nobody). Target
/// 2: band 4 with no groups at all (matches nobody).
async fn build_catalog(db: &Db) {
    for sql in [
        "INSERT INTO traits (id, trait_name, parent_trait_id, display_order) VALUES \
         (1, 'Interests', NULL, 1), (2, 'Zip', NULL, NULL), (3, 'Sub-interests', 1, 3), \
         (11, 'Music', 1, 2), (13, 'Film', 1, 2), (12, 'Art', 1, NULL), (21, 'Z', 2, 1), \
         (31, 'Jazz', 3, 1), (41, 'Lost', 99, 1), (50, 'Root', NULL, 1), (60, 'Other', 1, 9)",
        "INSERT INTO targets (id, title) VALUES (1, 'hostile'), (2, 'no groups')",
        "INSERT INTO target_bands (id, target_id) VALUES (1, 1), (2, 1), (3, 1), (4, 2)",
        "INSERT INTO trait_groups (id, title) VALUES (1, 'all'), (2, 'zip'), (4, 'empty')",
        "INSERT INTO trait_group_traits (trait_group_id, trait_id) VALUES \
         (1, 11), (1, 12), (1, 13), (1, 21), (1, 31), (1, 41), (1, 50), (1, 60), (2, 21)",
        "INSERT INTO target_band_trait_groups (target_band_id, trait_group_id) VALUES \
         (1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (3, 4)",
    ] {
        execute(db, sql).await;
    }
}

async fn snapshot_of(db: &Db, me_file: i64) -> Option<(i64, Snapshot)> {
    let rows = db
        .populations()
        .page_of_target(TargetId(1), None, 10_000)
        .await
        .unwrap()
        .rows;
    rows.into_iter()
        .find(|r| r.me_file_id == MeFileId(me_file))
        .map(|r| {
            (
                r.band_id.0,
                Snapshot::from_json(&r.snapshot.expect("a snapshot")).unwrap(),
            )
        })
}

fn check(case: &Case, got: Option<(i64, Snapshot)>) -> Result<(), String> {
    let children = |s: &Snapshot| -> Vec<(i64, String)> {
        s.tags
            .iter()
            .flat_map(|p| p.3.iter().map(|c| (c.0.0, c.1.clone())))
            .collect()
    };
    match (case.expect, got) {
        (Expect::NoRow, None) => Ok(()),
        (
            Expect::Listed {
                band,
                trait_id,
                value,
            },
            Some((b, s)),
        ) if b == band => {
            let listed: Vec<_> = children(&s)
                .into_iter()
                .filter(|(t, _)| *t == trait_id)
                .collect();
            if listed == vec![(trait_id, value.to_owned())] {
                Ok(())
            } else {
                Err(format!("trait {trait_id} listed as {listed:?}"))
            }
        }
        (Expect::NotListed { band, trait_id }, Some((b, s))) if b == band => {
            if children(&s).iter().any(|(t, _)| *t == trait_id)
                || s.tags.iter().any(|p| p.0 == TraitId(trait_id))
            {
                Err(format!("trait {trait_id} is listed: {}", s.to_json()))
            } else {
                Ok(())
            }
        }
        (expect, got) => Err(format!("expected {expect:?}, got {got:?}")),
    }
}

async fn odd_data_comes_back_exact_and_verbatim(backend: Backend) {
    let test = TestDb::migrated(backend).await;
    let db = &test.db;
    build_catalog(db).await;
    let table = cases();
    for (i, case) in table.iter().enumerate() {
        let me_file = i as i64 + 1;
        execute(
            db,
            &format!(
                "INSERT INTO me_files (id, display_name) VALUES ({me_file}, {})",
                quote(case.name)
            ),
        )
        .await;
        for (trait_id, value) in &case.tags {
            db.tags()
                .platform_add(MeFileId(me_file), TraitId(*trait_id), value.as_deref())
                .await
                .unwrap();
        }
    }
    let check_all = |stage: &'static str| async move {
        let mut failures = Vec::new();
        for (i, case) in cases().iter().enumerate() {
            if let Err(why) = check(case, snapshot_of(db, i as i64 + 1).await) {
                failures.push(format!("{stage}: {}: {why}", case.name));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_population_exact(db, TargetId(1)).await;
        assert_population_exact(db, TargetId(2)).await;
    };

    // The populator.
    for target in [1, 2] {
        populate_target::populate_target(db, TargetId(target), &Default::default())
            .await
            .expect("populate odd data");
    }
    check_all("populate").await;

    // The syncer, from scratch: every row inserted by syncs.
    execute(db, "DELETE FROM target_populations").await;
    let cache = BandCache::new(Duration::from_secs(60));
    for i in 0..table.len() {
        sync_me_file(db, &cache, MeFileId(i as i64 + 1))
            .await
            .expect("sync odd data");
    }
    check_all("sync").await;

    // The backfill, of snapshots lost.
    execute(
        db,
        "UPDATE target_populations SET matching_tags_snapshot = NULL",
    )
    .await;
    // NULL offers and ad_events of every me_file on bands 1 and 2: copies of their
    // population's snapshot, or orphans computed from tags.
    execute(
        db,
        "INSERT INTO offers (campaign_id, me_file_id, target_band_id) \
         SELECT 1, m.id, b.id FROM me_files m CROSS JOIN target_bands b WHERE b.id IN (1, 2); \
         INSERT INTO ad_events (offer_id, me_file_id, target_band_id) \
         SELECT 1, m.id, b.id FROM me_files m CROSS JOIN target_bands b WHERE b.id IN (1, 2)",
    )
    .await;
    let null_ids = null_snapshot_ids(db).await;
    backfill::backfill(db, &BackfillScope::All, &Default::default(), &|_| {})
        .await
        .expect("backfill odd data");
    check_all("backfill").await;
    assert_backfill_owed(db, &null_ids).await;
    assert!(table.len() >= 20);
}

both_backends! {
    odd_data => odd_data_comes_back_exact_and_verbatim;
}

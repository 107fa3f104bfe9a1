//! The oracle of both backends: the rules as `rules_model` states them, run over rows read
//! with plain SQL, compared with rows read with plain SQL. Nothing here goes through the
//! repositories or the domain the jobs use, so a bug they share (a rule, a band read, a
//! snapshot's JSON) fails here on SQLite too, where the set-based SQL oracle
//! (`repo::ReferenceRepo`) does not run.

use domain::{BandId, MeFileId, TargetId};
use repo::Db;
use rules_model::{BandLinks, TagRow, TraitRow, Traits};
use sea_orm::{ConnectionTrait, QueryResult, Statement};
use serde_json::Value;
use std::collections::BTreeMap;

/// Me_files whose tags are read at once.
const ME_FILES_PER_READ: usize = 5_000;

/// A row with a snapshot column: (id, me_file, band, snapshot), as stored.
type SnapshotRow = (i64, Option<i64>, Option<i64>, Option<Value>);

/// A target's rows as the rules want them: me_file -> (band, snapshot).
pub type RuleRows = BTreeMap<MeFileId, (BandId, Value)>;

/// A target's rows as stored, read with plain SQL: me_file -> [(band, snapshot or NULL)].
pub type StoredJsonRows = BTreeMap<MeFileId, Vec<(BandId, Option<Value>)>>;

async fn rows(db: &Db, sql: &str) -> Vec<QueryResult> {
    db.conn()
        .query_all_raw(Statement::from_string(
            db.conn().get_database_backend(),
            sql,
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn id(row: &QueryResult, column: usize) -> i64 {
    row.try_get_by_index::<entity::Id>(column).expect("an id").0
}

fn nullable_id(row: &QueryResult, column: usize) -> Option<i64> {
    row.try_get_by_index::<Option<entity::Id>>(column)
        .expect("an id or NULL")
        .map(|id| id.0)
}

fn json(text: Option<String>) -> Option<Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or_else(|e| panic!("stored JSON {t}: {e}")))
}

fn list(ids: impl IntoIterator<Item = i64>) -> String {
    let ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    if ids.is_empty() {
        "NULL".into()
    } else {
        ids.join(", ")
    }
}

/// The whole `traits` table.
pub async fn traits(db: &Db) -> Traits {
    rows(
        db,
        "SELECT id, trait_name, display_order, parent_trait_id FROM traits",
    )
    .await
    .iter()
    .map(|row| {
        let trait_row = TraitRow {
            id: id(row, 0),
            name: row.try_get_by_index(1).expect("trait_name"),
            display_order: row.try_get_by_index(2).expect("display_order"),
            parent_id: nullable_id(row, 3),
        };
        (trait_row.id, trait_row)
    })
    .collect()
}

/// Bands `band_ids` (those that exist) with the groups linked to them that exist and
/// each group's trait ids.
pub async fn band_links(db: &Db, band_ids: &[i64]) -> BTreeMap<i64, BandLinks> {
    let mut bands: BTreeMap<i64, BandLinks> = rows(
        db,
        &format!(
            "SELECT id FROM target_bands WHERE id IN ({})",
            list(band_ids.iter().copied())
        ),
    )
    .await
    .iter()
    .map(|row| {
        let band_id = id(row, 0);
        (
            band_id,
            BandLinks {
                band_id,
                groups: Vec::new(),
            },
        )
    })
    .collect();
    let links = rows(
        db,
        &format!(
            "SELECT l.target_band_id, l.trait_group_id FROM target_band_trait_groups l \
             JOIN trait_groups g ON g.id = l.trait_group_id \
             WHERE l.target_band_id IN ({})",
            list(bands.keys().copied())
        ),
    )
    .await;
    let links: Vec<(i64, i64)> = links.iter().map(|row| (id(row, 0), id(row, 1))).collect();
    let mut group_traits: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for row in rows(
        db,
        &format!(
            "SELECT trait_group_id, trait_id FROM trait_group_traits \
             WHERE trait_id IS NOT NULL AND trait_group_id IN ({})",
            list(links.iter().map(|l| l.1))
        ),
    )
    .await
    {
        group_traits
            .entry(id(&row, 0))
            .or_default()
            .push(id(&row, 1));
    }
    for (band, group) in links {
        let traits = group_traits.get(&group).cloned().unwrap_or_default();
        bands
            .get_mut(&band)
            .expect("a linked band")
            .groups
            .push((group, traits));
    }
    bands
}

/// The tags of me_files `me_files`.
async fn tags_of(db: &Db, me_files: &[i64]) -> BTreeMap<i64, Vec<TagRow>> {
    let mut tags: BTreeMap<i64, Vec<TagRow>> = BTreeMap::new();
    for row in rows(
        db,
        &format!(
            "SELECT me_file_id, id, trait_id, tag_value FROM me_file_tags \
             WHERE trait_id IS NOT NULL AND me_file_id IN ({})",
            list(me_files.iter().copied())
        ),
    )
    .await
    {
        tags.entry(id(&row, 0)).or_default().push(TagRow {
            id: id(&row, 1),
            trait_id: id(&row, 2),
            value: row.try_get_by_index(3).expect("tag_value"),
        });
    }
    tags
}

/// A target's rows as the rules want them, computed by the model from every me_file's
/// current tags.
pub async fn rows_by_rules(db: &Db, target: TargetId) -> RuleRows {
    let band_ids: Vec<i64> = rows(
        db,
        &format!("SELECT id FROM target_bands WHERE target_id = {}", target.0),
    )
    .await
    .iter()
    .map(|row| id(row, 0))
    .collect();
    let bands: Vec<BandLinks> = band_links(db, &band_ids).await.into_values().collect();
    let traits = traits(db).await;
    let me_files: Vec<i64> = rows(db, "SELECT id FROM me_files ORDER BY id")
        .await
        .iter()
        .map(|row| id(row, 0))
        .collect();
    let mut wanted = RuleRows::new();
    for chunk in me_files.chunks(ME_FILES_PER_READ) {
        let tags = tags_of(db, chunk).await;
        for me_file in chunk {
            let tags = tags.get(me_file).map(Vec::as_slice).unwrap_or_default();
            if let Some(band_id) = rules_model::band(&bands, tags, &traits) {
                let band = bands.iter().find(|b| b.band_id == band_id).expect("a band");
                wanted.insert(
                    MeFileId(*me_file),
                    (BandId(band_id), rules_model::snapshot(band, tags, &traits)),
                );
            }
        }
    }
    wanted
}

/// A target's rows as stored (but rows without a me_file: the platform's, which snapline
/// leaves alone).
pub async fn stored_json_rows(db: &Db, target: TargetId) -> StoredJsonRows {
    let mut stored = StoredJsonRows::new();
    for row in rows(
        db,
        &format!(
            "SELECT p.me_file_id, p.target_band_id, CAST(p.matching_tags_snapshot AS TEXT) \
             FROM target_populations p JOIN target_bands b ON b.id = p.target_band_id \
             WHERE b.target_id = {} AND p.me_file_id IS NOT NULL ORDER BY p.id",
            target.0
        ),
    )
    .await
    {
        stored.entry(MeFileId(id(&row, 0))).or_default().push((
            BandId(id(&row, 1)),
            json(row.try_get_by_index(2).expect("snapshot")),
        ));
    }
    stored
}

/// Asserts a target's stored rows are exactly what the model gives: one row per member, in
/// its band, with its snapshot, and nothing else.
pub async fn assert_rows_as_rules_give(db: &Db, target: TargetId) {
    let wanted: StoredJsonRows = rows_by_rules(db, target)
        .await
        .into_iter()
        .map(|(m, (band, snapshot))| (m, vec![(band, Some(snapshot))]))
        .collect();
    let stored = stored_json_rows(db, target).await;
    if stored != wanted {
        let wrong: Vec<_> = wanted
            .iter()
            .filter(|(m, rows)| stored.get(m) != Some(rows))
            .take(3)
            .map(|(m, rows)| (m, rows, stored.get(m)))
            .collect();
        let extra: Vec<_> = stored
            .keys()
            .filter(|m| !wanted.contains_key(m))
            .take(3)
            .collect();
        panic!(
            "target {target}: {} me_files stored, {} by the rules; first differences \
             (me_file, by the rules, stored) {wrong:?}; stored, not members {extra:?}",
            stored.len(),
            wanted.len(),
        );
    }
}

/// Asserts each row that had a NULL snapshot (`before`: ids of target_populations, offers
/// and ad_events) holds what a backfill owes it: a population the model's snapshot of its
/// tags for its band; an offer or ad_event its population's snapshot when there is one,
/// else (an orphan) the model's snapshot of its tags; NULL where its band is gone or a
/// reference is NULL.
pub async fn assert_backfill_owed_by_rules(db: &Db, before: &[Vec<i64>; 3]) {
    let traits = traits(db).await;
    for (table, ids) in crate::SNAPSHOT_TABLES.iter().zip(before) {
        if ids.is_empty() {
            continue;
        }
        let mut rows_of_table = Vec::new();
        for chunk in ids.chunks(ME_FILES_PER_READ) {
            rows_of_table.extend(
                rows(
                    db,
                    &format!(
                        "SELECT id, me_file_id, target_band_id, CAST(matching_tags_snapshot AS TEXT) \
                         FROM {table} WHERE id IN ({})",
                        list(chunk.iter().copied())
                    ),
                )
                .await,
            );
        }
        let rows_of_table: Vec<SnapshotRow> = rows_of_table
            .iter()
            .map(|row| {
                (
                    id(row, 0),
                    nullable_id(row, 1),
                    nullable_id(row, 2),
                    json(row.try_get_by_index(3).expect("snapshot")),
                )
            })
            .collect();
        let bands = band_links(
            db,
            &rows_of_table.iter().filter_map(|r| r.2).collect::<Vec<_>>(),
        )
        .await;
        let me_files: Vec<i64> = rows_of_table.iter().filter_map(|r| r.1).collect();
        let mut tags = BTreeMap::new();
        for chunk in me_files.chunks(ME_FILES_PER_READ) {
            tags.extend(tags_of(db, chunk).await);
        }
        let populations = if *table == "target_populations" {
            BTreeMap::new()
        } else {
            population_snapshots(db, &me_files).await
        };
        let mut wrong = Vec::new();
        for (row_id, me_file, band, stored) in &rows_of_table {
            let owed = match (me_file, band.and_then(|b| bands.get(&b))) {
                (Some(me_file), Some(band)) => populations
                    .get(&(*me_file, band.band_id))
                    .cloned()
                    .flatten()
                    .or_else(|| {
                        Some(rules_model::snapshot(
                            band,
                            tags.get(me_file).map(Vec::as_slice).unwrap_or_default(),
                            &traits,
                        ))
                    }),
                _ => None,
            };
            if stored != &owed {
                wrong.push(format!(
                    "{table} {row_id}: stored {stored:?}, owed {owed:?}"
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} rows not what the rules owe: {:#?}",
            wrong.len(),
            rows_of_table.len(),
            &wrong[..wrong.len().min(5)]
        );
    }
}

/// The stored snapshots of the populations of `me_files`: (me_file, band) -> snapshot.
async fn population_snapshots(db: &Db, me_files: &[i64]) -> BTreeMap<(i64, i64), Option<Value>> {
    let mut snapshots = BTreeMap::new();
    for chunk in me_files.chunks(ME_FILES_PER_READ) {
        for row in rows(
            db,
            &format!(
                "SELECT me_file_id, target_band_id, CAST(matching_tags_snapshot AS TEXT) \
                 FROM target_populations WHERE me_file_id IN ({})",
                list(chunk.iter().copied())
            ),
        )
        .await
        {
            if let Some(band) = nullable_id(&row, 1) {
                snapshots.insert(
                    (id(&row, 0), band),
                    json(row.try_get_by_index(2).expect("snapshot")),
                );
            }
        }
    }
    snapshots
}

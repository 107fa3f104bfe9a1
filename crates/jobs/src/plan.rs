//! What to write for a set of me_files of one target: the diff between the populations the
//! rules want and the ones stored. Used by every writer of populations, so populating a
//! target and syncing its me_files one by one give the same rows.

use domain::{MeFileId, Snapshot, Tag, TargetBands};
use repo::{PopulationChanges, PopulationRow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The changes for one batch and what they mean.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PopulationPlan {
    pub changes: PopulationChanges,
    /// Me_files whose band in the target changed (joined, moved or left): what the platform
    /// is told. A refreshed snapshot is not a band change.
    pub bands_changed: Vec<MeFileId>,
    pub inserted: u64,
    pub moved: u64,
    pub refreshed: u64,
    pub deleted: u64,
    pub unchanged: u64,
}

/// Plans the rows of `target` for `me_files` (the me_files that exist, with their `tags`;
/// a missing entry means no tags) given the target's `existing` rows for them and for
/// me_files that no longer exist (deleted if they are still gone when the delete runs).
pub fn plan_population(
    target: &TargetBands,
    me_files: &[MeFileId],
    tags: &HashMap<MeFileId, Vec<Tag>>,
    existing: Vec<PopulationRow>,
) -> PopulationPlan {
    let mut stored: BTreeMap<MeFileId, Vec<PopulationRow>> = BTreeMap::new();
    for row in existing {
        stored.entry(row.me_file_id).or_default().push(row);
    }
    let mut plan = PopulationPlan::default();
    let no_tags: Vec<Tag> = Vec::new();

    for me_file in me_files {
        let rows = stored.remove(me_file).unwrap_or_default();
        let me_file_tags = tags.get(me_file).unwrap_or(&no_tags);
        let Some(band) = target.band_for(me_file_tags) else {
            if !rows.is_empty() {
                plan.bands_changed.push(*me_file);
            }
            plan.delete(rows);
            continue;
        };
        let snapshot = target.snapshot_of(band, me_file_tags);
        let (mut same_band, others): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|r| r.band_id == band.id);
        if let Some(row) = same_band.pop() {
            plan.delete(same_band.into_iter().chain(others));
            if stored_snapshot_equals(row.snapshot.as_deref(), &snapshot) {
                plan.unchanged += 1;
            } else {
                plan.changes
                    .updates
                    .push((row.id, band.id, snapshot.to_json()));
                plan.refreshed += 1;
            }
        } else if let Some((row, rest)) = others.split_first() {
            plan.delete(rest.iter().cloned());
            plan.changes
                .updates
                .push((row.id, band.id, snapshot.to_json()));
            plan.moved += 1;
            plan.bands_changed.push(*me_file);
        } else {
            plan.changes
                .inserts
                .push((band.id, *me_file, snapshot.to_json()));
            plan.inserted += 1;
            plan.bands_changed.push(*me_file);
        }
    }
    // Rows of me_files that were not in `me_files`: gone when the page was read, unless one
    // was registered since; the delete checks it.
    for (me_file, rows) in stored {
        plan.bands_changed.push(me_file);
        for row in rows {
            plan.changes.deletes_if_me_file_gone.push(row.id);
            plan.deleted += 1;
        }
    }
    plan
}

impl PopulationPlan {
    fn delete(&mut self, rows: impl IntoIterator<Item = PopulationRow>) {
        for row in rows {
            self.changes.deletes.push(row.id);
            self.deleted += 1;
        }
    }
}

/// Compares by meaning, not text: PostgreSQL prints jsonb with its own spacing.
fn stored_snapshot_equals(stored: Option<&str>, computed: &Snapshot) -> bool {
    stored
        .and_then(|text| Snapshot::from_json(text).ok())
        .is_some_and(|s| &s == computed)
}

/// A way the stored populations of a target differ from what the rules want
/// ([`drift_of`]), or a copy left without its snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// A me_file the rules put in a band has no row in the target.
    Missing,
    /// A row the rules do not want: its me_file matches no band, is gone, or already has
    /// its row (a duplicate).
    Extra,
    /// The me_file's row is in another band of the target than the rules choose.
    WrongBand,
    /// The row is in the right band, its snapshot is set and differs from the computed one.
    Stale,
    /// The row is in the right band with a NULL snapshot.
    NullPopulation,
    /// An offer with a NULL snapshot.
    NullOffer,
    /// An ad_event with a NULL snapshot.
    NullAdEvent,
}

impl DriftKind {
    pub const ALL: [DriftKind; 7] = [
        DriftKind::Missing,
        DriftKind::Extra,
        DriftKind::WrongBand,
        DriftKind::Stale,
        DriftKind::NullPopulation,
        DriftKind::NullOffer,
        DriftKind::NullAdEvent,
    ];

    /// The name in reports, JSON and the `kind` label of `snapline_drift_rows`.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Missing => "missing",
            DriftKind::Extra => "extra",
            DriftKind::WrongBand => "wrong_band",
            DriftKind::Stale => "stale",
            DriftKind::NullPopulation => "null_population",
            DriftKind::NullOffer => "null_offer",
            DriftKind::NullAdEvent => "null_ad_event",
        }
    }
}

/// One row (or, for [`DriftKind::Missing`], one absent row) that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub kind: DriftKind,
    /// The target, for populations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub me_file_id: Option<i64>,
    /// The stored row (population, offer or ad_event); none for a missing population.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_id: Option<i64>,
    /// The stored row's band, or the band a missing row belongs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band_id: Option<i64>,
}

/// The drift of `target`'s stored rows for `me_files`, read as [`plan_population`] reads
/// them and judged by the same rules: a plan of the same input writes exactly one change per
/// drift found here (missing: an insert; wrong band: a move; stale or NULL: a rewrite;
/// extra: a delete), so what an audit reports is what a sync or a populate would repair.
pub fn drift_of(
    target: &TargetBands,
    me_files: &[MeFileId],
    tags: &HashMap<MeFileId, Vec<Tag>>,
    existing: Vec<PopulationRow>,
) -> Vec<Drift> {
    let mut stored: BTreeMap<MeFileId, Vec<PopulationRow>> = BTreeMap::new();
    for row in existing {
        stored.entry(row.me_file_id).or_default().push(row);
    }
    let no_tags: Vec<Tag> = Vec::new();
    let mut found = Vec::new();
    let drift = |kind: DriftKind, me_file: MeFileId, row: Option<&PopulationRow>, band| Drift {
        kind,
        target_id: Some(target.target_id().0),
        me_file_id: Some(me_file.0),
        row_id: row.map(|r| r.id.0),
        band_id: Some(row.map_or(band, |r| r.band_id.0)),
    };
    for me_file in me_files {
        let rows = stored.remove(me_file).unwrap_or_default();
        let me_file_tags = tags.get(me_file).unwrap_or(&no_tags);
        let Some(band) = target.band_for(me_file_tags) else {
            found.extend(
                rows.iter()
                    .map(|r| drift(DriftKind::Extra, *me_file, Some(r), 0)),
            );
            continue;
        };
        // The row a plan keeps (see plan_population): the last of the right band, else the
        // first of another; every other row is extra.
        let kept = rows
            .iter()
            .rposition(|r| r.band_id == band.id)
            .or(if rows.is_empty() { None } else { Some(0) });
        let Some(kept) = kept else {
            found.push(drift(DriftKind::Missing, *me_file, None, band.id.0));
            continue;
        };
        for (i, row) in rows.iter().enumerate() {
            if i != kept {
                found.push(drift(DriftKind::Extra, *me_file, Some(row), 0));
                continue;
            }
            if row.band_id != band.id {
                found.push(drift(DriftKind::WrongBand, *me_file, Some(row), 0));
            } else if row.snapshot.is_none() {
                found.push(drift(DriftKind::NullPopulation, *me_file, Some(row), 0));
            } else if !stored_snapshot_equals(
                row.snapshot.as_deref(),
                &target.snapshot_of(band, me_file_tags),
            ) {
                found.push(drift(DriftKind::Stale, *me_file, Some(row), 0));
            }
        }
    }
    // Rows of me_files that no longer exist.
    for (me_file, rows) in stored {
        found.extend(
            rows.iter()
                .map(|r| drift(DriftKind::Extra, me_file, Some(r), 0)),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{
        Band, BandId, BandTrait, MeFileTagId, PopulationId, TargetId, TraitGroup, TraitGroupId,
        TraitId, TraitInfo,
    };
    use proptest::prelude::*;

    fn target(bands: &[Vec<Vec<i64>>]) -> TargetBands {
        let parent = TraitInfo {
            id: TraitId(100),
            name: "parent".into(),
            display_order: Some(1),
        };
        let traits = (1..=8).map(|t| BandTrait {
            child: TraitInfo {
                id: TraitId(t),
                name: format!("trait {t}"),
                display_order: Some(t as i32),
            },
            parent: Some(parent.clone()),
        });
        let bands = bands.iter().enumerate().map(|(b, groups)| {
            Band::new(
                BandId(10 + b as i64),
                groups.iter().enumerate().map(|(g, traits)| {
                    // Group ids shared between bands, and a group linked twice to a band.
                    TraitGroup::new(
                        TraitGroupId(g as i64 % 2),
                        traits.iter().map(|t| TraitId(*t)),
                    )
                }),
            )
        });
        TargetBands::new(TargetId(1), bands, traits)
    }

    proptest! {
        #[test]
        fn every_drift_is_one_change_of_the_plan(
            bands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(1i64..=8, 1..3), 1..3), 1..4),
            tags in prop::collection::vec((1i64..=6, 1i64..=8), 0..20),
            rows in prop::collection::vec((1i64..=8, 10i64..=13, 0u8..3), 0..12),
        ) {
            let target = target(&bands);
            let me_files: Vec<MeFileId> = (1..=6).map(MeFileId).collect();
            let mut by_me_file: HashMap<MeFileId, Vec<Tag>> = HashMap::new();
            for (i, (me_file, trait_id)) in tags.iter().enumerate() {
                by_me_file.entry(MeFileId(*me_file)).or_default().push(Tag {
                    id: MeFileTagId(i as i64),
                    trait_id: TraitId(*trait_id),
                    tag_value: None,
                });
            }
            // Rows of bands of the target only (the reads ask for those); me_files 7 and 8
            // are gone.
            let existing: Vec<PopulationRow> = rows
                .iter()
                .enumerate()
                .filter(|(_, (_, band, _))| target.band(BandId(*band)).is_some())
                .map(|(i, (me_file, band, snapshot))| {
                    let me_file = MeFileId(*me_file);
                    let empty: Vec<Tag> = Vec::new();
                    let own = by_me_file.get(&me_file).unwrap_or(&empty);
                    PopulationRow {
                        id: PopulationId(i as i64),
                        band_id: BandId(*band),
                        me_file_id: me_file,
                        snapshot: match snapshot {
                            0 => None,
                            1 => Some(r#"{"tags": []}"#.into()),
                            _ => target.snapshot(BandId(*band), own).map(|s| s.to_json()),
                        },
                    }
                })
                .collect();
            let drift = drift_of(&target, &me_files, &by_me_file, existing.clone());
            let plan = plan_population(&target, &me_files, &by_me_file, existing);
            let count = |kinds: &[DriftKind]| drift.iter().filter(|d| kinds.contains(&d.kind)).count() as u64;
            prop_assert_eq!(count(&[DriftKind::Missing]), plan.inserted);
            prop_assert_eq!(count(&[DriftKind::WrongBand]), plan.moved);
            prop_assert_eq!(count(&[DriftKind::Stale, DriftKind::NullPopulation]), plan.refreshed);
            prop_assert_eq!(count(&[DriftKind::Extra]), plan.deleted);
            prop_assert_eq!(drift.is_empty(), plan.changes.is_empty());
        }
    }
}

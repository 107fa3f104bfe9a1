//! What to write for a set of me_files of one target: the diff between the populations the
//! rules want and the ones stored. Used by every writer of populations, so populating a
//! target and syncing its me_files one by one give the same rows.

use domain::{MeFileId, Snapshot, Tag, TargetBands};
use repo::{PopulationChanges, PopulationRow};
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

//! The work of a sync: one or several me_files' populations brought in line with their
//! current tags in one transaction, for every target the syncer keeps (`populated` or
//! `populating`). The `sync_me_file` job ([`crate::sync_me_file`]) and its groups
//! ([`crate::sync_group`]) call it.

use crate::BandCache;
use crate::{JobError, plan_population};
use domain::{BandId, MeFileId, Tag};
use repo::{Db, PopulationChanges, PopulationRow};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tracing::Instrument;

/// What one sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    pub me_file_id: i64,
    pub targets_in_scope: usize,
    pub me_file_exists: bool,
    pub inserted: u64,
    pub moved: u64,
    pub deleted: u64,
    pub refreshed: u64,
    pub unchanged: u64,
}

impl SyncSummary {
    pub fn changes(&self) -> u64 {
        self.inserted + self.moved + self.deleted + self.refreshed
    }
}

impl std::fmt::Display for SyncSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "me_file {}{}: {} inserted, {} moved, {} deleted, {} refreshed, {} unchanged across {} targets in scope",
            self.me_file_id,
            if self.me_file_exists {
                ""
            } else {
                " (no longer exists)"
            },
            self.inserted,
            self.moved,
            self.deleted,
            self.refreshed,
            self.unchanged,
            self.targets_in_scope
        )
    }
}

/// Syncs one me_file's populations: [`sync_me_files`] of it alone.
pub async fn sync_me_file(
    db: &Db,
    cache: &BandCache,
    me_file: MeFileId,
) -> Result<SyncSummary, JobError> {
    let mut summaries = sync_me_files(db, cache, &[me_file]).await?;
    Ok(summaries.pop().expect("one summary per me_file"))
}

/// Syncs several me_files' populations in one transaction (what a syncer does with the jobs
/// waiting at once, see [`crate::sync_group`]); one summary per me_file, in their order. A
/// me_file given twice is synced once and summarized twice.
///
/// Five round trips whatever the number of me_files when one kind of change is written:
/// begin, lock and scope, the me_files' tags and rows, the writes (one statement per kind:
/// delete, update, insert), commit.
pub async fn sync_me_files(
    db: &Db,
    cache: &BandCache,
    me_files: &[MeFileId],
) -> Result<Vec<SyncSummary>, JobError> {
    for me_file in me_files {
        crate::error::check_id_range(db, "me_file", "me_files", me_file.0).await?;
    }
    let tx = db.begin_write().await?;
    // Scope is read under the locks, in the same statement: a populate that starts later
    // reads tags already changed (the change committed before this job was pushed), so
    // nothing is lost.
    let scope = tx
        .sync()
        .lock_and_scope(me_files)
        .instrument(tracing::info_span!("sync.lock_and_scope"))
        .await?;
    // On the transaction's own connection, so a sync never waits for a second one.
    let targets = cache.get_scoped(&tx, &scope).await?;
    let band_to_target: HashMap<BandId, usize> = targets
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.bands().iter().map(move |b| (b.id, i)))
        .collect();
    let band_ids: Vec<BandId> = band_to_target.keys().copied().collect();
    let mut states = tx
        .sync()
        .me_files_state(me_files, &band_ids)
        .instrument(tracing::info_span!(
            "sync.read_state",
            me_files = me_files.len(),
            bands = band_ids.len()
        ))
        .await?;

    let mut changes = PopulationChanges::default();
    let mut bands_changed: Vec<i64> = Vec::new();
    let mut summaries: HashMap<MeFileId, SyncSummary> = HashMap::new();
    for &me_file in me_files {
        let Some(state) = states.remove(&me_file) else {
            continue; // given twice: planned the first time
        };
        let exists = state.tags.is_some();
        let tags: HashMap<MeFileId, Vec<Tag>> = state
            .tags
            .map(|tags| HashMap::from([(me_file, tags)]))
            .unwrap_or_default();
        let mut existing: Vec<Vec<PopulationRow>> = vec![Vec::new(); targets.len()];
        for row in state.rows {
            existing[band_to_target[&row.band_id]].push(row);
        }
        let present: &[MeFileId] = if exists { &[me_file] } else { &[] };
        let mut summary = SyncSummary {
            me_file_id: me_file.0,
            targets_in_scope: targets.len(),
            me_file_exists: exists,
            ..SyncSummary::default()
        };
        let mut band_changed = false;
        for (target, rows) in targets.iter().zip(existing) {
            let plan = plan_population(target, present, &tags, rows);
            band_changed |= !plan.bands_changed.is_empty();
            summary.inserted += plan.inserted;
            summary.moved += plan.moved;
            summary.deleted += plan.deleted;
            summary.refreshed += plan.refreshed;
            summary.unchanged += plan.unchanged;
            changes.append(plan.changes);
        }
        if band_changed {
            bands_changed.push(me_file.0);
        }
        summaries.insert(me_file, summary);
    }
    if !changes.is_empty() {
        let applied = tx
            .populations()
            .apply_changes(&changes)
            .instrument(tracing::info_span!("sync.write"))
            .await?;
        // The rows of a gone me_file are deleted only if it is still gone: count what was.
        for summary in summaries.values_mut().filter(|s| !s.me_file_exists) {
            summary.deleted = applied
                .deleted_of_gone_me_files
                .iter()
                .filter(|m| m.0 == summary.me_file_id)
                .count() as u64;
        }
    }
    if !bands_changed.is_empty() {
        tx.events().me_file_bands_changed(&bands_changed).await?;
    }
    tx.commit()
        .instrument(tracing::info_span!("sync.commit"))
        .await?;
    let total = summaries.values().fold(SyncSummary::default(), |mut t, s| {
        t.inserted += s.inserted;
        t.moved += s.moved;
        t.refreshed += s.refreshed;
        t.deleted += s.deleted;
        t
    });
    crate::metrics::populations_written(
        total.inserted,
        total.moved,
        total.refreshed,
        total.deleted,
    );
    Ok(me_files.iter().map(|m| summaries[m].clone()).collect())
}

//! The band metadata cache shared by the jobs that read many targets' bands (syncs and
//! backfills): how long an entry lives and when a sync may not use it.

use crate::JobError;
use domain::{TargetBands, TargetId};
use repo::{Db, ScopedTarget, Tx};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Band metadata of targets, shared by a syncer's jobs.
///
/// Invalidation rules: a sync never uses an entry older than the TTL (default 5 s), so an
/// edit of a target's bands reaches syncs within that time; and never one read before the
/// target's version it saw in its first statement (status and `last_populated_at`, which
/// change when a populate starts and when it finishes): the repopulate that follows a band
/// edit invalidates the entry at once, so no sync undoes it with the old bands. Which
/// targets are in scope is read fresh in every sync.
///
/// Entries past three quarters of the TTL are reloaded in the background (one reload at a
/// time) while syncs go on using them; only an entry missing or past the TTL is loaded by
/// the sync that needs it. (When every entry expired at once, each running sync reloaded the
/// bands of every target at the same moment: a stall of all workers every TTL.)
#[derive(Debug)]
pub struct BandCache {
    ttl: Duration,
    entries: Arc<Mutex<BandEntries>>,
    refreshing: Arc<std::sync::atomic::AtomicBool>,
}

/// Per target: when its bands were read, the version observed before reading them, the bands.
type BandEntries = HashMap<TargetId, (Instant, String, Arc<TargetBands>)>;

impl BandCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Arc::new(Mutex::new(HashMap::new())),
            refreshing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// The bands of `targets` (no versions: for a job that is its own cache's only user),
    /// loading the missing and expired ones in one round on a pooled connection.
    pub async fn get(
        &self,
        db: &Db,
        targets: &[TargetId],
    ) -> Result<Vec<Arc<TargetBands>>, JobError> {
        let scope: Vec<ScopedTarget> = targets
            .iter()
            .map(|&id| ScopedTarget {
                id,
                version: String::new(),
            })
            .collect();
        self.load(db, None, &scope).await
    }

    /// The bands of `scope`'s targets, loading in one round inside `tx` (a sync's
    /// transaction, which must not wait for a second pooled connection) those missing,
    /// expired, or read before the version the sync saw.
    pub async fn get_scoped(
        &self,
        tx: &Tx<'_>,
        scope: &[ScopedTarget],
    ) -> Result<Vec<Arc<TargetBands>>, JobError> {
        self.load(tx.db(), Some(tx), scope).await
    }

    async fn load(
        &self,
        db: &Db,
        tx: Option<&Tx<'_>>,
        scope: &[ScopedTarget],
    ) -> Result<Vec<Arc<TargetBands>>, JobError> {
        let now = Instant::now();
        // Missing, past the TTL or of another version: loaded now, by this sync. Past 3/4 of
        // the TTL: still used, reloaded in the background.
        let (mut stale, mut aging) = (Vec::new(), Vec::new());
        {
            let entries = self.entries.lock().expect("band cache lock");
            for target in scope {
                match entries.get(&target.id) {
                    Some((loaded, version, _)) if *version == target.version => {
                        let age = now.saturating_duration_since(*loaded);
                        if age >= self.ttl {
                            stale.push(target.clone());
                        } else if age >= self.ttl * 3 / 4 {
                            aging.push(target.clone());
                        }
                    }
                    _ => stale.push(target.clone()),
                }
            }
        }
        if !stale.is_empty() {
            let ids: Vec<TargetId> = stale.iter().map(|t| t.id).collect();
            let loaded = match tx {
                Some(tx) => tx.bands().of_targets(&ids).await?,
                None => db.bands().of_targets(&ids).await?,
            };
            store(&self.entries, now, stale, loaded);
        }
        if !aging.is_empty() {
            self.refresh_in_background(db, aging);
        }
        let entries = self.entries.lock().expect("band cache lock");
        Ok(scope
            .iter()
            .filter_map(|t| entries.get(&t.id).map(|(_, _, bands)| bands.clone()))
            .collect())
    }

    /// Reloads `targets` on a pooled connection unless a reload is already under way. A
    /// failure is logged and left to the syncs: the entries expire and are loaded inline.
    fn refresh_in_background(&self, db: &Db, targets: Vec<ScopedTarget>) {
        use std::sync::atomic::Ordering;
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (db, entries, refreshing) = (db.clone(), self.entries.clone(), self.refreshing.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let ids: Vec<TargetId> = targets.iter().map(|t| t.id).collect();
            match db.bands().of_targets(&ids).await {
                Ok(loaded) => store(&entries, started, targets, loaded),
                Err(err) => tracing::warn!(
                    error = %err,
                    targets = targets.len(),
                    "band cache: background reload failed; syncs will load the bands themselves"
                ),
            }
            refreshing.store(false, Ordering::Release);
        });
    }
}

/// Records `loaded` (bands by target, read at `read_at`, after each target's version was
/// observed) for `targets`; a target without bands is stored as such.
fn store(
    entries: &Mutex<BandEntries>,
    read_at: Instant,
    targets: Vec<ScopedTarget>,
    mut loaded: HashMap<TargetId, TargetBands>,
) {
    let mut entries = entries.lock().expect("band cache lock");
    for target in targets {
        let bands = loaded
            .remove(&target.id)
            .unwrap_or_else(|| TargetBands::new(target.id, [], []));
        entries.insert(target.id, (read_at, target.version, Arc::new(bands)));
    }
}

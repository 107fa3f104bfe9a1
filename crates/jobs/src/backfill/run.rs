//! One backfill run: populations first, then offers and ad_events, in batches.

use super::types::*;
use crate::BandCache;
use crate::JobError;
use domain::{BandId, MeFileId, PopulationId, TargetBands, TargetId, TraitId};
use repo::{CopyTable, Db, FastPath, FilledRows};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// A population's stored snapshot as phase 2 sees it.
enum PopulationSnapshot {
    /// `{"tags": [...]}`: copied as it is.
    Valid(String),
    /// Still NULL.
    Null,
    /// Anything else (`"legacy"`, `{}`, JSON `null`): never copied into history.
    Malformed(String),
}

impl PopulationSnapshot {
    fn of(text: Option<String>) -> Self {
        match text {
            None => PopulationSnapshot::Null,
            Some(text) if domain::Snapshot::from_json(&text).is_ok() => {
                PopulationSnapshot::Valid(text)
            }
            Some(text) => PopulationSnapshot::Malformed(text),
        }
    }
}

/// Where the bands of a run's rows come from: each band's target's metadata, loaded once.
struct Bands<'a> {
    db: &'a Db,
    cache: BandCache,
    targets_of: HashMap<BandId, Option<TargetId>>,
}

impl<'a> Bands<'a> {
    fn new(db: &'a Db) -> Self {
        Self {
            db,
            cache: BandCache::new(Duration::from_secs(3600)),
            targets_of: HashMap::new(),
        }
    }

    /// The metadata of each band's target; `None` for a band that no longer exists.
    async fn resolve(
        &mut self,
        bands: impl IntoIterator<Item = BandId>,
    ) -> Result<HashMap<BandId, Option<Arc<TargetBands>>>, JobError> {
        let bands: Vec<BandId> = bands.into_iter().collect();
        let unknown: Vec<BandId> = bands
            .iter()
            .copied()
            .filter(|b| !self.targets_of.contains_key(b))
            .collect();
        if !unknown.is_empty() {
            let found = self.db.bands().targets_of_bands(&unknown).await?;
            for band in unknown {
                self.targets_of.insert(band, found.get(&band).copied());
            }
        }
        let mut targets: Vec<TargetId> = bands.iter().filter_map(|b| self.targets_of[b]).collect();
        targets.sort();
        targets.dedup();
        let loaded: HashMap<TargetId, Arc<TargetBands>> = self
            .cache
            .get(self.db, &targets)
            .await?
            .into_iter()
            .map(|t| (t.target_id(), t))
            .collect();
        Ok(bands
            .into_iter()
            .map(|b| {
                let target = self.targets_of[&b].and_then(|t| loaded.get(&t).cloned());
                // a band whose target lost it meanwhile counts as gone
                let target = target.filter(|t| t.band(b).is_some());
                (b, target)
            })
            .collect())
    }
}

/// Runs a backfill of `scope`; `on_progress` is called after each batch.
pub async fn backfill(
    db: &Db,
    scope: &BackfillScope,
    options: &BackfillOptions,
    on_progress: &(dyn Fn(BackfillProgress) + Send + Sync),
) -> Result<BackfillReport, JobError> {
    let started = Instant::now();
    let mut report = BackfillReport {
        dry_run: options.dry_run,
        ..BackfillReport::default()
    };
    let bands_filter = scope.bands();
    for band in bands_filter.unwrap_or_default() {
        crate::error::check_band_known(db, *band).await?;
    }
    if db.backfill().nulls_present(bands_filter).await? == [false; 3] {
        tracing::info!("No missing snapshots found");
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let lease = crate::lease::HeldLease::acquire(
        db,
        scope.lease_name(),
        options.lease_ttl,
        options.lock_wait,
    )
    .await?;
    let result = backfill_holding_lease(db, scope, options, on_progress, &lease, &mut report).await;
    lease.release(db).await;
    result?;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        dry_run = report.dry_run,
        populations_fixed = report.populations_fixed,
        offers_fixed = report.offers_fixed,
        ad_events_fixed = report.ad_events_fixed,
        orphans = report.orphans,
        unfixable = report.unfixable,
        without_references = report.without_references,
        batches = report.batches,
        elapsed_ms = report.elapsed_ms,
        rows_per_sec = report.rate_per_sec() as u64,
        "backfill finished"
    );
    Ok(report)
}

async fn backfill_holding_lease(
    db: &Db,
    scope: &BackfillScope,
    options: &BackfillOptions,
    on_progress: &(dyn Fn(BackfillProgress) + Send + Sync),
    lease: &crate::lease::HeldLease,
    report: &mut BackfillReport,
) -> Result<(), JobError> {
    let bands_filter = scope.bands();
    report.found = db.backfill().null_counts(bands_filter).await?;
    let total: i64 = report.found.iter().sum();
    tracing::info!(
        target_populations = report.found[0],
        offers = report.found[1],
        ad_events = report.found[2],
        "found missing snapshots"
    );
    report.above_threshold = tables_above_threshold(report.found, options.warn_threshold);
    for (table, found) in TABLES.iter().zip(report.found) {
        if report.above_threshold.iter().any(|t| t == table) {
            tracing::warn!(
                table,
                found,
                threshold = options.warn_threshold,
                "more missing snapshots than expected in {table}: a writer may be leaving NULLs"
            );
        }
    }
    let without_references = db
        .backfill()
        .null_rows_without_references(bands_filter)
        .await?;
    report.without_references = without_references.iter().sum::<i64>().max(0) as u64;
    if report.without_references > 0 {
        tracing::warn!(
            target_populations = without_references[0],
            offers = without_references[1],
            ad_events = without_references[2],
            "rows with a NULL snapshot and a NULL band or me_file: orphans, left as they are"
        );
    }
    let total = total.max(0) as u64;
    let mut done = 0u64;
    let mut bands = Bands::new(db);

    // 1. Populations, by id. The next batch is read and computed while the previous one is
    // written (two connections): at most one write in flight.
    let mut after = PopulationId(0);
    let mut writing: Option<Vec<(PopulationId, String)>> = None;
    loop {
        if let Err(stop) = options.stop.check("backfill") {
            if let Some(snapshots) = writing.take() {
                report.add_filled(write_population_snapshots(db, lease, &snapshots).await?);
            }
            return Err(stop);
        }
        let read = next_population_batch(db, &mut bands, after, options.batch_size, bands_filter);
        let batch = match writing.take() {
            Some(snapshots) => {
                let (batch, written) =
                    tokio::join!(read, write_population_snapshots(db, lease, &snapshots));
                let written = written?;
                // the copies made with the populations count as done as they are written
                done += written.offers + written.ad_events;
                report.add_filled(written);
                batch?
            }
            None => read.await?,
        };
        let Some(batch) = batch else { break };
        after = batch.last;
        report.note_unfixable("target_populations", &batch.unfixable, options);
        if options.dry_run {
            report.populations_fixed += batch.snapshots.len() as u64;
        } else {
            writing = Some(batch.snapshots);
        }
        report.batches += 1;
        done += batch.rows as u64;
        on_progress(BackfillProgress { done, total });
    }

    // 2. Offers and ad_events, each by (me_file, band), at the same time on two connections:
    // independent tables, so neither waits for the other.
    let done = AtomicU64::new(done);
    let copy = |table| {
        backfill_copies(
            db,
            lease,
            table,
            options,
            bands_filter,
            total,
            &done,
            on_progress,
        )
    };
    let (offers, ad_events) = tokio::try_join!(copy(CopyTable::Offers), copy(CopyTable::AdEvents))?;
    report.absorb(offers, options);
    report.absorb(ad_events, options);
    Ok(())
}

/// Pairs per copy batch, in units of `batch_size`: a copy batch moves only keys (the
/// snapshots are copied inside the database), so it can be larger than a batch whose
/// snapshots are computed in the process; pairs left to the process (orphans, malformed
/// populations) are at most this many.
const COPY_BATCH_FACTOR: u64 = 4;

/// One batch of NULL populations, read and computed.
struct PopulationBatch {
    /// The last population id read: where the next batch starts.
    last: PopulationId,
    rows: usize,
    snapshots: Vec<(PopulationId, String)>,
    /// Populations whose band no longer exists.
    unfixable: Vec<PopulationId>,
}

/// The next NULL populations after `after` with their snapshots built from current tags;
/// `None` when none is left.
async fn next_population_batch(
    db: &Db,
    bands: &mut Bands<'_>,
    after: PopulationId,
    batch_size: u64,
    bands_filter: Option<&[BandId]>,
) -> Result<Option<PopulationBatch>, JobError> {
    let rows = db
        .backfill()
        .null_populations_after(after, batch_size, bands_filter)
        .await?;
    let Some(last) = rows.last().map(|r| r.id) else {
        return Ok(None);
    };
    let targets = bands.resolve(rows.iter().map(|r| r.band_id)).await?;
    let me_files: Vec<MeFileId> = rows.iter().map(|r| r.me_file_id).collect();
    // Only the tags a snapshot can hold: those on the traits of the batch's targets.
    let traits: Vec<TraitId> = targets
        .values()
        .flatten()
        .flat_map(|target| target.trait_ids())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let tags = db.tags().of_me_files(&me_files, Some(&traits)).await?;
    let mut snapshots = Vec::with_capacity(rows.len());
    let mut unfixable = Vec::new();
    for row in &rows {
        match &targets[&row.band_id] {
            Some(target) => {
                let band = target.band(row.band_id).expect("resolved band");
                let me_file_tags = tags.get(&row.me_file_id).map(Vec::as_slice).unwrap_or(&[]);
                snapshots.push((row.id, target.snapshot_of(band, me_file_tags).to_json()));
            }
            None => unfixable.push(row.id),
        }
    }
    Ok(Some(PopulationBatch {
        last,
        rows: rows.len(),
        snapshots,
        unfixable,
    }))
}

/// Writes one batch's population snapshots (those still NULL) in its own transaction, with
/// the NULL offers and ad_events on the populations written (copied inside the database, in
/// the same statement: the copy phase then finds only what this could not reach), renewing
/// the run's lease when due (outside it: the copies of offers and ad_events run side by side
/// and would otherwise take turns on the lease row's lock); returns rows written.
async fn write_population_snapshots(
    db: &Db,
    lease: &crate::lease::HeldLease,
    snapshots: &[(PopulationId, String)],
) -> Result<FilledRows, JobError> {
    lease.renew_when_due(db).await?;
    let tx = db.begin_write().await?;
    let span = tracing::info_span!("backfill.write_populations", rows = snapshots.len());
    let written = if db.has_fast_path(FastPath::CopiesInDatabase) {
        tx.backfill()
            .fill_populations_and_copies(snapshots)
            .instrument(span)
            .await?
    } else {
        // The copies are left to the copy phase.
        FilledRows {
            populations: tx
                .backfill()
                .fill_populations(snapshots)
                .instrument(span)
                .await?,
            ..FilledRows::default()
        }
    };
    tx.commit().await?;
    crate::metrics::snapshots_filled("target_populations", written.populations);
    crate::metrics::snapshots_filled(CopyTable::Offers.name(), written.offers);
    crate::metrics::snapshots_filled(CopyTable::AdEvents.name(), written.ad_events);
    Ok(written)
}

/// Fills the NULL snapshots of `table` from populations (or tags, for orphans); returns what
/// it did as a report of its own, for [`BackfillReport::absorb`].
#[allow(clippy::too_many_arguments)]
async fn backfill_copies(
    db: &Db,
    lease: &crate::lease::HeldLease,
    table: CopyTable,
    options: &BackfillOptions,
    bands_filter: Option<&[BandId]>,
    total: u64,
    done: &AtomicU64,
    on_progress: &(dyn Fn(BackfillProgress) + Send + Sync),
) -> Result<BackfillReport, JobError> {
    let mut part = BackfillReport::default();
    let mut bands = Bands::new(db);
    let mut after = (MeFileId(i64::MIN), BandId(i64::MIN));
    loop {
        options.stop.check("backfill")?;
        let pairs = db
            .backfill()
            .null_pairs_after(
                table,
                after,
                options.batch_size * COPY_BATCH_FACTOR,
                bands_filter,
            )
            .await?;
        let Some(last) = pairs.last() else { break };
        after = *last;
        // Most pairs have a population with a well-formed snapshot: copied inside the
        // database, only the pairs travel. The others (no population, a NULL or
        // malformed snapshot, one the database's check leaves to the domain) go on below.
        let copied_in_database: HashMap<(MeFileId, BandId), u64> =
            if options.dry_run || !db.has_fast_path(FastPath::CopiesInDatabase) {
                HashMap::new()
            } else {
                lease.renew_when_due(db).await?;
                let tx = db.begin_write().await?;
                let copied = tx
                    .backfill()
                    .copy_population_snapshots(table, &pairs)
                    .instrument(tracing::info_span!(
                        "backfill.copy",
                        table = table.name(),
                        pairs = pairs.len()
                    ))
                    .await?;
                tx.commit().await?;
                copied
            };
        let copied_rows: u64 = copied_in_database.values().sum();
        crate::metrics::snapshots_filled(table.name(), copied_rows);
        let pairs: Vec<(MeFileId, BandId)> = pairs
            .into_iter()
            .filter(|p| !copied_in_database.contains_key(p))
            .collect();
        // A population's snapshot is copied only when it is one: `{"tags": [...]}`. A
        // malformed one (`"legacy"`, `{}`, JSON `null`) counts as missing, so history
        // never receives it, and the population gets the computed one too.
        let from_populations: HashMap<(MeFileId, BandId), PopulationSnapshot> = db
            .backfill()
            .population_snapshots(&pairs)
            .await?
            .into_iter()
            .map(|(pair, text)| (pair, PopulationSnapshot::of(text)))
            .collect();
        let missing: Vec<(MeFileId, BandId)> = pairs
            .iter()
            .copied()
            .filter(|p| !matches!(from_populations.get(p), Some(PopulationSnapshot::Valid(_))))
            .collect();
        let targets = bands.resolve(missing.iter().map(|p| p.1)).await?;
        let orphan_me_files: Vec<MeFileId> = missing.iter().map(|p| p.0).collect();
        let tags = db.tags().of_me_files(&orphan_me_files, None).await?;
        let mut snapshots = Vec::with_capacity(pairs.len());
        // Dry run: pairs whose population is still NULL only because phase 1 wrote
        // nothing; the real run fills the population first and copies it here.
        let mut filled_in_phase_one = Vec::new();
        let mut unfixable = Vec::new();
        let mut orphans = 0u64;
        // (me_file, band, the population's malformed text, the computed snapshot)
        let mut malformed = Vec::new();
        for pair in &pairs {
            let population = from_populations.get(pair);
            match population {
                Some(PopulationSnapshot::Valid(text)) => {
                    snapshots.push((pair.0, pair.1, text.clone()));
                    continue;
                }
                Some(PopulationSnapshot::Null) if options.dry_run && targets[&pair.1].is_some() => {
                    filled_in_phase_one.push(*pair);
                    continue;
                }
                _ => {}
            }
            match &targets[&pair.1] {
                Some(target) => {
                    let band = target.band(pair.1).expect("resolved band");
                    let me_file_tags = tags.get(&pair.0).map(Vec::as_slice).unwrap_or(&[]);
                    let computed = target.snapshot_of(band, me_file_tags).to_json();
                    match population {
                        Some(PopulationSnapshot::Malformed(text)) => {
                            malformed.push((pair.0, pair.1, text.clone(), computed.clone()))
                        }
                        _ => orphans += 1,
                    }
                    snapshots.push((pair.0, pair.1, computed));
                }
                None => unfixable.push(*pair),
            }
        }
        if !malformed.is_empty() {
            tracing::warn!(
                table = table.name(),
                populations = malformed.len(),
                "populations with a malformed snapshot: computed from current tags, not copied"
            );
            if options.dry_run {
                part.malformed_populations += malformed.len() as u64;
            }
        }
        if orphans > 0 {
            tracing::info!(
                table = table.name(),
                orphans,
                "(me_file, band) pairs without a population: snapshots computed from current tags"
            );
            part.orphans += orphans;
        }
        if !unfixable.is_empty() {
            let ids = db.backfill().null_copy_ids(table, &unfixable).await?;
            part.note_unfixable(table.name(), &ids, options);
        }
        let fixed = if options.dry_run {
            let fixable: Vec<(MeFileId, BandId)> = snapshots
                .iter()
                .map(|s| (s.0, s.1))
                .chain(filled_in_phase_one.iter().copied())
                .collect();
            db.backfill().null_copy_ids(table, &fixable).await?.len() as u64
        } else {
            lease.renew_when_due(db).await?;
            let tx = db.begin_write().await?;
            let written = tx.backfill().fill_copies(table, &snapshots).await?;
            // Counted where replaced: the other table's copy, running beside this one, may
            // have seen the same malformed population, and only one of them replaces it.
            part.malformed_populations += tx
                .backfill()
                .replace_malformed_population_snapshots(&malformed)
                .await?;
            tx.commit().await?;
            crate::metrics::snapshots_filled(table.name(), written);
            written
        };
        let fixed = fixed + copied_rows;
        match table {
            CopyTable::Offers => part.offers_fixed += fixed,
            CopyTable::AdEvents => part.ad_events_fixed += fixed,
        }
        part.batches += 1;
        let handled = fixed + unfixable.len() as u64;
        let done = done.fetch_add(handled, Ordering::Relaxed) + handled;
        on_progress(BackfillProgress {
            done: done.min(total),
            total,
        });
    }
    Ok(part)
}

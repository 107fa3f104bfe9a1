//! The safety net that leaves no NULL snapshot behind, on queue `backfill`:
//! `backfill_missing_snapshots {}` (everything; scheduled by cron, hourly by default) and
//! `snapshot_band_populations {"band_id": i64}` (one band).
//!
//! When it runs: on the cron tick (exactly once per tick across replicas), when pushed
//! (`backfiller enqueue`), or inline (`backfiller run`, `just backfill`).
//!
//! What it changes, in keyset-paged batches of one transaction each: first every population
//! with a NULL snapshot gets the snapshot built by `domain` from the me_file's current tags
//! and the band's traits; then every offer and ad_event with a NULL snapshot gets its
//! population's snapshot, or, when there is no such population, one computed from current
//! tags and that band (an orphan). When the band itself is gone the row stays NULL and is
//! counted as unfixable, with its id in the log. Every write re-checks `IS NULL`: a snapshot
//! written meanwhile by the populator or syncer is never overwritten, and a non-NULL offer or
//! ad_event snapshot (history) is never changed. A run killed at any point is finished by the
//! next one.

use crate::JobError;
use crate::queue::Payload;
use crate::sync_me_file::BandCache;
use domain::{BandId, MeFileId, TargetBands, TargetId};
use repo::{CopyTable, Db};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const QUEUE: &str = "backfill";

/// `backfill_missing_snapshots {}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillMissingSnapshots {}

/// `snapshot_band_populations {"band_id": i64}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBandPopulations {
    pub band_id: i64,
}

/// The jobs of queue `backfill`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackfillJob {
    Band(SnapshotBandPopulations),
    All(BackfillMissingSnapshots),
}

const PAYLOAD_SHAPE: &str = r#"{} or {"band_id": <integer>}"#;

/// What a run covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackfillScope {
    All,
    Bands(Vec<BandId>),
}

impl BackfillScope {
    fn bands(&self) -> Option<&[BandId]> {
        match self {
            BackfillScope::All => None,
            BackfillScope::Bands(bands) => Some(bands),
        }
    }

    fn lease_name(&self) -> String {
        match self {
            BackfillScope::All => "backfill:all".into(),
            BackfillScope::Bands(bands) => {
                let ids: Vec<String> = bands.iter().map(|b| b.0.to_string()).collect();
                format!("backfill:bands:{}", ids.join(","))
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct BackfillOptions {
    pub batch_size: u64,
    /// Report what would change and write nothing.
    pub dry_run: bool,
    /// More NULL snapshots than this in one table logs a warning naming the table: after
    /// the inline fix they should be rare.
    pub warn_threshold: i64,
    /// Ids of unfixable rows kept in the report; the rest are only counted, so a database
    /// with millions of them costs no memory.
    pub unfixable_ids_kept: usize,
    pub lease_ttl: Duration,
    pub lock_wait: Duration,
    /// How often a running backfill logs its progress ([`ProgressLog`]).
    pub progress_every: Duration,
    /// Checked before each batch: `backfiller run` sets it on Ctrl-C or SIGTERM.
    pub stop: crate::StopRequest,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            dry_run: false,
            warn_threshold: 10,
            unfixable_ids_kept: 20,
            lease_ttl: Duration::from_secs(120),
            lock_wait: Duration::from_secs(600),
            progress_every: Duration::from_secs(5),
            stop: crate::StopRequest::default(),
        }
    }
}

/// What a run fixed (or, dry, would fix).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillReport {
    pub dry_run: bool,
    /// NULL snapshots found when the run started, per table.
    pub found: [i64; 3],
    /// The tables that had more than [`BackfillOptions::warn_threshold`] (each warned).
    pub above_threshold: Vec<String>,
    pub populations_fixed: u64,
    pub offers_fixed: u64,
    pub ad_events_fixed: u64,
    /// Offer / ad_event (me_file, band) pairs with no population: snapshot computed from tags.
    pub orphans: u64,
    /// Rows left NULL because their band no longer exists.
    pub unfixable: u64,
    /// The first of them (`table:id`), at most [`BackfillOptions::unfixable_ids_kept`].
    /// Rows with a NULL snapshot whose band or me_file reference is itself NULL (the
    /// platform's schema allows it): orphans no snapshot can be built for, left as they are.
    pub without_references: u64,
    /// Populations whose snapshot was not `{"tags": [...]}` (copied nowhere; replaced by the
    /// computed one).
    pub malformed_populations: u64,
    pub unfixable_ids: Vec<String>,
    pub batches: u64,
    pub elapsed_ms: u64,
}

impl BackfillReport {
    pub fn fixed(&self) -> u64 {
        self.populations_fixed + self.offers_fixed + self.ad_events_fixed
    }

    pub fn rate_per_sec(&self) -> f64 {
        self.fixed() as f64 / (self.elapsed_ms.max(1) as f64 / 1000.0)
    }
}

impl std::fmt::Display for BackfillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{} target_populations, {} offers, {} ad_events fixed; {} orphans computed from tags; {} unfixable left NULL; {} without band or me_file left NULL; {} batches in {:.2}s ({:.0} rows/s)",
            if self.dry_run {
                "dry run, would fix: "
            } else {
                ""
            },
            self.populations_fixed,
            self.offers_fixed,
            self.ad_events_fixed,
            self.orphans,
            self.unfixable,
            self.without_references,
            self.batches,
            self.elapsed_ms as f64 / 1000.0,
            self.rate_per_sec()
        )
    }
}

impl BackfillReport {
    /// Counts a batch's rows left NULL because their band is gone, keeps the first ids, and
    /// says so in one log line.
    fn note_unfixable(&mut self, table: &'static str, ids: &[i64], options: &BackfillOptions) {
        if ids.is_empty() {
            return;
        }
        self.unfixable += ids.len() as u64;
        let room = options
            .unfixable_ids_kept
            .saturating_sub(self.unfixable_ids.len());
        self.unfixable_ids
            .extend(ids.iter().take(room).map(|id| format!("{table}:{id}")));
        tracing::warn!(
            table,
            rows = ids.len(),
            first_ids = ?&ids[..ids.len().min(5)],
            unfixable_so_far = self.unfixable,
            "band no longer exists: rows left NULL"
        );
    }
}

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

/// The three tables of [`BackfillReport::found`], in order.
const TABLES: [&str; 3] = ["target_populations", "offers", "ad_events"];

/// The tables whose NULL count is above `threshold`: each table on its own, never their sum.
pub fn tables_above_threshold(found: [i64; 3], threshold: i64) -> Vec<String> {
    TABLES
        .iter()
        .zip(found)
        .filter(|(_, n)| *n > threshold)
        .map(|(table, _)| (*table).to_owned())
        .collect()
}

/// Progress of a run: rows handled so far out of the NULLs found at the start.
#[derive(Clone, Copy, Debug)]
pub struct BackfillProgress {
    pub done: u64,
    pub total: u64,
}

/// A run's progress as a log line (rows done, total, rate), at most once per `every` and
/// at the end: what `backfiller run` prints without a terminal and what a job logs under
/// `serve`, so a long backfill is never silent between "found" and "finished".
pub struct ProgressLog {
    every: Duration,
    started: Instant,
    last: std::sync::Mutex<Instant>,
}

impl ProgressLog {
    pub fn new(every: Duration) -> Self {
        let now = Instant::now();
        Self {
            every,
            started: now,
            last: std::sync::Mutex::new(now),
        }
    }

    /// Logs `progress` when `every` has passed since the last line (or the run is done);
    /// returns whether it did.
    pub fn update(&self, progress: BackfillProgress) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let finished = progress.done >= progress.total;
        if last.elapsed() < self.every && !finished {
            return false;
        }
        *last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(
            done = progress.done,
            total = progress.total,
            rows_per_sec = (progress.done as f64 / secs) as u64,
            "backfill progress"
        );
        true
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
            .get(self.db, self.db.conn(), &targets)
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

    // 1. Populations, by id.
    let mut after = 0i64;
    loop {
        options.stop.check("backfill")?;
        let rows = db
            .backfill()
            .null_populations_after(after, options.batch_size, bands_filter)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        let targets = bands.resolve(rows.iter().map(|r| r.band_id)).await?;
        let me_files: Vec<MeFileId> = rows.iter().map(|r| r.me_file_id).collect();
        let tags = db.tags().of_me_files(&me_files, None).await?;
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
        report.note_unfixable("target_populations", &unfixable, options);
        report.populations_fixed += if options.dry_run {
            snapshots.len() as u64
        } else {
            let txn = db.begin_write().await?;
            lease.renew(db, &txn).await?;
            let written = db.backfill().fill_populations(&txn, &snapshots).await?;
            txn.commit().await.map_err(repo::RepoError::from)?;
            crate::metrics::snapshots_filled("target_populations", written);
            written
        };
        report.batches += 1;
        done += rows.len() as u64;
        on_progress(BackfillProgress { done, total });
    }

    // 2. Offers, then ad_events, by (me_file, band).
    for table in CopyTable::ALL {
        let mut after = (MeFileId(i64::MIN), BandId(i64::MIN));
        loop {
            options.stop.check("backfill")?;
            let pairs = db
                .backfill()
                .null_pairs_after(table, after, options.batch_size, bands_filter)
                .await?;
            let Some(last) = pairs.last() else { break };
            after = *last;
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
                    Some(PopulationSnapshot::Null)
                        if options.dry_run && targets[&pair.1].is_some() =>
                    {
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
                report.malformed_populations += malformed.len() as u64;
            }
            if orphans > 0 {
                tracing::info!(
                    table = table.name(),
                    orphans,
                    "(me_file, band) pairs without a population: snapshots computed from current tags"
                );
                report.orphans += orphans;
            }
            if !unfixable.is_empty() {
                let ids = db.backfill().null_copy_ids(table, &unfixable).await?;
                report.note_unfixable(table.name(), &ids, options);
            }
            let fixed = if options.dry_run {
                let fixable: Vec<(MeFileId, BandId)> = snapshots
                    .iter()
                    .map(|s| (s.0, s.1))
                    .chain(filled_in_phase_one.iter().copied())
                    .collect();
                db.backfill().null_copy_ids(table, &fixable).await?.len() as u64
            } else {
                let txn = db.begin_write().await?;
                lease.renew(db, &txn).await?;
                let written = db.backfill().fill_copies(&txn, table, &snapshots).await?;
                db.backfill()
                    .replace_malformed_population_snapshots(&txn, &malformed)
                    .await?;
                txn.commit().await.map_err(repo::RepoError::from)?;
                crate::metrics::snapshots_filled(table.name(), written);
                written
            };
            match table {
                CopyTable::Offers => report.offers_fixed += fixed,
                CopyTable::AdEvents => report.ad_events_fixed += fixed,
            }
            report.batches += 1;
            done += fixed + unfixable.len() as u64;
            on_progress(BackfillProgress {
                done: done.min(total),
                total,
            });
        }
    }
    Ok(())
}

/// The bands a `--target` backfill covers (all of the target's bands).
pub async fn bands_of_target(db: &Db, target: TargetId) -> Result<Vec<BandId>, JobError> {
    crate::error::check_target_exists(db, target).await?;
    Ok(db
        .bands()
        .of_target(target)
        .await?
        .bands()
        .iter()
        .map(|b| b.id)
        .collect())
}

/// What a backfiller worker needs for every job.
#[derive(Clone, Debug)]
pub struct BackfillerContext {
    pub db: Db,
    pub options: BackfillOptions,
}

/// The apalis handler of queue `backfill`.
pub async fn handle(
    job: Payload<BackfillJob>,
    ctx: apalis::prelude::Data<BackfillerContext>,
    attempt: crate::worker::JobAttempt,
) -> Result<BackfillReport, apalis::prelude::BoxDynError> {
    use tracing::Instrument;
    crate::worker::run_job(QUEUE, &attempt, async {
        let progress = ProgressLog::new(ctx.options.progress_every);
        let log_progress = |p| {
            progress.update(p);
        };
        match job.into_valid(PAYLOAD_SHAPE)? {
            BackfillJob::All(_) => {
                backfill(&ctx.db, &BackfillScope::All, &ctx.options, &log_progress)
                    .instrument(tracing::info_span!("backfill_missing_snapshots"))
                    .await
            }
            BackfillJob::Band(job) => {
                backfill(
                    &ctx.db,
                    &BackfillScope::Bands(vec![BandId(job.band_id)]),
                    &ctx.options,
                    &log_progress,
                )
                .instrument(tracing::info_span!(
                    "snapshot_band_populations",
                    band_id = job.band_id
                ))
                .await
            }
        }
    })
    .await
}

/// Pushes one backfill job.
pub async fn enqueue(db: &Db, job: BackfillJob) -> Result<(), JobError> {
    if let BackfillJob::Band(band) = &job {
        crate::error::check_band_known(db, BandId(band.band_id)).await?;
    }
    crate::queue::push(db, QUEUE, job, crate::queue::DEFAULT_MAX_ATTEMPTS).await
}

/// Bands that hold populations with a NULL snapshot (for `enqueue --all`: one job each).
pub async fn bands_with_null_populations(db: &Db) -> Result<Vec<BandId>, JobError> {
    let mut bands = std::collections::BTreeSet::new();
    let mut after = 0;
    loop {
        let rows = db
            .backfill()
            .null_populations_after(after, 10_000, None)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        bands.extend(rows.iter().map(|r| r.band_id));
    }
    Ok(bands.into_iter().collect())
}

/// Pushes the cron tick at `timestamp` (seconds)'s `backfill_missing_snapshots`, once however
/// many replicas call it: the job carries the idempotency key `backfill_tick:<timestamp>`, which
/// the queue table keeps unique. Every replica pushes, so the tick runs as long as one replica
/// is alive, even if another crashes in the middle of its push. Returns whether this call
/// added the job (`false`: another replica's push came first).
pub async fn on_cron_tick(db: &Db, timestamp: u64, replica: &str) -> Result<bool, JobError> {
    let pushed = crate::queue::push_once(
        db,
        QUEUE,
        BackfillJob::All(BackfillMissingSnapshots {}),
        crate::queue::DEFAULT_MAX_ATTEMPTS,
        &format!("backfill_tick:{timestamp}"),
    )
    .await?;
    if pushed {
        tracing::info!(
            tick = timestamp,
            replica,
            "cron tick: backfill_missing_snapshots enqueued"
        );
    } else {
        tracing::debug!(
            tick = timestamp,
            replica,
            "cron tick already enqueued by another replica"
        );
    }
    Ok(pushed)
}

/// Consumes queue `backfill` until `shutdown` completes.
pub async fn serve(
    ctx: BackfillerContext,
    options: &crate::worker::WorkerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), JobError> {
    crate::worker::serve_queue!(BackfillJob, QUEUE, ctx, options, handle, shutdown)
}

/// Parses a cron schedule: standard five fields (`0 * * * *`, minute first) or the six or
/// seven of the `cron` crate (seconds first).
pub fn parse_schedule(expression: &str) -> Result<cron::Schedule, JobError> {
    use std::str::FromStr;
    let fields = expression.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {expression}")
    } else {
        expression.to_owned()
    };
    cron::Schedule::from_str(&full)
        .map_err(|e| JobError::Malformed(format!("cron schedule `{expression}`: {e}")))
}

#[derive(Clone, Debug)]
struct CronContext {
    db: Db,
    replica: String,
}

async fn handle_tick(
    tick: apalis_cron::Tick,
    ctx: apalis::prelude::Data<CronContext>,
) -> Result<bool, apalis::prelude::BoxDynError> {
    let result = on_cron_tick(&ctx.db, tick.get_timestamp(), &ctx.replica).await;
    crate::worker::into_apalis("backfill cron", result)
}

/// Runs the cron schedule until `shutdown` completes: each tick is claimed by exactly one
/// replica, which pushes `backfill_missing_snapshots` onto the queue.
pub async fn serve_cron(
    db: Db,
    schedule: cron::Schedule,
    replica: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), JobError> {
    use apalis::prelude::WorkerBuilder;
    WorkerBuilder::new(format!("backfill-cron@{replica}"))
        .backend(apalis_cron::CronScheduler::new(schedule))
        .data(CronContext { db, replica })
        .build(handle_tick)
        .run_until(async move {
            shutdown.await;
            Ok::<(), std::io::Error>(())
        })
        .await
        .map_err(|e| JobError::Queue(e.to_string()))
}

//! What a backfill run covers, how it runs and what it reports.

use domain::BandId;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What a run covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackfillScope {
    All,
    Bands(Vec<BandId>),
}

impl BackfillScope {
    pub(super) fn bands(&self) -> Option<&[BandId]> {
        match self {
            BackfillScope::All => None,
            BackfillScope::Bands(bands) => Some(bands),
        }
    }

    pub(super) fn lease_name(&self) -> String {
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

impl From<&settings::BackfillerSettings> for BackfillOptions {
    fn from(settings: &settings::BackfillerSettings) -> Self {
        Self {
            batch_size: settings.batch_size,
            dry_run: false,
            warn_threshold: settings.warn_threshold,
            unfixable_ids_kept: settings.unfixable_ids_kept,
            lease_ttl: Duration::from_secs(settings.lease_ttl_secs),
            lock_wait: Duration::from_secs(settings.lock_wait_secs),
            progress_every: Duration::from_secs(settings.progress_log_secs),
            stop: crate::StopRequest::default(),
        }
    }
}

/// `[backfiller]` of `config/default.toml`, the one place its defaults are written.
impl Default for BackfillOptions {
    fn default() -> Self {
        Self::from(&settings::Settings::defaults().backfiller)
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
    /// Rows with a NULL snapshot whose band or me_file reference is itself NULL (the
    /// platform's schema allows it): orphans no snapshot can be built for, left as they are.
    pub without_references: u64,
    /// Populations whose snapshot was not `{"tags": [...]}` (copied nowhere; replaced by the
    /// computed one): those replaced, or in a dry run those seen.
    pub malformed_populations: u64,
    /// The first unfixable rows (`table:id`), at most [`BackfillOptions::unfixable_ids_kept`].
    pub unfixable_ids: Vec<String>,
    pub batches: u64,
    pub elapsed_ms: u64,
}

impl BackfillReport {
    /// Adds what a part of the run (one table's copies) did to this report; the unfixable
    /// ids kept stay the first ones, in the order of the parts.
    pub(super) fn absorb(&mut self, part: BackfillReport, options: &BackfillOptions) {
        self.populations_fixed += part.populations_fixed;
        self.offers_fixed += part.offers_fixed;
        self.ad_events_fixed += part.ad_events_fixed;
        self.orphans += part.orphans;
        self.malformed_populations += part.malformed_populations;
        self.unfixable += part.unfixable;
        let room = options
            .unfixable_ids_kept
            .saturating_sub(self.unfixable_ids.len());
        self.unfixable_ids
            .extend(part.unfixable_ids.into_iter().take(room));
        self.batches += part.batches;
    }

    /// Adds a population batch's writes (and the copies made with it).
    pub(super) fn add_filled(&mut self, filled: repo::FilledRows) {
        self.populations_fixed += filled.populations;
        self.offers_fixed += filled.offers;
        self.ad_events_fixed += filled.ad_events;
    }

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
    pub(super) fn note_unfixable<I: std::fmt::Display>(
        &mut self,
        table: &'static str,
        ids: &[I],
        options: &BackfillOptions,
    ) {
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
            first_ids = %ids
                .iter()
                .take(5)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            unfixable_so_far = self.unfixable,
            "band no longer exists: rows left NULL"
        );
    }
}

/// The three tables of [`BackfillReport::found`], in order.
pub(super) const TABLES: [&str; 3] = ["target_populations", "offers", "ad_events"];

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

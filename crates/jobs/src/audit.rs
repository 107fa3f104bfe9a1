//! The audit: recomputes the populations of `populated` targets from the current tags and
//! bands and compares them with what is stored (missing rows, extra rows, rows in the wrong
//! band, stale and NULL snapshots), and counts the NULL snapshots of offers and ad_events.
//! `snapctl audit` runs it by hand; `backfiller serve` runs a sampled one on
//! `audit.schedule`.
//!
//! How it reads: a whole audit walks the me_files once in keyset batches, reading each
//! batch's tags and rows with the statements a populate uses and judging every audited
//! target on them ([`crate::drift_of`], the rules the writers plan with); a sample or one
//! me_file is read as a sync reads it. Memory is bounded by the batch. A me_file found
//! drifting is judged again under the per-me_file lock every snapline writer takes, with the
//! bands and statuses read under it, so a sync or populate in flight is never reported as
//! drift; one whose sync is still waiting in the queue is counted as pending, not drift.
//!
//! What it writes: nothing, unless asked to fix. `--fix` syncs every drifting me_file (the
//! syncer's own code, under its locks, so it never races a sync or a populate), backfills
//! the NULL copies of the scope, and audits again.

use crate::backfill::{BackfillOptions, BackfillScope};
use crate::sync_me_file::SyncMeFile;
use crate::{BandCache, Drift, DriftKind, JobError, StopRequest, drift_of};
use domain::{BandId, MeFileId, PopulationStatus, Tag, TargetBands, TargetId, TraitId};
use repo::{CopyTable, Db, MeFileState, PopulationRow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// What an audit covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditScope {
    /// Every `populated` target, every me_file.
    All,
    /// One target (audited only while `populated`).
    Target(TargetId),
    /// One me_file in every `populated` target.
    MeFile(MeFileId),
}

impl std::fmt::Display for AuditScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditScope::All => write!(f, "all targets"),
            AuditScope::Target(t) => write!(f, "target {t}"),
            AuditScope::MeFile(m) => write!(f, "me_file {m}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AuditOptions {
    pub scope: AuditScope,
    /// Audit this many me_files drawn at random instead of all of them.
    pub sample: Option<u64>,
    /// Me_files read per batch (bounds memory).
    pub batch_size: u64,
    /// Examples kept per kind of drift.
    pub examples: usize,
    /// Repair what is found, then audit again.
    pub fix: bool,
    /// Checked before each batch.
    pub stop: StopRequest,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            scope: AuditScope::All,
            sample: None,
            // the audit reads me_files in batches as a populate does
            batch_size: settings::Settings::defaults().populator.batch_size,
            examples: 5,
            fix: false,
            stop: StopRequest::default(),
        }
    }
}

/// Me_files judged again under their locks per transaction.
const CONFIRM_BATCH: usize = 500;
/// Me_files synced per transaction by `--fix`.
const FIX_BATCH: usize = 100;
/// Drifting me_files whose waiting sync is looked for; past this many the drift is no
/// sync's lag and every one counts.
const PENDING_CHECKS: usize = 1_000;

/// A target in scope that was not audited, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedTarget {
    pub target_id: i64,
    /// Its `population_status` (only `populated` targets are audited: a populating target
    /// is being rewritten, a `not_populated` one is not snapline's to keep).
    pub status: String,
}

/// What the audit repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixSummary {
    pub me_files_synced: u64,
    pub population_rows_changed: u64,
    pub copies_filled: u64,
}

/// What an audit found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<u64>,
    pub me_files_checked: u64,
    pub targets_audited: u64,
    pub targets_skipped: Vec<SkippedTarget>,
    /// Rows per kind of drift, every kind listed.
    pub drift: BTreeMap<DriftKind, u64>,
    /// Population drift per target (targets with none left out).
    pub by_target: BTreeMap<i64, BTreeMap<DriftKind, u64>>,
    /// A few rows of each kind found.
    pub examples: Vec<Drift>,
    /// Me_files whose drift a sync still waiting in the queue will repair: not drift.
    pub pending_sync: u64,
    /// NULL snapshots of offers and ad_events that nothing can fill (a NULL reference, or
    /// a band that no longer exists; the backfill leaves them too): not drift.
    pub unrepairable_copies: u64,
    pub elapsed_ms: u64,
    /// With `--fix`: what was repaired ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<FixSummary>,
    /// ... and the audit that followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_fix: Option<Box<AuditReport>>,
}

impl AuditReport {
    /// Rows of drift found, all kinds.
    pub fn drift_rows(&self) -> u64 {
        self.drift.values().sum()
    }

    /// The drift left per kind: after the fix when there was one.
    pub fn drift_left_by_kind(&self) -> &BTreeMap<DriftKind, u64> {
        self.after_fix
            .as_ref()
            .map_or(&self.drift, |after| &after.drift)
    }

    /// The rows of drift left: after the fix when there was one.
    pub fn drift_left(&self) -> u64 {
        self.drift_left_by_kind().values().sum()
    }

    /// Keeps the first `examples` of each kind.
    fn keep_examples(&mut self, examples: usize) {
        let mut kept: HashMap<DriftKind, usize> = HashMap::new();
        self.examples.retain(|drift| {
            let n = kept.entry(drift.kind).or_default();
            *n += 1;
            *n <= examples
        });
    }

    /// Counts `found` (the report's first drift) and keeps the first `examples` of each
    /// kind.
    fn count(&mut self, found: &[Drift], examples: usize) {
        for drift in found {
            let of_kind = self.drift.entry(drift.kind).or_default();
            *of_kind += 1;
            if *of_kind as usize <= examples {
                self.examples.push(drift.clone());
            }
            if let Some(target) = drift.target_id {
                *self
                    .by_target
                    .entry(target)
                    .or_default()
                    .entry(drift.kind)
                    .or_default() += 1;
            }
        }
    }
}

/// Progress of a running audit.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditProgress {
    pub me_files_done: u64,
    pub me_files_total: u64,
    pub drift_candidates: u64,
}

/// The populated targets of the scope with their bands, and what reads of them need.
struct Audited {
    targets: Vec<TargetBands>,
    band_to_target: HashMap<BandId, usize>,
    band_ids: Vec<BandId>,
    traits: Vec<TraitId>,
}

impl Audited {
    fn new(targets: Vec<TargetBands>) -> Self {
        let band_to_target: HashMap<BandId, usize> = targets
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.bands().iter().map(move |b| (b.id, i)))
            .collect();
        let mut band_ids: Vec<BandId> = band_to_target.keys().copied().collect();
        band_ids.sort_unstable();
        let traits: BTreeSet<TraitId> = targets.iter().flat_map(|t| t.trait_ids()).collect();
        Self {
            targets,
            band_to_target,
            band_ids,
            traits: traits.into_iter().collect(),
        }
    }

    /// The drift of every audited target for `me_files` (those that exist), their `tags`
    /// and `rows` (of the audited bands; rows of me_files not in `me_files` are of gone
    /// me_files).
    fn judge(
        &self,
        me_files: &[MeFileId],
        tags: &HashMap<MeFileId, Vec<Tag>>,
        rows: Vec<PopulationRow>,
    ) -> Vec<Drift> {
        let mut per_target: Vec<Vec<PopulationRow>> = vec![Vec::new(); self.targets.len()];
        for row in rows {
            if let Some(&i) = self.band_to_target.get(&row.band_id) {
                per_target[i].push(row);
            }
        }
        self.targets
            .iter()
            .zip(per_target)
            .flat_map(|(target, rows)| drift_of(target, me_files, tags, rows))
            .collect()
    }

    /// [`Audited::judge`] on what a sync reads of a list of me_files.
    fn judge_states(&self, states: HashMap<MeFileId, MeFileState>) -> Vec<Drift> {
        let mut me_files = Vec::new();
        let mut tags = HashMap::new();
        let mut rows = Vec::new();
        for (me_file, state) in states {
            if let Some(own) = state.tags {
                me_files.push(me_file);
                tags.insert(me_file, own);
            }
            rows.extend(state.rows);
        }
        me_files.sort_unstable();
        self.judge(&me_files, &tags, rows)
    }
}

/// Audits `options.scope` (and repairs it with `options.fix`); `on_progress` is called after
/// each batch. Unknown or out-of-range ids are bad input.
pub async fn audit(
    db: &Db,
    options: &AuditOptions,
    on_progress: &(dyn Fn(AuditProgress) + Send + Sync),
) -> Result<AuditReport, JobError> {
    if !options.fix {
        return audit_once(db, options, on_progress).await;
    }
    // A fix needs every drifting me_file: all are kept, the report shows a few.
    let every = AuditOptions {
        examples: usize::MAX,
        ..options.clone()
    };
    let mut report = audit_once(db, &every, on_progress).await?;
    if report.drift_rows() > 0 {
        let started = Instant::now();
        report.fixed = Some(fix(db, options, &report).await?);
        let again = AuditOptions {
            fix: false,
            ..options.clone()
        };
        let mut after = audit_once(db, &again, on_progress).await?;
        after.elapsed_ms += started.elapsed().as_millis() as u64;
        report.after_fix = Some(Box::new(after));
    }
    report.keep_examples(options.examples);
    Ok(report)
}

async fn audit_once(
    db: &Db,
    options: &AuditOptions,
    on_progress: &(dyn Fn(AuditProgress) + Send + Sync),
) -> Result<AuditReport, JobError> {
    let started = Instant::now();
    let mut report = AuditReport {
        scope: options.scope.to_string(),
        sample: options.sample,
        drift: DriftKind::ALL.iter().map(|k| (*k, 0)).collect(),
        ..AuditReport::default()
    };
    let in_scope: Vec<repo::TargetRow> = match options.scope {
        AuditScope::Target(target) => {
            crate::error::check_target_exists(db, target).await?;
            db.targets()
                .find(target)
                .await?
                .into_iter()
                .collect::<Vec<_>>()
        }
        AuditScope::MeFile(me_file) => {
            crate::error::check_id_range(db, "me_file", "me_files", me_file.0).await?;
            db.targets().all().await?
        }
        AuditScope::All => db.targets().all().await?,
    };
    let mut populated = Vec::new();
    for target in in_scope {
        if target.status == Some(PopulationStatus::Populated) {
            populated.push(target.id);
        } else {
            report.targets_skipped.push(SkippedTarget {
                target_id: target.id.0,
                status: target.status.map_or("unknown", |s| s.as_str()).to_owned(),
            });
        }
    }
    let loaded = db.bands().of_targets(&populated).await?;
    // A populated target without bands holds no rows: audited all the same.
    let targets: Vec<TargetBands> = populated
        .iter()
        .map(|id| {
            loaded
                .get(id)
                .cloned()
                .unwrap_or_else(|| TargetBands::new(*id, [], []))
        })
        .collect();
    report.targets_audited = targets.len() as u64;
    let audited = Audited::new(targets);

    let candidates = read_and_judge(db, &audited, options, &mut report, on_progress).await?;
    let (confirmed, pending) = confirm(db, &audited, &candidates).await?;
    report.pending_sync = pending;
    report.count(&confirmed, options.examples);

    let (bands, me_file) = match options.scope {
        AuditScope::All => (None, None),
        AuditScope::Target(_) => (Some(audited.band_ids.as_slice()), None),
        AuditScope::MeFile(m) => (None, Some(m)),
    };
    for (table, kind) in [
        (CopyTable::Offers, DriftKind::NullOffer),
        (CopyTable::AdEvents, DriftKind::NullAdEvent),
    ] {
        let nulls = db
            .audit()
            .null_copies(table, bands, me_file, options.examples.min(1_000) as u64)
            .await?;
        report.drift.insert(kind, nulls.count as u64);
        report.unrepairable_copies += nulls.unrepairable as u64;
        report
            .examples
            .extend(nulls.examples.into_iter().map(|(id, me_file_id)| Drift {
                kind,
                target_id: None,
                me_file_id,
                row_id: Some(id),
                band_id: None,
            }));
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        scope = %report.scope,
        sample = ?report.sample,
        me_files = report.me_files_checked,
        targets = report.targets_audited,
        drift = report.drift_rows(),
        pending_sync = report.pending_sync,
        elapsed_ms = report.elapsed_ms,
        "audit done"
    );
    Ok(report)
}

/// Reads the scope batch by batch and returns the drift found without locks (candidates).
async fn read_and_judge(
    db: &Db,
    audited: &Audited,
    options: &AuditOptions,
    report: &mut AuditReport,
    on_progress: &(dyn Fn(AuditProgress) + Send + Sync),
) -> Result<Vec<Drift>, JobError> {
    let batch = options.batch_size.max(1);
    let mut candidates = Vec::new();
    let mut progress = AuditProgress::default();
    if audited.targets.is_empty() {
        return Ok(candidates);
    }
    let listed: Option<Vec<MeFileId>> = match (options.scope, options.sample) {
        (AuditScope::MeFile(m), _) => Some(vec![m]),
        (_, Some(n)) => Some(db.audit().sample_me_files(n).await?),
        (_, None) => None,
    };
    if let Some(me_files) = listed {
        progress.me_files_total = me_files.len() as u64;
        for chunk in me_files.chunks(batch as usize) {
            options.stop.check("audit")?;
            let states = db.sync().me_files_state(chunk, &audited.band_ids).await?;
            candidates.extend(audited.judge_states(states));
            progress.me_files_done += chunk.len() as u64;
            progress.drift_candidates = candidates.len() as u64;
            on_progress(progress);
        }
        report.me_files_checked = progress.me_files_done;
        return Ok(candidates);
    }
    progress.me_files_total = db.audit().me_file_count().await?;
    let mut cursor = MeFileId(0);
    loop {
        options.stop.check("audit")?;
        let me_files = db
            .tags()
            .me_file_ids_after(cursor, MeFileId(i64::MAX), batch)
            .await?;
        // After the last me_file, one more read finds the rows of gone me_files beyond it.
        let last = me_files.is_empty();
        let up_to = me_files.last().copied().unwrap_or(MeFileId(i64::MAX));
        let tags = db
            .tags()
            .in_me_file_range(cursor, up_to, &audited.traits)
            .await?;
        let rows = db
            .populations()
            .in_me_file_range(&audited.band_ids, cursor, up_to)
            .await?;
        candidates.extend(audited.judge(&me_files, &tags, rows));
        progress.me_files_done += me_files.len() as u64;
        progress.drift_candidates = candidates.len() as u64;
        on_progress(progress);
        if last {
            break;
        }
        cursor = up_to;
    }
    report.me_files_checked = progress.me_files_done;
    Ok(candidates)
}

/// Judges the me_files of `candidates` again, each under the lock its writers take, with
/// the targets' statuses and bands read under it: returns the drift that holds, less that
/// of me_files a waiting sync will repair, and how many such me_files there are.
async fn confirm(
    db: &Db,
    audited: &Audited,
    candidates: &[Drift],
) -> Result<(Vec<Drift>, u64), JobError> {
    let me_files: BTreeSet<MeFileId> = candidates
        .iter()
        .filter_map(|d| d.me_file_id.map(MeFileId))
        .collect();
    let me_files: Vec<MeFileId> = me_files.into_iter().collect();
    let audited_ids: BTreeSet<TargetId> = audited.targets.iter().map(|t| t.target_id()).collect();
    let mut confirmed = Vec::new();
    for chunk in me_files.chunks(CONFIRM_BATCH) {
        let tx = db.begin_write().await?;
        tx.populations().lock_me_files(chunk).await?;
        let still_populated: Vec<TargetId> = tx
            .targets()
            .all()
            .await?
            .into_iter()
            .filter(|t| {
                t.status == Some(PopulationStatus::Populated) && audited_ids.contains(&t.id)
            })
            .map(|t| t.id)
            .collect();
        let mut loaded = tx.bands().of_targets(&still_populated).await?;
        let now = Audited::new(
            still_populated
                .iter()
                .map(|id| {
                    loaded
                        .remove(id)
                        .unwrap_or_else(|| TargetBands::new(*id, [], []))
                })
                .collect(),
        );
        let states = tx.sync().me_files_state(chunk, &now.band_ids).await?;
        confirmed.extend(now.judge_states(states));
        // Read-only: rolled back, releasing the locks.
        drop(tx);
    }
    let drifting: BTreeSet<i64> = confirmed.iter().filter_map(|d| d.me_file_id).collect();
    let mut pending = BTreeSet::new();
    for me_file in drifting.iter().take(PENDING_CHECKS) {
        let payload = serde_json::to_string(&SyncMeFile {
            me_file_id: *me_file,
            deleted_trait_ids: None,
        })
        .expect("a payload always serializes");
        if db
            .queue_jobs()
            .has_waiting(crate::sync_me_file::QUEUE, &payload)
            .await?
        {
            pending.insert(*me_file);
        }
    }
    confirmed.retain(|d| !d.me_file_id.is_some_and(|m| pending.contains(&m)));
    Ok((confirmed, pending.len() as u64))
}

/// Repairs what `found` reported: syncs every drifting me_file, fills the scope's NULL
/// copies.
async fn fix(db: &Db, options: &AuditOptions, found: &AuditReport) -> Result<FixSummary, JobError> {
    let mut summary = FixSummary::default();
    let me_files: BTreeSet<MeFileId> = found
        .examples
        .iter()
        .filter(|d| d.target_id.is_some())
        .filter_map(|d| d.me_file_id.map(MeFileId))
        .collect();
    let me_files: Vec<MeFileId> = me_files.into_iter().collect();
    let cache = BandCache::new(Duration::ZERO);
    for chunk in me_files.chunks(FIX_BATCH) {
        options.stop.check("audit --fix")?;
        let synced = crate::sync::sync_me_files(db, &cache, chunk).await?;
        summary.me_files_synced += synced.len() as u64;
        summary.population_rows_changed += synced.iter().map(|s| s.changes()).sum::<u64>();
    }
    let copies = found.drift[&DriftKind::NullOffer] + found.drift[&DriftKind::NullAdEvent];
    if copies > 0 {
        let scope = match options.scope {
            AuditScope::Target(target) => {
                BackfillScope::Bands(crate::backfill::bands_of_target(db, target).await?)
            }
            AuditScope::All | AuditScope::MeFile(_) => BackfillScope::All,
        };
        let backfill_options = BackfillOptions {
            stop: options.stop.clone(),
            ..BackfillOptions::default()
        };
        let filled = crate::backfill::backfill(db, &scope, &backfill_options, &|_| {}).await?;
        summary.copies_filled = filled.offers_fixed + filled.ad_events_fixed;
    }
    tracing::info!(
        me_files_synced = summary.me_files_synced,
        population_rows_changed = summary.population_rows_changed,
        copies_filled = summary.copies_filled,
        "audit --fix repaired"
    );
    Ok(summary)
}

impl std::fmt::Display for AuditReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_report(f, self, "")?;
        if let Some(fixed) = &self.fixed {
            writeln!(
                f,
                "fixed: {} me_files synced ({} population rows changed), {} offer/ad_event snapshots filled",
                fixed.me_files_synced, fixed.population_rows_changed, fixed.copies_filled
            )?;
        }
        if let Some(after) = &self.after_fix {
            writeln!(f, "audited again after the fix:")?;
            write_report(f, after, "  ")?;
        }
        Ok(())
    }
}

fn write_report(
    f: &mut std::fmt::Formatter<'_>,
    report: &AuditReport,
    indent: &str,
) -> std::fmt::Result {
    let sample = report
        .sample
        .map(|n| format!(", a sample of {n}"))
        .unwrap_or_default();
    writeln!(
        f,
        "{indent}audit of {}{sample}: {} me_files, {} populated targets in {:.2}s",
        report.scope,
        report.me_files_checked,
        report.targets_audited,
        report.elapsed_ms as f64 / 1000.0
    )?;
    if !report.targets_skipped.is_empty() {
        let skipped: Vec<String> = report
            .targets_skipped
            .iter()
            .map(|s| format!("{} ({})", s.target_id, s.status))
            .collect();
        writeln!(
            f,
            "{indent}not audited (not populated): {}",
            skipped.join(", ")
        )?;
    }
    let kinds: Vec<String> = report
        .drift
        .iter()
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect();
    writeln!(
        f,
        "{indent}drift: {} rows ({})",
        report.drift_rows(),
        kinds.join(", ")
    )?;
    for (target, kinds) in &report.by_target {
        let kinds: Vec<String> = kinds
            .iter()
            .map(|(k, n)| format!("{} {n}", k.as_str()))
            .collect();
        writeln!(f, "{indent}  target {target}: {}", kinds.join(", "))?;
    }
    if !report.examples.is_empty() {
        writeln!(f, "{indent}examples:")?;
        for drift in &report.examples {
            writeln!(f, "{indent}  {}", describe(drift))?;
        }
    }
    if report.pending_sync > 0 {
        writeln!(
            f,
            "{indent}{} me_file(s) with a sync waiting in the queue, not counted as drift",
            report.pending_sync
        )?;
    }
    if report.unrepairable_copies > 0 {
        writeln!(
            f,
            "{indent}{} offer/ad_event snapshot(s) NULL on a gone band or a NULL reference: nothing can fill them, not counted as drift",
            report.unrepairable_copies
        )?;
    }
    if report.drift_rows() == 0 {
        writeln!(f, "{indent}no drift")?;
    }
    Ok(())
}

/// One line for a drift: its kind and the ids that find it.
pub fn describe(drift: &Drift) -> String {
    let mut parts = vec![drift.kind.as_str().to_owned()];
    let table = match drift.kind {
        DriftKind::NullOffer => "offer",
        DriftKind::NullAdEvent => "ad_event",
        _ => "population",
    };
    if let Some(t) = drift.target_id {
        parts.push(format!("target {t}"));
    }
    if let Some(m) = drift.me_file_id {
        parts.push(format!("me_file {m}"));
    }
    if let Some(r) = drift.row_id {
        parts.push(format!("{table} {r}"));
    }
    if let Some(b) = drift.band_id {
        parts.push(format!("band {b}"));
    }
    parts.join(", ")
}

/// Keeps `report` as the last audit of its kind of run (`scheduled`, or `snapctl` for a
/// whole audit by hand), with who ran it: what the board shows and every replica's
/// `snapline_drift_rows` gauges report. The drift kept is what is left (after a fix).
pub async fn record(
    db: &Db,
    run: &str,
    ran_by: &str,
    report: &AuditReport,
) -> Result<(), JobError> {
    let json = serde_json::to_string(report).expect("a report always serializes");
    db.audit()
        .record(run, ran_by, report.drift_left() as i64, &json)
        .await?;
    Ok(())
}

/// Sets the [`crate::metrics::DRIFT_ROWS`] and [`crate::metrics::AUDIT_LAST_RUN`] gauges from the newest kept audit.
pub fn record_last_in_metrics(newest: Option<&repo::AuditRecord>) {
    let report: Option<AuditReport> =
        newest.and_then(|record| serde_json::from_str(&record.report).ok());
    for kind in crate::DriftKind::ALL {
        let rows = report
            .as_ref()
            .and_then(|r| r.drift_left_by_kind().get(&kind).copied())
            .unwrap_or(0);
        ::metrics::gauge!(crate::metrics::DRIFT_ROWS, "kind" => kind.as_str()).set(rows as f64);
    }
    ::metrics::gauge!(crate::metrics::AUDIT_LAST_RUN)
        .set(newest.map_or(0.0, |r| r.finished_at as f64));
}

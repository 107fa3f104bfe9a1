//! The jobs of queue `backfill` and what they report.

use crate::backfill::BackfillReport;
use serde::{Deserialize, Serialize};

pub const QUEUE: &str = crate::queues::BACKFILL;

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

/// `{"audit_sample": N}`: the scheduled audit of N me_files drawn at random
/// ([`crate::audit`]), run by the backfiller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSample {
    pub audit_sample: u64,
}

/// The jobs of queue `backfill`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackfillJob {
    Band(SnapshotBandPopulations),
    Audit(AuditSample),
    All(BackfillMissingSnapshots),
}

/// What a job of queue `backfill` reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackfillOutcome {
    Backfill(BackfillReport),
    Audit(Box<crate::audit::AuditReport>),
}

pub(super) const PAYLOAD_SHAPE: &str =
    r#"{} or {"band_id": <integer>} or {"audit_sample": <integer>}"#;

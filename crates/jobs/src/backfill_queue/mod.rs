//! Queue `backfill`: `backfill_missing_snapshots {}` (everything; scheduled by cron, hourly
//! by default), `snapshot_band_populations {"band_id": i64}` (one band) and the scheduled
//! audit `{"audit_sample": N}`: their payloads, handler, pushes and schedules.
//!
//! When a backfill runs: on the cron tick (exactly once per tick across replicas), when
//! pushed (`backfiller enqueue`), or inline (`backfiller run`, `just backfill`, which call
//! [`crate::backfill::backfill`] directly).

mod handler;
mod payloads;
mod schedule;

pub use handler::{BackfillerContext, enqueue, handle, serve};
pub use payloads::{
    AuditSample, BackfillJob, BackfillMissingSnapshots, BackfillOutcome, QUEUE,
    SnapshotBandPopulations,
};
pub use schedule::{
    ScheduleState, Scheduled, on_cron_tick, on_tick, parse_schedule, schedules, serve_cron,
};

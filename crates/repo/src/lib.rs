//! snapline's repositories: every SQL statement snapline runs lives in this crate, for
//! PostgreSQL (production) and SQLite (the embedded default). One connection pool serves the
//! ORM, these statements and the apalis queues (all on sqlx 0.9).
//!
//! Bulk statements send a whole batch as a few parameters (PostgreSQL arrays, or one JSON
//! array that SQLite unpacks with `json_each`), so a batch costs a constant number of
//! statements; each is written once over `batch::RowBatch`'s row source. This crate knows SQL and nothing of jobs or queues; the rules of membership
//! and snapshots belong to `domain`, never here.

mod audit;
mod backfill;
mod bands;
mod batch;
mod board;
mod bridge;
mod bulk;
mod capture;
mod db;
mod doctor;
mod error;
mod events;
mod guard;
mod job_admin;
mod leases;
mod pool;
mod populate_runs;
mod populations;
mod queue_jobs;
mod queue_pauses;
#[cfg(feature = "reference")]
mod reference;
mod rows;
mod schema;
#[cfg(feature = "reference")]
mod server_stats;
mod stats;
mod sync;
mod tags;
mod targets;
mod tx;

pub use audit::{AuditRecord, AuditRepo, NullCopies};
pub use backfill::{BackfillRepo, CopyTable, FilledRows, NullPopulation};
pub use bands::BandRepo;
pub use board::{BoardRepo, TargetBandRow};
pub use bridge::{BRIDGE_VERSION, BridgeRepo, BridgeState};
pub use bulk::{BulkLoader, Cell, TableRows};
pub use capture::{
    CAPTURE_VERSION, CAPTURED_TABLES, CaptureRepo, CaptureTrigger, FIRST_SAFE_CAPTURE_VERSION,
};
pub use db::{Backend, Db, DbOptions, Pooler};
pub use doctor::{DoctorRepo, RoleRight, ServerLimits};
pub use error::RepoError;
pub use events::{EVENTS_CHANNEL, EventOptions, EventRepo};
pub use guard::{GuardRepo, GuardState};
pub use job_admin::{ActionOutcome, JobAdminRepo, JobDetail, JobFilter, JobStatus};
pub use leases::{LeaseHolder, LeaseRepo};
pub use pool::PoolConn;
pub use populate_runs::{ChunkFinished, ChunkRange, PopulateFailure, PopulateRunRepo};
pub use populations::{
    AppliedChanges, ME_FILE_LOCK_RANGE, PopulationChanges, PopulationPage, PopulationRepo,
    PopulationRow, me_file_lock_range,
};
pub use queue_jobs::{
    DEPTH_COUNT_CAP, JobRun, PLAIN_SQL_PUSH, PLAIN_SQL_PUSH_POPULATE, QueueDepth, QueueJobRepo,
};
#[cfg(feature = "reference")]
pub use queue_jobs::{QueueJob, QueueLatency};
pub use queue_pauses::QueuePauseRepo;
#[cfg(feature = "reference")]
pub use reference::{ReferenceRepo, SyncCommitLatency};
pub use schema::SchemaRepo;
#[cfg(feature = "reference")]
pub use server_stats::ServerStatsRepo;
pub use stats::{NullSnapshotCounts, StatsRepo, TableCounts};
pub use sync::{MeFileState, ScopedTarget, SyncRepo};
pub use tags::{TagRepo, tags_in_me_file_range_sql};
pub use targets::{TargetRepo, TargetRow};
pub use tx::Tx;

//! snapline's repositories: every SQL statement snapline runs lives in this crate, for
//! PostgreSQL (production) and SQLite (the embedded default). One connection pool serves the
//! ORM, these statements and the apalis queues (all on sqlx 0.9).
//!
//! Bulk statements send a whole batch as a few parameters (PostgreSQL arrays, or one JSON
//! array that SQLite unpacks with `json_each`), so a batch costs a constant number of
//! statements; each is written once over `batch::RowBatch`'s row source. This crate knows
//! SQL and nothing of jobs or queues; the rules of membership and snapshots belong to
//! `domain`, never here.
//!
//! Its rooms: `platform` (the platform's tables), `snapline` (snapline's own tables beside
//! them), `queue` (apalis's queue tables), `installed` (the triggers, functions and checks
//! snapline installs in the platform's database on command), `catalog` (the server's
//! catalog and settings); at the top the connection, its transactions and the batch
//! encodings the rooms share.

mod batch;
mod bulk;
mod catalog;
mod db;
mod error;
mod installed;
mod platform;
mod pool;
mod queue;
#[cfg(feature = "reference")]
mod reference;
mod rows;
mod snapline;
mod tx;

pub use bulk::{BulkLoader, Cell, TableRows};
pub use catalog::doctor::{DoctorRepo, RoleRight, ServerLimits};
pub use catalog::schema::SchemaRepo;
#[cfg(feature = "reference")]
pub use catalog::server_stats::ServerStatsRepo;
pub use db::{Backend, Db, DbOptions, FastPath, Pooler};
pub use error::RepoError;
pub use installed::bridge::{BRIDGE_VERSION, BridgeRepo, BridgeState};
pub use installed::capture::{
    CAPTURE_VERSION, CAPTURED_TABLES, CaptureRepo, CaptureTrigger, FIRST_SAFE_CAPTURE_VERSION,
};
pub use installed::guard::{GuardRepo, GuardState};
pub use platform::backfill::{BackfillRepo, CopyTable, FilledRows, NullPopulation};
pub use platform::bands::BandRepo;
pub use platform::board::{BoardRepo, TargetBandRow};
pub use platform::events::{EVENTS_CHANNEL, EventOptions, EventRepo};
pub use platform::populations::{
    AppliedChanges, ME_FILE_LOCK_RANGE, PopulationChanges, PopulationPage, PopulationRepo,
    PopulationRow, me_file_lock_range,
};
pub use platform::stats::{NullSnapshotCounts, StatsRepo, TableCounts};
pub use platform::sync::{MeFileState, ScopedTarget, SyncRepo};
pub use platform::tags::{TagRepo, tags_in_me_file_range_sql};
pub use platform::targets::{TargetRepo, TargetRow};
pub use pool::PoolConn;
#[cfg(feature = "reference")]
pub use queue::QueueLatency;
pub use queue::{
    ActionOutcome, DEPTH_COUNT_CAP, JobAdminRepo, JobAttemptRecord, JobChange, JobFilter,
    JobStatus, PLAIN_SQL_PUSH, PLAIN_SQL_PUSH_POPULATE, QueueDepth, QueueHistoryRepo, QueueJob,
    QueueJobRepo, QueueMinute, QueuePauseRepo, QueueScaleRepo, QueueWorker, ROLL_UP_AFTER_SECS,
    ROLL_UP_AT_MOST_MINUTES,
};
#[cfg(feature = "reference")]
pub use reference::{ReferenceRepo, SyncCommitLatency};
pub use snapline::audit::{AuditRecord, AuditRepo, NullCopies};
pub use snapline::leases::{LeaseHolder, LeaseRepo};
pub use snapline::populate_runs::{
    ChunkFinished, ChunkRange, PopulateFailure, PopulateRunRepo, RunProgress,
};
pub use tx::Tx;

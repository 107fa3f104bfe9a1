//! snapline's jobs. One module per job holds its payload, its queue, its handler and how to
//! run it by hand; `queue` sets up the apalis storages (PostgreSQL in production, SQLite on
//! the embedded default) on the process's one pool, `wakeups` wakes idle PostgreSQL workers on
//! a push, and `worker` runs consumers.
//!
//! Handlers read like the job's description: load through `repo`, compute with `domain`,
//! write through `repo`, report. This crate never writes SQL of its own.

pub mod admin;
pub mod audit;
pub mod backfill;
pub mod backfill_queue;
mod band_cache;
pub mod capture_drain;
pub mod doctor;
mod error;
pub mod explain;
pub mod history;
mod lease;
pub mod metrics;
pub mod pause;
mod plan;
pub mod populate_target;
pub mod queue;
pub mod queues;
pub mod status;
mod stop;
mod sync;
pub mod sync_group;
pub mod sync_me_file;
pub mod wakeups;
pub mod worker;

pub use band_cache::BandCache;
pub use error::JobError;
pub use plan::{Drift, DriftKind, PopulationPlan, drift_of, plan_population};
pub use stop::StopRequest;

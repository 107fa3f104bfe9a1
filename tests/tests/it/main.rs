//! snapline's end-to-end tests, one test binary (one link of sea-orm, sqlx, apalis and axum
//! instead of one per file): each module is one area, each test gets its own database.
//! `job_runtime.rs` stays its own binary: it reads the process-wide metrics recorder, which
//! the workers of every other module would write to.

mod audit;
mod backfill;
mod board;
mod browser;
mod data;
mod faults;
mod hostile_data;
mod hostile_payloads;
mod kill_points;
mod monitoring;
mod operator;
mod platform;
mod pooler;
mod populate;
mod populate_worker;
mod replicas;
mod schema;
mod sync;
mod traces;

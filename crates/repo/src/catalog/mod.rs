//! Reads of the database server's own catalog and settings: the schema the jobs adapt to,
//! what `snapctl doctor` checks, the statistics the benchmarks report. Reads only.

pub(crate) mod doctor;
pub(crate) mod schema;
#[cfg(feature = "reference")]
pub(crate) mod server_stats;

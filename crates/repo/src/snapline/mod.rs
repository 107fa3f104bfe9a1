//! snapline's own tables beside the platform's: leases, populate runs and chunks, the record
//! of audits.

pub(crate) mod audit;
pub(crate) mod leases;
pub(crate) mod populate_runs;

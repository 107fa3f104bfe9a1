//! The platform's tables: what snapline reads of them (tags, bands, targets), the populations
//! and snapshots it writes (populate, sync, backfill), the board's and status's counts, and
//! the events it tells the platform.

pub(crate) mod backfill;
pub(crate) mod bands;
pub(crate) mod board;
pub(crate) mod events;
pub(crate) mod populations;
pub(crate) mod stats;
pub(crate) mod sync;
pub(crate) mod tags;
pub(crate) mod targets;

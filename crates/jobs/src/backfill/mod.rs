//! The safety net that leaves no NULL snapshot behind: one backfill run (everything, or the
//! bands of a scope), as the `backfill` queue's jobs ([`crate::backfill_queue`]) and
//! `backfiller run` (`just backfill`) call it.
//!
//! What it changes, in keyset-paged batches of one transaction each: first every population
//! with a NULL snapshot gets the snapshot built by `domain` from the me_file's current tags
//! and the band's traits; then every offer and ad_event with a NULL snapshot gets its
//! population's snapshot, or, when there is no such population, one computed from current
//! tags and that band (an orphan). When the band itself is gone the row stays NULL and is
//! counted as unfixable, with its id in the log. Every write re-checks `IS NULL`: a snapshot
//! written meanwhile by the populator or syncer is never overwritten, and a non-NULL offer or
//! ad_event snapshot (history) is never changed. A run killed at any point is finished by the
//! next one.

mod run;
mod scope;
mod types;

pub use run::backfill;
pub use scope::{bands_of_target, bands_with_null_populations};
pub use types::{
    BackfillOptions, BackfillProgress, BackfillReport, BackfillScope, ProgressLog,
    tables_above_threshold,
};

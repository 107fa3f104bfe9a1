//! `populate_target {"target_id": i64}` on queue `populate_target`: (re)computes a whole
//! target's populations with their snapshots, split into me_file-range chunks that any
//! populator replica takes from queue `populate_chunk`.
//!
//! When it runs: when a marketer creates or edits a target, or by hand
//! (`populator enqueue --target ID`, or inline with `populator run --target ID`).
//!
//! What it changes: takes the target's lease (a second populate of the same target waits
//! for the first), counts the run (`snapline_populate_runs`), sets the target `populating`
//! and records the run's chunks (`snapline_populate_chunks`), each `chunk_me_files`
//! me_files. A target of one chunk is populated by this job itself; otherwise one
//! `populate_chunk` job per chunk is pushed and the run's lease passes to them. A chunk
//! walks its me_files in keyset-paged batches; per batch, in one transaction, it inserts new
//! members with their snapshot, moves me_files whose band changed, rewrites stale snapshots
//! and deletes rows that no longer match. The chunk that commits last, finding every other
//! chunk of its run done, sets `populated` and `last_populated_at` and releases the lease,
//! so a reader that waits for `populated` never sees a missing or stale snapshot. A chunk
//! of an older run never finishes a newer one: it stops when its run is no longer the
//! target's latest. A target with no bands ends `not_populated`. A rerun changes nothing.

mod chunk;
mod failure;
mod finish;
mod handler;
mod run;
mod types;

pub use chunk::populate_chunk;
pub use finish::SUPERSEDED;
pub use handler::{PopulatorContext, enqueue, handle, handle_chunk, serve};
pub use run::{
    MAX_LOCK_RANGES_PER_BATCH, populate_target, populate_target_on_queue, within_lock_ranges,
};
pub use types::{PopulateChunk, PopulateOptions, PopulateSummary, PopulateTarget};

pub const QUEUE: &str = crate::queues::POPULATE_TARGET;

/// The queue of a run's chunks, served by every populator beside [`QUEUE`].
pub const CHUNK_QUEUE: &str = crate::queues::POPULATE_CHUNK;

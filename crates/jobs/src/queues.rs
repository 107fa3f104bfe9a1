//! Every queue snapline serves, named in one place. The queue runtime (`queue`, `worker`,
//! `pause`) and the operator surface (`status`, `admin`) read the names and properties here
//! and know no job; each job module takes its queue's name from here.
//!
//! Adding a queue: its name and properties here, its job module, its settings section and
//! the binary that serves it.

/// `populate_target {"target_id": i64}`: (re)populates a whole target.
pub const POPULATE_TARGET: &str = "populate_target";

/// The chunks of a populate run, served by every populator beside [`POPULATE_TARGET`].
pub const POPULATE_CHUNK: &str = "populate_chunk";

/// `sync_me_file {"me_file_id": i64}`: re-syncs one me_file.
pub const SYNC_ME_FILE: &str = "sync_me_file";

/// Backfills (all, per band) and scheduled audits.
pub const BACKFILL: &str = "backfill";

/// Every queue snapline consumes.
pub const ALL: [&str; 4] = [POPULATE_TARGET, POPULATE_CHUNK, SYNC_ME_FILE, BACKFILL];

/// The queues with a settings section of their own (`queues.<name>`) and that the platform's
/// Oban workers can be bridged to; a run's chunks follow [`POPULATE_TARGET`]'s settings.
pub const CONFIGURED: [&str; 3] = [POPULATE_TARGET, SYNC_ME_FILE, BACKFILL];

/// The binary whose `serve` consumes `queue`; `None` for a queue snapline does not serve.
pub fn binary(queue: &str) -> Option<&'static str> {
    match queue {
        POPULATE_TARGET | POPULATE_CHUNK => Some("populator"),
        SYNC_ME_FILE => Some("syncer"),
        BACKFILL => Some("backfiller"),
        _ => None,
    }
}

/// Jobs a worker of a queue of short jobs takes per fetch.
pub const FETCH_BATCH: usize = 50;

/// Jobs a worker of `queue` takes per fetch: one for the populator's long jobs, so a run's
/// chunks (and several targets' populates) spread over every replica instead of waiting in
/// the first fetcher's hands; [`FETCH_BATCH`] for the short ones.
pub fn fetch_batch(queue: &str) -> usize {
    if queue == POPULATE_TARGET || queue == POPULATE_CHUNK {
        1
    } else {
        FETCH_BATCH
    }
}

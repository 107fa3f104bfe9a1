//! The payloads of the two queues, the tuning of a run and what a run reports.

use domain::MeFileId;
use repo::ChunkRange;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub(super) const PAYLOAD_SHAPE: &str = r#"{"target_id": <integer>}"#;

pub(super) const CHUNK_PAYLOAD_SHAPE: &str = r#"{"target_id": <integer>, "run": <integer>, "after": <integer>, "up_to": <integer>, "lease_owner": <string>}"#;

/// The job payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulateTarget {
    pub target_id: i64,
}

/// The payload of one chunk of a run: me_files with `after < id <= up_to` of run `run` of
/// the target, whose lease the run holds as `lease_owner`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulateChunk {
    pub target_id: i64,
    pub run: i64,
    pub after: i64,
    pub up_to: i64,
    pub lease_owner: String,
}

impl PopulateChunk {
    pub(super) fn range(&self) -> ChunkRange {
        ChunkRange {
            after: MeFileId(self.after),
            up_to: MeFileId(self.up_to),
        }
    }
}

/// Tuning of a populate run.
#[derive(Clone, Debug)]
pub struct PopulateOptions {
    /// Me_files per batch (one transaction each).
    pub batch_size: u64,
    /// Me_files per chunk: a run over more me_files is split into chunks that any populator
    /// replica takes from [`CHUNK_QUEUE`].
    pub chunk_me_files: u64,
    /// How long the run's lease lives without renewal (renewed every batch).
    pub lease_ttl: Duration,
    /// How long to wait for another populate of the same target before failing (retried).
    pub lock_wait: Duration,
    /// Pause after each batch (zero: none): caps the load one run puts on the database.
    pub batch_pause: Duration,
    /// Chunks a run populates at once when it runs them itself (`populator run`), each on
    /// its own connection: one chunk's reads wait on the disk while another's batch is
    /// computed or written. On the queue, replicas and their concurrency decide instead.
    pub chunks_at_once: usize,
    /// Checked before each batch: `populator run` sets it on Ctrl-C or SIGTERM.
    pub stop: crate::StopRequest,
}

impl From<&settings::PopulatorSettings> for PopulateOptions {
    fn from(settings: &settings::PopulatorSettings) -> Self {
        Self {
            batch_size: settings.batch_size,
            chunk_me_files: settings.chunk_me_files,
            lease_ttl: Duration::from_secs(settings.lease_ttl_secs),
            lock_wait: Duration::from_secs(settings.lock_wait_secs),
            batch_pause: Duration::from_millis(settings.batch_pause_ms),
            chunks_at_once: usize::from(settings.chunks_at_once),
            stop: crate::StopRequest::default(),
        }
    }
}

/// `[populator]` of `config/default.toml`, the one place its defaults are written.
impl Default for PopulateOptions {
    fn default() -> Self {
        Self::from(&settings::Settings::defaults().populator)
    }
}

/// What a run, or one chunk of it, changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopulateSummary {
    pub target_id: i64,
    /// `populated`, or `not_populated` for a target without bands; `populating` when chunks
    /// of the run are still to commit (a run handed to the queue, or a chunk not the last);
    /// `superseded` for a chunk of a run that a newer run replaced.
    pub status: String,
    /// The run's number (`snapline_populate_runs.started`).
    pub run: i64,
    /// Chunks the run was split into.
    pub chunks: u64,
    pub inserted: u64,
    pub moved: u64,
    pub deleted: u64,
    pub refreshed: u64,
    pub unchanged: u64,
    /// Populations anywhere whose band no longer exists, or whose band or me_file is NULL:
    /// left alone, counted.
    pub orphans: i64,
    pub batches: u64,
    pub me_files_scanned: u64,
    pub elapsed_ms: u64,
}

impl PopulateSummary {
    /// Rows it wrote: inserted, moved, deleted and refreshed (what a run's progress counts).
    pub fn changes(&self) -> u64 {
        self.inserted + self.moved + self.deleted + self.refreshed
    }

    /// Adds the counts of a chunk of the same run.
    pub(super) fn absorb(&mut self, chunk: &PopulateSummary) {
        self.inserted += chunk.inserted;
        self.moved += chunk.moved;
        self.deleted += chunk.deleted;
        self.refreshed += chunk.refreshed;
        self.unchanged += chunk.unchanged;
        self.batches += chunk.batches;
        self.me_files_scanned += chunk.me_files_scanned;
    }
}

impl std::fmt::Display for PopulateSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target {}: {} inserted, {} moved, {} deleted, {} refreshed, {} unchanged, {} orphans left alone; {} me_files in {} batches, {} chunk(s), {:.2}s, status {}",
            self.target_id,
            self.inserted,
            self.moved,
            self.deleted,
            self.refreshed,
            self.unchanged,
            self.orphans,
            self.me_files_scanned,
            self.batches,
            self.chunks,
            self.elapsed_ms as f64 / 1000.0,
            self.status
        )
    }
}

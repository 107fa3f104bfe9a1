//! `snapctl status`: what an operator reads first. NULL snapshots per table (from the partial
//! indexes), targets by population status, each queue's backlog and oldest waiting job, and
//! the last runs of each job type with their state, attempts, duration and error.

use crate::JobError;
use repo::{Db, NullSnapshotCounts, QueueDepth, QueueJob};
use serde::Serialize;

use crate::queues::ALL as QUEUES;

/// A snapshot of the system's state.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub null_snapshots: NullSnapshotCounts,
    /// population_status -> targets.
    pub targets: Vec<TargetsInStatus>,
    pub queues: Vec<QueueDepth>,
    /// The queues an operator paused (`snapctl queues pause`): no replica takes their jobs.
    pub paused_queues: Vec<String>,
    /// The last runs of each queue, newest first.
    pub recent_runs: Vec<QueueJob>,
    /// Targets whose last populate failed for good (left `not_populated`), newest first.
    pub failed_populates: Vec<repo::PopulateFailure>,
    /// The populates running now (targets `populating`, the first [`POPULATING_SHOWN`]).
    pub populating: Vec<PopulateProgress>,
}

/// Running populates `status` lists at most.
pub const POPULATING_SHOWN: u64 = 20;

/// How far a running populate has got, and an estimate of the rest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PopulateProgress {
    pub target_id: i64,
    #[serde(flatten)]
    pub run: repo::RunProgress,
    /// Rows written per second since the run started.
    pub rows_per_sec: Option<f64>,
    /// The chunks left at the pace of those done (chunks are me_file ranges of one size).
    pub secs_left: Option<i64>,
}

impl PopulateProgress {
    pub fn new(target_id: domain::TargetId, run: repo::RunProgress) -> Self {
        let elapsed = run.elapsed_secs.filter(|secs| *secs > 0);
        PopulateProgress {
            target_id: target_id.0,
            rows_per_sec: elapsed.map(|secs| run.rows_written as f64 / secs as f64),
            secs_left: elapsed
                .filter(|_| run.chunks_done > 0)
                .map(|secs| secs * (run.chunks - run.chunks_done).max(0) / run.chunks_done),
            run,
        }
    }

    /// One line: `chunks 2 of 5, 450000 rows, 8900 rows/s, about 35 s left`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "chunks {} of {}, {} rows",
            self.run.chunks_done, self.run.chunks, self.run.rows_written
        );
        if let Some(rate) = self.rows_per_sec {
            text.push_str(&format!(", {rate:.0} rows/s"));
        }
        match self.secs_left {
            Some(secs) => text.push_str(&format!(", about {secs} s left")),
            None => text.push_str(", time left known after the first chunk"),
        }
        text
    }
}

/// The progress of the populates running now (of the first `limit` targets
/// `populating`). A target marked `populating` whose populate has not started yet (its
/// job waits; its latest run is a finished one) is not listed.
pub async fn populating(db: &Db, limit: u64) -> Result<Vec<PopulateProgress>, JobError> {
    let mut progress = Vec::new();
    for target in db
        .targets()
        .with_status(domain::PopulationStatus::Populating, limit)
        .await?
    {
        if let Some(run) = db.populate_runs().progress(target).await?
            && run.chunks_done < run.chunks
        {
            progress.push(PopulateProgress::new(target, run));
        }
    }
    Ok(progress)
}

/// Failed populates `status` lists at most.
pub const FAILED_POPULATES_SHOWN: u64 = 20;

#[derive(Clone, Debug, Serialize)]
pub struct TargetsInStatus {
    pub status: String,
    pub targets: i64,
}

/// Reads the report; `runs_per_queue` last runs of each queue.
pub async fn status(db: &Db, runs_per_queue: u64) -> Result<StatusReport, JobError> {
    let mut queues = Vec::with_capacity(QUEUES.len());
    let mut recent_runs = Vec::new();
    for queue in QUEUES {
        queues.push(db.queue_jobs().depth(queue).await?);
        recent_runs.extend(db.queue_jobs().recent_runs(queue, runs_per_queue).await?);
    }
    Ok(StatusReport {
        null_snapshots: db.stats().null_snapshots().await?,
        targets: db
            .stats()
            .targets_by_status()
            .await?
            .into_iter()
            .map(|(status, targets)| TargetsInStatus { status, targets })
            .collect(),
        queues,
        paused_queues: db
            .queue_pauses()
            .paused()
            .await?
            .into_iter()
            .map(|(queue, _)| queue)
            .collect(),
        recent_runs,
        failed_populates: db.populate_runs().failures(FAILED_POPULATES_SHOWN).await?,
        populating: populating(db, POPULATING_SHOWN).await?,
    })
}

impl std::fmt::Display for StatusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nulls = &self.null_snapshots;
        writeln!(f, "NULL snapshots")?;
        writeln!(
            f,
            "  {:<20} {:>10}",
            "target_populations", nulls.target_populations
        )?;
        writeln!(f, "  {:<20} {:>10}", "offers", nulls.offers)?;
        writeln!(f, "  {:<20} {:>10}", "ad_events", nulls.ad_events)?;
        writeln!(f, "\ntargets")?;
        if self.targets.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for row in &self.targets {
            writeln!(f, "  {:<20} {:>10}", row.status, row.targets)?;
        }
        if !self.populating.is_empty() {
            writeln!(f, "\npopulates running")?;
            for progress in &self.populating {
                writeln!(
                    f,
                    "  target {:<10} run {:<4} {}",
                    progress.target_id,
                    progress.run.run,
                    progress.describe()
                )?;
            }
        }
        if !self.failed_populates.is_empty() {
            writeln!(
                f,
                "\npopulates that failed for good (target left not_populated; a populate that succeeds clears it)"
            )?;
            for failure in &self.failed_populates {
                writeln!(
                    f,
                    "  target {:<10} at {} (Unix s)  {}",
                    failure.target_id,
                    failure.failed_at,
                    printable_error(&failure.error)
                )?;
            }
        }
        writeln!(
            f,
            "\n{:<18} {:>8} {:>8} {:>8} {:>8} {:>8}  oldest waiting",
            "queue", "waiting", "running", "done", "failed", "killed"
        )?;
        for q in &self.queues {
            writeln!(
                f,
                "{:<18} {:>8} {:>8} {:>8} {:>8} {:>8}  {}{}",
                q.queue,
                q.waiting,
                q.running,
                q.done,
                q.failed,
                q.killed,
                q.oldest_waiting_secs
                    .map(|s| format!("{:.0}s ago", s.max(0.0)))
                    .unwrap_or_else(|| "-".into()),
                if self.paused_queues.contains(&q.queue) {
                    "  PAUSED (snapctl queues resume)"
                } else {
                    ""
                }
            )?;
        }
        writeln!(f, "\nlast runs")?;
        if self.recent_runs.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for run in &self.recent_runs {
            writeln!(
                f,
                "  {:<14} {:<8} attempt {}/{}  {:>9}  {:<20}  {}{}",
                run.queue,
                run.status,
                run.attempts,
                run.max_attempts,
                run.duration_secs
                    .map(|s| format!("{s:.1}s"))
                    .unwrap_or_else(|| "-".into()),
                run.finished_at.as_deref().unwrap_or("running"),
                run.id,
                run.error
                    .as_deref()
                    .map(|e| format!("  error: {}", printable_error(e)))
                    .unwrap_or_default()
            )?;
        }
        Ok(())
    }
}

/// Characters of a job's error `status` shows on its line.
const ERROR_SHOWN_CHARS: usize = 300;

/// `text` safe to print on a terminal, on one line: every control character (an ESC that
/// would clear the screen or set the title, a newline, a carriage return that hides what
/// came before) escaped as Rust writes it (`\u{1b}`, `\n`). The one escaping of every value
/// the CLIs print that came from the database or the command line.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect(),
    )
}

/// A job's error as one safe line ([`printable`]), cut to [`ERROR_SHOWN_CHARS`] with the full
/// length said.
fn printable_error(error: &str) -> String {
    let head: String = error.chars().take(ERROR_SHOWN_CHARS).collect();
    let mut shown = printable(&head).into_owned();
    let total = error.chars().count();
    if total > ERROR_SHOWN_CHARS {
        shown.push_str(&format!(
            "... ({total} characters; `snapctl status --json` has all)"
        ));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::{printable, printable_error};

    #[test]
    fn printable_escapes_every_control_character_and_nothing_else() {
        assert_eq!(
            printable("job 01J\u{1b}]0;owned\u{7}"),
            "job 01J\\u{1b}]0;owned\\u{7}"
        );
        assert_eq!(printable("a\r\nb\u{9b}c"), "a\\r\\nb\\u{9b}c");
        assert!(matches!(
            printable("plain é 7"),
            std::borrow::Cow::Borrowed("plain é 7")
        ));
    }

    #[test]
    fn an_error_is_shown_on_one_safe_line_of_bounded_length() {
        let hostile = format!("boom\u{1b}[2J\nnext{}", "x".repeat(100_000));
        let line = printable_error(&hostile);
        assert!(
            !line.contains('\u{1b}') && !line.contains('\n'),
            "{line:.80}"
        );
        assert!(line.contains("\\u{1b}[2J\\nnext"), "{line:.80}");
        assert!(line.len() < 500, "{} bytes", line.len());
        assert!(line.ends_with("(100013 characters; `snapctl status --json` has all)"));
        assert_eq!(
            printable_error("target 7 does not exist"),
            "target 7 does not exist"
        );
    }
}

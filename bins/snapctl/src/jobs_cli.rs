//! `snapctl jobs ...` and `snapctl queues ...`: arguments and output; the rules live in
//! `jobs::admin`.

use clap::Subcommand;
use jobs::admin::{self, AdminError};
use jobs::status::printable;
use repo::{ActionOutcome, Db, JobChange, JobFilter, JobStatus, QueueJob};
use runtime::BadInput;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Lists jobs, newest first. Example: snapctl jobs list --queue sync_me_file --status killed
    List {
        /// Only this queue (populate_target, populate_chunk, sync_me_file, backfill).
        #[arg(long)]
        queue: Option<String>,
        /// Only this status (pending, queued, running, done, failed, killed).
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        /// Only jobs whose payload names this me_file. Example: --me-file 42
        #[arg(long, value_name = "ID")]
        me_file: Option<i64>,
        /// Only jobs whose payload names this target. Example: --target 7
        #[arg(long, value_name = "ID")]
        target: Option<i64>,
        /// At most this many. Example: --limit 500
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        limit: u64,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows one job: payload, attempts, last error, times. Example: snapctl jobs show 01JD...
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Makes finished jobs (failed, killed, done) due again with all their attempts: the ids
    /// given, or every job of a queue in a status.
    /// Example: snapctl jobs retry --queue sync_me_file --status killed --yes
    Retry {
        /// Job ids. Example: snapctl jobs retry 01JD... 01JE...
        #[arg(required_unless_present = "queue", conflicts_with_all = ["queue", "status"])]
        ids: Vec<String>,
        /// With --status: every job of this queue in that status.
        #[arg(long, requires = "status")]
        queue: Option<String>,
        #[arg(long, requires = "queue", value_parser = parse_status)]
        status: Option<JobStatus>,
        /// Do not ask for confirmation of a bulk retry.
        #[arg(long)]
        yes: bool,
    },
    /// Kills waiting jobs (pending, or failed with a retry ahead): no worker takes them again.
    /// Example: snapctl jobs kill 01JD...
    Kill {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Deletes jobs no worker holds (any status but queued and running), by id.
    /// Example: snapctl jobs delete 01JD...
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Deletes a queue's jobs in a status that finished (or were due) before a given age.
    /// Example: snapctl jobs purge --queue sync_me_file --status done --older-than 7d
    Purge {
        #[arg(long)]
        queue: String,
        #[arg(long, value_parser = parse_status)]
        status: JobStatus,
        /// Age: 90s, 15m, 12h, 7d, 1d12h.
        #[arg(long, value_parser = admin::parse_duration)]
        older_than: Duration,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum QueuesCommand {
    /// Every queue: its backlog, oldest waiting job and whether it is paused.
    /// Example: snapctl queues list --json
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stops every replica taking jobs from a queue (within a second or two); running jobs
    /// finish, pushes still land. Example: snapctl queues pause sync_me_file
    Pause { queue: String },
    /// Lets the replicas take a paused queue's jobs again. Example: snapctl queues resume sync_me_file
    Resume { queue: String },
    /// Sets the workers every replica runs for a queue (each starts or stops workers within
    /// a second or two; a stopped worker finishes its job first; a restart keeps it), or
    /// with --configured lets each run its configured concurrency again.
    /// Example: snapctl queues scale sync_me_file 8
    #[command(group(clap::ArgGroup::new("scale").required(true).args(["workers", "configured"])))]
    Scale {
        queue: String,
        /// Workers per replica, 1 to 64.
        workers: Option<i64>,
        /// Back to `queues.<name>.concurrency` of each replica's settings.
        #[arg(long)]
        configured: bool,
    },
}

pub async fn run_queues(db: &Db, command: QueuesCommand) -> anyhow::Result<()> {
    match command {
        QueuesCommand::List { json } => {
            let queues = admin::queues(db).await.map_err(admin_error)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&queues)?);
                return Ok(());
            }
            println!(
                "{:<16} {:<8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}  OLDEST WAITING",
                "QUEUE", "STATE", "WORKERS", "WAITING", "RUNNING", "DONE", "FAILED", "KILLED"
            );
            for q in &queues {
                let d = &q.depth;
                println!(
                    "{:<16} {:<8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}  {}",
                    d.queue,
                    if q.paused { "paused" } else { "running" },
                    q.workers_set
                        .map_or_else(|| "configured".to_owned(), |n| n.to_string()),
                    d.waiting,
                    d.running,
                    d.done,
                    d.failed,
                    d.killed,
                    d.oldest_waiting_secs
                        .map(|s| format!("{:.0}s ago", s.max(0.0)))
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        QueuesCommand::Pause { queue } => {
            let changed = admin::pause_queue(db, &queue).await.map_err(admin_error)?;
            if changed {
                println!(
                    "paused {queue}: no replica takes its jobs from now on; running jobs finish"
                );
            } else {
                println!("{queue} was already paused");
            }
        }
        QueuesCommand::Scale {
            queue,
            workers,
            configured: _,
        } => {
            let changed = admin::scale_queue(db, &queue, workers)
                .await
                .map_err(admin_error)?;
            match workers {
                Some(n) => println!(
                    "{queue}: every replica runs {n} worker(s) within seconds; a restart keeps it"
                ),
                None if changed => {
                    println!("{queue}: every replica runs its configured workers again")
                }
                None => println!("{queue} already runs its configured workers"),
            }
        }
        QueuesCommand::Resume { queue } => {
            let changed = admin::resume_queue(db, &queue).await.map_err(admin_error)?;
            if changed {
                println!("resumed {queue}");
            } else {
                println!("{queue} was not paused");
            }
        }
    }
    Ok(())
}

fn parse_status(text: &str) -> Result<JobStatus, String> {
    text.parse()
}

/// Exit code 2 for what the operator asked wrongly, 1 for the rest.
fn admin_error(err: AdminError) -> anyhow::Error {
    if err.is_bad_input() {
        BadInput::wrap(err)
    } else {
        err.into()
    }
}

pub async fn run(db: &Db, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List {
            queue,
            status,
            me_file,
            target,
            limit,
            json,
        } => {
            let filter = JobFilter {
                queue,
                status,
                me_file_id: me_file,
                target_id: target,
            };
            let jobs = admin::list(db, &filter, limit).await.map_err(admin_error)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                print_list(&jobs, limit);
            }
        }
        JobsCommand::Show { id, json } => {
            let job = admin::show(db, &id).await.map_err(admin_error)?;
            let attempts = jobs::history::attempts_of(db, &job.id).await?;
            if json {
                let mut shown = serde_json::to_value(&job)?;
                shown["attempts_ended"] = serde_json::to_value(&attempts)?;
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                print_job(&job, &attempts);
            }
        }
        JobsCommand::Retry {
            ids,
            queue: Some(queue),
            status: Some(status),
            yes,
        } => {
            debug_assert!(ids.is_empty());
            admin::require(status, "retry", &JobStatus::RETRYABLE).map_err(admin_error)?;
            let n = admin::count(db, &queue, status, None)
                .await
                .map_err(admin_error)?;
            if n == 0 {
                println!("no {status} job in {queue}: nothing to retry");
                return Ok(());
            }
            confirm(&format!("retry {n} {status} job(s) of {queue}?"), yes)?;
            let filter = JobFilter {
                queue: Some(queue.clone()),
                status: Some(status),
                ..JobFilter::default()
            };
            let retried = admin::change_matching(db, JobChange::Retry, &filter)
                .await
                .map_err(admin_error)?;
            println!("retried {retried} {status} job(s) of {queue}");
        }
        JobsCommand::Retry { ids, .. } => {
            let outcome = admin::change(db, JobChange::Retry, &ids)
                .await
                .map_err(admin_error)?;
            print_outcome("retried", "retry takes Failed, Killed or Done", &outcome)?;
        }
        JobsCommand::Kill { ids } => {
            let outcome = admin::change(db, JobChange::Kill, &ids)
                .await
                .map_err(admin_error)?;
            print_outcome(
                "killed",
                "kill takes Pending or Failed; a job a worker holds finishes",
                &outcome,
            )?;
        }
        JobsCommand::Delete { ids } => {
            let outcome = admin::change(db, JobChange::Delete, &ids)
                .await
                .map_err(admin_error)?;
            print_outcome(
                "deleted",
                "delete takes any status but Queued and Running; a job a worker holds finishes",
                &outcome,
            )?;
        }
        JobsCommand::Purge {
            queue,
            status,
            older_than,
            yes,
        } => {
            admin::require(status, "purge", &JobStatus::DELETABLE).map_err(admin_error)?;
            let n = admin::count(db, &queue, status, Some(older_than))
                .await
                .map_err(admin_error)?;
            if n == 0 {
                println!(
                    "no {status} job of {queue} older than {}: nothing to purge",
                    admin::format_duration(older_than)
                );
                return Ok(());
            }
            confirm(
                &format!(
                    "delete {n} {status} job(s) of {queue} older than {}?",
                    admin::format_duration(older_than)
                ),
                yes,
            )?;
            let purged = admin::purge(db, &queue, status, older_than)
                .await
                .map_err(admin_error)?;
            println!("purged {purged} {status} job(s) of {queue}");
        }
    }
    Ok(())
}

/// Asks `question` on the terminal unless `yes`; refuses when no one can answer.
fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "{question} not confirmed: standard input is not a terminal; add --yes"
        )));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(BadInput::wrap(anyhow::anyhow!(
            "not confirmed: nothing changed"
        )))
    }
}

/// Says what an action did per id; an id it could not act on makes the exit code 2.
fn print_outcome(done: &str, rule: &str, outcome: &ActionOutcome) -> anyhow::Result<()> {
    for id in &outcome.changed {
        println!("{done} {}", printable(id));
    }
    for (id, status) in &outcome.skipped {
        println!("skipped {}: it is {status} ({rule})", printable(id));
    }
    for id in &outcome.not_found {
        println!("not found: {}", printable(id));
    }
    if outcome.skipped.is_empty() && outcome.not_found.is_empty() {
        Ok(())
    } else {
        Err(BadInput::wrap(anyhow::anyhow!(
            "{} of {} job(s) {done}",
            outcome.changed.len(),
            outcome.changed.len() + outcome.skipped.len() + outcome.not_found.len()
        )))
    }
}

/// `text` cut to `max` characters, then made [`printable`] on one line.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        printable(text).into_owned()
    } else {
        let head: String = text.chars().take(max - 3).collect();
        format!("{}...", printable(&head))
    }
}

fn print_list(jobs: &[QueueJob], limit: u64) {
    if jobs.is_empty() {
        println!("no job matches");
        return;
    }
    println!(
        "{:<26}  {:<15}  {:<7}  {:>8}  {:<20}  {:<28}  ERROR",
        "ID", "QUEUE", "STATUS", "ATTEMPTS", "LAST ACTIVITY (UTC)", "PAYLOAD"
    );
    for job in jobs {
        let when = job
            .finished_at
            .as_deref()
            .or(job.started_at.as_deref())
            .or(job.run_at.as_deref())
            .unwrap_or("-");
        println!(
            "{:<26}  {:<15}  {:<7}  {:>8}  {:<20}  {:<28}  {}",
            printable(&job.id),
            printable(&job.queue),
            job.status,
            format!("{}/{}", job.attempts, job.max_attempts),
            printable(when),
            cut(&job.payload, 28),
            cut(job.error.as_deref().unwrap_or(""), 60)
        );
    }
    if jobs.len() as u64 == limit {
        println!("(first {limit}; --limit shows more)");
    }
}

fn print_job(job: &QueueJob, attempts: &[repo::JobAttemptRecord]) {
    let or_dash = |v: &Option<String>| printable(v.as_deref().unwrap_or("-")).into_owned();
    println!("id:          {}", printable(&job.id));
    println!("queue:       {}", printable(&job.queue));
    println!("status:      {}", job.status);
    println!("attempts:    {} of {}", job.attempts, job.max_attempts);
    println!("payload:     {}", printable(&job.payload));
    println!("due:         {}", or_dash(&job.run_at));
    println!("started:     {}", or_dash(&job.started_at));
    println!("finished:    {}", or_dash(&job.finished_at));
    println!("worker:      {}", or_dash(&job.worker));
    println!("last error:  {}", or_dash(&job.error));
    println!("last result: {}", or_dash(&job.last_result));
    // What apalis overwrote: each attempt that did not end the job done (migration 19).
    for attempt in attempts {
        println!(
            "attempt {}:   {} at {} by {}: {}",
            attempt.attempt,
            attempt.status,
            jobs::history::utc(attempt.finished_at),
            printable(attempt.worker.as_deref().unwrap_or("-")),
            printable(&attempt.error().unwrap_or_else(|| "-".into())),
        );
    }
}

//! `backfiller`: the hourly safety net (cron + queue consumer), pushes backfill jobs, or runs
//! a backfill inline with a progress bar. Thin: arguments, settings, then `jobs::backfill`.

use clap::{Args, Parser, Subcommand};
use domain::{BandId, TargetId};
use jobs::backfill::{
    self, BackfillOptions, BackfillProgress, BackfillReport, BackfillScope, ProgressLog,
};
use jobs::backfill_queue::{self, BackfillJob, BackfillerContext, SnapshotBandPopulations};
use runtime::BadInput;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "backfiller",
    version,
    about = "Finds NULL matching-tags snapshots and fills them: populations, then offers and ad_events"
)]
struct Cli {
    #[command(flatten)]
    config: runtime::ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
#[group(multiple = false)]
struct Scope {
    /// Only this band. Example: --band 17
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    band: Option<i64>,
    /// Only the bands of this target. Example: --target 42
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    target: Option<i64>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the cron schedule (backfiller.schedule, hourly by default; each tick once across
    /// replicas), the scheduled audit when audit.schedule is set, and consumes queue `backfill` until SIGTERM or Ctrl-C; /healthz, /readyz
    /// and /metrics on serve.backfiller_http (127.0.0.1:9183).
    /// Example: SNAPLINE_SERVE__BACKFILLER_HTTP=0.0.0.0:9183 backfiller serve
    Serve,
    /// Pushes backfill jobs: without a flag one `backfill_missing_snapshots {}`; --band one
    /// `snapshot_band_populations`; --target one per band of the target; --all one per band
    /// that has NULL populations. Example: backfiller enqueue --all
    Enqueue {
        #[command(flatten)]
        scope: Scope,
        /// One job per band that holds populations with a NULL snapshot.
        #[arg(long, conflicts_with_all = ["band", "target"])]
        all: bool,
    },
    /// Backfills now, in this process, with a progress bar on a terminal (log lines
    /// otherwise), and prints what it fixed. Example: backfiller run --dry-run
    Run {
        #[command(flatten)]
        scope: Scope,
        /// Report what would change (per table, orphans, unfixable) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rows per batch (default: backfiller.batch_size). Example: --batch-size 2000
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        batch_size: Option<u64>,
        /// After the run, validate the NOT NULL guard (`snapctl guard enable`) when no NULL
        /// is left.
        #[arg(long)]
        validate: bool,
        /// Print the report as one JSON object (for scripts) instead of the summary lines.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    runtime::run_main(async move {
        let settings = runtime::load_settings(cli.config)?;
        match cli.command {
            Command::Serve => {
                let schedule = backfill_queue::parse_schedule(&settings.backfiller.schedule)
                    .map_err(BadInput::wrap)?;
                let db =
                    runtime::connect_for_workers(&settings, settings.queues.backfill.concurrency)
                        .await?;
                let options = runtime::worker_options(
                    &settings,
                    backfill_queue::QUEUE,
                    &settings.queues.backfill,
                );
                tracing::info!(worker = %options.name, schedule = %settings.backfiller.schedule, "backfiller serving");
                let audit_schedule = match settings.audit.schedule.trim() {
                    "" => None,
                    schedule => {
                        Some(backfill_queue::parse_schedule(schedule).map_err(BadInput::wrap)?)
                    }
                };
                let ctx = BackfillerContext {
                    db: db.clone(),
                    options: runtime::backfill_options(&settings),
                    replica: options.name.clone(),
                };
                let audit_sample = settings.audit.sample;
                runtime::serve(
                    &settings,
                    &db.clone(),
                    runtime::Service::Backfiller,
                    |stop, health| async move {
                        let cron = backfill_queue::serve_cron(
                            db.clone(),
                            schedule,
                            options.name.clone(),
                            backfill_queue::Scheduled::Backfill,
                            stop.clone().wait(),
                        );
                        let audit_cron = {
                            let (db, replica, stop) =
                                (db.clone(), options.name.clone(), stop.clone());
                            async move {
                                match audit_schedule {
                                    Some(schedule) => {
                                        backfill_queue::serve_cron(
                                            db,
                                            schedule,
                                            replica,
                                            backfill_queue::Scheduled::Audit {
                                                sample: audit_sample,
                                            },
                                            stop.wait(),
                                        )
                                        .await
                                    }
                                    None => Ok(()),
                                }
                            }
                        };
                        let options = options.reporting_to(health);
                        let queue = backfill_queue::serve(ctx, &options, stop.wait());
                        tokio::try_join!(cron, audit_cron, queue).map(|_| ())
                    },
                )
                .await
            }
            Command::Enqueue { scope, all } => {
                let db = runtime::connect(&settings).await?;
                let jobs: Vec<BackfillJob> = if all {
                    band_jobs(
                        backfill::bands_with_null_populations(&db)
                            .await
                            .map_err(runtime::job_error)?,
                    )
                } else if let Some(band) = scope.band {
                    band_jobs(vec![BandId(band)])
                } else if let Some(target) = scope.target {
                    band_jobs(
                        backfill::bands_of_target(&db, TargetId(target))
                            .await
                            .map_err(runtime::job_error)?,
                    )
                } else {
                    vec![BackfillJob::All(Default::default())]
                };
                for job in &jobs {
                    backfill_queue::enqueue(&db, job.clone())
                        .await
                        .map_err(runtime::job_error)?;
                }
                println!(
                    "enqueued {} backfill job(s) on queue {}",
                    jobs.len(),
                    backfill_queue::QUEUE
                );
                Ok(())
            }
            Command::Run {
                scope,
                dry_run,
                batch_size,
                validate,
                json,
            } => {
                let db = runtime::connect(&settings).await?;
                let scope = match (scope.band, scope.target) {
                    (Some(band), _) => BackfillScope::Bands(vec![BandId(band)]),
                    (_, Some(target)) => BackfillScope::Bands(
                        backfill::bands_of_target(&db, TargetId(target))
                            .await
                            .map_err(runtime::job_error)?,
                    ),
                    _ => BackfillScope::All,
                };
                let mut options = runtime::backfill_options(&settings);
                options.dry_run = dry_run;
                options.stop = runtime::stop_on_signal();
                if let Some(batch_size) = batch_size {
                    options.batch_size = batch_size;
                }
                let progress = Progress::new(options.progress_every);
                let report = backfill::backfill(&db, &scope, &options, &|p| progress.update(p))
                    .await
                    .map_err(runtime::job_error)?;
                progress.finish();
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    print_report(&report, &options);
                }
                if validate && !dry_run {
                    let left = db.stats().null_snapshots().await?;
                    if left.total() > 0 {
                        return Err(anyhow::anyhow!(
                            "not validating the guard: {} NULL snapshots are left (unfixable rows need their band back or deleting)",
                            left.total()
                        ));
                    }
                    let validated = db.guard().validate().await?;
                    println!("guard: {validated} constraint(s) validated");
                }
                Ok(())
            }
        }
    })
}

/// The report as summary lines: what changed, then the unfixable rows kept.
fn print_report(report: &BackfillReport, options: &BackfillOptions) {
    println!("{report}");
    for id in &report.unfixable_ids {
        println!("  unfixable (band no longer exists): {id}");
    }
    if report.unfixable > report.unfixable_ids.len() as u64 {
        println!(
            "  ... and {} more (backfiller.unfixable_ids_kept = {})",
            report.unfixable - report.unfixable_ids.len() as u64,
            options.unfixable_ids_kept
        );
    }
}

fn band_jobs(bands: Vec<BandId>) -> Vec<BackfillJob> {
    bands
        .into_iter()
        .map(|b| BackfillJob::Band(SnapshotBandPopulations { band_id: b.0 }))
        .collect()
}

/// An indicatif bar (rows done / total, rate, ETA) on a terminal; a log line every 5 s
/// otherwise.
struct Progress {
    bar: runtime::TerminalBar,
    log: ProgressLog,
}

impl Progress {
    fn new(every: Duration) -> Self {
        Self {
            bar: runtime::TerminalBar::on_terminal(
                "{spinner} backfill [{bar:40}] {pos}/{len} rows  {per_sec}  ETA {eta}",
            ),
            log: ProgressLog::new(every),
        }
    }

    fn update(&self, progress: BackfillProgress) {
        if self.bar.is_shown() {
            self.bar.update(progress.done, progress.total);
        } else {
            self.log.update(progress);
        }
    }

    fn finish(&self) {
        self.bar.finish();
    }
}

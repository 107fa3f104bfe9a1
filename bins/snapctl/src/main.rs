//! `snapctl`: snapline's admin CLI. Thin: parses arguments, loads settings, calls library
//! code. Exit code 0 on success, 2 for bad input or configuration, 1 otherwise.

use clap::{Parser, Subcommand};
use repo::Db;
use runtime::BadInput;
use std::process::ExitCode;
use synth::SeedOptions;

mod demo;
mod jobs_cli;

#[derive(Parser)]
#[command(
    name = "snapctl",
    version,
    about = "snapline admin CLI: demo, status, audit, explain, seed, guard, capture, bridge, doctor, jobs, queues, board"
)]
struct Cli {
    #[command(flatten)]
    config: runtime::ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the whole story on a throwaway embedded SQLite database: migrate, seed, populate
    /// every target, apply a burst of tag changes and sync them through the queue, inject
    /// legacy NULL snapshots and backfill them, verify, report.
    /// Example: snapctl demo --me-files 50000 --changes 2000
    Demo {
        /// Me_files to generate. Example: --me-files 200000
        #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
        me_files: u64,
        /// Tag changes in the burst the demo applies (as the platform would) and syncs.
        /// Example: --changes 10000
        #[arg(long, default_value_t = 2_000)]
        changes: u64,
        /// The demo's database, deleted and recreated on each run.
        /// Example: --database sqlite:///tmp/demo.db
        #[arg(long, default_value = "sqlite://snapline-demo.db")]
        database: String,
    },
    /// The optional NOT NULL guard on the three snapshot tables (PostgreSQL): `enable` adds
    /// `CHECK (matching_tags_snapshot IS NOT NULL) NOT VALID`, so no writer can add a new NULL
    /// while legacy rows remain; `backfiller run --validate` validates it once none is left.
    /// Example: snapctl guard enable
    Guard {
        /// enable: add the constraints; disable: drop them; status: show them.
        /// Example: snapctl guard status
        #[arg(value_enum)]
        action: Switch,
    },
    /// What an operator reads first: NULL snapshots per table, targets by population status,
    /// each queue's backlog and oldest waiting job, the last runs of each job type (state,
    /// attempts, duration, error). Example: snapctl status --json | jq .null_snapshots
    Status {
        /// Print JSON for scripts instead of tables.
        #[arg(long)]
        json: bool,
        /// Last runs shown per queue. Example: --runs 20
        #[arg(long, default_value_t = 5, value_name = "N")]
        runs: u64,
    },
    /// Recomputes the populations of `populated` targets from the current tags and bands and
    /// compares them with what is stored: missing rows, extra rows, rows in the wrong band,
    /// stale and NULL snapshots, NULL snapshots of offers and ad_events. Prints counts per
    /// kind and target with example ids; exit 0 without drift, 1 with. Read-only unless
    /// --fix. Example: snapctl audit --target 12 --json
    Audit {
        /// Audit one target. Example: --target 12
        #[arg(long, conflicts_with = "me_file")]
        target: Option<i64>,
        /// Audit one me_file in every populated target. Example: --me-file 4711
        #[arg(long)]
        me_file: Option<i64>,
        /// Audit this many me_files drawn at random. Example: --sample 10000
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        sample: Option<u64>,
        /// Repair what is found (each drifting me_file synced under the syncer's locks, NULL
        /// copies backfilled), then audit again; exit 0 when nothing is left.
        #[arg(long)]
        fix: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Me_files read per batch (bounds memory). Example: --batch-size 2000
        #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_size: u64,
        /// Example rows shown per kind of drift. Example: --examples 20
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=1_000))]
        examples: u64,
    },
    /// Why a me_file is or is not in each target: every band from the innermost out, every
    /// trait group passed or failed with the tags that matched, the band chosen, the stored
    /// row and snapshot against the computed one as a diff. Read-only.
    /// Example: snapctl explain --me-file 4711 --target 12
    Explain {
        /// The me_file. Example: --me-file 4711
        #[arg(long)]
        me_file: i64,
        /// Only this target. Example: --target 12
        #[arg(long)]
        target: Option<i64>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Change capture (PostgreSQL, opt-in): triggers on the platform's tables that push
    /// `sync_me_file` (tag and me_file writes) and `populate_target` (band, group and trait
    /// edits) inside the writer's own transaction, one per me_file or target however many
    /// rows a statement touches. Example: snapctl capture enable
    Capture {
        /// enable: install (replacing another version's); disable: remove every version's;
        /// status: list what is installed. Example: snapctl capture status
        #[arg(value_enum)]
        action: Switch,
    },
    /// The bridge (PostgreSQL, opt-in): the platform's own Oban jobs for the workers snapline
    /// replaces (settings `bridge.workers`) are taken over as they are inserted: snapline's
    /// job is pushed and the platform's row stored `completed`, so Oban never runs it.
    /// Example: snapctl bridge enable
    Bridge {
        /// enable: install (replacing another version's); disable: remove, the platform's
        /// workers get their jobs back from the next insert on; status: what is bridged and
        /// how many jobs were taken. Example: snapctl bridge status
        #[arg(value_enum)]
        action: Switch,
    },
    /// What switching the platform over needs, checked on its database (PostgreSQL):
    /// migrations, the server's connection and lock limits against the configured replicas,
    /// the service role's rights (with --service-role), indexes, capture and bridge versions,
    /// the platform's own hourly backfill, queue backlog, NULL snapshots. Says what to do for
    /// each miss; exit 0 only when all hold. Example: snapctl doctor --service-role snapline_service
    Doctor {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
        /// The services' role, whose rights are checked. Example: --service-role snapline_service
        #[arg(long)]
        service_role: Option<String>,
        /// Replicas of each service the deployment runs. Example: --replicas 3
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
        replicas: u32,
    },
    /// Writes a deterministic synthetic data set into the configured (empty) database.
    /// Example: DATABASE_URL=postgres://postgres@127.0.0.1/bench snapctl seed --me-files 1000000
    Seed(SeedArgs),
    /// Finds, reads, retries, kills and purges queue jobs (both backends).
    /// Example: snapctl jobs list --status killed
    Jobs {
        #[command(subcommand)]
        action: jobs_cli::JobsCommand,
    },
    /// Serves the web board: queues, NULL snapshots and targets at a glance, refreshing
    /// itself; jobs with filters; one job; targets with their bands. Read-only unless
    /// --allow-actions. Example: snapctl board --listen 127.0.0.1:9180
    Board {
        /// Address to listen on. Example: --listen 0.0.0.0:9180
        #[arg(long, default_value = "127.0.0.1:9180")]
        listen: std::net::SocketAddr,
        /// Retry and kill jobs, pause and resume queues from the pages (each confirmed).
        /// Beyond localhost only with board.user and board.password set.
        #[arg(long)]
        allow_actions: bool,
    },
    /// Lists the queues, pauses and resumes them on every replica.
    /// Example: snapctl queues pause sync_me_file
    Queues {
        #[command(subcommand)]
        action: jobs_cli::QueuesCommand,
    },
}

/// What to do with an optional feature installed in the database.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Switch {
    Enable,
    Disable,
    Status,
}

#[derive(clap::Args)]
struct SeedArgs {
    /// Me_files to generate (ids 1..=N). Example: --me-files 1000000
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    me_files: u64,
    /// Targets: six fixed archetypes first (nested with a bullseye, zip codes, not nested,
    /// an empty trait group, multi-valued, no bands), then generated nested targets.
    /// Example: --targets 100
    #[arg(long, default_value_t = synth::ARCHETYPES)]
    targets: usize,
    /// Share (0 to 1) of each target's members written as legacy rows with NULL snapshots
    /// (populations, offers, ad_events). Example: --legacy-share 1.0 for a backfill benchmark.
    #[arg(long, default_value_t = 0.02)]
    legacy_share: f64,
    /// Random seed: the same seed and options write the same rows. Example: --seed 7
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Me_files generated and written per chunk (bounds memory). Example: --chunk-size 5000
    #[arg(long, default_value_t = 20_000)]
    chunk_size: u64,
    /// Do not write the three offers (and ad_events) on deleted bands that no backfill can
    /// fix. Example: --no-deleted-band-offers
    #[arg(long)]
    no_deleted_band_offers: bool,
}

impl SeedArgs {
    fn options(&self) -> SeedOptions {
        SeedOptions {
            me_files: self.me_files,
            targets: self.targets,
            legacy_share: self.legacy_share,
            seed: self.seed,
            chunk_size: self.chunk_size,
            deleted_band_offers: !self.no_deleted_band_offers,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    runtime::run_main(async move {
        let settings = runtime::load_settings(cli.config)?;
        match cli.command {
            Command::Seed(args) => {
                let db = runtime::connect(&settings).await?;
                seed(&db, &args.options()).await.map(|_| ())
            }
            Command::Jobs { action } => {
                let db = runtime::connect(&settings).await?;
                jobs_cli::run(&db, action).await
            }
            Command::Board {
                listen,
                allow_actions,
            } => {
                let basic_auth = settings.board.basic_auth().map_err(BadInput::wrap)?;
                let options = board::BoardOptions {
                    listen,
                    allow_actions,
                    basic_auth,
                    allowed_hosts: settings.board.allowed_hosts.clone(),
                    backfill_cron: settings.backfiller.schedule.clone(),
                    audit_cron: Some(settings.audit.schedule.trim())
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                };
                let db = runtime::connect(&settings).await?;
                board::serve(db, options, runtime::shutdown_signal())
                    .await
                    .map_err(|e| match e {
                        board::BoardError::Bind { .. }
                        | board::BoardError::ActionsWithoutAuth(_) => BadInput::wrap(e),
                        other => other.into(),
                    })
            }
            Command::Queues { action } => {
                let db = runtime::connect(&settings).await?;
                jobs_cli::run_queues(&db, action).await
            }
            Command::Demo {
                me_files,
                changes,
                database,
            } => demo::run(&settings, me_files, changes, &database).await,
            Command::Status { json, runs } => {
                let db = runtime::connect(&settings).await?;
                let report = jobs::status::status(&db, runs)
                    .await
                    .map_err(runtime::job_error)?;
                print_as(json, &report)?;
                Ok(())
            }
            Command::Audit {
                target,
                me_file,
                sample,
                fix,
                json,
                batch_size,
                examples,
            } => {
                let db = runtime::connect(&settings).await?;
                let scope = match (target, me_file) {
                    (Some(t), _) => jobs::audit::AuditScope::Target(domain::TargetId(t)),
                    (None, Some(m)) => jobs::audit::AuditScope::MeFile(domain::MeFileId(m)),
                    (None, None) => jobs::audit::AuditScope::All,
                };
                let stop = runtime::stop_on_signal();
                let options = jobs::audit::AuditOptions {
                    scope,
                    sample,
                    batch_size,
                    examples: examples as usize,
                    fix,
                    stop,
                };
                let bar = runtime::TerminalBar::on_terminal(
                    "audit [{bar:40}] {pos}/{len} me_files  {per_sec}  ETA {eta}",
                );
                let report = jobs::audit::audit(&db, &options, &|p| {
                    bar.update(p.me_files_done, p.me_files_total)
                })
                .await
                .map_err(runtime::job_error)?;
                bar.finish();
                if scope == jobs::audit::AuditScope::All {
                    jobs::audit::record(&db, "snapctl", &runtime::host_name(), &report)
                        .await
                        .map_err(runtime::job_error)?;
                }
                print_as(json, &report)?;
                let left = report.drift_left();
                if left > 0 {
                    anyhow::bail!("{left} rows of drift");
                }
                Ok(())
            }
            Command::Explain {
                me_file,
                target,
                json,
            } => {
                let db = runtime::connect(&settings).await?;
                let explanation = jobs::explain::explain(
                    &db,
                    domain::MeFileId(me_file),
                    target.map(domain::TargetId),
                )
                .await
                .map_err(runtime::job_error)?;
                print_as(json, &explanation)?;
                Ok(())
            }
            Command::Capture { action } => {
                let db = runtime::connect(&settings).await?;
                let capture = db.capture();
                match action {
                    Switch::Enable => capture.enable().await.map_err(BadInput::wrap)?,
                    Switch::Disable => capture.disable().await.map_err(BadInput::wrap)?,
                    Switch::Status => {}
                }
                let installed = capture.installed().await.map_err(BadInput::wrap)?;
                if installed.is_empty() {
                    println!("capture: off (no trigger installed)");
                }
                for trigger in &installed {
                    let note = if trigger.is_unsafe() {
                        format!(
                            " (version {} is UNSAFE: any login can run its own SQL as the role that enabled it; `snapctl capture enable` replaces it)",
                            trigger.version
                        )
                    } else if trigger.version != repo::CAPTURE_VERSION {
                        " (another version: `snapctl capture enable` replaces it)".into()
                    } else {
                        String::new()
                    };
                    println!("{}: {}{note}", trigger.table, trigger.name);
                }
                if !installed.is_empty() {
                    println!(
                        "capture: on, version {}, {} of {} triggers",
                        repo::CAPTURE_VERSION,
                        installed
                            .iter()
                            .filter(|t| t.version == repo::CAPTURE_VERSION)
                            .count(),
                        repo::CaptureRepo::expected_triggers()
                    );
                }
                let unsafe_triggers = installed.iter().filter(|t| t.is_unsafe()).count();
                if unsafe_triggers > 0 {
                    println!(
                        "capture: UNSAFE: {unsafe_triggers} trigger(s) of a version before {} installed; run `snapctl capture enable` as the migration role now",
                        repo::FIRST_SAFE_CAPTURE_VERSION
                    );
                }
                Ok(())
            }
            Command::Doctor {
                json,
                service_role,
                replicas,
            } => {
                let db = runtime::connect(&settings).await?;
                let hourly = settings
                    .bridge
                    .workers
                    .iter()
                    .find(|(worker, queue)| {
                        queue.as_str() == jobs::queues::BACKFILL
                            && worker.ends_with("BackfillMissingSnapshotsWorker")
                    })
                    .map(|(worker, _)| worker.clone());
                let options = jobs::doctor::DoctorOptions {
                    service_role,
                    replicas,
                    pool_per_process: settings.database.max_connections,
                    concurrency: [
                        settings.queues.populate_target.concurrency as u32,
                        settings.queues.sync_me_file.concurrency as u32,
                        settings.queues.backfill.concurrency as u32,
                    ],
                    me_files_per_transaction: settings.syncer.me_files_per_transaction as u32,
                    hourly_backfill_worker: hourly,
                };
                let checks = jobs::doctor::doctor(&db, &options)
                    .await
                    .map_err(|e| BadInput::wrap(runtime::job_error(e)))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&checks)?);
                } else {
                    print!("{}", jobs::doctor::report(&checks));
                }
                let missed = checks.iter().filter(|c| !c.ok).count();
                if missed > 0 {
                    anyhow::bail!("{missed} check(s) missed: not ready to switch over");
                }
                Ok(())
            }
            Command::Bridge { action } => {
                let db = runtime::connect(&settings).await?;
                let bridge = db.bridge();
                match action {
                    Switch::Enable => bridge
                        .enable(&settings.bridge.workers)
                        .await
                        .map_err(BadInput::wrap)?,
                    Switch::Disable => bridge.disable().await.map_err(BadInput::wrap)?,
                    Switch::Status => {}
                }
                let state = bridge.state().await.map_err(BadInput::wrap)?;
                match state.version {
                    None => println!("bridge: off (the platform's workers run their own jobs)"),
                    Some(version) => {
                        println!("bridge: on, version {version}");
                        for (worker, queue) in &state.workers {
                            println!("  {} -> {queue}", jobs::status::printable(worker));
                        }
                        if version != repo::BRIDGE_VERSION {
                            println!(
                                "  (another version: `snapctl bridge enable` replaces it with version {})",
                                repo::BRIDGE_VERSION
                            );
                        }
                    }
                }
                if state.taken.is_empty() {
                    println!("taken: none in oban_jobs");
                } else {
                    println!("taken (rows still in oban_jobs):");
                    for (worker, n) in &state.taken {
                        println!("  {}: {n}", jobs::status::printable(worker));
                    }
                }
                Ok(())
            }
            Command::Guard { action } => {
                let db = runtime::connect(&settings).await?;
                let guard = db.guard();
                match action {
                    Switch::Enable => guard.enable().await.map_err(BadInput::wrap)?,
                    Switch::Disable => guard.disable().await.map_err(BadInput::wrap)?,
                    Switch::Status => {}
                }
                for state in guard.state().await.map_err(BadInput::wrap)? {
                    println!(
                        "{}: {}",
                        state.table,
                        match (state.present, state.validated) {
                            (false, _) => "no guard",
                            (true, false) => "guarded (NOT VALID: legacy NULLs may remain)",
                            (true, true) => "guarded and validated",
                        }
                    );
                }
                Ok(())
            }
        }
    })
}

/// `value` as pretty JSON (`--json`, for scripts) or as its text for people.
fn print_as(json: bool, value: &(impl serde::Serialize + std::fmt::Display)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{value}");
    }
    Ok(())
}

async fn seed(db: &Db, options: &SeedOptions) -> anyhow::Result<synth::SeedReport> {
    let report = synth::seed(db, options, |done, total| {
        tracing::info!(done, total, "seeding me_files");
    })
    .await
    .map_err(|e| match e {
        synth::SeedError::NotEmpty { .. }
        | synth::SeedError::ForeignSchema { .. }
        | synth::SeedError::Invalid(_) => BadInput::wrap(e),
        other => other.into(),
    })?;
    println!(
        "seeded {} me_files, {} tags, {} targets, {} legacy populations, {} offers, {} ad_events in {:.1}s",
        report.me_files,
        report.me_file_tags,
        report.targets,
        report.legacy_populations,
        report.offers,
        report.ad_events,
        report.elapsed.as_secs_f64()
    );
    Ok(report)
}

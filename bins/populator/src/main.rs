//! `populator`: consumes the `populate_target` and `populate_chunk` queues, pushes onto the
//! first, or runs one populate inline. Thin: arguments, settings, then `jobs::populate_target`.

use clap::{Parser, Subcommand};
use domain::TargetId;
use jobs::populate_target::{self, PopulatorContext};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "populator",
    version,
    about = "Populates whole targets: every member row with its matching-tags snapshot"
)]
struct Cli {
    #[command(flatten)]
    config: runtime::ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consumes `populate_target` and `populate_chunk` jobs until SIGTERM or Ctrl-C
    /// (concurrency per queue from queues.populate_target.concurrency); /healthz, /readyz and /metrics on
    /// serve.populator_http (127.0.0.1:9181). Example: SNAPLINE_PROFILE=production populator serve
    Serve,
    /// Pushes a `populate_target` job. Example: populator enqueue --target 42
    Enqueue {
        /// The target to populate.
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        target: i64,
    },
    /// Populates a target now, in this process, without a queue, and prints what changed.
    /// Example: populator run --target 42
    Run {
        /// The target to populate.
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        target: i64,
        /// Me_files per batch (default: populator.batch_size).
        #[arg(long, value_name = "N")]
        batch_size: Option<u64>,
        /// Chunks populated at once, each on its own connection (default:
        /// populator.chunks_at_once, 1).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=settings::MAX_CHUNKS_AT_ONCE as i64))]
        chunks_at_once: Option<u16>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    runtime::run_main(async move {
        let settings = runtime::load_settings(cli.config)?;
        let db = match cli.command {
            // Workers on two queues: populate_target and populate_chunk.
            Command::Serve => {
                runtime::connect_for_workers(
                    &settings,
                    2 * settings.queues.populate_target.concurrency,
                )
                .await?
            }
            _ => runtime::connect(&settings).await?,
        };
        match cli.command {
            Command::Serve => {
                let ctx = PopulatorContext {
                    db,
                    options: runtime::populate_options(&settings),
                };
                let options = runtime::worker_options(
                    &settings,
                    populate_target::QUEUE,
                    &settings.queues.populate_target,
                );
                tracing::info!(worker = %options.name, concurrency = options.concurrency, "populator serving");
                runtime::serve(
                    &settings,
                    &ctx.db.clone(),
                    runtime::Service::Populator,
                    |stop, health| {
                        let options = options.reporting_to(health);
                        async move { populate_target::serve(ctx, &options, stop.wait()).await }
                    },
                )
                .await
            }
            Command::Enqueue { target } => {
                let pushed = populate_target::enqueue(&db, TargetId(target))
                    .await
                    .map_err(runtime::job_error)?;
                if pushed {
                    println!(
                        "enqueued populate_target for target {target}; target marked populating"
                    );
                } else {
                    println!(
                        "a populate_target for target {target} is already waiting; nothing added"
                    );
                }
                Ok(())
            }
            Command::Run {
                target,
                batch_size,
                chunks_at_once,
            } => {
                let mut options = runtime::populate_options(&settings);
                options.stop = runtime::stop_on_signal();
                if let Some(chunks_at_once) = chunks_at_once {
                    options.chunks_at_once = usize::from(chunks_at_once);
                }
                if let Some(batch_size) = batch_size {
                    options.batch_size = batch_size.max(1);
                }
                let summary = populate_target::populate_target(&db, TargetId(target), &options)
                    .await
                    .map_err(runtime::job_error)?;
                println!("{summary}");
                Ok(())
            }
        }
    })
}

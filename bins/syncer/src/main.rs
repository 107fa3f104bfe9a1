//! `syncer`: consumes the `sync_me_file` queue, pushes onto it, or syncs one me_file inline.
//! Thin: arguments, settings, then `jobs::sync_me_file`.

use clap::{Parser, Subcommand};
use domain::MeFileId;
use jobs::sync_me_file;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "syncer",
    version,
    about = "Keeps one me_file's populations right when it registers or its tags change"
)]
struct Cli {
    #[command(flatten)]
    config: runtime::ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consumes `sync_me_file` jobs until SIGTERM or Ctrl-C (concurrency from
    /// queues.sync_me_file.concurrency); /healthz, /readyz and /metrics on
    /// serve.syncer_http (127.0.0.1:9182).
    /// Example: SNAPLINE_QUEUES__SYNC_ME_FILE__CONCURRENCY=16 syncer serve
    Serve,
    /// Pushes a `sync_me_file` job, unless one for this me_file is still waiting.
    /// Example: syncer enqueue --me-file 1234
    Enqueue {
        /// The me_file whose tags changed.
        #[arg(long = "me-file", value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        me_file: i64,
    },
    /// Syncs a me_file now, in this process, and prints what changed.
    /// Example: syncer run --me-file 1234
    Run {
        /// The me_file to sync.
        #[arg(long = "me-file", value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        me_file: i64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    runtime::run_main(async move {
        let settings = runtime::load_settings(cli.config)?;
        let db = match cli.command {
            Command::Serve => {
                runtime::connect_for_workers(&settings, settings.queues.sync_me_file.concurrency)
                    .await?
            }
            _ => runtime::connect(&settings).await?,
        };
        let ctx = runtime::syncer_context(&settings, db.clone());
        match cli.command {
            Command::Serve => {
                let options = runtime::worker_options(
                    &settings,
                    sync_me_file::QUEUE,
                    &settings.queues.sync_me_file,
                );
                tracing::info!(
                    worker = %options.name,
                    concurrency = options.concurrency,
                    me_files_per_transaction = ctx.me_files_per_transaction,
                    "syncer serving"
                );
                runtime::serve(
                    &settings,
                    &db.clone(),
                    runtime::Service::Syncer,
                    |stop, health| {
                        let options = options.reporting_to(health);
                        async move { sync_me_file::serve(ctx, &options, stop.wait()).await }
                    },
                )
                .await
            }
            Command::Enqueue { me_file } => {
                let pushed = sync_me_file::enqueue(&db, MeFileId(me_file))
                    .await
                    .map_err(runtime::job_error)?;
                if pushed {
                    println!("enqueued sync_me_file for me_file {me_file}");
                } else {
                    println!(
                        "a sync_me_file for me_file {me_file} is already waiting; nothing added"
                    );
                }
                Ok(())
            }
            Command::Run { me_file } => {
                let summary = sync_me_file::sync_me_file(&db, &ctx.cache, MeFileId(me_file))
                    .await
                    .map_err(runtime::job_error)?;
                println!("{summary}");
                Ok(())
            }
        }
    })
}

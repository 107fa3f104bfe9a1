//! `snapctl`: snapline's admin CLI. Thin: parses arguments, loads settings, calls library
//! code. Exit code 0 on success, 2 for bad input or configuration, 1 otherwise.

use anyhow::Context;
use clap::{Parser, Subcommand};
use repo::Db;
use runtime::BadInput;
use settings::Settings;
use std::process::ExitCode;
use std::time::Instant;
use synth::SeedOptions;

#[derive(Parser)]
#[command(name = "snapctl", version, about = "snapline admin CLI: demo, seed")]
struct Cli {
    #[command(flatten)]
    config: runtime::ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the whole story on a throwaway embedded SQLite database: migrate, seed, report.
    /// Example: snapctl demo --me-files 50000
    Demo {
        /// Me_files to generate.
        #[arg(long, default_value_t = 50_000)]
        me_files: u64,
        /// The demo's database, deleted and recreated on each run.
        #[arg(long, default_value = "sqlite://snapline-demo.db")]
        database: String,
    },
    /// The optional NOT NULL guard on the three snapshot tables (PostgreSQL): `enable` adds
    /// `CHECK (matching_tags_snapshot IS NOT NULL) NOT VALID`, so no writer can add a new NULL
    /// while legacy rows remain; `backfiller run --validate` validates it once none is left.
    /// Example: snapctl guard enable
    Guard {
        #[arg(value_enum)]
        action: GuardAction,
    },
    /// Writes a deterministic synthetic data set into the configured (empty) database.
    /// Example: DATABASE_URL=postgres://postgres@127.0.0.1/bench snapctl seed --me-files 1000000
    Seed(SeedArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GuardAction {
    Enable,
    Disable,
    Status,
}

#[derive(clap::Args)]
struct SeedArgs {
    /// Me_files to generate (ids 1..=N).
    #[arg(long, default_value_t = 10_000)]
    me_files: u64,
    /// Targets: six fixed archetypes first (nested with a bullseye, zip codes, not nested,
    /// an empty trait group, multi-valued, no bands), then generated nested targets.
    #[arg(long, default_value_t = synth::ARCHETYPES)]
    targets: usize,
    /// Share (0 to 1) of each target's members written as legacy rows with NULL snapshots
    /// (populations, offers, ad_events). Example: --legacy-share 1.0 for a backfill benchmark.
    #[arg(long, default_value_t = 0.02)]
    legacy_share: f64,
    /// Random seed: the same seed and options write the same rows.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Me_files generated and written per chunk.
    #[arg(long, default_value_t = 20_000)]
    chunk_size: u64,
}

impl SeedArgs {
    fn options(&self) -> SeedOptions {
        SeedOptions {
            me_files: self.me_files,
            targets: self.targets,
            legacy_share: self.legacy_share,
            seed: self.seed,
            chunk_size: self.chunk_size,
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
                seed(&db, &args.options()).await
            }
            Command::Demo { me_files, database } => demo(&settings, me_files, &database).await,
            Command::Guard { action } => {
                let db = runtime::connect(&settings).await?;
                let guard = db.guard();
                match action {
                    GuardAction::Enable => guard.enable().await.map_err(BadInput::wrap)?,
                    GuardAction::Disable => guard.disable().await.map_err(BadInput::wrap)?,
                    GuardAction::Status => {}
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

async fn seed(db: &Db, options: &SeedOptions) -> anyhow::Result<()> {
    let report = synth::seed(db, options, |done, total| {
        tracing::info!(done, total, "seeding me_files");
    })
    .await
    .map_err(|e| match e {
        synth::SeedError::NotEmpty { .. } | synth::SeedError::Invalid(_) => BadInput::wrap(e),
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
    Ok(())
}

async fn demo(settings: &Settings, me_files: u64, database: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(path) = database.strip_prefix("sqlite://") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
    let db = runtime::connect_to(settings, database).await?;
    db.migrate().await.context("applying migrations")?;
    println!("snapline demo on {database}");
    seed(
        &db,
        &SeedOptions {
            me_files,
            ..SeedOptions::default()
        },
    )
    .await?;
    let populate_started = Instant::now();
    let options = runtime::populate_options(settings);
    let (mut members, mut refreshed) = (0, 0);
    for target in db.targets().all().await? {
        let summary = jobs::populate_target::populate_target(&db, target.id, &options)
            .await
            .map_err(runtime::job_error)?;
        members += summary.inserted + summary.moved + summary.refreshed + summary.unchanged;
        refreshed += summary.refreshed;
    }
    let elapsed = populate_started.elapsed().as_secs_f64();
    println!(
        "populated every target: {members} members with snapshots ({refreshed} legacy NULL snapshots filled) in {elapsed:.1}s ({:.0} rows/s)",
        members as f64 / elapsed.max(1e-9)
    );
    let tables = db.stats().tables().await?;
    let nulls = db.stats().null_snapshots().await?;
    println!(
        "tables: {} traits, {} me_files, {} me_file_tags, {} targets, {} bands, {} campaigns",
        tables.traits,
        tables.me_files,
        tables.me_file_tags,
        tables.targets,
        tables.target_bands,
        tables.campaigns
    );
    println!(
        "NULL snapshots: {} target_populations, {} offers, {} ad_events",
        nulls.target_populations, nulls.offers, nulls.ad_events
    );
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    db.close().await;
    Ok(())
}

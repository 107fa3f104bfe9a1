//! `migration up | down [-n N] | status | fresh | refresh | reset`: sea-orm-migration's
//! subcommands over snapline's migrations, database from `DATABASE_URL` (or `-u`). The
//! release pipeline runs `up`.
//!
//! `fresh` drops every table of the schema before migrating: on a database that holds tables
//! snapline did not create (the platform's) it refuses, unless
//! `--drop-tables-snapline-did-not-create` is given. `down`, `reset` and `refresh` only drop
//! what snapline created.

use clap::Parser;
use sea_orm_cli::MigrateSubcommands;
use sea_orm_migration::sea_orm::{ConnectOptions, Database};
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about = "snapline's schema migrations")]
struct Cli {
    /// Show debug messages.
    #[arg(short = 'v', long, global = true)]
    verbose: bool,

    /// Database schema (PostgreSQL; default `public`).
    #[arg(short = 's', long, global = true, env = "DATABASE_SCHEMA")]
    database_schema: Option<String>,

    /// Database URL.
    #[arg(short = 'u', long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,

    /// Let `fresh` drop tables snapline did not create, the platform's included, with all
    /// their rows. Never on a shared database.
    #[arg(long, global = true)]
    drop_tables_snapline_did_not_create: bool,

    /// What sits between this binary and PostgreSQL, as the services' `database.pooler`:
    /// `transaction` (a transaction-mode pooler such as PgBouncer) is refused, since
    /// migrating holds a session advisory lock; give the server's own address instead.
    #[arg(
        long,
        global = true,
        env = "SNAPLINE_DATABASE__POOLER",
        default_value = "none"
    )]
    pooler: String,

    #[command(subcommand)]
    command: Option<MigrateSubcommands>,
}

/// What to do about a URL that reaches PostgreSQL through a transaction-mode pooler.
const THROUGH_A_POOLER: &str = "migrations need a session of their own (the queue tables' setup holds a session advisory lock, and every statement is prepared), which a transaction-mode pooler such as PgBouncer does not give: set DATABASE_URL to PostgreSQL itself, not the pooler, for `migration`";

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.pooler.as_str() {
        "none" => {}
        "transaction" => {
            eprintln!("error: database pooler is \"transaction\": {THROUGH_A_POOLER}");
            return ExitCode::from(2);
        }
        other => {
            eprintln!(
                "error: unknown pooler `{other}` (SNAPLINE_DATABASE__POOLER / --pooler): use none or transaction"
            );
            return ExitCode::from(2);
        }
    }
    let Some(url) = cli.database_url.clone() else {
        eprintln!("error: no database: set DATABASE_URL or pass --database-url");
        return ExitCode::from(2);
    };
    let mut options = ConnectOptions::new(url);
    options.set_schema_search_path(
        cli.database_schema
            .clone()
            .unwrap_or_else(|| "public".into()),
    );
    let db = match Database::connect(options).await {
        Ok(db) => db,
        Err(err) => {
            eprintln!("error: cannot connect to the database: {err}");
            return ExitCode::FAILURE;
        }
    };
    if cli.command == Some(MigrateSubcommands::Fresh) && !cli.drop_tables_snapline_did_not_create {
        match migration::tables_not_created_by_snapline(&db).await {
            Ok(foreign) if foreign.is_empty() => {}
            Ok(foreign) => {
                eprintln!(
                    "error: refusing `fresh`: it drops every table, and these {} were not created by \
                     snapline: {}. Use `down` (drops only what snapline created) or `refresh`; pass \
                     --drop-tables-snapline-did-not-create only on a database you mean to wipe.",
                    foreign.len(),
                    foreign.join(", ")
                );
                return ExitCode::from(2);
            }
            Err(err) => {
                eprintln!("error: cannot list the database's tables: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    match sea_orm_migration::cli::run_migrate(migration::Migrator, &db, cli.command, cli.verbose)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            // What sqlx's named statements meet on a server session another client used.
            if err.to_string().contains("prepared statement \"sqlx_s_") {
                eprintln!("hint: this looks like a transaction-mode pooler: {THROUGH_A_POOLER}");
            }
            ExitCode::FAILURE
        }
    }
}

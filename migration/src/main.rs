//! `migration up | down [-n N] | status | fresh | ...`: the sea-orm-migration CLI over
//! snapline's migrations, database from `DATABASE_URL`. The release pipeline runs `up`.

#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli(migration::Migrator).await;
}

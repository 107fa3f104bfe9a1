//! What the server spends a benchmark phase on, sampled beside it: the statements by total
//! time from `pg_stat_statements` (nested ones, inside triggers and functions, included, when
//! the server loads the extension with `pg_stat_statements.track = all`), and the wait
//! events of the benchmark's own sessions, sampled every 5 ms from `pg_stat_activity`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A running profile of the sessions named `application_name`.
pub(crate) struct ServerProfile {
    pool: sqlx::PgPool,
    statements: bool,
    stop: Arc<AtomicBool>,
    sampler: tokio::task::JoinHandle<BTreeMap<String, u64>>,
}

impl ServerProfile {
    /// Resets the statement statistics (when the extension is there) and starts sampling.
    pub(crate) async fn start(url: &str, application_name: &str) -> anyhow::Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await?;
        let statements = async {
            sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .execute(&pool)
                .await?;
            sqlx::query("SELECT pg_stat_statements_reset()")
                .execute(&pool)
                .await
        }
        .await
        .is_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (pool, stop, name) = (pool.clone(), stop.clone(), application_name.to_owned());
            tokio::spawn(async move {
                let mut waits: BTreeMap<String, u64> = BTreeMap::new();
                while !stop.load(Ordering::Acquire) {
                    let rows: Vec<(String, i64)> = sqlx::query_as(
                        "SELECT COALESCE(wait_event_type || ':' || wait_event, 'on CPU'), COUNT(*) \
                         FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' \
                         GROUP BY 1",
                    )
                    .bind(&name)
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_default();
                    for (event, n) in rows {
                        *waits.entry(event).or_default() += n as u64;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                waits
            })
        };
        Ok(Self {
            pool,
            statements,
            stop,
            sampler,
        })
    }

    /// Stops sampling and prints what was found under `title`.
    pub(crate) async fn finish(self, title: &str) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Release);
        let waits = self.sampler.await?;
        let samples: u64 = waits.values().sum();
        println!(
            "\n{title}: wait events of the writing sessions ({samples} session samples, every 5 ms)\n"
        );
        println!("| wait event | share |");
        println!("|---|---:|");
        let mut by_count: Vec<_> = waits.into_iter().collect();
        by_count.sort_by_key(|e| std::cmp::Reverse(e.1));
        for (event, n) in by_count.iter().take(10) {
            println!(
                "| {event} | {:.1}% |",
                100.0 * *n as f64 / samples.max(1) as f64
            );
        }
        if !self.statements {
            println!("\n(pg_stat_statements is not loaded: no statement times)");
            return Ok(());
        }
        let rows: Vec<(i64, f64, f64, String)> = sqlx::query_as(
            "SELECT calls, total_exec_time, mean_exec_time, \
             left(regexp_replace(query, '\\s+', ' ', 'g'), 150) \
             FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             ORDER BY total_exec_time DESC LIMIT 12",
        )
        .fetch_all(&self.pool)
        .await?;
        println!("\n{title}: statements by total time (pg_stat_statements, nested included)\n");
        println!("| calls | total ms | mean ms | statement |");
        println!("|---:|---:|---:|---|");
        for (calls, total, mean, query) in rows {
            println!(
                "| {calls} | {total:.0} | {mean:.3} | `{}` |",
                query.replace('|', "\\|").replace('`', "'")
            );
        }
        Ok(())
    }
}

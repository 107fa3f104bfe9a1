//! What the PostgreSQL server itself is doing: the benchmarks' view of where time goes.

use crate::{Db, RepoError};
use sea_orm::{FromQueryResult, Value};
use std::collections::BTreeMap;

#[derive(FromQueryResult)]
struct NamedCount {
    name: String,
    count: i64,
}

/// PostgreSQL's own statistics views, read for diagnosis (benchmarks); PostgreSQL only.
pub struct ServerStatsRepo<'a> {
    pub(crate) db: &'a Db,
}

impl ServerStatsRepo<'_> {
    /// What each active client backend of this database (other than this one) is doing now,
    /// as `application_name: wait_event_type:wait_event` (`CPU` for one that is running,
    /// `(unnamed)` for a session without an application name), with how many.
    pub async fn active_waits(&self) -> Result<Vec<(String, i64)>, RepoError> {
        self.require_postgres()?;
        let rows: Vec<NamedCount> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT COALESCE(NULLIF(application_name, ''), '(unnamed)') || ': ' || \
                 COALESCE(wait_event_type || ':' || wait_event, 'CPU') AS name, \
                 COUNT(*) AS count FROM pg_stat_activity \
                 WHERE datname = current_database() AND state = 'active' \
                 AND backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1",
                vec![],
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.name, r.count)).collect())
    }

    /// Cumulative server counters whose change over a run says what else happened meanwhile:
    /// checkpoints and who wrote buffers (`pg_stat_bgwriter`), WAL writes and syncs and
    /// waits for WAL buffers (`pg_stat_wal`), autovacuum and autoanalyze runs on `tables`
    /// (`pg_stat_user_tables`; `jobs` is apalis' queue table), and deadlocks. Lock waits show
    /// in [`Self::active_waits`] (`Lock:...`), which no counter keeps.
    pub async fn counters(&self, tables: &[&str]) -> Result<BTreeMap<String, i64>, RepoError> {
        self.require_postgres()?;
        let rows: Vec<NamedCount> = self
            .db
            .fetch_all(
                self.db.conn(),
                "SELECT name, count FROM ( \
                   SELECT 'checkpoints_timed' AS name, checkpoints_timed AS count FROM pg_stat_bgwriter \
                   UNION ALL SELECT 'checkpoints_req', checkpoints_req FROM pg_stat_bgwriter \
                   UNION ALL SELECT 'buffers_checkpoint', buffers_checkpoint FROM pg_stat_bgwriter \
                   UNION ALL SELECT 'buffers_clean', buffers_clean FROM pg_stat_bgwriter \
                   UNION ALL SELECT 'buffers_backend', buffers_backend FROM pg_stat_bgwriter \
                   UNION ALL SELECT 'wal_records', wal_records FROM pg_stat_wal \
                   UNION ALL SELECT 'wal_fpi', wal_fpi FROM pg_stat_wal \
                   UNION ALL SELECT 'wal_buffers_full', wal_buffers_full FROM pg_stat_wal \
                   UNION ALL SELECT 'wal_write', wal_write FROM pg_stat_wal \
                   UNION ALL SELECT 'wal_sync', wal_sync FROM pg_stat_wal \
                   UNION ALL SELECT 'autovacuum:' || relname, autovacuum_count \
                     FROM pg_stat_user_tables WHERE relname = ANY($1) \
                   UNION ALL SELECT 'autoanalyze:' || relname, autoanalyze_count \
                     FROM pg_stat_user_tables WHERE relname = ANY($1) \
                   UNION ALL SELECT 'deadlocks', deadlocks FROM pg_stat_database \
                     WHERE datname = current_database() \
                 ) c",
                vec![Value::from(
                    tables.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                )],
            )
            .await?;
        Ok(rows.into_iter().map(|r| (r.name, r.count)).collect())
    }

    fn require_postgres(&self) -> Result<(), RepoError> {
        self.db
            .require_postgres("server statistics", "they are PostgreSQL's own views")
    }
}

//! The operational surface of a serving snapline process: the Prometheus recorder behind the
//! jobs' metrics, and a small HTTP listener with `/healthz` (the process is alive),
//! `/readyz` (the workers run and can read their queue table) and `/metrics` (Prometheus text).
//!
//! This crate never runs jobs and never writes SQL: readiness and the gauges read from the
//! database (NULL snapshots, queue backlogs, the last backfill) go through `repo`, the series
//! are named in `jobs::metrics`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use jobs::worker::WorkerHealth;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use repo::Db;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a probe waits for the database before it answers "not ready".
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// What `/metrics` reads from the database (NULL snapshot counts, queue backlogs, the last
/// backfill) is read at most this often, however often it is scraped.
const DATABASE_GAUGES_MAX_AGE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("installing the Prometheus recorder: {0}")]
    Recorder(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot listen on {addr} (set {setting}, or \"\" to turn the listener off): {source}")]
    Bind {
        addr: String,
        setting: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{addr}` in {setting} is not an address such as 127.0.0.1:9181")]
    BadAddress { addr: String, setting: String },
}

/// The process's Prometheus recorder: installed on first call, shared afterwards (tests run
/// several servers in one process).
pub fn prometheus() -> Result<PrometheusHandle, OpsError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(jobs::metrics::JOB_DURATION.into()),
            jobs::metrics::DURATION_BUCKETS,
        )
        .map_err(|e| OpsError::Recorder(e.into()))?
        .install_recorder()
        .map_err(|e| OpsError::Recorder(e.into()))?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

#[derive(Clone)]
struct Probe {
    db: Db,
    workers: WorkerHealth,
    metrics: PrometheusHandle,
    database_gauges_read: Arc<Mutex<Option<Instant>>>,
}

/// The listener of a serving process, bound and ready to [`OpsServer::run`].
pub struct OpsServer {
    listener: tokio::net::TcpListener,
    probe: Probe,
}

impl OpsServer {
    /// Binds `addr` (named `setting` in errors); `None` when `addr` is empty (no listener).
    pub async fn bind(
        addr: &str,
        setting: &str,
        db: Db,
        workers: WorkerHealth,
    ) -> Result<Option<OpsServer>, OpsError> {
        if addr.trim().is_empty() {
            return Ok(None);
        }
        let socket: SocketAddr = addr.parse().map_err(|_| OpsError::BadAddress {
            addr: addr.into(),
            setting: setting.into(),
        })?;
        let listener = tokio::net::TcpListener::bind(socket)
            .await
            .map_err(|source| OpsError::Bind {
                addr: addr.into(),
                setting: setting.into(),
                source,
            })?;
        Ok(Some(OpsServer {
            listener,
            probe: Probe {
                db,
                workers,
                metrics: prometheus()?,
                database_gauges_read: Arc::default(),
            },
        }))
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Answers probes and scrapes until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = axum::Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.probe);
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn readyz(State(probe): State<Probe>) -> (StatusCode, String) {
    if let Err(why) = probe.workers.check() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        );
    }
    // The table every poll reads: a database that answers but lost its queue tables (recreated
    // empty under a running process) is not ready either.
    match tokio::time::timeout(PROBE_TIMEOUT, probe.db.queue_jobs().probe()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(err)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: database: {}\n",
                err.to_string().replace('\n', " ")
            ),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: database did not answer within {PROBE_TIMEOUT:?}\n"),
        ),
    }
}

async fn metrics(State(probe): State<Probe>) -> String {
    refresh_database_gauges(&probe).await;
    let (open, idle, max) = probe.db.pool_connections();
    jobs::metrics::db_pool(open, idle, max);
    jobs::metrics::build_info(env!("CARGO_PKG_VERSION"));
    probe.metrics.render()
}

/// Reads the NULL snapshot counts (three partial-index counts), each queue's backlog and
/// the last successful backfill, unless read recently; on a slow or unreachable database the
/// gauges keep their last value.
async fn refresh_database_gauges(probe: &Probe) {
    {
        let mut read = probe
            .database_gauges_read
            .lock()
            .expect("database gauges lock");
        if read.is_some_and(|at| at.elapsed() < DATABASE_GAUGES_MAX_AGE) {
            return;
        }
        *read = Some(Instant::now());
    }
    let db = &probe.db;
    let read = async {
        jobs::metrics::null_snapshots(&db.stats().null_snapshots().await?);
        jobs::metrics::populate_failures(db.populate_runs().failure_count().await?);
        jobs::audit::record_last_in_metrics(db.audit().last().await?.first());
        for queue in jobs::queues::ALL {
            jobs::metrics::queue_depth(&db.queue_jobs().depth(queue).await?);
        }
        jobs::metrics::backfill_last_success(
            db.queue_jobs()
                .last_done_at(jobs::backfill_queue::QUEUE)
                .await?,
        );
        Ok::<(), repo::RepoError>(())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, read).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "database gauges for /metrics"),
        Err(_) => tracing::warn!("database gauges for /metrics: database too slow"),
    }
}

//! What every `serve` shares around its workers: the HTTP listener (`/healthz`, `/readyz`,
//! `/metrics`), the pruning of finished jobs, the queue pause switches, and a graceful stop on SIGTERM or Ctrl-C that
//! gives running jobs `serve.shutdown_grace_secs` to finish.

use crate::BadInput;
use jobs::JobError;
use jobs::worker::WorkerHealth;
use ops::OpsServer;
use repo::Db;
use settings::Settings;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

/// Which binary serves; names its listener setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Populator,
    Syncer,
    Backfiller,
}

impl Service {
    fn http_setting<'a>(&self, settings: &'a Settings) -> (&'a str, &'static str) {
        match self {
            Service::Populator => (&settings.serve.populator_http, "serve.populator_http"),
            Service::Syncer => (&settings.serve.syncer_http, "serve.syncer_http"),
            Service::Backfiller => (&settings.serve.backfiller_http, "serve.backfiller_http"),
        }
    }
}

/// Completes once the process is asked to stop; clone it for every consumer.
#[derive(Clone, Debug)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}

/// Serves `service`: binds its listener, starts `workers` (handing them the [`Stop`] they
/// must end on and the [`WorkerHealth`] their options report to, which `/readyz` reads), prunes finished jobs, and on SIGTERM or Ctrl-C stops taking jobs and
/// waits up to the grace period for the running ones.
pub async fn serve<W, Fut>(
    settings: &Settings,
    db: &Db,
    service: Service,
    workers: W,
) -> anyhow::Result<()>
where
    W: FnOnce(Stop, WorkerHealth) -> Fut,
    Fut: Future<Output = Result<(), JobError>>,
{
    let (addr, setting) = service.http_setting(settings);
    let health = WorkerHealth::default();
    let http = OpsServer::bind(addr, setting, db.clone(), health.clone())
        .await
        .map_err(BadInput::wrap)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = Stop(stop_rx);

    let http_task = http.map(|server| {
        if let Ok(addr) = server.local_addr() {
            tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
        }
        tokio::spawn(server.run(stop.clone().wait()))
    });
    let prune_task = tokio::spawn(prune_finished_jobs(
        db.clone(),
        Duration::from_secs(settings.serve.job_retention_hours.saturating_mul(3600)),
        Duration::from_secs(settings.serve.prune_interval_secs),
        stop.clone(),
    ));

    // The queue table enforces the pause switches; each replica reports them.
    jobs::pause::report_pauses(db.clone(), stop.clone().wait());
    // Every replica rolls the queues' closed minutes up for the board's charts.
    jobs::history::roll_up_queue_history(db.clone(), stop.clone().wait());
    health.set_running(true);
    let workers = workers(stop.clone(), health.clone());
    tokio::pin!(workers);
    let grace = Duration::from_secs(settings.serve.shutdown_grace_secs);
    let result = tokio::select! {
        result = &mut workers => result.map_err(crate::job_error),
        _ = crate::shutdown_signal() => {
            let _ = stop_tx.send(true);
            match tokio::time::timeout(grace, &mut workers).await {
                Ok(result) => result.map_err(crate::job_error),
                Err(_) => {
                    tracing::warn!(
                        grace_secs = grace.as_secs(),
                        "running jobs did not finish within the grace period: exiting anyway; \
                         their transactions roll back and the queue runs them again"
                    );
                    Ok(())
                }
            }
        }
    };
    health.set_running(false);
    let _ = stop_tx.send(true);
    prune_task.abort();
    if let Some(http) = http_task {
        let _ = http.await;
    }
    result
}

/// Deletes finished jobs older than `retention` every `interval` until `stop`. Several
/// replicas may prune at once: the deletes are idempotent.
async fn prune_finished_jobs(db: Db, retention: Duration, interval: Duration, stop: Stop) {
    let pruning = async {
        loop {
            match db.queue_jobs().prune_finished(retention.as_secs()).await {
                Ok(0) => tracing::debug!("no finished jobs to prune"),
                Ok(deleted) => tracing::info!(
                    deleted,
                    retention_hours = retention.as_secs() / 3600,
                    "pruned finished jobs"
                ),
                Err(err) => {
                    tracing::warn!(error = %err, "pruning finished jobs failed; next try in an interval")
                }
            }
            // The attempts and the per-minute history go with the jobs they describe.
            if let Err(err) = db.queue_history().prune(retention.as_secs()).await {
                tracing::warn!(error = %err, "pruning the queues' history failed; next try in an interval");
            }
            tokio::time::sleep(interval).await;
        }
    };
    tokio::select! {
        _ = pruning => {},
        _ = stop.wait() => {},
    }
}

//! Holding a named lease for the length of a job run.

use crate::JobError;
use repo::Db;
use std::time::{Duration, Instant};

/// A lease held by this run; renew it while working and release it when done.
pub struct HeldLease {
    pub name: String,
    pub owner: String,
    ttl: Duration,
    /// When [`HeldLease::renew_when_due`] last renewed it.
    renewed: std::sync::Mutex<Instant>,
}

/// A name unique to this run, shown as the holder of its leases.
pub fn run_owner() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("{host}:{}:{nanos:x}", std::process::id())
}

impl HeldLease {
    /// Takes `name`, waiting up to `wait` (polling every second) while another run holds it.
    pub async fn acquire(
        db: &Db,
        name: String,
        ttl: Duration,
        wait: Duration,
    ) -> Result<HeldLease, JobError> {
        let owner = run_owner();
        let started = Instant::now();
        let mut announced = false;
        loop {
            if db.leases().try_acquire(&name, &owner, ttl).await? {
                return Ok(HeldLease::held(name, owner, ttl));
            }
            let holder = db.leases().holder(&name).await?;
            let expires_in_secs = holder.as_ref().map(|h| h.expires_in_secs.max(0));
            let holder_name = holder
                .map(|h| h.owner)
                .unwrap_or_else(|| "another run".into());
            if started.elapsed() >= wait {
                return Err(JobError::Busy {
                    what: name,
                    owner: holder_name,
                    waited: started.elapsed(),
                });
            }
            if !announced {
                tracing::warn!(
                    lease = %name,
                    holder = %holder_name,
                    lease_expires_in_secs = expires_in_secs,
                    waiting_at_most_secs = wait.as_secs(),
                    "another run holds this job's lease: waiting until it finishes, or its lease expires if it died"
                );
                announced = true;
            }
            tokio::time::sleep(Duration::from_secs(1).min(wait)).await;
        }
    }

    /// Holds `name` as `owner`, a run that another process started (a populate's chunks
    /// carry their run's owner): renewed if `owner` still holds it, taken again if it is
    /// free or expired; [`JobError::Busy`] when another owner holds it.
    pub async fn resume(
        db: &Db,
        name: String,
        owner: String,
        ttl: Duration,
    ) -> Result<HeldLease, JobError> {
        if db.leases().try_acquire(&name, &owner, ttl).await? {
            return Ok(HeldLease::held(name, owner, ttl));
        }
        let holder = db
            .leases()
            .holder(&name)
            .await?
            .map(|h| h.owner)
            .unwrap_or_else(|| "another run".into());
        Err(JobError::Busy {
            what: name,
            owner: holder,
            waited: Duration::ZERO,
        })
    }

    fn held(name: String, owner: String, ttl: Duration) -> HeldLease {
        HeldLease {
            name,
            owner,
            ttl,
            renewed: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Renews the lease in a statement of its own once a quarter of its ttl has passed since
    /// the last renewal. For a lease that several workers share (a populate's chunks): renewed
    /// inside each batch's transaction, its row lock would make their batches take turns.
    pub async fn renew_when_due(&self, db: &Db) -> Result<(), JobError> {
        let due = {
            let renewed = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
            renewed.elapsed() >= self.ttl / 4
        };
        if !due {
            return Ok(());
        }
        if !db.leases().renew(&self.name, &self.owner, self.ttl).await? {
            return Err(JobError::LeaseLost(self.name.clone()));
        }
        *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }

    pub async fn release(self, db: &Db) {
        if let Err(err) = db.leases().release(&self.name, &self.owner).await {
            // It expires on its own; the next run waits at most the lease's ttl.
            tracing::warn!(lease = %self.name, error = %err, "could not release lease");
        }
    }
}

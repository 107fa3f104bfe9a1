//! Asking a running `run` to stop between batches (Ctrl-C, SIGTERM).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared by a run and whoever may ask it to stop: the run checks it before each batch,
/// stops there (the batches done stay committed) and releases its lease, so the next run
/// starts at once instead of waiting for the lease to expire.
#[derive(Clone, Debug, Default)]
pub struct StopRequest(Arc<AtomicBool>);

impl StopRequest {
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// [`crate::JobError::Interrupted`] when a stop was asked for.
    pub(crate) fn check(&self, what: &str) -> Result<(), crate::JobError> {
        if self.is_requested() {
            Err(crate::JobError::Interrupted(what.to_owned()))
        } else {
            Ok(())
        }
    }
}

//! A write transaction and the repositories that run in it.

use crate::{
    BackfillRepo, BandRepo, Db, EventRepo, LeaseRepo, PopulateRunRepo, PopulationRepo, RepoError,
    SyncRepo, TagRepo, TargetRepo,
};
use sea_orm::DatabaseTransaction;

/// A write transaction begun by [`Db::begin_write`]. Its accessors mirror [`Db`]'s, and
/// every statement of a repository taken from it runs in it: a signature that takes a `Tx`
/// runs in its caller's transaction. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx<'a> {
    pub(crate) db: &'a Db,
    pub(crate) txn: DatabaseTransaction,
}

impl<'a> Tx<'a> {
    /// The database this transaction belongs to.
    pub fn db(&self) -> &'a Db {
        self.db
    }

    pub async fn commit(self) -> Result<(), RepoError> {
        self.txn.commit().await?;
        Ok(())
    }

    pub fn targets(&self) -> TargetRepo<'_, DatabaseTransaction> {
        TargetRepo {
            db: self.db,
            conn: &self.txn,
        }
    }

    pub fn bands(&self) -> BandRepo<'_, DatabaseTransaction> {
        BandRepo {
            db: self.db,
            conn: &self.txn,
        }
    }

    pub fn tags(&self) -> TagRepo<'_, DatabaseTransaction> {
        TagRepo {
            db: self.db,
            conn: &self.txn,
        }
    }

    pub fn populations(&self) -> PopulationRepo<'_, DatabaseTransaction> {
        PopulationRepo {
            db: self.db,
            conn: &self.txn,
        }
    }

    pub fn sync(&self) -> SyncRepo<'_, DatabaseTransaction> {
        SyncRepo {
            db: self.db,
            conn: &self.txn,
        }
    }

    pub fn backfill(&self) -> BackfillRepo<'_, DatabaseTransaction> {
        BackfillRepo {
            db: self.db,
            conn: &self.txn,
        }
    }

    pub fn leases(&self) -> LeaseRepo<'_, DatabaseTransaction> {
        LeaseRepo {
            db: self.db,
            conn: &self.txn,
        }
    }

    pub fn populate_runs(&self) -> PopulateRunRepo<'_, DatabaseTransaction> {
        PopulateRunRepo {
            db: self.db,
            conn: &self.txn,
        }
    }

    pub fn events(&self) -> EventRepo<'_, DatabaseTransaction> {
        EventRepo {
            db: self.db,
            conn: &self.txn,
        }
    }
}

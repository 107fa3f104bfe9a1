use crate::{Db, RepoError};
use sea_orm::{ConnectionTrait, Value};
use std::time::Duration;

/// Named, expiring locks in `snapline_leases`: one holder at a time, taken over once the
/// holder stops renewing (it crashed), on both backends and across processes.
pub struct LeaseRepo<'a> {
    pub(crate) db: &'a Db,
}

/// Who holds a lease and for how much longer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    pub owner: String,
    pub expires_in_secs: i64,
}

impl LeaseRepo<'_> {
    /// Takes `name` for `owner` when it is free, expired or already `owner`'s; returns whether
    /// `owner` now holds it.
    pub async fn try_acquire(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, RepoError> {
        let now = self.db.epoch_now_sql();
        let sql = format!(
            "INSERT INTO snapline_leases (name, owner, expires_at) VALUES ($1, $2, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE snapline_leases.expires_at < {now} OR snapline_leases.owner = excluded.owner"
        );
        let result = self
            .db
            .conn()
            .execute_raw(self.db.statement(sql, lease_values(name, owner, ttl)))
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Extends `owner`'s hold, on `conn` (a batch's own transaction, so renewing costs no
    /// extra commit); `false` when the lease was lost (expired and taken over).
    pub async fn renew<C: ConnectionTrait>(
        &self,
        conn: &C,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, RepoError> {
        let now = self.db.epoch_now_sql();
        let sql = format!(
            "UPDATE snapline_leases SET expires_at = {now} + $3 WHERE name = $1 AND owner = $2"
        );
        let result = conn
            .execute_raw(self.db.statement(sql, lease_values(name, owner, ttl)))
            .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn release(&self, name: &str, owner: &str) -> Result<(), RepoError> {
        self.db
            .conn()
            .execute_raw(self.db.statement(
                "DELETE FROM snapline_leases WHERE name = $1 AND owner = $2",
                vec![Value::from(name), Value::from(owner)],
            ))
            .await?;
        Ok(())
    }

    pub async fn holder(&self, name: &str) -> Result<Option<LeaseHolder>, RepoError> {
        let now = self.db.epoch_now_sql();
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.statement(
                format!("SELECT owner, expires_at - {now} FROM snapline_leases WHERE name = $1"),
                vec![Value::from(name)],
            ))
            .await?;
        row.map(|row| {
            Ok(LeaseHolder {
                owner: row.try_get_by_index(0)?,
                expires_in_secs: row.try_get_by_index(1)?,
            })
        })
        .transpose()
    }
}

fn lease_values(name: &str, owner: &str, ttl: Duration) -> Vec<Value> {
    vec![
        Value::from(name),
        Value::from(owner),
        Value::from(ttl.as_secs().max(1) as i64),
    ]
}

use crate::{Db, RepoError};
use entity::snapline_leases::{Column, Entity};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Value};
use std::time::Duration;

/// Named, expiring locks in `snapline_leases`: one holder at a time, taken over once the
/// holder stops renewing (it crashed), on both backends and across processes.
pub struct LeaseRepo<'a, C = crate::PoolConn> {
    pub(crate) db: &'a Db,
    /// The pool, or the transaction of a [`crate::Tx`].
    pub(crate) conn: &'a C,
}

/// Who holds a lease and for how much longer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    pub owner: String,
    pub expires_in_secs: i64,
}

impl<C: ConnectionTrait> LeaseRepo<'_, C> {
    /// Extends `owner`'s hold, on `conn` (a batch's own transaction, so renewing costs no
    /// extra commit); `false` when the lease was lost (expired and taken over).
    pub async fn renew(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, RepoError> {
        let conn = self.conn;
        let result = Entity::update_many()
            .col_expr(Column::ExpiresAt, self.expiry(ttl))
            .filter(Column::Name.eq(name))
            .filter(Column::Owner.eq(owner))
            .exec(conn)
            .await?;
        Ok(result.rows_affected == 1)
    }

    pub async fn release(&self, name: &str, owner: &str) -> Result<(), RepoError> {
        Entity::delete_many()
            .filter(Column::Name.eq(name))
            .filter(Column::Owner.eq(owner))
            .exec(self.conn)
            .await?;
        Ok(())
    }

    pub async fn holder(&self, name: &str) -> Result<Option<LeaseHolder>, RepoError> {
        let holder: Option<(String, i64)> = Entity::find()
            .select_only()
            .column(Column::Owner)
            .column_as(
                Expr::col(Column::ExpiresAt).sub(Expr::cust(self.db.epoch_now_sql())),
                "expires_in_secs",
            )
            .filter(Column::Name.eq(name))
            .into_tuple()
            .one(self.conn)
            .await?;
        Ok(holder.map(|(owner, expires_in_secs)| LeaseHolder {
            owner,
            expires_in_secs,
        }))
    }

    /// `now + ttl` by the database's clock.
    fn expiry(&self, ttl: Duration) -> Expr {
        Expr::cust(self.db.epoch_now_sql()).add(ttl_secs(ttl))
    }
}

fn lease_values(name: &str, owner: &str, ttl: Duration) -> Vec<Value> {
    vec![
        Value::from(name),
        Value::from(owner),
        Value::from(ttl_secs(ttl)),
    ]
}

/// A lease lives at least a second.
fn ttl_secs(ttl: Duration) -> i64 {
    Ord::max(ttl.as_secs(), 1) as i64
}

impl LeaseRepo<'_, crate::PoolConn> {
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
            .execute(self.db.conn(), sql, lease_values(name, owner, ttl))
            .await?;
        Ok(result == 1)
    }
}

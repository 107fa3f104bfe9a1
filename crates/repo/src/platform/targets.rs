use crate::{Db, RepoError};
use domain::{PopulationStatus, TargetId};
use entity::Id;
use entity::targets;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

/// A target as the jobs see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRow {
    pub id: TargetId,
    pub title: Option<String>,
    /// `None` when the stored text is not one of the four known statuses.
    pub status: Option<PopulationStatus>,
}

/// Reads and status changes of `targets`.
pub struct TargetRepo<'a, C = crate::PoolConn> {
    pub(crate) db: &'a Db,
    /// The pool, or the transaction of a [`crate::Tx`].
    pub(crate) conn: &'a C,
}

impl<C: ConnectionTrait> TargetRepo<'_, C> {
    pub async fn find(&self, target_id: TargetId) -> Result<Option<TargetRow>, RepoError> {
        let model = targets::Entity::find_by_id(Id(target_id.0))
            .one(self.conn)
            .await?;
        Ok(model.map(to_row))
    }

    /// Whether `target_id` exists (read in a populate's batch transaction).
    pub async fn exists(&self, target_id: TargetId) -> Result<bool, RepoError> {
        let conn = self.conn;
        let found = targets::Entity::find_by_id(Id(target_id.0))
            .select_only()
            .column(targets::Column::Id)
            .into_tuple::<Id>()
            .one(conn)
            .await?;
        Ok(found.is_some())
    }

    /// The first `limit` targets (by id) in `status`.
    pub async fn with_status(
        &self,
        status: PopulationStatus,
        limit: u64,
    ) -> Result<Vec<TargetId>, RepoError> {
        let rows: Vec<crate::rows::IdOnly> = self
            .db
            .fetch_all(
                self.conn,
                "SELECT id FROM targets WHERE population_status = $1 ORDER BY id LIMIT $2",
                vec![status.as_str().into(), (limit as i64).into()],
            )
            .await?;
        Ok(rows.into_iter().map(|r| TargetId(r.id.0)).collect())
    }

    pub async fn all(&self) -> Result<Vec<TargetRow>, RepoError> {
        let models = targets::Entity::find()
            .order_by_asc(targets::Column::Id)
            .all(self.conn)
            .await?;
        Ok(models.into_iter().map(to_row).collect())
    }
}

fn to_row(model: targets::Model) -> TargetRow {
    TargetRow {
        id: TargetId(model.id.0),
        title: model.title,
        status: model
            .population_status
            .as_deref()
            .and_then(PopulationStatus::parse),
    }
}

impl<C: ConnectionTrait> TargetRepo<'_, C> {
    /// Sets `population_status`; `populated` also stamps `last_populated_at` (the only two
    /// columns of `targets` snapline writes). Returns whether the target exists.
    pub async fn set_status(
        &self,
        target_id: TargetId,
        status: PopulationStatus,
    ) -> Result<bool, RepoError> {
        let conn = self.conn;
        let mut update = targets::Entity::update_many()
            .col_expr(
                targets::Column::PopulationStatus,
                Expr::value(status.as_str()),
            )
            .filter(targets::Column::Id.eq(Id(target_id.0)));
        if status == PopulationStatus::Populated {
            update = update.col_expr(
                targets::Column::LastPopulatedAt,
                Expr::cust(self.db.timestamp_now_sql()),
            );
        }
        let result = update.exec(conn).await?;
        Ok(result.rows_affected == 1)
    }
}

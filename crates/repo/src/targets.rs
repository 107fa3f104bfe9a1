use crate::{Db, RepoError};
use domain::{PopulationStatus, TargetId};
use entity::targets;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};

/// A target as the jobs see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRow {
    pub id: TargetId,
    pub title: Option<String>,
    /// `None` when the stored text is not one of the four known statuses.
    pub status: Option<PopulationStatus>,
}

/// Reads and status changes of `targets`.
pub struct TargetRepo<'a> {
    pub(crate) db: &'a Db,
}

impl TargetRepo<'_> {
    pub async fn find(&self, target_id: TargetId) -> Result<Option<TargetRow>, RepoError> {
        let model = targets::Entity::find_by_id(target_id.0)
            .one(self.db.conn())
            .await?;
        Ok(model.map(to_row))
    }

    pub async fn all(&self) -> Result<Vec<TargetRow>, RepoError> {
        let models = targets::Entity::find()
            .order_by_asc(targets::Column::Id)
            .all(self.db.conn())
            .await?;
        Ok(models.into_iter().map(to_row).collect())
    }
}

fn to_row(model: targets::Model) -> TargetRow {
    TargetRow {
        id: TargetId(model.id),
        title: model.title,
        status: model
            .population_status
            .as_deref()
            .and_then(PopulationStatus::parse),
    }
}

impl TargetRepo<'_> {
    /// Sets `population_status`; `populated` also stamps `last_populated_at`. Returns whether
    /// the target exists.
    pub async fn set_status(
        &self,
        target_id: TargetId,
        status: PopulationStatus,
    ) -> Result<bool, RepoError> {
        let db = self.db;
        let now = db.timestamp_now_sql();
        let stamp = if status == PopulationStatus::Populated {
            format!(", last_populated_at = {now}")
        } else {
            String::new()
        };
        let result = db
            .conn()
            .execute_raw(db.statement(
                format!(
                    "UPDATE targets SET population_status = $2, updated_at = {now}{stamp} WHERE id = $1"
                ),
                vec![target_id.0.into(), status.as_str().into()],
            ))
            .await?;
        Ok(result.rows_affected() == 1)
    }
}

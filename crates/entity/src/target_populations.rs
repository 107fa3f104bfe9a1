//! `target_populations`: a me_file in a band, with the snapshot of why. Both references are
//! NULLable on the platform: such a row is an orphan snapline counts and leaves alone. snapline
//! owns these rows.
use crate::Id;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "target_populations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: Id,
    pub target_band_id: Option<Id>,
    pub me_file_id: Option<Id>,
    pub matching_tags_snapshot: Option<Json>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

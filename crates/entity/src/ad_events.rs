//! `ad_events`: an event of an offer; copies the offer's snapshot. Every reference is NULLable on
//! the platform.
use crate::Id;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "ad_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: Id,
    pub offer_id: Option<Id>,
    pub me_file_id: Option<Id>,
    pub target_band_id: Option<Id>,
    pub matching_tags_snapshot: Option<Json>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

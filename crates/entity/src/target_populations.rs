//! `target_populations`: A me_file's membership of a band, with the snapshot of why it matched.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "target_populations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub target_band_id: i64,
    pub me_file_id: i64,
    pub matching_tags_snapshot: Option<Json>,
    pub created_at: Option<DateTime>,
    pub updated_at: Option<DateTime>,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! `target_bands`: a band of a target; `target_id` is NULLable on the platform, `is_bullseye` is
//! `"1"` or `"0"`.
use crate::Id;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "target_bands")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: Id,
    pub target_id: Option<Id>,
    pub is_bullseye: String,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

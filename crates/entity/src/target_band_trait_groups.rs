//! `target_band_trait_groups`: a group's membership of a band (AND across groups); both references
//! NULLable on the platform.
use crate::Id;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "target_band_trait_groups")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: Id,
    pub target_band_id: Option<Id>,
    pub trait_group_id: Option<Id>,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

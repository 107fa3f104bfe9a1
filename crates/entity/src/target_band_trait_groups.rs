//! `target_band_trait_groups`: A trait group required by a band.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "target_band_trait_groups")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub target_band_id: i64,
    pub trait_group_id: i64,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! `trait_group_traits`: Membership of a trait in a trait group.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "trait_group_traits")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub trait_group_id: i64,
    pub trait_id: i64,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

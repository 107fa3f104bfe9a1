//! `traits`: A trait: a parent (no `parent_trait_id`) or a child under one.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "traits")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub trait_name: String,
    pub parent_trait_id: Option<i64>,
    pub display_order: Option<i32>,
    pub is_active: Option<bool>,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

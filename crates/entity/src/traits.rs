//! `traits`: a parent trait (no parent) or a child trait under one. Platform: `trait_name`
//! varchar(256) NOT NULL, `display_order` integer NOT NULL (NULL is allowed on a schema snapline
//! created, and sorts last).
use crate::Id;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "traits")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: Id,
    pub trait_name: String,
    pub parent_trait_id: Option<Id>,
    pub display_order: Option<i32>,
    pub is_active: bool,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

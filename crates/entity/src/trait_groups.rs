//! `trait_groups`: a group of traits (OR within a group).
use crate::Id;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "trait_groups")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: Id,
    pub title: Option<String>,
    pub parent_trait_id: Option<Id>,
    pub deactivated_at: Option<DateTime>,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

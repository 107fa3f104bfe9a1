//! `targets`: a marketer's target; `population_status` (varchar(255) NULL, default `not_populated`)
//! is not_populated, populating, populated or failed. snapline writes `population_status` and
//! `last_populated_at`, nothing else.
use crate::Id;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "targets")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: Id,
    pub title: Option<String>,
    pub population_status: Option<String>,
    pub last_populated_at: Option<DateTime>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

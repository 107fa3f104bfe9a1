//! `me_file_tags`: One tag of a me_file: a child trait, with an optional value.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "me_file_tags")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub me_file_id: i64,
    pub trait_id: i64,
    pub tag_value: Option<String>,
    pub added_date: Option<DateTime>,
    pub modified_date: Option<DateTime>,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

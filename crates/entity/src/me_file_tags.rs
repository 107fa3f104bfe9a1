//! `me_file_tags`: a me_file's tag on a child trait; `tag_value` varchar(256) NULL.
use crate::Id;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "me_file_tags")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: Id,
    pub me_file_id: Id,
    pub trait_id: Id,
    pub tag_value: Option<String>,
    pub added_date: DateTime,
    pub modified_date: DateTime,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

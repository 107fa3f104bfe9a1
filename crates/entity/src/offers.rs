//! `offers`: an offer made to a me_file; its snapshot is a copy of the population's and is history.
//! References NOT NULL; the platform's other NOT NULL columns (`media_run_id`, amounts, flags) are
//! never snapline's to write, so they are not named here.
use crate::Id;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "offers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: Id,
    pub campaign_id: Id,
    pub me_file_id: Id,
    pub target_band_id: Id,
    pub matching_tags_snapshot: Option<Json>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

// The platform has no foreign keys between these tables; relations are joins in the repo.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! Row shapes shared by several repositories, decoded by column name (a reordered `SELECT`
//! fails to decode instead of swapping two columns). Shapes used by one repository live
//! beside it. Ids are [`entity::Id`], which reads `integer` and `bigint` columns alike.

use entity::Id;
use sea_orm::FromQueryResult;

/// `SELECT COUNT(*) AS count ...`
#[derive(Debug, FromQueryResult)]
pub(crate) struct Count {
    pub count: i64,
}

/// `SELECT id ...` (or any single id column named `id`).
#[derive(Debug, FromQueryResult)]
pub(crate) struct IdOnly {
    pub id: Id,
}

/// `SELECT me_file_id, band_id ...`: a (me_file, band) pair.
#[derive(Debug, FromQueryResult)]
pub(crate) struct MeFileBand {
    pub me_file_id: Id,
    pub band_id: Id,
}

/// `SELECT me_file_id, id, trait_id, tag_value FROM me_file_tags`.
#[derive(Debug, FromQueryResult)]
pub(crate) struct TagRecord {
    pub me_file_id: Id,
    pub id: Id,
    pub trait_id: Id,
    pub tag_value: Option<String>,
}

impl TagRecord {
    pub fn me_file(&self) -> domain::MeFileId {
        domain::MeFileId(self.me_file_id.0)
    }

    pub fn into_tag(self) -> domain::Tag {
        domain::Tag {
            id: domain::MeFileTagId(self.id.0),
            trait_id: domain::TraitId(self.trait_id.0),
            tag_value: self.tag_value,
        }
    }
}

/// `SELECT status, COUNT(*) AS count ... GROUP BY status`.
#[derive(Debug, FromQueryResult)]
pub(crate) struct StatusCount {
    pub status: String,
    pub count: i64,
}

/// `SELECT 1 AS present ... LIMIT 1`: whether a row exists.
#[derive(Debug, FromQueryResult)]
pub(crate) struct Present {
    #[allow(dead_code)] // read only to decode the row
    pub present: i32,
}

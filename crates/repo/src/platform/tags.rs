use crate::rows::{IdOnly, TagRecord};
use crate::{Db, RepoError};
use domain::{MeFileId, Tag, TraitId};
use sea_orm::ConnectionTrait;
use std::collections::HashMap;

/// Reads of `me_file_tags`, and the platform's own writes to it (which snapline never makes:
/// the demo and tests use them to play the platform).
pub struct TagRepo<'a, C = crate::PoolConn> {
    pub(crate) db: &'a Db,
    /// The pool, or the transaction of a [`crate::Tx`].
    pub(crate) conn: &'a C,
}

impl<C: ConnectionTrait> TagRepo<'_, C> {
    /// The tags of each of `me_file_ids` (one statement), optionally only those on
    /// `only_traits` (the traits a target's bands name). Me_files without tags are absent.
    pub async fn of_me_files(
        &self,
        me_file_ids: &[MeFileId],
        only_traits: Option<&[TraitId]>,
    ) -> Result<HashMap<MeFileId, Vec<Tag>>, RepoError> {
        if me_file_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let db = self.db;
        let ids: Vec<i64> = me_file_ids.iter().map(|m| m.0).collect();
        let mut sql = format!(
            "SELECT me_file_id, id, trait_id, tag_value FROM me_file_tags WHERE {}",
            db.in_id_list("me_file_id", 1)
        );
        let mut values = vec![db.id_list(&ids)];
        if let Some(traits) = only_traits {
            let traits: Vec<i64> = traits.iter().map(|t| t.0).collect();
            sql.push_str(&format!(" AND {}", db.in_id_list("trait_id", 2)));
            values.push(db.id_list(&traits));
        }
        let rows: Vec<TagRecord> = db.fetch_all(self.conn, sql, values).await?;
        Ok(tags_by_me_file(rows))
    }
}

impl<C: ConnectionTrait> TagRepo<'_, C> {
    /// The tags on `traits` of the me_files with id in `(after, up_to]`, by me_file.
    pub async fn in_me_file_range(
        &self,
        after: MeFileId,
        up_to: MeFileId,
        traits: &[TraitId],
    ) -> Result<HashMap<MeFileId, Vec<Tag>>, RepoError> {
        let conn = self.conn;
        if traits.is_empty() {
            return Ok(HashMap::new());
        }
        let db = self.db;
        let traits: Vec<i64> = traits.iter().map(|t| t.0).collect();
        let rows: Vec<TagRecord> = db
            .fetch_all(
                conn,
                tags_in_me_file_range_sql(db),
                vec![
                    sea_orm::Value::from(after.0),
                    sea_orm::Value::from(up_to.0),
                    db.id_list(&traits),
                ],
            )
            .await?;
        Ok(tags_by_me_file(rows))
    }

    /// The next `limit` me_file ids after `after` and at most `up_to`, ascending (keyset
    /// paging over `me_files`).
    pub async fn me_file_ids_after(
        &self,
        after: MeFileId,
        up_to: MeFileId,
        limit: u64,
    ) -> Result<Vec<MeFileId>, RepoError> {
        let conn = self.conn;
        let rows: Vec<IdOnly> = self
            .db
            .fetch_all(
                conn,
                "SELECT id FROM me_files WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
                vec![
                    sea_orm::Value::from(after.0),
                    sea_orm::Value::from(up_to.0),
                    sea_orm::Value::from(limit as i64),
                ],
            )
            .await?;
        Ok(rows.into_iter().map(|row| MeFileId(row.id.0)).collect())
    }
}

impl<C: ConnectionTrait> TagRepo<'_, C> {
    /// The id of the me_file `offset` places after the first me_file beyond `after` (ids
    /// ascending; `offset` 0 is the first); `None` when fewer me_files follow. How a populate
    /// cuts the me_files into chunks of equal size, whatever the gaps between ids.
    pub async fn me_file_id_at(
        &self,
        after: MeFileId,
        offset: u64,
    ) -> Result<Option<MeFileId>, RepoError> {
        let row: Option<IdOnly> = self
            .db
            .fetch_optional(
                self.conn,
                "SELECT id FROM me_files WHERE id > $1 ORDER BY id LIMIT 1 OFFSET $2",
                vec![
                    sea_orm::Value::from(after.0),
                    sea_orm::Value::from(offset as i64),
                ],
            )
            .await?;
        Ok(row.map(|row| MeFileId(row.id.0)))
    }
}

/// The statement of [`TagRepo::in_me_file_range`] (`$1` after, `$2` up to, `$3` the traits
/// as a list parameter), public so that a test can hold its plan to the covering index.
pub fn tags_in_me_file_range_sql(db: &Db) -> String {
    format!(
        "SELECT me_file_id, id, trait_id, tag_value FROM me_file_tags \
         WHERE me_file_id > $1 AND me_file_id <= $2 AND {}",
        db.in_id_list("trait_id", 3)
    )
}

fn tags_by_me_file(rows: Vec<TagRecord>) -> HashMap<MeFileId, Vec<Tag>> {
    let mut by_me_file: HashMap<MeFileId, Vec<Tag>> = HashMap::new();
    for row in rows {
        by_me_file
            .entry(row.me_file())
            .or_default()
            .push(row.into_tag());
    }
    by_me_file
}

/// The platform's writes to `me_file_tags`: snapline itself never changes tags; the demo and
/// tests use these to play the platform, each write on its own.
impl TagRepo<'_, crate::PoolConn> {
    /// Adds a tag (a `None` value is stored as NULL).
    pub async fn platform_add(
        &self,
        me_file: MeFileId,
        trait_id: TraitId,
        tag_value: Option<&str>,
    ) -> Result<(), RepoError> {
        let db = self.db;
        db.execute(
            self.conn,
            "INSERT INTO me_file_tags (me_file_id, trait_id, tag_value) VALUES ($1, $2, $3)",
            vec![
                me_file.0.into(),
                trait_id.0.into(),
                tag_value.map(str::to_owned).into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Sets the value of the me_file's oldest tag; returns whether it had one.
    pub async fn platform_edit_first(
        &self,
        me_file: MeFileId,
        tag_value: &str,
    ) -> Result<bool, RepoError> {
        let db = self.db;
        let result = db
            .execute(
                db.conn(),
                "UPDATE me_file_tags SET tag_value = $1 \
                 WHERE id = (SELECT MIN(id) FROM me_file_tags WHERE me_file_id = $2)",
                vec![tag_value.into(), me_file.0.into()],
            )
            .await?;
        Ok(result > 0)
    }

    /// Deletes the me_file's newest tag; returns whether it had one.
    pub async fn platform_delete_last(&self, me_file: MeFileId) -> Result<bool, RepoError> {
        let db = self.db;
        let result = db
            .execute(
                db.conn(),
                "DELETE FROM me_file_tags \
                 WHERE id = (SELECT MAX(id) FROM me_file_tags WHERE me_file_id = $1)",
                vec![me_file.0.into()],
            )
            .await?;
        Ok(result > 0)
    }
}

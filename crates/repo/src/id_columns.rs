//! Reading id columns whatever their width: `integer` on the platform's database, `bigint`
//! on a schema snapline created (see [`entity::Id`]).

use sea_orm::{DbErr, QueryResult};

pub(crate) trait IdColumns {
    /// The id in column `index` (NULL is an error).
    fn id_at<T: From<i64>>(&self, index: usize) -> Result<T, DbErr>;
    /// The id in column `index`, `None` when NULL (the platform's NULLable references).
    fn opt_id_at<T: From<i64>>(&self, index: usize) -> Result<Option<T>, DbErr>;
}

impl IdColumns for QueryResult {
    fn id_at<T: From<i64>>(&self, index: usize) -> Result<T, DbErr> {
        Ok(T::from(self.try_get_by_index::<entity::Id>(index)?.0))
    }

    fn opt_id_at<T: From<i64>>(&self, index: usize) -> Result<Option<T>, DbErr> {
        Ok(self
            .try_get_by_index::<Option<entity::Id>>(index)?
            .map(|id| T::from(id.0)))
    }
}

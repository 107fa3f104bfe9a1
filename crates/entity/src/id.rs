//! `Id`: the value of an id or reference column of the platform's tables.

use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, ValueType, ValueTypeErr};
use sea_orm::{ColIdx, DbErr, QueryResult, TryFromU64, TryGetError, TryGetable, Value};
use serde::{Deserialize, Serialize};

/// An id column's value. The platform's ids are `integer` (int4); a schema snapline created
/// uses `bigint`. Reading accepts either width. Writing binds a `bigint`: PostgreSQL compares
/// it with an `integer` column across widths (and still uses the column's indexes), and
/// casts it on assignment, refusing one beyond `integer` with "integer out of range".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Id(pub i64);

impl TryGetable for Id {
    fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
        // sea-orm answers `None` here when the PostgreSQL column is not `integer`; then the
        // column is `bigint` (or the row is SQLite's, whose integers are all 64-bit).
        if let Some(narrow) = res.try_get_from_sqlx_postgres::<i32, I>(idx) {
            return narrow.map(|id| Id(id.into()));
        }
        i64::try_get_by(res, idx).map(Id)
    }
}

impl From<Id> for Value {
    fn from(id: Id) -> Self {
        Value::BigInt(Some(id.0))
    }
}

impl ValueType for Id {
    fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
        match v {
            Value::BigInt(Some(id)) => Ok(Id(id)),
            Value::Int(Some(id)) => Ok(Id(id.into())),
            _ => Err(ValueTypeErr),
        }
    }

    fn type_name() -> String {
        "Id".to_owned()
    }

    fn array_type() -> ArrayType {
        ArrayType::BigInt
    }

    fn column_type() -> ColumnType {
        ColumnType::BigInteger
    }
}

impl Nullable for Id {
    fn null() -> Value {
        Value::BigInt(None)
    }
}

impl sea_orm::IntoActiveValue<Id> for Id {
    fn into_active_value(self) -> sea_orm::ActiveValue<Id> {
        sea_orm::ActiveValue::Set(self)
    }
}

impl TryFromU64 for Id {
    fn try_from_u64(n: u64) -> Result<Self, DbErr> {
        <i64 as TryFrom<u64>>::try_from(n)
            .map(Id)
            .map_err(|e| DbErr::Custom(format!("id {n} out of range: {e}")))
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

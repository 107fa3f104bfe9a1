//! Creates schema objects only when missing and remembers which ones snapline created, so
//! that `down` removes exactly those.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

/// A table or an index, with the DDL that creates it on the current backend.
pub struct SchemaObject {
    pub kind: Kind,
    pub name: &'static str,
    pub create_sql: String,
}

#[derive(Clone, Copy)]
pub enum Kind {
    Table,
    Index,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Table => "table",
            Kind::Index => "index",
        }
    }
}

const LEDGER: &str = "snapline_schema_objects";

pub async fn ensure_ledger(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS {LEDGER} (kind TEXT NOT NULL, name TEXT NOT NULL, \
             PRIMARY KEY (kind, name))"
        ))
        .await
        .map(|_| ())
}

/// Drops the ledger once it records nothing (the last `down`).
pub async fn drop_ledger_if_empty(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    let backend = manager.get_database_backend();
    let row = conn
        .query_one_raw(Statement::from_string(
            backend,
            format!("SELECT COUNT(*) AS n FROM {LEDGER}"),
        ))
        .await?;
    let left: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
    if left == 0 {
        conn.execute_unprepared(&format!("DROP TABLE IF EXISTS {LEDGER}"))
            .await?;
    }
    Ok(())
}

async fn exists(manager: &SchemaManager<'_>, name: &str) -> Result<bool, DbErr> {
    let backend = manager.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT to_regclass($1) IS NOT NULL AS present",
        _ => "SELECT COUNT(*) > 0 AS present FROM sqlite_master WHERE name = $1",
    };
    let row = manager
        .get_connection()
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [name.into()]))
        .await?
        .ok_or_else(|| DbErr::Custom(format!("existence check for {name} returned no row")))?;
    row.try_get("", "present")
}

/// Creates each missing object and records it in the ledger.
pub async fn create_missing(
    manager: &SchemaManager<'_>,
    objects: &[SchemaObject],
) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let conn = manager.get_connection();
    for object in objects {
        if exists(manager, object.name).await? {
            continue;
        }
        conn.execute_unprepared(&object.create_sql).await?;
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("INSERT INTO {LEDGER} (kind, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
            [object.kind.as_str().into(), object.name.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Drops, in reverse order, each object the ledger says snapline created.
pub async fn drop_created(
    manager: &SchemaManager<'_>,
    objects: &[SchemaObject],
) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let conn = manager.get_connection();
    for object in objects.iter().rev() {
        let recorded = conn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!("SELECT 1 AS one FROM {LEDGER} WHERE kind = $1 AND name = $2"),
                [object.kind.as_str().into(), object.name.into()],
            ))
            .await?
            .is_some();
        if !recorded {
            continue;
        }
        let kind = match object.kind {
            Kind::Table => "TABLE",
            Kind::Index => "INDEX",
        };
        conn.execute_unprepared(&format!("DROP {kind} IF EXISTS {}", object.name))
            .await?;
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            format!("DELETE FROM {LEDGER} WHERE kind = $1 AND name = $2"),
            [object.kind.as_str().into(), object.name.into()],
        ))
        .await?;
    }
    Ok(())
}

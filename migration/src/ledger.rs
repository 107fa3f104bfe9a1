//! Creates schema objects only when missing and remembers which ones snapline created, so
//! that `down` removes exactly those.
//!
//! A table is missing when no relation has its name. An index is missing when no index of
//! the same table, method, key columns, predicate and uniqueness exists under any name
//! (PostgreSQL; SQLite, where the platform never runs, goes by name): the platform's
//! database already has most of them under Ecto's names, and a second copy would cost every
//! write on its largest tables.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

/// A table, with the DDL that creates it on the current backend.
pub struct TableSpec {
    pub name: &'static str,
    pub create_sql: String,
}

/// How an index is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Btree,
    Gin,
    Hash,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Btree => "btree",
            Method::Gin => "gin",
            Method::Hash => "hash",
        }
    }
}

/// An index by what it is, not what it is called.
#[derive(Clone, Debug)]
pub struct IndexSpec {
    /// The name snapline gives it when it builds it.
    pub name: &'static str,
    /// The table, schema-qualified when not in the search path (`apalis.jobs`).
    pub table: &'static str,
    pub method: Method,
    /// Key columns or expressions, in order.
    pub columns: &'static [&'static str],
    /// Columns carried in the index but not part of its key (`INCLUDE`), so that a query
    /// reading only these and the key columns never visits the table (an index-only scan).
    /// SQLite has no `INCLUDE`: there they are trailing key columns, which covers the same.
    pub include: &'static [&'static str],
    /// The partial index's `WHERE` condition.
    pub predicate: Option<&'static str>,
    pub unique: bool,
}

impl IndexSpec {
    pub const fn btree(
        name: &'static str,
        table: &'static str,
        columns: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            table,
            method: Method::Btree,
            columns,
            include: &[],
            predicate: None,
            unique: false,
        }
    }

    pub const fn include(mut self, include: &'static [&'static str]) -> Self {
        self.include = include;
        self
    }

    pub const fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    pub const fn predicate(mut self, predicate: &'static str) -> Self {
        self.predicate = Some(predicate);
        self
    }

    pub const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// The name as `DROP INDEX` and the ledger know it (schema-qualified like its table).
    pub fn qualified_name(&self) -> String {
        match self.table.split_once('.') {
            Some((schema, _)) => format!("{schema}.{}", self.name),
            None => self.name.to_owned(),
        }
    }

    fn create_sql(&self, backend: DbBackend, build: IndexBuild) -> String {
        let unique = if self.unique { "UNIQUE " } else { "" };
        let concurrently = if build == IndexBuild::Concurrently && backend == DbBackend::Postgres {
            "CONCURRENTLY "
        } else {
            ""
        };
        let using = match (backend, self.method) {
            (DbBackend::Postgres, method) if method != Method::Btree => {
                format!(" USING {}", method.as_str())
            }
            _ => String::new(),
        };
        let predicate = self
            .predicate
            .map(|p| format!(" WHERE {p}"))
            .unwrap_or_default();
        let (key, include) = match (backend, self.include.is_empty()) {
            (_, true) => (self.columns.join(", "), String::new()),
            (DbBackend::Postgres, false) => (
                self.columns.join(", "),
                format!(" INCLUDE ({})", self.include.join(", ")),
            ),
            (_, false) => (
                self.columns
                    .iter()
                    .chain(self.include)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", "),
                String::new(),
            ),
        };
        format!(
            "CREATE {unique}INDEX {concurrently}IF NOT EXISTS {} ON {}{using} ({key}){include}{predicate}",
            self.name, self.table,
        )
    }
}

/// What a migration creates.
pub enum SchemaObject {
    Table(TableSpec),
    Index(IndexSpec),
}

impl SchemaObject {
    fn kind(&self) -> &'static str {
        match self {
            SchemaObject::Table(_) => "table",
            SchemaObject::Index(_) => "index",
        }
    }

    fn ledger_name(&self) -> String {
        match self {
            SchemaObject::Table(table) => table.name.to_owned(),
            SchemaObject::Index(index) => index.qualified_name(),
        }
    }
}

/// Whether missing indexes are built inside the migration's transaction (blocking writes to
/// the table while they build) or with `CREATE INDEX CONCURRENTLY` (PostgreSQL; writers go
/// on, the build takes longer and runs outside any transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexBuild {
    Plain,
    Concurrently,
}

/// The environment variable that chooses [`IndexBuild::Concurrently`].
pub const CONCURRENTLY_VAR: &str = "SNAPLINE_CREATE_INDEXES_CONCURRENTLY";

impl IndexBuild {
    /// From [`CONCURRENTLY_VAR`]: `true`/`1`/`yes` builds concurrently.
    pub fn from_env() -> Self {
        match std::env::var(CONCURRENTLY_VAR).map(|v| v.trim().to_ascii_lowercase()) {
            Ok(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => IndexBuild::Concurrently,
            _ => IndexBuild::Plain,
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

/// The tables the ledger says snapline created (none when there is no ledger).
pub async fn recorded_tables(
    db: &sea_orm_migration::sea_orm::DatabaseConnection,
) -> Result<Vec<String>, DbErr> {
    use sea_orm_migration::sea_orm::ConnectionTrait;
    let backend = db.get_database_backend();
    let exists = match backend {
        DbBackend::Postgres => format!("SELECT to_regclass('{LEDGER}') IS NOT NULL AS present"),
        _ => format!("SELECT COUNT(*) > 0 AS present FROM sqlite_master WHERE name = '{LEDGER}'"),
    };
    let present: bool = db
        .query_one_raw(Statement::from_string(backend, exists))
        .await?
        .map(|r| r.try_get("", "present"))
        .transpose()?
        .unwrap_or(false);
    if !present {
        return Ok(Vec::new());
    }
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            format!("SELECT name FROM {LEDGER} WHERE kind = 'table'"),
        ))
        .await?;
    rows.iter().map(|r| r.try_get("", "name")).collect()
}

async fn relation_exists(manager: &SchemaManager<'_>, name: &str) -> Result<bool, DbErr> {
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

/// Predicates compared as PostgreSQL prints them back, give or take parentheses, spacing,
/// case and `::text` casts on literals.
fn normalized_predicate(predicate: &str) -> String {
    predicate
        .to_ascii_lowercase()
        .replace("::text", "")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '(' && *c != ')')
        .collect()
}

/// The name of a valid index equivalent to `spec` (same table, method, key columns,
/// predicate and uniqueness, and at least its included columns), whatever it is called;
/// `None` when there is none.
pub async fn equivalent_index(
    manager: &SchemaManager<'_>,
    spec: &IndexSpec,
) -> Result<Option<String>, DbErr> {
    let backend = manager.get_database_backend();
    if backend != DbBackend::Postgres {
        return Ok(relation_exists(manager, spec.name)
            .await?
            .then(|| spec.name.to_owned()));
    }
    let columns: Vec<String> = spec.columns.iter().map(|c| (*c).to_owned()).collect();
    let include: Vec<String> = spec.include.iter().map(|c| (*c).to_owned()).collect();
    let rows = manager
        .get_connection()
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            "SELECT c.relname::text AS name, \
                    COALESCE(pg_get_expr(i.indpred, i.indrelid, true), '') AS predicate \
             FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_am am ON am.oid = c.relam \
             WHERE i.indrelid = to_regclass($1) AND am.amname = $2 AND i.indisunique = $3 \
               AND i.indisvalid AND i.indnkeyatts = $4 \
               AND ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) \
                         FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k) = $5::text[] \
               AND $6::text[] <@ ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) \
                         FROM generate_series(i.indnkeyatts + 1, i.indnatts) AS k) \
             ORDER BY c.relname",
            [
                spec.table.into(),
                spec.method.as_str().into(),
                spec.unique.into(),
                (spec.columns.len() as i32).into(),
                columns.into(),
                include.into(),
            ],
        ))
        .await?;
    let wanted = normalized_predicate(spec.predicate.unwrap_or(""));
    for row in rows {
        let name: String = row.try_get("", "name")?;
        let predicate: String = row.try_get("", "predicate")?;
        if normalized_predicate(&predicate) == wanted {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

async fn record(manager: &SchemaManager<'_>, object: &SchemaObject) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_raw(Statement::from_sql_and_values(
            manager.get_database_backend(),
            format!("INSERT INTO {LEDGER} (kind, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
            [object.kind().into(), object.ledger_name().into()],
        ))
        .await
        .map(|_| ())
}

/// Creates each missing object and records it in the ledger; an object found (an index
/// under another name included) is left as it is and not recorded.
pub async fn create_missing(
    manager: &SchemaManager<'_>,
    objects: &[SchemaObject],
    build: IndexBuild,
) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let conn = manager.get_connection();
    for object in objects {
        match object {
            SchemaObject::Table(table) => {
                if relation_exists(manager, table.name).await? {
                    continue;
                }
                conn.execute_unprepared(&table.create_sql).await?;
                record(manager, object).await?;
            }
            SchemaObject::Index(index) => {
                if let Some(existing) = equivalent_index(manager, index).await? {
                    if existing != index.name {
                        tracing::info!(
                            index = index.name,
                            existing,
                            table = index.table,
                            "an equivalent index exists: kept, nothing built"
                        );
                    }
                    continue;
                }
                let qualified = index.qualified_name();
                if backend == DbBackend::Postgres && relation_exists(manager, &qualified).await? {
                    if build == IndexBuild::Concurrently
                        && invalid_index(manager, &qualified).await?
                    {
                        // Left behind by an interrupted concurrent build: never usable.
                        conn.execute_unprepared(&format!(
                            "DROP INDEX CONCURRENTLY IF EXISTS {qualified}"
                        ))
                        .await?;
                    } else {
                        return Err(DbErr::Migration(format!(
                            "an index named {qualified} exists but is not the index snapline needs \
                             ({}); rename or drop it, then run the migration again",
                            index.create_sql(backend, IndexBuild::Plain)
                        )));
                    }
                }
                // Recorded first: a concurrent build is not atomic with the ledger, and
                // `down` drops a recorded index only if it exists.
                record(manager, object).await?;
                conn.execute_unprepared(&index.create_sql(backend, build))
                    .await?;
            }
        }
    }
    Ok(())
}

async fn invalid_index(manager: &SchemaManager<'_>, qualified: &str) -> Result<bool, DbErr> {
    let row = manager
        .get_connection()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT NOT indisvalid AS invalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            [qualified.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<bool>("", "invalid"))
        .transpose()?
        .unwrap_or(false))
}

/// A migration's `up`: the ledger, then each missing object of `objects`.
pub async fn up(
    manager: &SchemaManager<'_>,
    objects: &[SchemaObject],
    build: IndexBuild,
) -> Result<(), DbErr> {
    ensure_ledger(manager).await?;
    create_missing(manager, objects, build).await
}

/// A migration's `down`: drops what of `objects` snapline created.
pub async fn down(manager: &SchemaManager<'_>, objects: &[SchemaObject]) -> Result<(), DbErr> {
    ensure_ledger(manager).await?;
    drop_created(manager, objects).await
}

/// Drops, in reverse order, each object the ledger says snapline created.
pub async fn drop_created(
    manager: &SchemaManager<'_>,
    objects: &[SchemaObject],
) -> Result<(), DbErr> {
    for object in objects.iter().rev() {
        drop_if_created(manager, object, IndexBuild::Plain).await?;
    }
    Ok(())
}

/// Drops `object` and forgets it if the ledger says snapline created it (an object the
/// platform made is never dropped); whether it was. An index is dropped with
/// `DROP INDEX CONCURRENTLY` when `build` says so (PostgreSQL, outside a transaction), so
/// that the platform's writers never wait on it.
pub async fn drop_if_created(
    manager: &SchemaManager<'_>,
    object: &SchemaObject,
    build: IndexBuild,
) -> Result<bool, DbErr> {
    let backend = manager.get_database_backend();
    let conn = manager.get_connection();
    let name = object.ledger_name();
    let recorded = conn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            format!("SELECT 1 AS one FROM {LEDGER} WHERE kind = $1 AND name = $2"),
            [object.kind().into(), name.clone().into()],
        ))
        .await?
        .is_some();
    if !recorded {
        return Ok(false);
    }
    let kind = match object {
        SchemaObject::Table(_) => "TABLE",
        SchemaObject::Index(_)
            if build == IndexBuild::Concurrently && backend == DbBackend::Postgres =>
        {
            "INDEX CONCURRENTLY"
        }
        SchemaObject::Index(_) => "INDEX",
    };
    conn.execute_unprepared(&format!("DROP {kind} IF EXISTS {name}"))
        .await?;
    conn.execute_raw(Statement::from_sql_and_values(
        backend,
        format!("DELETE FROM {LEDGER} WHERE kind = $1 AND name = $2"),
        [object.kind().into(), name.into()],
    ))
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_compare_as_postgresql_prints_them() {
        assert_eq!(
            normalized_predicate("(matching_tags_snapshot IS NULL)"),
            normalized_predicate("matching_tags_snapshot IS NULL")
        );
        assert_eq!(
            normalized_predicate("((status = 'Running'::text) OR (status = 'Queued'::text))"),
            normalized_predicate("status = 'Running' OR status = 'Queued'")
        );
        assert_ne!(
            normalized_predicate("(matching_tags_snapshot IS NOT NULL)"),
            normalized_predicate("matching_tags_snapshot IS NULL")
        );
    }

    #[test]
    fn concurrent_builds_are_postgresql_only_and_named_as_snapline_names_them() {
        let spec = IndexSpec::btree(
            "offers_null_snapshot_idx",
            "offers",
            &["me_file_id", "target_band_id"],
        )
        .predicate("matching_tags_snapshot IS NULL");
        assert_eq!(
            spec.create_sql(DbBackend::Postgres, IndexBuild::Concurrently),
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS offers_null_snapshot_idx ON offers \
             (me_file_id, target_band_id) WHERE matching_tags_snapshot IS NULL"
        );
        assert_eq!(
            spec.create_sql(DbBackend::Sqlite, IndexBuild::Concurrently),
            "CREATE INDEX IF NOT EXISTS offers_null_snapshot_idx ON offers \
             (me_file_id, target_band_id) WHERE matching_tags_snapshot IS NULL"
        );
        let covering = IndexSpec::btree("t_idx", "t", &["a", "b"]).include(&["c", "d"]);
        assert_eq!(
            covering.create_sql(DbBackend::Postgres, IndexBuild::Plain),
            "CREATE INDEX IF NOT EXISTS t_idx ON t (a, b) INCLUDE (c, d)"
        );
        assert_eq!(
            covering.create_sql(DbBackend::Sqlite, IndexBuild::Plain),
            "CREATE INDEX IF NOT EXISTS t_idx ON t (a, b, c, d)"
        );
        let gin = IndexSpec::btree("x", "apalis.jobs", &["job"]).method(Method::Hash);
        assert_eq!(gin.qualified_name(), "apalis.x");
    }
}

use crate::batch::push_json_string;
use crate::{Backend, Db, RepoError};
use sea_orm::{ConnectionTrait, Value};
use std::fmt::Write;

/// One value of a bulk-loaded row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
    /// JSON text, stored as jsonb on PostgreSQL and as text on SQLite.
    Json(String),
}

/// Rows for one table, all with the same columns.
#[derive(Clone, Debug)]
pub struct TableRows {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    pub rows: Vec<Vec<Cell>>,
}

impl TableRows {
    pub fn new(table: &'static str, columns: &'static [&'static str]) -> Self {
        Self {
            table,
            columns,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }
}

/// Bulk writes for data sets (seeding, fixtures): `COPY ... FROM STDIN` on PostgreSQL, one
/// `INSERT ... SELECT FROM json_each` per chunk on SQLite. Rows carry explicit ids.
pub struct BulkLoader<'a> {
    pub(crate) db: &'a Db,
}

/// SQLite binds at most a few MB comfortably in one JSON parameter; larger sets are chunked.
const SQLITE_CHUNK_ROWS: usize = 20_000;

impl BulkLoader<'_> {
    /// Inserts every row of `rows`; returns how many were written.
    pub async fn insert(&self, rows: &TableRows) -> Result<u64, RepoError> {
        if rows.rows.is_empty() {
            return Ok(0);
        }
        match self.db.backend() {
            Backend::Postgres => self.copy_postgres(rows).await,
            Backend::Sqlite => {
                let mut written = 0;
                for chunk in rows.rows.chunks(SQLITE_CHUNK_ROWS) {
                    written += self.insert_sqlite(rows, chunk).await?;
                }
                Ok(written)
            }
        }
    }

    async fn copy_postgres(&self, rows: &TableRows) -> Result<u64, RepoError> {
        let pool = self.db.pg_pool().expect("PostgreSQL backend has a pg pool");
        let mut csv = String::with_capacity(rows.rows.len() * 32);
        for row in &rows.rows {
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    csv.push(',');
                }
                match cell {
                    Cell::Null => {}
                    Cell::Int(v) => {
                        let _ = write!(csv, "{v}");
                    }
                    Cell::Bool(v) => csv.push_str(if *v { "t" } else { "f" }),
                    Cell::Text(text) | Cell::Json(text) => {
                        csv.push('"');
                        csv.push_str(&text.replace('"', "\"\""));
                        csv.push('"');
                    }
                }
            }
            csv.push('\n');
        }
        // Committed before it returns, also through a transaction-mode pooler (see
        // `PoolConn`): the next table's rows may refer to these.
        let mut txn = pool.begin().await?;
        let mut copy = txn
            .copy_in_raw(&format!(
                "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
                rows.table,
                rows.columns.join(", ")
            ))
            .await?;
        copy.send(csv.into_bytes()).await?;
        let written = copy.finish().await?;
        txn.commit().await?;
        Ok(written)
    }

    async fn insert_sqlite(&self, rows: &TableRows, chunk: &[Vec<Cell>]) -> Result<u64, RepoError> {
        let mut json = String::with_capacity(chunk.len() * 32);
        json.push('[');
        for (r, row) in chunk.iter().enumerate() {
            if r > 0 {
                json.push(',');
            }
            json.push('[');
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                match cell {
                    Cell::Null => json.push_str("null"),
                    Cell::Int(v) => {
                        let _ = write!(json, "{v}");
                    }
                    Cell::Bool(v) => json.push_str(if *v { "1" } else { "0" }),
                    Cell::Text(text) | Cell::Json(text) => push_json_string(&mut json, text),
                }
            }
            json.push(']');
        }
        json.push(']');
        let extract: Vec<String> = (0..rows.columns.len())
            .map(|i| format!("value ->> {i}"))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) SELECT {} FROM json_each($1)",
            rows.table,
            rows.columns.join(", "),
            extract.join(", ")
        );
        let result = self
            .db
            .execute(self.db.conn(), sql, vec![Value::from(json)])
            .await?;
        Ok(result)
    }

    /// After loading rows with explicit ids, moves each table's id sequence past its
    /// largest id so later inserts by other writers do not collide (PostgreSQL only).
    pub async fn reset_id_sequences(&self, tables: &[&str]) -> Result<(), RepoError> {
        if self.db.backend() != Backend::Postgres {
            return Ok(());
        }
        for table in tables {
            self.db
                .conn()
                .execute_unprepared(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     GREATEST((SELECT MAX(id) FROM {table}), 1))"
                ))
                .await?;
        }
        Ok(())
    }

    /// Flushes dirty pages (PostgreSQL `CHECKPOINT`), so a timed run that follows does not
    /// pay for the writes of the one before.
    pub async fn checkpoint(&self) -> Result<(), RepoError> {
        if self.db.backend() == Backend::Postgres {
            self.db.conn().execute_unprepared("CHECKPOINT").await?;
        }
        Ok(())
    }

    /// What autovacuum does after a large load on the platform's database: planner
    /// statistics, and on PostgreSQL the visibility map too (`VACUUM (ANALYZE)`), without which
    /// every index-only read (the populate's tags, the me_file ids) visits the table.
    /// Through a transaction-mode pooler every statement runs in a transaction, where
    /// `VACUUM` cannot: statistics only.
    pub async fn vacuum_analyze(&self) -> Result<(), RepoError> {
        let sql = match (self.db.backend(), self.db.pooler()) {
            (Backend::Postgres, crate::Pooler::None) => "VACUUM (ANALYZE)",
            (Backend::Postgres, crate::Pooler::Transaction) | (Backend::Sqlite, _) => "ANALYZE",
        };
        self.db.conn().execute_unprepared(sql).await?;
        Ok(())
    }
}

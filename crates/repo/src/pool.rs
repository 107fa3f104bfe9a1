//! The pool as the repositories use it outside a transaction.

use crate::db::Pooler;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, Statement,
    TransactionTrait,
};

/// snapline's pool: each statement run on it outside a transaction is a transaction of its
/// own, committed before the statement returns, as with any pool, also through a
/// transaction-mode pooler.
///
/// Through such a pooler every checkout of a connection runs inside one transaction (see
/// [`Pooler::Transaction`]), whose `COMMIT` sqlx sends when the connection goes back to the
/// pool, in a task of its own: a statement would return before it is committed, and the
/// next statement of the same caller, on another connection, might not see it. So there
/// each statement runs in an explicit transaction, committed before it returns.
#[derive(Clone, Debug)]
pub struct PoolConn {
    inner: DatabaseConnection,
    pooler: Pooler,
}

impl PoolConn {
    pub(crate) fn new(inner: DatabaseConnection, pooler: Pooler) -> Self {
        Self { inner, pooler }
    }

    /// What sits between this pool and PostgreSQL.
    pub fn pooler(&self) -> Pooler {
        self.pooler
    }

    /// The sea-orm connection itself (for sea-orm-migration, which takes no other).
    pub fn inner(&self) -> &DatabaseConnection {
        &self.inner
    }
}

impl std::ops::Deref for PoolConn {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        &self.inner
    }
}

/// `$conn.inner.$call` in a transaction of its own: committed before it returns, rolled
/// back (the transaction dropped) on an error.
macro_rules! in_own_transaction {
    ($conn:expr, $method:ident($arg:expr)) => {{
        let txn = $conn.inner.begin().await?;
        let result = txn.$method($arg).await?;
        txn.commit().await?;
        Ok(result)
    }};
}

#[async_trait::async_trait]
impl ConnectionTrait for PoolConn {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self.pooler {
            Pooler::None => self.inner.execute_raw(stmt).await,
            Pooler::Transaction => {
                in_own_transaction!(self, execute_raw(stmt))
            }
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self.pooler {
            Pooler::None => self.inner.execute_unprepared(sql).await,
            Pooler::Transaction => {
                in_own_transaction!(self, execute_unprepared(sql))
            }
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self.pooler {
            Pooler::None => self.inner.query_one_raw(stmt).await,
            Pooler::Transaction => {
                in_own_transaction!(self, query_one_raw(stmt))
            }
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self.pooler {
            Pooler::None => self.inner.query_all_raw(stmt).await,
            Pooler::Transaction => {
                in_own_transaction!(self, query_all_raw(stmt))
            }
        }
    }
}

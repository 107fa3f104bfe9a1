use crate::{Db, RepoError};
use sea_orm::{ConnectionTrait, Value};

const TABLES: [&str; 3] = ["target_populations", "offers", "ad_events"];

/// The optional NOT NULL guard: `CHECK (matching_tags_snapshot IS NOT NULL) NOT VALID` on the
/// three snapshot tables, so no writer can add a new NULL while legacy rows remain, validated
/// once none is left. PostgreSQL only.
pub struct GuardRepo<'a> {
    pub(crate) db: &'a Db,
}

/// The guard's state on one table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GuardState {
    pub table: &'static str,
    pub present: bool,
    pub validated: bool,
}

#[derive(sea_orm::FromQueryResult)]
struct ConstraintRow {
    convalidated: bool,
}

fn constraint(table: &str) -> String {
    format!("{table}_snapshot_not_null")
}

impl GuardRepo<'_> {
    pub async fn state(&self) -> Result<Vec<GuardState>, RepoError> {
        self.require_postgres()?;
        let mut states = Vec::new();
        for table in TABLES {
            let row: Option<ConstraintRow> = self
                .db
                .fetch_optional(
                    self.db.conn(),
                    "SELECT convalidated FROM pg_constraint WHERE conname = $1",
                    vec![Value::from(constraint(table))],
                )
                .await?;
            let validated = row.map(|r| r.convalidated);
            states.push(GuardState {
                table,
                present: validated.is_some(),
                validated: validated.unwrap_or(false),
            });
        }
        Ok(states)
    }

    /// Adds the constraints that are missing (`NOT VALID`: existing rows are not checked).
    pub async fn enable(&self) -> Result<(), RepoError> {
        for state in self.state().await? {
            if !state.present {
                self.db
                    .conn()
                    .execute_unprepared(&format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {name} \
                         CHECK (matching_tags_snapshot IS NOT NULL) NOT VALID",
                        table = state.table,
                        name = constraint(state.table)
                    ))
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn disable(&self) -> Result<(), RepoError> {
        self.require_postgres()?;
        for table in TABLES {
            self.db
                .conn()
                .execute_unprepared(&format!(
                    "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
                    constraint(table)
                ))
                .await?;
        }
        Ok(())
    }

    /// Validates the guard's constraints (fails while a NULL is left); returns how many were
    /// validated.
    pub async fn validate(&self) -> Result<usize, RepoError> {
        let mut validated = 0;
        for state in self.state().await? {
            if state.present && !state.validated {
                self.db
                    .conn()
                    .execute_unprepared(&format!(
                        "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                        state.table,
                        constraint(state.table)
                    ))
                    .await?;
                validated += 1;
            }
        }
        Ok(validated)
    }

    fn require_postgres(&self) -> Result<(), RepoError> {
        self.db.require_postgres(
            "the NOT NULL guard",
            "SQLite cannot add a CHECK constraint to an existing table",
        )
    }
}

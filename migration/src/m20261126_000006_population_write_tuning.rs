//! Storage settings for `target_populations`, which the syncer rewrites a few rows at a time
//! all day (PostgreSQL only). They go on the GIN index that exists, whatever its name (the
//! platform's is `target_populations_matching_tags_snapshot_index`), and on the table; the
//! values they replace are kept in `snapline_schema_settings`, and `down` puts them back.
//!
//! - A 64 kB pending list (PostgreSQL's minimum, from 4 MB) for the GIN index on its
//!   snapshots. New GIN entries go to the pending list, and the write that fills it moves the
//!   whole list into the index before it commits: with 4 MB that fell on one sync in a few
//!   thousand and took it 200-380 ms; with 64 kB it comes sixty times as often and costs
//!   20-40 ms. The populator's bulk writes measured the same with either.
//! - Autovacuum after 2% of the rows changed, not 20%. No snapshot rewrite can be a HOT
//!   update (the snapshot is indexed), so each leaves a dead row version and dead index
//!   entries that every later read of the me_file's rows walks; at 20% of 28M rows, 5.5M of
//!   them pile up between vacuums. With 1.6M the syncer's throughput had fallen from about
//!   1,200 to 835 syncs/s; a vacuum brought it back.

use crate::ledger::{self, IndexBuild, SchemaObject, TableSpec};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

const SETTINGS: &str = "snapline_schema_settings";

fn settings_table() -> SchemaObject {
    SchemaObject::Table(TableSpec {
        name: SETTINGS,
        // previous: the relation's value before snapline set it, NULL when it had none
        create_sql: format!(
            "CREATE TABLE IF NOT EXISTS {SETTINGS} (relation TEXT NOT NULL, setting TEXT NOT NULL, \
             previous TEXT, PRIMARY KEY (relation, setting))"
        ),
    })
}

/// (relation, its kind for ALTER, setting, value) for the relations as they exist now.
async fn tuned(
    manager: &SchemaManager<'_>,
) -> Result<Vec<(String, &'static str, &'static str, &'static str)>, DbErr> {
    let mut settings = Vec::new();
    let gin = &crate::m20261124_000002_snapshot_indexes::GIN_INDEXES[0];
    if let Some(index) = ledger::equivalent_index(manager, gin).await? {
        settings.push((index, "INDEX", "gin_pending_list_limit", "64"));
    }
    settings.push((
        "target_populations".to_owned(),
        "TABLE",
        "autovacuum_vacuum_scale_factor",
        "0.02",
    ));
    Ok(settings)
}

/// The relation's current value of `setting` (`None` when not set on it).
async fn current(
    manager: &SchemaManager<'_>,
    relation: &str,
    setting: &str,
) -> Result<Option<String>, DbErr> {
    let row = manager
        .get_connection()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT (SELECT substr(o, length($2) + 2) FROM unnest(c.reloptions) AS o \
                     WHERE o LIKE $2 || '=%') AS value \
             FROM pg_class c WHERE c.oid = to_regclass($1)",
            [relation.into(), setting.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<String>>("", "value"))
        .transpose()?
        .flatten())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(()); // SQLite has neither setting
        }
        ledger::up(manager, &[settings_table()], IndexBuild::Plain).await?;
        let conn = manager.get_connection();
        for (relation, kind, setting, value) in tuned(manager).await? {
            let previous = current(manager, &relation, setting).await?;
            conn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "INSERT INTO {SETTINGS} (relation, setting, previous) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING"
                ),
                [relation.clone().into(), setting.into(), previous.into()],
            ))
            .await?;
            conn.execute_unprepared(&format!(
                "ALTER {kind} {relation} SET ({setting} = {value})"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let conn = manager.get_connection();
        let recorded = conn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT to_regclass('{SETTINGS}') IS NOT NULL AS present"),
            ))
            .await?
            .map(|r| r.try_get::<bool>("", "present"))
            .transpose()?
            .unwrap_or(false);
        let mut restore = Vec::new();
        if recorded {
            // What up replaced, on the relations it set them on (a relation dropped since
            // took its settings with it).
            let rows = conn
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!(
                        "SELECT s.relation, s.setting, s.previous, \
                         CASE c.relkind WHEN 'i' THEN 'INDEX' ELSE 'TABLE' END AS kind \
                         FROM {SETTINGS} s JOIN pg_class c ON c.oid = to_regclass(s.relation)"
                    ),
                ))
                .await?;
            for row in rows {
                let relation: String = row.try_get("", "relation")?;
                let setting: String = row.try_get("", "setting")?;
                let kind: String = row.try_get("", "kind")?;
                restore.push((
                    kind,
                    relation,
                    setting,
                    row.try_get::<Option<String>>("", "previous")?,
                ));
            }
        } else {
            // Tuned by an earlier snapline that kept no record: back to the server default.
            for (relation, kind, setting, _) in tuned(manager).await? {
                restore.push((kind.to_owned(), relation, setting.to_owned(), None));
            }
        }
        for (kind, relation, setting, previous) in restore {
            let sql = match previous {
                Some(value) => format!("ALTER {kind} {relation} SET ({setting} = {value})"),
                None => format!("ALTER {kind} {relation} RESET ({setting})"),
            };
            conn.execute_unprepared(&sql).await?;
        }
        ledger::down(manager, &[settings_table()]).await
    }
}

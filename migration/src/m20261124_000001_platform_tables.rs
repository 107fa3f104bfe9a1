//! The platform tables of DESIGN section 1, created only where missing. No foreign keys:
//! the platform has none, and snapline copes with orphan rows instead.

use crate::ledger::{self, IndexBuild, SchemaObject, TableSpec};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Column types, rendered per backend.
#[derive(Clone, Copy)]
enum Col {
    Id,
    BigInt,
    BigIntNull,
    Text,
    TextNull,
    TextDefault(&'static str),
    IntNull,
    BoolDefaultTrue,
    JsonNull,
    CreatedNow,
    StampNull,
}

impl Col {
    fn sql(self, backend: DbBackend) -> String {
        let pg = backend == DbBackend::Postgres;
        match self {
            Col::Id if pg => "BIGSERIAL PRIMARY KEY".into(),
            Col::Id => "INTEGER PRIMARY KEY".into(),
            Col::BigInt if pg => "BIGINT NOT NULL".into(),
            Col::BigInt => "INTEGER NOT NULL".into(),
            Col::BigIntNull if pg => "BIGINT".into(),
            Col::BigIntNull => "INTEGER".into(),
            Col::Text => "TEXT NOT NULL".into(),
            Col::TextNull => "TEXT".into(),
            Col::TextDefault(value) => format!("TEXT NOT NULL DEFAULT '{value}'"),
            Col::IntNull => "INTEGER".into(),
            Col::BoolDefaultTrue => "BOOLEAN NOT NULL DEFAULT TRUE".into(),
            Col::JsonNull if pg => "JSONB".into(),
            Col::JsonNull => "TEXT".into(),
            Col::CreatedNow if pg => "TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc')".into(),
            Col::CreatedNow => "TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP".into(),
            Col::StampNull => "TIMESTAMP".into(),
        }
    }
}

const TABLES: &[(&str, &[(&str, Col)])] = &[
    (
        "traits",
        &[
            ("id", Col::Id),
            ("trait_name", Col::Text),
            ("parent_trait_id", Col::BigIntNull),
            ("display_order", Col::IntNull),
            ("is_active", Col::BoolDefaultTrue),
        ],
    ),
    (
        "me_files",
        &[
            ("id", Col::Id),
            ("display_name", Col::TextNull),
            ("created_at", Col::CreatedNow),
            ("updated_at", Col::CreatedNow),
        ],
    ),
    (
        "me_file_tags",
        &[
            ("id", Col::Id),
            ("me_file_id", Col::BigInt),
            ("trait_id", Col::BigInt),
            ("tag_value", Col::TextNull),
            ("added_date", Col::CreatedNow),
            ("modified_date", Col::CreatedNow),
        ],
    ),
    (
        "targets",
        &[
            ("id", Col::Id),
            ("title", Col::TextNull),
            ("population_status", Col::TextDefault("not_populated")),
            ("last_populated_at", Col::StampNull),
            ("created_at", Col::CreatedNow),
            ("updated_at", Col::CreatedNow),
        ],
    ),
    (
        "target_bands",
        &[
            ("id", Col::Id),
            ("target_id", Col::BigInt),
            ("is_bullseye", Col::TextDefault("0")),
            ("created_at", Col::CreatedNow),
            ("updated_at", Col::CreatedNow),
        ],
    ),
    (
        "trait_groups",
        &[
            ("id", Col::Id),
            ("title", Col::TextNull),
            ("parent_trait_id", Col::BigIntNull),
            ("deactivated_at", Col::StampNull),
        ],
    ),
    (
        "trait_group_traits",
        &[
            ("id", Col::Id),
            ("trait_group_id", Col::BigInt),
            ("trait_id", Col::BigInt),
        ],
    ),
    (
        "target_band_trait_groups",
        &[
            ("id", Col::Id),
            ("target_band_id", Col::BigInt),
            ("trait_group_id", Col::BigInt),
        ],
    ),
    (
        "campaigns",
        &[
            ("id", Col::Id),
            ("target_id", Col::BigInt),
            ("title", Col::TextNull),
            ("deactivated_at", Col::StampNull),
        ],
    ),
    // References NULLable as on the platform: such a row is an orphan the jobs count and
    // leave alone.
    (
        "target_populations",
        &[
            ("id", Col::Id),
            ("target_band_id", Col::BigIntNull),
            ("me_file_id", Col::BigIntNull),
            ("matching_tags_snapshot", Col::JsonNull),
            ("created_at", Col::CreatedNow),
            ("updated_at", Col::CreatedNow),
        ],
    ),
    (
        "offers",
        &[
            ("id", Col::Id),
            ("campaign_id", Col::BigInt),
            ("me_file_id", Col::BigInt),
            ("target_band_id", Col::BigInt),
            ("matching_tags_snapshot", Col::JsonNull),
            ("created_at", Col::CreatedNow),
            ("updated_at", Col::CreatedNow),
        ],
    ),
    (
        "ad_events",
        &[
            ("id", Col::Id),
            ("offer_id", Col::BigIntNull),
            ("me_file_id", Col::BigIntNull),
            ("target_band_id", Col::BigIntNull),
            ("matching_tags_snapshot", Col::JsonNull),
            ("created_at", Col::CreatedNow),
            ("updated_at", Col::CreatedNow),
        ],
    ),
];

fn objects(backend: DbBackend) -> Vec<SchemaObject> {
    TABLES
        .iter()
        .map(|(name, columns)| {
            let columns: Vec<String> = columns
                .iter()
                .map(|(column, col)| format!("{column} {}", col.sql(backend)))
                .collect();
            SchemaObject::Table(TableSpec {
                name,
                create_sql: format!("CREATE TABLE IF NOT EXISTS {name} ({})", columns.join(", ")),
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::up(
            manager,
            &objects(manager.get_database_backend()),
            IndexBuild::Plain,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::down(manager, &objects(manager.get_database_backend())).await?;
        ledger::drop_ledger_if_empty(manager).await
    }
}

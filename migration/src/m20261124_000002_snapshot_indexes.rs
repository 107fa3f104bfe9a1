//! The indexes of DESIGN section 1: the three partial NULL-snapshot indexes the backfiller
//! probes, GIN on the snapshots (PostgreSQL only), the (band, me_file) uniqueness of
//! populations, and the indexes behind the jobs' hot queries.

use crate::ledger::{self, Kind, SchemaObject};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (name, definition after `ON`), on both backends.
const INDEXES: &[(&str, &str)] = &[
    (
        "target_populations_null_snapshot_idx",
        "target_populations (id) WHERE matching_tags_snapshot IS NULL",
    ),
    (
        "offers_null_snapshot_idx",
        "offers (me_file_id, target_band_id) WHERE matching_tags_snapshot IS NULL",
    ),
    (
        "ad_events_null_snapshot_idx",
        "ad_events (me_file_id, target_band_id) WHERE matching_tags_snapshot IS NULL",
    ),
    // A me_file's rows, for the syncer and for propagating snapshots to offers.
    (
        "target_populations_me_file_idx",
        "target_populations (me_file_id, target_band_id)",
    ),
    // Which me_files carry a trait (candidate me_files of a band), and a me_file's tags.
    (
        "me_file_tags_trait_me_file_idx",
        "me_file_tags (trait_id, me_file_id)",
    ),
    (
        "me_file_tags_me_file_idx",
        "me_file_tags (me_file_id, trait_id)",
    ),
    ("target_bands_target_idx", "target_bands (target_id)"),
    (
        "target_band_trait_groups_band_idx",
        "target_band_trait_groups (target_band_id, trait_group_id)",
    ),
    (
        "trait_group_traits_group_idx",
        "trait_group_traits (trait_group_id, trait_id)",
    ),
    ("traits_parent_idx", "traits (parent_trait_id)"),
    ("campaigns_target_idx", "campaigns (target_id)"),
    (
        "offers_me_file_band_idx",
        "offers (me_file_id, target_band_id)",
    ),
];

const UNIQUE_INDEXES: &[(&str, &str)] = &[(
    "target_populations_band_me_file_key",
    "target_populations (target_band_id, me_file_id)",
)];

// Named as PostgreSQL names an unnamed `CREATE INDEX ON t USING gin (matching_tags_snapshot)`,
// which is how the platform created them, so an existing one is recognised and kept.
const GIN_INDEXES: &[(&str, &str)] = &[
    (
        "target_populations_matching_tags_snapshot_idx",
        "target_populations",
    ),
    ("offers_matching_tags_snapshot_idx", "offers"),
    ("ad_events_matching_tags_snapshot_idx", "ad_events"),
];

fn objects(backend: DbBackend) -> Vec<SchemaObject> {
    let index = |name: &'static str, sql: String| SchemaObject {
        kind: Kind::Index,
        name,
        create_sql: sql,
    };
    let mut objects: Vec<SchemaObject> = UNIQUE_INDEXES
        .iter()
        .map(|(name, on)| {
            index(
                name,
                format!("CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {on}"),
            )
        })
        .collect();
    objects.extend(
        INDEXES
            .iter()
            .map(|(name, on)| index(name, format!("CREATE INDEX IF NOT EXISTS {name} ON {on}"))),
    );
    if backend == DbBackend::Postgres {
        objects.extend(GIN_INDEXES.iter().map(|(name, table)| {
            index(
                name,
                format!(
                    "CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (matching_tags_snapshot)"
                ),
            )
        }));
    }
    objects
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::ensure_ledger(manager).await?;
        ledger::create_missing(manager, &objects(manager.get_database_backend())).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::ensure_ledger(manager).await?;
        ledger::drop_created(manager, &objects(manager.get_database_backend())).await
    }
}

//! The indexes of DESIGN section 1: the three partial NULL-snapshot indexes the backfiller
//! probes, GIN on the snapshots (PostgreSQL only), the (band, me_file) uniqueness of
//! populations, and the indexes behind the jobs' hot queries.

use crate::ledger::{self, IndexBuild, IndexSpec, Method, SchemaObject};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const NULL_SNAPSHOT: &str = "matching_tags_snapshot IS NULL";

/// The (trait, me_file) index of `me_file_tags`; migration 12 replaces it with a covering one.
pub(crate) const TAGS_BY_TRAIT: IndexSpec = IndexSpec::btree(
    "me_file_tags_trait_me_file_idx",
    "me_file_tags",
    &["trait_id", "me_file_id"],
);

/// On both backends. Where the platform already has one of these under its own name (Ecto's
/// `target_populations_target_band_id_me_file_id_index`, `index_target_bands_on_target_id`,
/// ...), that one is kept and nothing is built.
const INDEXES: &[IndexSpec] = &[
    IndexSpec::btree(
        "target_populations_band_me_file_key",
        "target_populations",
        &["target_band_id", "me_file_id"],
    )
    .unique(),
    IndexSpec::btree(
        "target_populations_null_snapshot_idx",
        "target_populations",
        &["id"],
    )
    .predicate(NULL_SNAPSHOT),
    IndexSpec::btree(
        "offers_null_snapshot_idx",
        "offers",
        &["me_file_id", "target_band_id"],
    )
    .predicate(NULL_SNAPSHOT),
    IndexSpec::btree(
        "ad_events_null_snapshot_idx",
        "ad_events",
        &["me_file_id", "target_band_id"],
    )
    .predicate(NULL_SNAPSHOT),
    // A me_file's rows, for the syncer and for propagating snapshots to offers.
    IndexSpec::btree(
        "target_populations_me_file_idx",
        "target_populations",
        &["me_file_id", "target_band_id"],
    ),
    // Which me_files carry a trait (candidate me_files of a band), and a me_file's tags.
    TAGS_BY_TRAIT,
    IndexSpec::btree(
        "me_file_tags_me_file_idx",
        "me_file_tags",
        &["me_file_id", "trait_id"],
    ),
    IndexSpec::btree("target_bands_target_idx", "target_bands", &["target_id"]),
    IndexSpec::btree(
        "target_band_trait_groups_band_idx",
        "target_band_trait_groups",
        &["target_band_id", "trait_group_id"],
    ),
    IndexSpec::btree(
        "trait_group_traits_group_idx",
        "trait_group_traits",
        &["trait_group_id", "trait_id"],
    ),
    IndexSpec::btree("traits_parent_idx", "traits", &["parent_trait_id"]),
    IndexSpec::btree("campaigns_target_idx", "campaigns", &["target_id"]),
    IndexSpec::btree(
        "offers_me_file_band_idx",
        "offers",
        &["me_file_id", "target_band_id"],
    ),
];

/// PostgreSQL only. Named as PostgreSQL names an unnamed `CREATE INDEX ON t USING gin
/// (matching_tags_snapshot)`; the platform's own are `<table>_matching_tags_snapshot_index`.
pub(crate) const GIN_INDEXES: &[IndexSpec] = &[
    IndexSpec::btree(
        "target_populations_matching_tags_snapshot_idx",
        "target_populations",
        &["matching_tags_snapshot"],
    )
    .method(Method::Gin),
    IndexSpec::btree(
        "offers_matching_tags_snapshot_idx",
        "offers",
        &["matching_tags_snapshot"],
    )
    .method(Method::Gin),
    IndexSpec::btree(
        "ad_events_matching_tags_snapshot_idx",
        "ad_events",
        &["matching_tags_snapshot"],
    )
    .method(Method::Gin),
];

fn objects(backend: DbBackend) -> Vec<SchemaObject> {
    let gin = if backend == DbBackend::Postgres {
        GIN_INDEXES
    } else {
        &[]
    };
    INDEXES
        .iter()
        .chain(gin)
        .map(|spec| SchemaObject::Index(spec.clone()))
        .collect()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// Outside a transaction when indexes are built concurrently (PostgreSQL refuses
    /// `CREATE INDEX CONCURRENTLY` inside one).
    fn use_transaction(&self) -> Option<bool> {
        (IndexBuild::from_env() == IndexBuild::Concurrently).then_some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::up(
            manager,
            &objects(manager.get_database_backend()),
            IndexBuild::from_env(),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::down(manager, &objects(manager.get_database_backend())).await
    }
}

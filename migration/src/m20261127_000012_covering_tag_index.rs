//! The populate's read of a batch's tags (`trait_id = ANY(the target's traits)` over a
//! me_file range, for `me_file_id, id, trait_id, tag_value`) answered from one index: the
//! (trait, me_file) index of migration 2 grows `INCLUDE (id, tag_value)`. Before, each batch
//! read every heap page of `me_file_tags` in its range, whatever share of the tags named
//! the target's traits: the whole table (6.6 GB at 10M me_files) per populate, from the disk
//! once the database outgrew the page cache. Now it reads the index entries of the target's
//! traits alone, and no heap page the visibility map marks all-visible.
//!
//! The narrower index is dropped once the covering one is built, only if snapline created
//! it: two indexes on the same key would cost every write to the platform's tags.

use crate::ledger::{self, IndexBuild, IndexSpec, SchemaObject};
// Migration 2's index, which the covering one replaces.
use crate::m20261124_000002_snapshot_indexes::TAGS_BY_TRAIT as TRAIT_ME_FILE;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TRAIT_ME_FILE_COVERING: IndexSpec = IndexSpec::btree(
    "me_file_tags_trait_me_file_covering_idx",
    "me_file_tags",
    &["trait_id", "me_file_id"],
)
.include(&["id", "tag_value"]);

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// Outside a transaction when indexes are built concurrently (PostgreSQL refuses
    /// `CREATE INDEX CONCURRENTLY` and `DROP INDEX CONCURRENTLY` inside one).
    fn use_transaction(&self) -> Option<bool> {
        (IndexBuild::from_env() == IndexBuild::Concurrently).then_some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let build = IndexBuild::from_env();
        ledger::up(
            manager,
            &[SchemaObject::Index(TRAIT_ME_FILE_COVERING)],
            build,
        )
        .await?;
        ledger::drop_if_created(manager, &SchemaObject::Index(TRAIT_ME_FILE), build).await?;
        Ok(())
    }

    /// Drops the covering index if snapline built it, then puts migration 2's index back
    /// (unless an index with its key is left: the platform's, or a covering one snapline did
    /// not create).
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ledger::down(manager, &[SchemaObject::Index(TRAIT_ME_FILE_COVERING)]).await?;
        ledger::up(
            manager,
            &[SchemaObject::Index(TRAIT_ME_FILE)],
            IndexBuild::from_env(),
        )
        .await
    }
}

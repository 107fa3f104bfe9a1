//! The statements of one me_file's sync, each read shaped to cost one round trip: a sync
//! is a handful of tiny statements, so round trips, not rows, are most of its cost.

use crate::id_columns::IdColumns;
use crate::populations::me_file_lock_sql;
use crate::{Backend, Db, PopulationRow, RepoError};
use domain::{BandId, MeFileId, MeFileTagId, Tag, TargetId, TraitId};
use sea_orm::{ConnectionTrait, Value};
use std::collections::HashSet;

/// [`ScopedTarget::version`] of a `targets` row `t`, on both backends.
const VERSION_SQL: &str = "t.population_status || '@' || COALESCE(CAST(t.last_populated_at AS TEXT), '') \
     || '#' || CAST(COALESCE((SELECT r.started FROM snapline_populate_runs r \
     WHERE r.target_id = t.id), 0) AS TEXT)";

/// Reads of `sync_me_file`.
pub struct SyncRepo<'a> {
    pub(crate) db: &'a Db,
}

/// A target in a sync's scope, with what its band metadata must be at least as new as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopedTarget {
    pub id: TargetId,
    /// `population_status@last_populated_at#populates started`: changes when a populate of
    /// the target starts (counted in `snapline_populate_runs`, then the status becomes
    /// `populating`) and when one finishes (the status becomes `populated`).
    pub version: String,
}

/// What a sync reads of its me_file once it holds the me_file's lock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeFileState {
    /// The me_file's tags; `None` when the me_file does not exist.
    pub tags: Option<Vec<Tag>>,
    /// Its population rows in the bands asked for, by id.
    pub rows: Vec<PopulationRow>,
}

impl SyncRepo<'_> {
    /// Takes the me_file's write lock for the rest of `txn` (the lock every snapline writer
    /// takes, see [`crate::PopulationRepo::lock_me_files`]) and reads the targets in sync
    /// scope (`populated` or `populating`), ascending, in one statement. SQLite's write
    /// transaction already serializes writers: there it only reads the scope.
    pub async fn lock_and_scope<C: ConnectionTrait>(
        &self,
        txn: &C,
        me_file: MeFileId,
    ) -> Result<Vec<ScopedTarget>, RepoError> {
        let db = self.db;
        let statuses = [
            Value::from(domain::PopulationStatus::Populated.as_str()),
            Value::from(domain::PopulationStatus::Populating.as_str()),
        ];
        match db.backend() {
            Backend::Postgres => {
                let row = txn
                    .query_one_raw(db.statement(
                        format!(
                            "SELECT COUNT({}), \
                             (SELECT array_agg(CAST(id AS BIGINT) ORDER BY id) FROM targets \
                              WHERE population_status IN ($2, $3)), \
                             (SELECT array_agg({VERSION_SQL} ORDER BY t.id) FROM targets t \
                              WHERE t.population_status IN ($2, $3))",
                            me_file_lock_sql("$1::bigint")
                        ),
                        [vec![Value::from(me_file.0)], statuses.to_vec()].concat(),
                    ))
                    .await?
                    .ok_or(RepoError::Data {
                        what: "sync scope",
                        detail: "the lock statement returned no row".into(),
                    })?;
                let ids: Option<Vec<i64>> = row.try_get_by_index(1)?;
                let versions: Option<Vec<String>> = row.try_get_by_index(2)?;
                Ok(ids
                    .unwrap_or_default()
                    .into_iter()
                    .zip(versions.unwrap_or_default())
                    .map(|(id, version)| ScopedTarget {
                        id: TargetId(id),
                        version,
                    })
                    .collect())
            }
            Backend::Sqlite => {
                let rows = txn
                    .query_all_raw(db.statement(
                        format!(
                            "SELECT t.id, {VERSION_SQL} FROM targets t \
                             WHERE t.population_status IN ($1, $2) ORDER BY t.id"
                        ),
                        statuses.to_vec(),
                    ))
                    .await?;
                rows.into_iter()
                    .map(|row| {
                        Ok(ScopedTarget {
                            id: TargetId(row.id_at(0)?),
                            version: row.try_get_by_index(1)?,
                        })
                    })
                    .collect()
            }
        }
    }

    /// The me_file's tags and its population rows in `band_ids`, in one statement.
    ///
    /// The rows are found through `target_populations_me_file_idx` alone (one probe, a few
    /// dozen rows) and those of `band_ids` kept here: with the bands in the statement,
    /// PostgreSQL probes `(target_band_id, me_file_id)` once per band instead, which with
    /// hundreds of bands in scope costs a thousand buffer reads per sync.
    pub async fn me_file_state<C: ConnectionTrait>(
        &self,
        txn: &C,
        me_file: MeFileId,
        band_ids: &[BandId],
    ) -> Result<MeFileState, RepoError> {
        let db = self.db;
        // Kind 0: the me_file (none when it does not exist) and its tags, a NULL tag id
        // when it has none; kind 1: its population rows.
        let rows = txn
            .query_all_raw(db.statement(
                format!(
                    "SELECT 0, t.id, t.trait_id, t.tag_value FROM me_files m \
                     LEFT JOIN me_file_tags t ON t.me_file_id = m.id WHERE m.id = $1 \
                     UNION ALL \
                     SELECT 1, p.id, p.target_band_id, {} FROM target_populations p \
                     WHERE p.me_file_id = $1",
                    db.snapshot_text("p.matching_tags_snapshot"),
                ),
                vec![Value::from(me_file.0)],
            ))
            .await?;
        let wanted: HashSet<BandId> = band_ids.iter().copied().collect();
        let mut state = MeFileState::default();
        for row in rows {
            let kind: i32 = row.try_get_by_index(0)?;
            let id: Option<i64> = row.opt_id_at(1)?;
            if kind == 0 {
                let tags = state.tags.get_or_insert_with(Vec::new);
                if let Some(id) = id {
                    tags.push(Tag {
                        id: MeFileTagId(id),
                        trait_id: TraitId(row.id_at(2)?),
                        tag_value: row.try_get_by_index(3)?,
                    });
                }
                continue;
            }
            // A row without a band (NULLable on the platform) is an orphan no target owns.
            let Some(band_id) = row.opt_id_at::<BandId>(2)? else {
                continue;
            };
            if let (Some(id), true) = (id, wanted.contains(&band_id)) {
                state.rows.push(PopulationRow {
                    id,
                    band_id,
                    me_file_id: me_file,
                    snapshot: row.try_get_by_index(3)?,
                });
            }
        }
        state.rows.sort_unstable_by_key(|r| r.id);
        Ok(state)
    }
}

//! The statements of a sync of one or several me_files (one transaction), each read shaped
//! to cost one round trip whatever the number of me_files: a sync is a handful of tiny
//! statements, so round trips, not rows, are most of its cost.

use crate::platform::populations::{lock_ranges_sql, me_file_lock_ranges};
use crate::{Backend, Db, PopulationRow, RepoError};
use domain::{BandId, MeFileId, MeFileTagId, PopulationId, Tag, TargetId, TraitId};
use entity::Id;
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use std::collections::{HashMap, HashSet};

/// [`ScopedTarget::version`] of a `targets` row `t`, on both backends.
const VERSION_SQL: &str = "t.population_status || '@' || COALESCE(CAST(t.last_populated_at AS TEXT), '') \
     || '#' || CAST(COALESCE((SELECT r.started FROM snapline_populate_runs r \
     WHERE r.target_id = t.id), 0) AS TEXT)";

/// The scope as PostgreSQL returns it with the lock: two arrays in target order.
#[derive(FromQueryResult)]
struct ScopeArrays {
    ids: Option<Vec<i64>>,
    versions: Option<Vec<String>>,
}

#[derive(FromQueryResult)]
struct ScopeRow {
    id: Id,
    version: String,
}

/// One row of [`SyncRepo::me_files_state`]'s union, as the statement returns it: its
/// columns mean one thing or another by `kind` ([`StateRow::read`] says which).
#[derive(FromQueryResult)]
struct StateRow {
    kind: i32,
    me_file_id: Id,
    id: Option<Id>,
    reference: Option<Id>,
    text: Option<String>,
}

/// What a row of [`SyncRepo::me_files_state`]'s union is.
enum StateRecord {
    /// A me_file that exists, with one of its tags (`None`: it has none).
    Tag { me_file: MeFileId, tag: Option<Tag> },
    /// One of its population rows; `band` is NULLable on the platform (an orphan no
    /// target owns).
    Population {
        me_file: MeFileId,
        id: PopulationId,
        band: Option<BandId>,
        snapshot: Option<String>,
    },
}

impl StateRow {
    /// Kind 0: (me_file, tag id or NULL, trait, value); kind 1: (me_file, population id,
    /// band, snapshot text).
    fn read(self) -> Result<StateRecord, RepoError> {
        let me_file = MeFileId(self.me_file_id.0);
        match (self.kind, self.id) {
            (0, None) => Ok(StateRecord::Tag { me_file, tag: None }),
            (0, Some(id)) => {
                let trait_id = self.reference.ok_or_else(|| RepoError::Data {
                    what: "me_file tag",
                    detail: format!("tag {id} of me_file {me_file} has no trait"),
                })?;
                Ok(StateRecord::Tag {
                    me_file,
                    tag: Some(Tag {
                        id: MeFileTagId(id.0),
                        trait_id: TraitId(trait_id.0),
                        tag_value: self.text,
                    }),
                })
            }
            (1, Some(id)) => Ok(StateRecord::Population {
                me_file,
                id: PopulationId(id.0),
                band: self.reference.map(|b| BandId(b.0)),
                snapshot: self.text,
            }),
            (kind, id) => Err(RepoError::Data {
                what: "me_file state",
                detail: format!("a row of kind {kind} with id {id:?} for me_file {me_file}"),
            }),
        }
    }
}

/// Reads of `sync_me_file`.
pub struct SyncRepo<'a, C = crate::PoolConn> {
    pub(crate) db: &'a Db,
    /// The pool, or the transaction of a [`crate::Tx`].
    pub(crate) conn: &'a C,
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

/// What a sync reads of a me_file once it holds the me_file's lock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeFileState {
    /// The me_file's tags; `None` when the me_file does not exist.
    pub tags: Option<Vec<Tag>>,
    /// Its population rows in the bands asked for, by id.
    pub rows: Vec<PopulationRow>,
}

impl<C: ConnectionTrait> SyncRepo<'_, C> {
    /// Takes the write locks of `me_files` for the rest of `txn` (the locks every snapline
    /// writer takes, in the same ascending order, see
    /// [`crate::PopulationRepo::lock_me_files`]) and reads the targets in sync scope
    /// (`populated` or `populating`), ascending, in one statement. SQLite's write
    /// transaction already serializes writers: there it only reads the scope.
    pub async fn lock_and_scope(
        &self,
        me_files: &[MeFileId],
    ) -> Result<Vec<ScopedTarget>, RepoError> {
        let txn = self.conn;
        let db = self.db;
        let statuses = [
            Value::from(domain::PopulationStatus::Populated.as_str()),
            Value::from(domain::PopulationStatus::Populating.as_str()),
        ];
        match db.backend() {
            Backend::Postgres => {
                let scope: ScopeArrays = db
                    .fetch_one(
                        txn,
                        "sync scope",
                        format!(
                            "SELECT ({}) AS locked, \
                             (SELECT array_agg(CAST(id AS BIGINT) ORDER BY id) FROM targets \
                              WHERE population_status IN ($2, $3)) AS ids, \
                             (SELECT array_agg({VERSION_SQL} ORDER BY t.id) FROM targets t \
                              WHERE t.population_status IN ($2, $3)) AS versions",
                            lock_ranges_sql("$1")
                        ),
                        [vec![me_file_lock_ranges(me_files)], statuses.to_vec()].concat(),
                    )
                    .await?;
                Ok(scope
                    .ids
                    .unwrap_or_default()
                    .into_iter()
                    .zip(scope.versions.unwrap_or_default())
                    .map(|(id, version)| ScopedTarget {
                        id: TargetId(id),
                        version,
                    })
                    .collect())
            }
            Backend::Sqlite => {
                let rows: Vec<ScopeRow> = db
                    .fetch_all(
                        txn,
                        format!(
                            "SELECT t.id, {VERSION_SQL} AS version FROM targets t \
                             WHERE t.population_status IN ($1, $2) ORDER BY t.id"
                        ),
                        statuses.to_vec(),
                    )
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|row| ScopedTarget {
                        id: TargetId(row.id.0),
                        version: row.version,
                    })
                    .collect())
            }
        }
    }

    /// The tags of each of `me_files` and its population rows in `band_ids`, in one
    /// statement; a me_file that does not exist has no tags (`None`).
    ///
    /// The rows are found through `target_populations_me_file_idx` alone (one probe per
    /// me_file, a few dozen rows) and those of `band_ids` kept here: with the bands in the
    /// statement, PostgreSQL probes `(target_band_id, me_file_id)` once per band instead,
    /// which with hundreds of bands in scope costs a thousand buffer reads per me_file.
    pub async fn me_files_state(
        &self,
        me_files: &[MeFileId],
        band_ids: &[BandId],
    ) -> Result<HashMap<MeFileId, MeFileState>, RepoError> {
        let txn = self.conn;
        let db = self.db;
        let ids: Vec<i64> = me_files.iter().map(|m| m.0).collect();
        // Kind 0: the me_files that exist and their tags, a NULL tag id for one with none;
        // kind 1: their population rows ([`StateRow::read`]).
        let rows: Vec<StateRow> = db
            .fetch_all(
                txn,
                format!(
                    "SELECT 0 AS kind, m.id AS me_file_id, t.id, t.trait_id AS reference, \
                     t.tag_value AS text \
                     FROM me_files m LEFT JOIN me_file_tags t ON t.me_file_id = m.id WHERE {} \
                     UNION ALL \
                     SELECT 1, p.me_file_id, p.id, p.target_band_id, {} FROM target_populations p \
                     WHERE {}",
                    db.in_id_list("m.id", 1),
                    db.snapshot_text("p.matching_tags_snapshot"),
                    db.in_id_list("p.me_file_id", 1),
                ),
                vec![db.id_list(&ids)],
            )
            .await?;
        let wanted: HashSet<BandId> = band_ids.iter().copied().collect();
        let mut states: HashMap<MeFileId, MeFileState> = me_files
            .iter()
            .map(|m| (*m, MeFileState::default()))
            .collect();
        for row in rows {
            match row.read()? {
                StateRecord::Tag { me_file, tag } => {
                    let tags = states
                        .entry(me_file)
                        .or_default()
                        .tags
                        .get_or_insert_with(Vec::new);
                    tags.extend(tag);
                }
                StateRecord::Population {
                    me_file,
                    id,
                    band: Some(band_id),
                    snapshot,
                } if wanted.contains(&band_id) => {
                    states.entry(me_file).or_default().rows.push(PopulationRow {
                        id,
                        band_id,
                        me_file_id: me_file,
                        snapshot,
                    });
                }
                // Rows of other bands, and orphans without a band.
                StateRecord::Population { .. } => {}
            }
        }
        for state in states.values_mut() {
            state.rows.sort_unstable_by_key(|r| r.id);
        }
        Ok(states)
    }
}

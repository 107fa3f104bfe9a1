//! `snapctl explain --me-file M [--target T]` and the board's me_file page: why a me_file is
//! or is not in each target. For every target, every band from the innermost out and every
//! trait group: passed or failed, with the tags that matched; the band the rules choose;
//! the stored rows and snapshot against the computed one, as a diff; and the drift the audit
//! would report for it. Read-only.

use crate::{Drift, JobError, drift_of};
use domain::{MeFileId, Snapshot, Tag, TargetBands, TargetId};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// Why one me_file is where it is, target by target.
#[derive(Clone, Debug, Serialize)]
pub struct MeFileExplanation {
    pub me_file_id: i64,
    pub exists: bool,
    /// Its tags on any trait, by id.
    pub tags: usize,
    pub targets: Vec<TargetExplanation>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetExplanation {
    pub target_id: i64,
    pub title: Option<String>,
    pub status: String,
    /// Innermost first.
    pub bands: Vec<BandExplained>,
    /// The band the rules choose, if any.
    pub chosen_band: Option<i64>,
    /// The me_file's rows in the target's bands.
    pub stored: Vec<StoredRow>,
    /// The snapshot the chosen band's row should carry.
    pub computed_snapshot: Option<Snapshot>,
    /// Stored against computed, one line per child tag: `-` only stored, `+` only computed,
    /// ` ` both.
    pub diff: Vec<String>,
    /// What an audit of the target would report for this me_file (only `populated` targets
    /// are audited; for the others this is what a populate would change).
    pub drift: Vec<Drift>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BandExplained {
    pub band_id: i64,
    pub matched: bool,
    pub groups: Vec<GroupExplained>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupExplained {
    pub group_id: i64,
    pub passed: bool,
    pub traits: Vec<i64>,
    pub matching_tags: Vec<TagShown>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TagShown {
    pub tag_id: i64,
    pub trait_id: i64,
    pub trait_name: Option<String>,
    pub value: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoredRow {
    pub population_id: i64,
    pub band_id: i64,
    /// The stored snapshot as JSON text; `None` when NULL.
    pub snapshot: Option<String>,
}

/// Explains `me_file` in `target` (any status), or in every target. A me_file that
/// neither exists nor has rows is bad input.
pub async fn explain(
    db: &repo::Db,
    me_file: MeFileId,
    target: Option<TargetId>,
) -> Result<MeFileExplanation, JobError> {
    crate::error::check_id_range(db, "me_file", "me_files", me_file.0).await?;
    let targets = match target {
        Some(target) => {
            crate::error::check_target_exists(db, target).await?;
            db.targets().find(target).await?.into_iter().collect()
        }
        None => db.targets().all().await?,
    };
    let ids: Vec<TargetId> = targets.iter().map(|t| t.id).collect();
    let mut bands = db.bands().of_targets(&ids).await?;
    let band_ids: Vec<_> = bands
        .values()
        .flat_map(|t| t.bands().iter().map(|b| b.id))
        .collect();
    let mut states = db.sync().me_files_state(&[me_file], &band_ids).await?;
    let state = states.remove(&me_file).unwrap_or_default();
    let exists = state.tags.is_some();
    if !exists && state.rows.is_empty() {
        return Err(JobError::UnknownMeFile(me_file));
    }
    // By me_file, as the rules' planner reads tags: built once for every target.
    let tags: HashMap<MeFileId, Vec<Tag>> =
        HashMap::from([(me_file, state.tags.unwrap_or_default())]);
    let mut explanation = MeFileExplanation {
        me_file_id: me_file.0,
        exists,
        tags: tags[&me_file].len(),
        targets: Vec::new(),
    };
    for row in targets {
        let target = bands
            .remove(&row.id)
            .unwrap_or_else(|| TargetBands::new(row.id, [], []));
        let rows: Vec<_> = state
            .rows
            .iter()
            .filter(|r| target.band(r.band_id).is_some())
            .cloned()
            .collect();
        explanation.targets.push(explain_target(
            &target,
            row.title,
            row.status.map_or("unknown", |s| s.as_str()),
            me_file,
            exists,
            &tags,
            rows,
        ));
    }
    Ok(explanation)
}

fn explain_target(
    target: &TargetBands,
    title: Option<String>,
    status: &str,
    me_file: MeFileId,
    exists: bool,
    own_tags: &HashMap<MeFileId, Vec<Tag>>,
    rows: Vec<repo::PopulationRow>,
) -> TargetExplanation {
    let tags = own_tags[&me_file].as_slice();
    let verdicts = target.explain(tags);
    let trait_name = |id| target.trait_info(id).map(|t| t.child.name.clone());
    let bands = verdicts
        .bands
        .iter()
        .map(|band| BandExplained {
            band_id: band.band_id.0,
            matched: band.matched,
            groups: band
                .groups
                .iter()
                .map(|group| GroupExplained {
                    group_id: group.group_id.0,
                    passed: group.passed,
                    traits: group.traits.iter().map(|t| t.0).collect(),
                    matching_tags: group
                        .matching_tags
                        .iter()
                        .map(|tag| TagShown {
                            tag_id: tag.id.0,
                            trait_id: tag.trait_id.0,
                            trait_name: trait_name(tag.trait_id),
                            value: tag.tag_value.clone(),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let computed = verdicts.chosen.and_then(|band| target.snapshot(band, tags));
    let present: &[MeFileId] = if exists { &[me_file] } else { &[] };
    let drift = drift_of(target, present, own_tags, rows.clone());
    // The row the chosen band's snapshot is compared with: the one in that band, else any.
    let compared = rows
        .iter()
        .rev()
        .find(|r| Some(r.band_id) == verdicts.chosen)
        .or(rows.first());
    let stored_snapshot = compared
        .and_then(|r| r.snapshot.as_deref())
        .and_then(|text| Snapshot::from_json(text).ok());
    TargetExplanation {
        target_id: target.target_id().0,
        title,
        status: status.to_owned(),
        bands,
        chosen_band: verdicts.chosen.map(|b| b.0),
        stored: rows
            .iter()
            .map(|r| StoredRow {
                population_id: r.id.0,
                band_id: r.band_id.0,
                snapshot: r.snapshot.clone(),
            })
            .collect(),
        diff: snapshot_diff(stored_snapshot.as_ref(), computed.as_ref()),
        computed_snapshot: computed,
        drift,
    }
}

/// One line per child tag of either snapshot: `-` only in the stored one, `+` only in the
/// computed one, ` ` in both.
pub fn snapshot_diff(stored: Option<&Snapshot>, computed: Option<&Snapshot>) -> Vec<String> {
    fn lines(snapshot: Option<&Snapshot>) -> Vec<String> {
        snapshot
            .map(|s| {
                s.tags
                    .iter()
                    .flat_map(|parent| {
                        parent.3.iter().map(move |child| {
                            format!(
                                "{} (trait {}) / trait {} = {:?}",
                                parent.1, parent.0, child.0, child.1
                            )
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    let (stored, computed) = (lines(stored), lines(computed));
    let stored_set: BTreeSet<&String> = stored.iter().collect();
    let computed_set: BTreeSet<&String> = computed.iter().collect();
    let mut diff: Vec<String> = Vec::new();
    for line in &stored {
        let mark = if computed_set.contains(line) {
            ' '
        } else {
            '-'
        };
        diff.push(format!("{mark} {line}"));
    }
    for line in computed.iter().filter(|l| !stored_set.contains(l)) {
        diff.push(format!("+ {line}"));
    }
    diff
}

impl std::fmt::Display for MeFileExplanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let printable = crate::status::printable;
        writeln!(
            f,
            "me_file {}{}: {} tag(s)",
            self.me_file_id,
            if self.exists { "" } else { " (does not exist)" },
            self.tags
        )?;
        for target in &self.targets {
            writeln!(f)?;
            writeln!(
                f,
                "target {}{} ({})",
                target.target_id,
                target
                    .title
                    .as_deref()
                    .map(|t| format!(" \"{}\"", printable(t)))
                    .unwrap_or_default(),
                target.status
            )?;
            if target.bands.is_empty() {
                writeln!(f, "  no bands: matches nobody")?;
            }
            for band in &target.bands {
                writeln!(
                    f,
                    "  band {}: {}",
                    band.band_id,
                    if band.matched {
                        "matched"
                    } else {
                        "not matched"
                    }
                )?;
                if band.groups.is_empty() {
                    writeln!(f, "    no trait groups: matches nobody")?;
                }
                for group in &band.groups {
                    let tags: Vec<String> = group
                        .matching_tags
                        .iter()
                        .map(|t| {
                            format!(
                                "tag {} on {} ({}) = {}",
                                t.tag_id,
                                t.trait_name.as_deref().map(printable).unwrap_or_default(),
                                t.trait_id,
                                t.value.as_deref().map(printable).unwrap_or("NULL".into())
                            )
                        })
                        .collect();
                    writeln!(
                        f,
                        "    group {}: {} (traits {:?}){}",
                        group.group_id,
                        if group.passed { "passed" } else { "failed" },
                        group.traits,
                        if tags.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", tags.join("; "))
                        }
                    )?;
                }
            }
            match target.chosen_band {
                Some(band) => writeln!(f, "  chosen: band {band}")?,
                None => writeln!(f, "  chosen: none (the outermost band is not matched)")?,
            }
            if target.stored.is_empty() {
                writeln!(f, "  stored: no row")?;
            }
            for row in &target.stored {
                writeln!(
                    f,
                    "  stored: population {} in band {}, snapshot {}",
                    row.population_id,
                    row.band_id,
                    row.snapshot
                        .as_deref()
                        .map(printable)
                        .unwrap_or("NULL".into())
                )?;
            }
            if !target.diff.is_empty() {
                writeln!(f, "  snapshot, stored (-) against computed (+):")?;
                for line in &target.diff {
                    writeln!(f, "    {}", printable(line))?;
                }
            }
            if target.drift.is_empty() {
                writeln!(f, "  stored rows agree with the rules")?;
            }
            for drift in &target.drift {
                writeln!(f, "  drift: {}", crate::audit::describe(drift))?;
            }
        }
        Ok(())
    }
}

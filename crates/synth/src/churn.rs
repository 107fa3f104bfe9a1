//! A burst of the platform's tag changes: adds (some NULL, some duplicates), value edits
//! (quotes, backslashes, multi-byte text, SQL-looking text, blanks) and deletes on random
//! me_files. The demo plays the platform with it before syncing the touched me_files.

use crate::SeedError;
use domain::{MeFileId, TraitId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repo::Db;

/// Values the platform writes, including ones that must come back verbatim in snapshots.
const VALUES: [&str; 7] = [
    "02139",
    "",
    "  ",
    "O'Brien \\ \"q\"",
    "ünïcödé ✓",
    "SELECT 1; --",
    "premium",
];

/// What a burst did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChurnReport {
    pub added: u64,
    pub edited: u64,
    pub deleted: u64,
    /// The me_files touched, each once, in the order first touched.
    pub touched: Vec<MeFileId>,
}

/// Applies `changes` random tag changes to me_files `1..=me_files`, deterministic in `seed`.
pub async fn churn(
    db: &Db,
    me_files: u64,
    changes: u64,
    seed: u64,
) -> Result<ChurnReport, SeedError> {
    if me_files == 0 {
        return Err(SeedError::Invalid(
            "churn needs at least one me_file".into(),
        ));
    }
    let traits: Vec<TraitId> = crate::parents()
        .iter()
        .flat_map(|p| p.children.iter().map(|c| TraitId(c.id)))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut report = ChurnReport::default();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..changes {
        let me_file = MeFileId(rng.random_range(1..=me_files as i64));
        let value = VALUES[rng.random_range(0..VALUES.len())];
        let tags = db.tags();
        let changed = match rng.random_range(0..100) {
            0..45 => {
                let trait_id = traits[rng.random_range(0..traits.len())];
                let value = (!rng.random_bool(0.3)).then_some(value);
                tags.platform_add(me_file, trait_id, value).await?;
                report.added += 1;
                true
            }
            45..70 => {
                let edited = tags.platform_edit_first(me_file, value).await?;
                report.edited += u64::from(edited);
                edited
            }
            _ => {
                let deleted = tags.platform_delete_last(me_file).await?;
                report.deleted += u64::from(deleted);
                deleted
            }
        };
        if changed && seen.insert(me_file) {
            report.touched.push(me_file);
        }
    }
    Ok(report)
}

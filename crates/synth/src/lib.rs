//! Deterministic synthetic data sets for demos, tests and benchmarks (`snapctl seed`): the
//! same options always write the same rows.
//!
//! The set is shaped like the platform's data: a parent with 1,000 zip codes, multi-valued
//! parents, NULL and blank tag values, tied and NULL display orders, duplicate tag rows,
//! nested targets with a bullseye, a non-nested target, a band with an empty trait group, a
//! target with no bands, campaigns, and legacy rows with NULL snapshots in all three
//! snapshot tables (including orphan offers and offers whose band no longer exists).
//! Memberships of legacy rows come from `domain`, never from rules of its own. All writes go
//! through `repo`'s bulk loader; this crate holds no SQL.

mod catalog;
mod churn;
mod me_files;
mod targets;

pub use catalog::{Parent, parents};
pub use churn::{ChurnReport, churn};
pub use targets::ARCHETYPES;

use domain::TargetBands;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use repo::{Cell, Db, RepoError, TableRows};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SeedOptions {
    pub me_files: u64,
    /// Total targets: the fixed archetypes first, then generated ones.
    pub targets: usize,
    /// Share (0..=1) of each target's members written as legacy populations with a NULL
    /// snapshot, each with an offer and, for half of them, an ad_event (also NULL).
    pub legacy_share: f64,
    pub seed: u64,
    /// Me_files generated and written per chunk (bounds memory).
    pub chunk_size: u64,
    /// Also write three offers (and ad_events) on bands that no longer exist, which no
    /// backfill can fix (when `legacy_share` > 0).
    pub deleted_band_offers: bool,
}

impl Default for SeedOptions {
    fn default() -> Self {
        Self {
            me_files: 10_000,
            targets: ARCHETYPES,
            legacy_share: 0.02,
            seed: 42,
            chunk_size: 20_000,
            deleted_band_offers: true,
        }
    }
}

impl SeedOptions {
    /// `me_files` me_files and `targets` targets, every other option its default.
    pub fn sized(me_files: u64, targets: usize) -> Self {
        Self {
            me_files,
            targets,
            ..Self::default()
        }
    }

    /// These options with `share` of each target's members written as legacy populations.
    pub fn with_legacy_share(self, share: f64) -> Self {
        Self {
            legacy_share: share,
            ..self
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(
        "the database already holds data ({me_files} me_files, {traits} traits): seed writes fixed ids and needs empty tables; use a fresh database"
    )]
    NotEmpty { me_files: i64, traits: i64 },
    #[error(
        "seed writes snapline's own schema, and {table} has NOT NULL columns without a default that it does not fill ({}): this looks like the platform's database; seed a fresh one",
        columns.join(", ")
    )]
    ForeignSchema { table: String, columns: Vec<String> },
    #[error("invalid seed options: {0}")]
    Invalid(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("the data generator stopped unexpectedly: {0}")]
    Generator(#[source] tokio::task::JoinError),
}

/// What a seed wrote.
#[derive(Clone, Debug, Default)]
pub struct SeedReport {
    pub me_files: u64,
    pub me_file_tags: u64,
    pub targets: u64,
    pub legacy_populations: u64,
    pub offers: u64,
    pub ad_events: u64,
    pub elapsed: Duration,
}

/// Writes the data set into `db`, whose tables must be empty. `on_progress` is called with
/// (me_files written, me_files in all) after each chunk.
pub async fn seed(
    db: &Db,
    options: &SeedOptions,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<SeedReport, SeedError> {
    if !(0.0..=1.0).contains(&options.legacy_share) {
        return Err(SeedError::Invalid(format!(
            "legacy share {} is not between 0 and 1",
            options.legacy_share
        )));
    }
    if options.chunk_size == 0 {
        return Err(SeedError::Invalid("chunk size must be at least 1".into()));
    }
    let counts = db.stats().tables().await?;
    if counts.me_files > 0 || counts.traits > 0 {
        return Err(SeedError::NotEmpty {
            me_files: counts.me_files,
            traits: counts.traits,
        });
    }
    let started = Instant::now();
    let parents = Arc::new(catalog::parents());
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let set = targets::build(&parents, options.targets, &mut rng);
    // Written with the first chunk, once every table's columns are known to fit.
    let mut structure = Some(structure_rows(&parents, &set));
    let target_bands: Arc<Vec<TargetBands>> =
        Arc::new(set.target_bands(&catalog::band_traits(&parents)));

    let mut report = SeedReport {
        targets: set.targets.len() as u64,
        ..SeedReport::default()
    };
    // Generation runs on a blocking thread while the previous chunk is being written.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<me_files::Chunk>(2);
    let generator = {
        let options = options.clone();
        let parents = parents.clone();
        let target_bands = target_bands.clone();
        tokio::task::spawn_blocking(move || {
            let mut generator = me_files::Generator::new(&options, &parents, &target_bands);
            while let Some(chunk) = generator.next_chunk() {
                if sender.blocking_send(chunk).is_err() {
                    break; // the writer failed and stopped listening
                }
            }
        })
    };
    while let Some(chunk) = receiver.recv().await {
        if let Some(structure) = structure.take() {
            let chunk_tables = [
                &chunk.me_files,
                &chunk.me_file_tags,
                &chunk.populations,
                &chunk.offers,
                &chunk.ad_events,
            ];
            write_structure(db, structure, &chunk_tables).await?;
        }
        report.me_files += chunk.me_files.rows.len() as u64;
        report.me_file_tags += chunk.me_file_tags.rows.len() as u64;
        report.legacy_populations += chunk.populations.rows.len() as u64;
        report.offers += chunk.offers.rows.len() as u64;
        report.ad_events += chunk.ad_events.rows.len() as u64;
        let bulk = db.bulk();
        tokio::try_join!(
            bulk.insert(&chunk.me_files),
            bulk.insert(&chunk.me_file_tags),
            bulk.insert(&chunk.populations),
            bulk.insert(&chunk.offers),
            bulk.insert(&chunk.ad_events),
        )?;
        on_progress(report.me_files, options.me_files);
    }
    generator.await.map_err(SeedError::Generator)?;
    if let Some(structure) = structure.take() {
        write_structure(db, structure, &[]).await?; // no me_files asked for
    }

    db.bulk()
        .reset_id_sequences(&[
            "traits",
            "me_files",
            "me_file_tags",
            "targets",
            "target_bands",
            "trait_groups",
            "trait_group_traits",
            "target_band_trait_groups",
            "campaigns",
            "target_populations",
            "offers",
            "ad_events",
        ])
        .await?;
    db.bulk().vacuum_analyze().await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Writes the traits, groups, targets, bands and campaigns, after refusing (before anything
/// is written) a table whose required columns the data set does not fill: the platform's
/// schema has many.
async fn write_structure(
    db: &Db,
    structure: Vec<TableRows>,
    chunk_tables: &[&TableRows],
) -> Result<(), SeedError> {
    for rows in structure.iter().chain(chunk_tables.iter().copied()) {
        let columns = db
            .schema()
            .columns_needing_values(rows.table, rows.columns)
            .await?;
        if !columns.is_empty() {
            return Err(SeedError::ForeignSchema {
                table: rows.table.to_owned(),
                columns,
            });
        }
    }
    for rows in structure {
        db.bulk().insert(&rows).await?;
    }
    Ok(())
}

fn structure_rows(parents: &[Parent], set: &targets::TargetSet) -> Vec<TableRows> {
    let mut traits = TableRows::new(
        "traits",
        &["id", "trait_name", "parent_trait_id", "display_order"],
    );
    let order = |o: Option<i32>| o.map(|o| Cell::Int(o.into())).unwrap_or(Cell::Null);
    for parent in parents {
        traits.push(vec![
            Cell::Int(parent.id),
            Cell::Text(parent.name.into()),
            Cell::Null,
            order(parent.display_order),
        ]);
        for child in &parent.children {
            traits.push(vec![
                Cell::Int(child.id),
                Cell::Text(child.name.clone()),
                Cell::Int(parent.id),
                order(child.display_order),
            ]);
        }
    }
    let mut groups = TableRows::new("trait_groups", &["id", "title", "parent_trait_id"]);
    let mut group_traits =
        TableRows::new("trait_group_traits", &["id", "trait_group_id", "trait_id"]);
    for group in &set.groups {
        groups.push(vec![
            Cell::Int(group.id),
            Cell::Text(group.title.clone()),
            Cell::Int(group.parent_id),
        ]);
        for trait_id in &group.traits {
            let id = group_traits.rows.len() as i64 + 1;
            group_traits.push(vec![
                Cell::Int(id),
                Cell::Int(group.id),
                Cell::Int(trait_id.0),
            ]);
        }
    }
    let mut targets = TableRows::new("targets", &["id", "title", "population_status"]);
    let mut bands = TableRows::new("target_bands", &["id", "target_id", "is_bullseye"]);
    let mut links = TableRows::new(
        "target_band_trait_groups",
        &["id", "target_band_id", "trait_group_id"],
    );
    let mut campaigns = TableRows::new("campaigns", &["id", "target_id", "title"]);
    for target in &set.targets {
        targets.push(vec![
            Cell::Int(target.id),
            Cell::Text(target.title.clone()),
            Cell::Text("not_populated".into()),
        ]);
        campaigns.push(vec![
            Cell::Int(target.id),
            Cell::Int(target.id),
            Cell::Text(format!("Campaign for {}", target.title)),
        ]);
        for band in &target.bands {
            bands.push(vec![
                Cell::Int(band.id),
                Cell::Int(target.id),
                Cell::Text(if band.bullseye { "1" } else { "0" }.into()),
            ]);
            for group_id in &band.group_ids {
                let id = links.rows.len() as i64 + 1;
                links.push(vec![
                    Cell::Int(id),
                    Cell::Int(band.id),
                    Cell::Int(*group_id),
                ]);
            }
        }
    }
    vec![
        traits,
        groups,
        group_traits,
        targets,
        bands,
        links,
        campaigns,
    ]
}

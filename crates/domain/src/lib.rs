//! The domain of snapline: ids, traits, tags, bands with trait groups, and the two rules
//! everything else calls, [`TargetBands::band_for`] (band membership, DESIGN section 3) and
//! [`TargetBands::snapshot`] (the matching-tags snapshot, DESIGN section 2).
//!
//! This crate is pure: it never does IO and never imports a database or queue crate. These
//! functions are the only implementation of membership and snapshots in the tree; the
//! populator, the syncer, the backfiller and the synthetic data generator all call them.

mod ids;
mod snapshot;
mod target;

pub use ids::{
    BandId, CampaignId, MeFileId, MeFileTagId, PopulationId, TargetId, TraitGroupId, TraitId,
};
pub use snapshot::{Snapshot, SnapshotChild, SnapshotParent};
pub use target::{
    Band, BandTrait, BandVerdict, Explanation, GroupVerdict, Tag, TargetBands, TraitGroup,
    TraitInfo,
};

/// `targets.population_status` values. snapline writes only the platform's three; a
/// populate that fails for good leaves `NotPopulated` and records why in snapline's own
/// table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PopulationStatus {
    NotPopulated,
    Populating,
    Populated,
    /// Never written any more: read only from targets an earlier snapline marked so.
    Failed,
}

impl PopulationStatus {
    pub const ALL: [PopulationStatus; 4] = [
        PopulationStatus::NotPopulated,
        PopulationStatus::Populating,
        PopulationStatus::Populated,
        PopulationStatus::Failed,
    ];

    /// The text stored in `targets.population_status`.
    pub fn as_str(self) -> &'static str {
        match self {
            PopulationStatus::NotPopulated => "not_populated",
            PopulationStatus::Populating => "populating",
            PopulationStatus::Populated => "populated",
            PopulationStatus::Failed => "failed",
        }
    }

    /// Parses the stored text; `None` for anything another writer may have put there.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

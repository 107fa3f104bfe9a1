use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<i64> for $name {
            fn from(id: i64) -> Self {
                Self(id)
            }
        }
    )*};
}

id_type! {
    /// `traits.id`: a parent trait (no parent of its own) or a child trait.
    TraitId;
    /// `trait_groups.id`.
    TraitGroupId;
    /// `target_bands.id`.
    BandId;
    /// `targets.id`.
    TargetId;
    /// `me_files.id`: one user.
    MeFileId;
    /// `me_file_tags.id`.
    MeFileTagId;
    /// `campaigns.id`.
    CampaignId;
    /// `target_populations.id`: one member of one band.
    PopulationId;
}

//! sea-orm entities, one module per platform table (DESIGN section 1), with the columns
//! snapline uses. Other columns may exist in the platform's database; these entities never
//! name them, so they are left alone.
//!
//! This crate only declares shapes: it runs no query and holds no logic.

pub mod ad_events;
pub mod campaigns;
pub mod me_file_tags;
pub mod me_files;
pub mod offers;
pub mod target_band_trait_groups;
pub mod target_bands;
pub mod target_populations;
pub mod targets;
pub mod trait_group_traits;
pub mod trait_groups;
pub mod traits;

//! sea-orm entities, one module per platform table (DESIGN section 1), with the columns
//! snapline uses, typed and NULLable as the platform's own database has them (its public
//! pg_dump plus Ecto migrations): ids are `integer` there and `bigint` on a schema snapline
//! created, so every id is an [`Id`], which reads either. Other columns may exist in the
//! platform's database; these entities never name them, so they are left alone.
//! `snapline_leases` is snapline's own table.
//!
//! This crate only declares shapes: it runs no query and holds no logic.

mod id;

pub use id::Id;

pub mod ad_events;
pub mod campaigns;
pub mod me_file_tags;
pub mod me_files;
pub mod offers;
pub mod snapline_leases;
pub mod target_band_trait_groups;
pub mod target_bands;
pub mod target_populations;
pub mod targets;
pub mod trait_group_traits;
pub mod trait_groups;
pub mod traits;

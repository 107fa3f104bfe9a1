use crate::ids::TraitId;
use serde::{Deserialize, Serialize};

/// `matching_tags_snapshot`: why a me_file matched a band.
///
/// Serializes as `{"tags": [[parent_id, parent_name, parent_display_order,
/// [[trait_id, tag_value, display_order], ...]], ...]}`. `{"tags": []}` means computed with
/// no matching tag; a missing snapshot (SQL NULL) means never computed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub tags: Vec<SnapshotParent>,
}

/// `[parent_id, parent_name, parent_display_order, children]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotParent(
    pub TraitId,
    pub String,
    pub Option<i32>,
    pub Vec<SnapshotChild>,
);

/// `[trait_id, tag_value, display_order]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChild(pub TraitId, pub String, pub Option<i32>);

impl Snapshot {
    /// The canonical JSON text: same snapshot, byte-identical text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a snapshot always serializes")
    }

    /// Parses stored JSON (any whitespace, as PostgreSQL's jsonb prints it).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

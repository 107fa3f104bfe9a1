//! A second statement of the membership and snapshot rules (DESIGN sections 3 and 2),
//! written from the design without the domain's code: plain loops over rows as the
//! platform's tables hold them. It is the oracle the domain's property tests and the
//! end-to-end tests compare with (on SQLite, where the set-based SQL oracle does not run).
//!
//! Tests only: production code never uses it, and it never imports `domain` (a rule bug
//! the two shared would pass unseen).

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// A row of `traits`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraitRow {
    pub id: i64,
    pub name: String,
    pub display_order: Option<i32>,
    /// `parent_trait_id`, which may name a trait that does not exist.
    pub parent_id: Option<i64>,
}

/// A row of `me_file_tags` of one me_file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRow {
    pub id: i64,
    pub trait_id: i64,
    pub value: Option<String>,
}

/// A band and the trait groups linked to it that exist (a link may repeat a group, and a
/// group may be linked to several bands): (group id, the trait ids of the group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BandLinks {
    pub band_id: i64,
    pub groups: Vec<(i64, Vec<i64>)>,
}

/// The `traits` table by id.
pub type Traits = BTreeMap<i64, TraitRow>;

/// The traits of a group that exist.
fn live_traits<'a>(group: &'a [i64], traits: &'a Traits) -> impl Iterator<Item = i64> + 'a {
    group.iter().copied().filter(|t| traits.contains_key(t))
}

/// A band matches when it has groups and every group has a (live) trait the me_file is
/// tagged with: AND across groups, OR within one.
fn matches(band: &BandLinks, tags: &[TagRow], traits: &Traits) -> bool {
    !band.groups.is_empty()
        && band.groups.iter().all(|(_, group)| {
            live_traits(group, traits).any(|t| tags.iter().any(|tag| tag.trait_id == t))
        })
}

/// Groups linked to a band, each counted once however often it is linked.
fn distinct_groups(band: &BandLinks) -> usize {
    band.groups
        .iter()
        .map(|(id, _)| *id)
        .collect::<BTreeSet<_>>()
        .len()
}

/// The band a me_file with `tags` belongs to among a target's `bands`: the innermost band
/// of the chain it matches from the outermost one (bands ordered by their number of
/// distinct groups, then id), or none.
pub fn band(bands: &[BandLinks], tags: &[TagRow], traits: &Traits) -> Option<i64> {
    let mut order: Vec<&BandLinks> = bands.iter().collect();
    order.sort_by_key(|b| (distinct_groups(b), b.band_id));
    let mut member = None;
    for band in order {
        if !matches(band, tags, traits) {
            break;
        }
        member = Some(band.band_id);
    }
    member
}

fn blank(value: &str) -> bool {
    value.chars().all(char::is_whitespace)
}

/// NULL orders last, then by order, then by id.
fn order_key(order: Option<i32>, id: i64) -> (bool, i32, i64) {
    (order.is_none(), order.unwrap_or(0), id)
}

/// The snapshot a me_file with `tags` gets in `band`, as JSON: for each of the band's
/// (live) traits the me_file's first tag on it (lowest tag id), shown by value or, when
/// the value is blank, by the trait's name; grouped under existing parents.
pub fn snapshot(band: &BandLinks, tags: &[TagRow], traits: &Traits) -> Value {
    let band_traits: BTreeSet<i64> = band
        .groups
        .iter()
        .flat_map(|(_, group)| live_traits(group, traits))
        .collect();
    let mut by_id: Vec<&TagRow> = tags.iter().collect();
    by_id.sort_by_key(|t| t.id);
    // (parent, child, shown, child's order)
    let mut children: Vec<(&TraitRow, &TraitRow, String)> = Vec::new();
    for tag in by_id {
        if !band_traits.contains(&tag.trait_id) || children.iter().any(|c| c.1.id == tag.trait_id) {
            continue;
        }
        let child = &traits[&tag.trait_id];
        let Some(parent) = child.parent_id.and_then(|p| traits.get(&p)) else {
            continue;
        };
        let shown = match &tag.value {
            Some(v) if !blank(v) => v.clone(),
            _ => child.name.clone(),
        };
        children.push((parent, child, shown));
    }
    let mut parents: Vec<&TraitRow> = Vec::new();
    for (parent, _, _) in &children {
        if !parents.iter().any(|p| p.id == parent.id) {
            parents.push(parent);
        }
    }
    parents.sort_by_key(|p| order_key(p.display_order, p.id));
    let listed: Vec<Value> = parents
        .iter()
        .map(|parent| {
            let mut kids: Vec<&(&TraitRow, &TraitRow, String)> =
                children.iter().filter(|c| c.0.id == parent.id).collect();
            kids.sort_by_key(|c| order_key(c.1.display_order, c.1.id));
            let kids: Vec<Value> = kids
                .iter()
                .map(|c| json!([c.1.id, c.2, c.1.display_order]))
                .collect();
            json!([parent.id, parent.name, parent.display_order, kids])
        })
        .collect();
    json!({ "tags": listed })
}

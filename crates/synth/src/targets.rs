//! Targets, bands and trait groups: a few fixed archetypes that cover the rules (nested with
//! a bullseye, non-nested, an empty trait group, no bands at all), then generated ones.

use crate::catalog::Parent;
use domain::{Band, BandId, BandTrait, TargetBands, TargetId, TraitGroup, TraitGroupId, TraitId};
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

pub struct GroupSpec {
    pub id: i64,
    pub title: String,
    pub parent_id: i64,
    pub traits: Vec<TraitId>,
}

pub struct BandSpec {
    pub id: i64,
    pub bullseye: bool,
    pub group_ids: Vec<i64>,
}

pub struct TargetSpec {
    pub id: i64,
    pub title: String,
    pub bands: Vec<BandSpec>,
}

#[derive(Default)]
pub struct TargetSet {
    pub targets: Vec<TargetSpec>,
    pub groups: Vec<GroupSpec>,
    next_band: i64,
}

/// How many fixed archetypes come first.
pub const ARCHETYPES: usize = 6;

impl TargetSet {
    fn group(&mut self, parent: &Parent, traits: Vec<TraitId>, title: &str) -> i64 {
        let id = self.groups.len() as i64 + 1;
        self.groups.push(GroupSpec {
            id,
            title: title.to_owned(),
            parent_id: parent.id,
            traits,
        });
        id
    }

    /// A group with no traits at all: it matches nobody.
    fn empty_group(&mut self, parent: &Parent) -> i64 {
        self.group(parent, vec![], "Empty group (matches nobody)")
    }

    /// Adds a target whose band k requires `bands[k]` groups; the last band is the bullseye
    /// when `bullseye`.
    fn target(&mut self, title: &str, bands: Vec<Vec<i64>>, bullseye: bool) {
        let id = self.targets.len() as i64 + 1;
        let count = bands.len();
        let bands = bands
            .into_iter()
            .enumerate()
            .map(|(i, group_ids)| {
                self.next_band += 1;
                BandSpec {
                    id: self.next_band,
                    bullseye: bullseye && i + 1 == count,
                    group_ids,
                }
            })
            .collect();
        self.targets.push(TargetSpec {
            id,
            title: title.to_owned(),
            bands,
        });
    }

    /// The domain view of every target, for computing memberships while seeding.
    pub fn target_bands(&self, traits: &[BandTrait]) -> Vec<TargetBands> {
        self.targets
            .iter()
            .map(|t| {
                let bands = t.bands.iter().map(|b| {
                    Band::new(
                        BandId(b.id),
                        b.group_ids.iter().map(|g| {
                            let group = &self.groups[*g as usize - 1];
                            TraitGroup::new(TraitGroupId(group.id), group.traits.iter().copied())
                        }),
                    )
                });
                TargetBands::new(TargetId(t.id), bands, traits.iter().cloned())
            })
            .collect()
    }
}

/// `count` targets: the archetypes first, then generated nested targets.
pub fn build(parents: &[Parent], count: usize, rng: &mut ChaCha8Rng) -> TargetSet {
    let p = |id: i64| &parents[id as usize - 1];
    let mut set = TargetSet::default();

    // 1. Broad and nested, with a bullseye: most me_files match the outer band.
    let ages = set.group(p(2), p(2).child_ids().collect(), "Any age");
    let genders = set.group(p(3), p(3).child_range(0, 2), "Female or male");
    let owners = set.group(p(4), p(4).child_range(0, 1), "Home owners");
    set.target(
        "Broad nested (bullseye: owners)",
        vec![vec![ages], vec![ages, genders], vec![ages, genders, owners]],
        true,
    );
    // 2. Zip codes, narrowed by income.
    let zips = set.group(p(1), p(1).child_range(0, 300), "300 zip codes");
    let income = set.group(p(6), p(6).child_range(4, 8), "Income $75,000+");
    set.target(
        "Zip codes by income",
        vec![vec![zips], vec![zips, income]],
        true,
    );
    // 3. Not nested: the inner band's groups do not include the outer band's.
    let interests = set.group(p(7), p(7).child_range(0, 10), "Interests 1-10");
    let female = set.group(p(3), p(3).child_range(0, 1), "Female");
    let educated = set.group(p(8), p(8).child_ids().collect(), "Any education");
    set.target(
        "Not nested: interests, then women with any education",
        vec![vec![interests], vec![female, educated]],
        false,
    );
    // 4. An inner band with an empty trait group: nobody reaches it.
    let young = set.group(p(2), p(2).child_range(1, 3), "25-44");
    let empty = set.empty_group(p(4));
    set.target(
        "Inner band with an empty trait group",
        vec![vec![young], vec![young, empty]],
        true,
    );
    // 5. Multi-valued parents on both bands.
    let props = set.group(p(5), p(5).child_ids().collect(), "Any home property");
    let fancy = set.group(p(5), p(5).child_range(0, 3), "Multi-story or heated");
    let hobbies = set.group(p(7), p(7).child_range(10, 20), "Interests 11-20");
    set.target(
        "Home properties (bullseye: interests)",
        vec![vec![props], vec![fancy, hobbies]],
        true,
    );
    // 6. A draft target with no bands.
    set.target("Draft (no bands)", vec![], false);

    set.targets.truncate(count);
    while set.targets.len() < count {
        let band_count = rng.random_range(1..=4usize);
        let mut groups: Vec<i64> = Vec::new();
        let mut bands = Vec::new();
        for _ in 0..band_count {
            let parent = parents.choose(rng).expect("catalog is not empty");
            let n = parent.children.len();
            let from = rng.random_range(0..n);
            let width = rng.random_range(1..=(n / 2).max(1));
            let traits = parent.child_range(from, from + width);
            let id = set.group(parent, traits, &format!("{} subset", parent.name));
            groups.push(id);
            bands.push(groups.clone());
        }
        let title = format!("Generated target {}", set.targets.len() + 1);
        set.target(&title, bands, true);
    }
    set
}

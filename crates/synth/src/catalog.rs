//! The trait catalog: parents with their children, shaped like the platform's (a parent with
//! 1,000 zip codes, multi-valued parents, tied and NULL display orders).

use domain::{BandTrait, TraitId, TraitInfo};

/// How a me_file draws tags under one parent.
#[derive(Clone, Copy, Debug)]
pub enum Draw {
    /// At most one child, with this probability.
    One(f64),
    /// Zero to `max` distinct children, uniformly.
    Many(u32),
}

/// What tag values look like under a parent.
#[derive(Clone, Copy, Debug)]
pub enum Values {
    /// The child's name as the value (zip codes).
    ChildName,
    /// A mix of NULL, blank and explicit values (falls back to the child's name in snapshots).
    Mixed,
}

pub struct Parent {
    pub id: i64,
    pub name: &'static str,
    pub display_order: Option<i32>,
    pub children: Vec<Child>,
    pub draw: Draw,
    pub values: Values,
}

pub struct Child {
    pub id: i64,
    pub name: String,
    pub display_order: Option<i32>,
}

impl Parent {
    fn new(
        id: i64,
        name: &'static str,
        display_order: Option<i32>,
        draw: Draw,
        values: Values,
        children: Vec<(String, Option<i32>)>,
    ) -> Self {
        let children = children
            .into_iter()
            .enumerate()
            .map(|(k, (name, display_order))| Child {
                id: id * 10_000 + k as i64 + 1,
                name,
                display_order,
            })
            .collect();
        Self {
            id,
            name,
            display_order,
            children,
            draw,
            values,
        }
    }

    pub fn info(&self) -> TraitInfo {
        TraitInfo {
            id: TraitId(self.id),
            name: self.name.to_owned(),
            display_order: self.display_order,
        }
    }

    pub fn child_ids(&self) -> impl Iterator<Item = TraitId> + '_ {
        self.children.iter().map(|c| TraitId(c.id))
    }

    /// Children `from..to` (0-based, clamped).
    pub fn child_range(&self, from: usize, to: usize) -> Vec<TraitId> {
        let to = to.min(self.children.len());
        self.children[from.min(to)..to]
            .iter()
            .map(|c| TraitId(c.id))
            .collect()
    }
}

fn named(names: &[&str]) -> Vec<(String, Option<i32>)> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), Some(i as i32 + 1)))
        .collect()
}

/// The fixed catalog. Child ids are `parent_id * 10_000 + k`.
pub fn parents() -> Vec<Parent> {
    let zips = (0..1000)
        .map(|k| {
            let zip = 2100 + k * 7;
            (format!("{zip:05}"), Some(zip))
        })
        .collect();
    // Tied display orders (several 2s) and one NULL, as the platform's data has.
    let properties = [
        "Multi-story",
        "Central Heat/AC",
        "Fireplace - Gas",
        "Fireplace - Wood",
        "Pool",
        "Garage",
        "Basement",
        "Solar Panels",
        "Deck",
        "Garden",
        "Elevator",
        "Doorman",
    ]
    .iter()
    .enumerate()
    .map(|(i, n)| {
        (
            n.to_string(),
            if i == 11 {
                None
            } else {
                Some((i as i32 / 3) + 1)
            },
        )
    })
    .collect();
    let interests = (0..40)
        .map(|k| {
            let order = if k % 9 == 8 { None } else { Some(k / 5 + 1) };
            (format!("Interest {:02}", k + 1), order)
        })
        .collect();
    vec![
        Parent::new(
            1,
            "Home Zip Code",
            Some(1),
            Draw::One(0.95),
            Values::ChildName,
            zips,
        ),
        Parent::new(
            2,
            "Age Range",
            Some(2),
            Draw::One(0.9),
            Values::Mixed,
            named(&["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]),
        ),
        Parent::new(
            3,
            "Gender",
            Some(3),
            Draw::One(0.85),
            Values::Mixed,
            named(&["Female", "Male", "Non-binary"]),
        ),
        // Same display order as the zip codes: parents tie and sort by id.
        Parent::new(
            4,
            "Home Own/Rent",
            Some(1),
            Draw::One(0.7),
            Values::Mixed,
            named(&["Own", "Rent"]),
        ),
        Parent::new(
            5,
            "Home Properties",
            None,
            Draw::Many(4),
            Values::Mixed,
            properties,
        ),
        Parent::new(
            6,
            "Household Income",
            Some(6),
            Draw::One(0.6),
            Values::Mixed,
            named(&[
                "Under $25,000",
                "$25,000-$34,999",
                "$35,000-$49,999",
                "$50,000-$74,999",
                "$75,000-$99,999",
                "$100,000-$149,999",
                "$150,000-$199,999",
                "$200,000+",
            ]),
        ),
        Parent::new(
            7,
            "Interests",
            Some(7),
            Draw::Many(5),
            Values::Mixed,
            interests,
        ),
        Parent::new(
            8,
            "Education",
            Some(8),
            Draw::One(0.5),
            Values::Mixed,
            named(&[
                "High School",
                "Some College",
                "Bachelor's",
                "Master's",
                "Doctorate",
            ]),
        ),
    ]
}

/// Metadata of every child trait, as band metadata carries it.
pub fn band_traits(parents: &[Parent]) -> Vec<BandTrait> {
    parents
        .iter()
        .flat_map(|p| {
            p.children.iter().map(move |c| BandTrait {
                child: TraitInfo {
                    id: TraitId(c.id),
                    name: c.name.clone(),
                    display_order: c.display_order,
                },
                parent: Some(p.info()),
            })
        })
        .collect()
}

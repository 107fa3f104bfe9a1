//! Me_files, their tags and legacy rows, generated chunk by chunk. Each me_file draws from its
//! own random stream (seeded by the data set's seed and its id), so a me_file's tags do not
//! depend on the chunk size.

use crate::SeedOptions;
use crate::catalog::{Draw, Parent, Values};
use domain::{MeFileTagId, Tag, TargetBands, TraitId};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use repo::{Cell, TableRows};

pub struct Chunk {
    pub me_files: TableRows,
    pub me_file_tags: TableRows,
    pub populations: TableRows,
    pub offers: TableRows,
    pub ad_events: TableRows,
}

/// Band ids that do not exist: offers on them cannot be fixed by a backfill.
const MISSING_BAND_BASE: i64 = 900_000_000;

pub struct Generator<'a> {
    options: &'a SeedOptions,
    parents: &'a [Parent],
    targets: &'a [TargetBands],
    next_me_file: u64,
    next_tag: i64,
    next_population: i64,
    next_offer: i64,
    next_ad_event: i64,
    finished: bool,
}

impl<'a> Generator<'a> {
    pub fn new(
        options: &'a SeedOptions,
        parents: &'a [Parent],
        targets: &'a [TargetBands],
    ) -> Self {
        Self {
            options,
            parents,
            targets,
            next_me_file: 1,
            next_tag: 1,
            next_population: 1,
            next_offer: 1,
            next_ad_event: 1,
            finished: false,
        }
    }

    pub fn next_chunk(&mut self) -> Option<Chunk> {
        if self.finished {
            return None;
        }
        let mut chunk = Chunk {
            me_files: TableRows::new("me_files", &["id", "display_name"]),
            me_file_tags: TableRows::new(
                "me_file_tags",
                &["id", "me_file_id", "trait_id", "tag_value"],
            ),
            populations: TableRows::new(
                "target_populations",
                &["id", "target_band_id", "me_file_id"],
            ),
            offers: TableRows::new(
                "offers",
                &["id", "campaign_id", "me_file_id", "target_band_id"],
            ),
            ad_events: TableRows::new(
                "ad_events",
                &["id", "offer_id", "me_file_id", "target_band_id"],
            ),
        };
        let last = self.options.me_files;
        let end = (self.next_me_file + self.options.chunk_size).min(last + 1);
        for me_file_id in self.next_me_file..end {
            self.me_file(me_file_id as i64, &mut chunk);
        }
        self.next_me_file = end;
        if end > last {
            self.finished = true;
            if self.options.legacy_share > 0.0 && last > 0 && self.options.deleted_band_offers {
                self.unfixable_offers(&mut chunk);
            }
        }
        Some(chunk)
    }

    fn me_file(&mut self, me_file_id: i64, chunk: &mut Chunk) {
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.options.seed ^ (me_file_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        chunk.me_files.push(vec![
            Cell::Int(me_file_id),
            Cell::Text(format!("me_file {me_file_id}")),
        ]);
        let mut tags: Vec<Tag> = Vec::new();
        for parent in self.parents {
            let children: Vec<usize> = match parent.draw {
                Draw::One(p) => {
                    if rng.random_bool(p) {
                        vec![rng.random_range(0..parent.children.len())]
                    } else {
                        vec![]
                    }
                }
                Draw::Many(max) => {
                    let k = rng
                        .random_range(0..=max as usize)
                        .min(parent.children.len());
                    sample(&mut rng, parent.children.len(), k).into_vec()
                }
            };
            for index in children {
                let child = &parent.children[index];
                let value = match parent.values {
                    Values::ChildName => Some(child.name.clone()),
                    Values::Mixed => match rng.random_range(0..100) {
                        0..60 => None,
                        60..70 => Some(String::new()),
                        70..75 => Some("  ".to_owned()),
                        _ => Some(format!("{} (self-reported)", child.name)),
                    },
                };
                tags.push(self.tag(me_file_id, TraitId(child.id), value, chunk));
            }
        }
        // Now and then the platform holds the same tag twice for a me_file.
        if me_file_id % 997 == 0
            && let Some(first) = tags.first().cloned()
        {
            tags.push(self.tag(
                me_file_id,
                first.trait_id,
                Some("duplicate row".into()),
                chunk,
            ));
        }

        if self.options.legacy_share > 0.0 {
            self.legacy_rows(me_file_id, &tags, &mut rng, chunk);
        }
    }

    fn tag(
        &mut self,
        me_file_id: i64,
        trait_id: TraitId,
        value: Option<String>,
        chunk: &mut Chunk,
    ) -> Tag {
        let id = self.next_tag;
        self.next_tag += 1;
        chunk.me_file_tags.push(vec![
            Cell::Int(id),
            Cell::Int(me_file_id),
            Cell::Int(trait_id.0),
            value.clone().map(Cell::Text).unwrap_or(Cell::Null),
        ]);
        Tag {
            id: MeFileTagId(id),
            trait_id,
            tag_value: value,
        }
    }

    /// Rows from before snapshots existed: populations with a NULL snapshot and their offers
    /// and ad_events, plus a tenth as many orphan offers with no population at all.
    fn legacy_rows(
        &mut self,
        me_file_id: i64,
        tags: &[Tag],
        rng: &mut ChaCha8Rng,
        chunk: &mut Chunk,
    ) {
        let share = self.options.legacy_share;
        for target in self.targets {
            let draw: f64 = rng.random();
            let legacy = draw < share;
            let orphan = !legacy && draw < share * 1.1;
            if !legacy && !orphan {
                continue;
            }
            let Some(band) = target.band_for(tags) else {
                continue;
            };
            if legacy {
                chunk.populations.push(vec![
                    Cell::Int(self.next_population),
                    Cell::Int(band.id.0),
                    Cell::Int(me_file_id),
                ]);
                self.next_population += 1;
            }
            let offer = self.offer(target.target_id().0, me_file_id, band.id.0, chunk);
            if me_file_id % 2 == 0 {
                self.ad_event(offer, me_file_id, band.id.0, chunk);
            }
        }
    }

    fn offer(&mut self, campaign_id: i64, me_file_id: i64, band_id: i64, chunk: &mut Chunk) -> i64 {
        let id = self.next_offer;
        self.next_offer += 1;
        chunk.offers.push(vec![
            Cell::Int(id),
            Cell::Int(campaign_id),
            Cell::Int(me_file_id),
            Cell::Int(band_id),
        ]);
        id
    }

    fn ad_event(&mut self, offer_id: i64, me_file_id: i64, band_id: i64, chunk: &mut Chunk) {
        chunk.ad_events.push(vec![
            Cell::Int(self.next_ad_event),
            Cell::Int(offer_id),
            Cell::Int(me_file_id),
            Cell::Int(band_id),
        ]);
        self.next_ad_event += 1;
    }

    /// Offers and ad_events on bands that were deleted: no snapshot can be built for them.
    fn unfixable_offers(&mut self, chunk: &mut Chunk) {
        for k in 1..=3 {
            let band = MISSING_BAND_BASE + k;
            let offer = self.offer(1, 1, band, chunk);
            self.ad_event(offer, 1, band, chunk);
        }
    }
}

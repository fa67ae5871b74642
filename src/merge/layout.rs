//! The one computation behind every caller page: from what is known about each source,
//! the page's `meta`, the slices of each source under its window, and the upstream pages
//! still needed to answer (SPEC §3).
//!
//! `execute` calls it in a loop (lay out, fetch what is missing, learn, lay out again) and
//! `/users/plan` calls it once over what the cache knows. Pure: no I/O, no clock.

use super::paging::{slices, PageMeta, Slice};

/// What is known about one selected source when laying out a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceLayout {
    /// Contributes nothing: skipped by the plan, or failed.
    Absent,
    /// Not called yet for this query: its page 1 tells its total and page size.
    Unknown,
    /// Read by position: the upstream's total counts exactly the matching users, so only
    /// the pages under the window are needed.
    Direct { total: u64, page_size: u32 },
    /// Every upstream page is read and filtered by the gateway; `matching` is known once
    /// all `n_pages` are in hand.
    Full { n_pages: u64, matching: Option<u64> },
}

impl SourceLayout {
    /// Users this source contributes to the merged list, once known.
    fn count(&self) -> Option<u64> {
        match *self {
            SourceLayout::Absent => Some(0),
            SourceLayout::Unknown => None,
            SourceLayout::Direct { total, .. } => Some(total),
            SourceLayout::Full { matching, .. } => matching,
        }
    }
}

/// A caller page laid out over the sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Known once every source's count is.
    pub meta: Option<PageMeta>,
    /// Each source's part of the window (positions in its own matching order); with `meta`.
    pub slices: Vec<Slice>,
    /// Every upstream page, as (source index, page), that answering needs given what is
    /// known now; the caller fetches those not in hand and lays out again.
    pub needed: Vec<(usize, u64)>,
}

/// Lays out caller page `page` of `per_page` users over sources in merge order.
///
/// A direct source's window pages are needed as soon as the counts of the sources before it
/// are known, so a page whose sources are all known is fetched in a single round.
pub fn layout(sources: &[SourceLayout], page: u64, per_page: u64) -> Layout {
    let offset = page.saturating_sub(1).saturating_mul(per_page);
    let window_end = offset.saturating_add(per_page);
    let mut needed = Vec::new();
    // Where this source starts in the merged list, while every source before it is counted.
    let mut base = Some(0u64);
    for (source_idx, source) in sources.iter().enumerate() {
        match *source {
            SourceLayout::Absent => {}
            SourceLayout::Unknown => needed.push((source_idx, 1)),
            SourceLayout::Full { n_pages, .. } => needed.extend((1..=n_pages).map(|page| (source_idx, page))),
            SourceLayout::Direct { total, page_size } => {
                if let Some(base) = base {
                    let start = offset.max(base);
                    let end = window_end.min(base.saturating_add(total));
                    if start < end {
                        let slice = Slice {
                            source_idx,
                            start: start - base,
                            end: end - base,
                        };
                        needed.extend(slice.pages(page_size).map(|page| (source_idx, page)));
                    }
                }
            }
        }
        base = base.zip(source.count()).map(|(base, count)| base.saturating_add(count));
    }
    let counts: Option<Vec<Option<u64>>> = sources
        .iter()
        .map(|source| match source {
            SourceLayout::Absent => Some(None),
            other => other.count().map(Some),
        })
        .collect();
    let (meta, slices) = match counts {
        Some(counts) => {
            let total = counts
                .iter()
                .flatten()
                .fold(0u64, |sum, count| sum.saturating_add(*count));
            (
                Some(PageMeta::new(page, per_page, total)),
                slices(&counts, offset, per_page),
            )
        }
        None => (None, Vec::new()),
    };
    Layout { meta, slices, needed }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn unknown_sources_need_page_one_and_hide_the_meta() {
        let out = layout(&[SourceLayout::Unknown, SourceLayout::Unknown], 3, 25);
        assert_eq!(out.meta, None);
        assert_eq!(out.needed, vec![(0, 1), (1, 1)]);
    }

    #[test]
    fn known_direct_sources_need_only_window_pages_in_one_round() {
        let sources = [
            SourceLayout::Direct {
                total: 1250,
                page_size: 40,
            },
            SourceLayout::Direct {
                total: 730,
                page_size: 50,
            },
        ];
        let out = layout(&sources, 30, 25);
        assert_eq!(out.needed, vec![(0, 19)], "users 725..750 sit on TI page 19");
        assert_eq!(out.meta.unwrap().total, 1980);
        assert_eq!(layout(&sources, 50, 25).needed, vec![(0, 31), (0, 32)]);
        assert_eq!(
            layout(&sources, 60, 25).needed,
            vec![(1, 5)],
            "users 1475..1500 are TIS 225..250"
        );
        assert_eq!(layout(&sources, 80, 25).needed, vec![(1, 15)]);
        assert!(layout(&sources, 81, 25).needed.is_empty(), "past the end");
    }

    #[test]
    fn a_full_source_needs_every_page_and_blocks_later_windows_until_counted() {
        let sources = [
            SourceLayout::Full {
                n_pages: 3,
                matching: None,
            },
            SourceLayout::Direct {
                total: 10,
                page_size: 50,
            },
        ];
        let out = layout(&sources, 1, 25);
        assert_eq!(out.needed, vec![(0, 1), (0, 2), (0, 3)]);
        assert_eq!(out.meta, None);
    }

    /// One source of the model.
    #[derive(Debug, Clone)]
    struct ModelSource {
        failed: bool,
        /// Whether each upstream user (in upstream order) matches the caller's filters.
        matches: Vec<bool>,
        page_size: u32,
        /// The upstream is asked to filter and claims `matches` are all it returns; when it
        /// is loose it returns the non-matching ones too.
        pushed_filter: bool,
        /// A gateway-only filter or a sort: always read in full.
        planned_full: bool,
    }

    impl ModelSource {
        /// What the upstream returns for the pushed-down query: every user when no filter is
        /// pushed or the upstream is loose; only matching ones when it filters exactly.
        fn upstream(&self, loose: bool) -> Vec<(usize, bool)> {
            self.matches
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, matches)| !self.pushed_filter || loose || *matches)
                .collect()
        }
    }

    /// Facts the gateway keeps across requests, per source (the model of `cache::facts`).
    #[derive(Debug, Clone, Default)]
    struct ModelFacts {
        shape: Option<(u64, u32)>,
        verified: bool,
        loose: bool,
    }

    /// The executor's loop over the model: lay out, fetch what is missing, learn.
    fn answer(
        sources: &[ModelSource],
        loose: &[bool],
        facts: &mut [ModelFacts],
        page: u64,
        per_page: u64,
    ) -> (PageMeta, Vec<(usize, usize)>) {
        let mut in_hand: BTreeMap<(usize, u64), Vec<(usize, bool)>> = BTreeMap::new();
        for _round in 0..16 {
            let states: Vec<SourceLayout> = sources
                .iter()
                .zip(facts.iter())
                .enumerate()
                .map(|(idx, (source, facts))| {
                    if source.failed {
                        return SourceLayout::Absent;
                    }
                    let Some((total, page_size)) = facts.shape else {
                        return SourceLayout::Unknown;
                    };
                    let full = source.planned_full || facts.loose || (source.pushed_filter && !facts.verified);
                    if !full {
                        return SourceLayout::Direct { total, page_size };
                    }
                    let n_pages = total.div_ceil(u64::from(page_size)).max(1);
                    let all: Option<Vec<&Vec<(usize, bool)>>> =
                        (1..=n_pages).map(|page| in_hand.get(&(idx, page))).collect();
                    SourceLayout::Full {
                        n_pages,
                        matching: all.map(|pages| pages.iter().flat_map(|p| p.iter()).filter(|u| u.1).count() as u64),
                    }
                })
                .collect();
            let out = layout(&states, page, per_page);
            let missing: Vec<(usize, u64)> = out
                .needed
                .iter()
                .copied()
                .filter(|key| !in_hand.contains_key(key))
                .collect();
            if missing.is_empty() {
                let meta = out.meta.expect("nothing missing means everything is counted");
                // Full reads complete: the filter proved exact (or loose) over every page.
                for (idx, state) in states.iter().enumerate() {
                    if matches!(state, SourceLayout::Full { .. }) && sources[idx].pushed_filter && !facts[idx].loose {
                        facts[idx].verified = true;
                    }
                }
                let mut users = Vec::new();
                for slice in &out.slices {
                    let idx = slice.source_idx;
                    let page_size = facts[idx].shape.unwrap().1;
                    if let SourceLayout::Full { n_pages, .. } = states[idx] {
                        let matching: Vec<usize> = (1..=n_pages)
                            .flat_map(|page| in_hand[&(idx, page)].iter())
                            .filter(|u| u.1)
                            .map(|u| u.0)
                            .collect();
                        users.extend(
                            matching[slice.start as usize..slice.end as usize]
                                .iter()
                                .map(|u| (idx, *u)),
                        );
                    } else {
                        for (page, pos) in slice.positions(page_size) {
                            users.push((idx, in_hand[&(idx, page)][pos].0));
                        }
                    }
                }
                return (meta, users);
            }
            for (idx, page) in missing {
                let upstream = sources[idx].upstream(loose[idx]);
                let size = sources[idx].page_size;
                let total = upstream.len() as u64;
                let start = ((page - 1) * u64::from(size)).min(total) as usize;
                let end = (start + size as usize).min(upstream.len());
                let users = upstream[start..end].to_vec();
                let facts = &mut facts[idx];
                facts.shape = Some((total, size));
                if sources[idx].pushed_filter && users.iter().any(|u| !u.1) {
                    facts.loose = true;
                    facts.verified = false;
                }
                in_hand.insert((idx, page), users);
            }
        }
        panic!("the loop did not converge");
    }

    fn model_source() -> impl Strategy<Value = (ModelSource, bool)> {
        (
            any::<bool>(),
            // Users that match, then a mixed tail: an upstream whose looseness shows only
            // from some page on, as a forward walk meets it.
            (0usize..120, prop::collection::vec(prop::bool::weighted(0.5), 0..80)).prop_map(|(clean, tail)| {
                let mut matches = vec![true; clean];
                matches.extend(tail);
                matches
            }),
            1u32..=60,
            any::<bool>(),
            prop::bool::weighted(0.3),
            any::<bool>(),
        )
            .prop_map(|(failed, mut matches, page_size, pushed_filter, planned_full, loose)| {
                if !pushed_filter && !planned_full {
                    // No filter at all for this source: every user matches.
                    matches.iter_mut().for_each(|m| *m = true);
                }
                (
                    ModelSource {
                        failed: failed && matches.len() % 5 == 0,
                        matches,
                        page_size,
                        pushed_filter,
                        planned_full,
                    },
                    loose,
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the sources (loose or exact filters, page sizes, failed ones) and in
        /// whichever order the pages are asked, a walk yields every matching user once, in
        /// order, with the same total on every page.
        #[test]
        fn walks_are_exact_in_any_order(
            sources in prop::collection::vec(model_source(), 0..4),
            per_page in 1u64..=100,
            reverse in any::<bool>(),
            shuffle_seed in any::<u64>(),
        ) {
            let (sources, loose): (Vec<ModelSource>, Vec<bool>) = sources.into_iter().unzip();
            let expected: Vec<(usize, usize)> = sources.iter().enumerate()
                .filter(|(_, source)| !source.failed)
                .flat_map(|(idx, source)| source.matches.iter().enumerate().filter(|m| *m.1).map(move |(pos, _)| (idx, pos)))
                .collect();
            let total = expected.len() as u64;
            let total_pages = total.div_ceil(per_page);
            let mut order: Vec<u64> = (1..=total_pages + 1).collect();
            if reverse {
                order.reverse();
            } else if shuffle_seed % 3 == 0 {
                let mut rng = fastrand::Rng::with_seed(shuffle_seed);
                rng.shuffle(&mut order);
            }
            let mut facts = vec![ModelFacts::default(); sources.len()];
            let mut pages = BTreeMap::new();
            for page in order {
                let (meta, users) = answer(&sources, &loose, &mut facts, page, per_page);
                prop_assert_eq!(meta.total, total, "page {}", page);
                prop_assert_eq!(meta.total_pages, total_pages);
                pages.insert(page, users);
            }
            let walked: Vec<(usize, usize)> = pages.into_values().flatten().collect();
            let unique: BTreeSet<&(usize, usize)> = walked.iter().collect();
            prop_assert_eq!(unique.len(), walked.len(), "a user twice");
            prop_assert_eq!(walked, expected);
        }
    }
}

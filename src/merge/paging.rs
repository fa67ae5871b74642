//! Where a caller's page lies in the concatenated order of the sources (SPEC §3).
//!
//! Sources are laid end to end in configured order; a caller's page is a window
//! `[offset, offset + per_page)` over that line. Each source overlapping the window gets a
//! [`Slice`]; its upstream pages follow from the source's page size.

use std::ops::RangeInclusive;

/// A run of one source's users, `[start, end)` in that source's own order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub source_idx: usize,
    pub start: u64,
    pub end: u64,
}

impl Slice {
    /// The upstream pages (numbered from 1) that hold this slice.
    pub fn pages(&self, page_size: u32) -> RangeInclusive<u64> {
        let size = u64::from(page_size.max(1));
        (self.start / size + 1)..=((self.end - 1) / size + 1)
    }

    /// Each position of the slice as (upstream page, index within that page), in order.
    pub fn positions(&self, page_size: u32) -> impl Iterator<Item = (u64, usize)> {
        let size = u64::from(page_size.max(1));
        (self.start..self.end).map(move |position| (position / size + 1, (position % size) as usize))
    }
}

/// The slices of `[offset, offset + limit)` over sources of the given totals.
///
/// `None` is a source that contributes nothing (failed, or not asked).
pub fn slices(totals: &[Option<u64>], offset: u64, limit: u64) -> Vec<Slice> {
    let window_end = offset.saturating_add(limit);
    let mut base = 0u64;
    let mut out = Vec::new();
    for (source_idx, total) in totals.iter().enumerate() {
        let Some(total) = *total else { continue };
        let source_end = base.saturating_add(total);
        let start = offset.max(base);
        let end = window_end.min(source_end);
        if start < end {
            out.push(Slice {
                source_idx,
                start: start - base,
                end: end - base,
            });
        }
        base = source_end;
    }
    out
}

/// The `meta` numbers of one caller page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageMeta {
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
    pub total_pages: u64,
    pub has_more: bool,
}

impl PageMeta {
    pub fn new(page: u64, per_page: u64, total: u64) -> PageMeta {
        let total_pages = total.div_ceil(per_page.max(1));
        PageMeta {
            page,
            per_page,
            total,
            total_pages,
            has_more: page < total_pages,
        }
    }

    /// Position of the page's first user in the merged order.
    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.per_page)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_window_spanning_two_sources() {
        assert_eq!(
            slices(&[Some(30), Some(10)], 25, 10),
            vec![
                Slice {
                    source_idx: 0,
                    start: 25,
                    end: 30
                },
                Slice {
                    source_idx: 1,
                    start: 0,
                    end: 5
                },
            ]
        );
        assert_eq!(
            slices(&[None, Some(10)], 0, 5),
            vec![Slice {
                source_idx: 1,
                start: 0,
                end: 5
            }]
        );
        assert!(slices(&[Some(3), Some(0)], 3, 5).is_empty());
    }

    #[test]
    fn pages_of_a_slice() {
        let slice = Slice {
            source_idx: 0,
            start: 37,
            end: 81,
        };
        assert_eq!(slice.pages(40), 1..=3);
        assert_eq!(slice.positions(40).next(), Some((1, 37)));
        assert_eq!(slice.positions(40).last(), Some((3, 0)));
    }

    #[test]
    fn meta_of_empty_and_past_the_end() {
        assert_eq!(
            PageMeta::new(1, 25, 0),
            PageMeta {
                page: 1,
                per_page: 25,
                total: 0,
                total_pages: 0,
                has_more: false
            }
        );
        assert!(!PageMeta::new(9, 25, 100).has_more);
        assert!(PageMeta::new(3, 25, 76).has_more);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Walking every page, fetching upstream pages as a naive paged source would serve
        /// them, yields each user exactly once in concatenated order.
        #[test]
        fn walking_all_pages_yields_everyone_once_in_order(
            sources in prop::collection::vec((0u64..400, 1u32..=60, any::<bool>()), 0..4),
            per_page in 1u64..=100,
        ) {
            // (total, upstream page size, failed?) per source; failed sources contribute nothing.
            let totals: Vec<Option<u64>> = sources.iter().map(|(t, _, failed)| (!failed).then_some(*t)).collect();
            let expected: Vec<(usize, u64)> = totals.iter().enumerate()
                .flat_map(|(idx, t)| (0..t.unwrap_or(0)).map(move |pos| (idx, pos)))
                .collect();
            let total = expected.len() as u64;
            let total_pages = total.div_ceil(per_page);
            let mut walked = Vec::new();
            for page in 1..=total_pages + 1 {
                let meta = PageMeta::new(page, per_page, total);
                prop_assert_eq!(meta.total_pages, total_pages);
                prop_assert_eq!(meta.has_more, page < total_pages);
                let mut on_page = Vec::new();
                for slice in slices(&totals, meta.offset(), per_page) {
                    let size = sources[slice.source_idx].1;
                    let pages = slice.pages(size);
                    // Only the pages the slice needs: at most one partial page at each end.
                    let needed = (slice.end - slice.start).div_ceil(u64::from(size)) + 1;
                    prop_assert!(pages.end() - pages.start() < needed);
                    for (upstream_page, idx) in slice.positions(size) {
                        prop_assert!(pages.contains(&upstream_page));
                        let position = (upstream_page - 1) * u64::from(size) + idx as u64;
                        prop_assert!(position < totals[slice.source_idx].unwrap());
                        on_page.push((slice.source_idx, position));
                    }
                }
                let expected_len = if page <= total_pages { per_page.min(total - meta.offset()) } else { 0 };
                prop_assert_eq!(on_page.len() as u64, expected_len);
                walked.extend(on_page);
            }
            prop_assert_eq!(walked, expected);
        }
    }
}

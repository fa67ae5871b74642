//! Builds the merged page: the ordered (source, upstream page, index) of each user.

use super::paging::Slice;

/// Where one user of the caller's page lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPosition {
    pub source_idx: usize,
    pub upstream_page: u64,
    pub idx: usize,
}

/// The positions of a page's users in merged order. `page_size` gives a source's page size.
pub fn concat_positions(slices: &[Slice], page_size: impl Fn(usize) -> u32) -> Vec<UserPosition> {
    slices
        .iter()
        .flat_map(|slice| {
            slice
                .positions(page_size(slice.source_idx))
                .map(move |(upstream_page, idx)| UserPosition {
                    source_idx: slice.source_idx,
                    upstream_page,
                    idx,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_source_order_then_upstream_order() {
        let slices = [
            Slice {
                source_idx: 0,
                start: 5,
                end: 7,
            },
            Slice {
                source_idx: 1,
                start: 0,
                end: 2,
            },
        ];
        let positions = concat_positions(&slices, |idx| if idx == 0 { 6 } else { 50 });
        let compact: Vec<_> = positions
            .iter()
            .map(|p| (p.source_idx, p.upstream_page, p.idx))
            .collect();
        assert_eq!(compact, [(0, 1, 5), (0, 2, 0), (1, 1, 0), (1, 1, 1)]);
    }
}

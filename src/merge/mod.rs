//! Exact re-pagination over several paged sources. Pure: no I/O, no clocks.
//!
//! [`paging`] maps a caller's page onto each source's upstream pages; [`merge`] turns
//! those slices into the ordered list of user positions; [`sort`] is the gateway's sort.

#[allow(clippy::module_inception)]
pub mod merge;
pub mod paging;
pub mod sort;

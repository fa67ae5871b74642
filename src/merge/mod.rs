//! Exact re-pagination over several paged sources. Pure: no I/O, no clocks.
//!
//! [`layout`] lays a caller page out over what is known of each source (its `meta`, each
//! source's slice, the upstream pages still needed); [`paging`] is the window arithmetic
//! underneath (slices, their upstream pages and positions); [`sort`] is the gateway's sort.

pub mod layout;
pub mod paging;
pub mod sort;

//! State that outlives a request, each kind in one typed store keyed by what it depends on
//! (STYLE rule 16): upstream pages ([`pages`]), what was learned about each source's query
//! ([`facts`]), where full reads' matching users are, filtered and sorted ([`views`]), and
//! whole `/users` responses ([`responses`]).
//!
//! Knows nothing of HTTP. Freshness uses tokio's clock (tests pause it).

pub mod facts;
pub mod pages;
pub mod responses;
pub mod views;

pub use facts::{FactsStore, QueryKey, Shape, SourceFacts};
pub use pages::{CachedPage, Freshness, Lookup, PageCache, PageKey};
pub use responses::{ResponseCache, Stored};
pub use views::ViewCache;

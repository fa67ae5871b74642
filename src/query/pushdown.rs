//! What a provider's API can do with a query's filters, in terms the planner understands.
//!
//! Adapters (`providers/`) implement [`PushDown`] and build [`PushedQuery`] values; the
//! planner only calls them. So `providers/` depends on `query/`, never the reverse. Pure.

use std::fmt;

use super::filter::{FilterName, Filters};

/// The provider-side part of a query, in the provider's own parameter names.
///
/// Built by adapters only; elsewhere it is an opaque cache-key component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PushedQuery {
    pairs: Vec<(&'static str, String)>,
}

impl PushedQuery {
    pub fn new(pairs: Vec<(&'static str, String)>) -> PushedQuery {
        PushedQuery { pairs }
    }

    pub fn push(&mut self, name: &'static str, value: String) {
        self.pairs.push((name, value));
    }

    pub fn pairs(&self) -> &[(&'static str, String)] {
        &self.pairs
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl fmt::Display for PushedQuery {
    /// `k=v&k=v` in a fixed order: stable as a cache key and readable in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.pairs.iter().map(|(key, value)| (*key, value.as_str())))
            .finish();
        f.write_str(&encoded)
    }
}

/// A provider's answer to "what of these filters can you apply?".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushdown {
    /// The upstream parameters to send.
    pub pushed: PushedQuery,
    /// Filters the upstream applies with the gateway's meaning (the gateway re-checks them).
    pub pushed_filters: Vec<FilterName>,
    /// Set when no user of this provider can match: the source is not called.
    pub cannot_match: Option<String>,
    /// What the gateway assumes about the upstream to push a filter down (shown in plans).
    pub assumptions: Vec<String>,
    /// Why a filter the provider supports was not pushed down (shown in plans).
    pub notes: Vec<String>,
}

/// Operator switches that change pushdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushdownOptions {
    /// `GATEWAY_TI_ROLE_PUSHDOWN`.
    pub ti_role_pushdown: bool,
}

impl Default for PushdownOptions {
    fn default() -> PushdownOptions {
        PushdownOptions { ti_role_pushdown: true }
    }
}

/// Implemented by each provider adapter.
pub trait PushDown {
    /// Splits a query's filters into what this provider's API applies and what it cannot.
    fn push_down(&self, filters: &Filters, options: &PushdownOptions) -> Pushdown;
}

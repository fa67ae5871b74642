//! Per called source, how it is read and why: from the plan (what the query alone decides)
//! and the facts kept about the source's pushed-down query.
//!
//! A direct read takes only the pages under the caller's window and trusts the upstream's
//! total. That is exact only when the upstream applies its filter exactly, so a pushed-down
//! filter is first checked by one full read; a filter that proved loose keeps the source on
//! full reads for as long as the facts live, so `meta.total` never changes between pages.

use crate::cache::{FactsStore, PageKey, QueryKey, Shape, SourceFacts};
use crate::providers::PushedQuery;
use crate::query::filter::Filters;
use crate::query::plan::{Plan, ReadMode};

/// One called source being read for one query.
pub(super) struct Read<'a> {
    pub source_idx: usize,
    pub pushed: &'a PushedQuery,
    pub query: QueryKey,
    /// Every filter of the query: the gateway applies them all to this source's users.
    pub filters: &'a Filters,
    /// What the upstream was asked to filter by: a user outside it means a loose upstream.
    pub upstream_must_match: &'a Filters,
    /// Why the plan reads every page (gateway-only filters, sort, an id scan), if it does.
    planned_full: Option<&'a str>,
}

/// How a source is read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadChoice {
    /// Total and page size, once any page of the query was read.
    pub shape: Option<Shape>,
    pub full: bool,
    pub reason: String,
}

fn age_secs(at: tokio::time::Instant) -> u64 {
    at.elapsed().as_secs()
}

impl<'a> Read<'a> {
    /// One read per called source, as planned.
    pub fn all(plan: &'a Plan, filters: &'a Filters, key: impl Fn(usize, &PushedQuery) -> QueryKey) -> Vec<Read<'a>> {
        plan.calls()
            .map(|(source_idx, call)| Read {
                source_idx,
                pushed: &call.pushed,
                query: key(source_idx, &call.pushed),
                filters,
                upstream_must_match: &call.upstream_must_match,
                planned_full: match &call.read {
                    ReadMode::Full { reason } => Some(reason.as_str()),
                    ReadMode::Direct => None,
                },
            })
            .collect()
    }

    /// Every page of one pushed-down query, for `/users/{id}`.
    pub fn scan(source_idx: usize, pushed: &'a PushedQuery, no_filters: &'a Filters, query: QueryKey) -> Read<'a> {
        Read {
            source_idx,
            pushed,
            query,
            filters: no_filters,
            upstream_must_match: no_filters,
            planned_full: Some("looking for one user"),
        }
    }

    pub fn page_key(&self, page: u64) -> PageKey {
        PageKey::new(&self.query, page)
    }

    /// How to read the source given what is known of it now.
    pub fn choose(&self, store: &FactsStore, max_pages: u64) -> ReadChoice {
        match store.peek(&self.query) {
            Some(facts) => self.choose_with(&facts.lock().expect("facts lock"), max_pages),
            None => self.choose_with(&SourceFacts::default(), max_pages),
        }
    }

    pub fn choose_with(&self, facts: &SourceFacts, max_pages: u64) -> ReadChoice {
        let shape = facts.shape();
        let choice = |full: bool, reason: String| ReadChoice { shape, full, reason };
        if let Some(reason) = self.planned_full {
            return choice(true, reason.to_owned());
        }
        if let Some(loose) = facts.loose() {
            return choice(
                true,
                format!(
                    "the upstream returned users outside its pushed-down filter (upstream page {}, {} s ago): every \
                     page is read and filtered by the gateway, so totals stay exact",
                    loose.page,
                    age_secs(loose.at)
                ),
            );
        }
        if self.upstream_must_match.is_empty() {
            return choice(
                false,
                "nothing to filter: only the upstream pages under the requested window are read, and the upstream's \
                 total is used"
                    .to_owned(),
            );
        }
        if let Some(at) = facts.verified_at() {
            return choice(
                false,
                format!(
                    "the upstream's filter proved exact over a full read {} s ago: only the pages under the window are \
                     read, and every page read is still checked",
                    age_secs(at)
                ),
            );
        }
        match shape {
            Some(shape) if shape.n_pages() > max_pages => choice(
                false,
                format!(
                    "the upstream's filter is trusted unchecked: checking it would read {} pages, more than \
                     GATEWAY_MAX_UPSTREAM_PAGES ({max_pages}); every page read is still checked",
                    shape.n_pages()
                ),
            ),
            _ => choice(
                true,
                "first read of this pushed-down query: every page is read once to check that the upstream applies \
                 its filter exactly; later reads take only the pages under the window"
                    .to_owned(),
            ),
        }
    }

    /// Whether a completed full read of this source checks its upstream's filter.
    pub fn verifies_filter(&self) -> bool {
        !self.upstream_must_match.is_empty()
    }
}

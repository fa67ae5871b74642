//! The dry run behind `GET /users/plan`: the same read choice and layout as a request,
//! over the facts and pages the cache holds now. Never calls an upstream.

use tokio::time::Instant;

use super::reads::{Read, ReadChoice};
use super::Executor;
use crate::cache::Freshness;
use crate::cache::SourceFacts;
use crate::merge::layout::{layout, SourceLayout};
use crate::query::parse::ListQuery;
use crate::query::plan::Plan;

/// What the gateway knows about the upstream's filter for this query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterFacts {
    /// No filter is pushed down.
    NotPushed,
    /// Pushed down, not yet checked by a full read.
    Unchecked,
    /// A full read found only matching users, this many seconds ago.
    Exact { checked_secs_ago: u64 },
    /// The upstream returned users outside the filter, first on this page.
    Loose { page: u64, seen_secs_ago: u64 },
}

/// The facts kept about one source's pushed-down query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactsView {
    pub total: Option<u64>,
    pub page_size: Option<u32>,
    pub learned_secs_ago: Option<u64>,
    pub filter: FilterFacts,
}

fn secs_since(at: Instant) -> u64 {
    at.elapsed().as_secs()
}

impl FactsView {
    fn of(facts: &SourceFacts, filter_pushed: bool) -> FactsView {
        let filter = match (facts.loose(), facts.verified_at()) {
            _ if !filter_pushed => FilterFacts::NotPushed,
            (Some(loose), _) => FilterFacts::Loose {
                page: loose.page,
                seen_secs_ago: secs_since(loose.at),
            },
            (None, Some(at)) => FilterFacts::Exact {
                checked_secs_ago: secs_since(at),
            },
            (None, None) => FilterFacts::Unchecked,
        };
        FactsView {
            total: facts.shape().map(|shape| shape.total),
            page_size: facts.shape().map(|shape| shape.page_size),
            learned_secs_ago: facts.learned_at().map(secs_since),
            filter,
        }
    }
}

/// What a plan would read from one source, as far as the cache can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePages {
    pub source_idx: usize,
    /// Direct or full, and why (from the plan and the facts).
    pub choice: ReadChoice,
    pub facts: FactsView,
    /// Pages of the pushed-down query; known once any of its pages was read.
    pub upstream_pages: Option<u64>,
    /// The pages the request would read; unknown until the totals it depends on are known.
    pub to_read: Option<Vec<u64>>,
    /// How many of those (or of page 1, when they are unknown) are cached now and would be
    /// served without waiting for an upstream: fresh, or stale within the
    /// stale-while-revalidate window.
    pub cached: u64,
    /// How many of the `cached` ones are stale: served at once while a background refresh
    /// replaces them.
    pub stale: u64,
    /// A full read of more pages than `GATEWAY_MAX_UPSTREAM_PAGES`: the query would be refused.
    pub over_limit: bool,
}

pub(super) async fn explain(executor: &Executor, query: &ListQuery, plan: &Plan) -> Vec<SourcePages> {
    let reads = Read::all(plan, &query.filters, |idx, pushed| executor.query_key(idx, pushed));
    let max_pages = executor.max_pages;
    let mut states = vec![SourceLayout::Absent; executor.sources.len()];
    let mut described = Vec::new();
    for read in &reads {
        let (choice, facts) = match executor.facts.peek(&read.query) {
            Some(facts) => {
                let facts = facts.lock().expect("facts lock");
                (
                    read.choose_with(&facts, max_pages),
                    FactsView::of(&facts, read.verifies_filter()),
                )
            }
            None => (
                read.choose_with(&SourceFacts::default(), max_pages),
                FactsView::of(&SourceFacts::default(), read.verifies_filter()),
            ),
        };
        let state = match choice.shape {
            None => SourceLayout::Unknown,
            Some(shape) if !choice.full => SourceLayout::Direct {
                total: shape.total,
                page_size: shape.page_size,
            },
            Some(shape) => {
                let n_pages = shape.n_pages();
                let mut matching = (n_pages <= max_pages).then_some(0u64);
                for page in 1..=n_pages.min(max_pages) {
                    let Some(count) = matching else { break };
                    matching = executor.pages.peek(&read.page_key(page)).await.map(|cached| {
                        count
                            + cached
                                .page
                                .users
                                .iter()
                                .filter(|user| read.filters.matches(user))
                                .count() as u64
                    });
                }
                SourceLayout::Full { n_pages, matching }
            }
        };
        states[read.source_idx] = state;
        described.push((read, choice, facts));
    }
    let laid_out = layout(&states, query.page, query.per_page);
    let mut explained = Vec::new();
    for (read, choice, facts) in described {
        let source_idx = read.source_idx;
        let to_read = pages_to_read(&states, &laid_out.needed, source_idx, max_pages);
        let (mut cached, mut stale) = (0, 0);
        for page in to_read.clone().unwrap_or_else(|| vec![1]) {
            match executor.pages.freshness(&read.page_key(page)).await {
                Some(Freshness::Fresh) => cached += 1,
                Some(Freshness::Revalidatable) => {
                    cached += 1;
                    stale += 1;
                }
                // Kept only to stand in if its refetch fails: a request waits for that refetch.
                Some(Freshness::Expired) | None => {}
            }
        }
        let upstream_pages = choice.shape.map(|shape| shape.n_pages());
        explained.push(SourcePages {
            source_idx,
            over_limit: choice.full && upstream_pages.is_some_and(|n| n > max_pages),
            choice,
            facts,
            upstream_pages,
            to_read,
            cached,
            stale,
        });
    }
    explained
}

/// The pages a request would read from one source; unknown while they depend on totals
/// not yet known (of this source, or of a directly read one before it).
fn pages_to_read(
    states: &[SourceLayout],
    needed: &[(usize, u64)],
    source_idx: usize,
    max_pages: u64,
) -> Option<Vec<u64>> {
    let counted_before = states[..source_idx]
        .iter()
        .all(|state| !matches!(state, SourceLayout::Unknown | SourceLayout::Full { matching: None, .. }));
    match states[source_idx] {
        SourceLayout::Unknown | SourceLayout::Absent => None,
        SourceLayout::Full { n_pages, .. } => Some((1..=n_pages.min(max_pages)).collect()),
        SourceLayout::Direct { .. } => counted_before.then(|| {
            needed
                .iter()
                .filter(|(idx, _)| *idx == source_idx)
                .map(|(_, page)| *page)
                .collect()
        }),
    }
}

//! Runs a [`Plan`]: a small loop of "lay the page out over what is known, fetch what is
//! missing, learn from it" (SPEC §3), fanning out to the sources concurrently through the
//! page cache, and turning failures into per-source status.
//!
//! - [`pages`]: the pages one request holds, and each fetched page checked against the
//!   source's facts (a contradiction fails the source, never serves a user twice).
//! - [`reads`]: per called source, how it is read (direct or full) and why, from the plan
//!   and the facts kept about it.
//! - [`explain`]: the same layout over what the cache knows, for `GET /users/plan`.
//! - [`reports`]: per-source status for the caller.
//! - [`export`]: `GET /users/export`, the whole list walked a chunk at a time.
//! - [`revalidate`]: the background refresh of a page served stale (stale-while-revalidate).
//!
//! Knows nothing of HTTP or of upstream field names.

mod explain;
mod export;
mod pages;
mod reads;
mod reports;
mod revalidate;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CachedPage, FactsStore, Lookup, PageCache, QueryKey, ViewCache};
use crate::merge::layout::{layout, Layout, SourceLayout};
use crate::merge::paging::PageMeta;
use crate::model::User;
use crate::providers::client::SourceClient;
use crate::providers::{IdLookup, PushedQuery, SourceError};
use crate::query::filter::Filters;
use crate::query::parse::ListQuery;
use crate::query::plan::Plan;
use crate::raw_records::RawRecords;

pub use explain::{FactsView, FilterFacts, SourcePages};
pub use export::{ExportSummary, ExportWalk};
use pages::PageSet;
use reads::Read;
pub use reads::ReadChoice;
pub use reports::{SourceReport, SourceStatus, Staleness};

/// What one caller request carries down to the upstream calls.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    pub request_id: &'a str,
    /// The caller sent `Cache-Control: no-cache`: refetch instead of reading the cache.
    pub refresh: bool,
    /// Every upstream attempt, retry and wait of this request ends by then.
    pub deadline: tokio::time::Instant,
    /// Tells this request's facts from other requests' (see `cache::facts`).
    generation: u64,
}

impl<'a> CallContext<'a> {
    pub fn new(request_id: &'a str, refresh: bool, deadline: tokio::time::Instant) -> CallContext<'a> {
        CallContext {
            request_id,
            refresh,
            deadline,
            generation: next_generation(),
        }
    }
}

/// A new reader's mark on the facts it learns (a request, or a background refresh).
fn next_generation() -> u64 {
    static GENERATION: AtomicU64 = AtomicU64::new(1);
    GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// A user inside a cached page: no copy of the user is made to answer a request.
#[derive(Debug, Clone)]
pub struct UserRef {
    page: Arc<CachedPage>,
    idx: usize,
}

impl UserRef {
    /// The packed records of this user's page, and this user's place among them.
    pub fn raw_record(&self) -> (&RawRecords, usize) {
        (&self.page.page.raw, self.idx)
    }
}

impl std::ops::Deref for UserRef {
    type Target = User;

    fn deref(&self) -> &User {
        &self.page.page.users[self.idx]
    }
}

#[derive(Debug)]
pub struct ListResult {
    pub meta: PageMeta,
    pub users: Vec<UserRef>,
    pub reports: Vec<SourceReport>,
    /// Upstream calls this request made (0: answered from the cache).
    pub upstream_calls: usize,
    /// Every upstream page the result was computed from, by (source, page): the same
    /// pages (by identity) and query always give the same result.
    pub inputs: Vec<Arc<CachedPage>>,
    /// Whether the result depends on the input pages alone (no source failed or was
    /// served stale), so its rendering may be memoized.
    pub memoizable: bool,
    /// The stale pages of the sources reported `ok` (`Cache-Status`: `fwd=stale` when one
    /// stood in for a failed call, else `ttl=-N`).
    pub stale: Option<Staleness>,
}

#[derive(Debug)]
pub enum ListError {
    /// Every called source failed.
    AllFailed {
        reports: Vec<SourceReport>,
    },
    TooManyPages(TooManyPages),
}

/// Answering would read more pages of one source than the configured ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("answering needs {needed} upstream pages of one source, more than the limit of {limit} (GATEWAY_MAX_UPSTREAM_PAGES)")]
pub struct TooManyPages {
    pub source_idx: usize,
    pub needed: u64,
    pub limit: u64,
}

impl From<TooManyPages> for ListError {
    fn from(error: TooManyPages) -> ListError {
        ListError::TooManyPages(error)
    }
}

#[derive(Debug)]
pub struct Found {
    pub user: Option<UserRef>,
    pub upstream_calls: usize,
    /// The pages served past their freshness, if any.
    pub stale: Option<Staleness>,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    TooManyPages(#[from] TooManyPages),
}

/// Rounds of the loop before the sources still unsettled are given up on: each round
/// fetches something new, and a source settles within a few (page 1, its window or all its
/// pages, once more after forgetting facts that another request learned).
const MAX_ROUNDS: usize = 12;

/// Pages one `/users/{id}` scan asks for at once, in upstream order, before looking.
const SCAN_BATCH: u64 = 8;

pub struct Executor {
    /// Shared with background refreshes, which outlive the request that started them.
    sources: Vec<Arc<SourceClient>>,
    pages: PageCache,
    facts: FactsStore,
    /// Where full reads' matching users are, filtered and sorted, per set of pages.
    views: ViewCache,
    /// Ceiling on the upstream pages one query may read from one source.
    max_pages: u64,
    /// The deadline of a background refresh: a request's, counted from when it starts.
    refresh_deadline: Duration,
}

impl Executor {
    pub fn new(
        sources: Vec<SourceClient>,
        pages: PageCache,
        facts: FactsStore,
        views: ViewCache,
        max_pages: u64,
        refresh_deadline: Duration,
    ) -> Executor {
        Executor {
            sources: sources.into_iter().map(Arc::new).collect(),
            pages,
            facts,
            views,
            max_pages,
            refresh_deadline,
        }
    }

    pub fn sources(&self) -> &[Arc<SourceClient>] {
        &self.sources
    }

    /// Redis, when replicas share it (for `/readyz`).
    pub fn redis(&self) -> Option<&crate::cluster::Redis> {
        self.pages.shared().map(|shared| shared.redis())
    }

    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    /// Changes since start that can alter an answer before its pages expire (a page
    /// replaced or dropped, a filter found loose, a circuit opened): a response built
    /// while this stood still answers the same request as long as its pages are fresh.
    pub fn revision(&self) -> u64 {
        let openings: u64 = self.sources.iter().map(|client| client.circuit_openings()).sum();
        self.pages.revision().wrapping_add(openings)
    }

    /// Bytes the executor's stores hold, as weighed (for `/metrics`): pages, facts, views.
    pub async fn cache_bytes(&self) -> [(&'static str, u64); 3] {
        [
            ("pages", self.pages.weighted_size().await),
            ("facts", self.facts.weighted_size()),
            ("views", self.views.weighted_size()),
        ]
    }

    fn query_key(&self, source_idx: usize, pushed: &PushedQuery) -> QueryKey {
        QueryKey {
            source: self.sources[source_idx].name.clone(),
            pushed: Arc::from(pushed.to_string()),
        }
    }

    /// What every read contributes to the layout now, and the layout. A full read over the
    /// ceiling refuses the query.
    fn lay_out(
        &self,
        reads: &[Read<'_>],
        set: &PageSet,
        page: u64,
        per_page: u64,
    ) -> Result<(Layout, Vec<SourceLayout>), TooManyPages> {
        let mut states = vec![SourceLayout::Absent; self.sources.len()];
        for read in reads {
            states[read.source_idx] = self.state_of(read, set)?;
        }
        Ok((layout(&states, page, per_page), states))
    }

    fn state_of(&self, read: &Read<'_>, set: &PageSet) -> Result<SourceLayout, TooManyPages> {
        if set.failed(read.source_idx) {
            return Ok(SourceLayout::Absent);
        }
        let choice = read.choose(&self.facts, self.max_pages);
        let Some(shape) = choice.shape else {
            return Ok(SourceLayout::Unknown);
        };
        if !choice.full {
            return Ok(SourceLayout::Direct {
                total: shape.total,
                page_size: shape.page_size,
            });
        }
        let n_pages = shape.n_pages();
        if n_pages > self.max_pages {
            return Err(TooManyPages {
                source_idx: read.source_idx,
                needed: n_pages,
                limit: self.max_pages,
            });
        }
        Ok(SourceLayout::Full {
            n_pages,
            matching: set.matching_count(read, n_pages, &self.views),
        })
    }

    /// One caller page (SPEC §3): lay out, fetch the missing pages, learn, until the
    /// layout needs nothing more. A source failing at any point drops out and the page is
    /// laid out again over the others, so it stays exact for what answered.
    pub async fn list(&self, query: &ListQuery, plan: &Plan, ctx: &CallContext<'_>) -> Result<ListResult, ListError> {
        let reads = Read::all(plan, &query.filters, |idx, pushed| self.query_key(idx, pushed));
        let mut set = PageSet::at(self.revision());
        if !ctx.refresh {
            for read in reads
                .iter()
                .filter(|read| read.choose(&self.facts, self.max_pages).full)
            {
                set.adopt_view(read, &self.views);
            }
        }
        let mut rounds = 0;
        let (layout, states) = loop {
            let (layout, states) = self.lay_out(&reads, &set, query.page, query.per_page)?;
            let missing = set.missing(&layout.needed);
            if missing.is_empty() && layout.meta.is_some() {
                break (layout, states);
            }
            rounds += 1;
            if rounds > MAX_ROUNDS {
                set.give_up(&missing, &reads);
                continue;
            }
            self.fetch(&reads, missing, &mut set, ctx).await;
        };
        let meta = layout.meta.expect("the loop ends with a complete layout");
        set.learn_full_reads(&reads, &states, &self.facts);

        let users = if plan.sorted {
            let start = meta.offset().min(meta.total) as usize;
            let end = meta.offset().saturating_add(query.per_page).min(meta.total) as usize;
            set.sorted(&reads, &query.filters, &query.sort, start..end, &self.views)
        } else {
            set.window(&layout.slices, &states, &reads, &self.views)
        };

        let reports = reports::reports(plan, &set, &states);
        if !reads.is_empty() && reads.iter().all(|read| set.failed(read.source_idx)) {
            return Err(ListError::AllFailed { reports });
        }
        let stale = Staleness::merged(reports.iter().map(|report| match report.status {
            SourceStatus::Ok { stale, .. } => stale,
            SourceStatus::Failed(_) | SourceStatus::Skipped { .. } => None,
        }));
        // A stale answer shows ages that change by the second, and must never be answered
        // by the body memoized for the same pages while they were fresh.
        let memoizable = !reports
            .iter()
            .any(|report| matches!(report.status, SourceStatus::Failed(_)))
            && stale.is_none();
        let (upstream_calls, inputs) = set.into_inputs();
        Ok(ListResult {
            meta,
            users,
            reports,
            upstream_calls,
            inputs,
            memoizable,
            stale,
        })
    }

    /// Fetches pages concurrently through the cache (the per-source permits bound what is in
    /// flight) and checks each against its source's facts. A page stale within the
    /// stale-while-revalidate window is taken as it is, and refreshed in the background.
    async fn fetch(&self, reads: &[Read<'_>], wanted: Vec<(usize, u64)>, set: &mut PageSet, ctx: &CallContext<'_>) {
        // Fresh pages first, one cheap lookup each: a cached full read asks for hundreds.
        let mut results = Vec::with_capacity(wanted.len());
        let mut to_fetch = Vec::new();
        for (source_idx, page) in wanted {
            let Some(read) = reads.iter().find(|read| read.source_idx == source_idx) else {
                continue;
            };
            let fresh = match ctx.refresh {
                true => None,
                false => self.pages.fresh(&read.page_key(page)).await,
            };
            match fresh {
                Some(cached) => results.push(((source_idx, page), Ok((cached, Lookup::Hit)))),
                None => to_fetch.push((source_idx, page)),
            }
        }
        let fetches = to_fetch.into_iter().filter_map(|(source_idx, page)| {
            let read = reads.iter().find(|read| read.source_idx == source_idx)?;
            let client = &self.sources[source_idx];
            Some(async move {
                let result = self
                    .pages
                    .get_or_fetch(
                        read.page_key(page),
                        ctx.refresh,
                        client.fetch_page(read.pushed, page, ctx.request_id, ctx.deadline),
                        || self.revalidation(read, page, ctx.request_id),
                    )
                    .await;
                ((source_idx, page), result)
            })
        });
        results.extend(futures_util::future::join_all(fetches).await);
        set.absorb(results, reads, &self.pages, &self.facts, ctx.generation)
            .await;
    }

    /// What answering a query would read, told from the cache and facts alone: no upstream call.
    pub async fn explain(&self, query: &ListQuery, plan: &Plan) -> Vec<SourcePages> {
        explain::explain(self, query, plan).await
    }

    /// One user by source and upstream id (SPEC §5). A source that cannot filter by id is
    /// scanned in upstream order, a batch of pages at a time, until the user is found.
    pub async fn find_user(
        &self,
        source_idx: usize,
        provider_id: &str,
        ctx: &CallContext<'_>,
    ) -> Result<Found, LookupError> {
        let pushed = match self.sources[source_idx].provider.lookup(provider_id) {
            IdLookup::NoSuchUser => {
                return Ok(Found {
                    user: None,
                    upstream_calls: 0,
                    stale: None,
                })
            }
            IdLookup::Pushed(pushed) => pushed,
            IdLookup::Scan => PushedQuery::default(),
        };
        let no_filters = Filters::default();
        let reads = [Read::scan(
            source_idx,
            &pushed,
            &no_filters,
            self.query_key(source_idx, &pushed),
        )];
        let mut set = PageSet::at(self.revision());
        for _round in 0..MAX_ROUNDS + (self.max_pages / SCAN_BATCH) as usize {
            if let Some(error) = set.failure(source_idx) {
                return Err(error.clone().into());
            }
            // Page 1 first (it tells how many there are), then batches in upstream order.
            let n_pages = reads[0]
                .choose(&self.facts, self.max_pages)
                .shape
                .map(|shape| shape.n_pages());
            let last = n_pages.unwrap_or(1).min(self.max_pages);
            let Some(next) = set.first_missing(source_idx, 1..=last) else {
                if n_pages.is_some_and(|n_pages| n_pages > self.max_pages) {
                    return Err(TooManyPages {
                        source_idx,
                        needed: n_pages.unwrap_or_default(),
                        limit: self.max_pages,
                    }
                    .into());
                }
                return Ok(set.found(source_idx, None));
            };
            let batch: Vec<(usize, u64)> = (next..=last.min(next + SCAN_BATCH - 1))
                .map(|page| (source_idx, page))
                .collect();
            self.fetch(&reads, set.missing(&batch), &mut set, ctx).await;
            if let Some(user) = set.find(source_idx, &batch, provider_id) {
                return Ok(set.found(source_idx, Some(user)));
            }
        }
        set.give_up(&[], &reads);
        Err(set
            .failure(source_idx)
            .cloned()
            .unwrap_or_else(|| SourceError::bad_response("upstream pages kept changing while being read"))
            .into())
    }
}

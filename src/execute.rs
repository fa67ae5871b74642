//! Runs a [`Plan`]: fans out to the sources concurrently, reads through the cache exactly
//! the upstream pages the plan needs, applies the gateway-side filters and sort, and turns
//! failures into per-source status.
//!
//! Knows nothing of HTTP or of upstream field names.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::cache::{CachedPage, Lookup, PageCache, PageKey};
use crate::merge::merge::concat_positions;
use crate::merge::paging::{slices, PageMeta};
use crate::merge::sort::sort_users;
use crate::model::User;
use crate::providers::client::SourceClient;
use crate::providers::{IdLookup, PushedQuery, SourceError};
use crate::query::filter::Filters;
use crate::query::parse::ListQuery;
use crate::query::plan::{Action, Plan, ReadMode};

/// What one caller request carries down to the upstream calls.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    pub request_id: &'a str,
    /// The caller sent `Cache-Control: no-cache`: refetch instead of reading the cache.
    pub refresh: bool,
    /// Every upstream attempt, retry and wait of this request ends by then.
    pub deadline: tokio::time::Instant,
}

#[derive(Debug, Clone)]
pub enum SourceStatus {
    /// `total` counts the source's matching users; `stale` is the age of the oldest page
    /// served past its freshness because the upstream failed (stale-if-error).
    Ok {
        total: u64,
        stale: Option<Duration>,
    },
    Failed(SourceError),
    Skipped {
        reason: String,
    },
}

/// How one selected source fared.
#[derive(Debug, Clone)]
pub struct SourceReport {
    pub source_idx: usize,
    pub status: SourceStatus,
}

/// A user inside a cached page: no copy of the user is made to answer a request.
#[derive(Debug, Clone)]
pub struct UserRef {
    page: Arc<CachedPage>,
    idx: usize,
}

impl Deref for UserRef {
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
    /// Whether any called source failed or was served stale: the result then depends on
    /// more than `inputs` (statuses, ages) and must not be memoized.
    pub any_failed: bool,
    /// Whether a stale page stood in for a failed upstream call.
    pub any_stale: bool,
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

/// What a plan would read from one source, as far as the cache can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePages {
    pub source_idx: usize,
    /// Pages of the pushed-down query; known once its page 1 is cached.
    pub upstream_pages: Option<u64>,
    /// The pages the request would read; unknown until the totals it depends on are cached.
    pub to_read: Option<Vec<u64>>,
    pub to_read_count: Option<u64>,
    /// How many of those (or of page 1, when they are unknown) are cached now.
    pub cached: u64,
    /// A full read of more pages than `GATEWAY_MAX_UPSTREAM_PAGES`: the query would be refused.
    pub over_limit: bool,
}

#[derive(Debug)]
pub struct Found {
    pub user: Option<UserRef>,
    pub upstream_calls: usize,
    /// Age of the oldest page served stale (stale-if-error), if any.
    pub stale: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    TooManyPages(#[from] TooManyPages),
}

pub struct Executor {
    sources: Vec<SourceClient>,
    cache: PageCache,
    /// Ceiling on the upstream pages one query may read from one source.
    max_pages: u64,
}

/// One source being read for one pushed-down query.
struct Read<'a> {
    source_idx: usize,
    pushed: &'a PushedQuery,
    pushed_key: Arc<str>,
    /// Read every page (planned, or because the upstream matched more loosely than promised).
    full: bool,
}

impl<'a> Read<'a> {
    /// One read per called source, as planned.
    fn all(plan: &'a Plan) -> Vec<Read<'a>> {
        plan.calls()
            .map(|(source_idx, call)| Read {
                source_idx,
                pushed: &call.pushed,
                pushed_key: Arc::from(call.pushed.to_string()),
                full: matches!(call.read, ReadMode::Full { .. }),
            })
            .collect()
    }
}

type FetchResult = ((usize, u64), Result<(Arc<CachedPage>, Lookup), SourceError>);

/// What one request has fetched so far.
#[derive(Default)]
struct Fetched {
    pages: HashMap<(usize, u64), Arc<CachedPage>>,
    failures: HashMap<usize, SourceError>,
    /// Per source, the age of the oldest page served stale.
    stale: HashMap<usize, Duration>,
    upstream_calls: usize,
}

impl Fetched {
    fn absorb(&mut self, results: Vec<FetchResult>) {
        for ((source_idx, page), result) in results {
            match result {
                Ok((fetched, lookup)) => {
                    match lookup {
                        Lookup::Hit => {}
                        Lookup::Fetched => self.upstream_calls += 1,
                        Lookup::Stale { age } => {
                            self.upstream_calls += 1;
                            let oldest = self.stale.entry(source_idx).or_insert(age);
                            *oldest = (*oldest).max(age);
                        }
                    }
                    self.pages.insert((source_idx, page), fetched);
                }
                Err(error) => {
                    self.upstream_calls += 1;
                    self.failures.entry(source_idx).or_insert(error);
                }
            }
        }
    }

    /// Pages of one source that contradict its first page: another page size, or a user
    /// count that the total does not allow. Positions would then point at the wrong users,
    /// so the source becomes a `bad_response` (and the pages are dropped from the cache by
    /// the caller, since the data most likely changed while it was being paged).
    fn check_consistency(&mut self) -> Vec<(usize, u64)> {
        let mut bad = Vec::new();
        for (&(source_idx, page), fetched) in &self.pages {
            if self.failures.contains_key(&source_idx) {
                continue;
            }
            let Some(first) = self.pages.get(&(source_idx, 1)) else {
                continue;
            };
            let size = u64::from(first.page.page_size.max(1));
            let expected_len = first
                .page
                .total
                .saturating_sub((page - 1).saturating_mul(size))
                .min(size);
            if fetched.page.page_size != first.page.page_size || fetched.page.users.len() as u64 != expected_len {
                bad.push((source_idx, page));
            }
        }
        for &(source_idx, page) in &bad {
            tracing::warn!(source_idx, page, "upstream pages disagree on page size or count");
            self.failures.entry(source_idx).or_insert_with(|| {
                SourceError::bad_response(format!(
                    "upstream page {page} disagrees with page 1 on page size or user count (the data may have \
                     changed while paging; retry)"
                ))
            });
        }
        bad
    }

    fn first(&self, source_idx: usize) -> &CachedPage {
        &self.pages[&(source_idx, 1)]
    }

    /// Pages of the source's pushed-down query, as its first page tells.
    fn n_pages(&self, source_idx: usize) -> u64 {
        let first = &self.first(source_idx).page;
        first.total.div_ceil(u64::from(first.page_size.max(1))).max(1)
    }

    /// The source's matching users in upstream order, from all its pages.
    fn materialize(&self, source_idx: usize, filters: &Filters) -> Vec<UserRef> {
        (1..=self.n_pages(source_idx))
            .filter_map(|page| self.pages.get(&(source_idx, page)))
            .flat_map(|page| {
                page.page
                    .users
                    .iter()
                    .enumerate()
                    .filter(|(_, user)| filters.matches(user))
                    .map(|(idx, _)| UserRef {
                        page: page.clone(),
                        idx,
                    })
            })
            .collect()
    }
}

impl Executor {
    pub fn new(sources: Vec<SourceClient>, cache: PageCache, max_pages: u64) -> Executor {
        Executor {
            sources,
            cache,
            max_pages,
        }
    }

    pub fn sources(&self) -> &[SourceClient] {
        &self.sources
    }

    pub fn cache(&self) -> &PageCache {
        &self.cache
    }

    pub fn max_pages(&self) -> u64 {
        self.max_pages
    }

    /// The cache key of one page of a source's pushed-down query.
    pub fn page_key(&self, source_idx: usize, pushed_key: &Arc<str>, page: u64) -> PageKey {
        PageKey {
            source: self.sources[source_idx].name.clone(),
            pushed: pushed_key.clone(),
            page,
        }
    }

    async fn fetch(&self, read: &Read<'_>, page: u64, ctx: &CallContext<'_>) -> FetchResult {
        let client = &self.sources[read.source_idx];
        let key = self.page_key(read.source_idx, &read.pushed_key, page);
        let result = self
            .cache
            .get_or_fetch(
                key,
                ctx.refresh,
                client.fetch_page(read.pushed, page, ctx.request_id, ctx.deadline),
            )
            .await;
        ((read.source_idx, page), result)
    }

    /// Fetches pages concurrently; the per-source permits bound what is in flight.
    async fn fetch_all(&self, wanted: Vec<(&Read<'_>, u64)>, ctx: &CallContext<'_>) -> Vec<FetchResult> {
        join_all(wanted.into_iter().map(|(read, page)| self.fetch(read, page, ctx))).await
    }

    /// Reads every remaining page of the given full reads, checking the ceiling first.
    async fn read_rest(
        &self,
        reads: &[&Read<'_>],
        fetched: &mut Fetched,
        ctx: &CallContext<'_>,
    ) -> Result<(), TooManyPages> {
        let mut wanted = Vec::new();
        for read in reads {
            if fetched.failures.contains_key(&read.source_idx) {
                continue;
            }
            let n_pages = fetched.n_pages(read.source_idx);
            if n_pages > self.max_pages {
                return Err(TooManyPages {
                    source_idx: read.source_idx,
                    needed: n_pages,
                    limit: self.max_pages,
                });
            }
            wanted.extend(
                (2..=n_pages)
                    .filter(|page| !fetched.pages.contains_key(&(read.source_idx, *page)))
                    .map(|page| (*read, page)),
            );
        }
        let results = self.fetch_all(wanted, ctx).await;
        self.absorb(fetched, results, reads).await;
        Ok(())
    }

    /// Takes in fetched pages, then fails (and uncaches) sources whose pages disagree.
    async fn absorb(&self, fetched: &mut Fetched, results: Vec<FetchResult>, reads: &[&Read<'_>]) {
        fetched.absorb(results);
        for (source_idx, page) in fetched.check_consistency() {
            if let Some(read) = reads.iter().find(|read| read.source_idx == source_idx) {
                for page in [1, page] {
                    self.cache
                        .invalidate(&self.page_key(source_idx, &read.pushed_key, page))
                        .await;
                }
            }
        }
    }

    /// One caller page (SPEC §3).
    ///
    /// Page 1 of every called source comes first (it tells totals and page sizes). Full
    /// reads then fetch every page and filter; direct reads fetch exactly the pages under
    /// the window. A source failing at any point drops out and the window is laid out
    /// again over the others, so the page stays exact for what answered.
    pub async fn list(&self, query: &ListQuery, plan: &Plan, ctx: &CallContext<'_>) -> Result<ListResult, ListError> {
        let mut reads = Read::all(plan);
        let filters = &query.filters;
        let mut fetched = Fetched::default();
        let firsts = self.fetch_all(reads.iter().map(|read| (read, 1)).collect(), ctx).await;
        self.absorb(&mut fetched, firsts, &reads.iter().collect::<Vec<_>>())
            .await;
        let full: Vec<&Read<'_>> = reads.iter().filter(|read| read.full).collect();
        self.read_rest(&full, &mut fetched, ctx).await?;

        let (meta, users) = if plan.sorted {
            let mut users: Vec<UserRef> = reads
                .iter()
                .filter(|read| !fetched.failures.contains_key(&read.source_idx))
                .flat_map(|read| fetched.materialize(read.source_idx, filters))
                .collect();
            sort_users(&mut users, &query.sort);
            let meta = PageMeta::new(query.page, query.per_page, users.len() as u64);
            let start = meta.offset().min(meta.total) as usize;
            let end = meta.offset().saturating_add(query.per_page).min(meta.total) as usize;
            (meta, users[start..end].to_vec())
        } else {
            self.unsorted_window(query, &mut reads, &mut fetched, ctx).await?
        };

        let reports = self.reports(plan, &fetched, &reads, filters);
        let n_called = reads.len();
        if n_called > 0 && fetched.failures.len() == n_called {
            return Err(ListError::AllFailed { reports });
        }
        let any_stale = !fetched.stale.is_empty();
        let any_failed = !fetched.failures.is_empty() || any_stale;
        let mut inputs: Vec<((usize, u64), Arc<CachedPage>)> = fetched.pages.into_iter().collect();
        inputs.sort_unstable_by_key(|(key, _)| *key);
        Ok(ListResult {
            meta,
            users,
            reports,
            upstream_calls: fetched.upstream_calls,
            inputs: inputs.into_iter().map(|(_, page)| page).collect(),
            any_failed,
            any_stale,
        })
    }

    /// The default order: sources end to end, each in upstream order. Direct sources are
    /// sliced by upstream page; full reads from their filtered users.
    async fn unsorted_window(
        &self,
        query: &ListQuery,
        reads: &mut [Read<'_>],
        fetched: &mut Fetched,
        ctx: &CallContext<'_>,
    ) -> Result<(PageMeta, Vec<UserRef>), ListError> {
        let filters = &query.filters;
        let mut materialized: HashMap<usize, Vec<UserRef>> = reads
            .iter()
            .filter(|read| read.full && !fetched.failures.contains_key(&read.source_idx))
            .map(|read| (read.source_idx, fetched.materialize(read.source_idx, filters)))
            .collect();
        // Each round fetches the missing window pages, drops a failed source, or turns a
        // loose direct source into a full read, so it ends within a few rounds per source.
        loop {
            let mut totals = vec![None; self.sources.len()];
            for read in reads.iter() {
                if fetched.failures.contains_key(&read.source_idx) {
                    continue;
                }
                totals[read.source_idx] = Some(match materialized.get(&read.source_idx) {
                    Some(users) => users.len() as u64,
                    None => fetched.first(read.source_idx).page.total,
                });
            }
            let meta = PageMeta::new(query.page, query.per_page, totals.iter().flatten().sum());
            let window = slices(&totals, meta.offset(), query.per_page);
            let missing: Vec<(&Read<'_>, u64)> = window
                .iter()
                .filter(|slice| !materialized.contains_key(&slice.source_idx))
                .flat_map(|slice| {
                    let read = reads
                        .iter()
                        .find(|read| read.source_idx == slice.source_idx)
                        .expect("sliced sources are read");
                    slice
                        .pages(fetched.first(slice.source_idx).page.page_size)
                        .map(move |page| (read, page))
                })
                .filter(|(read, page)| !fetched.pages.contains_key(&(read.source_idx, *page)))
                .collect();
            if !missing.is_empty() {
                let results = self.fetch_all(missing, ctx).await;
                self.absorb(fetched, results, &reads.iter().collect::<Vec<_>>()).await;
                continue;
            }
            // A direct source promised its pages hold only matching users; one that does not
            // (an upstream matching more loosely) is read in full and filtered instead.
            let loose: Vec<usize> = reads
                .iter()
                .filter(|read| !read.full && !filters.is_empty() && !fetched.failures.contains_key(&read.source_idx))
                .filter(|read| {
                    fetched
                        .pages
                        .iter()
                        .filter(|((source_idx, _), _)| *source_idx == read.source_idx)
                        .any(|(_, page)| page.page.users.iter().any(|user| !filters.matches(user)))
                })
                .map(|read| read.source_idx)
                .collect();
            if !loose.is_empty() {
                tracing::warn!(
                    ?loose,
                    "upstream matched more loosely than its pushed-down filter; reading in full"
                );
                for read in reads.iter_mut().filter(|read| loose.contains(&read.source_idx)) {
                    read.full = true;
                }
                let now_full: Vec<&Read<'_>> = reads.iter().filter(|read| loose.contains(&read.source_idx)).collect();
                self.read_rest(&now_full, fetched, ctx).await?;
                for source_idx in loose {
                    if !fetched.failures.contains_key(&source_idx) {
                        materialized.insert(source_idx, fetched.materialize(source_idx, filters));
                    }
                }
                continue;
            }
            // An upstream page shorter than its total promised (the data changed between
            // fetches) yields fewer users rather than wrong ones.
            let mut users = Vec::new();
            for slice in &window {
                match materialized.get(&slice.source_idx) {
                    Some(matching) => users.extend_from_slice(&matching[slice.start as usize..slice.end as usize]),
                    None => {
                        let page_size = fetched.first(slice.source_idx).page.page_size;
                        users.extend(
                            concat_positions(std::slice::from_ref(slice), |_| page_size)
                                .into_iter()
                                .filter_map(|position| {
                                    let page = fetched.pages.get(&(position.source_idx, position.upstream_page))?;
                                    (position.idx < page.page.users.len()).then(|| UserRef {
                                        page: page.clone(),
                                        idx: position.idx,
                                    })
                                }),
                        );
                    }
                }
            }
            return Ok((meta, users));
        }
    }

    fn reports(&self, plan: &Plan, fetched: &Fetched, reads: &[Read<'_>], filters: &Filters) -> Vec<SourceReport> {
        plan.steps
            .iter()
            .map(|step| SourceReport {
                source_idx: step.source_idx,
                status: match &step.action {
                    Action::Skip { reason } => SourceStatus::Skipped { reason: reason.clone() },
                    Action::Call(_) => match fetched.failures.get(&step.source_idx) {
                        Some(error) => SourceStatus::Failed(error.clone()),
                        None => {
                            let full = reads.iter().any(|read| read.source_idx == step.source_idx && read.full);
                            let total = if full {
                                fetched.materialize(step.source_idx, filters).len() as u64
                            } else {
                                fetched.first(step.source_idx).page.total
                            };
                            SourceStatus::Ok {
                                total,
                                stale: fetched.stale.get(&step.source_idx).copied(),
                            }
                        }
                    },
                },
            })
            .collect()
    }

    /// What answering a query would read, told from the cache alone: no upstream call.
    pub async fn explain(&self, query: &ListQuery, plan: &Plan) -> Vec<SourcePages> {
        let reads = Read::all(plan);
        let mut fetched = Fetched::default();
        for read in &reads {
            if let Some(first) = self
                .cache
                .peek(&self.page_key(read.source_idx, &read.pushed_key, 1))
                .await
            {
                fetched.pages.insert((read.source_idx, 1), first);
            }
        }
        for read in reads.iter().filter(|read| read.full) {
            if !fetched.pages.contains_key(&(read.source_idx, 1)) {
                continue;
            }
            for page in 2..=fetched.n_pages(read.source_idx).min(self.max_pages) {
                if let Some(cached) = self
                    .cache
                    .peek(&self.page_key(read.source_idx, &read.pushed_key, page))
                    .await
                {
                    fetched.pages.insert((read.source_idx, page), cached);
                }
            }
        }
        let known = |read: &Read<'_>| {
            fetched.pages.contains_key(&(read.source_idx, 1))
                && (!read.full
                    || (1..=fetched.n_pages(read.source_idx))
                        .all(|page| fetched.pages.contains_key(&(read.source_idx, page))))
        };
        // The window of a direct read depends on every source's total.
        let mut window_pages: HashMap<usize, Vec<u64>> = HashMap::new();
        if !plan.sorted && reads.iter().all(known) {
            let mut totals = vec![None; self.sources.len()];
            for read in &reads {
                totals[read.source_idx] = Some(if read.full {
                    fetched.materialize(read.source_idx, &query.filters).len() as u64
                } else {
                    fetched.first(read.source_idx).page.total
                });
            }
            let meta = PageMeta::new(
                query.page,
                query.per_page,
                totals.iter().flatten().fold(0, |a: u64, b| a.saturating_add(*b)),
            );
            for read in reads.iter().filter(|read| !read.full) {
                let mut pages = vec![1];
                for slice in slices(&totals, meta.offset(), query.per_page)
                    .iter()
                    .filter(|slice| slice.source_idx == read.source_idx)
                {
                    pages.extend(slice.pages(fetched.first(read.source_idx).page.page_size));
                }
                pages.sort_unstable();
                pages.dedup();
                window_pages.insert(read.source_idx, pages);
            }
        }
        reads
            .iter()
            .map(|read| {
                let upstream_pages = fetched
                    .pages
                    .contains_key(&(read.source_idx, 1))
                    .then(|| fetched.n_pages(read.source_idx));
                let to_read: Option<Vec<u64>> = if read.full {
                    upstream_pages.map(|n| (1..=n.min(self.max_pages)).collect())
                } else {
                    window_pages.remove(&read.source_idx)
                };
                let is_cached = |page: u64| {
                    self.cache
                        .contains(&self.page_key(read.source_idx, &read.pushed_key, page))
                };
                let cached = match &to_read {
                    Some(pages) => pages.iter().filter(|page| is_cached(**page)).count() as u64,
                    None => u64::from(is_cached(1)),
                };
                SourcePages {
                    source_idx: read.source_idx,
                    upstream_pages,
                    to_read_count: if read.full {
                        upstream_pages
                    } else {
                        to_read.as_ref().map(|pages| pages.len() as u64)
                    },
                    to_read,
                    cached,
                    over_limit: read.full && upstream_pages.is_some_and(|n| n > self.max_pages),
                }
            })
            .collect()
    }

    /// One user by source and upstream id (SPEC §5).
    pub async fn find_user(
        &self,
        source_idx: usize,
        provider_id: &str,
        ctx: &CallContext<'_>,
    ) -> Result<Found, LookupError> {
        let client = &self.sources[source_idx];
        let pushed = match client.provider.lookup(provider_id) {
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
        let read = Read {
            source_idx,
            pushed: &pushed,
            pushed_key: Arc::from(pushed.to_string()),
            full: true,
        };
        let mut fetched = Fetched::default();
        let first = self.fetch_all(vec![(&read, 1)], ctx).await;
        self.absorb(&mut fetched, first, &[&read]).await;
        if let Some(error) = fetched.failures.remove(&source_idx) {
            return Err(error.into());
        }
        self.read_rest(&[&read], &mut fetched, ctx).await?;
        if let Some(error) = fetched.failures.remove(&source_idx) {
            return Err(error.into());
        }
        let user = (1..=fetched.n_pages(source_idx))
            .filter_map(|page| fetched.pages.get(&(source_idx, page)))
            .find_map(|page| {
                let idx = page
                    .page
                    .users
                    .iter()
                    .position(|user| user.provider_id == provider_id)?;
                Some(UserRef {
                    page: page.clone(),
                    idx,
                })
            });
        Ok(Found {
            user,
            upstream_calls: fetched.upstream_calls,
            stale: fetched.stale.get(&source_idx).copied(),
        })
    }
}

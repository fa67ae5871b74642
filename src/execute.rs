//! Runs a [`Plan`]: fans out to the sources concurrently, reads only the upstream pages
//! the caller's page needs (through the cache), and turns failures into per-source status.
//!
//! Knows nothing of HTTP or of upstream field names.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use futures_util::future::join_all;

use crate::cache::{CachedPage, Lookup, PageCache, PageKey};
use crate::merge::merge::concat_positions;
use crate::merge::paging::{slices, PageMeta};
use crate::model::User;
use crate::providers::client::SourceClient;
use crate::providers::{IdLookup, PushedQuery, SourceError};
use crate::query::parse::ListQuery;
use crate::query::plan::{Action, Plan};

/// What one caller request carries down to the upstream calls.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    pub request_id: &'a str,
    /// The caller sent `Cache-Control: no-cache`: refetch instead of reading the cache.
    pub refresh: bool,
}

#[derive(Debug, Clone)]
pub enum SourceStatus {
    Ok { total: u64 },
    Failed(SourceError),
    Skipped { reason: String },
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
    /// Whether any called source failed (the result then depends on more than `inputs`).
    pub any_failed: bool,
}

/// Every selected source failed.
#[derive(Debug)]
pub struct AllFailed {
    pub reports: Vec<SourceReport>,
}

#[derive(Debug)]
pub struct Found {
    pub user: Option<UserRef>,
    pub upstream_calls: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("finding the user needs {needed} upstream pages, more than the limit of {limit}")]
    TooManyPages { needed: u64, limit: u64 },
}

pub struct Executor {
    sources: Vec<SourceClient>,
    cache: PageCache,
    /// Ceiling on the pages one full read of a source may fetch.
    max_pages: u64,
}

/// One source being read for one pushed-down query.
struct Read<'a> {
    source_idx: usize,
    pushed: &'a PushedQuery,
    pushed_key: Arc<str>,
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

    async fn fetch(
        &self,
        read: &Read<'_>,
        page: u64,
        ctx: &CallContext<'_>,
    ) -> Result<(Arc<CachedPage>, Lookup), SourceError> {
        let client = &self.sources[read.source_idx];
        let key = PageKey {
            source: client.name.clone(),
            pushed: read.pushed_key.clone(),
            page,
        };
        self.cache
            .get_or_fetch(key, ctx.refresh, client.fetch_page(read.pushed, page, ctx.request_id))
            .await
    }

    /// One caller page of the merged order (SPEC §3).
    ///
    /// Page 1 of every called source comes first (it tells totals and page sizes), then
    /// exactly the pages the window needs. A source failing at any point drops out and the
    /// window is laid out again over the others, so the page stays exact for what answered.
    pub async fn list(&self, query: &ListQuery, plan: &Plan, ctx: &CallContext<'_>) -> Result<ListResult, AllFailed> {
        let reads: Vec<Read<'_>> = plan
            .steps
            .iter()
            .filter_map(|step| match &step.action {
                Action::Call { pushed } => Some(Read {
                    source_idx: step.source_idx,
                    pushed,
                    pushed_key: Arc::from(pushed.to_string()),
                }),
                Action::Skip { .. } => None,
            })
            .collect();
        let mut pages: HashMap<(usize, u64), Arc<CachedPage>> = HashMap::new();
        let mut failures: HashMap<usize, SourceError> = HashMap::new();
        let mut upstream_calls = 0;

        let firsts = join_all(reads.iter().map(|read| self.fetch(read, 1, ctx))).await;
        for (read, result) in reads.iter().zip(firsts) {
            match result {
                Ok((page, lookup)) => {
                    upstream_calls += usize::from(lookup == Lookup::Fetched);
                    pages.insert((read.source_idx, 1), page);
                }
                Err(error) => {
                    upstream_calls += 1;
                    failures.insert(read.source_idx, error);
                }
            }
        }

        let meta_of = |pages: &HashMap<(usize, u64), Arc<CachedPage>>, failures: &HashMap<usize, SourceError>| {
            let mut totals = vec![None; self.sources.len()];
            for read in &reads {
                if !failures.contains_key(&read.source_idx) {
                    totals[read.source_idx] = pages.get(&(read.source_idx, 1)).map(|first| first.page.total);
                }
            }
            let total = totals.iter().flatten().sum();
            (totals, PageMeta::new(query.page, query.per_page, total))
        };
        let page_size =
            |pages: &HashMap<(usize, u64), Arc<CachedPage>>, source_idx: usize| pages[&(source_idx, 1)].page.page_size;

        // Each round either fetches every missing page or drops a failed source, so this
        // ends after at most one round per source plus one.
        let (meta, window) = loop {
            let (totals, meta) = meta_of(&pages, &failures);
            let window = slices(&totals, meta.offset(), query.per_page);
            let missing: Vec<(&Read<'_>, u64)> = window
                .iter()
                .flat_map(|slice| {
                    let read = reads
                        .iter()
                        .find(|read| read.source_idx == slice.source_idx)
                        .expect("sliced sources are read");
                    slice
                        .pages(page_size(&pages, slice.source_idx))
                        .map(move |page| (read, page))
                })
                .filter(|(read, page)| !pages.contains_key(&(read.source_idx, *page)))
                .collect();
            if missing.is_empty() {
                break (meta, window);
            }
            let results = join_all(missing.iter().map(|(read, page)| self.fetch(read, *page, ctx))).await;
            for ((read, page), result) in missing.iter().zip(results) {
                match result {
                    Ok((fetched, lookup)) => {
                        upstream_calls += usize::from(lookup == Lookup::Fetched);
                        pages.insert((read.source_idx, *page), fetched);
                    }
                    Err(error) => {
                        upstream_calls += 1;
                        failures.entry(read.source_idx).or_insert(error);
                    }
                }
            }
        };

        let reports: Vec<SourceReport> = plan
            .steps
            .iter()
            .map(|step| SourceReport {
                source_idx: step.source_idx,
                status: match &step.action {
                    Action::Skip { reason } => SourceStatus::Skipped { reason: reason.clone() },
                    Action::Call { .. } => match failures.get(&step.source_idx) {
                        Some(error) => SourceStatus::Failed(error.clone()),
                        None => SourceStatus::Ok {
                            total: pages[&(step.source_idx, 1)].page.total,
                        },
                    },
                },
            })
            .collect();
        if !reads.is_empty() && failures.len() == reads.len() {
            return Err(AllFailed { reports });
        }

        // An upstream page shorter than its totals promised (the data changed between
        // fetches) yields fewer users rather than wrong ones.
        let users = concat_positions(&window, |source_idx| page_size(&pages, source_idx))
            .into_iter()
            .filter_map(|position| {
                let page = pages.get(&(position.source_idx, position.upstream_page))?;
                (position.idx < page.page.users.len()).then(|| UserRef {
                    page: page.clone(),
                    idx: position.idx,
                })
            })
            .collect();
        let mut inputs: Vec<((usize, u64), Arc<CachedPage>)> = pages.into_iter().collect();
        inputs.sort_unstable_by_key(|(key, _)| *key);
        Ok(ListResult {
            meta,
            users,
            reports,
            upstream_calls,
            inputs: inputs.into_iter().map(|(_, page)| page).collect(),
            any_failed: !failures.is_empty(),
        })
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
                })
            }
            IdLookup::Pushed(pushed) => pushed,
            IdLookup::Scan => PushedQuery::default(),
        };
        let read = Read {
            source_idx,
            pushed: &pushed,
            pushed_key: Arc::from(pushed.to_string()),
        };
        let (pages, upstream_calls) = self.read_all(&read, ctx).await?;
        let user = pages.iter().find_map(|page| {
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
        Ok(Found { user, upstream_calls })
    }

    /// Every page of one source's pushed-down query, all but the first fetched concurrently
    /// (the per-source permit bounds how many are in flight).
    async fn read_all(
        &self,
        read: &Read<'_>,
        ctx: &CallContext<'_>,
    ) -> Result<(Vec<Arc<CachedPage>>, usize), LookupError> {
        let (first, lookup) = self.fetch(read, 1, ctx).await?;
        let mut upstream_calls = usize::from(lookup == Lookup::Fetched);
        let n_pages = first.page.total.div_ceil(u64::from(first.page.page_size.max(1))).max(1);
        if n_pages > self.max_pages {
            return Err(LookupError::TooManyPages {
                needed: n_pages,
                limit: self.max_pages,
            });
        }
        let rest = join_all((2..=n_pages).map(|page| self.fetch(read, page, ctx))).await;
        let mut pages = vec![first];
        for result in rest {
            let (page, lookup) = result?;
            upstream_calls += usize::from(lookup == Lookup::Fetched);
            pages.push(page);
        }
        Ok((pages, upstream_calls))
    }
}

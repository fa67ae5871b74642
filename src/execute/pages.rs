//! The upstream pages one request holds, and how a fetched page gets in: every page is
//! checked against its source's facts first (`cache::facts`). A page that contradicts facts
//! another request learned makes this request forget them and read again, once; any other
//! contradiction makes the source a `bad_response` with the reason. Either way the pages
//! involved leave the cache, so the next request starts clean.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use tokio::time::Instant;

use super::reads::Read;
use super::reports::Staleness;
use super::{Found, UserRef};
use crate::cache::facts::Verdict;
use crate::cache::views::{View, ViewCache, ViewKey};
use crate::cache::{CachedPage, FactsStore, Lookup, PageCache};
use crate::merge::layout::SourceLayout;
use crate::merge::paging::Slice;
use crate::providers::SourceError;
use crate::query::filter::{Filters, SortKey};

pub(super) type FetchResult = ((usize, u64), Result<(Arc<CachedPage>, Lookup), SourceError>);

/// The users at `range` of a view over `pages`.
fn at<'a>(view: &'a View, pages: &'a [&Arc<CachedPage>], range: Range<usize>) -> impl Iterator<Item = UserRef> + 'a {
    view.positions(range).iter().map(|pos| UserRef {
        page: pages[pos.page as usize].clone(),
        idx: pos.idx as usize,
    })
}

/// What one request has fetched so far.
#[derive(Default)]
pub(super) struct PageSet {
    /// By (source index, upstream page): ordered, so a source's pages come in upstream order.
    pages: BTreeMap<(usize, u64), Arc<CachedPage>>,
    failures: HashMap<usize, SourceError>,
    /// Per source, the pages served past their freshness.
    stale: HashMap<usize, Staleness>,
    /// Sources whose earlier facts this request already forgot once.
    resets: HashSet<usize>,
    /// Pages read again beside the layout's, to recheck a contradiction after forgetting
    /// the facts it was found against.
    recheck: Vec<(usize, u64)>,
    upstream_calls: usize,
    /// The executor's revision when the request began (views are stamped with it).
    revision: u64,
}

impl PageSet {
    /// The pages of a request that began at the executor's `revision`.
    pub fn at(revision: u64) -> PageSet {
        PageSet {
            revision,
            ..PageSet::default()
        }
    }

    pub fn failed(&self, source_idx: usize) -> bool {
        self.failures.contains_key(&source_idx)
    }

    pub fn failure(&self, source_idx: usize) -> Option<&SourceError> {
        self.failures.get(&source_idx)
    }

    pub fn stale(&self, source_idx: usize) -> Option<Staleness> {
        self.stale.get(&source_idx).copied()
    }

    fn fail(&mut self, source_idx: usize, error: SourceError) {
        self.failures.entry(source_idx).or_insert(error);
        self.stale.remove(&source_idx);
    }

    /// The needed pages (and pages to recheck) not in hand, of sources still in the running.
    pub fn missing(&self, needed: &[(usize, u64)]) -> Vec<(usize, u64)> {
        let mut missing: Vec<(usize, u64)> = needed
            .iter()
            .chain(&self.recheck)
            .copied()
            .filter(|key| !self.pages.contains_key(key) && !self.failed(key.0))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }

    fn source_pages(&self, source_idx: usize) -> impl Iterator<Item = (u64, &Arc<CachedPage>)> {
        self.pages
            .range((source_idx, 0)..=(source_idx, u64::MAX))
            .map(|(&(_, page), cached)| (page, cached))
    }

    pub fn first_missing(&self, source_idx: usize, pages: std::ops::RangeInclusive<u64>) -> Option<u64> {
        pages
            .into_iter()
            .find(|page| !self.pages.contains_key(&(source_idx, *page)))
    }

    /// A source's pages 1..=`n_pages` in upstream order, once all are in hand.
    fn full_pages(&self, source_idx: usize, n_pages: u64) -> Option<Vec<&Arc<CachedPage>>> {
        let pages: Vec<&Arc<CachedPage>> = self
            .source_pages(source_idx)
            .enumerate()
            .map_while(|(at, (page, cached))| (page == at as u64 + 1).then_some(cached))
            .collect();
        (pages.len() as u64 == n_pages).then_some(pages)
    }

    /// The view of one fully read source's matching users, in upstream order.
    fn source_view_key(read: &Read<'_>) -> ViewKey {
        ViewKey {
            queries: vec![read.query.clone()],
            filters: read.filters.clone(),
            sort: Vec::new(),
        }
    }

    /// Takes a fully read source's pages from its view when the view is current (see
    /// `ViewCache::current`): one lookup instead of one a page. They were admitted through
    /// the facts when the view was built, and nothing has been replaced, dropped or found
    /// loose since.
    pub fn adopt_view(&mut self, read: &Read<'_>, views: &ViewCache) {
        if self.failed(read.source_idx) || self.source_pages(read.source_idx).next().is_some() {
            return;
        }
        let Some(pages) = views.current(&Self::source_view_key(read), self.revision) else {
            return;
        };
        for (at, page) in pages.into_iter().enumerate() {
            self.pages.insert((read.source_idx, at as u64 + 1), page);
        }
    }

    /// The view of a fully read source's matching users in upstream order (built once for
    /// the same pages, see `cache::views`), with the pages its positions count.
    fn source_view(
        &self,
        read: &Read<'_>,
        n_pages: u64,
        views: &ViewCache,
    ) -> Option<(Arc<View>, Vec<&Arc<CachedPage>>)> {
        let pages = self.full_pages(read.source_idx, n_pages)?;
        Some((views.view(Self::source_view_key(read), &pages, self.revision), pages))
    }

    /// Users of a fully read source that match, once all `n_pages` are in hand.
    pub fn matching_count(&self, read: &Read<'_>, n_pages: u64, views: &ViewCache) -> Option<u64> {
        self.source_view(read, n_pages, views)
            .map(|(view, _)| view.len() as u64)
    }

    /// The users under the window's slices: a full source's from its view, a direct
    /// source's by position in its upstream pages (whose lengths were checked).
    pub fn window(
        &self,
        slices: &[Slice],
        states: &[SourceLayout],
        reads: &[Read<'_>],
        views: &ViewCache,
    ) -> Vec<UserRef> {
        let mut users = Vec::new();
        for slice in slices {
            match states[slice.source_idx] {
                SourceLayout::Full { n_pages, .. } => {
                    let Some(read) = reads.iter().find(|read| read.source_idx == slice.source_idx) else {
                        continue;
                    };
                    let Some((view, pages)) = self.source_view(read, n_pages, views) else {
                        tracing::error!(source_idx = slice.source_idx, "full read not in hand");
                        continue;
                    };
                    users.extend(at(&view, &pages, slice.start as usize..slice.end as usize));
                }
                SourceLayout::Direct { page_size, .. } => {
                    for (page, idx) in slice.positions(page_size) {
                        // The layout ends only with these pages in hand and their lengths
                        // checked; a miss would be a bug, logged rather than a panic.
                        match self.pages.get(&(slice.source_idx, page)) {
                            Some(cached) if idx < cached.page.users.len() => users.push(UserRef {
                                page: cached.clone(),
                                idx,
                            }),
                            _ => {
                                tracing::error!(source_idx = slice.source_idx, page, idx, "window position not in hand")
                            }
                        }
                    }
                }
                SourceLayout::Absent | SourceLayout::Unknown => {}
            }
        }
        users
    }

    /// The users in `range` of the sorted matching users of every source still in the
    /// running (all read in full), from a view built once for the same pages.
    pub fn sorted(
        &self,
        reads: &[Read<'_>],
        filters: &Filters,
        sort: &[SortKey],
        range: Range<usize>,
        views: &ViewCache,
    ) -> Vec<UserRef> {
        let mut queries = Vec::new();
        let mut pages = Vec::new();
        for read in reads.iter().filter(|read| !self.failed(read.source_idx)) {
            queries.push(read.query.clone());
            pages.extend(self.source_pages(read.source_idx).map(|(_, page)| page));
        }
        let key = ViewKey {
            queries,
            filters: filters.clone(),
            sort: sort.to_vec(),
        };
        let view = views.view(key, &pages, self.revision);
        at(&view, &pages, range).collect()
    }

    /// A completed full read that found only users inside the pushed-down filter proves
    /// the upstream exact for it: later requests may read that source directly.
    pub fn learn_full_reads(&self, reads: &[Read<'_>], states: &[SourceLayout], store: &FactsStore) {
        for read in reads
            .iter()
            .filter(|read| read.verifies_filter() && !self.failed(read.source_idx))
        {
            let SourceLayout::Full {
                n_pages,
                matching: Some(_),
            } = states[read.source_idx]
            else {
                continue;
            };
            let all_inside = self.source_pages(read.source_idx).count() as u64 == n_pages
                && self.source_pages(read.source_idx).all(|(_, page)| {
                    page.page
                        .users
                        .iter()
                        .all(|user| read.upstream_must_match.matches(user))
                });
            if let (true, Some(facts)) = (all_inside, store.peek(&read.query)) {
                let mut facts = facts.lock().expect("facts lock");
                if let Some(shape) = facts.shape() {
                    facts.mark_verified(shape, Instant::now());
                }
            }
        }
    }

    /// Fails the sources still missing pages after too many rounds.
    pub fn give_up(&mut self, missing: &[(usize, u64)], reads: &[Read<'_>]) {
        let mut stuck: Vec<usize> = missing.iter().map(|(source_idx, _)| *source_idx).collect();
        if stuck.is_empty() {
            stuck = reads.iter().map(|read| read.source_idx).collect();
        }
        for source_idx in stuck {
            self.fail(
                source_idx,
                SourceError::bad_response("upstream pages kept contradicting each other while being read"),
            );
        }
    }

    /// Takes in fetched pages, each checked against its source's facts first.
    pub async fn absorb(
        &mut self,
        results: Vec<FetchResult>,
        reads: &[Read<'_>],
        cache: &PageCache,
        store: &FactsStore,
        generation: u64,
    ) {
        let now = Instant::now();
        // A source whose facts were forgotten in this batch: its other pages of the batch
        // were checked against nothing, so they wait for the next round.
        let mut forgotten: HashSet<usize> = HashSet::new();
        for ((source_idx, page), result) in results {
            // A page served while it refreshes in the background waited for no upstream call.
            if !matches!(result, Ok((_, Lookup::Hit | Lookup::Revalidating { .. }))) {
                self.upstream_calls += 1;
            }
            let Some(read) = reads.iter().find(|read| read.source_idx == source_idx) else {
                continue;
            };
            if self.failed(source_idx) || forgotten.contains(&source_idx) {
                continue;
            }
            let (cached, lookup) = match result {
                Ok(found) => found,
                Err(error) => {
                    self.fail(source_idx, error);
                    continue;
                }
            };
            let facts = store.get(&read.query);
            let verdict =
                facts
                    .lock()
                    .expect("facts lock")
                    .admit(page, &cached, read.upstream_must_match, generation, now);
            match verdict {
                Verdict::Admitted { loose } => {
                    if loose {
                        // Answers that trusted the filter may be wrong now.
                        cache.bump_revision();
                        tracing::warn!(
                            source = %read.query.source,
                            page,
                            "upstream matched more loosely than its pushed-down filter; reading it in full from now on"
                        );
                    }
                    if let Some(stale) = Staleness::of(lookup) {
                        let merged = self.stale.get(&source_idx).map_or(stale, |seen| seen.merge(stale));
                        self.stale.insert(source_idx, merged);
                    }
                    self.pages.insert((source_idx, page), cached);
                    if matches!(lookup, Lookup::Fetched | Lookup::Stale { .. }) {
                        store.reweigh(&read.query, &facts);
                    }
                }
                Verdict::Contradicts(contradiction) => {
                    tracing::warn!(
                        source = %read.query.source,
                        page,
                        reason = %contradiction.reason,
                        "upstream pages contradict each other; their facts and pages are dropped"
                    );
                    let read_again = contradiction.with_earlier_facts && self.resets.insert(source_idx);
                    let involved = [Some(page), contradiction.other_page];
                    let dropped = {
                        let mut facts = facts.lock().expect("facts lock");
                        if read_again {
                            // The upstream may simply have changed since: forget, read again.
                            facts.reset(generation)
                        } else {
                            // Kept, with the refused page's ids: a later request reading a page
                            // that shares them sees the contradiction as well.
                            facts.remember_ids(page, &cached);
                            Vec::new()
                        }
                    };
                    store.reweigh(&read.query, &facts);
                    for dropped_page in dropped.into_iter().chain(involved.into_iter().flatten()) {
                        cache.invalidate(&read.page_key(dropped_page)).await;
                    }
                    self.pages.retain(|(idx, _), _| *idx != source_idx);
                    self.stale.remove(&source_idx);
                    forgotten.insert(source_idx);
                    if read_again {
                        self.recheck
                            .extend(involved.into_iter().flatten().map(|page| (source_idx, page)));
                    } else {
                        self.fail(source_idx, SourceError::bad_response(contradiction.reason));
                    }
                }
            }
        }
    }

    /// The user with this upstream id on one of these pages.
    pub fn find(&self, source_idx: usize, pages: &[(usize, u64)], provider_id: &str) -> Option<UserRef> {
        pages.iter().find_map(|key| {
            let cached = self.pages.get(key).filter(|_| key.0 == source_idx)?;
            let idx = cached
                .page
                .users
                .iter()
                .position(|user| user.provider_id == provider_id)?;
            Some(UserRef {
                page: cached.clone(),
                idx,
            })
        })
    }

    pub fn found(&self, source_idx: usize, user: Option<UserRef>) -> Found {
        Found {
            user,
            upstream_calls: self.upstream_calls,
            stale: self.stale(source_idx),
        }
    }

    /// Upstream calls made, and every page used, in (source, page) order.
    pub fn into_inputs(self) -> (usize, Vec<Arc<CachedPage>>) {
        (self.upstream_calls, self.pages.into_values().collect())
    }
}

//! Upstream pages in moka, keyed by (source, pushed-down query, upstream page) (SPEC §7).
//!
//! Weighed by the bytes a page holds; fresh for the configured TTL, then kept for the longer
//! of the two stale windows (RFC 5861):
//! - stale-while-revalidate: a page that went stale less than that window ago is answered at
//!   once and refreshed in the background, one refresh per page however many callers find
//!   it stale (a claim on its key, released when the refresh ends however it ends);
//! - stale-if-error: when refetching fails, the stale copy is served and said to be stale.
//!
//! Failures are never stored as pages. Concurrent misses on one key share one upstream call:
//! moka's compute API serializes callers per key, and a caller that finds a page fetched
//! while it waited takes that page; one that finds the fetch it waited for failed takes that
//! failure instead of calling again. A background refresh goes through the same compute, so
//! it coalesces with foreground fetches of its page too.
//!
//! Freshness uses tokio's clock (tests pause it); moka's own expiry only bounds memory.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::ops::compute::{CompResult, Op};
use tokio::time::Instant;

use super::facts::QueryKey;
use crate::cluster::pages::{Fetched, SharedPage, SharedPages};
use crate::model::{SourceName, User};
use crate::providers::{SourceError, UpstreamPage};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub source: SourceName,
    /// The pushed-down query in its canonical text form.
    pub pushed: Arc<str>,
    pub page: u64,
}

impl PageKey {
    pub fn new(query: &QueryKey, page: u64) -> PageKey {
        PageKey {
            source: query.source.clone(),
            pushed: query.pushed.clone(),
            page,
        }
    }
}

/// A page as fetched, with the moment it was fetched (for ages and staleness).
#[derive(Debug)]
pub struct CachedPage {
    pub page: UpstreamPage,
    pub fetched_at: Instant,
}

/// How a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// From the cache, fresh (possibly fetched by a concurrent request this one waited for).
    Hit,
    /// By calling the upstream.
    Fetched,
    /// The upstream failed; a copy `age` old, `stale_for` past its freshness, was served
    /// instead (stale-if-error).
    Stale { age: Duration, stale_for: Duration },
    /// From the cache at once, `stale_for` past its freshness (`age` old), while a background
    /// refresh replaces it (stale-while-revalidate): no upstream call was waited for.
    Revalidating { age: Duration, stale_for: Duration },
}

/// The keys whose background refresh is running.
type Refreshing = Arc<Mutex<HashSet<PageKey>>>;

/// The right to run the one background refresh of a page; released on drop, so a refresh
/// that ends in any way (a panic included) lets the next stale caller start another.
struct RefreshClaim {
    refreshing: Refreshing,
    key: PageKey,
}

impl RefreshClaim {
    /// The claim on `key`, unless a refresh of it is running.
    fn take(refreshing: &Refreshing, key: &PageKey) -> Option<RefreshClaim> {
        let inserted = refreshing.lock().expect("refreshing lock").insert(key.clone());
        inserted.then(|| RefreshClaim {
            refreshing: refreshing.clone(),
            key: key.clone(),
        })
    }
}

impl Drop for RefreshClaim {
    fn drop(&mut self) {
        if let Ok(mut refreshing) = self.refreshing.lock() {
            refreshing.remove(&self.key);
        }
    }
}

#[derive(Clone)]
pub struct PageCache {
    pages: moka::future::Cache<PageKey, Arc<CachedPage>>,
    /// The last failed fetch of each key, for the callers that queued behind it (never
    /// answered to a request that began after the failure).
    failures: moka::sync::Cache<PageKey, (u64, SourceError)>,
    /// Orders lookups and failures: a failure is shared only with lookups begun before it.
    sequence: Arc<std::sync::atomic::AtomicU64>,
    refreshing: Refreshing,
    /// Counts changes that can alter an answer before its pages expire: a cached page
    /// replaced or dropped, or a source's filter found loose. Whole responses are reused
    /// only while it stands still (`cache::responses`).
    revision: Arc<std::sync::atomic::AtomicU64>,
    ttl: Duration,
    stale_if_error: Duration,
    stale_while_revalidate: Duration,
    /// Redis, shared by the replicas (the second tier), when configured.
    shared: Option<SharedPages>,
}

/// Who answered a fetch through moka's compute.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// This process's memory: fetched by a request this one queued behind.
    Memory,
    /// The upstream, called by this replica.
    Upstream,
    /// Redis: a fresh page, or one another replica fetched while this one waited.
    Shared,
    /// Redis: a page stale within the stale-while-revalidate window (served, refreshed).
    SharedStale,
}

/// The bytes a page holds: its normalized users, its packed records, the entry itself.
fn weigh(key: &PageKey, value: &Arc<CachedPage>) -> u32 {
    let page = &value.page;
    let users: usize = page.users.iter().map(User::approximate_bytes).sum::<usize>()
        + (page.users.capacity() - page.users.len()) * std::mem::size_of::<User>();
    let entry = std::mem::size_of::<CachedPage>() + 64 + key.pushed.len();
    u32::try_from(users + page.raw.heap_bytes() + entry).unwrap_or(u32::MAX)
}

impl PageCache {
    pub fn new(ttl: Duration, stale_if_error: Duration, stale_while_revalidate: Duration, max_bytes: u64) -> PageCache {
        PageCache {
            pages: moka::future::Cache::builder()
                .name("upstream-pages")
                .max_capacity(max_bytes)
                .weigher(weigh)
                .time_to_live(ttl.saturating_add(stale_if_error.max(stale_while_revalidate)))
                .build(),
            failures: moka::sync::Cache::builder()
                .max_capacity(4096)
                .time_to_live(Duration::from_secs(60))
                .build(),
            sequence: Arc::default(),
            refreshing: Arc::default(),
            revision: Arc::default(),
            ttl,
            stale_if_error,
            stale_while_revalidate,
            shared: None,
        }
    }

    /// Puts Redis behind memory: read on a miss, written on every upstream fetch, and one
    /// fetch per cold page across replicas (`cluster::pages`).
    pub fn with_shared(mut self, shared: SharedPages) -> PageCache {
        self.shared = Some(shared);
        self
    }

    /// How long a page is kept after its fetch: TTL plus the longer stale window.
    pub fn retention(&self) -> Duration {
        self.ttl
            .saturating_add(self.stale_if_error.max(self.stale_while_revalidate))
    }

    pub fn shared(&self) -> Option<&SharedPages> {
        self.shared.as_ref()
    }

    fn next_ticket(&self) -> u64 {
        self.sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// See the `revision` field.
    pub fn revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn bump_revision(&self) {
        self.revision.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// How a page of this age is served, and how far past its freshness it is.
    fn freshness_at(&self, age: Duration) -> (Freshness, Duration) {
        match age.checked_sub(self.ttl) {
            Some(stale_for) if stale_for < self.stale_while_revalidate => (Freshness::Revalidatable, stale_for),
            Some(stale_for) => (Freshness::Expired, stale_for),
            None => (Freshness::Fresh, Duration::ZERO),
        }
    }

    /// The cached page if it is fresh: what most lookups of a full read find, answered
    /// without building the fetch a miss would need.
    pub async fn fresh(&self, key: &PageKey) -> Option<Arc<CachedPage>> {
        let page = self.pages.get(key).await?;
        let (Freshness::Fresh, _) = self.freshness_at(page.fetched_at.elapsed()) else {
            return None;
        };
        crate::telemetry::record_cache("hit");
        Some(page)
    }

    /// The cached page, or the result of `fetch` (stored only when it succeeds).
    ///
    /// A page within the stale-while-revalidate window is returned at once, and the future
    /// `revalidate()` builds is spawned to refresh it, unless a refresh of that page is
    /// running already; `revalidate` is called at most once, and only then. It must refresh
    /// through [`PageCache::revalidate`].
    ///
    /// `refresh` (a caller's `Cache-Control: no-cache`) fetches regardless, waiting for it,
    /// and replaces the cached copy only on success.
    pub async fn get_or_fetch<Fut, Revalidate, RevalidateFut>(
        &self,
        key: PageKey,
        refresh: bool,
        fetch: Fut,
        revalidate: Revalidate,
    ) -> Result<(Arc<CachedPage>, Lookup), SourceError>
    where
        Fut: Future<Output = Result<UpstreamPage, SourceError>>,
        Revalidate: FnOnce() -> RevalidateFut,
        RevalidateFut: Future<Output = ()> + Send + 'static,
    {
        let started = Instant::now();
        let ticket = self.next_ticket();
        if !refresh {
            if let Some(page) = self.pages.get(&key).await {
                let age = page.fetched_at.elapsed();
                match self.freshness_at(age) {
                    (Freshness::Fresh, _) => {
                        crate::telemetry::record_cache("hit");
                        return Ok((page, Lookup::Hit));
                    }
                    (Freshness::Revalidatable, stale_for) => {
                        self.spawn_refresh(&key, revalidate);
                        crate::telemetry::record_cache("revalidate");
                        return Ok((page, Lookup::Revalidating { age, stale_for }));
                    }
                    (Freshness::Expired, _) => {}
                }
            }
        }
        match self
            .fetch_through(key.clone(), started, ticket, refresh, true, fetch)
            .await
        {
            Ok((page, Origin::SharedStale)) => {
                let age = page.fetched_at.elapsed();
                let stale_for = age.saturating_sub(self.ttl);
                self.spawn_refresh(&key, revalidate);
                crate::telemetry::record_cache("revalidate");
                Ok((page, Lookup::Revalidating { age, stale_for }))
            }
            Ok((page, Origin::Shared | Origin::Memory)) => Ok((page, Lookup::Hit)),
            Ok((page, Origin::Upstream)) => Ok((page, Lookup::Fetched)),
            Err(error) => self.stand_in(&key, error).await,
        }
    }

    /// Runs `revalidate()` on its own task, holding the page's refresh claim: the caller
    /// that found the page stale is not waiting for it, and hanging up must not cancel it.
    fn spawn_refresh<Revalidate, RevalidateFut>(&self, key: &PageKey, revalidate: Revalidate)
    where
        Revalidate: FnOnce() -> RevalidateFut,
        RevalidateFut: Future<Output = ()> + Send + 'static,
    {
        let Some(claim) = RefreshClaim::take(&self.refreshing, key) else {
            return;
        };
        let refresh = revalidate();
        tokio::spawn(async move {
            let _claim = claim;
            refresh.await;
        });
    }

    /// The background refresh of a page served stale: `fetch`, coalesced with any other
    /// fetch of the page, stored on success. On failure the stale copy stays (stale-while-
    /// revalidate, then stale-if-error, may still serve it), unless the upstream refused the
    /// key or the query: a copy it no longer stands behind is dropped, so the next request
    /// asks again and reports that, as stale-if-error never papers over it either.
    pub async fn revalidate<Fut>(&self, key: PageKey, fetch: Fut) -> Result<(Arc<CachedPage>, Lookup), SourceError>
    where
        Fut: Future<Output = Result<UpstreamPage, SourceError>>,
    {
        let result = self
            .fetch_through(key.clone(), Instant::now(), self.next_ticket(), false, false, fetch)
            .await;
        if let Err(error) = &result {
            if !error.allows_stale() {
                self.invalidate(&key).await;
            }
        }
        result.map(|(page, origin)| {
            let lookup = match origin {
                Origin::Upstream => Lookup::Fetched,
                Origin::Memory | Origin::Shared | Origin::SharedStale => Lookup::Hit,
            };
            (page, lookup)
        })
    }

    /// `fetch` through moka's per-key compute: one upstream call for concurrent callers of
    /// this process; with Redis, first a copy there that is fresh (or, when `stale_ok`, stale
    /// within the stale-while-revalidate window and newer than this process's), then one
    /// upstream call across replicas (`SharedPages::fetch_once`).
    async fn fetch_through<Fut>(
        &self,
        key: PageKey,
        started: Instant,
        ticket: u64,
        refresh: bool,
        stale_ok: bool,
        fetch: Fut,
    ) -> Result<(Arc<CachedPage>, Origin), SourceError>
    where
        Fut: Future<Output = Result<UpstreamPage, SourceError>>,
    {
        let ttl = self.ttl;
        let failures = &self.failures;
        let failure_key = key.clone();
        let origin = Mutex::new(Origin::Upstream);
        let origin_ref = &origin;
        let computed = self
            .pages
            .entry(key.clone())
            .and_try_compute_with(|existing| async move {
                if let Some(existing) = &existing {
                    let page = existing.value();
                    // Fetched by another request while this one waited for the key: take it
                    // (even with a TTL of 0, or on refresh), so concurrent callers coalesce.
                    let good_enough = page.fetched_at >= started || (!refresh && page.fetched_at.elapsed() < ttl);
                    if good_enough {
                        return Ok::<_, SourceError>(Op::Nop);
                    }
                }
                // The fetch this caller queued behind failed: share that failure.
                if let Some((failed_at, error)) = failures.get(&failure_key) {
                    if failed_at > ticket {
                        return Err(error);
                    }
                }
                let Some(shared) = &self.shared else {
                    return match fetch.await {
                        Ok(page) => Ok(Op::Put(Arc::new(CachedPage {
                            page,
                            fetched_at: Instant::now(),
                        }))),
                        Err(error) => {
                            failures.insert(failure_key, (self.next_ticket(), error.clone()));
                            Err(error)
                        }
                    };
                };
                if !refresh {
                    if let Some(copy) = shared.get(&failure_key).await {
                        let newer = existing
                            .as_ref()
                            .is_none_or(|existing| existing.value().fetched_at.elapsed() > copy.age);
                        let fresh = copy.age < ttl;
                        let revalidatable = stale_ok && copy.age < ttl.saturating_add(self.stale_while_revalidate);
                        if newer && (fresh || revalidatable) {
                            *origin_ref.lock().expect("origin lock") =
                                if fresh { Origin::Shared } else { Origin::SharedStale };
                            return Ok(Op::Put(Arc::new(adopt(copy))));
                        }
                    }
                }
                match shared
                    .fetch_once(&failure_key, started, (!refresh).then_some(ttl), fetch)
                    .await
                {
                    Ok(Fetched::Here(page)) => Ok(Op::Put(Arc::new(CachedPage {
                        page,
                        fetched_at: Instant::now(),
                    }))),
                    Ok(Fetched::Elsewhere(copy)) => {
                        *origin_ref.lock().expect("origin lock") = Origin::Shared;
                        Ok(Op::Put(Arc::new(adopt(copy))))
                    }
                    Err(error) => {
                        failures.insert(failure_key, (self.next_ticket(), error.clone()));
                        Err(error)
                    }
                }
            })
            .await;
        let origin = *origin.lock().expect("origin lock");
        match computed {
            Ok(CompResult::Inserted(entry)) => {
                crate::telemetry::record_cache("miss");
                Ok((entry.into_value(), origin))
            }
            Ok(CompResult::ReplacedWith(entry)) => {
                self.bump_revision();
                crate::telemetry::record_cache("miss");
                Ok((entry.into_value(), origin))
            }
            Ok(CompResult::Unchanged(entry)) => {
                crate::telemetry::record_cache("hit");
                Ok((entry.into_value(), Origin::Memory))
            }
            Ok(CompResult::StillNone(_) | CompResult::Removed(_)) => Err(SourceError::new(
                crate::providers::SourceErrorCode::Unavailable,
                "the page could not be cached",
            )),
            Err(error) => Err(error),
        }
    }

    /// After a failed fetch: the copy the failed refetch left in place (failures are never
    /// stored), when it went stale within the stale-if-error window and the error allows it.
    /// With Redis, a copy there stands in too when memory has none as recent.
    async fn stand_in(&self, key: &PageKey, error: SourceError) -> Result<(Arc<CachedPage>, Lookup), SourceError> {
        if error.allows_stale() {
            let mut copy = self.pages.get(key).await;
            if let Some(shared) = &self.shared {
                let memory_age = copy.as_ref().map(|page| page.fetched_at.elapsed());
                if let Some(found) = shared
                    .get(key)
                    .await
                    .filter(|found| memory_age.is_none_or(|age| found.age < age))
                {
                    let adopted = Arc::new(adopt(found));
                    self.pages.insert(key.clone(), adopted.clone()).await;
                    copy = Some(adopted);
                }
            }
            if let Some(page) = copy {
                let age = page.fetched_at.elapsed();
                if age < self.ttl.saturating_add(self.stale_if_error) {
                    crate::telemetry::record_cache("stale");
                    tracing::warn!(%error, age_secs = age.as_secs(), "serving a stale page (stale-if-error)");
                    let stale_for = age.saturating_sub(self.ttl);
                    return Ok((page, Lookup::Stale { age, stale_for }));
                }
            }
        }
        Err(error)
    }

    /// The cached page, if any, without fetching (for plans).
    pub async fn peek(&self, key: &PageKey) -> Option<Arc<CachedPage>> {
        self.pages.get(key).await
    }

    /// How a request would find a page now, if it is cached, without fetching (for plans).
    pub async fn freshness(&self, key: &PageKey) -> Option<Freshness> {
        let page = self.pages.get(key).await?;
        Some(self.freshness_at(page.fetched_at.elapsed()).0)
    }

    pub async fn invalidate(&self, key: &PageKey) {
        self.pages.invalidate(key).await;
        if let Some(shared) = &self.shared {
            shared.remove(key).await;
        }
        self.bump_revision();
    }

    /// Whether a page is cached now (for plans and tests; does not touch recency).
    pub fn contains(&self, key: &PageKey) -> bool {
        self.pages.contains_key(key)
    }

    /// Whether a background refresh of the page is running.
    #[cfg(test)]
    fn is_refreshing(&self, key: &PageKey) -> bool {
        self.refreshing.lock().expect("refreshing lock").contains(key)
    }

    /// Bytes held, as weighed (for `/metrics`).
    pub async fn weighted_size(&self) -> u64 {
        self.pages.run_pending_tasks().await;
        self.pages.weighted_size()
    }
}

/// A page read from Redis, on this process's clock.
fn adopt(copy: SharedPage) -> CachedPage {
    let now = Instant::now();
    CachedPage {
        page: copy.page,
        fetched_at: now.checked_sub(copy.age).unwrap_or(now),
    }
}

/// A cached page as a request would find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within the TTL: served as it is.
    Fresh,
    /// Stale by less than the stale-while-revalidate window: served at once, flagged, while
    /// a background refresh replaces it.
    Revalidatable,
    /// Further past: refetched before it is served (kept only to stand in if that fails).
    Expired,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::providers::SourceErrorCode;

    fn key(page: u64) -> PageKey {
        PageKey {
            source: SourceName::parse("s").unwrap(),
            pushed: Arc::from(""),
            page,
        }
    }

    fn empty_page() -> UpstreamPage {
        UpstreamPage {
            users: Vec::new(),
            raw: crate::raw_records::RawRecords::pack([]),
            total: 0,
            page_size: 10,
            echoed_page: None,
        }
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch_and_failures_are_not_kept() {
        let cache = PageCache::new(
            Duration::from_secs(60),
            Duration::from_secs(300),
            Duration::ZERO,
            1 << 20,
        );
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(empty_page())
        };
        let results =
            futures_util::future::join_all((0..8).map(|_| cache.get_or_fetch(key(1), false, fetch(), || async {})))
                .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let fetched = results
            .iter()
            .filter(|r| r.as_ref().unwrap().1 == Lookup::Fetched)
            .count();
        assert_eq!(fetched, 1);

        let failing = async { Err(SourceError::new(SourceErrorCode::Unavailable, "down")) };
        assert!(cache.get_or_fetch(key(2), false, failing, || async {}).await.is_err());
        assert!(!cache.contains(&key(2)), "a failure must not be cached");
        let (_, lookup) = cache
            .get_or_fetch(key(2), false, async { Ok(empty_page()) }, || async {})
            .await
            .unwrap();
        assert_eq!(lookup, Lookup::Fetched);

        let (_, lookup) = cache
            .get_or_fetch(key(1), true, async { Ok(empty_page()) }, || async {})
            .await
            .unwrap();
        assert_eq!(lookup, Lookup::Fetched, "refresh skips the cached copy");
    }

    #[tokio::test]
    async fn replacing_or_dropping_a_page_moves_the_revision_and_a_first_fetch_does_not() {
        let cache = PageCache::new(
            Duration::from_secs(60),
            Duration::from_secs(300),
            Duration::ZERO,
            1 << 20,
        );
        let ok = || async { Ok(empty_page()) };
        cache.get_or_fetch(key(1), false, ok(), || async {}).await.unwrap();
        cache.get_or_fetch(key(1), false, ok(), || async {}).await.unwrap();
        let start = cache.revision();
        assert_eq!(start, 0, "a new page changes no answer already given");
        cache.get_or_fetch(key(1), true, ok(), || async {}).await.unwrap();
        assert_eq!(cache.revision(), start + 1, "a refresh replaced a page");
        cache.invalidate(&key(1)).await;
        assert_eq!(cache.revision(), start + 2, "a page was dropped");
    }

    #[tokio::test]
    async fn callers_queued_behind_a_failing_fetch_share_its_failure() {
        let cache = PageCache::new(
            Duration::from_secs(60),
            Duration::from_secs(300),
            Duration::ZERO,
            1 << 20,
        );
        let calls = AtomicUsize::new(0);
        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Err::<UpstreamPage, _>(SourceError::new(SourceErrorCode::Unavailable, "down"))
        };
        let results =
            futures_util::future::join_all((0..5).map(|_| cache.get_or_fetch(key(3), false, failing(), || async {})))
                .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one call, one failure shared");
        assert!(results.iter().all(Result::is_err));
        let (_, lookup) = cache
            .get_or_fetch(key(3), false, async { Ok(empty_page()) }, || async {})
            .await
            .unwrap();
        assert_eq!(
            lookup,
            Lookup::Fetched,
            "a caller that comes after the failure tries again"
        );
    }
}

/// What the stale and revalidation tests share: one key, and an empty page of a total.
#[cfg(test)]
mod fixtures {
    use super::*;

    pub fn key() -> PageKey {
        PageKey {
            source: SourceName::parse("s").unwrap(),
            pushed: Arc::from(""),
            page: 1,
        }
    }

    pub fn page(total: u64) -> UpstreamPage {
        UpstreamPage {
            users: Vec::new(),
            raw: crate::raw_records::RawRecords::pack([]),
            total,
            page_size: 10,
            echoed_page: None,
        }
    }
}

#[cfg(test)]
mod stale_tests {
    use super::*;
    use crate::providers::SourceErrorCode;

    use super::fixtures::{key, page};

    fn down() -> SourceError {
        SourceError::new(SourceErrorCode::Unavailable, "down")
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_then_stale_if_error_then_gone() {
        let cache = PageCache::new(
            Duration::from_secs(60),
            Duration::from_secs(300),
            Duration::ZERO,
            1 << 20,
        );
        cache
            .get_or_fetch(key(), false, async { Ok(page(1)) }, || async {})
            .await
            .unwrap();

        tokio::time::advance(Duration::from_secs(59)).await;
        let (_, lookup) = cache
            .get_or_fetch(key(), false, async { Err(down()) }, || async {})
            .await
            .unwrap();
        assert_eq!(lookup, Lookup::Hit, "fresh: the failing fetch is never run");

        tokio::time::advance(Duration::from_secs(2)).await;
        let (stale, lookup) = cache
            .get_or_fetch(key(), false, async { Err(down()) }, || async {})
            .await
            .unwrap();
        assert_eq!(
            lookup,
            Lookup::Stale {
                age: Duration::from_secs(61),
                stale_for: Duration::from_secs(1)
            }
        );
        assert_eq!(stale.page.total, 1);

        let (fresh, lookup) = cache
            .get_or_fetch(key(), false, async { Ok(page(2)) }, || async {})
            .await
            .unwrap();
        assert_eq!(
            (fresh.page.total, lookup),
            (2, Lookup::Fetched),
            "stale pages are refetched when possible"
        );

        tokio::time::advance(Duration::from_secs(360)).await;
        let error = cache
            .get_or_fetch(key(), false, async { Err(down()) }, || async {})
            .await
            .unwrap_err();
        assert_eq!(error, down(), "past the stale-if-error window the failure shows");

        let unauthorized = SourceError::new(SourceErrorCode::Unauthorized, "key revoked");
        cache
            .get_or_fetch(key(), true, async { Ok(page(3)) }, || async {})
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        let error = cache
            .get_or_fetch(key(), false, async { Err(unauthorized.clone()) }, || async {})
            .await
            .unwrap_err();
        assert_eq!(error, unauthorized, "a revoked key is not papered over with stale data");
    }
}

#[cfg(test)]
mod revalidate_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::providers::SourceErrorCode;

    const TTL: Duration = Duration::from_secs(60);
    const SWR: Duration = Duration::from_secs(30);

    use super::fixtures::{key, page};

    /// A foreground fetch that must never run: the lookup is answered from the cache.
    async fn never() -> Result<UpstreamPage, SourceError> {
        panic!("a lookup within the stale-while-revalidate window waited for a fetch")
    }

    /// Counts background refreshes started; each fetches `result` once `gate` opens.
    struct Refresher {
        cache: PageCache,
        started: Arc<AtomicUsize>,
        gate: Arc<tokio::sync::Semaphore>,
    }

    impl Refresher {
        fn new(cache: &PageCache) -> Refresher {
            Refresher {
                cache: cache.clone(),
                started: Arc::default(),
                gate: Arc::new(tokio::sync::Semaphore::new(0)),
            }
        }

        fn refresh(
            &self,
            result: Result<UpstreamPage, SourceError>,
        ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
            let (cache, started, gate) = (self.cache.clone(), self.started.clone(), self.gate.clone());
            move || {
                started.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    let fetch = async move {
                        let _open = gate.acquire().await.unwrap();
                        result
                    };
                    let _ = cache.revalidate(key(), fetch).await;
                })
            }
        }

        fn started(&self) -> usize {
            self.started.load(Ordering::SeqCst)
        }

        /// Opens the gate for one refresh and waits until it has ended.
        async fn finish_one(&self) {
            self.gate.add_permits(1);
            while self.cache.is_refreshing(&key()) {
                tokio::task::yield_now().await;
            }
        }
    }

    async fn cached(cache: &PageCache, total: u64) {
        cache
            .get_or_fetch(key(), false, async move { Ok(page(total)) }, || async {})
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_stale_within_the_window_is_served_at_once_and_refreshed_once() {
        let cache = PageCache::new(TTL, Duration::from_secs(300), SWR, 1 << 20);
        cached(&cache, 1).await;
        tokio::time::advance(Duration::from_secs(70)).await;
        let refresher = Refresher::new(&cache);
        let lookups = (0..8).map(|_| cache.get_or_fetch(key(), false, never(), refresher.refresh(Ok(page(2)))));
        let results = futures_util::future::join_all(lookups).await;
        for result in results {
            let (served, lookup) = result.unwrap();
            assert_eq!(served.page.total, 1, "the stale copy");
            assert_eq!(
                lookup,
                Lookup::Revalidating {
                    age: Duration::from_secs(70),
                    stale_for: Duration::from_secs(10)
                }
            );
        }
        assert_eq!(refresher.started(), 1, "one refresh for eight callers");
        let (_, lookup) = cache
            .get_or_fetch(key(), false, never(), refresher.refresh(Ok(page(2))))
            .await
            .unwrap();
        assert!(matches!(lookup, Lookup::Revalidating { .. }));
        assert_eq!(refresher.started(), 1, "a caller during the refresh starts none");

        refresher.finish_one().await;
        let (fresh, lookup) = cache
            .get_or_fetch(key(), false, never(), refresher.refresh(Ok(page(3))))
            .await
            .unwrap();
        assert_eq!(
            (fresh.page.total, lookup),
            (2, Lookup::Hit),
            "the refreshed page, fresh"
        );
        assert_eq!(refresher.started(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_stale_copy_unless_the_upstream_refused() {
        let cache = PageCache::new(TTL, Duration::from_secs(300), SWR, 1 << 20);
        cached(&cache, 1).await;
        tokio::time::advance(Duration::from_secs(61)).await;
        let refresher = Refresher::new(&cache);
        let down = SourceError::new(SourceErrorCode::Unavailable, "down");
        cache
            .get_or_fetch(key(), false, never(), refresher.refresh(Err(down)))
            .await
            .unwrap();
        refresher.finish_one().await;
        let (kept, lookup) = cache
            .get_or_fetch(
                key(),
                false,
                never(),
                refresher.refresh(Err(SourceError::new(SourceErrorCode::Unauthorized, "key revoked"))),
            )
            .await
            .unwrap();
        assert_eq!(kept.page.total, 1, "the failure left the stale copy");
        assert!(matches!(lookup, Lookup::Revalidating { .. }), "{lookup:?}");
        assert_eq!(
            refresher.started(),
            2,
            "the next stale caller after a failure tries again"
        );

        refresher.finish_one().await;
        assert!(!cache.contains(&key()), "a copy the upstream refused is dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn no_cache_past_the_window_or_a_zero_window_wait_for_the_fetch() {
        for (swr, age, refresh) in [(SWR, 61, true), (SWR, 91, false), (Duration::ZERO, 61, false)] {
            let cache = PageCache::new(TTL, Duration::from_secs(300), swr, 1 << 20);
            cached(&cache, 1).await;
            tokio::time::advance(Duration::from_secs(age)).await;
            let refresher = Refresher::new(&cache);
            let (fetched, lookup) = cache
                .get_or_fetch(key(), refresh, async { Ok(page(2)) }, refresher.refresh(Ok(page(3))))
                .await
                .unwrap();
            let case = format!("window {swr:?}, age {age} s, no-cache {refresh}");
            assert_eq!((fetched.page.total, lookup), (2, Lookup::Fetched), "{case}");
            assert_eq!(refresher.started(), 0, "{case}");
        }
        let cache = PageCache::new(TTL, Duration::from_secs(300), SWR, 1 << 20);
        cached(&cache, 1).await;
        tokio::time::advance(Duration::from_secs(100)).await;
        let down = async { Err(SourceError::new(SourceErrorCode::Unavailable, "down")) };
        let (stale, lookup) = cache.get_or_fetch(key(), false, down, || async {}).await.unwrap();
        assert_eq!(
            (stale.page.total, lookup),
            (
                1,
                Lookup::Stale {
                    age: Duration::from_secs(100),
                    stale_for: Duration::from_secs(40)
                }
            ),
            "past the window, a failed fetch falls back to stale-if-error"
        );
    }
}

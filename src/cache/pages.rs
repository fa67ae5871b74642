//! Upstream pages in moka, keyed by (source, pushed-down query, upstream page) (SPEC §7).
//!
//! Weighed by the bytes a page holds; fresh for the configured TTL, then kept for the
//! stale-if-error window (RFC 5861): when refetching fails, the stale copy is served and
//! said to be stale. Failures are never stored as pages. Concurrent misses on one key share
//! one upstream call: moka's compute API serializes callers per key, and a caller that finds
//! a page fetched while it waited takes that page; one that finds the fetch it waited for
//! failed takes that failure instead of calling again.
//!
//! Freshness uses tokio's clock (tests pause it); moka's own expiry only bounds memory.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::ops::compute::{CompResult, Op};
use tokio::time::Instant;

use super::facts::QueryKey;
use crate::model::SourceName;
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

/// A page as fetched, with the moment it was fetched (for ages and, later, staleness).
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
    /// The upstream failed; a copy this old (past its freshness) was served instead.
    Stale { age: Duration },
}

#[derive(Clone)]
pub struct PageCache {
    pages: moka::future::Cache<PageKey, Arc<CachedPage>>,
    /// The last failed fetch of each key, for the callers that queued behind it (never
    /// answered to a request that began after the failure).
    failures: moka::sync::Cache<PageKey, (u64, SourceError)>,
    /// Orders lookups and failures: a failure is shared only with lookups begun before it.
    sequence: Arc<std::sync::atomic::AtomicU64>,
    /// Counts changes that can alter an answer before its pages expire: a cached page
    /// replaced or dropped, or a source's filter found loose. Whole responses are reused
    /// only while it stands still (`cache::responses`).
    revision: Arc<std::sync::atomic::AtomicU64>,
    ttl: Duration,
    stale_if_error: Duration,
}

/// Approximate heap bytes of a page: raw JSON plus the normalized copies of its fields.
fn weigh(_key: &PageKey, value: &Arc<CachedPage>) -> u32 {
    let users: usize = value.page.users.iter().map(|user| user.raw.get().len() * 2 + 256).sum();
    u32::try_from(users + 128).unwrap_or(u32::MAX)
}

impl PageCache {
    pub fn new(ttl: Duration, stale_if_error: Duration, max_bytes: u64) -> PageCache {
        PageCache {
            pages: moka::future::Cache::builder()
                .name("upstream-pages")
                .max_capacity(max_bytes)
                .weigher(weigh)
                .time_to_live(ttl.saturating_add(stale_if_error))
                .build(),
            failures: moka::sync::Cache::builder()
                .max_capacity(4096)
                .time_to_live(Duration::from_secs(60))
                .build(),
            sequence: Arc::default(),
            revision: Arc::default(),
            ttl,
            stale_if_error,
        }
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

    fn is_fresh(&self, page: &CachedPage) -> bool {
        page.fetched_at.elapsed() < self.ttl
    }

    /// The cached page, or the result of `fetch` (stored only when it succeeds).
    ///
    /// `refresh` (a caller's `Cache-Control: no-cache`) fetches regardless and replaces the
    /// cached copy only on success.
    pub async fn get_or_fetch<Fut>(
        &self,
        key: PageKey,
        refresh: bool,
        fetch: Fut,
    ) -> Result<(Arc<CachedPage>, Lookup), SourceError>
    where
        Fut: Future<Output = Result<UpstreamPage, SourceError>>,
    {
        let started = Instant::now();
        let ticket = self.next_ticket();
        if !refresh {
            if let Some(page) = self.pages.get(&key).await.filter(|page| self.is_fresh(page)) {
                crate::telemetry::record_cache("hit");
                return Ok((page, Lookup::Hit));
            }
        }
        let ttl = self.ttl;
        let failures = &self.failures;
        let failure_key = key.clone();
        let computed = self
            .pages
            .entry(key.clone())
            .and_try_compute_with(|existing| async move {
                if let Some(existing) = existing {
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
                match fetch.await {
                    Ok(page) => Ok(Op::Put(Arc::new(CachedPage {
                        page,
                        fetched_at: Instant::now(),
                    }))),
                    Err(error) => {
                        failures.insert(failure_key, (self.next_ticket(), error.clone()));
                        Err(error)
                    }
                }
            })
            .await;
        match computed {
            Ok(CompResult::Inserted(entry)) => {
                crate::telemetry::record_cache("miss");
                Ok((entry.into_value(), Lookup::Fetched))
            }
            Ok(CompResult::ReplacedWith(entry)) => {
                self.bump_revision();
                crate::telemetry::record_cache("miss");
                Ok((entry.into_value(), Lookup::Fetched))
            }
            Ok(CompResult::Unchanged(entry)) => {
                crate::telemetry::record_cache("hit");
                Ok((entry.into_value(), Lookup::Hit))
            }
            Ok(CompResult::StillNone(_) | CompResult::Removed(_)) => Err(SourceError::new(
                crate::providers::SourceErrorCode::Unavailable,
                "the page could not be cached",
            )),
            Err(error) => {
                // The failed refetch left the old copy in place (failures are never stored).
                if error.allows_stale() {
                    if let Some(page) = self.pages.get(&key).await {
                        let age = page.fetched_at.elapsed();
                        if age < self.ttl.saturating_add(self.stale_if_error) {
                            crate::telemetry::record_cache("stale");
                            tracing::warn!(%error, age_secs = age.as_secs(), "serving a stale page (stale-if-error)");
                            return Ok((page, Lookup::Stale { age }));
                        }
                    }
                }
                Err(error)
            }
        }
    }

    /// The cached page, if any, without fetching (for plans).
    pub async fn peek(&self, key: &PageKey) -> Option<Arc<CachedPage>> {
        self.pages.get(key).await
    }

    pub async fn invalidate(&self, key: &PageKey) {
        self.pages.invalidate(key).await;
        self.bump_revision();
    }

    /// Whether a page is cached now (for plans and tests; does not touch recency).
    pub fn contains(&self, key: &PageKey) -> bool {
        self.pages.contains_key(key)
    }

    /// Bytes held, as weighed (for `/metrics`).
    pub async fn weighted_size(&self) -> u64 {
        self.pages.run_pending_tasks().await;
        self.pages.weighted_size()
    }
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
            total: 0,
            page_size: 10,
            echoed_page: None,
        }
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch_and_failures_are_not_kept() {
        let cache = PageCache::new(Duration::from_secs(60), Duration::from_secs(300), 1 << 20);
        let calls = AtomicUsize::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(empty_page())
        };
        let results = futures_util::future::join_all((0..8).map(|_| cache.get_or_fetch(key(1), false, fetch()))).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let fetched = results
            .iter()
            .filter(|r| r.as_ref().unwrap().1 == Lookup::Fetched)
            .count();
        assert_eq!(fetched, 1);

        let failing = async { Err(SourceError::new(SourceErrorCode::Unavailable, "down")) };
        assert!(cache.get_or_fetch(key(2), false, failing).await.is_err());
        assert!(!cache.contains(&key(2)), "a failure must not be cached");
        let (_, lookup) = cache
            .get_or_fetch(key(2), false, async { Ok(empty_page()) })
            .await
            .unwrap();
        assert_eq!(lookup, Lookup::Fetched);

        let (_, lookup) = cache
            .get_or_fetch(key(1), true, async { Ok(empty_page()) })
            .await
            .unwrap();
        assert_eq!(lookup, Lookup::Fetched, "refresh skips the cached copy");
    }

    #[tokio::test]
    async fn replacing_or_dropping_a_page_moves_the_revision_and_a_first_fetch_does_not() {
        let cache = PageCache::new(Duration::from_secs(60), Duration::from_secs(300), 1 << 20);
        let ok = || async { Ok(empty_page()) };
        cache.get_or_fetch(key(1), false, ok()).await.unwrap();
        cache.get_or_fetch(key(1), false, ok()).await.unwrap();
        let start = cache.revision();
        assert_eq!(start, 0, "a new page changes no answer already given");
        cache.get_or_fetch(key(1), true, ok()).await.unwrap();
        assert_eq!(cache.revision(), start + 1, "a refresh replaced a page");
        cache.invalidate(&key(1)).await;
        assert_eq!(cache.revision(), start + 2, "a page was dropped");
    }

    #[tokio::test]
    async fn callers_queued_behind_a_failing_fetch_share_its_failure() {
        let cache = PageCache::new(Duration::from_secs(60), Duration::from_secs(300), 1 << 20);
        let calls = AtomicUsize::new(0);
        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Err::<UpstreamPage, _>(SourceError::new(SourceErrorCode::Unavailable, "down"))
        };
        let results =
            futures_util::future::join_all((0..5).map(|_| cache.get_or_fetch(key(3), false, failing()))).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one call, one failure shared");
        assert!(results.iter().all(Result::is_err));
        let (_, lookup) = cache
            .get_or_fetch(key(3), false, async { Ok(empty_page()) })
            .await
            .unwrap();
        assert_eq!(
            lookup,
            Lookup::Fetched,
            "a caller that comes after the failure tries again"
        );
    }
}

#[cfg(test)]
mod stale_tests {
    use super::*;
    use crate::providers::SourceErrorCode;

    fn key() -> PageKey {
        PageKey {
            source: SourceName::parse("s").unwrap(),
            pushed: Arc::from(""),
            page: 1,
        }
    }

    fn page(total: u64) -> UpstreamPage {
        UpstreamPage {
            users: Vec::new(),
            total,
            page_size: 10,
            echoed_page: None,
        }
    }

    fn down() -> SourceError {
        SourceError::new(SourceErrorCode::Unavailable, "down")
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_then_stale_if_error_then_gone() {
        let cache = PageCache::new(Duration::from_secs(60), Duration::from_secs(300), 1 << 20);
        cache.get_or_fetch(key(), false, async { Ok(page(1)) }).await.unwrap();

        tokio::time::advance(Duration::from_secs(59)).await;
        let (_, lookup) = cache.get_or_fetch(key(), false, async { Err(down()) }).await.unwrap();
        assert_eq!(lookup, Lookup::Hit, "fresh: the failing fetch is never run");

        tokio::time::advance(Duration::from_secs(2)).await;
        let (stale, lookup) = cache.get_or_fetch(key(), false, async { Err(down()) }).await.unwrap();
        assert_eq!(
            lookup,
            Lookup::Stale {
                age: Duration::from_secs(61)
            }
        );
        assert_eq!(stale.page.total, 1);

        let (fresh, lookup) = cache.get_or_fetch(key(), false, async { Ok(page(2)) }).await.unwrap();
        assert_eq!(
            (fresh.page.total, lookup),
            (2, Lookup::Fetched),
            "stale pages are refetched when possible"
        );

        tokio::time::advance(Duration::from_secs(360)).await;
        let error = cache
            .get_or_fetch(key(), false, async { Err(down()) })
            .await
            .unwrap_err();
        assert_eq!(error, down(), "past the stale-if-error window the failure shows");

        let unauthorized = SourceError::new(SourceErrorCode::Unauthorized, "key revoked");
        cache.get_or_fetch(key(), true, async { Ok(page(3)) }).await.unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        let error = cache
            .get_or_fetch(key(), false, async { Err(unauthorized.clone()) })
            .await
            .unwrap_err();
        assert_eq!(error, unauthorized, "a revoked key is not papered over with stale data");
    }
}

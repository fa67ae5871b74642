//! Upstream pages in moka, keyed by (source, pushed-down query, upstream page) (SPEC §7).
//!
//! Weighed by the bytes a page holds; fresh for the configured TTL; failures are never
//! stored. Concurrent misses on one key share a single upstream call (moka's entry API
//! runs one init future per key and hands its result to every waiter).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::SourceName;
use crate::providers::{SourceError, UpstreamPage};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub source: SourceName,
    /// The pushed-down query in its canonical text form.
    pub pushed: Arc<str>,
    pub page: u64,
}

/// A page as fetched, with the moment it was fetched (for ages and, later, staleness).
#[derive(Debug)]
pub struct CachedPage {
    pub page: UpstreamPage,
    pub fetched_at: Instant,
}

/// Whether a lookup was answered from the cache or by calling the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Fetched,
}

#[derive(Clone)]
pub struct PageCache {
    pages: moka::future::Cache<PageKey, Arc<CachedPage>>,
}

/// Approximate heap bytes of a page: raw JSON plus the normalized copies of its fields.
fn weigh(_key: &PageKey, value: &Arc<CachedPage>) -> u32 {
    let users: usize = value.page.users.iter().map(|user| user.raw.get().len() * 2 + 256).sum();
    u32::try_from(users + 128).unwrap_or(u32::MAX)
}

impl PageCache {
    pub fn new(ttl: Duration, max_bytes: u64) -> PageCache {
        PageCache {
            pages: moka::future::Cache::builder()
                .name("upstream-pages")
                .max_capacity(max_bytes)
                .weigher(weigh)
                .time_to_live(ttl)
                .build(),
        }
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
        if refresh {
            // The cached copy stays until a fresh one has arrived: a failing refetch must
            // not take a good page away from everyone else.
            let page = Arc::new(CachedPage {
                page: fetch.await?,
                fetched_at: Instant::now(),
            });
            self.pages.insert(key, page.clone()).await;
            crate::telemetry::record_cache(false);
            return Ok((page, Lookup::Fetched));
        }
        let entry = self
            .pages
            .entry(key)
            .or_try_insert_with(async {
                let page = fetch.await?;
                Ok::<_, SourceError>(Arc::new(CachedPage {
                    page,
                    fetched_at: Instant::now(),
                }))
            })
            .await
            .map_err(|shared: Arc<SourceError>| (*shared).clone())?;
        let lookup = if entry.is_fresh() { Lookup::Fetched } else { Lookup::Hit };
        crate::telemetry::record_cache(lookup == Lookup::Hit);
        Ok((entry.into_value(), lookup))
    }

    /// The cached page, if any, without fetching (for plans).
    pub async fn peek(&self, key: &PageKey) -> Option<Arc<CachedPage>> {
        self.pages.get(key).await
    }

    pub async fn invalidate(&self, key: &PageKey) {
        self.pages.invalidate(key).await;
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
        }
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch_and_failures_are_not_kept() {
        let cache = PageCache::new(Duration::from_secs(60), 1 << 20);
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
}

//! Rendered `/users` bodies, memoized by query.
//!
//! Serializing a page of users costs more than everything else a cache-hit request does,
//! so a rendered body is kept and reused while the request resolves to the very same
//! cached upstream pages (compared by identity, so a refreshed page can never be answered
//! with an old body) and the same live state the body shows (circuit states). A body that
//! depends on anything else (a failed or stale source) is never memoized, and a memoized
//! body is never reused once a page it was built from is past its freshness: the same page
//! served stale (stale-while-revalidate) must say so, which its fresh body does not.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::pages::CachedPage;
use crate::query::parse::ListQuery;

/// A body ready to send, with what makes it valid.
pub struct Rendered {
    /// The pages the body was built from. Weak: a memoized body must not keep evicted pages
    /// alive outside the cache's byte budget; a `Weak` still pins the allocation, so a
    /// pointer match can never be a new page at a reused address.
    inputs: Vec<Weak<CachedPage>>,
    /// The live state shown in the body when it was rendered.
    live: Box<[u8]>,
    /// When the oldest of `inputs` was fetched.
    oldest_input: Option<Instant>,
    pub body: Bytes,
    /// A strong validator of `body`, as header text.
    pub etag: Bytes,
}

impl Rendered {
    pub fn new(body: Vec<u8>, inputs: &[Arc<CachedPage>], live: &[u8]) -> Rendered {
        Rendered {
            etag: Bytes::from(etag_of(&body)),
            inputs: inputs.iter().map(Arc::downgrade).collect(),
            live: live.into(),
            oldest_input: inputs.iter().map(|page| page.fetched_at).min(),
            body: Bytes::from(body),
        }
    }

    /// Whether every page the body was built from is still fresh (`ttl` old at most).
    fn is_fresh(&self, ttl: Duration) -> bool {
        self.oldest_input.is_none_or(|oldest| oldest.elapsed() < ttl)
    }

    fn answers(&self, inputs: &[Arc<CachedPage>], live: &[u8]) -> bool {
        *self.live == *live
            && self.inputs.len() == inputs.len()
            && self
                .inputs
                .iter()
                .zip(inputs)
                .all(|(kept, page)| std::ptr::eq(kept.as_ptr(), Arc::as_ptr(page)))
    }
}

/// A strong validator of the exact body bytes.
fn etag_of(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("\"{:016x}{:08x}\"", hasher.finish(), body.len())
}

/// Rendered `/users` bodies by query.
#[derive(Clone)]
pub struct BodyCache {
    bodies: moka::future::Cache<ListQuery, Arc<Rendered>>,
    /// Freshness of the pages bodies are built from.
    ttl: Duration,
}

impl BodyCache {
    /// `ttl` matches the page cache: a body outliving its pages would never match again.
    pub fn new(ttl: Duration, max_bytes: u64) -> BodyCache {
        BodyCache {
            bodies: moka::future::Cache::builder()
                .name("rendered-pages")
                .max_capacity(max_bytes)
                .weigher(|_, rendered: &Arc<Rendered>| u32::try_from(rendered.body.len() + 256).unwrap_or(u32::MAX))
                .time_to_live(ttl)
                .build(),
            ttl,
        }
    }

    /// The memoized body for this query, pages and live state, or `render()`'s, memoized
    /// when `memoizable` (the body depends on the pages and live state alone).
    pub async fn body(
        &self,
        query: &ListQuery,
        inputs: &[Arc<CachedPage>],
        live: &[u8],
        memoizable: bool,
        render: impl FnOnce() -> Vec<u8>,
    ) -> Arc<Rendered> {
        if memoizable {
            let reusable = |kept: &Arc<Rendered>| kept.answers(inputs, live) && kept.is_fresh(self.ttl);
            if let Some(rendered) = self.bodies.get(query).await.filter(reusable) {
                return rendered;
            }
        }
        let rendered = Arc::new(Rendered::new(render(), inputs, live));
        if memoizable {
            self.bodies.insert(query.clone(), rendered.clone()).await;
        }
        rendered
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::providers::UpstreamPage;
    use crate::query::parse::{list_query, SourceRef};

    fn page() -> Arc<CachedPage> {
        Arc::new(CachedPage {
            page: UpstreamPage {
                users: Vec::new(),
                total: 0,
                page_size: 10,
                echoed_page: None,
            },
            fetched_at: Instant::now(),
        })
    }

    #[tokio::test]
    async fn bodies_are_reused_only_for_the_same_pages_and_live_state() {
        let cache = BodyCache::new(Duration::from_secs(60), 1 << 20);
        let sources: Vec<SourceRef> = Vec::new();
        let query = list_query("page=1", &sources).unwrap();
        let (a, b) = (page(), page());
        let body = |inputs: &[Arc<CachedPage>], live: &[u8], memoizable: bool, text: &'static str| {
            let cache = cache.clone();
            let query = query.clone();
            let inputs = inputs.to_vec();
            let live = live.to_vec();
            async move {
                cache
                    .body(&query, &inputs, &live, memoizable, || text.as_bytes().to_vec())
                    .await
            }
        };
        let first = body(std::slice::from_ref(&a), &[0], true, "one").await;
        let same = body(std::slice::from_ref(&a), &[0], true, "two").await;
        assert_eq!(same.body, first.body, "same pages: memoized body");
        let circuit_changed = body(std::slice::from_ref(&a), &[1], true, "three").await;
        assert_eq!(&circuit_changed.body[..], b"three", "a body never shows old live state");
        let refreshed = body(std::slice::from_ref(&b), &[1], true, "four").await;
        assert_eq!(
            &refreshed.body[..],
            b"four",
            "a refreshed page is never answered with an old body"
        );
        assert_ne!(refreshed.etag, first.etag);
        let partial = body(std::slice::from_ref(&b), &[1], false, "five").await;
        assert_eq!(
            &partial.body[..],
            b"five",
            "results with a failed source are rendered every time"
        );
        let after = body(&[b], &[1], true, "six").await;
        assert_eq!(&after.body[..], b"four", "and do not replace the memoized body");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_is_not_reused_once_its_pages_are_past_freshness() {
        let cache = BodyCache::new(Duration::from_secs(60), 1 << 20);
        let sources: Vec<SourceRef> = Vec::new();
        let query = list_query("page=1", &sources).unwrap();
        let inputs = [page()];
        let render = |text: &'static str| move || text.as_bytes().to_vec();
        cache.body(&query, &inputs, &[0], true, render("fresh")).await;
        tokio::time::advance(Duration::from_secs(59)).await;
        let kept = cache.body(&query, &inputs, &[0], true, render("again")).await;
        assert_eq!(&kept.body[..], b"fresh", "the pages are fresh: memoized");
        tokio::time::advance(Duration::from_secs(1)).await;
        let stale = cache.body(&query, &inputs, &[0], true, render("stale")).await;
        assert_eq!(&stale.body[..], b"stale", "the same pages, now stale: rendered again");
    }
}

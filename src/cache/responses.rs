//! Whole `/users` responses, reused before any parsing or planning.
//!
//! A cache hit should cost what the framework costs, so a finished response (body, ETag,
//! `Link`, `X-Total-Count`) is kept under the request's query text and answered at once
//! while it provably still holds: its pages are all still fresh, and nothing that can
//! change an answer before its pages expire has happened since it was built (the
//! executor's revision: a page replaced or dropped, a filter found loose, a circuit
//! opened). That check is one hash lookup, a clock read and a few atomic loads.
//!
//! Otherwise the request is executed, and when it resolves to the very same cached pages
//! (by identity) and the same live state the body shows (circuit states), the kept body is
//! reused and stamped again rather than rendered. A response that depends on anything else
//! (a failed or stale source) is never kept.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::http::HeaderValue;
use bytes::Bytes;
use tokio::time::Instant;

use super::pages::CachedPage;

/// A response ready to send.
pub struct Stored {
    pub body: Bytes,
    /// A strong validator of `body`.
    pub etag: HeaderValue,
    pub link: Option<HeaderValue>,
    /// `X-Total-Count`.
    pub total: Option<HeaderValue>,
    /// The pages the body was built from. Weak: a kept response must not keep evicted pages
    /// alive outside the cache's byte budget; a `Weak` still pins the allocation, so a
    /// pointer match can never be a new page at a reused address.
    inputs: Vec<Weak<CachedPage>>,
    /// The live state shown in the body when it was rendered.
    live: Box<[u8]>,
}

/// What a response shows besides its body, for [`Stored::new`].
#[derive(Default)]
pub struct Headers {
    pub link: Option<HeaderValue>,
    pub total: Option<u64>,
}

impl Stored {
    pub fn new(body: Vec<u8>, headers: Headers, inputs: &[Arc<CachedPage>], live: &[u8]) -> Stored {
        Stored {
            etag: etag_of(&body),
            link: headers.link,
            total: headers.total.map(HeaderValue::from),
            inputs: inputs.iter().map(Arc::downgrade).collect(),
            live: live.into(),
            body: Bytes::from(body),
        }
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
fn etag_of(body: &[u8]) -> HeaderValue {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    let text = format!("\"{:016x}{:08x}\"", hasher.finish(), body.len());
    HeaderValue::from_str(&text).expect("hex digits and quotes are a valid header value")
}

/// A kept response and when it stops holding.
struct Entry {
    stored: Arc<Stored>,
    /// The executor's revision when the request that built or reused it began.
    revision: u64,
    /// When its first page goes stale.
    fresh_until: Instant,
}

type Hasher = foldhash::fast::RandomState;

#[allow(clippy::borrowed_box)] // moka hands the key as it is stored
fn weigh(key: &Box<str>, entry: &Arc<Entry>) -> u32 {
    u32::try_from(key.len() + entry.stored.body.len() + 512).unwrap_or(u32::MAX)
}

/// Kept `/users` responses by query text.
#[derive(Clone)]
pub struct ResponseCache {
    entries: moka::sync::Cache<Box<str>, Arc<Entry>, Hasher>,
    ttl: Duration,
}

impl ResponseCache {
    /// Bytes held, as weighed (for `/metrics`).
    pub fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }

    /// `ttl` is the page cache's: a response is fresh as long as its stalest page.
    pub fn new(ttl: Duration, max_bytes: u64) -> ResponseCache {
        ResponseCache {
            entries: moka::sync::Cache::builder()
                .name("responses")
                .max_capacity(max_bytes)
                .weigher(weigh)
                .time_to_live(ttl)
                .build_with_hasher(Hasher::default()),
            ttl,
        }
    }

    /// The response kept for `query_text`, if it still holds at `revision`.
    pub fn get(&self, query_text: &str, revision: u64) -> Option<Arc<Stored>> {
        let entry = self.entries.get(query_text)?;
        (entry.revision == revision && Instant::now() < entry.fresh_until).then(|| entry.stored.clone())
    }

    /// The response for an executed request: the kept one when built from the same pages
    /// and live state, else `render()`'s. Kept (stamped with `revision`, the executor's
    /// revision when the request began) when `keep` says the response depends on its pages
    /// and live state alone.
    pub fn settle(
        &self,
        query_text: &str,
        revision: u64,
        inputs: &[Arc<CachedPage>],
        live: &[u8],
        keep: bool,
        render: impl FnOnce() -> (Vec<u8>, Headers),
    ) -> Arc<Stored> {
        let keep = keep && !inputs.is_empty();
        let kept = keep
            .then(|| self.entries.get(query_text))
            .flatten()
            .map(|entry| entry.stored.clone())
            .filter(|stored| stored.answers(inputs, live));
        let stored = kept.unwrap_or_else(|| {
            let (body, headers) = render();
            Arc::new(Stored::new(body, headers, inputs, live))
        });
        if let Some(fresh_until) = keep.then(|| self.fresh_until(inputs)).flatten() {
            let entry = Entry {
                stored: stored.clone(),
                revision,
                fresh_until,
            };
            self.entries.insert(query_text.into(), Arc::new(entry));
        }
        stored
    }

    fn fresh_until(&self, inputs: &[Arc<CachedPage>]) -> Option<Instant> {
        inputs
            .iter()
            .map(|page| page.fetched_at.checked_add(self.ttl))
            .min()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::UpstreamPage;

    fn page() -> Arc<CachedPage> {
        Arc::new(CachedPage {
            page: UpstreamPage {
                users: Vec::new(),
                raw: crate::raw_records::RawRecords::pack([]),
                total: 0,
                page_size: 10,
                echoed_page: None,
            },
            fetched_at: Instant::now(),
        })
    }

    fn stored(text: &'static str) -> impl FnOnce() -> (Vec<u8>, Headers) {
        move || (text.as_bytes().to_vec(), Headers::default())
    }

    fn settle(
        cache: &ResponseCache,
        revision: u64,
        inputs: &[Arc<CachedPage>],
        live: u8,
        keep: bool,
        text: &'static str,
    ) -> Bytes {
        cache
            .settle("page=1", revision, inputs, &[live], keep, stored(text))
            .body
            .clone()
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_response_holds_while_its_pages_are_fresh_and_nothing_changed() {
        let cache = ResponseCache::new(Duration::from_secs(60), 1 << 20);
        let a = page();
        assert!(cache.get("page=1", 0).is_none());
        assert_eq!(settle(&cache, 0, std::slice::from_ref(&a), 0, true, "one"), "one");
        assert_eq!(cache.get("page=1", 0).unwrap().body, "one");
        assert!(cache.get("page=2", 0).is_none(), "another query text");
        assert!(cache.get("page=1", 1).is_none(), "something changed since");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(cache.get("page=1", 0).is_none(), "its page went stale");
    }

    #[tokio::test(start_paused = true)]
    async fn an_executed_request_reuses_the_body_only_for_the_same_pages_and_live_state() {
        let cache = ResponseCache::new(Duration::from_secs(60), 1 << 20);
        let (a, b) = (page(), page());
        let first = settle(&cache, 0, std::slice::from_ref(&a), 0, true, "one");
        assert_eq!(settle(&cache, 1, std::slice::from_ref(&a), 0, true, "two"), first);
        assert_eq!(
            cache.get("page=1", 1).unwrap().body,
            "one",
            "reused and stamped with the new revision"
        );
        assert_eq!(
            settle(&cache, 1, std::slice::from_ref(&a), 1, true, "three"),
            "three",
            "a body never shows old live state"
        );
        assert_eq!(
            settle(&cache, 1, std::slice::from_ref(&b), 1, true, "four"),
            "four",
            "a refreshed page is never answered with an old body"
        );
        assert_eq!(
            settle(&cache, 1, std::slice::from_ref(&b), 1, false, "five"),
            "five",
            "results with a failed source are rendered every time"
        );
        assert_eq!(cache.get("page=1", 1).unwrap().body, "four", "and are not kept");
        assert_eq!(settle(&cache, 1, &[], 1, true, "six"), "six");
        assert_eq!(
            cache.get("page=1", 1).unwrap().body,
            "four",
            "a response built from no page is not kept: nothing says when it goes stale"
        );
    }
}

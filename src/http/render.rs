//! Response bytes for `/users`: links, validators, 304s, and memoized page bodies.
//!
//! Serializing a page of users costs more than everything else a cache-hit request does,
//! so a rendered body is kept and reused while the request resolves to the very same
//! cached upstream pages (compared by identity, so a refreshed page can never be
//! answered with an old body).

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::cache::CachedPage;
use crate::execute::ListResult;
use crate::merge::paging::PageMeta;
use crate::query::parse::ListQuery;

/// A body ready to send, with what makes it valid.
pub struct Rendered {
    /// The pages the body was built from. Weak: a memoized body must not keep evicted pages
    /// alive outside the cache's byte budget; a `Weak` still pins the allocation, so a
    /// pointer match can never be a new page at a reused address.
    inputs: Vec<Weak<CachedPage>>,
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Rendered {
    pub fn new(body: Vec<u8>, inputs: &[Arc<CachedPage>]) -> Rendered {
        let etag = HeaderValue::from_str(&etag_of(&body)).expect("an etag is a valid header value");
        Rendered {
            inputs: inputs.iter().map(Arc::downgrade).collect(),
            body: Bytes::from(body),
            etag,
        }
    }
}

/// Rendered `/users` bodies by query.
#[derive(Clone)]
pub struct RenderCache {
    bodies: moka::future::Cache<ListQuery, Arc<Rendered>>,
}

impl RenderCache {
    /// `ttl` matches the page cache: a body outliving its pages would never match again.
    pub fn new(ttl: Duration, max_bytes: u64) -> RenderCache {
        RenderCache {
            bodies: moka::future::Cache::builder()
                .name("rendered-pages")
                .max_capacity(max_bytes)
                .weigher(|_, rendered: &Arc<Rendered>| u32::try_from(rendered.body.len() + 256).unwrap_or(u32::MAX))
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The memoized body for this query and result, or `render()`'s, memoized when the
    /// result depends on its cached pages alone (no source failed).
    pub async fn body(
        &self,
        query: &ListQuery,
        result: &ListResult,
        render: impl FnOnce() -> Vec<u8>,
    ) -> Arc<Rendered> {
        if !result.any_failed {
            if let Some(rendered) = self.bodies.get(query).await {
                let same_inputs = rendered.inputs.len() == result.inputs.len()
                    && rendered
                        .inputs
                        .iter()
                        .zip(&result.inputs)
                        .all(|(a, b)| std::ptr::eq(a.as_ptr(), Arc::as_ptr(b)));
                if same_inputs {
                    return rendered;
                }
            }
        }
        let rendered = Arc::new(Rendered::new(render(), &result.inputs));
        if !result.any_failed {
            self.bodies.insert(query.clone(), rendered.clone()).await;
        }
        rendered
    }
}

/// A strong validator of the exact body bytes.
fn etag_of(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("\"{:016x}{:08x}\"", hasher.finish(), body.len())
}

/// `If-None-Match` matches (weak comparison, RFC 9110 §13.1.2).
fn matches_if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    headers.get_all(header::IF_NONE_MATCH).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == etag)
        })
    })
}

/// A JSON body with its validator; 304 when the caller already has it.
pub fn json_response(request_headers: &HeaderMap, body: Bytes, etag: HeaderValue, mut headers: HeaderMap) -> Response {
    let not_modified = matches_if_none_match(request_headers, &etag);
    headers.insert(header::ETAG, etag);
    if not_modified {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, body).into_response()
}

/// A one-off JSON body (not memoized) with its validator.
pub fn json_once(request_headers: &HeaderMap, body: Vec<u8>, headers: HeaderMap) -> Response {
    let rendered = Rendered::new(body, &[]);
    json_response(request_headers, rendered.body, rendered.etag, headers)
}

/// The paging links of one page; `prev`/`next` are `None` where there is none.
pub struct PageLinks {
    pub self_link: String,
    pub first: String,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub last: String,
}

fn page_link(query: &ListQuery, page: u64) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    serializer.append_pair("page", &page.to_string());
    for (name, value) in &query.link_params {
        serializer.append_pair(name, value);
    }
    format!("/users?{}", serializer.finish())
}

impl PageLinks {
    pub fn new(query: &ListQuery, meta: &PageMeta) -> PageLinks {
        let last = meta.total_pages.max(1);
        PageLinks {
            self_link: page_link(query, meta.page),
            first: page_link(query, 1),
            prev: (meta.page > 1).then(|| page_link(query, (meta.page - 1).min(last))),
            next: meta.has_more.then(|| page_link(query, meta.page + 1)),
            last: page_link(query, last),
        }
    }

    /// The RFC 8288 `Link` header.
    pub fn header(&self) -> String {
        [
            Some((&self.first, "first")),
            self.prev.as_ref().map(|prev| (prev, "prev")),
            self.next.as_ref().map(|next| (next, "next")),
            Some((&self.last, "last")),
        ]
        .into_iter()
        .flatten()
        .map(|(target, rel)| format!("<{target}>; rel=\"{rel}\""))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::merge::paging::PageMeta;
    use crate::providers::UpstreamPage;
    use crate::query::parse::{list_query, SourceRef};

    fn page() -> Arc<CachedPage> {
        Arc::new(CachedPage {
            page: UpstreamPage {
                users: Vec::new(),
                total: 0,
                page_size: 10,
            },
            fetched_at: Instant::now(),
        })
    }

    fn result(inputs: Vec<Arc<CachedPage>>, any_failed: bool) -> ListResult {
        ListResult {
            meta: PageMeta::new(1, 25, 0),
            users: Vec::new(),
            reports: Vec::new(),
            upstream_calls: 0,
            inputs,
            any_failed,
            any_stale: false,
        }
    }

    #[tokio::test]
    async fn bodies_are_reused_only_for_the_same_pages() {
        let cache = RenderCache::new(Duration::from_secs(60), 1 << 20);
        let sources: Vec<SourceRef> = Vec::new();
        let query = list_query("page=1", &sources).unwrap();
        let (a, b) = (page(), page());
        let first = cache
            .body(&query, &result(vec![a.clone()], false), || b"one".to_vec())
            .await;
        let same = cache
            .body(&query, &result(vec![a.clone()], false), || b"two".to_vec())
            .await;
        assert_eq!(same.body, first.body, "same pages: memoized body");
        let refreshed = cache
            .body(&query, &result(vec![b.clone()], false), || b"three".to_vec())
            .await;
        assert_eq!(
            &refreshed.body[..],
            b"three",
            "a refreshed page is never answered with an old body"
        );
        assert_ne!(refreshed.etag, first.etag);
        let partial = cache
            .body(&query, &result(vec![b.clone()], true), || b"four".to_vec())
            .await;
        assert_eq!(
            &partial.body[..],
            b"four",
            "results with a failed source are rendered every time"
        );
        let after = cache.body(&query, &result(vec![b], false), || b"five".to_vec()).await;
        assert_eq!(&after.body[..], b"three", "and do not replace the memoized body");
    }
}

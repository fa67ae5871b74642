//! Response bytes for `/users`: links, validators and 304s. (Whole responses are kept in
//! `cache::responses`.)

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::cache::responses::{Headers, Stored};
use crate::merge::paging::PageMeta;
use crate::query::parse::ListQuery;

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
pub fn json_response(request_headers: &HeaderMap, stored: &Stored, mut headers: HeaderMap) -> Response {
    headers.insert(header::ETAG, stored.etag.clone());
    if let Some(link) = &stored.link {
        headers.insert(header::LINK, link.clone());
    }
    if let Some(total) = &stored.total {
        headers.insert("x-total-count", total.clone());
    }
    if matches_if_none_match(request_headers, &stored.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, stored.body.clone()).into_response()
}

/// A one-off JSON body (not kept) with its validator.
pub fn json_once(request_headers: &HeaderMap, body: Vec<u8>, headers: HeaderMap) -> Response {
    let stored = Stored::new(body, Headers::default(), &[], &[]);
    json_response(request_headers, &stored, headers)
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

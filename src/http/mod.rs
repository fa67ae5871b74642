//! The HTTP surface: router, shared state, caller auth, and every tower layer in one place.
//!
//! Layers, outer → inner:
//! 1. `edge`: `telemetry::observe` (request id, access log, HTTP metrics) around
//!    `over_limits` (target length, header count and size: 414 / 431 problems, and the heads
//!    `serve`'s guard cut short). One layer: axum boxes every `from_fn` layer per request.
//! 2. CORS (only when `GATEWAY_CORS_ORIGINS` is set).
//! 3. Catch-panic: a bug answers 500 problem+json instead of dropping the connection.
//! 4. Routes. `/users*` also pass `guard_api`: caller auth (only when `GATEWAY_API_KEYS`
//!    is set), then load shedding (at most `GATEWAY_MAX_CONCURRENT_REQUESTS` at once, else
//!    a 503 problem at once). One layer, because every layer is paid on every request,
//!    cache hits included.

mod examples;
pub mod export;
pub mod openapi;
pub mod ops;
pub mod plan;
pub mod problem;
pub mod render;
pub mod serve;
pub mod users;

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_swagger_ui::SwaggerUi;

use crate::config::CorsOrigins;
use crate::execute::Executor;
use crate::providers::PushdownOptions;
use crate::query::parse::SourceRef;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub executor: Executor,
    /// Whole `/users` responses, answered before any parsing.
    pub responses: crate::cache::ResponseCache,
    /// Each configured source's adapter, in merge order, for the planner.
    pub adapters: Vec<Arc<dyn crate::providers::Provider>>,
    /// The configured sources, in merge order, as the query parser needs them.
    pub source_refs: Vec<SourceRef>,
    /// Keys callers must present; empty means no caller auth.
    pub api_keys: Vec<SecretString>,
    pub pushdown: PushdownOptions,
    /// Budget of one caller request for everything it does upstream.
    pub request_deadline: std::time::Duration,
    /// One slot per `/users*` request in flight (`GATEWAY_MAX_CONCURRENT_REQUESTS`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// One slot per export streaming (`GATEWAY_MAX_CONCURRENT_EXPORTS`), held by its task.
    pub exports: Arc<tokio::sync::Semaphore>,
    /// `GATEWAY_MAX_CONCURRENT_EXPORTS`, for the 503 that names it.
    pub export_limit: usize,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }

    /// The plan for `query` over the configured sources (SPEC §3).
    pub fn plan(&self, query: &crate::query::parse::ListQuery) -> crate::query::plan::Plan {
        crate::query::plan::plan(query, &self.source_refs, &self.adapters, &self.pushdown)
    }

    /// When a request starting now must be done with its upstreams.
    pub fn deadline(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        now.checked_add(self.request_deadline).unwrap_or(now)
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Longest request target accepted; real queries are far shorter.
pub(crate) const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest total of header names and values accepted.
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields accepted in one request (hyper's own default; browsers send ~20).
pub(crate) const MAX_HEADER_COUNT: usize = 100;

pub fn router(state: AppState, cors: &CorsOrigins) -> Router {
    let api = users::router()
        .merge(plan::router())
        .merge(export::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), guard_api));
    Router::new()
        .merge(api)
        .merge(ops::router())
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi::document()))
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_| panic_response()))
        .layer(tower::util::option_layer(cors_layer(cors)))
        .layer(middleware::from_fn(edge))
}

fn panic_response() -> Response {
    let body = r#"{"type":"/problems/internal","title":"Internal error","status":500,"detail":"the gateway hit a bug; the request id identifies it in the logs"}"#;
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body,
    )
        .into_response()
}

fn cors_layer(origins: &CorsOrigins) -> Option<CorsLayer> {
    let allow_origin = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => {
            AllowOrigin::list(list.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()))
        }
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::HEAD])
            .allow_headers([
                header::AUTHORIZATION,
                header::CACHE_CONTROL,
                header::IF_NONE_MATCH,
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                header::LINK,
                header::ETAG,
                HeaderName::from_static("x-total-count"),
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("cache-status"),
            ]),
    )
}

/// The outermost layer: every request is observed, and refused at once when it carries
/// more than the limits allow.
async fn edge(request: Request, next: Next) -> Response {
    crate::telemetry::observe(request, |request| async move {
        match over_limits(&request) {
            Some(refused) => refused,
            None => next.run(request).await,
        }
    })
    .await
}

/// The problem for a request that carries more than it may before any handler reads it.
fn over_limits(request: &Request) -> Option<Response> {
    if let Some(&cut) = request.extensions().get::<serve::HeadCut>() {
        // The head was cut short and its rest dropped: this connection cannot go on.
        let error = match cut {
            serve::HeadCut::MethodTooLong => problem::Error::MethodNotAllowed,
            serve::HeadCut::TargetTooLong => problem::Error::UriTooLong(MAX_URI_BYTES),
            serve::HeadCut::TooManyHeaders => problem::Error::TooManyHeaders(MAX_HEADER_COUNT),
            serve::HeadCut::HeadersTooLarge => problem::Error::HeadersTooLarge(MAX_HEADER_BYTES),
        };
        let mut response = error.into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Some(response);
    }
    let error = if target_len(request.uri()) > MAX_URI_BYTES {
        problem::Error::UriTooLong(MAX_URI_BYTES)
    } else if request.headers().len() > MAX_HEADER_COUNT {
        problem::Error::TooManyHeaders(MAX_HEADER_COUNT)
    } else if header_bytes(request) > MAX_HEADER_BYTES {
        problem::Error::HeadersTooLarge(MAX_HEADER_BYTES)
    } else {
        return None;
    };
    Some(error.into_response())
}

fn header_bytes(request: &Request) -> usize {
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

/// The request target as sent: path and query, plus scheme and authority in absolute form.
fn target_len(uri: &axum::http::Uri) -> usize {
    let scheme = uri.scheme_str().map_or(0, |scheme| scheme.len() + "://".len());
    let authority = uri.authority().map_or(0, |authority| authority.as_str().len());
    let path_and_query = uri.path_and_query().map_or(0, |target| target.as_str().len());
    scheme + authority + path_and_query
}

/// Byte comparison whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// `/users*` only: the caller's key (when keys are configured), then a slot among
/// `GATEWAY_MAX_CONCURRENT_REQUESTS` in flight, or a 503 problem at once (never a queue).
async fn guard_api(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !state.api_keys.is_empty() && !presents_a_key(&state.api_keys, &request) {
        return problem::Error::Unauthorized.into_response();
    }
    let Ok(slot) = state.in_flight.clone().try_acquire_owned() else {
        return problem::Error::Overloaded.into_response();
    };
    let response = next.run(request).await;
    if response.extensions().get::<BodyOutlivesHandler>().is_none() {
        return response;
    }
    // The work goes on while the body streams (an export): the body holds the slot.
    response.map(|body| {
        use futures_util::StreamExt;
        axum::body::Body::from_stream(body.into_data_stream().map(move |frame| {
            let _held = &slot;
            frame
        }))
    })
}

/// Set on a response whose body does the request's work after the handler returned, so
/// `guard_api` keeps its slot until the body ends.
#[derive(Clone, Copy)]
pub(crate) struct BodyOutlivesHandler;

fn presents_a_key(keys: &[SecretString], request: &Request) -> bool {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        // The auth scheme is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    presented.is_some_and(|presented| {
        // Every key is compared, so timing does not reveal which one (if any) matched.
        keys.iter().fold(false, |found, key| {
            constant_time_eq(key.expose_secret().as_bytes(), presented.as_bytes()) | found
        })
    })
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}

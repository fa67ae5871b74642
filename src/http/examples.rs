//! Example values for the OpenAPI document: one per response body and header (SPEC §5).
//!
//! Bodies are the demo's own answers (trimmed); problems are rendered by the code that
//! renders them (`problem::Error`), so an example cannot drift from what a caller gets.
//! `@redocly/cli lint` checks each against its schema (`ci/openapi-lint.sh`).

use serde_json::{json, Value};

use super::problem::Error;
use super::users::{CircuitJson, ErrorCodeJson, ProviderJson, SourceErrorJson, SourceState, SourceStatusJson};
use crate::query::parse::ParamError;

/// A response header's example, by (lowercased) name.
pub fn header(name: &str) -> Option<Value> {
    let example = match name.to_ascii_lowercase().as_str() {
        "link" => r#"</users?page=1&per_page=25>; rel="first", </users?page=1&per_page=25>; rel="prev", </users?page=3&per_page=25>; rel="next", </users?page=80&per_page=25>; rel="last""#.into(),
        "x-total-count" => json!(1980),
        "x-request-id" => "7d1f2c3e-5b6a-4c8d-9e0f-1a2b3c4d5e6f".into(),
        "etag" => r#""5f3c0a9d41e2b7c8""#.into(),
        "cache-status" => "users-gateway; hit".into(),
        "retry-after" => json!(1),
        "www-authenticate" => r#"Bearer realm="users-gateway""#.into(),
        _ => return None,
    };
    Some(example)
}

fn user() -> Value {
    json!({
        "id": "tapintosafety:90139a58-7bfd-44e5-b232-5e3553804436",
        "source": "tapintosafety",
        "provider": "tapintosafety",
        "provider_id": "90139a58-7bfd-44e5-b232-5e3553804436",
        "email": "lukaszsingh.729@site-works.example",
        "username": "sso|eb1402711004",
        "first_name": "Łukasz",
        "last_name": "Singh",
        "display_name": "Łukasz Singh",
        "role": "Learner",
        "employee_id": "EMP-15103",
        "active": true,
        "created_at": null,
        "updated_at": null,
        "last_active_at": null
    })
}

fn sources() -> Value {
    json!([
        {"source": "thoughtindustries", "provider": "thoughtindustries", "status": "ok", "total": 1250, "circuit": "closed"},
        {"source": "tapintosafety", "provider": "tapintosafety", "status": "ok", "total": 730, "circuit": "closed"}
    ])
}

/// The example of a 200 body, by operation path.
pub fn body(path: &str) -> Option<Value> {
    let example = match path {
        "/users" => json!({
            "data": [user()],
            "meta": {"page": 2, "per_page": 1, "total": 1980, "total_pages": 1980, "has_more": true, "partial": false, "sources": sources()},
            "links": {
                "self": "/users?page=2&per_page=1", "first": "/users?page=1&per_page=1", "prev": "/users?page=1&per_page=1",
                "next": "/users?page=3&per_page=1", "last": "/users?page=1980&per_page=1"
            }
        }),
        "/users/{id}" => user(),
        "/users/export" => json!({"meta": {"complete": true, "total": 1980, "sources": sources()}}),
        "/users/plan" => json!({
            "page": 1, "per_page": 10, "filters": {"role": "admin"}, "sort": ["email"],
            "order": "merged and sorted by the gateway by email, then id; strings case-insensitively, nulls last",
            "sources": [{
                "source": "tapintosafety", "provider": "tapintosafety", "action": "call",
                "reason": "sort: no provider can sort, so the gateway reads every matching user and sorts",
                "read": "full", "pushed_down": {}, "upstream_request": "GET /api/v2/users?page={n}",
                "gateway_filters": ["role"], "gateway_only_filters": ["role"], "assumptions": [], "notes": [],
                "pages": {"upstream_pages": 15, "to_read": "1-15", "to_read_count": 15, "cached": 0, "stale": 0, "limit": 1000, "within_limit": true},
                "facts": {"total": 730, "page_size": 50, "learned_secs_ago": 12, "filter": "not_pushed"}
            }],
            "upstream_calls": 15
        }),
        "/healthz" => json!({"status": "ok"}),
        "/readyz" => json!({"status": "ready", "sources": [
            {"source": "thoughtindustries", "provider": "thoughtindustries", "circuit": "closed"},
            {"source": "tapintosafety", "provider": "tapintosafety", "circuit": "closed"}
        ]}),
        "/metrics" => "# TYPE gateway_http_requests_total counter\ngateway_http_requests_total{route=\"/users\",status=\"200\"} 42\n# TYPE gateway_upstream_requests_total counter\ngateway_upstream_requests_total{source=\"thoughtindustries\",outcome=\"ok\"} 32\n".into(),
        _ => return None,
    };
    Some(example)
}

fn failed(source: &str, provider: ProviderJson, code: ErrorCodeJson, message: &str) -> SourceStatusJson {
    SourceStatusJson {
        source: source.to_owned(),
        provider,
        status: SourceState::Error,
        total: None,
        error: Some(SourceErrorJson {
            code,
            message: message.to_owned(),
        }),
        reason: None,
        stale: None,
        age_secs: None,
        circuit: Some(CircuitJson::Closed),
    }
}

/// The problem a status stands for, rendered as the gateway renders it.
pub fn problem(status: u16) -> Option<Value> {
    let both = |code, ti: &str, tis: &str| {
        vec![
            failed("thoughtindustries", ProviderJson::Thoughtindustries, code, ti),
            failed("tapintosafety", ProviderJson::Tapintosafety, code, tis),
        ]
    };
    let error = match status {
        400 => Error::InvalidParams(vec![
            ParamError::new("per_page", "must be an integer from 1 to 100, got \"1000\""),
            ParamError::new("fields", "unknown field \"nickname\"; fields: id, source, provider, provider_id, email, username, first_name, last_name, display_name, role, employee_id, active, created_at, updated_at, last_active_at"),
        ]),
        401 => Error::Unauthorized,
        404 => Error::NotFound("no user with that id".to_owned()),
        414 => Error::UriTooLong(super::MAX_URI_BYTES),
        422 => Error::TooManyPages(
            "answering needs 1200 upstream pages of thoughtindustries, more than the limit of 1000 (GATEWAY_MAX_UPSTREAM_PAGES); \
             narrow the query with a filter that source applies itself (GET /users/plan shows which)"
                .to_owned(),
        ),
        431 => Error::TooManyHeaders(super::MAX_HEADER_COUNT),
        502 => Error::UpstreamsFailed(both(
            ErrorCodeJson::Unavailable,
            "HTTP 503 after 2 retries",
            "connection refused",
        )),
        503 => Error::Overloaded,
        504 => Error::UpstreamsFailed(both(
            ErrorCodeJson::Timeout,
            "no answer within 5000 ms",
            "no answer within 5000 ms",
        )),
        _ => return None,
    };
    Some(serde_json::to_value(error.into_problem()).expect("a problem serializes"))
}

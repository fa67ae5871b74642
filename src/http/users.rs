//! `GET /users` and `GET /users/{id}`: extract, parse, plan, execute, render.
//!
//! Also the API's wire types: what callers read is defined here, once, with its schema.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Serialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::problem::{Error, Problem};
use super::render::{json_once, json_response, PageLinks};
use super::AppState;
use crate::cache::responses::Headers;
use crate::execute::{
    CallContext, ListError, LookupError, SourceReport, SourceStatus, Staleness, TooManyPages, UserRef,
};
use crate::model::User;
use crate::providers::breaker::CircuitState;
use crate::providers::SourceErrorCode;
use crate::query::fields::{Field, FieldSet};
use crate::query::parse;
use crate::raw_records::UnpackedPages;
use crate::telemetry::RequestId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users))
        .route("/users/{id}", get(get_user))
}

/// One user, normalized (SPEC §4). Every field is present, `null` where it has no value;
/// with `fields`, only `id` and the fields named (each present, `null` where empty).
#[derive(ToSchema)]
#[schema(as = User)]
pub struct UserJson<'a> {
    /// `{source}:{provider_id}`, unique across sources. Always present.
    #[schema(example = "tapintosafety:0f8fad5b-d9cb-469f-a165-70867728950e")]
    pub id: &'a str,
    /// The configured source the user comes from.
    #[schema(example = "tapintosafety", required = false)]
    pub source: &'a str,
    #[schema(required = false)]
    pub provider: ProviderJson,
    /// The user's id in its upstream.
    #[schema(example = "0f8fad5b-d9cb-469f-a165-70867728950e", required = false)]
    pub provider_id: &'a str,
    #[schema(example = "zoe.obrien@example.com")]
    pub email: Option<&'a str>,
    /// TapIntoSafety username (an e-mail or an SSO id); always null for Thought Industries.
    #[schema(example = "zoe.obrien")]
    pub username: Option<&'a str>,
    #[schema(example = "Zoë")]
    pub first_name: Option<&'a str>,
    #[schema(example = "O'Brien")]
    pub last_name: Option<&'a str>,
    /// Never null: falls back through names, e-mail or username, then the upstream id.
    #[schema(example = "Zoë O'Brien", required = false)]
    pub display_name: &'a str,
    /// The upstream role key (TI `roleKey`, TIS `role`).
    #[schema(example = "admin")]
    pub role: Option<&'a str>,
    /// TapIntoSafety `organisationIdentifier`; always null for Thought Industries.
    #[schema(example = "EMP-1042")]
    pub employee_id: Option<&'a str>,
    pub active: Option<bool>,
    /// Thought Industries only; null for TapIntoSafety.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(example = "2024-03-18T09:30:00Z")]
    pub created_at: Option<OffsetDateTime>,
    /// Thought Industries only; null for TapIntoSafety.
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    /// Thought Industries only; null for TapIntoSafety.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_active_at: Option<OffsetDateTime>,
    /// The upstream record as received, credential fields (`secretKey`, `password`, `token`…)
    /// set to `"***"`; only with `include=raw`.
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>, required = false)]
    pub raw: Option<&'a RawValue>,
    /// Which fields the JSON shows.
    #[serde(skip)]
    pub fields: FieldSet,
}

impl<'a> UserJson<'a> {
    /// The wire form of `user`: the `fields` asked for, and its upstream record when
    /// `include=raw` asked for it.
    pub fn new(user: &'a User, fields: FieldSet, raw: Option<&'a RawValue>) -> UserJson<'a> {
        UserJson {
            id: &user.id,
            source: user.source.as_str(),
            provider: ProviderJson::from(user.provider),
            provider_id: &user.provider_id,
            email: user.email.as_deref(),
            username: user.username.as_deref(),
            first_name: user.first_name.as_deref(),
            last_name: user.last_name.as_deref(),
            display_name: &user.display_name,
            role: user.role.as_deref(),
            employee_id: user.employee_id.as_deref(),
            active: user.active,
            created_at: user.created_at,
            updated_at: user.updated_at,
            last_active_at: user.last_active_at,
            raw,
            fields,
        }
    }
}

/// By hand, not derived, for `fields`: the fields shown in SPEC §4's order, then `raw`.
impl Serialize for UserJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for field in self.fields.iter() {
            let name = field.as_str();
            match field {
                Field::Id => map.serialize_entry(name, self.id)?,
                Field::Source => map.serialize_entry(name, self.source)?,
                Field::Provider => map.serialize_entry(name, &self.provider)?,
                Field::ProviderId => map.serialize_entry(name, self.provider_id)?,
                Field::Email => map.serialize_entry(name, &self.email)?,
                Field::Username => map.serialize_entry(name, &self.username)?,
                Field::FirstName => map.serialize_entry(name, &self.first_name)?,
                Field::LastName => map.serialize_entry(name, &self.last_name)?,
                Field::DisplayName => map.serialize_entry(name, self.display_name)?,
                Field::Role => map.serialize_entry(name, &self.role)?,
                Field::EmployeeId => map.serialize_entry(name, &self.employee_id)?,
                Field::Active => map.serialize_entry(name, &self.active)?,
                Field::CreatedAt => map.serialize_entry(name, &Rfc3339(self.created_at))?,
                Field::UpdatedAt => map.serialize_entry(name, &Rfc3339(self.updated_at))?,
                Field::LastActiveAt => map.serialize_entry(name, &Rfc3339(self.last_active_at))?,
            }
        }
        if let Some(raw) = self.raw {
            map.serialize_entry("raw", raw)?;
        }
        map.end()
    }
}

/// An RFC 3339 timestamp, or null.
struct Rfc3339(Option<OffsetDateTime>);

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        time::serde::rfc3339::option::serialize(&self.0, serializer)
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Provider)]
pub enum ProviderJson {
    Thoughtindustries,
    Tapintosafety,
}

impl From<crate::model::ProviderKind> for ProviderJson {
    fn from(kind: crate::model::ProviderKind) -> ProviderJson {
        match kind {
            crate::model::ProviderKind::ThoughtIndustries => ProviderJson::Thoughtindustries,
            crate::model::ProviderKind::TapIntoSafety => ProviderJson::Tapintosafety,
        }
    }
}

/// A page of users.
#[derive(Serialize, ToSchema)]
pub struct UserList<'a> {
    pub data: Vec<UserJson<'a>>,
    pub meta: Meta,
    pub links: Links<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct Meta {
    #[schema(example = 2)]
    pub page: u64,
    #[schema(example = 25)]
    pub per_page: u64,
    /// Matching users across every source that answered.
    #[schema(example = 1980)]
    pub total: u64,
    #[schema(example = 80)]
    pub total_pages: u64,
    pub has_more: bool,
    /// True when some selected source failed: the page is built from the others.
    pub partial: bool,
    /// Each selected source, in merge order.
    pub sources: Vec<SourceStatusJson>,
}

/// Paging links, relative to the gateway; `prev` and `next` are null where there is none.
#[derive(Serialize, ToSchema)]
pub struct Links<'a> {
    #[serde(rename = "self")]
    #[schema(example = "/users?page=2&per_page=25")]
    pub self_link: &'a str,
    pub first: &'a str,
    #[schema(required = true)]
    pub prev: Option<&'a str>,
    #[schema(required = true)]
    pub next: Option<&'a str>,
    pub last: &'a str,
}

impl<'a> From<&'a PageLinks> for Links<'a> {
    fn from(links: &'a PageLinks) -> Links<'a> {
        Links {
            self_link: &links.self_link,
            first: &links.first,
            prev: links.prev.as_deref(),
            next: links.next.as_deref(),
            last: &links.last,
        }
    }
}

/// How one source fared for this request.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SourceStatus)]
pub struct SourceStatusJson {
    #[schema(example = "thoughtindustries")]
    pub source: String,
    pub provider: ProviderJson,
    pub status: SourceState,
    /// The source's matching users; null unless `ok`.
    #[schema(example = 1250, required = true)]
    pub total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<SourceErrorJson>,
    /// Why a source was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Present and true when a cached page past its freshness was served: standing in for a
    /// failed upstream call (stale-if-error), or at once while a background refresh replaces
    /// it (stale-while-revalidate; RFC 5861).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale: Option<bool>,
    /// With `stale`: the age in seconds of the oldest page served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
    /// The source's circuit breaker, for called sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit: Option<CircuitJson>,
}

/// A source's circuit breaker: `open` means calls are refused without trying after
/// repeated failures; `half_open` lets one probe through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = CircuitState)]
pub enum CircuitJson {
    Closed,
    Open,
    HalfOpen,
}

impl From<CircuitState> for CircuitJson {
    fn from(state: CircuitState) -> CircuitJson {
        match state {
            CircuitState::Closed => CircuitJson::Closed,
            CircuitState::Open => CircuitJson::Open,
            CircuitState::HalfOpen => CircuitJson::HalfOpen,
        }
    }
}

impl SourceStatusJson {
    pub fn is_timeout(&self) -> bool {
        matches!(&self.error, Some(error) if matches!(error.code, ErrorCodeJson::Timeout))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    Ok,
    Error,
    Skipped,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SourceError)]
pub struct SourceErrorJson {
    pub code: ErrorCodeJson,
    #[schema(example = "no answer within 5000 ms")]
    pub message: String,
}

/// `timeout`; `unavailable` (connection failure or 5xx); `rate_limited` (429);
/// `unauthorized` (401/403); `rejected` (other 4xx); `bad_response` (not the documented shape).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SourceErrorCode)]
pub enum ErrorCodeJson {
    Timeout,
    Unavailable,
    RateLimited,
    Unauthorized,
    Rejected,
    BadResponse,
}

impl From<SourceErrorCode> for ErrorCodeJson {
    fn from(code: SourceErrorCode) -> ErrorCodeJson {
        match code {
            SourceErrorCode::Timeout => ErrorCodeJson::Timeout,
            SourceErrorCode::Unavailable => ErrorCodeJson::Unavailable,
            SourceErrorCode::RateLimited => ErrorCodeJson::RateLimited,
            SourceErrorCode::Unauthorized => ErrorCodeJson::Unauthorized,
            SourceErrorCode::Rejected => ErrorCodeJson::Rejected,
            SourceErrorCode::BadResponse => ErrorCodeJson::BadResponse,
        }
    }
}

impl AppState {
    pub(super) fn too_many_pages(&self, error: &TooManyPages) -> Error {
        Error::TooManyPages(format!(
            "answering needs {} upstream pages of {}, more than the limit of {} (GATEWAY_MAX_UPSTREAM_PAGES); \
             narrow the query with a filter that source applies itself (GET /users/plan shows which)",
            error.needed,
            self.executor.sources()[error.source_idx].name,
            error.limit
        ))
    }

    pub(super) fn status_json(&self, report: &SourceReport) -> SourceStatusJson {
        let client = &self.executor.sources()[report.source_idx];
        let mut stale_age = None;
        let (status, total, error, reason) = match &report.status {
            SourceStatus::Ok { total, stale } => {
                stale_age = stale.map(|stale| stale.age);
                (SourceState::Ok, Some(*total), None, None)
            }
            SourceStatus::Failed(error) => (
                SourceState::Error,
                None,
                Some(SourceErrorJson {
                    code: error.code.into(),
                    message: error.message.clone(),
                }),
                None,
            ),
            SourceStatus::Skipped { reason } => (SourceState::Skipped, None, None, Some(reason.clone())),
        };
        let called = !matches!(report.status, SourceStatus::Skipped { .. });
        SourceStatusJson {
            source: client.name.to_string(),
            provider: client.kind().into(),
            status,
            total,
            error,
            reason,
            stale: stale_age.map(|_| true),
            age_secs: stale_age.map(|age| age.as_secs()),
            circuit: called.then(|| client.circuit().into()),
        }
    }
}

/// `GET /users` query parameters (SPEC §3).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; parsing is `query::parse`, which names every bad parameter
pub(super) struct ListParams {
    /// Page number, from 1. A page past the end is empty, with `has_more: false`.
    #[param(minimum = 1, maximum = 1000000000, default = 1)]
    page: Option<u64>,
    /// Users per page.
    #[param(minimum = 1, maximum = 100, default = 25)]
    per_page: Option<u64>,
    /// Comma-separated provider names (all sources of that provider) or source names; only
    /// those sources are read. The names of additionally configured sources (e.g. a second
    /// TI tenant) are accepted too; anything else is a 400. Example: `tapintosafety`.
    #[param(style = Form, explode = false, min_items = 1, inline)]
    provider: Option<Vec<ProviderJson>>,
    /// Case-insensitive exact match on the user's `role`. Example: `admin`.
    #[param(min_length = 1, max_length = 256, pattern = r"\S")]
    role: Option<String>,
    /// Case-insensitive substring of `email` or `username`. Example: `o'brien`.
    #[param(min_length = 1, max_length = 256, pattern = r"\S")]
    email: Option<String>,
    /// Case-insensitive substring of `employee_id` (TapIntoSafety only: Thought Industries
    /// users have none, so TI is not called). Example: `EMP-10`.
    #[param(min_length = 1, max_length = 256, pattern = r"\S")]
    employee_id: Option<String>,
    /// Exact match on `provider_id`, compared as UUIDs. Example:
    /// `0f8fad5b-d9cb-469f-a165-70867728950e`.
    #[param(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    user_id: Option<uuid::Uuid>,
    /// Comma-separated fields, `-` for descending: `email`, `first_name`, `last_name`,
    /// `display_name`, `created_at`, `last_active_at`. Strings compare case-insensitively,
    /// nulls come last in both directions, ties are broken by `id`. Example: `-created_at,email`.
    #[param(
        pattern = r"^-?(email|first_name|last_name|display_name|created_at|last_active_at)(,-?(email|first_name|last_name|display_name|created_at|last_active_at))*$"
    )]
    sort: Option<String>,
    /// `raw` adds each user's upstream record, as received, under `raw`.
    #[param(inline)]
    include: Option<Include>,
    /// Comma-separated user fields to show: each user then has `id` and those fields only
    /// (each present, `null` where empty), in the order of the `User` schema. Names:
    /// `id`, `source`, `provider`, `provider_id`, `email`, `username`, `first_name`,
    /// `last_name`, `display_name`, `role`, `employee_id`, `active`, `created_at`,
    /// `updated_at`, `last_active_at`; any other is a 400 naming it. `include=raw` still
    /// adds `raw`. Example: `email,last_name`.
    #[param(
        pattern = "^(id|source|provider|provider_id|email|username|first_name|last_name|display_name|role|employee_id|active|created_at|updated_at|last_active_at)(,(id|source|provider|provider_id|email|username|first_name|last_name|display_name|role|employee_id|active|created_at|updated_at|last_active_at))*$"
    )]
    fields: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Include {
    Raw,
}

/// `GET /users/{id}` parameters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct UserParams {
    /// `raw` adds the user's upstream record, as received, under `raw`.
    #[param(inline)]
    include: Option<Include>,
    /// Comma-separated user fields to show, as for `GET /users` (`id` always). Example:
    /// `email,last_name`.
    #[param(
        pattern = "^(id|source|provider|provider_id|email|username|first_name|last_name|display_name|role|employee_id|active|created_at|updated_at|last_active_at)(,(id|source|provider|provider_id|email|username|first_name|last_name|display_name|role|employee_id|active|created_at|updated_at|last_active_at))*$"
    )]
    fields: Option<String>,
}

/// Whether the caller asked to bypass cached pages (`Cache-Control: no-cache`).
pub(super) fn wants_refresh(headers: &HeaderMap) -> bool {
    let has_no_cache = |name| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|text| {
                text.split(',')
                    .any(|directive| directive.trim().eq_ignore_ascii_case("no-cache"))
            })
        })
    };
    has_no_cache(header::CACHE_CONTROL) || has_no_cache(header::PRAGMA)
}

/// RFC 9211: `hit` when no upstream call was needed, `fwd=stale` when a stale copy stood in
/// for a failed call of a source the body reports `ok` (and `stale`), else `fwd=miss`. Stale
/// pages served while they refresh in the background add `ttl=-N`, N the whole seconds the
/// stalest is past its freshness, so a stale answer never reads as a fresh one.
fn cache_status(upstream_calls: usize, stale: Option<Staleness>) -> HeaderValue {
    let forwarded = if upstream_calls == 0 { "hit" } else { "fwd=miss" };
    match stale {
        Some(stale) if stale.stood_in => HeaderValue::from_static("users-gateway; fwd=stale"),
        Some(stale) => HeaderValue::try_from(format!(
            "users-gateway; {forwarded}; ttl=-{}",
            stale.stale_for.as_secs()
        ))
        .expect("ASCII digits make a header value"),
        None if upstream_calls == 0 => HeaderValue::from_static("users-gateway; hit"),
        None => HeaderValue::from_static("users-gateway; fwd=miss"),
    }
}

/// List users across sources, merged and paginated exactly.
///
/// Without `sort`, users come source by source in configured order (thoughtindustries,
/// then tapintosafety), each in its upstream order. When some selected sources fail the
/// answer is still 200, with `meta.partial` and each source's status; when all fail, 502
/// (504 if all timed out).
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(ListParams),
    responses(
        (status = 200, description = "A page of users", body = UserList,
            headers(
                ("Link" = String, description = "RFC 8288 first/prev/next/last links"),
                ("X-Total-Count" = u64, description = "Matching users across sources that answered"),
                ("X-Request-Id" = String, description = "The caller's request id when well-formed, else a generated one"),
                ("ETag" = String, description = "Strong validator of the body"),
                ("Cache-Status" = String, description = "RFC 9211. `users-gateway; hit` when no upstream call was needed, else `users-gateway; fwd=miss`. `users-gateway; hit; ttl=-N` when cached pages up to N whole seconds past their freshness were served at once while they refresh in the background (stale-while-revalidate, GATEWAY_STALE_WHILE_REVALIDATE_SECS; `fwd=miss; ttl=-N` when other pages had to be fetched), and `users-gateway; fwd=stale` when a stale page stood in for a failed upstream (stale-if-error). Either way the sources served stale say `stale: true` with `age_secs` in `meta.sources`"),
            )),
        (status = 304, description = "Not modified: the `If-None-Match` tag matches",
            headers(("ETag" = String, description = "The current validator"))),
        (status = 400, description = "Invalid parameters, each named", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong caller key (only when GATEWAY_API_KEYS is set)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Load shed: more requests in flight than GATEWAY_MAX_CONCURRENT_REQUESTS; retry after `Retry-After`", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 422, description = "Answering would read more upstream pages of one source than GATEWAY_MAX_UPSTREAM_PAGES", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "No selected source answered", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Every selected source timed out", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])),
)]
pub async fn list_users(State(state): State<AppState>, request: Request) -> Result<Response, Error> {
    let headers = request.headers();
    let query_text = request.uri().query().unwrap_or("");
    let refresh = wants_refresh(headers);
    // Taken before anything is read: a change while this request runs makes what it keeps
    // invalid at once.
    let revision = state.executor.revision();
    if !refresh {
        if let Some(stored) = state.responses.get(query_text, revision) {
            return Ok(json_response(headers, &stored, cache_status_headers(0, None)));
        }
    }

    let query = parse::list_query(query_text, &state.source_refs).map_err(Error::InvalidParams)?;
    let plan = state.plan(&query);
    let request_id = request_id(&request);
    let ctx = CallContext::new(&request_id, refresh, state.deadline());
    let result = state
        .executor
        .list(&query, &plan, &ctx)
        .await
        .map_err(|error| match error {
            ListError::AllFailed { reports } => {
                Error::UpstreamsFailed(reports.iter().map(|r| state.status_json(r)).collect())
            }
            ListError::TooManyPages(too_many) => state.too_many_pages(&too_many),
        })?;

    // The body shows each called source's circuit: a kept one must show the current state,
    // and is kept only while every circuit it shows is closed (an opening changes the
    // revision; a time-based open → half-open would not).
    let circuits: Vec<CircuitState> = result
        .reports
        .iter()
        .map(|report| state.executor.sources()[report.source_idx].circuit())
        .collect();
    let live: Vec<u8> = circuits.iter().map(|&circuit| circuit as u8).collect();
    let keep = result.memoizable && circuits.iter().all(|&circuit| circuit == CircuitState::Closed);
    let stored = state
        .responses
        .settle(query_text, revision, &result.inputs, &live, keep, || {
            let records = unpack_records(query.include_raw, &result.users);
            let links = PageLinks::new(&query, &result.meta);
            let sources: Vec<SourceStatusJson> = result.reports.iter().map(|r| state.status_json(r)).collect();
            let body = UserList {
                data: result
                    .users
                    .iter()
                    .map(|user| UserJson::new(user, query.fields, record_of(&records, user)))
                    .collect(),
                meta: Meta {
                    page: result.meta.page,
                    per_page: result.meta.per_page,
                    total: result.meta.total,
                    total_pages: result.meta.total_pages,
                    has_more: result.meta.has_more,
                    partial: sources.iter().any(|source| source.status == SourceState::Error),
                    sources,
                },
                links: Links::from(&links),
            };
            let headers = Headers {
                link: HeaderValue::from_str(&links.header()).ok(),
                total: Some(result.meta.total),
            };
            (serde_json::to_vec(&body).expect("users serialize"), headers)
        });
    Ok(json_response(
        headers,
        &stored,
        cache_status_headers(result.upstream_calls, result.stale),
    ))
}

/// The request id `telemetry::observe` gave this request.
fn request_id(request: &Request) -> std::sync::Arc<str> {
    request
        .extensions()
        .get::<RequestId>()
        .map_or_else(|| std::sync::Arc::from("-"), |id| id.0.clone())
}

fn cache_status_headers(upstream_calls: usize, stale: Option<Staleness>) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert("cache-status", cache_status(upstream_calls, stale));
    headers
}

/// One user by id.
///
/// `id` is `{source}:{provider_id}`, as in the `id` field of a listed user.
#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    params(
        ("id" = String, Path, description = "`{source}:{provider_id}`", example = "tapintosafety:0f8fad5b-d9cb-469f-a165-70867728950e"),
        UserParams,
    ),
    responses(
        (status = 200, description = "The user", body = UserJson,
            headers(
                ("X-Request-Id" = String, description = "The request id"),
                ("ETag" = String, description = "Strong validator of the body"),
                ("Cache-Status" = String, description = "As for `GET /users`: `users-gateway; hit`, `users-gateway; hit; ttl=-N` (served stale while it refreshes in the background), `users-gateway; fwd=stale` (a stale copy stood in for a failed upstream) or `users-gateway; fwd=miss`"),
            )),
        (status = 304, description = "Not modified: the `If-None-Match` tag matches",
            headers(("ETag" = String, description = "The current validator"))),
        (status = 400, description = "Invalid parameters", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong caller key (only when GATEWAY_API_KEYS is set)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Load shed: more requests in flight than GATEWAY_MAX_CONCURRENT_REQUESTS; retry after `Retry-After`", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 404, description = "No such source or user", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Finding the user would read more upstream pages than GATEWAY_MAX_UPSTREAM_PAGES", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The user's source did not answer", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The user's source timed out", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])),
)]
pub async fn get_user(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    RawQuery(raw_query): RawQuery,
) -> Result<Response, Error> {
    // An id that is not valid UTF-8 once decoded cannot name a user.
    let Ok(Path(id)) = id else {
        return Err(Error::NotFound("no user with that id".to_owned()));
    };
    let query = parse::user_query(raw_query.as_deref().unwrap_or("")).map_err(Error::InvalidParams)?;
    let no_such_user = || Error::NotFound("no user with that id".to_owned());
    let (source_name, provider_id) = id.split_once(':').ok_or_else(no_such_user)?;
    if provider_id.is_empty() || provider_id.len() > 256 {
        return Err(no_such_user());
    }
    let source_idx = state
        .source_refs
        .iter()
        .position(|source| source.name.as_str() == source_name)
        .ok_or_else(no_such_user)?;
    let ctx = CallContext::new(&request_id.0, wants_refresh(&headers), state.deadline());
    let found = state
        .executor
        .find_user(source_idx, provider_id, &ctx)
        .await
        .map_err(|error| match error {
            LookupError::Source(error) => Error::UpstreamsFailed(vec![state.status_json(&SourceReport {
                source_idx,
                status: SourceStatus::Failed(error),
            })]),
            LookupError::TooManyPages(too_many) => state.too_many_pages(&too_many),
        })?;
    let user: UserRef = found.user.ok_or_else(no_such_user)?;
    let mut response_headers = HeaderMap::new();
    response_headers.insert("cache-status", cache_status(found.upstream_calls, found.stale));
    let records = unpack_records(query.include_raw, std::slice::from_ref(&user));
    let bytes =
        serde_json::to_vec(&UserJson::new(&user, query.fields, record_of(&records, &user))).expect("a user serializes");
    Ok(json_once(&headers, bytes, response_headers))
}

/// The records of the pages `users` come from, unpacked once each, when `include=raw` asks.
pub(super) fn unpack_records(include_raw: bool, users: &[UserRef]) -> Option<UnpackedPages<'_>> {
    include_raw.then(|| {
        let mut pages = UnpackedPages::default();
        for user in users {
            pages.add(user.raw_record().0);
        }
        pages
    })
}

pub(super) fn record_of<'a>(records: &'a Option<UnpackedPages<'_>>, user: &UserRef) -> Option<&'a RawValue> {
    let (page, idx) = user.raw_record();
    records.as_ref()?.get(page, idx)
}

//! `GET /users/export` (SPEC §12): NDJSON of every matching user, then one `meta` line.
//!
//! The first chunk is read before the status line, so a query no source can answer is a
//! problem as on `/users`; the rest is written by a task, [`LINES_PER_FRAME`] users a frame,
//! through a channel of [`BUFFERED_FRAMES`], so a slow caller slows the walk instead of
//! growing a buffer. At most `GATEWAY_MAX_CONCURRENT_EXPORTS` stream at once, which bounds
//! what all exports hold together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Serialize;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::problem::{Error, Problem};
use super::users::{record_of, unpack_records, wants_refresh, SourceStatusJson, UserJson};
use super::AppState;
use crate::execute::{CallContext, ExportSummary, ExportWalk, SourceStatus, UserRef};
use crate::query::fields::FieldSet;
use crate::query::parse;
use crate::telemetry::RequestId;

pub fn router() -> Router<AppState> {
    Router::new().route("/users/export", get(export_users))
}

/// Users serialized into one body frame.
const LINES_PER_FRAME: usize = 100;
/// Frames written ahead of the caller: with the walk's current chunk (references into
/// cached pages), all an export holds.
const BUFFERED_FRAMES: usize = 2;
/// A caller that reads nothing for this long is given up on: the stream is cut (no `meta`
/// line), and its slot and upstream work end.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);

/// One line of an export: a user, or the last line.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the lines; each is written as `UserJson` or `ExportEnd`
pub enum ExportLine<'a> {
    User(UserJson<'a>),
    End(ExportEnd),
}

/// The last line of an export.
#[derive(Serialize, ToSchema)]
pub struct ExportEnd {
    pub meta: ExportMeta,
}

#[derive(Serialize, ToSchema)]
pub struct ExportMeta {
    /// Every selected source answered to the end and every user it counted is in the
    /// stream. False when a source failed (its status says why) or a step was refused.
    pub complete: bool,
    /// The users in the stream.
    #[schema(example = 1980)]
    pub total: u64,
    /// Each selected source, in merge order, as in `meta.sources` of `GET /users`.
    pub sources: Vec<SourceStatusJson>,
}

/// Every matching user, streamed as NDJSON.
///
/// Takes the filters, `sort`, `provider`, `fields` and `include` of `GET /users`, without
/// `page` and `per_page`. One user (the `User` schema) per line, in the order a walk of
/// `GET /users` over every page gives, then one last line `{"meta": {"complete", "total",
/// "sources"}}` (the `ExportEnd` schema). A stream without that last line was cut. A source
/// that fails mid-way makes `complete` false and is reported in `meta.sources`; the other
/// sources' users are still streamed. Memory stays flat: the gateway reads a chunk of 500
/// users at a time and writes at most two frames of 100 users ahead of the caller; a caller
/// that reads nothing for 30 s is cut off. At most `GATEWAY_MAX_CONCURRENT_EXPORTS` (default
/// 16) stream at once. `Cache-Control: no-cache` refreshes the pages of the first
/// chunk; later ones are at most the cache TTL old.
#[utoipa::path(
    get,
    path = "/users/export",
    tag = "users",
    responses(
        (status = 200, description = "NDJSON: one `User` a line, then the `ExportEnd` line, e.g.\n\n```\n{\"id\":\"tapintosafety:90139a58-7bfd-44e5-b232-5e3553804436\",\"email\":\"lukaszsingh.729@site-works.example\"}\n{\"meta\":{\"complete\":true,\"total\":1,\"sources\":[{\"source\":\"tapintosafety\",\"provider\":\"tapintosafety\",\"status\":\"ok\",\"total\":1,\"circuit\":\"closed\"}]}}\n```\n\nThe schema is that of one line.",
            content_type = "application/x-ndjson", body = ExportLine,
            headers(
                ("X-Request-Id" = String, description = "The caller's request id when well-formed, else a generated one"),
            )),
        (status = 400, description = "Invalid parameters, each named (`page` and `per_page` included: an export has no pages)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong caller key (only when GATEWAY_API_KEYS is set)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The export would read more upstream pages of one source than GATEWAY_MAX_UPSTREAM_PAGES", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "No selected source answered", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Load shed: more requests in flight than GATEWAY_MAX_CONCURRENT_REQUESTS (an export holds its slot while it streams), or more exports streaming than GATEWAY_MAX_CONCURRENT_EXPORTS; retry after `Retry-After`", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 504, description = "Every selected source timed out", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = [])),
)]
pub async fn export_users(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Result<Response, Error> {
    let query =
        parse::export_query(raw_query.as_deref().unwrap_or(""), &state.source_refs).map_err(Error::InvalidParams)?;
    let Ok(slot) = state.exports.clone().try_acquire_owned() else {
        return Err(Error::ExportsBusy(state.export_limit));
    };
    let shape = Shape {
        fields: query.fields,
        include_raw: query.include_raw,
    };
    let mut walk = ExportWalk::new(query, state.source_refs.len());
    let ctx = CallContext::new(&request_id.0, wants_refresh(&headers), state.deadline());
    let first = walk
        .next(&state.executor, |query| state.plan(query), &ctx)
        .await
        .map_err(|refused| state.too_many_pages(&refused))?;
    if first.is_none() {
        let summary = walk.summary();
        let failed = |status: &SourceStatus| matches!(status, SourceStatus::Failed(_));
        let any_ok = summary
            .reports
            .iter()
            .any(|r| matches!(r.status, SourceStatus::Ok { .. }));
        if !any_ok && summary.reports.iter().any(|report| failed(&report.status)) {
            return Err(Error::UpstreamsFailed(
                summary.reports.iter().map(|report| state.status_json(report)).collect(),
            ));
        }
    }

    let (sender, receiver) = mpsc::channel(BUFFERED_FRAMES);
    let ended = Arc::new(AtomicBool::new(false));
    let stream = Stream {
        sender,
        ended: ended.clone(),
        _slot: slot,
    };
    tokio::spawn(stream_rest(state, request_id.0, walk, first, shape, stream));
    let body = futures_util::stream::unfold(Some((receiver, ended)), |state| async move {
        let (mut receiver, ended) = state?;
        match receiver.recv().await {
            Some(bytes) => Some((Ok::<Bytes, std::io::Error>(bytes), Some((receiver, ended)))),
            // Cut short (a stalled caller): an error makes hyper abort the body, so the
            // caller cannot take it for a complete one even without looking for `meta`.
            None if !ended.load(Ordering::Acquire) => Some((Err(std::io::Error::other("export cut short")), None)),
            None => None,
        }
    });
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    response.extensions_mut().insert(super::BodyOutlivesHandler);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}

/// What each line shows.
#[derive(Clone, Copy)]
struct Shape {
    fields: FieldSet,
    include_raw: bool,
}

/// The writing end of one export.
struct Stream {
    sender: mpsc::Sender<Bytes>,
    /// Set once the `meta` line is sent: the body then ends cleanly, else with an error.
    ended: Arc<AtomicBool>,
    /// The export's `GATEWAY_MAX_CONCURRENT_EXPORTS` slot, given back when the task ends.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// Writes the chunks, then the `meta` line; stops when the caller is gone or stalls.
async fn stream_rest(
    state: AppState,
    request_id: Arc<str>,
    mut walk: ExportWalk,
    mut chunk: Option<Vec<UserRef>>,
    shape: Shape,
    stream: Stream,
) {
    while let Some(users) = chunk.take() {
        for frame in users.chunks(LINES_PER_FRAME) {
            if !send(&stream.sender, lines(frame, shape)).await {
                return;
            }
        }
        drop(users);
        let ctx = CallContext::new(&request_id, false, state.deadline());
        // A refusal after the first chunk ends the walk; the summary says incomplete.
        chunk = walk
            .next(&state.executor, |query| state.plan(query), &ctx)
            .await
            .unwrap_or(None);
    }
    // The receiver sees the end of the channel only once `sender` drops, after this.
    if send(&stream.sender, end_line(&state, &walk.summary())).await {
        stream.ended.store(true, Ordering::Release);
    }
}

/// False when the caller is gone or read nothing for [`STALL_LIMIT`].
async fn send(sender: &mpsc::Sender<Bytes>, bytes: Bytes) -> bool {
    matches!(tokio::time::timeout(STALL_LIMIT, sender.send(bytes)).await, Ok(Ok(())))
}

/// One NDJSON line per user.
fn lines(users: &[UserRef], shape: Shape) -> Bytes {
    let records = unpack_records(shape.include_raw, users);
    let mut out = Vec::with_capacity(users.len() * 512);
    for user in users {
        serde_json::to_writer(&mut out, &UserJson::new(user, shape.fields, record_of(&records, user)))
            .expect("a user serializes");
        out.push(b'\n');
    }
    Bytes::from(out)
}

fn end_line(state: &AppState, summary: &ExportSummary) -> Bytes {
    let end = ExportEnd {
        meta: ExportMeta {
            complete: summary.complete,
            total: summary.total,
            sources: summary.reports.iter().map(|report| state.status_json(report)).collect(),
        },
    };
    let mut out = serde_json::to_vec(&end).expect("meta serializes");
    out.push(b'\n');
    Bytes::from(out)
}

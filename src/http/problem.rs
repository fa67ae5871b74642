//! The one error type of the HTTP layer and its one mapping to RFC 9457 problem+json.
//!
//! Conversion has no side effects and hides internals; the access log records the status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::users::SourceStatusJson;
use crate::query::parse::ParamError;

/// Every way a request can fail, as the caller will see it.
#[derive(Debug)]
pub enum Error {
    /// 400: each bad parameter, named.
    InvalidParams(Vec<ParamError>),
    /// 401: missing or wrong caller key.
    Unauthorized,
    /// 404 with a reason.
    NotFound(String),
    /// 405.
    MethodNotAllowed,
    /// 502, or 504 when every failure was a timeout: no selected source answered.
    UpstreamsFailed(Vec<SourceStatusJson>),
    /// 503: more requests in flight than `GATEWAY_MAX_CONCURRENT_REQUESTS`.
    Overloaded,
    /// 503: this many exports stream already (`GATEWAY_MAX_CONCURRENT_EXPORTS`).
    ExportsBusy(usize),
    /// 414: the request target is longer than this many bytes.
    UriTooLong(usize),
    /// 431: the headers add up to more than this many bytes.
    HeadersTooLarge(usize),
    /// 431: more than this many header fields.
    TooManyHeaders(usize),
    /// 422: answering would read more upstream pages than the configured ceiling.
    TooManyPages(String),
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference identifying the problem type (relative to the gateway).
    #[serde(rename = "type")]
    #[schema(example = "/problems/invalid-parameters")]
    pub problem_type: String,
    #[schema(example = "Invalid query parameters")]
    pub title: String,
    /// The HTTP status code.
    #[schema(example = 400)]
    pub status: u16,
    #[schema(example = "per_page: must be an integer from 1 to 100, got \"1000\"")]
    pub detail: String,
    /// For 400: each bad parameter and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_params: Option<Vec<InvalidParam>>,
    /// For upstream failures: the status of each selected source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<SourceStatusJson>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvalidParam {
    #[schema(example = "per_page")]
    pub name: String,
    #[schema(example = "must be an integer from 1 to 100, got \"1000\"")]
    pub reason: String,
}

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::InvalidParams(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::UpstreamsFailed(sources) => {
                let all_timeouts = !sources.is_empty()
                    && sources
                        .iter()
                        .filter(|source| source.error.is_some())
                        .all(|source| source.is_timeout());
                if all_timeouts {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                }
            }
            Error::TooManyPages(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Overloaded | Error::ExportsBusy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Error::HeadersTooLarge(_) | Error::TooManyHeaders(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    pub(super) fn into_problem(self) -> Problem {
        let status = self.status();
        let (kind, title, detail, invalid_params, sources) = match self {
            Error::InvalidParams(errors) => (
                "invalid-parameters",
                "Invalid query parameters",
                errors
                    .iter()
                    .map(|error| format!("{}: {}", error.name, error.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
                Some(
                    errors
                        .into_iter()
                        .map(|error| InvalidParam {
                            name: error.name,
                            reason: error.reason,
                        })
                        .collect(),
                ),
                None,
            ),
            Error::Unauthorized => (
                "unauthorized",
                "Missing or invalid API key",
                "send Authorization: Bearer <key> with a key configured in GATEWAY_API_KEYS".to_owned(),
                None,
                None,
            ),
            Error::NotFound(detail) => ("not-found", "Not found", detail, None, None),
            Error::MethodNotAllowed => (
                "method-not-allowed",
                "Method not allowed",
                "this resource is read-only: use GET".to_owned(),
                None,
                None,
            ),
            Error::UpstreamsFailed(sources) => {
                let detail = sources
                    .iter()
                    .filter_map(|source| {
                        let error = source.error.as_ref()?;
                        Some(format!("{}: {}", source.source, error.message))
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let title = if status == StatusCode::GATEWAY_TIMEOUT {
                    "No upstream answered in time"
                } else {
                    "No upstream could answer"
                };
                ("upstream-failure", title, detail, None, Some(sources))
            }
            Error::Overloaded => (
                "overloaded",
                "Too many requests in flight",
                "the gateway is at its concurrency limit; retry after a moment".to_owned(),
                None,
                None,
            ),
            Error::ExportsBusy(limit) => (
                "overloaded",
                "Too many exports streaming",
                format!(
                    "at most {limit} exports stream at once (GATEWAY_MAX_CONCURRENT_EXPORTS); retry after a moment"
                ),
                None,
                None,
            ),
            Error::UriTooLong(limit) => (
                "uri-too-long",
                "Request target too long",
                format!("the path and query may be at most {limit} bytes"),
                None,
                None,
            ),
            Error::HeadersTooLarge(limit) => (
                "headers-too-large",
                "Request headers too large",
                format!("the request headers may add up to at most {limit} bytes"),
                None,
                None,
            ),
            Error::TooManyHeaders(limit) => (
                "headers-too-large",
                "Request headers too large",
                format!("a request may carry at most {limit} header fields"),
                None,
                None,
            ),
            Error::TooManyPages(detail) => (
                "too-many-upstream-pages",
                "Query reads too many upstream pages",
                detail,
                None,
                None,
            ),
        };
        Problem {
            problem_type: format!("/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            invalid_params,
            sources,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let unauthorized = matches!(self, Error::Unauthorized);
        let overloaded = matches!(self, Error::Overloaded | Error::ExportsBusy(_));
        let body = serde_json::to_vec(&self.into_problem()).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        if overloaded {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"users-gateway\""),
            );
        }
        response
    }
}

/// Unknown routes.
pub async fn not_found() -> Error {
    Error::NotFound("no such resource; see /docs for the API".to_owned())
}

pub async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

//! Upstream adapters behind one trait, and the HTTP client that drives them.
//!
//! An adapter ([`Provider`]) is pure: it says which path and query to ask for, parses a
//! documented response leniently into normalized [`User`]s, and classifies rejections.
//! Only the adapters know upstream field and parameter names (STYLE rule 7).
//! [`client::SourceClient`] does the I/O that is the same for every provider.

pub mod breaker;
pub mod client;
pub(crate) mod redact;
pub mod tapintosafety;
pub mod thoughtindustries;

use std::sync::Arc;

use crate::model::{ProviderKind, SourceName, User};
pub use crate::query::pushdown::{PushDown, Pushdown, PushdownOptions, PushedQuery};
use crate::raw_records::RawRecords;

/// Why one source could not answer (SPEC §3 error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceErrorCode {
    Timeout,
    Unavailable,
    RateLimited,
    Unauthorized,
    Rejected,
    BadResponse,
}

impl SourceErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceErrorCode::Timeout => "timeout",
            SourceErrorCode::Unavailable => "unavailable",
            SourceErrorCode::RateLimited => "rate_limited",
            SourceErrorCode::Unauthorized => "unauthorized",
            SourceErrorCode::Rejected => "rejected",
            SourceErrorCode::BadResponse => "bad_response",
        }
    }
}

/// A source's failure as callers see it: a code and a message written by the gateway
/// (never an upstream body, never a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct SourceError {
    pub code: SourceErrorCode,
    pub message: String,
}

impl SourceError {
    pub fn new(code: SourceErrorCode, message: impl Into<String>) -> SourceError {
        SourceError {
            code,
            message: message.into(),
        }
    }

    /// Whether a stale cached copy may stand in (RFC 5861 "error": the upstream is down,
    /// slow, throttling or garbled; not when it refused the key or rejected the query).
    pub fn allows_stale(&self) -> bool {
        !matches!(self.code, SourceErrorCode::Unauthorized | SourceErrorCode::Rejected)
    }

    pub fn bad_response(message: impl Into<String>) -> SourceError {
        SourceError::new(SourceErrorCode::BadResponse, message)
    }
}

/// How a provider can find one user by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdLookup {
    /// The upstream filters by id: read this pushed-down query.
    Pushed(PushedQuery),
    /// The upstream cannot filter by id: read every page and look.
    Scan,
    /// The id cannot exist upstream (wrong format): no call.
    NoSuchUser,
}

/// One parsed upstream page.
#[derive(Debug)]
pub struct UpstreamPage {
    pub users: Vec<User>,
    /// `users[i]`'s upstream record is `raw`'s record `i`.
    pub raw: RawRecords,
    /// Matching users across all pages, as the upstream reported it.
    pub total: u64,
    /// Users per full page, as documented (TIS) or learned from the response (TI).
    pub page_size: u32,
    /// The page number the upstream says it answered, when it says one.
    pub echoed_page: Option<u64>,
}

/// What differs between providers. Implementations do no I/O.
pub trait Provider: PushDown + Send + Sync + 'static {
    fn kind(&self) -> ProviderKind;

    /// The list endpoint, appended to the source's base URL.
    fn list_path(&self) -> &'static str;

    /// Query parameters for one page (numbered from 1) of a pushed-down query.
    fn page_query(&self, pushed: &PushedQuery, page: u64) -> Vec<(&'static str, String)> {
        let mut pairs = pushed.pairs().to_vec();
        pairs.push(("page", page.to_string()));
        pairs
    }

    /// Parses a 2xx body of the list endpoint; `page` is the page that was asked for.
    fn parse_page(&self, source: &SourceName, page: u64, body: &[u8]) -> Result<UpstreamPage, SourceError>;

    /// How to find one user by its upstream id.
    fn lookup(&self, _provider_id: &str) -> IdLookup {
        IdLookup::Scan
    }

    /// Classifies a 4xx other than 401/403/429; the body is read, never relayed.
    fn classify_rejection(&self, status: u16, _body: &[u8]) -> SourceError {
        SourceError::new(
            SourceErrorCode::Rejected,
            format!("upstream rejected the request with HTTP {status}"),
        )
    }
}

/// The adapter for a provider kind.
pub fn adapter(kind: ProviderKind) -> Arc<dyn Provider> {
    match kind {
        ProviderKind::ThoughtIndustries => Arc::new(thoughtindustries::ThoughtIndustries),
        ProviderKind::TapIntoSafety => Arc::new(tapintosafety::TapIntoSafety),
    }
}

/// Parses an upstream timestamp leniently: RFC 3339 in, UTC out, anything else null.
pub(crate) fn parse_timestamp(text: Option<&str>) -> Option<time::OffsetDateTime> {
    let text = text?.trim();
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|at| at.checked_to_offset(time::UtcOffset::UTC))
        // RFC 3339 output needs a four-digit year.
        .filter(|at| (0..=9999).contains(&at.year()))
}

/// Upstream totals above this are not believed (they would only mean a broken upstream).
pub const MAX_PLAUSIBLE_TOTAL: u64 = 1_000_000_000;

/// Rejects a total no real tenant has, before it reaches paging arithmetic.
pub(crate) fn plausible_total(total: u64) -> Result<u64, SourceError> {
    if total > MAX_PLAUSIBLE_TOTAL {
        Err(SourceError::bad_response(format!(
            "upstream total {total} is not plausible"
        )))
    } else {
        Ok(total)
    }
}

/// Where serde failed, without its message: that may quote upstream values (PII).
fn serde_position(error: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        error.classify(),
        error.line(),
        error.column()
    )
}

/// Deserializes one record, hiding serde's text (it may quote upstream values) from callers.
fn parse_record<T: serde::de::DeserializeOwned>(
    source: &SourceName,
    record_idx: usize,
    raw: &serde_json::value::RawValue,
) -> Result<T, SourceError> {
    serde_json::from_str(raw.get()).map_err(|error| {
        let position = serde_position(&error);
        tracing::warn!(%source, record_idx, %position, "upstream user record is not of the documented shape");
        SourceError::bad_response(format!("user record {record_idx} is not of the documented shape"))
    })
}

/// Parses and normalizes every record of a page, and packs the records (redacted) beside
/// the users; one malformed record fails the page, so a user is never silently dropped.
pub(crate) fn normalize_records<W: serde::de::DeserializeOwned>(
    source: &SourceName,
    records: Vec<Box<serde_json::value::RawValue>>,
    normalize: impl Fn(&SourceName, W) -> User,
) -> Result<(Vec<User>, RawRecords), SourceError> {
    let mut redacted = Vec::with_capacity(records.len());
    let users = records
        .into_iter()
        .enumerate()
        .map(|(record_idx, raw)| {
            let wire: W = parse_record(source, record_idx, &raw)?;
            // Fails closed: a record that cannot be redacted is never passed on.
            redacted.push(redact::redact_credentials(raw).map_err(|_| {
                SourceError::bad_response(format!("user record {record_idx} could not be checked for credentials"))
            })?);
            Ok(normalize(source, wire))
        })
        .collect::<Result<Vec<User>, SourceError>>()?;
    Ok((users, RawRecords::pack(redacted.iter().map(|raw| &**raw))))
}

/// Parses a page envelope, hiding serde's text from callers.
pub(crate) fn parse_envelope<T: serde::de::DeserializeOwned>(
    source: &SourceName,
    body: &[u8],
) -> Result<T, SourceError> {
    serde_json::from_slice(body).map_err(|error| {
        let position = serde_position(&error);
        tracing::warn!(%source, %position, "upstream body is not of the documented shape");
        if error.is_syntax() || error.is_eof() {
            SourceError::bad_response("upstream body is not valid JSON")
        } else {
            SourceError::bad_response("upstream body is not of the documented shape")
        }
    })
}

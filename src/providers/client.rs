//! The HTTP side of every source: headers (SPEC §8), bounded concurrency, a timeout per
//! attempt, retries with backoff inside the caller's deadline, a circuit breaker, a
//! body-size limit, and HTTP status → [`SourceError`] mapping.
//!
//! Only what the upstream did reaches the breaker: waiting for this gateway's own permits,
//! the caller's deadline and a cancelled caller are never held against it (see [`verdict`]).
//! Instants are only ever moved with checked arithmetic, so no `Retry-After` and no
//! configured duration can panic a request.
//!
//! Never relays an upstream body or the API key into an error, log or metric.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use tokio::time::Instant;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use url::Url;

use super::breaker::{Breaker, CircuitState, Refused};
use super::{Provider, PushedQuery, SourceError, SourceErrorCode, UpstreamPage};
use crate::cluster::budget::Budget;
use crate::config::SourceConfig;
use crate::model::{ProviderKind, SourceName};

/// `User-Agent` sent upstream: names the gateway and its version.
pub const USER_AGENT: &str = concat!("users-gateway/", env!("CARGO_PKG_VERSION"));

/// Limits shared by every source.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// One attempt: connect, headers and body.
    pub timeout: Duration,
    pub concurrency: usize,
    pub max_body_bytes: usize,
    /// Attempts after the first, on connection errors, 429, 502, 503 and 504.
    pub retries: usize,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Consecutive failed page fetches that open a source's circuit (0: never).
    pub breaker_failures: u32,
    pub breaker_cool_down: Duration,
}

/// Who a failed attempt says something about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The upstream: it was reached, or tried and not reached, and this is what it did.
    Upstream,
    /// The gateway's own limits (a permit not free before the deadline, the deadline cutting
    /// an attempt, an unusable configured key): nothing learned about the upstream.
    Gateway,
}

/// One failed attempt, and whether another may follow.
#[derive(Debug)]
struct Failure {
    error: SourceError,
    retryable: bool,
    /// The upstream's `Retry-After`, when it sent a usable one.
    retry_after: Option<Duration>,
    cause: Cause,
}

impl Failure {
    fn final_error(error: SourceError) -> Failure {
        Failure {
            error,
            retryable: false,
            retry_after: None,
            cause: Cause::Upstream,
        }
    }

    fn retryable(error: SourceError, retry_after: Option<Duration>) -> Failure {
        Failure {
            error,
            retryable: true,
            retry_after,
            cause: Cause::Upstream,
        }
    }

    fn gateway(error: SourceError) -> Failure {
        Failure {
            error,
            retryable: false,
            retry_after: None,
            cause: Cause::Gateway,
        }
    }
}

/// What one fetch (all its attempts) says about the upstream's health, for the breaker;
/// `None` when it says nothing.
///
/// The last attempt decides when it reached the upstream. A rejection (401, 403, other 4xx
/// but 429) is the upstream answering. When the gateway's own limits ended the last attempt
/// (no permit before the deadline; the deadline cut an attempt before its own timeout), an
/// earlier failed attempt of the same fetch still counts; with none there is no verdict.
fn verdict<T>(result: &Result<T, Failure>, earlier_upstream_failure: bool) -> Option<bool> {
    match result {
        Ok(_) => Some(true),
        Err(failure) if failure.cause == Cause::Upstream => Some(matches!(
            failure.error.code,
            SourceErrorCode::Rejected | SourceErrorCode::Unauthorized
        )),
        Err(_) => earlier_upstream_failure.then_some(false),
    }
}

/// The longest wait a `Retry-After` is taken for; longer ones (including delay-seconds too
/// large for any integer type) are this: past any sane request deadline, so retrying stops.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3), capped at
/// [`RETRY_AFTER_CAP`]; a date in the past is zero; anything else (negative, fractional,
/// garbage) is no usable value.
fn parse_retry_after(text: &str, now: SystemTime) -> Option<Duration> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        // All digits but too many for a u64 is still "a very long time", not garbage.
        let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(RETRY_AFTER_CAP));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(RETRY_AFTER_CAP))
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(text, SystemTime::now())
}

/// The wait before the next attempt, or `None` to stop and report: the retry budget is
/// spent (`step` is `None`), or the wait would end at or past the caller's deadline (or
/// past what the clock can represent). `Retry-After` replaces the backoff step; without
/// it, full jitter: `jitter` (in 0..1) of the step.
fn retry_delay(
    step: Option<Duration>,
    retry_after: Option<Duration>,
    jitter: f64,
    now: Instant,
    deadline: Instant,
) -> Option<Duration> {
    let step = step?;
    // Not `mul_f64`: it panics when the product rounds past `Duration::MAX`.
    let jittered =
        || Duration::try_from_secs_f64(step.as_secs_f64() * jitter.clamp(0.0, 1.0)).map_or(step, |d| d.min(step));
    let delay = retry_after.unwrap_or_else(jittered);
    now.checked_add(delay)
        .is_some_and(|wake| wake < deadline)
        .then_some(delay)
}

/// When one attempt starting at `started` must end, and whether that is the caller's
/// `deadline` rather than the per-attempt `timeout` (a timeout too long for the clock
/// never comes first).
fn attempt_deadline(started: Instant, timeout: Duration, deadline: Instant) -> (Instant, bool) {
    match started.checked_add(timeout) {
        Some(timeout_at) if timeout_at <= deadline => (timeout_at, false),
        _ => (deadline, true),
    }
}

/// One configured source: its adapter plus everything needed to call it.
pub struct SourceClient {
    pub name: SourceName,
    pub provider: Arc<dyn Provider>,
    list_url: Url,
    api_key: SecretString,
    http: reqwest::Client,
    limits: ClientLimits,
    /// Caps requests in flight to this upstream, however many callers fan out to it.
    permits: Semaphore,
    breaker: Breaker,
    /// `max_rps`: the source's own request budget, shared by replicas through Redis.
    budget: Option<Budget>,
}

impl std::fmt::Debug for SourceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceClient")
            .field("name", &self.name)
            .field("list_url", &self.list_url.as_str())
            .field("api_key", &"***")
            .finish()
    }
}

/// The client every source shares: no redirects followed (OWASP API10), our User-Agent.
pub fn build_http_client(limits: ClientLimits) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .connect_timeout(limits.timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}

impl SourceClient {
    pub fn new(
        config: &SourceConfig,
        http: reqwest::Client,
        limits: ClientLimits,
        budget: Option<Budget>,
    ) -> SourceClient {
        let provider = super::adapter(config.provider);
        let mut list_url = config.base_url.clone();
        let path = format!(
            "{}{}",
            config.base_url.path().trim_end_matches('/'),
            provider.list_path()
        );
        list_url.set_path(&path);
        SourceClient {
            name: config.name.clone(),
            provider,
            list_url,
            api_key: config.api_key.clone(),
            http,
            limits,
            permits: Semaphore::new(limits.concurrency),
            breaker: Breaker::new(limits.breaker_failures, limits.breaker_cool_down),
            budget,
        }
    }

    pub fn kind(&self) -> ProviderKind {
        self.provider.kind()
    }

    pub fn circuit(&self) -> CircuitState {
        self.breaker.state()
    }

    /// How many times this source's circuit has opened.
    pub fn circuit_openings(&self) -> u64 {
        self.breaker.openings()
    }

    /// Fetches and parses one page of a pushed-down query: through the breaker, with
    /// retries (exponential backoff, full jitter, `Retry-After` honoured) that all end by
    /// `deadline`.
    #[tracing::instrument(name = "upstream", skip_all, fields(source = %self.name, page, query = %pushed, request_id))]
    pub async fn fetch_page(
        &self,
        pushed: &PushedQuery,
        page: u64,
        request_id: &str,
        deadline: Instant,
    ) -> Result<UpstreamPage, SourceError> {
        // Held across every attempt: dropped unreported if this future is cancelled.
        let permit = match self.breaker.allow() {
            Ok(permit) => permit,
            Err(refused) => {
                crate::telemetry::record_upstream(&self.name, "circuit_open", Duration::ZERO);
                let message = match refused {
                    Refused::Open { retry_in } => format!(
                        "circuit open after repeated failures; next probe in {} ms",
                        retry_in.as_millis()
                    ),
                    Refused::ProbeInFlight => {
                        "circuit open after repeated failures; a probe is deciding whether to close it".to_owned()
                    }
                };
                return Err(SourceError::new(SourceErrorCode::Unavailable, message));
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.limits.backoff_base)
            .with_max_delay(self.limits.backoff_max)
            .with_max_times(self.limits.retries);
        // Whether an attempt before the last one failed at the upstream (see `verdict`).
        let upstream_failed = AtomicBool::new(false);
        let result = (|| self.attempt_within(pushed, page, request_id, deadline))
            .retry(backoff)
            .when(|failure: &Failure| failure.retryable)
            .adjust(|failure: &Failure, step| {
                // Never sleep past the caller's deadline: stop and report instead.
                retry_delay(step, failure.retry_after, fastrand::f64(), Instant::now(), deadline)
            })
            .notify(|failure: &Failure, delay| {
                if failure.cause == Cause::Upstream {
                    upstream_failed.store(true, Ordering::Relaxed);
                }
                metrics::counter!("gateway_upstream_retries_total", "source" => self.name.to_string()).increment(1);
                tracing::debug!(error = %failure.error, ?delay, "retrying upstream page");
            })
            .await;
        match verdict(&result, upstream_failed.load(Ordering::Relaxed)) {
            Some(true) => permit.success(),
            Some(false) => permit.failure(),
            None => {
                tracing::debug!(probe = permit.is_probe(), "no verdict on the upstream");
                drop(permit);
            }
        }
        result.map_err(|failure| failure.error)
    }

    /// One attempt, bounded by the per-attempt timeout and the deadline, with its metrics.
    async fn attempt_within(
        &self,
        pushed: &PushedQuery,
        page: u64,
        request_id: &str,
        deadline: Instant,
    ) -> Result<UpstreamPage, Failure> {
        let deadline_reached =
            || Failure::gateway(SourceError::new(SourceErrorCode::Timeout, "request deadline reached"));
        // Every attempt spends from the budget, before it queues for a permit: a request
        // waiting for its slot holds no permit.
        if let Some(budget) = &self.budget {
            budget.acquire(deadline).await.map_err(Failure::gateway)?;
        }
        let _permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| deadline_reached())?
            .expect("the semaphore is never closed");
        let started = Instant::now();
        let (attempt_deadline, cut_by_deadline) = attempt_deadline(started, self.limits.timeout, deadline);
        let result = match tokio::time::timeout_at(attempt_deadline, self.attempt(pushed, page, request_id)).await {
            Ok(result) => result,
            // The caller's deadline came before the attempt's own timeout: not the upstream's fault.
            Err(_) if cut_by_deadline => Err(deadline_reached()),
            Err(_) => Err(Failure::final_error(SourceError::new(
                SourceErrorCode::Timeout,
                format!("no answer within {} ms", self.limits.timeout.as_millis()),
            ))),
        };
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(_) => "ok",
            Err(failure) => failure.error.code.as_str(),
        };
        crate::telemetry::record_upstream(&self.name, outcome, elapsed);
        match &result {
            Ok(parsed) => tracing::debug!(
                n_users = parsed.users.len(),
                total = parsed.total,
                ?elapsed,
                "upstream page"
            ),
            Err(failure) => tracing::warn!(error = %failure.error, ?elapsed, "upstream attempt failed"),
        }
        result
    }

    async fn attempt(&self, pushed: &PushedQuery, page: u64, request_id: &str) -> Result<UpstreamPage, Failure> {
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", self.api_key.expose_secret())).map_err(|_| {
                Failure::gateway(SourceError::new(
                    SourceErrorCode::Unauthorized,
                    "the configured API key is not a valid header value",
                ))
            })?;
        authorization.set_sensitive(true);
        let mut request = self
            .http
            .get(self.list_url.clone())
            .query(&self.provider.page_query(pushed, page))
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json");
        if let Ok(value) = HeaderValue::from_str(request_id) {
            request = request.header("x-request-id", value);
        }
        let response = request.send().await.map_err(|error| {
            tracing::debug!(error = %error.without_url(), "upstream connection failed");
            Failure::retryable(
                SourceError::new(SourceErrorCode::Unavailable, "cannot connect to upstream"),
                None,
            )
        })?;
        let status = response.status();
        if status.is_success() {
            let body = self.read_body(response).await?;
            return self
                .provider
                .parse_page(&self.name, page, &body)
                .map_err(Failure::final_error);
        }
        let code = status.as_u16();
        let retry_after = retry_after(response.headers());
        Err(match code {
            401 | 403 => Failure::final_error(SourceError::new(
                SourceErrorCode::Unauthorized,
                format!("upstream refused the API key (HTTP {code})"),
            )),
            429 => Failure::retryable(
                SourceError::new(SourceErrorCode::RateLimited, "upstream is rate limiting (HTTP 429)"),
                retry_after,
            ),
            502..=504 => Failure::retryable(
                SourceError::new(
                    SourceErrorCode::Unavailable,
                    format!("upstream failed with HTTP {code}"),
                ),
                retry_after,
            ),
            400..=499 => {
                let body = self.read_body(response).await.unwrap_or_default();
                Failure::final_error(self.provider.classify_rejection(code, &body))
            }
            500..=599 => Failure::final_error(SourceError::new(
                SourceErrorCode::Unavailable,
                format!("upstream failed with HTTP {code}"),
            )),
            _ => Failure::final_error(SourceError::bad_response(format!(
                "unexpected HTTP {code} from upstream (redirects are not followed)"
            ))),
        })
    }

    /// Reads the body up to the configured limit; past it the source is a `bad_response`.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, Failure> {
        let limit = self.limits.max_body_bytes;
        let too_large = || {
            Failure::final_error(SourceError::bad_response(format!(
                "upstream body is larger than {limit} bytes"
            )))
        };
        if response.content_length().is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = response.chunk().await.map_err(|error| {
            tracing::debug!(error = %error.without_url(), "upstream body failed");
            Failure::retryable(
                SourceError::new(
                    SourceErrorCode::Unavailable,
                    "upstream connection failed while reading the body",
                ),
                None,
            )
        })? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs_since_epoch: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs_since_epoch)
    }

    #[test]
    fn retry_after_parses_checked_and_capped() {
        // 2015-10-21T07:28:00Z, RFC 9110's example date.
        let now = at(1_445_412_480);
        let check = |text: &str, expected: Option<Duration>| {
            assert_eq!(parse_retry_after(text, now), expected, "Retry-After: {text:?}");
        };
        check("120", Some(Duration::from_secs(120)));
        check(" 0 ", Some(Duration::ZERO));
        check("86400", Some(RETRY_AFTER_CAP));
        check("10000000000000000000", Some(RETRY_AFTER_CAP));
        check("99999999999999999999999999999999", Some(RETRY_AFTER_CAP));
        check("-5", None);
        check("+5", None);
        check("1.5", None);
        check("soon", None);
        check("", None);
        check("Wed, 21 Oct 2015 07:28:30 GMT", Some(Duration::from_secs(30)));
        check("Wed, 21 Oct 2015 07:27:00 GMT", Some(Duration::ZERO));
        check("Thu, 01 Jan 1970 00:00:00 GMT", Some(Duration::ZERO));
        check("Fri, 31 Dec 9999 23:59:59 GMT", Some(RETRY_AFTER_CAP));
        check("Wed, 21 Oct 2015 25:00:00 GMT", None);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_delays_never_overflow_the_clock_nor_pass_the_deadline() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(5);
        let step = Some(Duration::from_millis(400));
        assert_eq!(
            retry_delay(step, None, 0.5, now, deadline),
            Some(Duration::from_millis(200)),
            "full jitter"
        );
        assert_eq!(
            retry_delay(step, Some(Duration::from_secs(1)), 0.5, now, deadline),
            Some(Duration::from_secs(1)),
            "Retry-After replaces the step"
        );
        assert_eq!(
            retry_delay(None, Some(Duration::ZERO), 0.5, now, deadline),
            None,
            "the budget is spent whatever Retry-After says"
        );
        assert_eq!(
            retry_delay(step, Some(Duration::from_secs(5)), 0.5, now, deadline),
            None
        );
        // `Instant + Duration` would panic on these.
        let huge = Duration::from_secs(10_000_000_000_000_000_000);
        assert_eq!(retry_delay(step, Some(huge), 0.5, now, deadline), None);
        assert_eq!(retry_delay(step, Some(Duration::MAX), 0.5, now, deadline), None);
        assert_eq!(retry_delay(Some(Duration::MAX), None, 1.0, now, deadline), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_ends_at_its_timeout_or_the_deadline_whichever_comes_first() {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        assert_eq!(
            attempt_deadline(started, Duration::from_secs(1), deadline),
            (started + Duration::from_secs(1), false)
        );
        assert_eq!(
            attempt_deadline(started, Duration::from_secs(5), deadline),
            (deadline, false),
            "a tie is the attempt's own timeout"
        );
        assert_eq!(
            attempt_deadline(started, Duration::from_secs(9), deadline),
            (deadline, true)
        );
        assert_eq!(attempt_deadline(started, Duration::MAX, deadline), (deadline, true));
    }

    #[test]
    fn only_what_the_upstream_did_is_a_verdict() {
        let failed = |cause: Cause, code: SourceErrorCode| -> Result<(), Failure> {
            Err(Failure {
                error: SourceError::new(code, "test"),
                retryable: false,
                retry_after: None,
                cause,
            })
        };
        use SourceErrorCode::*;
        assert_eq!(verdict(&Ok::<(), Failure>(()), false), Some(true));
        for code in [Unavailable, RateLimited, Timeout, BadResponse] {
            assert_eq!(verdict(&failed(Cause::Upstream, code), false), Some(false), "{code:?}");
        }
        for code in [Rejected, Unauthorized] {
            assert_eq!(
                verdict(&failed(Cause::Upstream, code), true),
                Some(true),
                "{code:?} is the upstream answering"
            );
        }
        let deadline = failed(Cause::Gateway, Timeout);
        assert_eq!(
            verdict(&deadline, false),
            None,
            "a permit wait or the deadline is no verdict"
        );
        assert_eq!(
            verdict(&deadline, true),
            Some(false),
            "unless an earlier attempt failed at the upstream"
        );
    }
}

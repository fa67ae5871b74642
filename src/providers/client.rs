//! The HTTP side of every source: headers (SPEC §8), bounded concurrency, a timeout per
//! attempt, retries with backoff inside the caller's deadline, a circuit breaker, a
//! body-size limit, and HTTP status → [`SourceError`] mapping.
//!
//! Never relays an upstream body or the API key into an error, log or metric.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::time::Instant;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use url::Url;

use super::breaker::{Breaker, CircuitState};
use super::{Provider, PushedQuery, SourceError, SourceErrorCode, UpstreamPage};
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

/// One failed attempt, and whether another may follow.
#[derive(Debug)]
struct Failure {
    error: SourceError,
    retryable: bool,
    /// The upstream's `Retry-After`, when it sent one.
    retry_after: Option<Duration>,
}

impl Failure {
    fn final_error(error: SourceError) -> Failure {
        Failure {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    fn retryable(error: SourceError, retry_after: Option<Duration>) -> Failure {
        Failure {
            error,
            retryable: true,
            retry_after,
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
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
    pub fn new(config: &SourceConfig, http: reqwest::Client, limits: ClientLimits) -> SourceClient {
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
        }
    }

    pub fn kind(&self) -> ProviderKind {
        self.provider.kind()
    }

    pub fn circuit(&self) -> CircuitState {
        self.breaker.state()
    }

    /// Fetches and parses one page of a pushed-down query: through the breaker, with
    /// retries (exponential backoff, full jitter, `Retry-After` honoured) that all end by
    /// `deadline`.
    #[tracing::instrument(name = "upstream", skip_all, fields(source = %self.name, page, query = %pushed))]
    pub async fn fetch_page(
        &self,
        pushed: &PushedQuery,
        page: u64,
        request_id: &str,
        deadline: Instant,
    ) -> Result<UpstreamPage, SourceError> {
        if let Err(refused) = self.breaker.allow() {
            crate::telemetry::record_upstream(&self.name, "circuit_open", Duration::ZERO);
            return Err(SourceError::new(
                SourceErrorCode::Unavailable,
                format!(
                    "circuit open after repeated failures; next probe in {} ms",
                    refused.retry_in.as_millis()
                ),
            ));
        }
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.limits.backoff_base)
            .with_max_delay(self.limits.backoff_max)
            .with_max_times(self.limits.retries);
        let result = (|| self.attempt_within(pushed, page, request_id, deadline))
            .retry(backoff)
            .when(|failure: &Failure| failure.retryable)
            .adjust(|failure: &Failure, delay| {
                // `None` means the retry budget is spent, whatever Retry-After says. Within it,
                // Retry-After wins; otherwise full jitter: anywhere from 0 to the backoff step.
                let delay = delay.map(|step| match failure.retry_after {
                    Some(after) => after,
                    None => step.mul_f64(fastrand::f64()),
                });
                // Never sleep past the caller's deadline: stop and report instead.
                delay.filter(|delay| Instant::now() + *delay < deadline)
            })
            .notify(|failure: &Failure, delay| {
                metrics::counter!("gateway_upstream_retries_total", "source" => self.name.to_string()).increment(1);
                tracing::debug!(error = %failure.error, ?delay, "retrying upstream page");
            })
            .await
            .map_err(|failure| failure.error);
        match &result {
            // A rejection is the upstream answering, not failing.
            Ok(_) => self.breaker.record_success(),
            Err(error) if error.code == SourceErrorCode::Rejected => self.breaker.record_success(),
            Err(_) => self.breaker.record_failure(),
        }
        result
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
            || Failure::final_error(SourceError::new(SourceErrorCode::Timeout, "request deadline reached"));
        let _permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| deadline_reached())?
            .expect("the semaphore is never closed");
        let started = Instant::now();
        let attempt_deadline = (started + self.limits.timeout).min(deadline);
        let result = match tokio::time::timeout_at(attempt_deadline, self.attempt(pushed, page, request_id)).await {
            Ok(result) => result,
            Err(_) if attempt_deadline < started + self.limits.timeout => Err(deadline_reached()),
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
                Failure::final_error(SourceError::new(
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
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

//! The HTTP side of every source: headers (SPEC §8), bounded concurrency, a timeout per
//! attempt, a body-size limit, and HTTP status → [`SourceError`] mapping.
//!
//! Never relays an upstream body or the API key into an error, log or metric.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use url::Url;

use super::{Provider, PushedQuery, SourceError, SourceErrorCode, UpstreamPage};
use crate::config::SourceConfig;
use crate::model::{ProviderKind, SourceName};

/// `User-Agent` sent upstream: names the gateway and its version.
pub const USER_AGENT: &str = concat!("users-gateway/", env!("CARGO_PKG_VERSION"));

/// Limits shared by every source.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    pub timeout: Duration,
    pub concurrency: usize,
    pub max_body_bytes: usize,
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
        }
    }

    pub fn kind(&self) -> ProviderKind {
        self.provider.kind()
    }

    /// Fetches and parses one page of a pushed-down query.
    #[tracing::instrument(name = "upstream", skip_all, fields(source = %self.name, page, query = %pushed))]
    pub async fn fetch_page(
        &self,
        pushed: &PushedQuery,
        page: u64,
        request_id: &str,
    ) -> Result<UpstreamPage, SourceError> {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let started = Instant::now();
        let result = match tokio::time::timeout(self.limits.timeout, self.attempt(pushed, page, request_id)).await {
            Ok(result) => result,
            Err(_) => Err(SourceError::new(
                SourceErrorCode::Timeout,
                format!("no answer within {} ms", self.limits.timeout.as_millis()),
            )),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.code.as_str(),
        };
        let elapsed = started.elapsed();
        crate::telemetry::record_upstream(&self.name, outcome, elapsed);
        match &result {
            Ok(parsed) => tracing::debug!(
                n_users = parsed.users.len(),
                total = parsed.total,
                ?elapsed,
                "upstream page"
            ),
            Err(error) => tracing::warn!(%error, ?elapsed, "upstream page failed"),
        }
        result
    }

    async fn attempt(&self, pushed: &PushedQuery, page: u64, request_id: &str) -> Result<UpstreamPage, SourceError> {
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", self.api_key.expose_secret())).map_err(|_| {
                SourceError::new(
                    SourceErrorCode::Unauthorized,
                    "the configured API key is not a valid header value",
                )
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
            SourceError::new(SourceErrorCode::Unavailable, "cannot connect to upstream")
        })?;
        let status = response.status();
        if status.is_success() {
            let body = self.read_body(response).await?;
            return self.provider.parse_page(&self.name, page, &body);
        }
        let code = status.as_u16();
        Err(match code {
            401 | 403 => SourceError::new(
                SourceErrorCode::Unauthorized,
                format!("upstream refused the API key (HTTP {code})"),
            ),
            429 => SourceError::new(SourceErrorCode::RateLimited, "upstream is rate limiting (HTTP 429)"),
            400..=499 => {
                let body = self.read_body(response).await.unwrap_or_default();
                self.provider.classify_rejection(code, &body)
            }
            500..=599 => SourceError::new(
                SourceErrorCode::Unavailable,
                format!("upstream failed with HTTP {code}"),
            ),
            _ => SourceError::bad_response(format!(
                "unexpected HTTP {code} from upstream (redirects are not followed)"
            )),
        })
    }

    /// Reads the body up to the configured limit; past it the source is a `bad_response`.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, SourceError> {
        let limit = self.limits.max_body_bytes;
        let too_large = || SourceError::bad_response(format!("upstream body is larger than {limit} bytes"));
        if response.content_length().is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = response.chunk().await.map_err(|error| {
            tracing::debug!(error = %error.without_url(), "upstream body failed");
            SourceError::new(
                SourceErrorCode::Unavailable,
                "upstream connection failed while reading the body",
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

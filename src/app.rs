//! Composition root: `Config` → a running gateway.
//!
//! Everything fallible (the HTTP client) is acquired first; the wiring after it cannot fail.

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

use crate::cache::{FactsStore, PageCache, ResponseCache, ViewCache};
use crate::cluster::budget::Budget;
use crate::cluster::pages::SharedPages;
use crate::cluster::Redis;
use crate::config::Config;
use crate::execute::Executor;
use crate::http::serve::ServeOptions;
use crate::http::{AppState, Shared};
use crate::providers::client::{build_http_client, ClientLimits, SourceClient};
use crate::providers::PushdownOptions;
use crate::query::parse::SourceRef;

pub struct App {
    router: Router,
    /// Header read timeout and shutdown drain.
    serve: ServeOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("{0}")]
    Redis(String),
}

impl App {
    pub fn build(config: &Config) -> Result<App, BuildError> {
        let limits = ClientLimits {
            timeout: config.upstream_timeout,
            concurrency: config.upstream_concurrency,
            max_body_bytes: config.upstream_max_body_bytes,
            retries: config.upstream_retries,
            backoff_base: config.upstream_backoff,
            backoff_max: config.upstream_backoff_max,
            breaker_failures: config.breaker_failures,
            breaker_cool_down: config.breaker_cool_down,
        };
        let http = build_http_client(limits)?;
        let redis = match &config.redis {
            Some(redis) => Some(Redis::connect(&redis.url, &redis.prefix, redis.timeout).map_err(BuildError::Redis)?),
            None => None,
        };

        let clients: Vec<SourceClient> = config
            .sources
            .iter()
            .map(|source| {
                let budget = source
                    .max_rps
                    .map(|max_rps| Budget::new(source.name.clone(), max_rps, redis.clone()));
                SourceClient::new(source, http.clone(), limits, budget)
            })
            .collect();
        let adapters = clients.iter().map(|client| client.provider.clone()).collect();
        let source_refs = config
            .sources
            .iter()
            .map(|source| SourceRef {
                name: source.name.clone(),
                provider: source.provider,
            })
            .collect();
        // GATEWAY_CACHE_MAX_BYTES bounds everything kept between requests (SPEC §7), split:
        // pages 3/4; facts 1/16 (ids of every page the page cache can hold, several times
        // over); views 1/16 (8 bytes a matching user); whole responses 1/8.
        let bound = config.cache_max_bytes;
        let mut cache = PageCache::new(
            config.cache_ttl,
            config.stale_if_error,
            config.stale_while_revalidate,
            bound / 4 * 3,
        );
        if let Some(redis) = &redis {
            // A lease lasts one upstream attempt: a replica that dies holding one delays the
            // others by that much at most.
            let lease = config.upstream_timeout.clamp(
                std::time::Duration::from_millis(100),
                std::time::Duration::from_secs(30),
            );
            let keep = cache.retention();
            cache = cache.with_shared(SharedPages::new(redis.clone(), keep, lease));
        }
        // Facts outlive the pages: kept past freshness for the longer stale window.
        let retention = config
            .cache_ttl
            .saturating_add(config.stale_if_error.max(config.stale_while_revalidate));
        let facts = FactsStore::new(retention, bound / 16);
        let views = ViewCache::new(config.cache_ttl, retention, bound / 16);
        crate::telemetry::metrics_handle();
        let state = AppState::new(Shared {
            executor: Executor::new(
                clients,
                cache,
                facts,
                views,
                config.max_upstream_pages,
                config.request_deadline,
            ),
            responses: ResponseCache::new(config.cache_ttl, bound / 8),
            adapters,
            source_refs,
            api_keys: config.api_keys.clone(),
            request_deadline: config.request_deadline,
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_requests)),
            exports: std::sync::Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_exports)),
            export_limit: config.max_concurrent_exports,
            pushdown: PushdownOptions {
                ti_role_pushdown: config.ti_role_pushdown,
            },
        });
        Ok(App {
            router: crate::http::router(state, &config.cors_origins),
            serve: ServeOptions {
                header_read_timeout: config.header_read_timeout,
                drain: config.shutdown_drain,
            },
        })
    }

    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish, for at most the drain timeout (see `http::serve`).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        crate::http::serve::serve(listener, self.router, self.serve, shutdown).await
    }
}

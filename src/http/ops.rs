//! Operational endpoints: `/healthz`, `/readyz`, `/metrics`. No caller key needed.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::users::{CircuitJson, ProviderJson};
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// The configured sources, in merge order.
    pub sources: Vec<ConfiguredSource>,
    /// Present when `GATEWAY_REDIS_URL` is set. Redis being down keeps the gateway ready:
    /// it answers from memory and the upstreams, with budgets per process (SPEC §10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisReadiness>,
}

#[derive(Serialize, ToSchema)]
pub struct RedisReadiness {
    /// `unknown` until the first call to Redis.
    pub status: RedisState,
    /// Seconds in this state.
    #[schema(example = 42)]
    pub since_secs: u64,
    /// The last failure, when there was one (never the URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "connection failed (IoError)")]
    pub last_error: Option<String>,
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum RedisState {
    Up,
    Down,
    Unknown,
}

#[derive(Serialize, ToSchema)]
pub struct ConfiguredSource {
    #[schema(example = "thoughtindustries")]
    pub source: String,
    pub provider: ProviderJson,
    /// `open` while the source's calls are refused after repeated failures.
    pub circuit: CircuitJson,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Configuration is loaded and the gateway is serving; each source's circuit breaker.
///
/// Stays 200 while a source's circuit is open: the gateway still answers (partially, or
/// from stale copies), and restarting it would not help the upstream.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, description = "Ready", body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> Json<Readiness> {
    Json(Readiness {
        status: "ready",
        sources: state
            .executor
            .sources()
            .iter()
            .map(|client| ConfiguredSource {
                source: client.name.to_string(),
                provider: client.kind().into(),
                circuit: client.circuit().into(),
            })
            .collect(),
        redis: state.executor.redis().map(|redis| {
            let status = redis.status();
            RedisReadiness {
                status: match status.up {
                    Some(true) => RedisState::Up,
                    Some(false) => RedisState::Down,
                    None => RedisState::Unknown,
                },
                since_secs: status.since.as_secs(),
                last_error: status.last_error,
            }
        }),
    })
}

/// Prometheus metrics: HTTP requests by route and status, upstream requests by source and
/// outcome (with latency histograms), cache lookups and size.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let [pages, facts, views] = state.executor.cache_bytes().await;
    for client in state.executor.sources() {
        let gauge = match client.circuit() {
            crate::providers::breaker::CircuitState::Closed => 0,
            crate::providers::breaker::CircuitState::HalfOpen => 1,
            crate::providers::breaker::CircuitState::Open => 2,
        };
        crate::telemetry::record_circuit(&client.name, gauge);
    }
    let stores = [pages, facts, views, ("responses", state.responses.weighted_size())];
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::telemetry::render_metrics(&stores),
    )
}

//! Logs, request ids and metrics.
//!
//! One middleware ([`observe`]) gives every request an id (the caller's when well-formed,
//! else a fresh UUID), a tracing span, an access log line and HTTP metrics. Upstream and
//! cache metrics are recorded by [`record_upstream`] and [`record_cache`]. No key, header
//! value or upstream body is ever logged or used as a label.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::model::SourceName;

/// Whether this process logs JSON: then every line it writes must be JSON (SPEC §2).
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets up logging once per process; later calls (tests) are no-ops.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    if installed.is_ok() && format == LogFormat::Json {
        JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// True once `init_tracing` installed JSON logging: other output must then be log events too.
pub fn json_logs() -> bool {
    JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed)
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; the handle then renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Renders `/metrics`, draining histogram buffers first.
pub fn render_metrics(cache_bytes: u64) -> String {
    metrics::gauge!("gateway_cache_bytes").set(cache_bytes as f64);
    let handle = metrics_handle();
    handle.run_upkeep();
    handle.render()
}

pub fn record_upstream(source: &SourceName, outcome: &'static str, elapsed: Duration) {
    let source = source.to_string();
    metrics::counter!("gateway_upstream_requests_total", "source" => source.clone(), "outcome" => outcome).increment(1);
    metrics::histogram!("gateway_upstream_request_duration_seconds", "source" => source, "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// `result`: `hit`, `miss` or `stale`.
pub fn record_cache(result: &'static str) {
    metrics::counter!("gateway_cache_lookups_total", "result" => result).increment(1);
}

/// The id of the request being served, for logs, upstream headers and the response.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// Caller ids are kept only when short and of safe characters (they reach logs and upstreams).
fn accept_request_id(value: &HeaderValue) -> Option<Arc<str>> {
    let text = value.to_str().ok()?;
    let valid = (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    valid.then(|| Arc::from(text))
}

/// Request id, span, access log and HTTP metrics for every request.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(accept_request_id)
        .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().to_string()));
    request.extensions_mut().insert(RequestId(request_id.clone()));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!("request", %method, %route, request_id = %request_id);

    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| tracing::info!(status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "served"));
    metrics::counter!("gateway_http_requests_total", "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("gateway_http_request_duration_seconds", "route" => route).record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

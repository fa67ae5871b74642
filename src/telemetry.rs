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
    // Colours only for a person at a terminal: in a file or a pipe they are noise, and
    // colouring costs more than the rest of an access log line.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colours);
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

/// Renders `/metrics`, draining histogram buffers first. `stores`: bytes held by each store
/// kept between requests (`gateway_cache_bytes{store}`; together within the cache bound).
pub fn render_metrics(stores: &[(&'static str, u64)]) -> String {
    for &(store, bytes) in stores {
        metrics::gauge!("gateway_cache_bytes", "store" => store).set(bytes as f64);
    }
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

/// A lookup in memory (L1); `result`: `hit`, `miss`, `revalidate` or `stale`.
pub fn record_cache(result: &'static str) {
    metrics::counter!("gateway_cache_lookups_total", "tier" => "memory", "result" => result).increment(1);
}

/// A lookup in Redis (L2); `result`: `hit`, `miss` or `undecodable` (a failed call is
/// counted by [`record_redis`]).
pub fn record_shared_lookup(result: &'static str) {
    metrics::counter!("gateway_cache_lookups_total", "tier" => "redis", "result" => result).increment(1);
}

/// One Redis call: `gateway_redis_commands_total{command, outcome}` and its latency.
pub fn record_redis(command: &'static str, ok: bool, elapsed: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("gateway_redis_commands_total", "command" => command, "outcome" => outcome).increment(1);
    metrics::histogram!("gateway_redis_command_duration_seconds", "command" => command).record(elapsed.as_secs_f64());
}

/// `gateway_redis_up`: 1 while Redis answers, 0 after a failure, -1 before the first call.
pub fn record_redis_up(up: Option<bool>) {
    let value = match up {
        Some(true) => 1.0,
        Some(false) => 0.0,
        None => -1.0,
    };
    metrics::gauge!("gateway_redis_up").set(value);
}

/// A lease on a cold page: `taken` (this replica fetches), `found` (a page written just
/// before), `waited` (another replica holds it), `shared` (its page came), `expired` (it
/// never came: fetched here).
pub fn record_lease(outcome: &'static str) {
    metrics::counter!("gateway_redis_leases_total", "outcome" => outcome).increment(1);
}

/// A source's own request budget: `granted` at once, `waited` (and for how long), `refused`.
pub fn record_budget(source: &SourceName, outcome: &'static str, wait: Duration) {
    let source = source.to_string();
    metrics::counter!("gateway_budget_requests_total", "source" => source.clone(), "outcome" => outcome).increment(1);
    if outcome == "waited" {
        metrics::histogram!("gateway_budget_wait_seconds", "source" => source).record(wait.as_secs_f64());
    }
}

/// `gateway_circuit_state{source}`: 0 closed, 1 half-open, 2 open.
pub fn record_circuit(source: &SourceName, state: u8) {
    metrics::gauge!("gateway_circuit_state", "source" => source.to_string()).set(f64::from(state));
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

/// A fresh request id: a random (version 4) UUID. Not a secret, so a fast generator
/// suffices; `uuid`'s own v4 asks the kernel for every id.
fn new_request_id() -> Arc<str> {
    let uuid = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    Arc::from(&*uuid.hyphenated().encode_lower(&mut text))
}

/// The HTTP metrics of one (route, status), registered once per thread: looking a metric
/// up by its labels costs allocations and hashing every request.
struct HttpMetrics {
    route: Box<str>,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

thread_local! {
    static HTTP_METRICS: std::cell::RefCell<Vec<HttpMetrics>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Bounds the per-thread list: routes are few, statuses a handful per route.
const MAX_HTTP_METRICS: usize = 256;

fn record_http(route: &str, status: u16, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    HTTP_METRICS.with_borrow_mut(|known| {
        if let Some(found) = known.iter().find(|m| m.status == status && *m.route == *route) {
            found.requests.increment(1);
            found.duration.record(seconds);
            return;
        }
        let route_label = route.to_owned();
        let metric = HttpMetrics {
            requests: metrics::counter!("gateway_http_requests_total", "route" => route_label.clone(), "status" => status.to_string()),
            duration: metrics::histogram!("gateway_http_request_duration_seconds", "route" => route_label),
            route: route.into(),
            status,
        };
        metric.requests.increment(1);
        metric.duration.record(seconds);
        if known.len() < MAX_HTTP_METRICS {
            known.push(metric);
        }
    });
}

/// Request id, access log and HTTP metrics for every request, and a `request` span when
/// debug logging is on (at the default level a span per request would cost more than the
/// rest of a cache hit; the access log line carries the request id, and upstream spans
/// carry it too).
pub async fn observe<F, Fut>(mut request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(accept_request_id)
        .unwrap_or_else(new_request_id);
    request.extensions_mut().insert(RequestId(request_id.clone()));
    let route: Option<MatchedPath> = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = request.method().clone();
    let span = tracing::debug_span!("request", method = method.as_str(), route, request_id = &*request_id);

    let mut response = inner(request).instrument(span).await;

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    tracing::info!(
        target: "access",
        method = method.as_str(),
        route,
        status,
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = &*request_id,
        "served"
    );
    record_http(route, status, elapsed);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

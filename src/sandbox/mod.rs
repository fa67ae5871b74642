//! The sandbox: both provider APIs simulated from their published docs (SPEC §9).
//!
//! Part of the product: `--demo` serves the gateway over it, `users-gateway sandbox` serves
//! it alone, and the tests and benchmarks run against it. Deterministic seeded data,
//! bearer auth, each provider's paging and filters, optional latency and fault injection,
//! and a log of the requests each provider received. Being the upstream, it is the one
//! place outside `providers/` that speaks upstream field names.

pub mod faults;
pub mod seed;
pub mod tapintosafety;
pub mod thoughtindustries;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use secrecy::SecretString;
use serde_json::Value;
use tokio::net::TcpListener;
use url::Url;

use crate::config::SourceConfig;
use crate::model::{ProviderKind, SourceName};
pub use faults::{Control, DataFault, Fault, Received};

/// How to build and where to serve the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub seed: u64,
    pub ti_users: usize,
    /// Thought Industries picks its own page size; the sandbox's is deliberately not 50.
    pub ti_page_size: usize,
    pub tis_users: usize,
    /// Pads each TI record with more of the provider's documented fields until its JSON is
    /// about this many bytes (real tenants' records run to several KB); `None`: the plain
    /// seeded records. See [`seed::ti_users_padded`].
    pub ti_record_bytes: Option<usize>,
    pub ti_addr: SocketAddr,
    pub tis_addr: SocketAddr,
    /// Added before every answer, to make fan-out and caching visible.
    pub latency: Duration,
}

impl Default for SandboxOptions {
    fn default() -> SandboxOptions {
        SandboxOptions {
            seed: 7,
            ti_users: 1250,
            ti_page_size: 40,
            tis_users: 730,
            ti_record_bytes: None,
            ti_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tis_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
        }
    }
}

pub const TI_API_KEY: &str = "sandbox-ti-key";
pub const TIS_API_KEY: &str = "sandbox-tis-key";

/// One simulated provider, running.
#[derive(Clone)]
pub struct SimulatedProvider {
    pub provider: ProviderKind,
    pub base_url: Url,
    pub api_key: &'static str,
    /// The provider's records in upstream order, as its API returns them.
    pub records: Arc<Vec<Value>>,
    pub control: Arc<Control>,
}

/// Both simulated providers, running on loopback.
#[derive(Clone)]
pub struct Sandbox {
    pub ti: SimulatedProvider,
    pub tis: SimulatedProvider,
}

impl Sandbox {
    /// Binds both providers and serves them on background tasks.
    pub async fn start(options: SandboxOptions) -> std::io::Result<Sandbox> {
        let ti_records = Arc::new(match options.ti_record_bytes {
            None => seed::ti_users(options.seed, options.ti_users),
            Some(bytes) => seed::ti_users_padded(options.seed, options.ti_users, bytes),
        });
        let tis_records = Arc::new(seed::tis_users(options.seed.wrapping_add(1), options.tis_users));
        let ti = serve_provider(
            ProviderKind::ThoughtIndustries,
            options.ti_addr,
            TI_API_KEY,
            ti_records.clone(),
            options.latency,
            |records, control| thoughtindustries::router(records, options.ti_page_size, control),
        )
        .await?;
        let tis = serve_provider(
            ProviderKind::TapIntoSafety,
            options.tis_addr,
            TIS_API_KEY,
            tis_records,
            options.latency,
            tapintosafety::router,
        )
        .await?;
        Ok(Sandbox { ti, tis })
    }

    /// Sources pointing a gateway at this sandbox, in the default order.
    pub fn sources(&self) -> Vec<SourceConfig> {
        [&self.ti, &self.tis]
            .into_iter()
            .map(|simulated| SourceConfig {
                name: SourceName::parse(simulated.provider.as_str()).expect("provider names are valid"),
                provider: simulated.provider,
                base_url: simulated.base_url.clone(),
                api_key: SecretString::from(simulated.api_key),
                max_rps: None,
            })
            .collect()
    }
}

async fn serve_provider(
    provider: ProviderKind,
    addr: SocketAddr,
    api_key: &'static str,
    records: Arc<Vec<Value>>,
    latency: Duration,
    router: impl FnOnce(Arc<Vec<Value>>, Arc<Control>) -> Router,
) -> std::io::Result<SimulatedProvider> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let control = Arc::new(Control::new(api_key, latency));
    let app = faults::wrap(router(records.clone(), control.clone()), control.clone());
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "sandbox server stopped");
        }
    });
    Ok(SimulatedProvider {
        provider,
        base_url: Url::parse(&format!("http://{local}")).expect("a socket address is a valid URL host"),
        api_key,
        records,
        control,
    })
}

/// Bearer auth as both providers document it.
pub(crate) fn authorized(headers: &HeaderMap, control: &Control) -> bool {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|key| key == control.api_key())
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

/// `?page=` as the providers read it: absent means 1; anything but a positive integer is invalid.
pub(crate) fn page_param(value: Option<&str>) -> Option<usize> {
    match value {
        None => Some(1),
        Some(text) => text.parse::<usize>().ok().filter(|page| *page >= 1),
    }
}

/// The slice of `items` that page `page` of size `size` shows.
pub(crate) fn page_of<T>(items: &[T], page: usize, size: usize) -> &[T] {
    let start = page.saturating_sub(1).saturating_mul(size).min(items.len());
    let end = start.saturating_add(size).min(items.len());
    &items[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_tenant_serves_padded_records_at_its_page_size() {
        let options = SandboxOptions {
            ti_users: 250,
            ti_page_size: 100,
            ti_record_bytes: Some(3500),
            tis_users: 60,
            ..SandboxOptions::default()
        };
        let sandbox = Sandbox::start(options).await.unwrap();
        assert_eq!((sandbox.ti.records.len(), sandbox.tis.records.len()), (250, 60));
        let sizes: Vec<usize> = sandbox.ti.records.iter().map(|r| r.to_string().len()).collect();
        assert!(sizes.iter().all(|len| (3400..=3600).contains(len)), "{sizes:?}");
        assert_eq!(*sandbox.ti.records, seed::ti_users_padded(7, 250, 3500));
        let plain = Sandbox::start(SandboxOptions::default()).await.unwrap();
        assert_eq!(
            *plain.ti.records,
            seed::ti_users(7, 1250),
            "the default dataset is the plain one"
        );
    }
}

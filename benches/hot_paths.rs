//! The hot in-process paths, with Criterion: what each costs on its own, before the kernel,
//! the network and the other process on the machine come into it (`bench/run.sh` measures
//! those).
//!
//! ```sh
//! cargo bench --bench hot_paths                 # measure (about a minute)
//! cargo bench --bench hot_paths -- --test       # each once, as CI does (seconds)
//! cargo bench --bench hot_paths -- parse        # only the benches whose name has "parse"
//! ```
//!
//! Inputs are real: upstream pages come over loopback from the sandbox (the demo dataset,
//! and a large-tenant TI page of 100 records of ~3.5 KB), parsed by the gateway's own
//! adapters. The router bench is the whole `Router` as `App::build` wires it, every
//! middleware included, once without a tracing subscriber (the access log costs nothing) and
//! once with the binary's default (`info`, formatted, written to a sink); beside it, a bare
//! axum `Bytes` route, the framework's own cost. The allocator is the binary's (mimalloc).

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tower::ServiceExt;
use users_gateway::app::App;
use users_gateway::config::Config;
use users_gateway::http::users::{Links, Meta, ProviderJson, SourceState, SourceStatusJson, UserJson, UserList};
use users_gateway::merge::layout::{layout, SourceLayout};
use users_gateway::merge::paging::{slices, PageMeta};
use users_gateway::merge::sort::sort_users;
use users_gateway::model::{ProviderKind, SourceName, User};
use users_gateway::providers::{adapter, Provider};
use users_gateway::query::filter::{SortField, SortKey};
use users_gateway::query::parse::{list_query, SourceRef};
use users_gateway::query::plan::plan;
use users_gateway::query::pushdown::PushdownOptions;
use users_gateway::sandbox::{Sandbox, SandboxOptions, SimulatedProvider};

/// As in the binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Page `page` of a simulated provider, as its API sends it.
async fn upstream_page(simulated: &SimulatedProvider, page: u64) -> Vec<u8> {
    let path = match simulated.provider {
        ProviderKind::ThoughtIndustries => "incoming/v2/users",
        ProviderKind::TapIntoSafety => "api/v2/users",
    };
    let url = simulated.base_url.join(path).expect("a URL");
    let response = reqwest::Client::new()
        .get(url)
        .query(&[("page", page)])
        .bearer_auth(simulated.api_key)
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("a body").to_vec()
}

struct Pages {
    ti: Vec<u8>,
    tis: Vec<u8>,
    ti_large: Vec<u8>,
    /// Every user of the demo dataset, parsed, in merge order.
    all_users: Vec<User>,
}

fn source(name: &str) -> SourceName {
    SourceName::parse(name).expect("a source name")
}

fn parse(kind: ProviderKind, page: u64, body: &[u8]) -> Vec<User> {
    adapter(kind)
        .parse_page(&source(kind.as_str()), page, body)
        .expect("a documented page")
        .users
}

fn fetch_pages(rt: &tokio::runtime::Runtime) -> Pages {
    rt.block_on(async {
        let demo = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
        let large = Sandbox::start(SandboxOptions {
            ti_users: 100,
            ti_page_size: 100,
            ti_record_bytes: Some(3500),
            tis_users: 0,
            ..SandboxOptions::default()
        })
        .await
        .expect("sandbox");
        let mut all_users = Vec::new();
        for (simulated, page_size) in [(&demo.ti, 40), (&demo.tis, 50)] {
            let n_pages = simulated.records.len().div_ceil(page_size) as u64;
            for page in 1..=n_pages {
                all_users.extend(parse(simulated.provider, page, &upstream_page(simulated, page).await));
            }
        }
        Pages {
            ti: upstream_page(&demo.ti, 1).await,
            tis: upstream_page(&demo.tis, 1).await,
            ti_large: upstream_page(&large.ti, 1).await,
            all_users,
        }
    })
}

/// Upstream page → normalized users: envelope, each record's fields, credential redaction
/// of the raw record, normalization (SPEC §4). One call of the adapter does all four.
fn bench_parse(c: &mut Criterion, pages: &Pages) {
    let mut group = c.benchmark_group("parse_page");
    for (name, kind, body, n_users) in [
        (
            "thoughtindustries_40",
            ProviderKind::ThoughtIndustries,
            &pages.ti,
            40u64,
        ),
        ("tapintosafety_50", ProviderKind::TapIntoSafety, &pages.tis, 50),
        (
            "thoughtindustries_100x3.5KB",
            ProviderKind::ThoughtIndustries,
            &pages.ti_large,
            100,
        ),
    ] {
        let provider = adapter(kind);
        let name_of_source = source(kind.as_str());
        assert_eq!(parse(kind, 1, body).len() as u64, n_users);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                provider
                    .parse_page(&name_of_source, 1, black_box(body))
                    .expect("parses")
            })
        });
    }
    group.finish();
}

fn source_refs() -> Vec<SourceRef> {
    ProviderKind::ALL
        .into_iter()
        .map(|provider| SourceRef {
            name: source(provider.as_str()),
            provider,
        })
        .collect()
}

/// The caller's query → a plan; then the layout of a page over the sources, and a sorted
/// merge of every user (what a `sort=` query does after its full reads).
fn bench_query_layout_merge(c: &mut Criterion, pages: &Pages) {
    let refs = source_refs();
    let adapters: Vec<Arc<dyn Provider>> = ProviderKind::ALL.into_iter().map(adapter).collect();
    let pushdown = PushdownOptions { ti_role_pushdown: true };
    c.bench_function("query/parse_and_plan", |b| {
        b.iter(|| {
            let query = list_query(black_box("page=3&per_page=25&role=admin&sort=-last_active_at"), &refs)
                .expect("a valid query");
            plan(&query, &refs, &adapters, &pushdown)
        })
    });

    let direct = [
        SourceLayout::Direct {
            total: 1250,
            page_size: 40,
        },
        SourceLayout::Direct {
            total: 730,
            page_size: 50,
        },
    ];
    c.bench_function("merge/layout_page_30", |b| {
        b.iter(|| layout(black_box(&direct), black_box(30), 25))
    });
    c.bench_function("merge/slices_and_meta", |b| {
        b.iter(|| {
            (
                slices(black_box(&[Some(1250), Some(730)]), black_box(1225), 25),
                PageMeta::new(black_box(50), 25, 1980),
            )
        })
    });

    let refs_to_users: Vec<&User> = pages.all_users.iter().collect();
    assert_eq!(refs_to_users.len(), 1980);
    let by_last_name = [SortKey {
        field: SortField::LastName,
        descending: false,
    }];
    let mut group = c.benchmark_group("merge");
    group.throughput(Throughput::Elements(refs_to_users.len() as u64));
    group.bench_function("sort_1980_by_last_name", |b| {
        b.iter_batched_ref(
            || refs_to_users.clone(),
            |users| sort_users(users, &by_last_name),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A page of 25 users rendered as the `/users` JSON body (what a response-cache miss pays).
fn bench_render(c: &mut Criterion, pages: &Pages) {
    let users = &pages.all_users[..25];
    let sources = [
        ("thoughtindustries", ProviderJson::Thoughtindustries, 1250),
        ("tapintosafety", ProviderJson::Tapintosafety, 730),
    ];
    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(users.len() as u64));
    group.bench_function("page_of_25", |b| {
        b.iter(|| {
            let body = UserList {
                data: users
                    .iter()
                    .map(|user| UserJson::new(user, users_gateway::query::fields::FieldSet::ALL, None))
                    .collect(),
                meta: Meta {
                    page: 1,
                    per_page: 25,
                    total: 1980,
                    total_pages: 80,
                    has_more: true,
                    partial: false,
                    sources: sources
                        .iter()
                        .map(|&(name, provider, total)| SourceStatusJson {
                            source: name.to_owned(),
                            provider,
                            status: SourceState::Ok,
                            total: Some(total),
                            error: None,
                            reason: None,
                            stale: None,
                            age_secs: None,
                            circuit: None,
                        })
                        .collect(),
                },
                links: Links {
                    self_link: "/users?page=1&per_page=25",
                    first: "/users?page=1&per_page=25",
                    prev: None,
                    next: Some("/users?page=2&per_page=25"),
                    last: "/users?page=80&per_page=25",
                },
            };
            serde_json::to_vec(black_box(&body)).expect("serializes")
        })
    });
    group.finish();
}

/// A cached `GET /users?page=1&per_page=25` through the whole router (every middleware, the
/// handler, the response), warmed first: no upstream call, no socket.
fn bench_router_hit(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let router = rt.block_on(async {
        let sandbox = Sandbox::start(SandboxOptions::default()).await.expect("sandbox");
        let config = Config::load(&|_: &str| None, None, Some(sandbox.sources())).expect("config");
        // Leaked: the sandbox must outlive the benches (its servers run on the runtime).
        std::mem::forget(sandbox);
        App::build(&config).expect("app").router()
    });
    let get = || {
        Request::get("/users?page=1&per_page=25")
            .body(Body::empty())
            .expect("a request")
    };
    let hit = |router: axum::Router| async move {
        let response = router.oneshot(get()).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        let cache_status = response.headers().get("cache-status").cloned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        (cache_status, body)
    };
    // Warm: the first call reads both upstreams, the next ones are hits.
    rt.block_on(hit(router.clone()));
    let (cache_status, body) = rt.block_on(hit(router.clone()));
    assert_eq!(
        cache_status.as_ref().and_then(|v| v.to_str().ok()),
        Some("users-gateway; hit")
    );
    let mut group = c.benchmark_group("router");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("cached_users_page_1", |b| b.iter(|| rt.block_on(hit(router.clone()))));
    // The default log level, as `bench/run.sh` runs the binary: the access line is formatted
    // and written (to a sink here). The subscriber is this thread's, where `block_on` polls.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        group.bench_function("cached_users_page_1_access_log_info", |b| {
            b.iter(|| rt.block_on(hit(router.clone())))
        });
    });
    // The framework's own cost for the same bytes: one route answering shared `Bytes`.
    let bare = axum::Router::new().route(
        "/users",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    group.bench_function("bare_axum_bytes", |b| {
        b.iter(|| {
            rt.block_on(async {
                let response = bare.clone().oneshot(get()).await.expect("infallible");
                axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("a body")
            })
        })
    });
    group.finish();
}

/// A page as the shared tier stores it (postcard of the parsed page, records still
/// lz4-packed) against the other design the issue allowed: the upstream body compressed
/// (lz4) and parsed again by each replica that reads it.
fn bench_shared_tier(c: &mut Criterion, pages: &Pages) {
    use users_gateway::cluster::codec;
    let mut group = c.benchmark_group("shared_tier");
    for (name, body) in [
        ("thoughtindustries_40", &pages.ti),
        ("thoughtindustries_100x3.5KB", &pages.ti_large),
    ] {
        let provider = adapter(ProviderKind::ThoughtIndustries);
        let ti = source("thoughtindustries");
        let page = provider.parse_page(&ti, 1, body).expect("parses");
        let stored = codec::encode(&page, 1);
        let compressed = lz4_flex::compress_prepend_size(body);
        eprintln!(
            "shared_tier/{name}: upstream body {} B; postcard page {} B; lz4 body {} B",
            body.len(),
            stored.len(),
            compressed.len()
        );
        group.bench_function(format!("{name}/postcard_encode"), |b| {
            b.iter(|| codec::encode(black_box(&page), 1))
        });
        group.bench_function(format!("{name}/postcard_decode"), |b| {
            b.iter(|| codec::decode(black_box(&stored), &ti).expect("decodes"))
        });
        group.bench_function(format!("{name}/lz4_json_encode"), |b| {
            b.iter(|| lz4_flex::compress_prepend_size(black_box(body)))
        });
        group.bench_function(format!("{name}/lz4_json_decode_and_parse"), |b| {
            b.iter(|| {
                let body = lz4_flex::decompress_size_prepended(black_box(&compressed)).expect("unpacks");
                provider.parse_page(&ti, 1, &body).expect("parses")
            })
        });
    }
    group.finish();
}

fn hot_paths(c: &mut Criterion) {
    let rt = runtime();
    let pages = fetch_pages(&rt);
    bench_parse(c, &pages);
    bench_query_layout_merge(c, &pages);
    bench_render(c, &pages);
    bench_router_hit(c, &rt);
    bench_shared_tier(c, &pages);
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);

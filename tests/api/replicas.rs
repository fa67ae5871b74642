//! Several replicas on one Redis (SPEC §10): a real `redis-server` and gateways in this
//! process over one sandbox, whose request log is the count of upstream calls.
//!
//! Expected users come from the sandbox's records (`expected_ids`), never from a replica.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;
use users_gateway::sandbox::{Sandbox, SandboxOptions, TIS_API_KEY, TI_API_KEY};

use crate::helpers::{expected_users, ids, reference, spawn_over, TestApp};
use crate::redis_server::RedisServer;

async fn replicas(sandbox: &Sandbox, redis: &RedisServer, count: usize, extra: &[(&str, &str)]) -> Vec<TestApp> {
    let url = redis.url();
    let mut env = vec![("GATEWAY_REDIS_URL", url.as_str()), ("GATEWAY_REDIS_TIMEOUT_MS", "500")];
    env.extend_from_slice(extra);
    let mut apps = Vec::new();
    for _ in 0..count {
        apps.push(spawn_over(sandbox.clone(), sandbox.sources(), &env).await);
    }
    apps
}

fn upstream_count(sandbox: &Sandbox) -> usize {
    sandbox.ti.control.requests().len() + sandbox.tis.control.requests().len()
}

fn clear(sandbox: &Sandbox) {
    sandbox.ti.control.clear_requests();
    sandbox.tis.control.clear_requests();
}

fn all_ok(body: &Value) -> bool {
    body["meta"]["sources"]
        .as_array()
        .is_some_and(|sources| sources.iter().all(|source| source["status"] == "ok"))
}

/// Every page of `query` (per_page=100), in order.
async fn walk(app: &TestApp, query: &str) -> Vec<String> {
    let mut all = Vec::new();
    for page in 1.. {
        let reply = app.get(&format!("/users?{query}&per_page=100&page={page}")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let body = reply.json();
        assert!(all_ok(&body), "{body}");
        let got = ids(&body);
        let done = got.len() < 100;
        all.extend(got);
        if done {
            break;
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_one_replica_fetched_is_served_by_another_with_no_upstream_call() {
    let Some(redis) = RedisServer::start("a_page_one_replica_fetched_is_served_by_another").await else {
        return;
    };
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let apps = replicas(&sandbox, &redis, 2, &[]).await;
    let (a, b) = (&apps[0], &apps[1]);

    let first = a.get("/users?page=2&per_page=25").await;
    assert_eq!(first.status, 200);
    let fetched = upstream_count(&sandbox);
    assert!(fetched >= 1, "replica A reads the upstream");
    clear(&sandbox);
    let second = b.get("/users?page=2&per_page=25").await;
    assert_eq!(second.status, 200);
    assert_eq!(upstream_count(&sandbox), 0, "replica B is served from Redis");
    assert_eq!(ids(&second.json()), ids(&first.json()));
    assert_eq!(ids(&second.json()), a.expected_ids()[25..50].to_vec());
    assert!(
        second.header("cache-status").unwrap().contains("hit"),
        "{:?}",
        second.headers
    );

    // A full walk on A, plain and sorted, makes B's walks upstream-free.
    let plain_a = walk(a, "provider=thoughtindustries,tapintosafety").await;
    assert_eq!(plain_a, a.expected_ids());
    let sorted_a = walk(a, "sort=-last_name").await;
    let sorted_expected: Vec<String> = reference(&expected_users(&sandbox), |_| true, &[("last_name", true)])
        .iter()
        .map(|user| user["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sorted_a, sorted_expected);
    let (ti, tis) = (
        sandbox.ti.control.requests().len(),
        sandbox.tis.control.requests().len(),
    );
    clear(&sandbox);
    let plain_b = walk(b, "provider=thoughtindustries,tapintosafety").await;
    let sorted_b = walk(b, "sort=-last_name").await;
    eprintln!(
        "sharing: walks on A made {ti} TI + {tis} TIS requests; the same walks on B made {}",
        upstream_count(&sandbox)
    );
    assert_eq!(upstream_count(&sandbox), 0, "{:?}", sandbox.ti.control.requests());
    assert_eq!((plain_b, sorted_b), (plain_a, sorted_a));

    // What Redis holds: namespaced, versioned keys and no API key anywhere.
    let mut connection = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut connection).await.unwrap();
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(key.starts_with("users-gateway:v1:"), "{key}");
        let kind: String = redis::cmd("TYPE").arg(key).query_async(&mut connection).await.unwrap();
        assert_eq!(kind, "string", "{key}");
        let value: Vec<u8> = redis::cmd("GET").arg(key).query_async(&mut connection).await.unwrap();
        for secret in [TI_API_KEY, TIS_API_KEY] {
            assert!(!key.contains(secret));
            assert!(
                !value.windows(secret.len()).any(|window| window == secret.as_bytes()),
                "{key} holds a key"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_given_the_same_cold_request_fetch_each_upstream_page_once() {
    let Some(redis) = RedisServer::start("three_replicas_given_the_same_cold_request").await else {
        return;
    };
    let options = SandboxOptions {
        latency: Duration::from_millis(50),
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(options).await.unwrap();
    let apps = replicas(&sandbox, &redis, 3, &[]).await;
    // Sorted: every page of both sources, all three replicas at once.
    let replies = join_all(
        apps.iter()
            .map(|app| app.get("/users?sort=last_name&per_page=50&page=3")),
    )
    .await;
    let first = ids(&replies[0].json());
    assert_eq!(first.len(), 50);
    for reply in &replies {
        assert_eq!(reply.status, 200);
        assert!(all_ok(&reply.json()), "{}", reply.text);
        assert_eq!(ids(&reply.json()), first);
    }
    let mut per_target: HashMap<String, usize> = HashMap::new();
    let (ti, tis) = (sandbox.ti.control.requests(), sandbox.tis.control.requests());
    for target in ti.iter().chain(&tis) {
        *per_target.entry(target.clone()).or_default() += 1;
    }
    let repeated: Vec<_> = per_target.iter().filter(|(_, &n)| n > 1).collect();
    eprintln!(
        "single flight: three replicas sent {} TI + {} TIS requests for {} distinct pages",
        ti.len(),
        tis.len(),
        per_target.len()
    );
    assert!(repeated.is_empty(), "pages fetched more than once: {repeated:?}");
    assert_eq!(ti.len(), 1250usize.div_ceil(40), "every TI page once");
    assert_eq!(tis.len(), 730usize.div_ceil(50), "every TIS page once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_under_load_share_one_request_budget() {
    let Some(redis) = RedisServer::start("three_replicas_under_load_share_one_request_budget").await else {
        return;
    };
    const RATE: f64 = 20.0;
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let apps = replicas(&sandbox, &redis, 3, &[("THOUGHTINDUSTRIES_MAX_RPS", "20")]).await;
    let started = Instant::now();
    let load = Duration::from_millis(1500);
    // Four callers a replica, each refetching a TI page of its own until the time is up
    // (no two share a page, so nothing coalesces).
    let callers = apps
        .iter()
        .flat_map(|app| (0..4).map(move |_| app))
        .enumerate()
        .map(|(caller, app)| async move {
            let mut answered = 0;
            let query = format!("/users?provider=thoughtindustries&per_page=40&page={}", caller + 1);
            while started.elapsed() < load {
                let reply = app.get_with(&query, &[("cache-control", "no-cache")]).await;
                assert_eq!(reply.status, 200, "{}", reply.text);
                assert!(
                    all_ok(&reply.json()),
                    "waits within the deadline, not refused: {}",
                    reply.text
                );
                answered += 1;
            }
            answered
        });
    let answered: usize = join_all(callers).await.into_iter().sum();
    let elapsed = started.elapsed().as_secs_f64();
    let sent = sandbox.ti.control.requests().len();
    // GCRA: at most rate × time + the burst (a tenth of the rate), over any window.
    let bound = (RATE * elapsed).floor() as usize + 2 + 1;
    eprintln!("budget: 3 replicas × 4 callers answered {answered} requests with {sent} TI requests in {elapsed:.2} s (budget {RATE}/s, bound {bound})");
    assert!(
        sent <= bound,
        "{sent} upstream requests in {elapsed:.2} s over a budget of {RATE}/s"
    );
    assert!(sent as f64 >= RATE * 1.0, "the load used the budget: {sent}");
    assert_eq!(answered, sent, "each answer made one request of its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_shared_budget_cannot_serve_before_its_deadline_is_rate_limited() {
    let Some(redis) = RedisServer::start("a_request_the_shared_budget_cannot_serve").await else {
        return;
    };
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let env = [
        ("THOUGHTINDUSTRIES_MAX_RPS", "0.5"),
        ("GATEWAY_REQUEST_DEADLINE_MS", "400"),
    ];
    let apps = replicas(&sandbox, &redis, 2, &env).await;
    let first = apps[0].get("/users?per_page=5").await.json();
    assert!(all_ok(&first), "{first}");
    // Replica B has spent nothing itself: only a budget shared through Redis refuses it.
    let second = apps[1].get("/users?per_page=5&page=200").await;
    assert_eq!(second.status, 200, "{}", second.text);
    let body = second.json();
    let ti = &body["meta"]["sources"][0];
    assert_eq!(ti["source"], "thoughtindustries");
    assert_eq!(ti["status"], "error", "{body}");
    assert_eq!(ti["error"]["code"], "rate_limited", "{body}");
    assert!(
        ti["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gateway's own request budget"),
        "{body}"
    );
    assert_eq!(body["meta"]["sources"][1]["status"], "ok", "TIS has no budget");
    assert_eq!(sandbox.ti.control.requests().len(), 1, "the refusal sent nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fails_no_request_and_sharing_resumes_when_it_is_back() {
    let Some(mut redis) = RedisServer::start("redis_killed_fails_no_request").await else {
        return;
    };
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let apps = replicas(&sandbox, &redis, 2, &[("GATEWAY_REDIS_TIMEOUT_MS", "100")]).await;
    let (a, b) = (&apps[0], &apps[1]);
    assert_eq!(a.get("/users?per_page=10").await.status, 200);
    assert_eq!(a.get("/readyz").await.json()["redis"]["status"], "up");

    redis.kill();
    for (idx, app) in apps.iter().enumerate() {
        for page in 1..=5 {
            let reply = app.get(&format!("/users?per_page=30&page={page}")).await;
            assert_eq!(reply.status, 200, "replica {idx} page {page}: {}", reply.text);
            let body = reply.json();
            assert!(all_ok(&body), "replica {idx} page {page}: {body}");
            assert_eq!(ids(&body), a.expected_ids()[(page - 1) * 30..page * 30].to_vec());
        }
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status, 200, "still ready without Redis");
        assert_eq!(ready.json()["redis"]["status"], "down", "{}", ready.text);
        assert!(ready.json()["redis"]["last_error"].is_string(), "{}", ready.text);
    }

    redis.restart().await;
    // Sharing resumes by itself: a new query on A, then on B, until B needs no upstream
    // call (the first calls after the back-off find Redis back).
    let resumed = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        // A new upstream page each time: B must not find it in its own memory.
        let query = format!("/users?provider=tapintosafety&email=resume{attempt}");
        assert_eq!(a.get(&query).await.status, 200);
        clear(&sandbox);
        let reply = b.get(&query).await;
        assert_eq!(reply.status, 200);
        if upstream_count(&sandbox) == 0 {
            break;
        }
        assert!(resumed.elapsed() < Duration::from_secs(15), "sharing did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "sharing resumed {:?} after Redis came back ({attempt} attempts)",
        resumed.elapsed()
    );
    assert_eq!(b.get("/readyz").await.json()["redis"]["status"], "up");
}

/// The stale windows hold in Redis as in memory. Redis's expiry and a page's age there are
/// wall-clock time, so this one test waits for a TTL of one second to pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_nothing_in_memory_applies_the_stale_windows_to_what_redis_holds() {
    let Some(redis) = RedisServer::start("the_stale_windows_hold_in_redis").await else {
        return;
    };
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let env = [
        ("GATEWAY_CACHE_TTL_SECS", "1"),
        ("GATEWAY_STALE_WHILE_REVALIDATE_SECS", "30"),
        ("GATEWAY_BREAKER_FAILURES", "0"),
    ];
    let apps = replicas(&sandbox, &redis, 2, &env).await;
    let no_swr = [
        ("GATEWAY_CACHE_TTL_SECS", "1"),
        ("GATEWAY_STALE_WHILE_REVALIDATE_SECS", "0"),
        ("GATEWAY_UPSTREAM_RETRIES", "0"),
        ("GATEWAY_BREAKER_FAILURES", "0"),
    ];
    let strict = &replicas(&sandbox, &redis, 1, &no_swr).await[0];
    let query = "/users?provider=thoughtindustries&per_page=10";
    assert_eq!(apps[0].get(query).await.status, 200);
    let fetched_at = Instant::now();
    while fetched_at.elapsed() < Duration::from_millis(1100) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Stale within the stale-while-revalidate window: served at once, flagged, refreshed once.
    clear(&sandbox);
    let stale = apps[1].get(query).await;
    let body = stale.json();
    assert_eq!(body["meta"]["sources"][0]["stale"], true, "{body}");
    assert!(
        stale.header("cache-status").unwrap().contains("ttl=-"),
        "{:?}",
        stale.headers
    );
    assert_eq!(ids(&body), apps[1].expected_ids()[..10].to_vec());
    tokio::time::timeout(Duration::from_secs(5), sandbox.ti.control.wait_for_requests(1))
        .await
        .expect("the background refresh");

    // Stale-if-error: once the refreshed copy is stale too, a replica without the
    // stale-while-revalidate window and nothing in memory refetches; TI fails; Redis's
    // copy (within the stale-if-error window) stands in, said to be stale.
    let refreshed_at = Instant::now();
    while refreshed_at.elapsed() < Duration::from_millis(1200) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sandbox.ti.control.set_fault(users_gateway::sandbox::Fault::Status(500));
    clear(&sandbox);
    let reply = strict.get("/users?provider=thoughtindustries&per_page=10&page=2").await;
    let body = reply.json();
    let ti = &body["meta"]["sources"][0];
    assert_eq!((&ti["status"], &ti["stale"]), (&"ok".into(), &true.into()), "{body}");
    assert!(
        reply.header("cache-status").unwrap().contains("fwd=stale"),
        "{:?}",
        reply.headers
    );
    assert_eq!(ids(&body), apps[1].expected_ids()[10..20].to_vec());
    assert_eq!(sandbox.ti.control.requests().len(), 1, "it did try the upstream");
}

/// A lease outlives one lease length while its holder is busy: here the holder waits for
/// the source's budget longer than a lease lasts, and the other replica still waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_waiting_for_the_budget_keeps_its_lease_and_the_page_is_fetched_once() {
    let Some(redis) = RedisServer::start("a_holder_waiting_for_the_budget_keeps_its_lease").await else {
        return;
    };
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    // A lease of 300 ms; a slot every 800 ms.
    let env = [
        ("GATEWAY_UPSTREAM_TIMEOUT_MS", "300"),
        ("THOUGHTINDUSTRIES_MAX_RPS", "1.25"),
    ];
    let apps = replicas(&sandbox, &redis, 2, &env).await;
    let first = apps[0]
        .get("/users?provider=thoughtindustries&per_page=40&page=1")
        .await;
    assert!(all_ok(&first.json()), "{}", first.text);
    let query = "/users?provider=thoughtindustries&per_page=40&page=2";
    let replies = join_all(apps.iter().map(|app| app.get(query))).await;
    for reply in &replies {
        assert!(all_ok(&reply.json()), "{}", reply.text);
        assert_eq!(ids(&reply.json()), apps[0].expected_ids()[40..80].to_vec());
    }
    let ti = sandbox.ti.control.requests();
    assert_eq!(ti.len(), 2, "page 1, then page 2 once: {ti:?}");
}

//! Retries, the caller's deadline, the circuit breaker, stale-if-error, dead upstreams.
//!
//! All on tokio's paused clock (see `tick_paused_clock`): backoff, `Retry-After` and
//! deadlines are virtual, so no test waits on the wall clock.

use std::time::Duration;

use tokio::time::Instant;
use users_gateway::sandbox::{Fault, SandboxOptions};

use crate::helpers::{ids, spawn_with, spawn_with_sources, tick_paused_clock};

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_into_a_full_answer() {
    let _clock = tick_paused_clock();
    let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_UPSTREAM_RETRIES", "3")]).await;
    app.sandbox.tis.control.fail_next(1, Fault::Status(503));
    app.sandbox.tis.control.fail_next(1, Fault::ResetMidBody);
    app.sandbox
        .tis
        .control
        .fail_next(1, Fault::RateLimited { retry_after_secs: 0 });
    let body = app.get("/users?page=51&per_page=25").await.json();
    assert_eq!(body["meta"]["partial"], false, "{body}");
    assert_eq!(ids(&body), app.expected_ids()[1250..1275].to_vec());
    let (_, tis) = app.upstream_requests();
    assert_eq!(tis.len(), 4, "three failed attempts, then the answer: {tis:?}");
}

#[tokio::test(start_paused = true)]
async fn a_500_is_not_retried_and_retries_stop_at_the_budget() {
    let _clock = tick_paused_clock();
    let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_UPSTREAM_RETRIES", "2")]).await;
    app.sandbox.tis.control.fail_next(1, Fault::Status(500));
    let body = app.get("/users?provider=tapintosafety").await;
    assert_eq!(body.status, 502);
    assert_eq!(app.upstream_requests().1.len(), 1, "500 is not in the retry list");

    app.clear_upstream_requests();
    app.sandbox.tis.control.set_fault(Fault::Status(503));
    let body = app.get("/users?provider=tapintosafety").await.json();
    assert_eq!(body["sources"][0]["error"]["code"], "unavailable");
    assert_eq!(app.upstream_requests().1.len(), 3, "one attempt and two retries");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_but_never_past_the_deadline() {
    let _clock = tick_paused_clock();
    let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_REQUEST_DEADLINE_MS", "3000")]).await;
    app.sandbox
        .tis
        .control
        .fail_next(1, Fault::RateLimited { retry_after_secs: 1 });
    let started = Instant::now();
    let body = app.get("/users?provider=tapintosafety").await.json();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited as told");
    assert_eq!(body["meta"]["partial"], false);

    app.clear_upstream_requests();
    app.sandbox
        .tis
        .control
        .fail_next(1, Fault::RateLimited { retry_after_secs: 30 });
    let started = Instant::now();
    // Another pushed-down query, so no cached copy can stand in.
    let reply = app.get("/users?provider=tapintosafety&email=acme").await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a Retry-After past the deadline is not waited for: {:?}",
        started.elapsed()
    );
    assert_eq!(reply.json()["sources"][0]["error"]["code"], "rate_limited");
    assert_eq!(app.upstream_requests().1.len(), 1);

    // A refresh that fails keeps serving the cached copy, flagged. (A moment later: the cache
    // takes a page fetched at or after a request's start as fetched for it.)
    tokio::time::advance(Duration::from_millis(1)).await;
    app.sandbox
        .tis
        .control
        .fail_next(1, Fault::RateLimited { retry_after_secs: 30 });
    let reply = app
        .get_with("/users?provider=tapintosafety", &[("cache-control", "no-cache")])
        .await;
    assert_eq!(reply.header("cache-status"), Some("users-gateway; fwd=stale"));
    assert_eq!(reply.json()["meta"]["sources"][0]["stale"], true);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_bounds_a_hanging_upstream() {
    let _clock = tick_paused_clock();
    let app = spawn_with(
        SandboxOptions::default(),
        &[
            ("GATEWAY_UPSTREAM_TIMEOUT_MS", "5000"),
            ("GATEWAY_REQUEST_DEADLINE_MS", "300"),
        ],
    )
    .await;
    app.sandbox.tis.control.set_fault(Fault::Hang);
    let started = Instant::now();
    let body = app.get("/users?per_page=5").await.json();
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(300)..Duration::from_secs(1)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!(body["meta"]["partial"], true);
    assert_eq!(body["meta"]["sources"][1]["error"]["code"], "timeout");
    assert_eq!(
        body["meta"]["sources"][1]["error"]["message"],
        "request deadline reached"
    );
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_repeated_failures_and_stops_calling() {
    let _clock = tick_paused_clock();
    let app = spawn_with(
        SandboxOptions::default(),
        &[
            ("GATEWAY_UPSTREAM_RETRIES", "0"),
            ("GATEWAY_BREAKER_FAILURES", "2"),
            ("GATEWAY_BREAKER_COOL_DOWN_SECS", "60"),
        ],
    )
    .await;
    app.sandbox.tis.control.set_fault(Fault::Status(500));
    for _ in 0..2 {
        let body = app.get("/users?per_page=1").await.json();
        assert_eq!(body["meta"]["sources"][1]["error"]["code"], "unavailable");
    }
    let calls = app.upstream_requests().1.len();
    assert_eq!(calls, 2);
    let body = app.get("/users?per_page=1").await.json();
    let tis = &body["meta"]["sources"][1];
    assert_eq!(tis["circuit"], "open");
    assert!(
        tis["error"]["message"].as_str().unwrap().contains("circuit open"),
        "{tis}"
    );
    assert_eq!(app.upstream_requests().1.len(), calls, "an open circuit makes no call");
    assert_eq!(body["meta"]["sources"][0]["circuit"], "closed");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["sources"][1]["circuit"], "open");
}

#[tokio::test(start_paused = true)]
async fn a_stale_copy_stands_in_for_a_failing_upstream_and_says_so() {
    let _clock = tick_paused_clock();
    // TTL 0: every page is stale at once, but stays usable for the stale-if-error window;
    // no stale-while-revalidate window, so every request refetches.
    let app = spawn_with(
        SandboxOptions::default(),
        &[
            ("GATEWAY_CACHE_TTL_SECS", "0"),
            ("GATEWAY_STALE_WHILE_REVALIDATE_SECS", "0"),
            ("GATEWAY_UPSTREAM_RETRIES", "0"),
            ("GATEWAY_STALE_IF_ERROR_SECS", "300"),
        ],
    )
    .await;
    let fresh = app.get("/users?page=60&per_page=25").await;
    assert_eq!(fresh.header("cache-status"), Some("users-gateway; fwd=miss"));
    app.sandbox.tis.control.set_fault(Fault::Status(503));
    // A moment later: the cache takes a page fetched at or after a request's start as fresh for it.
    tokio::time::advance(Duration::from_millis(1)).await;
    let stale = app.get("/users?page=60&per_page=25").await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.header("cache-status"), Some("users-gateway; fwd=stale"));
    let body = stale.json();
    assert_eq!(body["meta"]["partial"], false, "stale is served, not an error");
    let tis = &body["meta"]["sources"][1];
    assert_eq!((&tis["status"], &tis["stale"]), (&"ok".into(), &true.into()), "{tis}");
    assert!(tis["age_secs"].is_u64());
    assert!(body["meta"]["sources"][0].get("stale").is_none(), "TI answered fresh");
    assert_eq!(ids(&body), ids(&fresh.json()));

    app.sandbox.tis.control.set_fault(Fault::Status(401));
    let body = app.get("/users?page=60&per_page=25").await.json();
    assert_eq!(
        body["meta"]["sources"][1]["error"]["code"], "unauthorized",
        "a refused key is never papered over"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dead_upstream_is_unavailable_not_a_hang() {
    let _clock = tick_paused_clock();
    // Bound but not listening: connections are refused, and no other test can take the port.
    let dead = tokio::net::TcpSocket::new_v4().unwrap();
    dead.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    let app = spawn_with_sources(SandboxOptions::default(), &[], |sources| {
        sources[1].base_url = dead_url.parse().unwrap();
    })
    .await;
    let body = app.get("/users?per_page=1").await.json();
    let tis = &body["meta"]["sources"][1];
    assert_eq!(tis["error"]["code"], "unavailable", "{tis}");
    assert_eq!(tis["error"]["message"], "cannot connect to upstream");
    assert_eq!(body["meta"]["partial"], true);
}

#[tokio::test(start_paused = true)]
async fn a_partial_answer_without_stale_data_does_not_say_stale() {
    let _clock = tick_paused_clock();
    // One TI page of 30, so `per_page=100` needs TIS pages 1 and 2 (of 50).
    let options = SandboxOptions {
        ti_users: 30,
        ..SandboxOptions::default()
    };
    let app = spawn_with(
        options,
        &[
            ("GATEWAY_CACHE_TTL_SECS", "0"),
            ("GATEWAY_STALE_WHILE_REVALIDATE_SECS", "0"),
            ("GATEWAY_UPSTREAM_RETRIES", "0"),
            ("GATEWAY_STALE_IF_ERROR_SECS", "300"),
        ],
    )
    .await;
    assert_eq!(app.get("/users?provider=tapintosafety&per_page=50").await.status, 200);
    app.sandbox.tis.control.set_fault(Fault::Status(503));
    tokio::time::advance(Duration::from_millis(1)).await;

    // TIS page 1 has a stale copy, page 2 has none: TIS fails, and its stale page is not shown.
    let reply = app.get("/users?per_page=100").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["meta"]["partial"], true);
    let tis = &body["meta"]["sources"][1];
    assert_eq!(
        (&tis["status"], &tis["error"]["code"]),
        (&"error".into(), &"unavailable".into()),
        "{tis}"
    );
    assert!(tis.get("stale").is_none(), "{tis}");
    assert_eq!(body["data"].as_array().unwrap().len(), 30, "only TI's users");
    assert_eq!(
        reply.header("cache-status"),
        Some("users-gateway; fwd=miss"),
        "nothing stale is in the body"
    );
}

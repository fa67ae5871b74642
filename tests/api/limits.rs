//! Protection toward callers: request size limits, load shedding, graceful shutdown.

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use users_gateway::sandbox::SandboxOptions;

use crate::helpers::{spawn_app, spawn_with_sources};

#[tokio::test]
async fn oversized_requests_get_problems() {
    let app = spawn_app().await;
    let long = app.get(&format!("/users?email={}", "a".repeat(9000))).await;
    assert_eq!(long.status, 414);
    assert_eq!(long.header("content-type"), Some("application/problem+json"));
    let big_header = "x".repeat(40 * 1024);
    let reply = app.get_with("/users", &[("x-padding", &big_header)]).await;
    assert_eq!(reply.status, 431);
    assert_eq!(reply.json()["status"], 431);
    let (ti, tis) = app.upstream_requests();
    assert!(ti.is_empty() && tis.is_empty());
}

/// A stand-in Thought Industries that holds the first request it gets: `arrived` fires once
/// its head is in, and dropping `release` (or sending on it) makes the gate hang up, after
/// which it refuses connections, so the source fails at once (`unavailable`).
struct Gate {
    url: url::Url,
    arrived: tokio::sync::oneshot::Receiver<()>,
    release: tokio::sync::oneshot::Sender<()>,
}

async fn gate() -> Gate {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        drop(listener);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let _ = arrived_tx.send(());
        let _ = released.await;
    });
    Gate { url, arrived, release }
}

/// A gateway whose Thought Industries is `gate` (no retries, so its hang-up fails it at once).
async fn spawn_gated(gate: &Gate, env: &[(&str, &str)]) -> crate::helpers::TestApp {
    let mut env = env.to_vec();
    env.push(("GATEWAY_UPSTREAM_RETRIES", "0"));
    let url = gate.url.clone();
    spawn_with_sources(SandboxOptions::default(), &env, move |sources| {
        sources[0].base_url = url
    })
    .await
}

#[tokio::test]
async fn past_the_concurrency_limit_callers_are_shed_at_once() {
    let gate = gate().await;
    let app = spawn_gated(&gate, &[("GATEWAY_MAX_CONCURRENT_REQUESTS", "1")]).await;
    let held = tokio::spawn({
        let url = format!("{}/users?per_page=1", app.base);
        async move { reqwest::get(url).await.map(|response| response.status().as_u16()) }
    });
    // The first request holds the one slot while its upstream call is held at the gate.
    gate.arrived.await.unwrap();
    let shed = app.get("/users?per_page=2").await;
    let health = app.get("/healthz").await;
    drop(gate.release);
    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(shed.json()["type"], "/problems/overloaded");
    assert_eq!(health.status, 200, "operations are never shed");
    assert_eq!(
        held.await.unwrap().unwrap(),
        200,
        "the held request is answered (TIS alone)"
    );
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops() {
    let gate = gate().await;
    let app = spawn_gated(&gate, &[]).await;
    let base = app.base.clone();
    let in_flight = tokio::spawn({
        let url = format!("{base}/users?per_page=3");
        async move {
            reqwest::get(url)
                .await
                .map(|response| response.json::<serde_json::Value>())
        }
    });
    gate.arrived.await.unwrap();
    app.begin_shutdown();
    let _ = gate.release.send(());
    let body = in_flight
        .await
        .unwrap()
        .expect("the request in flight is finished")
        .await
        .unwrap();
    assert_eq!(
        body["meta"]["partial"], true,
        "answered after the shutdown began: {body}"
    );
    app.shutdown().await;
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no longer accepting"
    );
}

//! Protection toward callers: request size limits, load shedding, graceful shutdown.

use std::time::Duration;

use users_gateway::sandbox::SandboxOptions;

use crate::helpers::{spawn_app, spawn_with};

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

#[tokio::test]
async fn past_the_concurrency_limit_callers_are_shed_at_once() {
    let options = SandboxOptions {
        latency: Duration::from_millis(300),
        ..SandboxOptions::default()
    };
    let app = spawn_with(options, &[("GATEWAY_MAX_CONCURRENT_REQUESTS", "1")]).await;
    let (slow, shed, health) = tokio::join!(
        app.get("/users?per_page=1"),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            app.get("/users?per_page=2").await
        },
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            app.get("/healthz").await
        }
    );
    assert_eq!(slow.status, 200);
    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(shed.json()["type"], "/problems/overloaded");
    assert_eq!(health.status, 200, "operations are never shed");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops() {
    let options = SandboxOptions {
        latency: Duration::from_millis(300),
        ..SandboxOptions::default()
    };
    let app = spawn_with(options, &[]).await;
    let base = app.base.clone();
    let client = reqwest::Client::new();
    let in_flight = tokio::spawn({
        let url = format!("{base}/users?per_page=3");
        let client = client.clone();
        async move { client.get(url).send().await.map(|response| response.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.begin_shutdown();
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the request in flight is finished"
    );
    app.shutdown().await;
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no longer accepting"
    );
}

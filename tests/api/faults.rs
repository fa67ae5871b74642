//! Upstream faults through the sandbox: truthful per-source status, partial pages, 502/504.

use users_gateway::sandbox::{Fault, SandboxOptions};

use crate::helpers::{ids, spawn_with, TestApp};

const TIMEOUT_MS: &str = "400";

/// Single attempts, no breaker, no stale copies: each fault shows as itself.
async fn app_with_short_timeout() -> TestApp {
    spawn_with(
        SandboxOptions::default(),
        &[
            ("GATEWAY_UPSTREAM_TIMEOUT_MS", TIMEOUT_MS),
            ("GATEWAY_UPSTREAM_MAX_BODY_BYTES", "1048576"),
            ("GATEWAY_UPSTREAM_RETRIES", "0"),
            ("GATEWAY_BREAKER_FAILURES", "0"),
            ("GATEWAY_STALE_IF_ERROR_SECS", "0"),
        ],
    )
    .await
}

#[tokio::test]
async fn one_failing_provider_gives_a_truthful_partial_page() {
    let app = app_with_short_timeout().await;
    let cases = [
        (Fault::Status(500), "unavailable"),
        (Fault::Status(503), "unavailable"),
        (Fault::Status(401), "unauthorized"),
        (Fault::Status(403), "unauthorized"),
        (Fault::Status(429), "rate_limited"),
        (Fault::RateLimited { retry_after_secs: 60 }, "rate_limited"),
        (Fault::Status(502), "unavailable"),
        (Fault::ResetMidBody, "unavailable"),
        (Fault::Trickle, "timeout"),
        (Fault::Status(404), "rejected"),
        (Fault::Malformed, "bad_response"),
        (Fault::WrongShape, "bad_response"),
        (Fault::Oversized(2 * 1024 * 1024), "bad_response"),
        (Fault::Redirect, "bad_response"),
        (Fault::Hang, "timeout"),
    ];
    let ti_only: Vec<String> = app.expected_ids().into_iter().take(1250).collect();
    for (fault, code) in cases {
        app.sandbox.tis.control.set_fault(fault.clone());
        // Page 50 at 25 a page is TI's last page (1225..1250): a full page either way.
        let reply = app
            .get_with("/users?page=50&per_page=25", &[("cache-control", "no-cache")])
            .await;
        assert_eq!(reply.status, 200, "{fault:?}: {}", reply.text);
        let body = reply.json();
        assert_eq!(body["meta"]["partial"], true, "{fault:?}");
        assert_eq!(body["meta"]["total"], 1250, "{fault:?}: only what answered counts");
        assert_eq!(reply.header("x-total-count"), Some("1250"));
        let tis = &body["meta"]["sources"][1];
        assert_eq!(tis["status"], "error", "{fault:?}");
        assert_eq!(tis["error"]["code"], code, "{fault:?}: {tis}");
        assert!(tis["total"].is_null());
        assert!(
            !tis["error"]["message"].as_str().unwrap().contains("injected fault"),
            "upstream bodies are never relayed"
        );
        assert_eq!(body["meta"]["sources"][0]["status"], "ok");
        assert_eq!(ids(&body), ti_only[1225..1250].to_vec(), "{fault:?}");
    }
    app.sandbox.tis.control.set_fault(Fault::None);
    let healed = app.get("/users?page=50&per_page=25").await.json();
    assert_eq!(healed["meta"]["partial"], false, "failures are not cached");
    assert_eq!(healed["meta"]["total"], 1980);
}

#[tokio::test]
async fn a_source_failing_after_page_one_is_dropped_and_the_page_laid_out_again() {
    let app = app_with_short_timeout().await;
    app.get("/users?per_page=25").await; // caches page 1 of both sources
    app.sandbox.ti.control.set_fault(Fault::Status(500));
    // Without TI, users 725..750 would be TIS 725..730 only.
    let body = app.get("/users?page=30&per_page=25").await.json();
    assert_eq!(body["meta"]["sources"][0]["status"], "error");
    assert_eq!(body["meta"]["total"], 730);
    let expected: Vec<String> = app.expected_ids()[1250 + 725..].to_vec();
    assert_eq!(ids(&body), expected);
    assert_eq!(body["meta"]["has_more"], false);
}

#[tokio::test]
async fn all_failing_is_a_502_problem_and_all_timing_out_a_504() {
    let app = app_with_short_timeout().await;
    app.sandbox.ti.control.set_fault(Fault::Status(500));
    app.sandbox.tis.control.set_fault(Fault::Status(401));
    let reply = app.get("/users").await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    let problem = reply.json();
    assert_eq!(problem["status"], 502);
    let codes: Vec<&str> = problem["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["error"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["unavailable", "unauthorized"]);

    app.sandbox.ti.control.set_fault(Fault::Hang);
    app.sandbox.tis.control.set_fault(Fault::Hang);
    let started = std::time::Instant::now();
    let reply = app.get("/users").await;
    assert_eq!(reply.status, 504, "{}", reply.text);
    assert_eq!(reply.json()["sources"][0]["error"]["code"], "timeout");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the per-attempt timeout bounds the wait"
    );

    app.sandbox.ti.control.set_fault(Fault::Status(500));
    let reply = app
        .get(&format!(
            "/users/thoughtindustries:{}",
            app.sandbox.ti.records[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(reply.status, 502, "a lookup whose source fails");
    assert_eq!(reply.json()["sources"][0]["error"]["code"], "unavailable");
}

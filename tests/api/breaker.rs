//! The circuit breaker and retries through the real gateway over the sandbox, on tokio's
//! paused clock: a probe whose caller hangs up, the gateway's own limits (permits, the
//! caller's deadline) that must not count against an upstream, and `Retry-After` values
//! too large for the clock.

use std::sync::atomic::Ordering;
use std::time::Duration;

use users_gateway::sandbox::{Fault, SandboxOptions};

use crate::helpers::{fixed_upstream, spawn_with, spawn_with_sources, tick_paused_clock, wait_until, Reply, TestApp};

const TIS_ONLY: &str = "/users?provider=tapintosafety&per_page=5";

/// One failed fetch opens the circuit for 5 s; nothing but the test ends a hanging call.
const TRIGGER_HAPPY: &[(&str, &str)] = &[
    ("GATEWAY_UPSTREAM_RETRIES", "0"),
    ("GATEWAY_BREAKER_FAILURES", "1"),
    ("GATEWAY_BREAKER_COOL_DOWN_SECS", "5"),
    ("GATEWAY_UPSTREAM_TIMEOUT_MS", "20000"),
    ("GATEWAY_REQUEST_DEADLINE_MS", "20000"),
];

async fn tis_circuit(app: &TestApp) -> String {
    let ready = app.get("/readyz").await.json();
    assert_eq!(ready["sources"][1]["source"], "tapintosafety", "{ready}");
    ready["sources"][1]["circuit"].as_str().unwrap().to_owned()
}

/// TIS's entry in `meta.sources`, or in `sources` of the problem when it was the only one.
fn tis_report(reply: &Reply) -> serde_json::Value {
    let body = reply.json();
    let sources = if reply.status == 200 {
        &body["meta"]["sources"]
    } else {
        &body["sources"]
    };
    let tis = sources
        .as_array()
        .and_then(|sources| sources.iter().find(|source| source["source"] == "tapintosafety"))
        .unwrap_or_else(|| panic!("no tapintosafety report: {body}"));
    tis.clone()
}

/// Refused by TIS's circuit, without a call.
fn refused_by_the_circuit(reply: &Reply) -> bool {
    reply.status != 200
        && tis_report(reply)["error"]["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("circuit open"))
}

async fn open_the_circuit(app: &TestApp) {
    app.sandbox.tis.control.set_fault(Fault::Status(502));
    let reply = app.get(TIS_ONLY).await;
    assert_eq!(tis_report(&reply)["error"]["code"], "unavailable");
    assert_eq!(tis_circuit(app).await, "open");
}

#[tokio::test(start_paused = true)]
async fn a_probe_whose_caller_hangs_up_does_not_wedge_the_circuit() {
    let _clock = tick_paused_clock();
    let app = spawn_with(SandboxOptions::default(), TRIGGER_HAPPY).await;
    let tis = &app.sandbox.tis.control;
    open_the_circuit(&app).await;

    tis.set_fault(Fault::Hang);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(tis_circuit(&app).await, "half_open");
    let calls = tis.requests().len();
    let probe = tokio::spawn({
        let (http, url) = (app.http.clone(), format!("{}{TIS_ONLY}", app.base));
        async move { http.get(url).send().await }
    });
    wait_until("the probe to reach the upstream", Duration::from_secs(1), || {
        tis.requests().len() > calls
    })
    .await;
    // Another query: the same one would wait for the probe's page instead.
    let other = app.get(&format!("{TIS_ONLY}&email=other")).await;
    assert!(refused_by_the_circuit(&other), "one probe at a time: {}", other.text);
    assert_eq!(tis.requests().len(), calls + 1);

    // The caller hangs up while the upstream hangs: the gateway drops the probe unreported.
    probe.abort();
    assert!(probe.await.unwrap_err().is_cancelled());
    tis.set_fault(Fault::None);
    // The gateway notices the hang-up within a few polls; until then it still refuses.
    let mut reply = app.get(TIS_ONLY).await;
    for _ in 0..100 {
        if !refused_by_the_circuit(&reply) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        reply = app.get(TIS_ONLY).await;
    }
    assert_eq!(reply.status, 200, "{}", reply.text);
    let report = tis_report(&reply);
    assert_eq!(
        (&report["status"], &report["circuit"]),
        (&"ok".into(), &"closed".into()),
        "{report}"
    );
    assert_eq!(tis_circuit(&app).await, "closed");
}

#[tokio::test(start_paused = true)]
async fn a_probe_cut_by_the_callers_deadline_is_no_verdict() {
    let _clock = tick_paused_clock();
    let mut env = TRIGGER_HAPPY.to_vec();
    env.push(("GATEWAY_REQUEST_DEADLINE_MS", "2000"));
    let app = spawn_with(SandboxOptions::default(), &env).await;
    open_the_circuit(&app).await;

    app.sandbox.tis.control.set_fault(Fault::Hang);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reply = app.get(TIS_ONLY).await;
    assert_eq!(tis_report(&reply)["error"]["message"], "request deadline reached");
    assert_eq!(
        tis_circuit(&app).await,
        "half_open",
        "the next call is a probe: no fresh cool-down"
    );

    app.sandbox.tis.control.set_fault(Fault::None);
    let reply = app.get(TIS_ONLY).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(tis_report(&reply)["circuit"], "closed");
}

#[tokio::test(start_paused = true)]
async fn permit_waits_and_the_deadline_leave_the_circuit_closed() {
    let _clock = tick_paused_clock();
    let app = spawn_with(
        SandboxOptions::default(),
        &[
            ("GATEWAY_UPSTREAM_CONCURRENCY", "1"),
            ("GATEWAY_UPSTREAM_RETRIES", "0"),
            ("GATEWAY_BREAKER_FAILURES", "1"),
            ("GATEWAY_UPSTREAM_TIMEOUT_MS", "20000"),
            ("GATEWAY_REQUEST_DEADLINE_MS", "1000"),
        ],
    )
    .await;
    app.sandbox.tis.control.set_latency(Duration::from_secs(10));
    // Three queries TIS filters itself, so three fetches contend for the one permit: the
    // first is cut by the deadline in flight, the others by it while waiting for a permit.
    let paths = ["alpha", "bravo", "charlie"].map(|email| format!("{TIS_ONLY}&email={email}"));
    let replies = futures_util::future::join_all(paths.iter().map(|path| app.get(path))).await;
    for reply in &replies {
        let report = tis_report(reply);
        assert_eq!(report["error"]["message"], "request deadline reached", "{report}");
        assert_eq!(report["circuit"], "closed", "{report}");
    }
    assert_eq!(app.sandbox.tis.control.requests().len(), 1, "one permit, one call");
    assert_eq!(tis_circuit(&app).await, "closed");

    app.sandbox.tis.control.set_latency(Duration::ZERO);
    let reply = app.get(TIS_ONLY).await;
    assert_eq!(
        (reply.status, tis_report(&reply)["circuit"].clone()),
        (200, "closed".into())
    );
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timing_out_on_its_own_opens_the_circuit() {
    let _clock = tick_paused_clock();
    let app = spawn_with(
        SandboxOptions::default(),
        &[
            ("GATEWAY_UPSTREAM_RETRIES", "0"),
            ("GATEWAY_BREAKER_FAILURES", "1"),
            ("GATEWAY_UPSTREAM_TIMEOUT_MS", "500"),
            ("GATEWAY_REQUEST_DEADLINE_MS", "20000"),
        ],
    )
    .await;
    app.sandbox.tis.control.set_latency(Duration::from_secs(10));
    let reply = app.get(TIS_ONLY).await;
    assert_eq!(tis_report(&reply)["error"]["message"], "no answer within 500 ms");
    assert_eq!(tis_circuit(&app).await, "open", "the upstream itself was too slow");
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_too_large_for_the_clock_is_a_rate_limited_source_not_a_panic() {
    let _clock = tick_paused_clock();
    for retry_after in [
        "10000000000000000000",
        "99999999999999999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let (url, answered) = fixed_upstream(format!(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: {retry_after}\r\ncontent-length: 0\r\n\r\n"
        ))
        .await;
        let app = spawn_with_sources(
            SandboxOptions::default(),
            &[("GATEWAY_UPSTREAM_RETRIES", "3")],
            |sources| sources[1].base_url = url,
        )
        .await;
        let reply = app.get("/users?per_page=5").await;
        assert_eq!(reply.status, 200, "Retry-After: {retry_after}: {}", reply.text);
        let body = reply.json();
        assert_eq!(body["meta"]["partial"], true);
        assert_eq!(body["meta"]["sources"][0]["status"], "ok", "TI's answer is kept");
        assert_eq!(body["meta"]["sources"][1]["error"]["code"], "rate_limited");
        assert_eq!(
            answered.load(Ordering::SeqCst),
            1,
            "a wait past the deadline is not retried"
        );
    }
}

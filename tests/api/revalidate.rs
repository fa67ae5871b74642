//! Stale-while-revalidate (SPEC §7, RFC 5861): a page that went stale less than
//! `GATEWAY_STALE_WHILE_REVALIDATE_SECS` ago is answered at once, flagged, and refreshed by
//! one background fetch however many callers ask.
//!
//! On tokio's paused clock (see `tick_paused_clock`): pages age by `tokio::time::advance`,
//! and an upstream's injected latency shows whether an answer waited for it. Expected users
//! come from the sandbox's records, ages and `ttl=-N` from the time the test advanced.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use users_gateway::sandbox::{Fault, SandboxOptions};

use crate::helpers::{ids, spawn_with, tick_paused_clock, Reply, TestApp};

const TTL: &str = "60";
const SWR: &str = "30";
/// The sandbox's answers to the background refresh take this long.
const LATENCY: Duration = Duration::from_secs(2);

async fn spawn(extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("GATEWAY_CACHE_TTL_SECS", TTL),
        ("GATEWAY_STALE_WHILE_REVALIDATE_SECS", SWR),
        ("GATEWAY_UPSTREAM_RETRIES", "0"),
        // Pages age by minutes here: keep the client's idle keep-alive connections open
        // across `advance` (the default 30 s would close them under it).
        ("GATEWAY_HEADER_READ_TIMEOUT_MS", "600000"),
    ];
    env.extend_from_slice(extra);
    spawn_with(SandboxOptions::default(), &env).await
}

/// TIS's first 25 users, as the sandbox holds them.
fn first_tis_page(app: &TestApp) -> Vec<String> {
    app.expected_ids()[1250..1275].to_vec()
}

fn cache_status(reply: &Reply) -> &str {
    reply.header("cache-status").unwrap()
}

/// `meta.sources[idx]` of a list answer.
fn source(body: &Value, idx: usize) -> &Value {
    &body["meta"]["sources"][idx]
}

/// Waits (on the ticking clock) until the plan for `query` shows `fresh` cached pages and
/// none stale: the background refreshes have landed (a page that merely aged past the
/// window would leave the count short).
async fn wait_until_refreshed(app: &TestApp, query: &str, fresh: u64) {
    let mut last = Value::Null;
    let refreshed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            last = app.get(&format!("/users/plan?{query}")).await.json();
            let pages = last["sources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|source| &source["pages"]);
            let (cached, stale) = pages.fold((0, 0), |(cached, stale), pages| {
                (
                    cached + pages["cached"].as_u64().unwrap(),
                    stale + pages["stale"].as_u64().unwrap(),
                )
            });
            if (cached, stale) == (fresh, 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(refreshed.is_ok(), "the background refresh never landed: {last}");
}

#[tokio::test(start_paused = true)]
async fn a_stale_page_is_answered_at_once_and_refreshed_once_for_many_callers() {
    let _clock = tick_paused_clock();
    let app = spawn(&[]).await;
    let query = "provider=tapintosafety&per_page=25";
    let first = app.get(&format!("/users?{query}")).await;
    assert_eq!(cache_status(&first), "users-gateway; fwd=miss");
    tokio::time::advance(Duration::from_secs(70)).await;
    app.clear_upstream_requests();
    app.sandbox.tis.control.set_latency(LATENCY);

    let started = Instant::now();
    let path = format!("/users?{query}");
    let replies = futures_util::future::join_all((0..16).map(|_| app.get(&path))).await;
    let waited = started.elapsed();
    assert!(waited < LATENCY / 4, "the answers waited for the upstream: {waited:?}");
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(
            cache_status(reply),
            "users-gateway; hit; ttl=-10",
            "70 s old, 60 s fresh"
        );
        let body = reply.json();
        assert_eq!(ids(&body), first_tis_page(&app), "the cached users");
        let tis = source(&body, 0);
        assert_eq!((&tis["status"], &tis["stale"]), (&"ok".into(), &true.into()), "{tis}");
        assert_eq!(tis["age_secs"], 70, "{tis}");
    }
    app.sandbox.tis.control.wait_for_requests(1).await;
    let plan = app.get(&format!("/users/plan?{query}")).await.json();
    let pages = &plan["sources"][0]["pages"];
    assert_eq!((&pages["cached"], &pages["stale"]), (&1.into(), &1.into()), "{pages}");
    assert_eq!(
        plan["upstream_calls"], 0,
        "a stale page within the window needs no waiting call"
    );
    let during = app.get(&format!("/users?{query}")).await;
    assert_eq!(
        source(&during.json(), 0)["stale"],
        true,
        "still stale while the refresh runs"
    );

    wait_until_refreshed(&app, query, 1).await;
    let (ti, tis) = app.upstream_requests();
    assert_eq!(tis, ["/api/v2/users?page=1"], "one refresh for seventeen callers");
    assert!(ti.is_empty(), "{ti:?}");
    let after = app.get(&format!("/users?{query}")).await;
    assert_eq!(cache_status(&after), "users-gateway; hit");
    let body = after.json();
    assert!(source(&body, 0).get("stale").is_none(), "{body}");
    assert!(source(&body, 0).get("age_secs").is_none(), "{body}");
    assert_eq!(ids(&body), first_tis_page(&app));
    assert_eq!(app.upstream_requests().1.len(), 1, "the refreshed page is fresh");
}

#[tokio::test(start_paused = true)]
async fn no_cache_or_a_zero_window_wait_for_the_refetch() {
    let _clock = tick_paused_clock();
    for (window, header) in [("0", None), (SWR, Some(("cache-control", "no-cache")))] {
        let app = spawn(&[("GATEWAY_STALE_WHILE_REVALIDATE_SECS", window)]).await;
        let query = "/users?provider=tapintosafety&per_page=25";
        app.get(query).await;
        tokio::time::advance(Duration::from_secs(70)).await;
        app.clear_upstream_requests();
        app.sandbox.tis.control.set_latency(LATENCY);
        let started = Instant::now();
        let reply = app.get_with(query, header.as_slice()).await;
        let case = format!("window {window} s, {header:?}");
        assert!(started.elapsed() >= LATENCY, "{case}: answered before the refetch");
        assert_eq!(cache_status(&reply), "users-gateway; fwd=miss", "{case}");
        let body = reply.json();
        assert!(source(&body, 0).get("stale").is_none(), "{case}: {body}");
        assert_eq!(ids(&body), first_tis_page(&app), "{case}");
        assert_eq!(app.upstream_requests().1.len(), 1, "{case}");
    }
}

#[tokio::test(start_paused = true)]
async fn past_the_window_a_request_waits_for_the_fetch_or_falls_back_to_stale_if_error() {
    let _clock = tick_paused_clock();
    let app = spawn(&[("GATEWAY_STALE_IF_ERROR_SECS", "300")]).await;
    let query = "/users?provider=tapintosafety&per_page=25";
    app.get(query).await;
    // 100 s old: 40 s past freshness, past the 30 s window.
    tokio::time::advance(Duration::from_secs(100)).await;
    app.clear_upstream_requests();
    app.sandbox.tis.control.set_latency(LATENCY);
    let started = Instant::now();
    let reply = app.get(query).await;
    assert!(started.elapsed() >= LATENCY, "answered before the refetch");
    assert_eq!(cache_status(&reply), "users-gateway; fwd=miss");
    assert!(source(&reply.json(), 0).get("stale").is_none());
    assert_eq!(app.upstream_requests().1.len(), 1);

    app.sandbox.tis.control.set_latency(Duration::ZERO);
    tokio::time::advance(Duration::from_secs(100)).await;
    app.sandbox.tis.control.set_fault(Fault::Status(503));
    let reply = app.get(query).await;
    assert_eq!(
        cache_status(&reply),
        "users-gateway; fwd=stale",
        "stale-if-error, as before"
    );
    let body = reply.json();
    let tis = source(&body, 0);
    assert_eq!(
        (&tis["status"], &tis["stale"], &tis["age_secs"]),
        (&"ok".into(), &true.into(), &100.into()),
        "{tis}"
    );
    assert_eq!(ids(&body), first_tis_page(&app));
}

/// Answers `query` until TIS has received `count` requests, checking that every answer is
/// the stale copy, whole; returns the last.
async fn stale_answers_until(app: &TestApp, query: &str, count: usize) -> Value {
    let mut last = Value::Null;
    let reached = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let reply = app.get(query).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            assert!(
                cache_status(&reply).starts_with("users-gateway; hit; ttl=-"),
                "{:?}",
                reply.headers
            );
            last = reply.json();
            assert_eq!(source(&last, 0)["stale"], true, "{last}");
            assert_eq!(ids(&last), first_tis_page(app));
            if app.upstream_requests().1.len() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "TIS never received {count} refreshes");
    last
}

#[tokio::test(start_paused = true)]
async fn failing_refreshes_keep_answering_and_open_the_breaker_only_for_upstream_failures() {
    let _clock = tick_paused_clock();
    let query = "/users?provider=tapintosafety&per_page=25";

    // The upstream fails each refresh itself: those count, and two open the circuit.
    let app = spawn(&[
        ("GATEWAY_BREAKER_FAILURES", "2"),
        ("GATEWAY_BREAKER_COOL_DOWN_SECS", "600"),
    ])
    .await;
    app.get(query).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    app.clear_upstream_requests();
    app.sandbox.tis.control.set_fault(Fault::Status(500));
    stale_answers_until(&app, query, 2).await;
    let opened = tokio::time::timeout(Duration::from_secs(5), async {
        while app.get("/readyz").await.json()["sources"][1]["circuit"] != "open" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(opened.is_ok(), "two failed refreshes did not open the circuit");
    let body = app.get(query).await.json();
    let tis = source(&body, 0);
    assert_eq!(
        (&tis["status"], &tis["stale"], &tis["circuit"]),
        (&"ok".into(), &true.into(), &"open".into()),
        "{tis}"
    );
    assert_eq!(ids(&body), first_tis_page(&app), "the stale copy still answers");
    assert_eq!(app.upstream_requests().1.len(), 2, "an open circuit makes no call");

    // The refresh's own deadline cuts a hanging upstream: the gateway's limit, no verdict.
    let app = spawn(&[
        ("GATEWAY_BREAKER_FAILURES", "1"),
        ("GATEWAY_UPSTREAM_TIMEOUT_MS", "5000"),
        ("GATEWAY_REQUEST_DEADLINE_MS", "300"),
    ])
    .await;
    app.get(query).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    app.clear_upstream_requests();
    app.sandbox.tis.control.set_fault(Fault::Hang);
    let last = stale_answers_until(&app, query, 3).await;
    assert_eq!(source(&last, 0)["circuit"], "closed", "{last}");
    assert_eq!(app.get("/readyz").await.json()["sources"][1]["circuit"], "closed");
}

#[tokio::test(start_paused = true)]
async fn a_background_refresh_outlives_the_caller_that_started_it() {
    let _clock = tick_paused_clock();
    let app = spawn(&[]).await;
    app.get("/users?provider=thoughtindustries&per_page=25").await;
    tokio::time::advance(Duration::from_secs(70)).await;
    app.clear_upstream_requests();
    app.sandbox.ti.control.set_latency(LATENCY);
    app.sandbox.tis.control.set_fault(Fault::Hang);

    // TI page 1 is stale (refreshed in the background), TIS page 1 is cold and hangs: the
    // caller waits for TIS, and hangs up while TI's refresh is still under way.
    let caller = {
        let (http, url) = (app.http.clone(), format!("{}/users?per_page=25", app.base));
        tokio::spawn(async move { http.get(url).send().await })
    };
    app.sandbox.ti.control.wait_for_requests(1).await;
    app.sandbox.tis.control.wait_for_requests(1).await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());

    wait_until_refreshed(&app, "provider=thoughtindustries&per_page=25", 1).await;
    let reply = app.get("/users?provider=thoughtindustries&per_page=25").await;
    assert_eq!(
        cache_status(&reply),
        "users-gateway; hit",
        "the refresh landed after the hang-up"
    );
    let body = reply.json();
    assert!(source(&body, 0).get("stale").is_none(), "{body}");
    assert_eq!(ids(&body), app.expected_ids()[..25].to_vec());
    assert_eq!(app.upstream_requests().0, ["/incoming/v2/users?page=1"]);
}

#[tokio::test(start_paused = true)]
async fn a_user_and_a_partly_stale_page_say_how_stale_they_are() {
    let _clock = tick_paused_clock();
    let app = spawn(&[]).await;
    // TI has no id filter: a user is looked for in TI's pages, page 1 first, then (its page
    // count known) a batch of 8 at a time: the second lookup caches pages 1 to 8.
    let first_ti = app.expected_ids()[0].clone();
    let user = format!("/users/{first_ti}");
    for _ in 0..2 {
        assert_eq!(cache_status(&app.get(&user).await), "users-gateway; fwd=miss");
    }
    assert_eq!(cache_status(&app.get(&user).await), "users-gateway; hit");
    app.get("/users?provider=tapintosafety&per_page=25").await;
    tokio::time::advance(Duration::from_secs(75)).await;
    app.clear_upstream_requests();

    let reply = app.get(&user).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        cache_status(&reply),
        "users-gateway; hit; ttl=-15",
        "75 s old, 60 s fresh"
    );
    let (found, record) = (reply.json(), &app.sandbox.ti.records[0]);
    assert_eq!(
        (&found["id"], &found["email"]),
        (&first_ti.as_str().into(), &record["email"]),
        "the user, from the stale page"
    );

    // Users 30..60 of TIS lie on its page 1 (stale) and page 2 (never read).
    let reply = app.get("/users?provider=tapintosafety&per_page=30&page=2").await;
    assert_eq!(
        cache_status(&reply),
        "users-gateway; fwd=miss; ttl=-15",
        "a page was fetched, another served stale"
    );
    let body = reply.json();
    assert_eq!(ids(&body), app.expected_ids()[1280..1310].to_vec());
    let tis = source(&body, 0);
    assert_eq!((&tis["stale"], &tis["age_secs"]), (&true.into(), &75.into()), "{tis}");

    // A full read's plan covers every TI page: none of those cached is stale any more.
    wait_until_refreshed(&app, "provider=thoughtindustries&sort=email", 8).await;
    wait_until_refreshed(&app, "provider=tapintosafety&per_page=25", 1).await;
    let (mut ti, mut tis) = app.upstream_requests();
    let mut ti_pages: Vec<String> = (1..=8).map(|page| format!("/incoming/v2/users?page={page}")).collect();
    ti.sort();
    tis.sort();
    ti_pages.sort();
    assert_eq!(ti, ti_pages, "each stale TI page refreshed once, in the background");
    assert_eq!(tis, ["/api/v2/users?page=1", "/api/v2/users?page=2"]);
    assert_eq!(cache_status(&app.get(&user).await), "users-gateway; hit");
}

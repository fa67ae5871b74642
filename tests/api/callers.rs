//! `fields` (SPEC §3/§4) and `GET /users/export` (SPEC §12). Expected users come from the
//! sandbox's records through the naive reference in `helpers`, never from the gateway.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt;
use serde_json::Value;
use tower::ServiceExt;
use users_gateway::sandbox::{DataFault, Fault, SandboxOptions};

use crate::helpers::{
    app_router, assert_same_user, email_has, expected_users, ids, reference, sort_param, spawn_app, spawn_with,
    tick_paused_clock, TestApp,
};

/// The keys of one JSON object, sorted (`serde_json::Value` does not keep their order; the
/// order on the wire is checked on the text, in `fields_work_with_include_raw_and_on_one_user`).
fn keys(user: &Value) -> Vec<&str> {
    user.as_object().unwrap().keys().map(String::as_str).collect()
}

fn sorted(mut names: Vec<&str>) -> Vec<&str> {
    names.sort_unstable();
    names
}

/// NDJSON → the users and the final `meta`; every line must parse, and only the last may be
/// `meta`.
fn export_lines(text: &str) -> (Vec<Value>, Value) {
    assert!(
        text.ends_with('\n'),
        "an export ends with a newline: {:?}",
        &text[text.len().saturating_sub(200)..]
    );
    let mut lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    let end = lines.pop().expect("at least the meta line");
    let meta = end
        .get("meta")
        .cloned()
        .unwrap_or_else(|| panic!("the last line is not meta: {end}"));
    assert_eq!(keys(&end), ["meta"]);
    assert!(
        lines.iter().all(|user| user.get("meta").is_none()),
        "meta before the end"
    );
    (lines, meta)
}

async fn export(app: &TestApp, query: &str) -> (Vec<Value>, Value) {
    let reply = app.get(&format!("/users/export{query}")).await;
    assert_eq!(reply.status, 200, "{query}: {}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    export_lines(&reply.text)
}

fn line_ids(users: &[Value]) -> Vec<&str> {
    users.iter().map(|user| user["id"].as_str().unwrap()).collect()
}

fn source_statuses(meta: &Value) -> Vec<(String, String)> {
    meta["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["source"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn fields_show_id_and_the_named_fields_each_as_its_record_says() {
    let app = spawn_app().await;
    let users = expected_users(&app.sandbox);
    // Page 13 of 100 straddles the two sources (TI has 1,250 users).
    for page in [1, 13] {
        let path = format!("/users?per_page=100&page={page}&fields=last_name,email,created_at,email");
        let reply = app.get(&path).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let body = reply.json();
        let want = &users[(page - 1) * 100..page * 100];
        assert_eq!(ids(&body), line_ids(want), "{path}");
        for (got, want) in body["data"].as_array().unwrap().iter().zip(want) {
            // SPEC §4's order, `id` first, each present even when null (TIS has no created_at).
            assert_eq!(
                keys(got),
                sorted(vec!["id", "email", "last_name", "created_at"]),
                "{got}"
            );
            assert_same_user(
                got,
                &subset(want, &["id", "email", "last_name", "created_at"]),
                false,
                &path,
            );
        }
        assert!(body["meta"]["sources"].is_array(), "meta is untouched by fields");
    }
}

/// `want` with only `fields`.
fn subset(want: &Value, fields: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for field in fields {
        out.insert((*field).to_owned(), want[*field].clone());
    }
    Value::Object(out)
}

#[tokio::test]
async fn fields_work_with_include_raw_and_on_one_user() {
    let app = spawn_app().await;
    let users = expected_users(&app.sandbox);
    let body = app
        .get("/users?per_page=3&fields=display_name&include=raw")
        .await
        .json();
    for (got, want) in body["data"].as_array().unwrap().iter().zip(&users) {
        assert_eq!(keys(got), sorted(vec!["id", "display_name", "raw"]));
        assert_same_user(got, &subset(want, &["id", "display_name", "raw"]), true, "list");
    }
    let one = &users[1500];
    let id = one["id"].as_str().unwrap();
    let reply = app.get(&format!("/users/{id}?fields=role,active&include=raw")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let got = reply.json();
    assert_eq!(keys(&got), sorted(vec!["id", "role", "active", "raw"]));
    let at = |key: &str| reply.text.find(&format!("\"{key}\":")).unwrap();
    assert!(reply.text.starts_with(r#"{"id":"#), "{}", reply.text);
    assert!(
        at("role") < at("active") && at("active") < at("raw"),
        "SPEC §4's order, raw last: {}",
        reply.text
    );
    assert_same_user(&got, &subset(one, &["id", "role", "active", "raw"]), true, id);
    let only_id = app.get(&format!("/users/{id}?fields=id")).await.json();
    assert_eq!(keys(&only_id), ["id"]);
}

#[tokio::test]
async fn unknown_fields_are_a_400_naming_each_and_call_no_upstream() {
    let app = spawn_app().await;
    let one = app.expected_ids()[0].clone();
    for path in [
        "/users?fields=email,nope,raw".to_owned(),
        format!("/users/{one}?fields=email,nope,raw"),
        "/users/export?fields=email,nope,raw".to_owned(),
        "/users/plan?fields=email,nope,raw".to_owned(),
    ] {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text);
        assert_eq!(reply.header("content-type"), Some("application/problem+json"));
        let problem = reply.json();
        let bad = &problem["invalid_params"][0];
        assert_eq!(bad["name"], "fields", "{path}: {problem}");
        let reason = bad["reason"].as_str().unwrap();
        assert!(reason.contains(r#""nope""#) && reason.contains(r#""raw""#), "{reason}");
        assert!(
            !reason.contains(r#""email""#),
            "a known field is not reported: {reason}"
        );
    }
    assert_eq!(
        app.upstream_requests(),
        (vec![], vec![]),
        "bad input reached an upstream"
    );
}

#[tokio::test]
async fn fields_get_their_own_etag_and_links_keep_them() {
    let app = spawn_app().await;
    let full = app.get("/users?per_page=5").await;
    let some = app.get("/users?per_page=5&fields=email").await;
    let (full_tag, some_tag) = (full.header("etag").unwrap(), some.header("etag").unwrap());
    assert_ne!(full_tag, some_tag);
    let again = app
        .get_with("/users?per_page=5&fields=email", &[("if-none-match", some_tag)])
        .await;
    assert_eq!(again.status, 304);
    let other = app
        .get_with("/users?per_page=5&fields=email", &[("if-none-match", full_tag)])
        .await;
    assert_eq!(other.status, 200, "the full body's tag does not validate the subset");
    let body = some.json();
    let next = body["links"]["next"].as_str().unwrap();
    assert!(next.contains("fields=email"), "{next}");
    assert!(some.header("link").unwrap().contains("fields=email"));
    let next_page = app.get(next).await.json();
    assert_eq!(keys(&next_page["data"][0]), sorted(vec!["id", "email"]));
}

#[tokio::test]
async fn an_export_streams_every_user_in_the_walk_order_then_meta() {
    let app = spawn_app().await;
    let (users, meta) = export(&app, "").await;
    let want = expected_users(&app.sandbox);
    assert_eq!(line_ids(&users), line_ids(&want));
    for (got, want) in users.iter().zip(&want) {
        assert_same_user(got, want, false, "export");
    }
    assert_eq!(meta["complete"], true, "{meta}");
    assert_eq!(meta["total"], 1980);
    assert_eq!(meta["sources"][0]["total"], 1250);
    assert_eq!(meta["sources"][1]["total"], 730);

    // Sorted and filtered (a gateway-only filter on TI), with fields: the reference order.
    let sort = [("last_name", true), ("email", false)];
    let (users, meta) = export(
        &app,
        &format!("?email=e&sort={}&fields=email,last_name", sort_param(&sort)),
    )
    .await;
    let want = reference(&want, email_has("e"), &sort);
    assert!(want.len() > 1000, "the filter keeps most users: {}", want.len());
    assert_eq!(line_ids(&users), line_ids(&want));
    for (got, want) in users.iter().zip(&want) {
        assert_eq!(keys(got), sorted(vec!["id", "email", "last_name"]));
        assert_same_user(
            got,
            &subset(want, &["id", "email", "last_name"]),
            false,
            "sorted export",
        );
    }
    assert_eq!(
        (meta["complete"].clone(), meta["total"].clone()),
        (Value::Bool(true), want.len().into())
    );

    // A source whose users cannot match is skipped, and the export is still complete.
    let (users, meta) = export(&app, "?employee_id=EMP&provider=thoughtindustries").await;
    assert!(users.is_empty());
    assert_eq!(meta["complete"], true, "{meta}");
    assert_eq!(
        source_statuses(&meta),
        [("thoughtindustries".to_owned(), "skipped".to_owned())]
    );
}

#[tokio::test]
async fn a_source_failing_at_once_or_mid_walk_leaves_the_others_whole_and_the_export_incomplete() {
    let all = expected_users(&spawn_app().await.sandbox);
    let ti: Vec<Value> = all
        .iter()
        .filter(|u| u["source"] == "thoughtindustries")
        .cloned()
        .collect();
    let sort = [("first_name", false)];
    let ti_sorted = reference(&ti, |_| true, &sort);
    let cases = [
        (Fault::Status(500), "", &ti, "unavailable"),
        // TIS page 1 is read with the first chunk; its page 2, with no id on its first
        // record, only when the walk reaches TIS: TIS fails mid-walk.
        (
            Fault::Data(DataFault::MissingId { absent: true }),
            "",
            &ti,
            "bad_response",
        ),
        (
            Fault::Data(DataFault::MissingId { absent: false }),
            "?sort=first_name",
            &ti_sorted,
            "bad_response",
        ),
    ];
    for (fault, query, want, code) in cases {
        // A gateway each: the first case's failures would open TIS's circuit for the next.
        let app = spawn_app().await;
        app.sandbox.tis.control.set_fault(fault.clone());
        let (users, meta) = export(&app, query).await;
        assert_eq!(
            line_ids(&users),
            line_ids(want),
            "{fault:?} {query}: every TI user once, no TIS user"
        );
        assert_eq!(meta["complete"], false, "{meta}");
        assert_eq!(meta["total"], 1250);
        assert_eq!(
            source_statuses(&meta),
            [
                ("thoughtindustries".to_owned(), "ok".to_owned()),
                ("tapintosafety".to_owned(), "error".to_owned())
            ]
        );
        assert_eq!(meta["sources"][1]["error"]["code"], code, "{meta}");
    }
}

#[tokio::test]
async fn an_export_no_source_answers_is_a_502_problem() {
    let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_UPSTREAM_RETRIES", "0")]).await;
    app.sandbox.ti.control.set_fault(Fault::Status(500));
    app.sandbox.tis.control.set_fault(Fault::Status(503));
    let reply = app.get("/users/export?fields=email").await;
    assert_eq!(reply.status, 502, "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    assert_eq!(reply.json()["sources"].as_array().unwrap().len(), 2);
}

async fn call(router: &axum::Router, path: &str, key: Option<&str>) -> axum::response::Response {
    let mut request = Request::get(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_export_needs_a_key_and_holds_its_slot_while_it_streams() {
    let (router, _sandbox) = app_router(
        SandboxOptions::default(),
        &[
            ("GATEWAY_API_KEYS", "k-export"),
            ("GATEWAY_MAX_CONCURRENT_REQUESTS", "1"),
        ],
    )
    .await;
    assert_eq!(
        call(&router, "/users/export", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let streaming = call(&router, "/users/export", Some("k-export")).await;
    assert_eq!(streaming.status(), StatusCode::OK);
    // Its body unread, the export still streams: the one slot is taken.
    let shed = call(&router, "/users?per_page=1", Some("k-export")).await;
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(streaming);
    let served = call(&router, "/users?per_page=1", Some("k-export")).await;
    assert_eq!(served.status(), StatusCode::OK, "the slot is given back with the body");
}

/// At most GATEWAY_MAX_CONCURRENT_EXPORTS stream at once: one more is a 503 problem that
/// names the limit, while `/users` is still served; the slot comes back when the export's
/// caller goes away.
#[tokio::test]
async fn exports_past_their_own_limit_are_shed_and_the_slot_comes_back() {
    let (router, sandbox) = app_router(SandboxOptions::default(), &[("GATEWAY_MAX_CONCURRENT_EXPORTS", "1")]).await;
    let streaming = call(&router, "/users/export", None).await;
    assert_eq!(streaming.status(), StatusCode::OK);
    let shed = call(&router, "/users/export?fields=email", None).await;
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    let body = axum::body::to_bytes(shed.into_body(), 1 << 16).await.unwrap();
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("GATEWAY_MAX_CONCURRENT_EXPORTS"),
        "{problem}"
    );
    assert_eq!(call(&router, "/users?per_page=1", None).await.status(), StatusCode::OK);
    let pages_before = sandbox.ti.control.requests().len();
    drop(streaming);
    // The export's task sees its caller gone at its next write and gives the slot back.
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..10_000 {
        let again = call(&router, "/users/export?provider=tapintosafety", None).await;
        status = again.status();
        if status == StatusCode::OK {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, StatusCode::OK, "the slot came back");
    assert_eq!(
        sandbox.ti.control.requests().len(),
        pages_before,
        "the abandoned export read no further"
    );
}

/// A tenant of 6,000 users (60 pages of 100) against a cache bound of 1 MiB that holds a
/// fraction of them.
fn large_tenant() -> SandboxOptions {
    SandboxOptions {
        ti_users: 6000,
        ti_page_size: 100,
        tis_users: 0,
        ..SandboxOptions::default()
    }
}

const SMALL_CACHE: (&str, &str) = ("GATEWAY_CACHE_MAX_BYTES", "1048576");

#[tokio::test]
async fn an_export_larger_than_the_cache_reads_each_upstream_page_once() {
    // Generous timeouts: on a loaded machine a retried page would count twice.
    let env = [
        SMALL_CACHE,
        ("GATEWAY_UPSTREAM_TIMEOUT_MS", "60000"),
        ("GATEWAY_REQUEST_DEADLINE_MS", "120000"),
    ];
    let app = spawn_with(large_tenant(), &env).await;
    let (users, meta) = export(&app, "").await;
    assert_eq!(line_ids(&users), line_ids(&expected_users(&app.sandbox)));
    assert_eq!(
        (meta["complete"].clone(), meta["total"].clone()),
        (Value::Bool(true), 6000.into())
    );
    let (ti, tis) = app.upstream_requests();
    assert_eq!(ti.len(), 60, "each TI page once: {ti:?}");
    // TIS's one (empty) page; again if a cache this small evicted what it knew of TIS.
    assert!((1..=3).contains(&tis.len()), "{tis:?}");
}

/// A caller that reads one frame and then nothing: the walk stops at the channel's two
/// frames (no upstream page read for users nobody takes), and after the stall limit the
/// stream is cut with an error, never ended as if complete.
#[tokio::test(start_paused = true)]
async fn a_stalled_caller_holds_a_bounded_amount_and_is_cut_off() {
    let _clock = tick_paused_clock();
    let (router, sandbox) = app_router(large_tenant(), &[SMALL_CACHE]).await;
    let response = call(&router, "/users/export", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(first.iter().filter(|&&b| b == b'\n').count(), 100, "100 users a frame");

    tokio::time::sleep(users_gateway::http::export::STALL_LIMIT + Duration::from_secs(1)).await;
    // The first chunk of 500 (5 pages), its frames: one read, two in the channel, one
    // waiting to be sent. Nothing more is read.
    let read = sandbox.ti.control.requests().len();
    assert!(read <= 5, "{read} TI pages read for a caller that took 100 users");

    let mut lines = 100;
    let mut cut = false;
    while let Some(frame) = body.next().await {
        match frame {
            Ok(bytes) => {
                assert!(
                    !bytes.windows(7).any(|w| w == b"\"meta\":"),
                    "a cut export has no meta line"
                );
                lines += bytes.iter().filter(|&&b| b == b'\n').count();
            }
            Err(_) => cut = true,
        }
    }
    assert!(cut, "the stream ends with an error, not as if complete");
    assert!(
        lines <= 2000,
        "{lines} lines of 6,000 written for a caller that stopped at 500"
    );
}

/// Hostile upstreams under an export: each lie is caught (the lying source is reported and
/// the export incomplete) or, for a loose filter, made exact; never a user twice or one
/// that does not match.
#[tokio::test]
async fn an_export_over_lying_upstreams_is_exact_or_says_which_source_failed() {
    let all = expected_users(&spawn_app().await.sandbox);
    let tis: Vec<Value> = all.iter().filter(|u| u["source"] == "tapintosafety").cloned().collect();
    for fault in [DataFault::RepeatIds, DataFault::IgnorePage, DataFault::ShiftingTotal] {
        let app = spawn_app().await;
        app.sandbox.ti.control.set_fault(Fault::Data(fault));
        let (users, meta) = export(&app, "").await;
        assert_eq!(line_ids(&users), line_ids(&tis), "{fault:?}: TI refused, TIS whole");
        assert_eq!(meta["complete"], false, "{fault:?}: {meta}");
        assert_eq!(meta["sources"][0]["error"]["code"], "bad_response", "{fault:?}: {meta}");
    }

    // TI's role filter turns loose from page 2: the export is still exactly the admins.
    let app = spawn_app().await;
    app.sandbox
        .ti
        .control
        .set_fault(Fault::Data(DataFault::LooseFilter { from_page: 2 }));
    let want = reference(&all, crate::helpers::role_is("admin"), &[]);
    let (users, meta) = export(&app, "?role=admin&fields=role").await;
    assert_eq!(line_ids(&users), line_ids(&want));
    assert!(users
        .iter()
        .all(|u| u["role"].as_str().unwrap().eq_ignore_ascii_case("admin")));
    assert_eq!(
        (meta["complete"].clone(), meta["total"].clone()),
        (Value::Bool(true), want.len().into())
    );
}

/// The cache expires between the chunks of an export (TTL 1 s on a paused clock, each chunk
/// read more than a second after the one before): what the walk learned expires under it,
/// and the export is still every user once, in order.
#[tokio::test(start_paused = true)]
async fn an_export_whose_pages_expire_mid_walk_is_still_every_user_once() {
    let _clock = tick_paused_clock();
    let (router, sandbox) = app_router(
        large_tenant(),
        &[
            ("GATEWAY_CACHE_TTL_SECS", "1"),
            ("GATEWAY_STALE_WHILE_REVALIDATE_SECS", "0"),
        ],
    )
    .await;
    let response = call(&router, "/users/export?fields=id", None).await;
    let mut body = response.into_body().into_data_stream();
    let mut text = Vec::new();
    while let Some(frame) = body.next().await {
        text.extend_from_slice(&frame.expect("no cut"));
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let (users, meta) = export_lines(std::str::from_utf8(&text).unwrap());
    assert_eq!(line_ids(&users), line_ids(&expected_users(&sandbox)));
    assert_eq!(meta["complete"], true, "{meta}");
}

//! Upstreams that lie in the documented shape (issue 8, SPEC §3 "That holds whatever an
//! upstream does"): loose filters, contradicting pages, absurd `Retry-After` values and a
//! probe abandoned while its upstream hangs.
//!
//! Every expected value comes from the sandbox's own records (or a naive filter over them),
//! never from the gateway's answers. Each test prints the upstream calls its walks cost, for
//! the closing note.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use users_gateway::sandbox::{DataFault, Fault, SandboxOptions, SimulatedProvider};

use crate::helpers::{ids, spawn_with, TestApp};

const TI: &str = "thoughtindustries";
const TIS: &str = "tapintosafety";

// ---------------------------------------------------------------------------------------
// The sandbox itself, asked directly: each mode lies exactly as its docs say.
// ---------------------------------------------------------------------------------------

/// One raw upstream answer: status, `Retry-After`, body (Null when not JSON).
async fn raw(provider: &SimulatedProvider, query: &str) -> (u16, Option<String>, Value) {
    let path = match provider.provider.as_str() {
        TI => "/incoming/v2/users",
        _ => "/api/v2/users",
    };
    let url = provider.base_url.join(&format!("{path}?{query}")).unwrap();
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(provider.api_key)
        .send()
        .await
        .expect("the sandbox answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
    (status, retry_after, body)
}

/// TI's `users` or TIS's `entities`, with the page number and total the answer claims.
fn page_parts(body: &Value) -> (Vec<Value>, u64, u64) {
    if let Some(users) = body["data"]["APIUsers"]["users"].as_array() {
        let info = &body["data"]["APIUsers"]["pageInfo"];
        (
            users.clone(),
            info["currentPage"].as_u64().unwrap(),
            info["total"].as_u64().unwrap(),
        )
    } else {
        (
            body["entities"].as_array().unwrap().clone(),
            body["page"].as_u64().unwrap(),
            body["totalEntities"].as_u64().unwrap(),
        )
    }
}

fn record_ids(records: &[Value]) -> Vec<&str> {
    records.iter().map(|record| record["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn the_sandbox_lies_in_the_documented_shape() {
    let sandbox = users_gateway::sandbox::Sandbox::start(SandboxOptions::default())
        .await
        .unwrap();
    let (ti, tis) = (&sandbox.ti, &sandbox.tis);

    ti.control.set_fault(Fault::Data(DataFault::IgnorePage));
    let (users, page, total) = page_parts(&raw(ti, "page=3").await.2);
    assert_eq!((page, total), (1, 1250), "ignore-page claims page 1");
    assert_eq!(record_ids(&users), record_ids(&ti.records[..40]));
    tis.control.set_fault(Fault::Data(DataFault::IgnorePage));
    let (entities, page, _) = page_parts(&raw(tis, "page=3").await.2);
    assert_eq!(page, 1);
    assert_eq!(record_ids(&entities), record_ids(&tis.records[..50]));

    ti.control.set_fault(Fault::Data(DataFault::RepeatIds));
    let (users, page, total) = page_parts(&raw(ti, "page=2").await.2);
    assert_eq!((page, total), (2, 1250));
    let mut expected = record_ids(&ti.records[40..80]);
    expected[0] = record_ids(&ti.records[39..40])[0];
    assert_eq!(
        record_ids(&users),
        expected,
        "opens with page 1's last user in place of its own first"
    );
    tis.control.set_fault(Fault::Data(DataFault::RepeatIds));
    let (entities, _, _) = page_parts(&raw(tis, "page=15").await.2);
    let mut expected = record_ids(&tis.records[700..730]);
    expected[0] = record_ids(&tis.records[699..700])[0];
    assert_eq!(record_ids(&entities), expected);

    ti.control.set_fault(Fault::Data(DataFault::ShiftingTotal));
    assert_eq!(page_parts(&raw(ti, "page=1").await.2).2, 1250);
    let body = raw(ti, "page=2").await.2;
    assert_eq!(page_parts(&body).2, 1255);
    tis.control.set_fault(Fault::Data(DataFault::ShiftingTotal));
    assert_eq!(page_parts(&raw(tis, "page=2").await.2).2, 735);

    ti.control
        .set_fault(Fault::Data(DataFault::MissingId { absent: false }));
    let (users, _, _) = page_parts(&raw(ti, "page=2").await.2);
    assert_eq!(users[0]["id"], "");
    assert_eq!(
        users[0]["email"], ti.records[40]["email"],
        "the rest of the record is intact"
    );
    assert_eq!(users[1], ti.records[41]);
    assert_eq!(
        page_parts(&raw(ti, "page=1").await.2).0[0],
        ti.records[0],
        "page 1 is intact"
    );
    tis.control
        .set_fault(Fault::Data(DataFault::MissingId { absent: true }));
    let (entities, _, _) = page_parts(&raw(tis, "page=2").await.2);
    assert!(entities[0].get("id").is_none(), "{}", entities[0]);
    assert_eq!(entities[0]["username"], tis.records[50]["username"]);

    let admins: Vec<&Value> = ti.records.iter().filter(|r| r["roleKey"] == "admin").collect();
    ti.control
        .set_fault(Fault::Data(DataFault::LooseFilter { from_page: 2 }));
    // The widened list: every admin, plus the others after the first page of admins.
    let mut seen = 0;
    let widened: Vec<&Value> = ti
        .records
        .iter()
        .filter(|record| {
            let admin = record["roleKey"] == "admin";
            seen += usize::from(admin);
            admin || seen >= 40
        })
        .collect();
    assert!(widened.len() > admins.len());
    let (users, _, total) = page_parts(&raw(ti, "role=admin&page=1").await.2);
    assert_eq!(total, widened.len() as u64, "every page reports the widened total");
    assert!(
        users.iter().all(|user| user["roleKey"] == "admin"),
        "page 1 looks exact"
    );
    let (users, page, total) = page_parts(&raw(ti, "role=admin&page=2").await.2);
    assert_eq!((page, total), (2, widened.len() as u64));
    let expected: Vec<Value> = widened[40..80].iter().map(|user| (*user).clone()).collect();
    assert_eq!(record_ids(&users), record_ids(&expected));
    assert!(
        users.iter().any(|user| user["roleKey"] != "admin"),
        "from page 2 on: loose"
    );
    let (users, _, total) = page_parts(&raw(ti, "page=2").await.2);
    assert_eq!((record_ids(&users), total), (record_ids(&ti.records[40..80]), 1250));
    tis.control
        .set_fault(Fault::Data(DataFault::LooseFilter { from_page: 1 }));
    let (entities, _, total) = page_parts(&raw(tis, "email=an&page=1").await.2);
    assert_eq!(total, 730);
    assert_eq!(record_ids(&entities), record_ids(&tis.records[..50]));
    let guid = tis.records[7]["id"].as_str().unwrap().to_owned();
    let (entities, _, total) = page_parts(&raw(tis, &format!("email=zzz&userId={guid}")).await.2);
    assert_eq!(
        (record_ids(&entities), total),
        (vec![guid.as_str()], 1),
        "userId stays exact"
    );

    // A scripted data fault lies once, then the standing fault (none) applies again.
    tis.control.set_fault(Fault::None);
    tis.control.fail_next(1, Fault::Data(DataFault::IgnorePage));
    assert_eq!(page_parts(&raw(tis, "page=2").await.2).1, 1);
    assert_eq!(page_parts(&raw(tis, "page=2").await.2).1, 2);

    for (status, value) in [
        (429, "10000000000000000000"),
        (429, "-1"),
        (503, "Fri, 31 Dec 9999 23:59:59 GMT"),
        (429, "soon-ish"),
    ] {
        tis.control.set_fault(Fault::RetryAfter {
            status,
            value: value.to_owned(),
        });
        let (got, retry_after, _) = raw(tis, "page=1").await;
        assert_eq!((got, retry_after.as_deref()), (status, Some(value)), "sent verbatim");
    }

    ti.control.set_fault(Fault::HangThenOk(1));
    ti.control.clear_requests();
    let hanging = tokio::spawn({
        let ti = ti.clone();
        async move { raw(&ti, "page=1").await }
    });
    ti.control.wait_for_requests(1).await;
    assert!(!hanging.is_finished(), "the first request hangs");
    hanging.abort();
    assert!(hanging.await.unwrap_err().is_cancelled());
    let (status, _, body) = raw(ti, "page=1").await;
    assert_eq!(status, 200, "then it answers");
    assert_eq!(record_ids(&page_parts(&body).0), record_ids(&ti.records[..40]));
    assert_eq!(
        ti.control.requests(),
        ["/incoming/v2/users?page=1"; 2],
        "both are logged"
    );
}

// ---------------------------------------------------------------------------------------
// Loose filters: the exact result and one total, in any order of asking.
// ---------------------------------------------------------------------------------------

/// SPEC §3 `role` and `email` over one upstream record, read naively.
fn record_matches(source: &str, record: &Value, role: Option<&str>, email: Option<&str>) -> bool {
    let text = |key: &str| record.get(key).and_then(Value::as_str).filter(|t| !t.is_empty());
    let role_key = if source == TI { "roleKey" } else { "role" };
    let role_ok = role.is_none_or(|role| text(role_key).is_some_and(|r| r.to_lowercase() == role.to_lowercase()));
    let username = if source == TI { None } else { text("username") };
    let email_ok = email.is_none_or(|needle| {
        let needle = needle.to_lowercase();
        [text("email"), username]
            .into_iter()
            .flatten()
            .any(|field| field.to_lowercase().contains(&needle))
    });
    role_ok && email_ok
}

/// The ids SPEC §3 promises for the filter: TI's matching users, then TIS's, each in upstream order.
fn expected_matching(app: &TestApp, role: Option<&str>, email: Option<&str>) -> Vec<String> {
    let of = |source: &str, records: &[Value]| -> Vec<String> {
        records
            .iter()
            .filter(|record| record_matches(source, record, role, email))
            .map(|record| format!("{source}:{}", record["id"].as_str().unwrap()))
            .collect()
    };
    let mut expected = of(TI, &app.sandbox.ti.records);
    expected.extend(of(TIS, &app.sandbox.tis.records));
    expected
}

/// Upstream calls since the last clear: (TI, TIS).
fn calls(app: &TestApp) -> (usize, usize) {
    let (ti, tis) = app.upstream_requests();
    (ti.len(), tis.len())
}

/// Walks every page of `query` in the given order and checks each against `expected`:
/// `meta.total` is its length on every page, each page holds exactly its window, both
/// sources are `ok`. Returns the upstream calls the walk made.
async fn walk_exactly(
    app: &TestApp,
    query: &str,
    per_page: usize,
    expected: &[String],
    reverse: bool,
) -> Result<(usize, usize), String> {
    app.clear_upstream_requests();
    let total_pages = expected.len().div_ceil(per_page).max(1);
    let mut pages: Vec<usize> = (1..=total_pages).collect();
    if reverse {
        pages.reverse();
    }
    let order = if reverse { "reverse" } else { "forward" };
    let mut totals_seen = Vec::new();
    for page in pages {
        let reply = app
            .get(&format!("/users?{query}&per_page={per_page}&page={page}"))
            .await;
        let context = format!("{query} per_page={per_page} {order} walk, page {page}");
        if reply.status != 200 {
            return Err(format!("{context}: status {}: {}", reply.status, reply.text));
        }
        let body = reply.json();
        let meta = &body["meta"];
        totals_seen.push((page, meta["total"].clone()));
        if meta["total"] != expected.len() {
            return Err(format!(
                "{context}: meta.total {} but {} users match (totals so far, page: total: {totals_seen:?}; sources {})",
                meta["total"],
                expected.len(),
                meta["sources"]
            ));
        }
        if meta["partial"] != false {
            return Err(format!("{context}: partial answer: {}", meta["sources"]));
        }
        let start = ((page - 1) * per_page).min(expected.len());
        let window = &expected[start..(start + per_page).min(expected.len())];
        let served = ids(&body);
        if served != window {
            let unexpected: Vec<&String> = served.iter().filter(|id| !window.contains(id)).collect();
            let missing: Vec<&String> = window.iter().filter(|id| !served.contains(id)).collect();
            return Err(format!(
                "{context}: served {} users, expected {}; {} not in the window (first {:?}), {} missing (first {:?})",
                served.len(),
                window.len(),
                unexpected.len(),
                unexpected.first(),
                missing.len(),
                missing.first()
            ));
        }
    }
    Ok(calls(app))
}

/// Forward on a fresh gateway, reverse on another, then forward again on that one.
async fn check_loose_filter(faulty: &str, fault: Fault, query: &str, per_page: usize, label: &str) {
    let mut failures = Vec::new();
    for (walks, name) in [
        (&[false][..], "fresh forward"),
        (&[true, false][..], "fresh reverse, then forward"),
    ] {
        let app = spawn_with(SandboxOptions::default(), &[]).await;
        let simulated = if faulty == TI {
            &app.sandbox.ti
        } else {
            &app.sandbox.tis
        };
        simulated.control.set_fault(fault.clone());
        let role = query.strip_prefix("role=");
        let email = query.strip_prefix("email=");
        let expected = expected_matching(&app, role, email);
        for &reverse in walks {
            match walk_exactly(&app, query, per_page, &expected, reverse).await {
                Ok((ti, tis)) => eprintln!(
                    "misbehaving: {label} {query} full walk per_page={per_page} ({name}, {} pass): {ti} TI calls, {tis} TIS calls",
                    if reverse { "reverse" } else { "forward" }
                ),
                Err(failure) => {
                    let (ti, tis) = calls(&app);
                    eprintln!("misbehaving: {label} {query} ({name}) failed after {ti} TI calls, {tis} TIS calls");
                    failures.push(format!("{name}: {failure}"));
                    break;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{label}:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn a_loose_ti_role_filter_still_gives_the_exact_users_and_one_total() {
    // TI pages 2.. of role=learner come from the unfiltered list, with the unfiltered total.
    let loose = Fault::Data(DataFault::LooseFilter { from_page: 2 });
    check_loose_filter(TI, loose, "role=learner", 50, "loose-filter TI").await;
}

#[tokio::test]
async fn a_loose_tis_email_filter_still_gives_the_exact_users_and_one_total() {
    // email=an matches 155 TIS users (4 upstream pages) and 209 TI users.
    let loose = Fault::Data(DataFault::LooseFilter { from_page: 2 });
    check_loose_filter(TIS, loose, "email=an", 25, "loose-filter TIS").await;
}

// ---------------------------------------------------------------------------------------
// Contradicting pages: that source is a bad_response saying which, the other is served.
// ---------------------------------------------------------------------------------------

/// Both sources' true ids, in upstream order.
fn true_ids(app: &TestApp, source: &str) -> Vec<String> {
    let records = if source == TI {
        &app.sandbox.ti.records
    } else {
        &app.sandbox.tis.records
    };
    record_ids(records)
        .into_iter()
        .map(|id| format!("{source}:{id}"))
        .collect()
}

/// Walks every page at 100 a page with `fault` standing on `faulty` and checks SPEC §3:
/// - each page is either exact over both sources (the faulty one `ok`), or the faulty source
///   is `bad_response` with a message `says` accepts, `partial: true`, and the page is the
///   other source's window alone, counted alone;
/// - no id is empty (`"thoughtindustries:"`) or twice on a page, and no user of the faulty
///   source is served twice in the walk;
/// - the contradiction is reported at least once.
///
/// Users of the healthy source may legitimately reappear across pages whose layouts differ
/// (a source dropped from one page and not another, as the README says), so the walk-wide
/// uniqueness is asserted for the lying source, whose repeats are the contradiction.
async fn check_contradiction(
    faulty: &str,
    fault: &Fault,
    says: fn(&str) -> bool,
    wording: &str,
    label: &str,
) -> Result<(), String> {
    // No breaker: a source that keeps lying must keep saying so, not turn `unavailable`.
    let app = spawn_with(
        SandboxOptions::default(),
        &[
            ("GATEWAY_BREAKER_FAILURES", "0"),
            ("GATEWAY_UPSTREAM_RETRIES", "0"),
            ("GATEWAY_STALE_IF_ERROR_SECS", "0"),
        ],
    )
    .await;
    let healthy = if faulty == TI { TIS } else { TI };
    let simulated = if faulty == TI {
        &app.sandbox.ti
    } else {
        &app.sandbox.tis
    };
    simulated.control.set_fault(fault.clone());
    let mut everyone = true_ids(&app, TI);
    everyone.extend(true_ids(&app, TIS));
    let healthy_ids = true_ids(&app, healthy);
    let faulty_prefix = format!("{faulty}:");

    let per_page = 100;
    let mut reported = 0;
    let mut served_faulty = HashSet::new();
    let mut failures = Vec::new();
    let mut page = 1;
    loop {
        let reply = app.get(&format!("/users?per_page={per_page}&page={page}")).await;
        let context = format!("{label} on {faulty}, page {page}");
        if reply.status != 200 {
            failures.push(format!("{context}: status {}: {}", reply.status, reply.text));
            break;
        }
        let body = reply.json();
        let meta = &body["meta"];
        let served = ids(&body);
        let source = |name: &str| {
            meta["sources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|entry| entry["source"] == name)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let (lying, other) = (source(faulty), source(healthy));
        if other["status"] != "ok" {
            failures.push(format!("{context}: the healthy source is not ok: {other}"));
        }
        if let Some(empty) = served.iter().find(|id| id.ends_with(':')) {
            failures.push(format!("{context}: served a user without an id: {empty:?}"));
        }
        if served.iter().collect::<HashSet<_>>().len() != served.len() {
            failures.push(format!("{context}: a user twice on one page"));
        }
        let again: Vec<&String> = served
            .iter()
            .filter(|id| id.starts_with(&faulty_prefix) && !served_faulty.insert((*id).clone()))
            .collect();
        if let Some(first) = again.first() {
            failures.push(format!(
                "{context}: {} users of {faulty} served again (first {first})",
                again.len()
            ));
        }
        let start = (page - 1) * per_page;
        let window = |list: &[String]| list[start.min(list.len())..(start + per_page).min(list.len())].to_vec();
        if lying["status"] == "ok" {
            if meta["total"] != everyone.len() || served != window(&everyone) {
                failures.push(format!(
                    "{context}: {faulty} reported ok but the page is not the truth (meta.total {}, expected {}; {} served, {} of them not in the true window)",
                    meta["total"],
                    everyone.len(),
                    served.len(),
                    served.iter().filter(|id| !window(&everyone).contains(id)).count()
                ));
            }
        } else {
            reported += 1;
            let message = lying["error"]["message"].as_str().unwrap_or("").to_lowercase();
            if lying["error"]["code"] != "bad_response" || !says(&message) {
                failures.push(format!(
                    "{context}: expected bad_response saying {wording}, got {lying}"
                ));
            }
            if meta["partial"] != true || meta["total"] != healthy_ids.len() || served != window(&healthy_ids) {
                failures.push(format!(
                    "{context}: not the healthy source's window alone (partial {}, total {}, {} served)",
                    meta["partial"],
                    meta["total"],
                    served.len()
                ));
            }
        }
        // The whole walk runs however it goes, so its upstream calls are a full walk's.
        if meta["has_more"] != true || page >= 40 {
            break;
        }
        page += 1;
    }
    if reported == 0 {
        failures.push(format!("{label} on {faulty}: {faulty} was never reported as failing"));
    }
    let (ti, tis) = calls(&app);
    eprintln!(
        "misbehaving: {label} on {faulty} full walk per_page={per_page} ({page} pages, {reported} flagged): {ti} TI calls, {tis} TIS calls"
    );
    if failures.is_empty() {
        return Ok(());
    }
    let n_failures = failures.len();
    failures.truncate(8);
    if n_failures > failures.len() {
        failures.push(format!("{label} on {faulty}: … {} more", n_failures - failures.len()));
    }
    Err(failures.join("\n"))
}

/// Runs `check_contradiction` on each source in turn and fails with every finding.
async fn check_on_both(fault: Fault, says: fn(&str) -> bool, wording: &str, label: &str) {
    let mut failures = Vec::new();
    for faulty in [TI, TIS] {
        if let Err(failure) = check_contradiction(faulty, &fault, says, wording, label).await {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn repeated_ids_make_that_source_a_bad_response_and_no_user_is_served_twice() {
    check_on_both(
        Fault::Data(DataFault::RepeatIds),
        |message| message.contains("id") && (message.contains("twice") || message.contains("repeat")),
        "\"id\" and \"twice\" or \"repeat\"",
        "repeat-ids",
    )
    .await;
}

#[tokio::test]
async fn an_upstream_ignoring_page_is_a_bad_response() {
    check_on_both(
        Fault::Data(DataFault::IgnorePage),
        |message| message.contains("page"),
        "\"page\"",
        "ignore-page",
    )
    .await;
}

#[tokio::test]
async fn a_total_changing_between_pages_is_a_bad_response() {
    check_on_both(
        Fault::Data(DataFault::ShiftingTotal),
        |message| message.contains("total"),
        "\"total\"",
        "shifting-total",
    )
    .await;
}

#[tokio::test]
async fn a_record_without_an_id_is_a_bad_response_never_a_user() {
    let mut failures = Vec::new();
    for (absent, label) in [(false, "missing-id (\"id\": \"\")"), (true, "missing-id=absent")] {
        for faulty in [TI, TIS] {
            let fault = Fault::Data(DataFault::MissingId { absent });
            let says = |message: &str| message.contains("id");
            if let Err(failure) = check_contradiction(faulty, &fault, says, "\"id\"", label).await {
                failures.push(failure);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Retry-After values an upstream should never send.
// ---------------------------------------------------------------------------------------

const ABSURD_RETRY_AFTER: &[&str] = &[
    "10000000000000000000",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "-1",
    "-10000000000000000000",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "1e400",
    "0x10",
    "soon",
    "",
];

#[tokio::test]
async fn absurd_retry_after_values_cost_one_source_its_answer_within_the_deadline() {
    const DEADLINE_MS: u64 = 2000;
    let mut failures = Vec::new();
    for (status, code) in [(429, "rate_limited"), (503, "unavailable")] {
        // A fresh gateway per status, the fault standing from the start: the faulty source
        // has no cached copy that could stand in for it.
        let app = spawn_with(
            SandboxOptions::default(),
            &[
                ("GATEWAY_REQUEST_DEADLINE_MS", "2000"),
                ("GATEWAY_UPSTREAM_TIMEOUT_MS", "1000"),
                ("GATEWAY_UPSTREAM_RETRIES", "2"),
                ("GATEWAY_UPSTREAM_BACKOFF_MS", "5"),
                ("GATEWAY_BREAKER_FAILURES", "0"),
                ("GATEWAY_STALE_IF_ERROR_SECS", "0"),
            ],
        )
        .await;
        // 429 on TIS, 503 on TI: either way the other source's page is served.
        let (faulty, healthy, path, window) = if status == 429 {
            (
                &app.sandbox.tis,
                TI,
                "/users?page=50&per_page=25",
                true_ids(&app, TI)[1225..1250].to_vec(),
            )
        } else {
            (
                &app.sandbox.ti,
                TIS,
                "/users?page=1&per_page=25",
                true_ids(&app, TIS)[..25].to_vec(),
            )
        };
        for value in ABSURD_RETRY_AFTER {
            faulty.control.set_fault(Fault::RetryAfter {
                status,
                value: (*value).to_owned(),
            });
            app.clear_upstream_requests();
            let context = format!("{status} with Retry-After {value:?}");
            let started = Instant::now();
            let sent = app.http.get(format!("{}{path}", app.base)).send().await;
            let elapsed = started.elapsed();
            let (ti_calls, tis_calls) = calls(&app);
            eprintln!("misbehaving: retry-after {context}: {ti_calls} TI calls, {tis_calls} TIS calls, {elapsed:?}");
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    failures.push(format!("{context}: no answer at all ({error})"));
                    continue;
                }
            };
            let reply_status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            if reply_status != 200 {
                failures.push(format!("{context}: status {reply_status}: {text}"));
                continue;
            }
            let body: Value = serde_json::from_str(&text).unwrap();
            let sources = &body["meta"]["sources"];
            let (lying, other) = if healthy == TI {
                (&sources[1], &sources[0])
            } else {
                (&sources[0], &sources[1])
            };
            if lying["error"]["code"] != code || other["status"] != "ok" || body["meta"]["partial"] != true {
                failures.push(format!(
                    "{context}: expected the faulty source {code} and the other ok: {sources}"
                ));
            }
            if ids(&body) != window {
                failures.push(format!("{context}: the healthy source's page is not served exactly"));
            }
            if elapsed > Duration::from_millis(DEADLINE_MS + 1000) {
                failures.push(format!(
                    "{context}: took {elapsed:?}, past the {DEADLINE_MS} ms deadline"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// A half-open probe whose caller hangs up while the upstream hangs.
// ---------------------------------------------------------------------------------------

const COOL_DOWN_SECS: u64 = 10;

/// Lets the breaker's cool-down pass without waiting for it: the tokio clock jumps ahead
/// while nothing is in flight (with the clock paused for good, every socket wait of the
/// in-process gateway and sandbox would fire the nearest timer too).
async fn let_the_cool_down_pass() {
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(COOL_DOWN_SECS + 1)).await;
    tokio::time::resume();
}

#[tokio::test]
async fn a_probe_abandoned_while_its_upstream_hangs_does_not_wedge_the_circuit() {
    let cool_down = COOL_DOWN_SECS.to_string();
    let app = spawn_with(
        SandboxOptions::default(),
        &[
            ("GATEWAY_UPSTREAM_TIMEOUT_MS", "2000"),
            ("GATEWAY_REQUEST_DEADLINE_MS", "4000"),
            ("GATEWAY_UPSTREAM_RETRIES", "0"),
            ("GATEWAY_BREAKER_FAILURES", "1"),
            ("GATEWAY_BREAKER_COOL_DOWN_SECS", cool_down.as_str()),
            ("GATEWAY_STALE_IF_ERROR_SECS", "0"),
        ],
    )
    .await;
    let tis = &app.sandbox.tis.control;
    let path = "/users?provider=tapintosafety&per_page=100";

    // One failure opens the circuit.
    tis.fail_next(1, Fault::Status(500));
    let reply = app.get(path).await;
    assert_eq!(reply.status, 502, "{}", reply.text);
    assert_eq!(tis.requests().len(), 1);

    // After the cool-down the next call is the probe; its upstream hangs and its caller leaves.
    tis.set_fault(Fault::HangThenOk(1));
    let_the_cool_down_pass().await;
    let caller = tokio::spawn({
        let (http, url) = (app.http.clone(), format!("{}{path}", app.base));
        async move { http.get(url).send().await }
    });
    tis.wait_for_requests(2).await;
    caller.abort();
    assert!(
        caller.await.unwrap_err().is_cancelled(),
        "the caller hung up before any answer"
    );

    // The upstream answers again: some later request must be served by it.
    let mut seen = Vec::new();
    let mut recovered = false;
    for _ in 0..5 {
        let_the_cool_down_pass().await;
        let reply = app.get(path).await;
        let body = reply.json();
        let source = if reply.status == 200 {
            body["meta"]["sources"][0].clone()
        } else {
            body["sources"][0].clone()
        };
        if reply.status == 200 && source["status"] == "ok" {
            assert_eq!(ids(&body), true_ids(&app, TIS)[..100].to_vec());
            recovered = true;
            break;
        }
        seen.push(format!("{}: {source}", reply.status));
    }
    assert!(
        recovered,
        "the circuit stayed shut after the abandoned probe; answers after each cool-down:\n{}",
        seen.join("\n")
    );

    // A full walk once it has recovered.
    app.clear_upstream_requests();
    let mut walked = Vec::new();
    for page in 1..=8 {
        walked.extend(ids(&app.get(&format!("{path}&page={page}")).await.json()));
    }
    assert_eq!(walked, true_ids(&app, TIS));
    let (ti_calls, tis_calls) = calls(&app);
    eprintln!(
        "misbehaving: hang-then-ok=1 TIS full walk per_page=100 after recovery (pages 1-2 cached by the recovering request): {ti_calls} TI calls, {tis_calls} TIS calls"
    );
}

//! Hostile tests of views (`cache::views`) and packed raw records (`raw_records`): every
//! answer is checked against the upstream data itself (the sandbox's records, or a mutable
//! upstream's), through a naive reference; never against the gateway's own earlier answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use users_gateway::sandbox::{DataFault, Fault, SandboxOptions};

use crate::helpers::{
    assert_same_user, email_has, expected_user, expected_users, ids, reference, role_is, sort_param, spawn_with,
    spawn_with_sources, tick_paused_clock, TestApp,
};

/// One caller page checked against the reference slice at its offset.
async fn check_page(app: &TestApp, path: &str, expected: &[Value], page: usize, per_page: usize, raw: bool) -> Value {
    let reply = app.get(path).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    let body = reply.json();
    assert_eq!(body["meta"]["partial"], false, "{path}: {body}");
    assert_eq!(body["meta"]["total"], expected.len() as u64, "{path}");
    let start = ((page - 1) * per_page).min(expected.len());
    let end = (start + per_page).min(expected.len());
    let want = &expected[start..end];
    let want_ids: Vec<&str> = want.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids(&body), want_ids, "{path}");
    for (got, want) in body["data"].as_array().unwrap().iter().zip(want) {
        assert_same_user(got, want, raw, path);
    }
    body
}

/// Sorted and filtered walks, interleaved so several views share the same pages, with
/// `per_page` changing mid-walk and `include=raw`: every user (raw record included) is the
/// one its offset in the reference order names.
#[tokio::test]
async fn interleaved_sorted_walks_sharing_pages_show_the_right_users_and_raw_records() {
    let app = spawn_with(SandboxOptions::default(), &[]).await;
    let users = expected_users(&app.sandbox);
    type Keep = Box<dyn Fn(&Value) -> bool>;
    type Walk = (&'static str, Keep, Vec<(&'static str, bool)>);
    let queries: Vec<Walk> = vec![
        ("", Box::new(|_: &Value| true), vec![("last_name", false)]),
        ("", Box::new(|_: &Value| true), vec![("last_name", true)]),
        (
            "&role=admin",
            Box::new(role_is("admin")),
            vec![("first_name", false), ("email", true)],
        ),
        (
            "&email=example",
            Box::new(email_has("example")),
            vec![("created_at", true)],
        ),
        (
            "&email=e",
            Box::new(email_has("e")),
            vec![("last_active_at", false), ("display_name", false)],
        ),
        ("&role=learner", Box::new(role_is("learner")), vec![]),
    ];
    let expected: Vec<Vec<Value>> = queries
        .iter()
        .map(|(_, keep, sort)| reference(&users, keep, sort))
        .collect();
    // per_page changes between caller pages: page `n` at per_page `p` shows offset (n-1)*p.
    for (round, per_page) in [
        (1usize, 37usize),
        (2, 37),
        (3, 13),
        (5, 13),
        (2, 100),
        (40, 7),
        (3, 100),
    ] {
        for ((filter, _, sort), expected) in queries.iter().zip(&expected) {
            let sort_q = if sort.is_empty() {
                String::new()
            } else {
                format!("&sort={}", sort_param(sort))
            };
            let path = format!("/users?page={round}&per_page={per_page}&include=raw{filter}{sort_q}");
            check_page(&app, &path, expected, round, per_page, true).await;
        }
    }
    // One user by id after the views were built: the same record.
    let want = &users[77];
    let reply = app
        .get(&format!("/users/{}?include=raw", want["id"].as_str().unwrap()))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_same_user(&reply.json(), want, true, "/users/{id}");
}

/// A cache far too small for a full read: pages are evicted between (and during) requests,
/// so views are built over pages that later go. Every 200 must still be right.
#[tokio::test]
async fn a_tiny_cache_evicting_pages_under_views_never_serves_wrong_users() {
    for bytes in ["300000", "1500000"] {
        let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_CACHE_MAX_BYTES", bytes)]).await;
        let users = expected_users(&app.sandbox);
        let sort = [("email", false)];
        let by_email = reference(&users, |_| true, &sort);
        let admins = reference(&users, role_is("admin"), &[("last_name", true)]);
        for page in [1usize, 2, 9, 3, 20, 1] {
            for (path, expected) in [
                (
                    format!("/users?page={page}&per_page=100&include=raw&sort=email"),
                    &by_email,
                ),
                (
                    format!("/users?page={page}&per_page=20&include=raw&role=admin&sort=-last_name"),
                    &admins,
                ),
            ] {
                let reply = app.get(&path).await;
                if reply.status != 200 {
                    // Refusing is allowed (SPEC §7); a wrong answer is not.
                    assert!(reply.status >= 400, "{path}: {}", reply.text);
                    continue;
                }
                check_page(
                    &app,
                    &path,
                    expected,
                    page,
                    if path.contains("per_page=100") { 100 } else { 20 },
                    true,
                )
                .await;
            }
        }
    }
}

/// The upstream's role filter turns loose between caller pages (found by a refreshed page):
/// the gateway re-applies it, so no page of the walk widens, and the total never moves.
#[tokio::test]
async fn a_filter_turning_loose_mid_walk_never_widens_the_walk() {
    for sort in [vec![], vec![("email", false)]] {
        let app = spawn_with(SandboxOptions::default(), &[]).await;
        let users = expected_users(&app.sandbox);
        let expected = reference(&users, role_is("admin"), &sort);
        let sort_q = if sort.is_empty() {
            String::new()
        } else {
            format!("&sort={}", sort_param(&sort))
        };
        let path = |page: usize| format!("/users?role=admin&per_page=30&include=raw&page={page}{sort_q}");
        check_page(&app, &path(1), &expected, 1, 30, true).await;
        check_page(&app, &path(2), &expected, 2, 30, true).await;
        app.sandbox
            .ti
            .control
            .set_fault(Fault::Data(DataFault::LooseFilter { from_page: 1 }));
        let n_pages = expected.len().div_ceil(30);
        for page in 3..=n_pages + 1 {
            let refresh = page % 2 == 1;
            let headers: &[(&str, &str)] = if refresh { &[("cache-control", "no-cache")] } else { &[] };
            let reply = app.get_with(&path(page), headers).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            let body = reply.json();
            assert_eq!(
                body["meta"]["total"],
                expected.len() as u64,
                "page {page} {sort:?}: {}",
                body["meta"]
            );
            let start = ((page - 1) * 30).min(expected.len());
            let want: Vec<&str> = expected[start..(start + 30).min(expected.len())]
                .iter()
                .map(|u| u["id"].as_str().unwrap())
                .collect();
            assert_eq!(ids(&body), want, "page {page} (refresh {refresh}) {sort:?}");
            for (got, want) in body["data"].as_array().unwrap().iter().zip(&expected[start..]) {
                assert_same_user(got, want, true, &path(page));
            }
        }
    }
}

/// A Thought Industries upstream whose records the test can change.
#[derive(Clone)]
struct MutableTi {
    records: Arc<Mutex<Vec<Value>>>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

const TI_PAGE: usize = 40;

impl MutableTi {
    async fn start(records: Vec<Value>) -> (MutableTi, url::Url) {
        use axum::extract::{Query, State};
        use axum::routing::get;
        use std::collections::BTreeMap;
        let ti = MutableTi {
            records: Arc::new(Mutex::new(records)),
            calls: Arc::default(),
        };
        async fn list(
            State(ti): State<MutableTi>,
            Query(params): Query<BTreeMap<String, String>>,
        ) -> axum::Json<Value> {
            ti.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let page: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let role = params.get("role");
            let records = ti.records.lock().unwrap();
            let matching: Vec<&Value> = records
                .iter()
                .filter(|u| role.is_none_or(|r| u["roleKey"].as_str() == Some(r.as_str())))
                .collect();
            let start = ((page - 1) * TI_PAGE).min(matching.len());
            let end = (start + TI_PAGE).min(matching.len());
            axum::Json(json!({ "data": { "APIUsers": {
                "pageInfo": { "perPage": TI_PAGE, "currentPage": page, "total": matching.len(), "hasMore": end < matching.len() },
                "aggregations": [],
                "users": &matching[start..end],
            }}}))
        }
        let router = axum::Router::new()
            .route("/incoming/v2/users", get(list))
            .with_state(ti.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (ti, url)
    }

    fn set_last_name(&self, at: usize, last_name: &str) {
        self.records.lock().unwrap()[at]["lastName"] = Value::from(last_name);
    }

    /// SPEC §4 users of TI now, then the sandbox's TIS users.
    fn users(&self, app: &TestApp) -> Vec<Value> {
        let ti = self
            .records
            .lock()
            .unwrap()
            .iter()
            .map(|r| expected_user("thoughtindustries", r))
            .collect::<Vec<_>>();
        ti.into_iter()
            .chain(
                app.sandbox
                    .tis
                    .records
                    .iter()
                    .map(|r| expected_user("tapintosafety", r)),
            )
            .collect()
    }
}

async fn spawn_mutable(env: &[(&str, &str)]) -> (TestApp, MutableTi) {
    let records = users_gateway::sandbox::seed::ti_users(7, 1250);
    let (ti, url) = MutableTi::start(records).await;
    let app = spawn_with_sources(SandboxOptions::default(), env, |sources| sources[0].base_url = url).await;
    (app, ti)
}

/// The upstream changes a user on TI page 3 after a sorted walk built its views; a caller
/// page with `no-cache` refreshes the pages. Every later page (no header) must come from the
/// refreshed pages, never from the view of the pages before.
#[tokio::test]
async fn a_refresh_mid_walk_replaces_what_the_views_answer_with() {
    let (app, ti) = spawn_mutable(&[]).await;
    let sort = [("last_name", false)];
    let path = |page: usize| format!("/users?sort=last_name&per_page=25&include=raw&page={page}");
    let before = reference(&ti.users(&app), |_| true, &sort);
    check_page(&app, &path(1), &before, 1, 25, true).await;
    check_page(&app, &path(2), &before, 2, 25, true).await;

    // The user at index 100 (TI page 3) now sorts first.
    ti.set_last_name(100, "AAAA-first");
    let now = reference(&ti.users(&app), |_| true, &sort);
    let changed = format!(
        "thoughtindustries:{}",
        ti.records.lock().unwrap()[100]["id"].as_str().unwrap()
    );
    assert_eq!(now[0]["id"], changed.as_str());
    // Fresh cached pages answer as before (SPEC §7: no upstream call within the TTL).
    check_page(&app, &path(3), &before, 3, 25, true).await;
    // no-cache refreshes every page a sorted page reads.
    let reply = app.get_with(&path(3), &[("cache-control", "no-cache")]).await;
    let body = reply.json();
    let start = 50;
    let want: Vec<&str> = now[start..start + 25]
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids(&body), want, "refreshed page 3");
    // Later pages without the header: from the refreshed pages.
    for page in [1, 2, 4] {
        check_page(&app, &path(page), &now, page, 25, true).await;
    }
    let reply = app.get(&format!("/users/{changed}?include=raw")).await;
    assert_same_user(&reply.json(), &now[0], true, "/users/{id} after the refresh");
}

/// A refresh of TI page 1 alone (an unsorted `no-cache` page) after the upstream changed a
/// user there: the sorted views built before hold the old page 1, so a sorted page must show
/// the new page 1's user.
#[tokio::test]
async fn a_direct_refresh_of_one_page_is_seen_by_sorted_pages() {
    let (app, ti) = spawn_mutable(&[]).await;
    let sort = [("last_name", false)];
    let path = |page: usize| format!("/users?sort=last_name&per_page=25&include=raw&page={page}");
    let before = reference(&ti.users(&app), |_| true, &sort);
    check_page(&app, &path(1), &before, 1, 25, true).await;
    ti.set_last_name(5, "AAAA-first");
    let reply = app
        .get_with("/users?page=1&per_page=25", &[("cache-control", "no-cache")])
        .await;
    assert_eq!(reply.status, 200);
    let now = reference(&ti.users(&app), |_| true, &sort);
    check_page(&app, &path(1), &now, 1, 25, true).await;
    check_page(&app, &path(2), &now, 2, 25, true).await;
}

/// TI loses one user; one page is refreshed (unsorted `no-cache`), the others stay cached
/// with the old total. A sorted walk then must either fail TI (the pages contradict each
/// other) or show the new data: never a mix with users from the old pages' view.
#[tokio::test]
async fn a_shrinking_upstream_refreshed_on_one_page_never_mixes_old_and_new() {
    let (app, ti) = spawn_mutable(&[]).await;
    let sort = [("email", false)];
    let path = |page: usize| format!("/users?sort=email&per_page=100&page={page}");
    let before = reference(&ti.users(&app), |_| true, &sort);
    check_page(&app, &path(1), &before, 1, 100, false).await;
    let removed = ti.records.lock().unwrap().remove(3);
    let removed_id = format!("thoughtindustries:{}", removed["id"].as_str().unwrap());
    app.get_with("/users?page=1&per_page=25", &[("cache-control", "no-cache")])
        .await;
    let now = reference(&ti.users(&app), |_| true, &sort);
    let mut walked = Vec::new();
    for page in 1..=20 {
        let reply = app.get(&path(page)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let body = reply.json();
        if body["meta"]["partial"] == true {
            assert!(ids(&body).iter().all(|id| id.starts_with("tapintosafety:")), "{body}");
            continue;
        }
        assert_eq!(body["meta"]["total"], now.len() as u64, "page {page}: {}", body["meta"]);
        walked.extend(ids(&body));
    }
    assert!(
        !walked.contains(&removed_id),
        "the removed user is served from an old page"
    );
}

/// Stale-while-revalidate swaps every page in the background between two caller pages of a
/// sorted walk, after the upstream changed: the answer served stale says so and shows the
/// old pages; once refreshed, pages show the new data.
#[tokio::test(start_paused = true)]
async fn a_background_refresh_mid_walk_swaps_what_the_views_answer_with() {
    let _clock = tick_paused_clock();
    let (app, ti) = spawn_mutable(&[
        ("GATEWAY_STALE_WHILE_REVALIDATE_SECS", "30"),
        ("GATEWAY_UPSTREAM_RETRIES", "0"),
        ("GATEWAY_HEADER_READ_TIMEOUT_MS", "600000"),
    ])
    .await;
    let sort = [("last_name", true)];
    let path = |page: usize| format!("/users?sort=-last_name&per_page=50&include=raw&page={page}");
    let before = reference(&ti.users(&app), |_| true, &sort);
    check_page(&app, &path(1), &before, 1, 50, true).await;
    ti.set_last_name(700, "zzzz-first");
    let now = reference(&ti.users(&app), |_| true, &sort);
    tokio::time::advance(Duration::from_secs(70)).await;
    let calls = ti.calls.load(std::sync::atomic::Ordering::SeqCst);
    let stale = app.get(&path(2)).await.json();
    let want: Vec<&str> = before[50..100].iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids(&stale), want, "the stale pages");
    crate::helpers::wait_until("TI refreshed", Duration::from_secs(10), || {
        ti.calls.load(std::sync::atomic::Ordering::SeqCst) >= calls + 32
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for page in [1, 2, 3] {
        let body = check_page(&app, &path(page), &now, page, 50, true).await;
        assert!(body["meta"]["sources"][0].get("stale").is_none(), "{}", body["meta"]);
    }
}

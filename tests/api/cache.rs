//! Upstream request counting: the cache, coalescing, and fetching only what a page needs.

use crate::helpers::{spawn_app, Reply};

fn pages_asked(requests: &[String]) -> Vec<String> {
    let mut pages: Vec<String> = requests
        .iter()
        .map(|r| r.rsplit("page=").next().unwrap().to_owned())
        .collect();
    pages.sort_by_key(|p| p.parse::<u64>().unwrap());
    pages
}

fn cache_status(reply: &Reply) -> &str {
    reply.header("cache-status").unwrap()
}

#[tokio::test]
async fn a_repeated_request_makes_no_upstream_call() {
    let app = spawn_app().await;
    let first = app.get("/users?page=3&per_page=50").await;
    assert_eq!(cache_status(&first), "users-gateway; fwd=miss");
    let (ti, tis) = app.upstream_requests();
    let calls = ti.len() + tis.len();
    assert!(calls > 0);
    let second = app.get("/users?page=3&per_page=50").await;
    assert_eq!(cache_status(&second), "users-gateway; hit");
    assert_eq!(second.text, first.text);
    let (ti, tis) = app.upstream_requests();
    assert_eq!(ti.len() + tis.len(), calls, "the repeat was served from the cache");

    app.clear_upstream_requests();
    let refreshed = app
        .get_with("/users?page=3&per_page=50", &[("cache-control", "no-cache")])
        .await;
    assert_eq!(cache_status(&refreshed), "users-gateway; fwd=miss");
    let (ti, tis) = app.upstream_requests();
    // Users 100..150 are TI pages 3 and 4 (40 a page); the totals are known from the first
    // request, and each refetched page says its total again (checked against them).
    assert_eq!(pages_asked(&ti), ["3", "4"], "no-cache refetches what the page needs");
    assert!(tis.is_empty(), "{tis:?}");
}

#[tokio::test]
async fn a_cold_middle_page_fetches_only_the_pages_its_slice_needs() {
    let app = spawn_app().await;
    // TI: 1250 users, 40 a page. Users 725..750 lie on TI page 19 (720..760).
    app.get("/users?page=30&per_page=25").await;
    let (ti, tis) = app.upstream_requests();
    assert_eq!(pages_asked(&ti), ["1", "19"], "page 1 teaches the total and page size");
    assert_eq!(pages_asked(&tis), ["1"], "TIS page 1 only for its total");

    // Users 1225..1275 straddle the sources: TI pages 31-32, TIS page 1.
    app.clear_upstream_requests();
    app.get("/users?page=25&per_page=51").await;
    let (ti, tis) = app.upstream_requests();
    assert_eq!(pages_asked(&ti), ["31", "32"]);
    assert!(tis.is_empty(), "TIS page 1 is already cached: {tis:?}");

    // Deep into TIS: users 1900..1925 are TIS 650..675, pages 14 (650..700).
    app.clear_upstream_requests();
    app.get("/users?page=77&per_page=25").await;
    let (ti, tis) = app.upstream_requests();
    assert!(ti.is_empty(), "{ti:?}");
    assert_eq!(pages_asked(&tis), ["14"]);
}

#[tokio::test]
async fn concurrent_identical_cold_requests_fetch_each_upstream_page_once() {
    let app = spawn_app().await;
    let requests = (0..16).map(|_| app.get("/users?page=20&per_page=100"));
    let replies = futures_util::future::join_all(requests).await;
    assert!(replies.iter().all(|r| r.status == 200 && r.text == replies[0].text));
    let (ti, tis) = app.upstream_requests();
    // Users 1900..2000 → TIS 650..730 → TIS pages 14, 15; TI needs only page 1.
    assert_eq!(pages_asked(&ti), ["1"]);
    assert_eq!(pages_asked(&tis), ["1", "14", "15"]);
}

#[tokio::test]
async fn walking_all_pages_fetches_each_upstream_page_once() {
    let app = spawn_app().await;
    for page in 1..=80 {
        app.get(&format!("/users?page={page}&per_page=25")).await;
    }
    let (ti, tis) = app.upstream_requests();
    assert_eq!(ti.len(), 32, "1250 / 40 rounded up");
    assert_eq!(tis.len(), 15, "730 / 50 rounded up");
    assert_eq!(pages_asked(&ti), (1..=32).map(|p| p.to_string()).collect::<Vec<_>>());
}

/// Whole responses are kept and answered before any parsing (`cache::responses`): these
/// are the ways a kept response could be wrong, each checked.
mod kept_responses {
    use std::time::Duration;

    use users_gateway::sandbox::{Fault, SandboxOptions};

    use crate::helpers::{spawn_with, tick_paused_clock};

    /// Users 1240..1260: TI's last 10 (of 1250) and TIS's first 10.
    const BOTH: &str = "/users?per_page=20&page=63";

    #[tokio::test(start_paused = true)]
    async fn a_kept_response_shows_a_circuit_that_opened_since() {
        let _clock = tick_paused_clock();
        let env = [("GATEWAY_UPSTREAM_RETRIES", "0"), ("GATEWAY_BREAKER_FAILURES", "1")];
        let app = spawn_with(SandboxOptions::default(), &env).await;
        let first = app.get(BOTH).await.json();
        assert_eq!(first["meta"]["sources"][1]["circuit"], "closed");
        assert_eq!(app.get(BOTH).await.header("cache-status"), Some("users-gateway; hit"));

        // Another query fails on TIS and opens its circuit; BOTH's pages are still cached.
        app.sandbox.tis.control.set_fault(Fault::Status(502));
        app.get("/users?provider=tapintosafety&email=zz").await;
        let again = app.get(BOTH).await;
        assert_eq!(again.status, 200, "{}", again.text);
        let tis = &again.json()["meta"]["sources"][1];
        assert_eq!(
            (&tis["status"], &tis["circuit"]),
            (&"ok".into(), &"open".into()),
            "{tis}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_response_goes_stale_with_its_pages() {
        let _clock = tick_paused_clock();
        let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_CACHE_TTL_SECS", "10")]).await;
        let first = app.get(BOTH).await;
        tokio::time::advance(Duration::from_secs(9)).await;
        let hit = app.get(BOTH).await;
        assert_eq!(hit.header("cache-status"), Some("users-gateway; hit"));
        assert_eq!(hit.header("etag"), first.header("etag"));
        tokio::time::advance(Duration::from_secs(2)).await;
        app.clear_upstream_requests();
        let after = app.get(BOTH).await;
        let (ti, tis) = app.upstream_requests();
        assert!(!ti.is_empty() || !tis.is_empty(), "its pages expired: refetched");
        assert_ne!(after.header("cache-status"), Some("users-gateway; hit"));
    }

    #[tokio::test]
    async fn a_kept_response_still_needs_the_key_and_honours_if_none_match() {
        let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_API_KEYS", "k1")]).await;
        let auth = [("authorization", "Bearer k1")];
        let first = app.get_with(BOTH, &auth).await;
        assert_eq!(first.status, 200);
        assert_eq!(
            app.get_with(BOTH, &auth).await.header("cache-status"),
            Some("users-gateway; hit")
        );
        assert_eq!(app.get(BOTH).await.status, 401, "a kept response is no way around auth");
        let etag = first.header("etag").unwrap();
        let not_modified = app.get_with(BOTH, &[auth[0], ("if-none-match", etag)]).await;
        assert_eq!(not_modified.status, 304);
        assert!(not_modified.text.is_empty());
        assert_eq!(not_modified.header("etag"), Some(etag));
    }
}

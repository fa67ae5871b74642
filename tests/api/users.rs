//! Shapes, normalization, ordering and paging of `GET /users` and `GET /users/{id}`.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use users_gateway::sandbox::SandboxOptions;

use crate::helpers::{expected_user, ids, spawn_app, spawn_with};

#[tokio::test]
async fn walking_every_page_returns_each_user_once_in_documented_order() {
    let app = spawn_app().await;
    let expected = app.expected_ids();
    let total = expected.len() as u64;
    assert_eq!(total, 1250 + 730);
    for per_page in [7u64, 25, 100] {
        let total_pages = total.div_ceil(per_page);
        let mut walked = Vec::new();
        for page in 1..=total_pages + 1 {
            let reply = app.get(&format!("/users?page={page}&per_page={per_page}")).await;
            assert_eq!(reply.status, 200);
            let body = reply.json();
            let meta = &body["meta"];
            assert_eq!(meta["total"], total);
            assert_eq!(meta["total_pages"], total_pages);
            assert_eq!(meta["has_more"], page < total_pages);
            assert_eq!(meta["partial"], false);
            assert_eq!(reply.header("x-total-count"), Some(total.to_string().as_str()));
            let on_page = ids(&body);
            if page > total_pages {
                assert!(on_page.is_empty(), "past the end is empty");
            }
            walked.extend(on_page);
        }
        assert_eq!(walked, expected, "per_page={per_page}");
    }
}

fn instant(value: &Value) -> Option<OffsetDateTime> {
    value
        .as_str()
        .map(|text| OffsetDateTime::parse(text, &Rfc3339).unwrap())
}

#[tokio::test]
async fn every_user_is_normalized_from_its_upstream_record() {
    let app = spawn_app().await;
    let records: Vec<(&str, &Value)> = app
        .sandbox
        .ti
        .records
        .iter()
        .map(|r| ("thoughtindustries", r))
        .chain(app.sandbox.tis.records.iter().map(|r| ("tapintosafety", r)))
        .collect();
    let mut users = Vec::new();
    for page in 1..=20 {
        let body = app
            .get(&format!("/users?page={page}&per_page=100&include=raw"))
            .await
            .json();
        users.extend(body["data"].as_array().unwrap().clone());
    }
    assert_eq!(users.len(), records.len());
    let fields = [
        "id",
        "source",
        "provider",
        "provider_id",
        "email",
        "username",
        "first_name",
        "last_name",
        "display_name",
        "role",
        "employee_id",
        "active",
        "created_at",
        "updated_at",
        "last_active_at",
        "raw",
    ];
    for (user, (source, record)) in users.iter().zip(records) {
        let expected = expected_user(source, record);
        assert_eq!(
            user.as_object().unwrap().len(),
            fields.len(),
            "exactly the SPEC §4 fields: {user}"
        );
        for field in fields {
            let (got, want) = (&user[field], &expected[field]);
            if field.ends_with("_at") {
                assert_eq!(instant(got), instant(want), "{field} of {}", expected["id"]);
            } else {
                assert_eq!(got, want, "{field} of {}", expected["id"]);
            }
        }
    }
    // The sandbox's variety reaches the output: accents, apostrophes, and fallbacks.
    assert!(users
        .iter()
        .any(|u| u["last_name"].as_str().is_some_and(|n| n.contains('\''))));
    assert!(users.iter().any(|u| u["email"].is_null()));
    assert!(
        users.iter().any(|u| u["raw"]["client"]["secretKey"] == "***"),
        "secrets are redacted from raw"
    );
    let without_raw = app.get("/users?per_page=1").await.json();
    assert!(without_raw["data"][0].get("raw").is_none(), "raw only with include=raw");
}

#[tokio::test]
async fn provider_selects_sources_and_reports_only_those() {
    let app = spawn_app().await;
    let body = app.get("/users?provider=tapintosafety&per_page=5").await.json();
    assert_eq!(body["meta"]["total"], 730);
    let sources = body["meta"]["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["source"], "tapintosafety");
    let first_tis = format!("tapintosafety:{}", app.sandbox.tis.records[0]["id"].as_str().unwrap());
    assert_eq!(ids(&body)[0], first_tis);
    let (ti_requests, _) = app.upstream_requests();
    assert!(
        ti_requests.is_empty(),
        "an unselected source is not called: {ti_requests:?}"
    );

    let both = app
        .get("/users?provider=tapintosafety,thoughtindustries&per_page=1")
        .await
        .json();
    assert_eq!(both["meta"]["total"], 1980);
    assert_eq!(
        both["meta"]["sources"][0]["source"], "thoughtindustries",
        "configured order, not the caller's"
    );
}

#[tokio::test]
async fn paging_headers_and_links() {
    let app = spawn_app().await;
    let reply = app.get("/users?page=2&per_page=25&provider=thoughtindustries").await;
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.header("link"),
        Some(
            "</users?page=1&per_page=25&provider=thoughtindustries>; rel=\"first\", \
             </users?page=1&per_page=25&provider=thoughtindustries>; rel=\"prev\", \
             </users?page=3&per_page=25&provider=thoughtindustries>; rel=\"next\", \
             </users?page=50&per_page=25&provider=thoughtindustries>; rel=\"last\""
        )
    );
    assert_eq!(reply.header("x-total-count"), Some("1250"));
    let links = &reply.json()["links"];
    assert_eq!(links["self"], "/users?page=2&per_page=25&provider=thoughtindustries");
    assert_eq!(links["last"], "/users?page=50&per_page=25&provider=thoughtindustries");

    let last = app.get("/users?page=50&per_page=25&provider=thoughtindustries").await;
    assert!(!last.header("link").unwrap().contains("rel=\"next\""));
    assert!(last.json()["links"]["next"].is_null());
    let first = app.get("/users?per_page=25").await;
    assert!(first.json()["links"]["prev"].is_null());
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let reply = app
        .get_with("/users?per_page=1", &[("x-request-id", "caller-abc.123")])
        .await;
    assert_eq!(reply.header("x-request-id"), Some("caller-abc.123"));
    let generated = app
        .get_with("/users?per_page=1", &[("x-request-id", "bad id with spaces")])
        .await;
    let id = generated.header("x-request-id").unwrap();
    assert_ne!(id, "bad id with spaces");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert!(app.get("/healthz").await.header("x-request-id").is_some());
}

#[tokio::test]
async fn etag_and_if_none_match() {
    let app = spawn_app().await;
    let reply = app.get("/users?per_page=3").await;
    let etag = reply.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "strong: {etag}");
    let again = app.get_with("/users?per_page=3", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.text.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let other = app.get_with("/users?per_page=4", &[("if-none-match", &etag)]).await;
    assert_eq!(other.status, 200);
}

#[tokio::test]
async fn one_user_by_id_from_each_provider() {
    let app = spawn_app().await;
    let ti_record = &app.sandbox.ti.records[1100];
    let ti_id = format!("thoughtindustries:{}", ti_record["id"].as_str().unwrap());
    let reply = app.get(&format!("/users/{ti_id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["id"], ti_id);
    assert_eq!(reply.json()["email"], ti_record["email"]);

    app.clear_upstream_requests();
    let tis_record = &app.sandbox.tis.records[600];
    let tis_id = tis_record["id"].as_str().unwrap();
    let reply = app.get(&format!("/users/tapintosafety:{tis_id}?include=raw")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["raw"], *tis_record);
    let (_, tis_requests) = app.upstream_requests();
    assert_eq!(
        tis_requests,
        vec![format!("/api/v2/users?userId={tis_id}&page=1")],
        "userId is pushed down"
    );

    for missing in [
        "/users/tapintosafety:not-a-guid",
        "/users/tapintosafety:0f8fad5b-d9cb-469f-a165-70867728950e",
        "/users/nosuchsource:abc",
        "/users/no-colon",
        "/users/thoughtindustries:00000000-0000-0000-0000-000000000000",
    ] {
        let reply = app.get(missing).await;
        assert_eq!(reply.status, 404, "{missing}");
        assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    }
    let (_, tis_requests) = app.upstream_requests();
    assert!(
        !tis_requests.iter().any(|r| r.contains("not-a-guid")),
        "a malformed GUID never reaches TIS"
    );
}

#[tokio::test]
async fn a_user_within_the_page_ceiling_is_found_on_a_tenant_past_it() {
    // TI has 25 pages of 50 and no id lookup: finding a user scans it in upstream order.
    let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_MAX_UPSTREAM_PAGES", "2")]).await;
    let early = &app.sandbox.ti.records[3];
    let early_id = format!("thoughtindustries:{}", early["id"].as_str().unwrap());
    let reply = app.get(&format!("/users/{early_id}")).await;
    assert_eq!(reply.status, 200, "a user on page 1 is within reach: {}", reply.text);
    assert_eq!(reply.json()["email"], early["email"]);
    let (ti, _) = app.upstream_requests();
    assert!(ti.len() <= 2, "the scan stays within the ceiling: {ti:?}");

    let late = &app.sandbox.ti.records[1100];
    let reply = app
        .get(&format!("/users/thoughtindustries:{}", late["id"].as_str().unwrap()))
        .await;
    assert_eq!(reply.status, 422, "past the ceiling it says so: {}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    assert!(app.upstream_requests().0.len() <= 2, "and reads nothing past it");
}

#[tokio::test]
async fn upstream_requests_carry_the_spec_headers() {
    let app = spawn_app().await;
    let reply = app.get_with("/users?per_page=1", &[("x-request-id", "trace-42")]).await;
    assert_eq!(reply.status, 200);
    for received in app
        .sandbox
        .ti
        .control
        .received()
        .into_iter()
        .chain(app.sandbox.tis.control.received())
    {
        // The sandbox answers 401 without the right bearer key, so a 200 proves Authorization.
        assert_eq!(received.request_id.as_deref(), Some("trace-42"));
        assert_eq!(received.accept.as_deref(), Some("application/json"));
        let agent = received.user_agent.unwrap();
        assert_eq!(agent, format!("users-gateway/{}", env!("CARGO_PKG_VERSION")));
    }
}

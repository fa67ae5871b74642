//! `GET /users/plan`: every planner decision, page accounting from the cache, no upstream
//! call; and the page ceiling.

use serde_json::Value;
use users_gateway::sandbox::SandboxOptions;

use crate::helpers::{spawn_app, spawn_with};

fn source<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == name)
        .unwrap()
}

#[tokio::test]
async fn each_decision_is_shown_and_explained() {
    let app = spawn_app().await;

    let plan = app.get("/users/plan").await.json();
    for name in ["thoughtindustries", "tapintosafety"] {
        assert_eq!(source(&plan, name)["read"], "direct", "no filter, no sort");
    }
    assert!(plan["order"].as_str().unwrap().contains("configured order"));

    let plan = app.get("/users/plan?role=Admin").await.json();
    let ti = source(&plan, "thoughtindustries");
    assert_eq!(
        ti["read"], "full",
        "a pushed-down filter is checked by one full read first"
    );
    assert!(ti["reason"].as_str().unwrap().contains("first read"), "{ti}");
    assert_eq!(ti["facts"]["filter"], "unchecked");
    assert_eq!(ti["pushed_down"]["role"], "admin");
    assert_eq!(ti["upstream_request"], "GET /incoming/v2/users?role=admin&page={n}");
    assert!(ti["assumptions"][0].as_str().unwrap().contains("lowercased"));
    let tis = source(&plan, "tapintosafety");
    assert_eq!(tis["read"], "full");
    assert_eq!(tis["gateway_only_filters"], serde_json::json!(["role"]));
    assert!(tis["reason"].as_str().unwrap().contains("role cannot be pushed down"));

    let plan = app.get("/users/plan?employee_id=EMP-1&email=site").await.json();
    let ti = source(&plan, "thoughtindustries");
    assert_eq!(ti["action"], "skip");
    assert!(ti["reason"].as_str().unwrap().contains("no employee_id"));
    let tis = source(&plan, "tapintosafety");
    assert_eq!(tis["read"], "full");
    assert_eq!(
        tis["pushed_down"],
        serde_json::json!({"email": "site", "orgId": "EMP-1"})
    );
    assert_eq!(
        tis["gateway_filters"],
        serde_json::json!(["email", "employee_id"]),
        "pushed filters are re-checked"
    );

    let plan = app.get("/users/plan?sort=-created_at").await.json();
    assert_eq!(plan["sort"], serde_json::json!(["-created_at"]));
    for name in ["thoughtindustries", "tapintosafety"] {
        assert_eq!(source(&plan, name)["read"], "full");
        assert!(source(&plan, name)["reason"].as_str().unwrap().starts_with("sort"));
    }

    let plan = app.get("/users/plan?provider=tapintosafety").await.json();
    assert_eq!(plan["sources"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/users/plan?page=0").await.status,
        400,
        "same validation as /users"
    );

    let (ti, tis) = app.upstream_requests();
    assert!(ti.is_empty() && tis.is_empty(), "a plan never calls an upstream");
}

#[tokio::test]
async fn facts_learned_by_a_read_change_the_plan() {
    let app = spawn_app().await;
    // The sandbox's TI filters roles exactly: one full read proves it.
    assert_eq!(
        app.get("/users?role=admin&provider=thoughtindustries").await.status,
        200
    );
    let plan = app
        .get("/users/plan?role=admin&provider=thoughtindustries&page=2&per_page=5")
        .await
        .json();
    let ti = source(&plan, "thoughtindustries");
    assert_eq!(ti["read"], "direct", "{ti}");
    assert!(ti["reason"].as_str().unwrap().contains("proved exact"), "{ti}");
    assert_eq!(ti["facts"]["filter"], "exact");
    let admins = app
        .sandbox
        .ti
        .records
        .iter()
        .filter(|user| user["roleKey"] == "admin")
        .count();
    assert_eq!(ti["facts"]["total"], admins as u64);
    assert_eq!(ti["facts"]["page_size"], 40);
    assert_eq!(ti["pages"]["to_read"], "1", "users 5..10 of the admins are on page 1");
    assert_eq!(plan["upstream_calls"], 0, "and cached");
}

#[tokio::test]
async fn pages_to_read_and_cached_follow_the_cache() {
    let app = spawn_app().await;
    let path = "page=30&per_page=25";
    let cold = app.get(&format!("/users/plan?{path}")).await.json();
    let ti = &source(&cold, "thoughtindustries")["pages"];
    assert!(
        ti["to_read"].is_null() && ti["upstream_pages"].is_null(),
        "unknown before page 1 is read: {ti}"
    );
    assert_eq!(ti["cached"], 0);
    assert!(cold["upstream_calls"].is_null());

    app.get(&format!("/users?{path}")).await;
    let (ti_calls, tis_calls) = app.upstream_requests();
    let warm = app.get(&format!("/users/plan?{path}")).await.json();
    let ti = &source(&warm, "thoughtindustries")["pages"];
    assert_eq!(ti["upstream_pages"], 32);
    assert_eq!(
        ti["to_read"], "19",
        "the total is known now: only page 19, for users 725..750"
    );
    assert_eq!(ti["cached"], 1);
    assert_eq!(source(&warm, "thoughtindustries")["facts"]["total"], 1250);
    assert_eq!(
        source(&warm, "tapintosafety")["pages"]["to_read"],
        "",
        "no TIS user is on this page"
    );
    assert_eq!(warm["upstream_calls"], 0);
    assert_eq!(
        ti_calls.len() + tis_calls.len(),
        3,
        "what the plan lists is what /users read"
    );

    let next = app.get("/users/plan?page=31&per_page=25").await.json();
    let ti = &source(&next, "thoughtindustries")["pages"];
    assert_eq!(ti["to_read"], "19-20");
    assert_eq!(next["upstream_calls"], 1, "only page 20 is not cached");
}

#[tokio::test]
async fn the_page_ceiling_refuses_a_query_and_says_why() {
    let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_MAX_UPSTREAM_PAGES", "10")]).await;
    // TIS has 15 pages; a role filter needs all of them.
    let reply = app.get("/users?role=learner").await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    let problem = reply.json();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("tapintosafety") && detail.contains("15") && detail.contains("10"),
        "{detail}"
    );
    let (_, tis) = app.upstream_requests();
    assert_eq!(tis.len(), 1, "only page 1, which told the size");

    let plan = app.get("/users/plan?role=learner").await.json();
    assert_eq!(source(&plan, "tapintosafety")["pages"]["within_limit"], false);
    assert_eq!(
        app.get("/users?role=learner&provider=thoughtindustries").await.status,
        200,
        "a direct read is not limited"
    );
}

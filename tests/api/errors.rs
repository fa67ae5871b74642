//! Bad input: RFC 9457 problems naming each parameter, and no upstream call.

use users_gateway::sandbox::SandboxOptions;

use crate::helpers::{spawn_app, spawn_with};

#[tokio::test]
async fn bad_parameters_are_named_problems_and_never_reach_an_upstream() {
    let app = spawn_app().await;
    let cases: &[(&str, &[&str])] = &[
        ("/users?page=0", &["page"]),
        ("/users?per_page=1000", &["per_page"]),
        ("/users?page=abc&per_page=-1", &["page", "per_page"]),
        ("/users?provider=salesforce", &["provider"]),
        ("/users?include=everything", &["include"]),
        ("/users?pgae=2", &["pgae"]),
        ("/users?page=1&page=2", &["page"]),
        ("/users?sort=password", &["sort"]),
        ("/users?role=&user_id=42", &["role", "user_id"]),
        ("/users?email=%20%20&sort=email,", &["email", "sort"]),
        ("/users/thoughtindustries:x?include=all", &["include"]),
    ];
    for (path, names) in cases {
        let reply = app.get(path).await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{path}");
        let problem = reply.json();
        assert_eq!(problem["status"], 400);
        assert_eq!(problem["type"], "/problems/invalid-parameters");
        assert!(problem["title"].is_string() && problem["detail"].is_string());
        let got: Vec<&str> = problem["invalid_params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(&got, names, "{path}");
        for name in *names {
            assert!(
                problem["detail"].as_str().unwrap().contains(name),
                "{path}: detail names {name}"
            );
        }
    }
    let (ti, tis) = app.upstream_requests();
    assert!(
        ti.is_empty() && tis.is_empty(),
        "bad input reached an upstream: {ti:?} {tis:?}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    let reply = app.get("/nope").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["status"], 404);
    let bad_path = app.get("/users/%FF%FE").await;
    assert_eq!(bad_path.status, 404);
    assert_eq!(bad_path.header("content-type"), Some("application/problem+json"));
    let post = app.http.post(format!("{}/users", app.base)).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 405);
    assert_eq!(post.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn caller_keys_guard_users_but_not_operations() {
    let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_API_KEYS", "key-one, key-two")]).await;
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "key-one")],
    ] {
        let reply = app.get_with("/users", &headers).await;
        assert_eq!(reply.status, 401, "{headers:?}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer realm=\"users-gateway\""));
        assert_eq!(reply.json()["status"], 401);
        assert!(!reply.text.contains("key-one"));
    }
    assert_eq!(
        app.get_with("/users?per_page=1", &[("authorization", "Bearer key-two")])
            .await
            .status,
        200
    );
    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs/"] {
        assert_eq!(app.get(open).await.status, 200, "{open}");
    }
    let (ti, tis) = app.upstream_requests();
    assert_eq!(
        ti.len() + tis.len(),
        2,
        "only the authorized requests reached upstreams (the second from cache)"
    );
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let app = spawn_with(
        SandboxOptions::default(),
        &[("GATEWAY_CORS_ORIGINS", "https://app.example")],
    )
    .await;
    let allowed = app
        .get_with("/users?per_page=1", &[("origin", "https://app.example")])
        .await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(allowed
        .header("access-control-expose-headers")
        .unwrap()
        .contains("x-total-count"));
    let other = app
        .get_with("/users?per_page=1", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    let plain = spawn_app()
        .await
        .get_with("/healthz", &[("origin", "https://app.example")])
        .await;
    assert_eq!(
        plain.header("access-control-allow-origin"),
        None,
        "no CORS unless configured"
    );
}

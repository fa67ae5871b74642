//! The committed OpenAPI document follows the code; the served one and Swagger UI work.

use users_gateway::http::openapi::document_json;

use crate::helpers::spawn_app;

#[test]
fn committed_openapi_matches_the_generated_document() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
        .expect("openapi/openapi.json exists");
    assert!(
        committed == document_json(),
        "openapi/openapi.json is stale: regenerate it with `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn serves_the_document_and_swagger_ui() {
    let app = spawn_app().await;
    let served = app.get("/openapi.json").await.json();
    let generated: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
    assert_eq!(served, generated);
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/users", "/users/{id}", "/healthz", "/readyz", "/metrics"] {
        assert!(served["paths"].get(path).is_some(), "{path} documented");
    }
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status, 200);
    assert!(docs.text.contains("swagger"), "Swagger UI page");
    let ready = app.get("/readyz").await.json();
    assert_eq!(ready["sources"].as_array().unwrap().len(), 2);
    app.get("/users?per_page=1").await;
    let metrics = app.get("/metrics").await.text;
    assert!(metrics.contains("gateway_http_requests_total"), "{metrics}");
    assert!(metrics.contains("gateway_upstream_requests_total"));
}

/// SPEC §5: Swagger UI pre-fills an optional parameter's `example` into "Try it out", so a
/// request with only what a person filled in would carry every filter's example. No optional
/// parameter (nor its schema) has one; required ones (the path's `id`) may.
#[test]
fn optional_parameters_carry_no_example_swagger_ui_would_prefill() {
    let document: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
    let mut optional = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["required"] == true {
                    continue;
                }
                optional += 1;
                let name = &parameter["name"];
                for holder in [parameter, &parameter["schema"]] {
                    for key in ["example", "examples"] {
                        assert!(holder.get(key).is_none(), "{method} {path}: `{name}` has an `{key}`");
                    }
                }
            }
        }
    }
    assert!(optional >= 9, "only {optional} optional parameters found");
}

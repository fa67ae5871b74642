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

fn document() -> serde_json::Value {
    serde_json::from_str(&document_json()).unwrap()
}

/// SPEC §5 and issue 10: every response and header described, with an example; a problem's
/// example is a problem of that status. (`@redocly/cli lint`, `ci/openapi-lint.sh`, checks
/// that each example fits its schema.)
#[test]
fn every_response_body_and_header_is_described_with_an_example() {
    let doc = document();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let operation = &item["get"];
        assert!(
            operation["description"].is_string() || operation["summary"].is_string(),
            "{path}"
        );
        for param in operation["parameters"].as_array().into_iter().flatten() {
            assert!(
                param["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{path}: {param}"
            );
        }
        for (status, response) in operation["responses"].as_object().unwrap() {
            let context = format!("{path} {status}");
            assert!(
                response["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{context}"
            );
            for (media_type, content) in response["content"].as_object().into_iter().flatten() {
                let example = &content["example"];
                assert!(!example.is_null(), "{context} {media_type}: no example");
                if media_type == "application/problem+json" {
                    assert_eq!(example["status"].to_string(), *status, "{context}");
                    assert!(example["detail"].is_string(), "{context}");
                }
                seen += 1;
            }
            for (name, header) in response["headers"].as_object().into_iter().flatten() {
                assert!(header["description"].is_string(), "{context} {name}");
                assert!(!header["example"].is_null(), "{context} {name}: no example");
            }
        }
    }
    assert!(seen > 40, "{seen} response bodies");
}

/// The documented problems are the gateway's own: a real 400 and 401 equal their examples.
#[tokio::test]
async fn problem_examples_are_what_the_gateway_answers() {
    let doc = document();
    let example = |status: &str| {
        doc["paths"]["/users"]["get"]["responses"][status]["content"]["application/problem+json"]["example"].clone()
    };
    let app = spawn_app().await;
    let bad = app.get("/users?per_page=1000&fields=nickname").await;
    assert_eq!(bad.json(), example("400"));
    let keyed = crate::helpers::spawn_with(Default::default(), &[("GATEWAY_API_KEYS", "k")]).await;
    assert_eq!(keyed.get("/users").await.json(), example("401"));
}

/// `fields` is documented with every §4 field name, on the three operations that take it;
/// the export takes `/users`' parameters but paging.
#[test]
fn fields_and_the_export_parameters_are_documented() {
    use users_gateway::query::fields::Field;
    let doc = document();
    let params = |path: &str| -> Vec<serde_json::Value> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let names = |path: &str| -> Vec<String> {
        params(path)
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for path in ["/users", "/users/{id}", "/users/export"] {
        let fields = params(path)
            .into_iter()
            .find(|p| p["name"] == "fields")
            .unwrap_or_else(|| panic!("{path}"));
        let pattern = fields["schema"]["pattern"].as_str().unwrap();
        let regex_group = format!("({})", Field::ALL.map(Field::as_str).join("|"));
        assert_eq!(pattern, format!("^{regex_group}(,{regex_group})*$"), "{path}");
    }
    let mut want = names("/users");
    want.retain(|name| name != "page" && name != "per_page");
    assert_eq!(names("/users/export"), want);
}

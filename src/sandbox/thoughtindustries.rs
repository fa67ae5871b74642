//! Simulated Thought Industries `GET /incoming/v2/users`: bearer auth, `role` (exact
//! match on `roleKey`), `page`, and a page size of the server's choosing.
//! A [`DataFault`] in the request's extensions makes the page lie (see its docs).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Extension;
use axum::Router;
use serde_json::{json, Value};

use super::{authorized, json_response, page_param, Control, DataFault};

#[derive(Clone)]
struct Sim {
    records: Arc<Vec<Value>>,
    page_size: usize,
    control: Arc<Control>,
}

pub fn router(records: Arc<Vec<Value>>, page_size: usize, control: Arc<Control>) -> Router {
    let sim = Sim {
        records,
        page_size: page_size.max(1),
        control,
    };
    Router::new().route("/incoming/v2/users", get(list)).with_state(sim)
}

async fn list(
    State(sim): State<Sim>,
    fault: Option<Extension<DataFault>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    if !authorized(&headers, &sim.control) {
        return json_response(StatusCode::UNAUTHORIZED, &json!({ "message": "Unauthorized" }));
    }
    let Some(page) = page_param(params.get("page").map(String::as_str)) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "message": "page must be a positive integer" }),
        );
    };
    let role = params.get("role");
    let matching: Vec<&Value> = sim
        .records
        .iter()
        .filter(|user| role.is_none_or(|role| user["roleKey"].as_str() == Some(role.as_str())))
        .collect();
    let everyone: Vec<&Value> = sim.records.iter().collect();
    let cut = DataFault::cut(
        fault.map(|Extension(fault)| fault),
        &matching,
        &everyone,
        role.is_some(),
        page,
        sim.page_size,
    );
    // The facets describe the query as asked, whatever the page lies about.
    let mut role_counts: BTreeMap<&str, u64> = BTreeMap::new();
    for user in &matching {
        if let Some(role) = user["roleKey"].as_str() {
            *role_counts.entry(role).or_default() += 1;
        }
    }
    json_response(
        StatusCode::OK,
        &json!({
            "data": { "APIUsers": {
                "pageInfo": {
                    "perPage": sim.page_size,
                    "currentPage": cut.page,
                    "total": cut.total,
                    "hasMore": cut.page.saturating_mul(sim.page_size) < cut.total,
                },
                "aggregations": [{
                    "key": "roleKey",
                    "label": "Role",
                    "buckets": role_counts.iter().map(|(role, count)| json!({
                        "query": format!("role={role}"), "value": role, "label": role, "description": "", "count": count,
                    })).collect::<Vec<_>>(),
                }],
                "users": cut.users,
            }}
        }),
    )
}

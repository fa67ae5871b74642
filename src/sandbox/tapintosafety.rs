//! Simulated TapIntoSafety `GET /api/v2/users`: bearer auth, 50 per page, `email`
//! (partial, over username and email), `orgId` (partial), `userId` (a full GUID, else
//! `400 INVALID_MODEL`).
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

pub const PAGE_SIZE: usize = 50;

#[derive(Clone)]
struct Sim {
    records: Arc<Vec<Value>>,
    control: Arc<Control>,
}

pub fn router(records: Arc<Vec<Value>>, control: Arc<Control>) -> Router {
    Router::new()
        .route("/api/v2/users", get(list))
        .with_state(Sim { records, control })
}

fn invalid_model(detail: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "code": "INVALID_MODEL",
            "message": "One or more parameters provided are invalid. See details for more information.",
            "details": [detail],
        }),
    )
}

fn contains_ci(field: &Value, needle: &str) -> bool {
    field.as_str().is_some_and(|text| text.to_lowercase().contains(needle))
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
        return invalid_model("page must be a positive integer");
    };
    let user_id = match params.get("userId") {
        None => None,
        Some(text) => match uuid::Uuid::try_parse(text) {
            Ok(id) if text.len() == 36 => Some(id),
            _ => return invalid_model("userId must be a full and valid GUID"),
        },
    };
    let email = params.get("email").map(|text| text.to_lowercase());
    let org_id = params.get("orgId").map(|text| text.to_lowercase());
    let same_id = |user: &Value| {
        user_id.is_none_or(|id| user["id"].as_str().and_then(|text| uuid::Uuid::try_parse(text).ok()) == Some(id))
    };
    let matching: Vec<&Value> = sim
        .records
        .iter()
        .filter(|user| {
            email
                .as_deref()
                .is_none_or(|needle| contains_ci(&user["email"], needle) || contains_ci(&user["username"], needle))
                && org_id
                    .as_deref()
                    .is_none_or(|needle| contains_ci(&user["organisationIdentifier"], needle))
                && same_id(user)
        })
        .collect();
    // A loose upstream drops the partial-match filters; a GUID lookup stays exact.
    let unfiltered: Vec<&Value> = sim.records.iter().filter(|user| same_id(user)).collect();
    let cut = DataFault::cut(
        fault.map(|Extension(fault)| fault),
        &matching,
        &unfiltered,
        email.is_some() || org_id.is_some(),
        page,
        PAGE_SIZE,
    );
    let n_entities = cut.users.len();
    json_response(
        StatusCode::OK,
        &json!({
            "entities": cut.users,
            "page": cut.page,
            "entitiesReturned": n_entities,
            "totalEntities": cut.total,
            "links": [],
        }),
    )
}

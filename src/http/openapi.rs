//! The OpenAPI 3.1 document, generated from the handlers and wire types.
//!
//! `openapi/openapi.json` in the repo is this document; a test fails when they differ.
//! Regenerate with `cargo run -- openapi > openapi/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{ops, plan, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "users-gateway",
        description = "One normalized, exactly paginated list of users over Thought Industries and TapIntoSafety.\n\n\
            Errors are RFC 9457 `application/problem+json`. When `GATEWAY_API_KEYS` is set, `/users*` need \
            `Authorization: Bearer <key>`; the operational endpoints and `/docs` never do."
    ),
    paths(users::list_users, plan::explain_plan, users::get_user, ops::healthz, ops::readyz, ops::metrics),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "The merged user list"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A key from GATEWAY_API_KEYS (only when it is set)"))
                    .build(),
            ),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as committed in `openapi/openapi.json`.
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

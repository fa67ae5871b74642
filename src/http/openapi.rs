//! The OpenAPI 3.1 document, generated from the handlers and wire types.
//!
//! `openapi/openapi.json` in the repo is this document; a test fails when they differ.
//! Regenerate with `cargo run -- openapi > openapi/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{examples, export, ops, plan, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "users-gateway",
        description = "One normalized, exactly paginated list of users over Thought Industries and TapIntoSafety.\n\n\
            Errors are RFC 9457 `application/problem+json`. When `GATEWAY_API_KEYS` is set, `/users*` need \
            `Authorization: Bearer <key>`; the operational endpoints and `/docs` never do. Every route is read-only: \
            any method but GET or HEAD gets a 405 problem with `Allow: GET,HEAD`."
    ),
    paths(users::list_users, plan::explain_plan, export::export_users, users::get_user, ops::healthz, ops::readyz, ops::metrics),
    modifiers(&BearerAuth, &HttpLayerProblems, &ExportParams, &Examples),
    servers((url = "/", description = "The gateway serving this document")),
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

/// The HTTP layer answers these before any route runs (`http::serve`), so every
/// operation can get them; SPEC §5 wants every problem response documented.
struct HttpLayerProblems;

impl Modify for HttpLayerProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        const PROBLEMS: [(&str, &str); 2] = [
            ("414", "The path and query are longer than 8 KiB"),
            ("431", "More than 100 header fields, or more than 32 KiB of headers"),
        ];
        for item in openapi.paths.paths.values_mut() {
            let Some(operation) = item.get.as_mut() else { continue };
            for (status, description) in PROBLEMS {
                let response = ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/problem+json",
                        Content::new(Some(Ref::from_schema_name("Problem"))),
                    )
                    .build();
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert(response.into());
            }
        }
    }
}

/// The export takes `GET /users`' parameters but `page` and `per_page`: copied from there,
/// so the two cannot drift apart.
struct ExportParams;

impl Modify for ExportParams {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let paths = &mut openapi.paths.paths;
        let list = paths.get("/users").and_then(|item| item.get.as_ref());
        let Some(params) = list.and_then(|operation| operation.parameters.clone()) else {
            return;
        };
        let params = params
            .into_iter()
            .filter(|param| !matches!(param, RefOr::T(param) if param.name == "page" || param.name == "per_page"))
            .collect();
        if let Some(export) = paths.get_mut("/users/export").and_then(|item| item.get.as_mut()) {
            export.parameters = Some(params);
        }
    }
}

/// An example for every response body and header (SPEC §5), from `examples`; runs last,
/// after the other modifiers added their responses.
struct Examples;

impl Modify for Examples {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(operation) = item.get.as_mut() else { continue };
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else { continue };
                for (media_type, content) in response.content.iter_mut() {
                    let RefOr::T(content) = content else { continue };
                    let example = match media_type.as_str() {
                        "application/problem+json" => status.parse().ok().and_then(examples::problem),
                        _ if status.starts_with('2') => examples::body(path),
                        _ => None,
                    };
                    if content.example.is_none() {
                        content.example = example;
                    }
                }
                if status == "401" {
                    let challenge = utoipa::openapi::HeaderBuilder::new()
                        .schema(Some(
                            utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String),
                        ))
                        .description(Some("The Bearer challenge (RFC 6750)"))
                        .build();
                    response
                        .headers
                        .entry("WWW-Authenticate".to_owned())
                        .or_insert(RefOr::T(challenge));
                }
                for (name, header) in response.headers.iter_mut() {
                    let RefOr::T(header) = header else { continue };
                    header.example = examples::header(name);
                }
            }
        }
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

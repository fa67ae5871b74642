//! TapIntoSafety `GET /api/v2/users` (providers/tapintosafety-users.md).
//!
//! Pages hold 50 entities, as documented; a malformed `userId` is `400 INVALID_MODEL`.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    normalize_records, parse_envelope, plausible_total, IdLookup, Provider, PushDown, Pushdown, PushdownOptions,
    PushedQuery, SourceError, SourceErrorCode, UpstreamPage,
};
use crate::model::{join_names, non_empty, ProviderKind, SourceName, User};
use crate::query::filter::{FilterName, Filters};

/// "50 results are returned per page."
pub const PAGE_SIZE: u32 = 50;

pub struct TapIntoSafety;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    entities: Vec<Box<RawValue>>,
    total_entities: u64,
    /// "The current page of results": checked against the page asked for.
    #[serde(default)]
    page: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUser {
    /// Missing or empty, the page is refused by its consistency check ("has no id").
    #[serde(default)]
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    organisation_identifier: Option<String>,
    #[serde(default)]
    has_access: Option<bool>,
}

impl Provider for TapIntoSafety {
    fn kind(&self) -> ProviderKind {
        ProviderKind::TapIntoSafety
    }

    fn list_path(&self) -> &'static str {
        "/api/v2/users"
    }

    fn parse_page(&self, source: &SourceName, _page: u64, body: &[u8]) -> Result<UpstreamPage, SourceError> {
        let envelope: Envelope = parse_envelope(source, body)?;
        if envelope.entities.len() > PAGE_SIZE as usize {
            return Err(SourceError::bad_response(format!(
                "page holds {} entities, more than the documented {PAGE_SIZE}",
                envelope.entities.len()
            )));
        }
        let (users, raw) = normalize_records(source, envelope.entities, normalize)?;
        Ok(UpstreamPage {
            users,
            raw,
            total: plausible_total(envelope.total_entities)?,
            page_size: PAGE_SIZE,
            echoed_page: envelope.page,
        })
    }

    /// `userId` selects one user but must be "a full and valid GUID"; anything else
    /// would be `INVALID_MODEL`, so it is answered without a call.
    fn lookup(&self, provider_id: &str) -> IdLookup {
        if is_full_guid(provider_id) {
            IdLookup::Pushed(PushedQuery::new(vec![("userId", provider_id.to_owned())]))
        } else {
            IdLookup::NoSuchUser
        }
    }

    fn classify_rejection(&self, status: u16, body: &[u8]) -> SourceError {
        let invalid_model = status == 400 && body.windows(13).any(|window| window == b"INVALID_MODEL");
        let message = if invalid_model {
            "upstream rejected the query parameters (INVALID_MODEL)".to_owned()
        } else {
            format!("upstream rejected the request with HTTP {status}")
        };
        SourceError::new(SourceErrorCode::Rejected, message)
    }
}

impl PushDown for TapIntoSafety {
    /// TIS filters by `email` (partial, over username and email), `orgId` (partial employee
    /// id) and `userId` (a full GUID): the gateway's `email`, `employee_id` and `user_id`.
    fn push_down(&self, filters: &Filters, _options: &PushdownOptions) -> Pushdown {
        let mut pushdown = Pushdown::default();
        if let Some(email) = &filters.email {
            pushdown.pushed.push("email", email.original.clone());
            pushdown.pushed_filters.push(FilterName::Email);
        }
        if let Some(employee_id) = &filters.employee_id {
            pushdown.pushed.push("orgId", employee_id.original.clone());
            pushdown.pushed_filters.push(FilterName::EmployeeId);
        }
        if let Some(user_id) = filters.user_id {
            pushdown.pushed.push("userId", user_id.hyphenated().to_string());
            pushdown.pushed_filters.push(FilterName::UserId);
        }
        pushdown
    }
}

/// The hyphenated 8-4-4-4-12 form only.
fn is_full_guid(text: &str) -> bool {
    text.len() == 36 && text.as_bytes()[8] == b'-' && uuid::Uuid::try_parse(text).is_ok()
}

fn normalize(source: &SourceName, wire: WireUser) -> User {
    let username = non_empty(wire.username);
    let first_name = non_empty(wire.first_name);
    let last_name = non_empty(wire.last_name);
    let display_name = join_names(first_name.as_deref(), last_name.as_deref())
        .or_else(|| username.clone())
        .unwrap_or_else(|| wire.id.clone());
    User {
        id: format!("{source}:{}", wire.id),
        source: source.clone(),
        provider: ProviderKind::TapIntoSafety,
        provider_id: wire.id,
        email: non_empty(wire.email),
        username,
        first_name,
        last_name,
        display_name,
        role: non_empty(wire.role),
        employee_id: non_empty(wire.organisation_identifier),
        active: wire.has_access,
        created_at: None,
        updated_at: None,
        last_active_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<UpstreamPage, SourceError> {
        TapIntoSafety.parse_page(&SourceName::parse("tis").unwrap(), 1, body.as_bytes())
    }

    #[test]
    fn maps_documented_fields() {
        let page = parse(
            r#"{"entities":[
              {"id":"g1","username":"sso-123","email":"","firstName":"José","lastName":null,"birthYear":-1,
               "role":"Learner","organisationIdentifier":"EMP-7","hasAccess":true,"userFilters":["x"]},
              {"id":"g2","username":"amy@x.io"},
              {"id":"g3"}],
              "page":1,"entitiesReturned":3,"totalEntities":3,"links":[]}"#,
        )
        .unwrap();
        assert_eq!((page.total, page.page_size), (3, 50));
        let jose = &page.users[0];
        assert_eq!(jose.id, "tis:g1");
        assert_eq!(jose.display_name, "José");
        assert_eq!(jose.email, None);
        assert_eq!(jose.username.as_deref(), Some("sso-123"));
        assert_eq!(jose.employee_id.as_deref(), Some("EMP-7"));
        assert_eq!(jose.active, Some(true));
        assert_eq!(jose.created_at, None);
        assert_eq!(page.users[1].display_name, "amy@x.io");
        assert_eq!(page.users[2].display_name, "g3");
    }

    #[test]
    fn lookup_pushes_down_only_full_guids() {
        let guid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        match TapIntoSafety.lookup(guid) {
            IdLookup::Pushed(pushed) => assert_eq!(pushed.to_string(), format!("userId={guid}")),
            other => panic!("{other:?}"),
        }
        for bad in [
            "42",
            "0f8fad5bd9cb469fa16570867728950e",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
            "",
        ] {
            assert_eq!(TapIntoSafety.lookup(bad), IdLookup::NoSuchUser, "{bad}");
        }
    }

    #[test]
    fn invalid_model_is_a_rejection() {
        let error = TapIntoSafety.classify_rejection(400, br#"{"code":"INVALID_MODEL","details":"userId"}"#);
        assert_eq!(error.code, SourceErrorCode::Rejected);
        assert!(error.message.contains("INVALID_MODEL"));
    }

    #[test]
    fn wrong_shapes_are_bad_responses() {
        for body in [
            "[]",
            r#"{"entities":{},"totalEntities":1}"#,
            r#"{"entities":[{"id":5}],"totalEntities":1}"#,
        ] {
            assert_eq!(parse(body).unwrap_err().code, SourceErrorCode::BadResponse, "{body}");
        }
    }
}

//! Thought Industries `GET /incoming/v2/users` (providers/thoughtindustries-users.md).
//!
//! The page size is whatever `pageInfo.perPage` says: learned, never assumed.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    normalize_records, parse_envelope, parse_timestamp, plausible_total, Provider, PushDown, Pushdown, PushdownOptions,
    PushedQuery, SourceError, UpstreamPage,
};
use crate::model::{join_names, non_empty, ProviderKind, SourceName, User};
use crate::query::filter::{FilterName, Filters};

pub struct ThoughtIndustries;

#[derive(Deserialize)]
struct Envelope {
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "APIUsers")]
    api_users: ApiUsers,
}

#[derive(Deserialize)]
struct ApiUsers {
    #[serde(rename = "pageInfo")]
    page_info: PageInfo,
    users: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    #[serde(default)]
    per_page: Option<u32>,
    /// Checked against the page asked for.
    #[serde(default)]
    current_page: Option<u64>,
    total: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUser {
    /// Missing or empty, the page is refused by its consistency check ("has no id").
    #[serde(default)]
    id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role_key: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    last_active_at: Option<String>,
}

impl Provider for ThoughtIndustries {
    fn kind(&self) -> ProviderKind {
        ProviderKind::ThoughtIndustries
    }

    fn list_path(&self) -> &'static str {
        "/incoming/v2/users"
    }

    fn parse_page(&self, source: &SourceName, page: u64, body: &[u8]) -> Result<UpstreamPage, SourceError> {
        let envelope: Envelope = parse_envelope(source, body)?;
        let ApiUsers { page_info, users } = envelope.data.api_users;
        let n_users = users.len() as u32;
        let page_size = match page_info.per_page {
            Some(per_page) if per_page > 0 => per_page,
            // Without perPage, a non-empty first page is a full page unless it holds everything.
            _ if page == 1 && n_users > 0 => n_users,
            _ if page_info.total == 0 => 1,
            _ => return Err(SourceError::bad_response("pageInfo.perPage is missing")),
        };
        if n_users > page_size {
            return Err(SourceError::bad_response(format!(
                "page holds {n_users} users but pageInfo.perPage is {page_size}"
            )));
        }
        let (users, raw) = normalize_records(source, users, normalize)?;
        Ok(UpstreamPage {
            users,
            raw,
            total: plausible_total(page_info.total)?,
            page_size,
            echoed_page: page_info.current_page,
        })
    }
}

impl PushDown for ThoughtIndustries {
    /// TI filters by `role` only; its users have no employee id.
    fn push_down(&self, filters: &Filters, options: &PushdownOptions) -> Pushdown {
        let mut pushdown = Pushdown::default();
        if filters.employee_id.is_some() {
            pushdown.cannot_match = Some("Thought Industries users have no employee_id".to_owned());
        }
        if let Some(role) = &filters.role {
            if options.ti_role_pushdown {
                pushdown.pushed = PushedQuery::new(vec![("role", role.folded.clone())]);
                pushdown.pushed_filters.push(FilterName::Role);
                pushdown.assumptions.push(
                    "role is sent lowercased: TI's docs do not say whether its role filter ignores case, and its \
                     role keys are lowercase identifiers (GATEWAY_TI_ROLE_PUSHDOWN=false turns this off)"
                        .to_owned(),
                );
            } else {
                pushdown
                    .notes
                    .push("role is not sent to TI: GATEWAY_TI_ROLE_PUSHDOWN=false".to_owned());
            }
        }
        pushdown
    }
}

fn normalize(source: &SourceName, wire: WireUser) -> User {
    let email = non_empty(wire.email);
    let first_name = non_empty(wire.first_name);
    let last_name = non_empty(wire.last_name);
    let display_name = non_empty(wire.name)
        .or_else(|| join_names(first_name.as_deref(), last_name.as_deref()))
        .or_else(|| email.clone())
        .unwrap_or_else(|| wire.id.clone());
    User {
        id: format!("{source}:{}", wire.id),
        source: source.clone(),
        provider: ProviderKind::ThoughtIndustries,
        provider_id: wire.id,
        email,
        username: None,
        first_name,
        last_name,
        display_name,
        role: non_empty(wire.role_key),
        employee_id: None,
        active: wire.disabled.map(|disabled| !disabled),
        created_at: parse_timestamp(wire.created_at.as_deref()),
        updated_at: parse_timestamp(wire.updated_at.as_deref()),
        last_active_at: parse_timestamp(wire.last_active_at.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::SourceErrorCode;

    fn parse(body: &str) -> Result<UpstreamPage, SourceError> {
        ThoughtIndustries.parse_page(&SourceName::parse("ti").unwrap(), 1, body.as_bytes())
    }

    #[test]
    fn maps_documented_fields_and_ignores_the_rest() {
        let page = parse(
            r#"{"data":{"APIUsers":{"pageInfo":{"perPage":3,"currentPage":1,"total":7,"hasMore":true},
            "aggregations":[],"users":[
              {"id":"a1","email":"zoe@x.io","firstName":"Zoë","lastName":"O'Brien","name":"","roleKey":"learner",
               "disabled":false,"createdAt":"2024-01-01T00:00:00.000Z","lastActiveAt":null,"bio":"hi","purchasedCourses":[]},
              {"id":"a2","email":"","firstName":null,"lastName":"Ng","disabled":true},
              {"id":"a3"}]}}}"#,
        )
        .unwrap();
        assert_eq!((page.total, page.page_size, page.users.len()), (7, 3, 3));
        let zoe = &page.users[0];
        assert_eq!(zoe.id, "ti:a1");
        assert_eq!(zoe.display_name, "Zoë O'Brien", "empty name falls back to first + last");
        assert_eq!(zoe.role.as_deref(), Some("learner"));
        assert_eq!(zoe.active, Some(true));
        assert_eq!(zoe.created_at.unwrap().unix_timestamp(), 1_704_067_200);
        assert_eq!(zoe.last_active_at, None);
        assert!(page.raw.unpack().get(0).unwrap().get().contains("\"bio\":\"hi\""));
        assert_eq!(page.users[1].email, None, "empty strings become null");
        assert_eq!(page.users[1].display_name, "Ng");
        assert_eq!(page.users[1].active, Some(false));
        assert_eq!(page.users[2].display_name, "a3", "falls back to the id");
        assert_eq!(page.users[2].active, None);
    }

    #[test]
    fn wrong_shapes_are_bad_responses() {
        for body in [
            "not json",
            "{}",
            r#"{"data":{"APIUsers":{"pageInfo":{"perPage":1,"total":2},"users":[{"id":"a"},{"id":"b"}]}}}"#,
            r#"{"data":{"APIUsers":{"pageInfo":{"perPage":2,"total":"many"},"users":[]}}}"#,
            r#"{"data":{"APIUsers":{"pageInfo":{"perPage":2,"total":18446744073709551615},"users":[]}}}"#,
        ] {
            let error = parse(body).unwrap_err();
            assert_eq!(error.code, SourceErrorCode::BadResponse, "{body}");
        }
    }

    #[test]
    fn extreme_timestamps_become_null_and_secrets_are_redacted() {
        let page = parse(
            r#"{"data":{"APIUsers":{"pageInfo":{"perPage":2,"total":2},"users":[
              {"id":"a","updatedAt":"9999-12-31T23:59:59-01:00","createdAt":"0000-01-01T00:00:00+01:00",
               "client":{"name":"Acme","secretKey":"tenant-secret"},"adminClients":[{"secretKey":"s2"}]},
              {"id":"b","createdAt":"2024-01-01T10:00:00+10:00"}]}}}"#,
        )
        .unwrap();
        assert_eq!(page.users[0].updated_at, None);
        assert_eq!(page.users[0].created_at, None);
        let unpacked = page.raw.unpack();
        let raw = unpacked.get(0).unwrap().get();
        assert!(!raw.contains("tenant-secret") && !raw.contains("s2"), "{raw}");
        assert!(raw.contains(r#""secretKey":"***""#) && raw.contains("Acme"), "{raw}");
        assert_eq!(
            page.users[1].created_at.unwrap().unix_timestamp(),
            1_704_067_200,
            "normalized to UTC"
        );
    }

    #[test]
    fn a_record_without_an_id_parses_with_an_empty_one_for_the_consistency_check_to_refuse() {
        let page =
            parse(r#"{"data":{"APIUsers":{"pageInfo":{"perPage":2,"total":1},"users":[{"email":"no id"}]}}}"#).unwrap();
        assert_eq!(page.users[0].provider_id, "");
    }

    #[test]
    fn missing_per_page_is_learned_from_a_first_page() {
        let page = parse(r#"{"data":{"APIUsers":{"pageInfo":{"total":9},"users":[{"id":"a"},{"id":"b"}]}}}"#).unwrap();
        assert_eq!(page.page_size, 2);
    }
}

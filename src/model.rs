//! Domain types shared by every layer: providers, source names, the normalized user.
//!
//! Parsed once at the edge (config, adapters); the core never sees upstream field names.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

/// A kind of upstream API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    ThoughtIndustries,
    TapIntoSafety,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 2] = [ProviderKind::ThoughtIndustries, ProviderKind::TapIntoSafety];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::ThoughtIndustries => "thoughtindustries",
            ProviderKind::TapIntoSafety => "tapintosafety",
        }
    }

    pub fn parse(text: &str) -> Option<ProviderKind> {
        ProviderKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of one configured upstream instance; namespaces user ids (`{source}:{id}`).
///
/// Lowercase ASCII letters, digits, `-` and `_`, 1 to 64 characters: it appears in ids,
/// URLs and metric labels, and must never contain the `:` that separates an id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceName(Arc<str>);

impl SourceName {
    pub fn parse(text: &str) -> Result<SourceName, String> {
        let valid = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(SourceName(Arc::from(text)))
        } else {
            Err(format!(
                "source name {text:?} must be 1 to 64 characters of a-z, 0-9, '-' or '_'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One user, normalized from either provider (SPEC §4).
#[derive(Debug, Clone)]
pub struct User {
    /// `"{source}:{provider_id}"`, unique across sources.
    pub id: String,
    pub source: SourceName,
    pub provider: ProviderKind,
    pub provider_id: String,
    pub email: Option<String>,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: String,
    pub role: Option<String>,
    pub employee_id: Option<String>,
    pub active: Option<bool>,
    pub created_at: Option<OffsetDateTime>,
    pub updated_at: Option<OffsetDateTime>,
    pub last_active_at: Option<OffsetDateTime>,
}

impl User {
    /// Bytes this user occupies, counted as an allocator hands them out (16-byte classes):
    /// the cache weighs pages with it, so its bound is the memory it really takes.
    pub fn approximate_bytes(&self) -> usize {
        let text = |text: &str| match text.len() {
            0 => 0,
            len => len.next_multiple_of(16),
        };
        let optional = [
            &self.email,
            &self.username,
            &self.first_name,
            &self.last_name,
            &self.role,
            &self.employee_id,
        ];
        std::mem::size_of::<User>()
            + text(&self.id)
            + text(&self.provider_id)
            + text(&self.display_name)
            + optional
                .iter()
                .map(|field| field.as_deref().map_or(0, text))
                .sum::<usize>()
    }
}

/// Joins the non-empty names with one space (SPEC §4 "first + last").
pub fn join_names(first: Option<&str>, last: Option<&str>) -> Option<String> {
    match (first, last) {
        (Some(first), Some(last)) => Some(format!("{first} {last}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    }
}

/// Empty strings from upstream become null (SPEC §4).
pub fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}

/// A Thought Industries user with only its id: unit tests fill in what they look at.
#[cfg(test)]
pub(crate) fn bare_user(source: &str, id: &str) -> User {
    User {
        id: format!("{source}:{id}"),
        source: SourceName::parse(source).unwrap(),
        provider: ProviderKind::ThoughtIndustries,
        provider_id: id.to_owned(),
        email: None,
        username: None,
        first_name: None,
        last_name: None,
        display_name: id.to_owned(),
        role: None,
        employee_id: None,
        active: None,
        created_at: None,
        updated_at: None,
        last_active_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_reject_separators_and_uppercase() {
        assert!(SourceName::parse("thoughtindustries").is_ok());
        assert!(SourceName::parse("ti-tenant_2").is_ok());
        for bad in ["", "a:b", "Upper", "with space", &"x".repeat(65)] {
            assert!(SourceName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_join_with_one_space() {
        assert_eq!(join_names(Some("Zoë"), Some("O'Brien")).as_deref(), Some("Zoë O'Brien"));
        assert_eq!(join_names(None, Some("Ng")).as_deref(), Some("Ng"));
        assert_eq!(join_names(Some("Ana"), None).as_deref(), Some("Ana"));
        assert_eq!(join_names(None, None), None);
    }
}

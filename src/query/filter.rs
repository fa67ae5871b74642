//! Filters and sort keys of `GET /users` (SPEC §3), and what "matches" means.
//!
//! The gateway applies every filter itself, pushed down or not, so an upstream that
//! matches more loosely never widens a result. Case-insensitive means Unicode lowercase.

use uuid::Uuid;

use crate::model::User;

/// A caller's text filter: as typed (sent upstream, shown in links) and case-folded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FilterText {
    pub original: String,
    pub folded: String,
}

impl FilterText {
    pub fn new(original: &str) -> FilterText {
        FilterText {
            original: original.to_owned(),
            folded: original.to_lowercase(),
        }
    }
}

/// The filters of one query; all given ones must match (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filters {
    /// Case-insensitive exact match on `role`.
    pub role: Option<FilterText>,
    /// Case-insensitive substring of `email` or `username`.
    pub email: Option<FilterText>,
    /// Case-insensitive substring of `employee_id`.
    pub employee_id: Option<FilterText>,
    /// Exact match on `provider_id`, compared as UUIDs.
    pub user_id: Option<Uuid>,
}

/// The name of a filter, as in the query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FilterName {
    Role,
    Email,
    EmployeeId,
    UserId,
}

impl FilterName {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterName::Role => "role",
            FilterName::Email => "email",
            FilterName::EmployeeId => "employee_id",
            FilterName::UserId => "user_id",
        }
    }
}

fn contains_folded(field: Option<&str>, needle: &str) -> bool {
    field.is_some_and(|text| text.to_lowercase().contains(needle))
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self.given().is_empty()
    }

    /// The filters given, in a fixed order.
    pub fn given(&self) -> Vec<FilterName> {
        [
            (self.role.is_some(), FilterName::Role),
            (self.email.is_some(), FilterName::Email),
            (self.employee_id.is_some(), FilterName::EmployeeId),
            (self.user_id.is_some(), FilterName::UserId),
        ]
        .into_iter()
        .filter_map(|(given, name)| given.then_some(name))
        .collect()
    }

    /// These filters restricted to `names`.
    pub fn only(&self, names: &[FilterName]) -> Filters {
        let keep = |name| names.contains(&name);
        Filters {
            role: self.role.clone().filter(|_| keep(FilterName::Role)),
            email: self.email.clone().filter(|_| keep(FilterName::Email)),
            employee_id: self.employee_id.clone().filter(|_| keep(FilterName::EmployeeId)),
            user_id: self.user_id.filter(|_| keep(FilterName::UserId)),
        }
    }

    pub fn matches(&self, user: &User) -> bool {
        self.role
            .as_ref()
            .is_none_or(|role| user.role.as_deref().is_some_and(|r| r.to_lowercase() == role.folded))
            && self.email.as_ref().is_none_or(|email| {
                contains_folded(user.email.as_deref(), &email.folded)
                    || contains_folded(user.username.as_deref(), &email.folded)
            })
            && self
                .employee_id
                .as_ref()
                .is_none_or(|id| contains_folded(user.employee_id.as_deref(), &id.folded))
            && self
                .user_id
                .is_none_or(|id| Uuid::try_parse(&user.provider_id).is_ok_and(|provider_id| provider_id == id))
    }
}

/// A field `sort` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortField {
    Email,
    FirstName,
    LastName,
    DisplayName,
    CreatedAt,
    LastActiveAt,
}

impl SortField {
    pub const ALL: [SortField; 6] = [
        SortField::Email,
        SortField::FirstName,
        SortField::LastName,
        SortField::DisplayName,
        SortField::CreatedAt,
        SortField::LastActiveAt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SortField::Email => "email",
            SortField::FirstName => "first_name",
            SortField::LastName => "last_name",
            SortField::DisplayName => "display_name",
            SortField::CreatedAt => "created_at",
            SortField::LastActiveAt => "last_active_at",
        }
    }

    pub fn parse(text: &str) -> Option<SortField> {
        SortField::ALL.into_iter().find(|field| field.as_str() == text)
    }
}

/// One `sort` item: a field, ascending unless `-` prefixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SortKey {
    pub field: SortField,
    pub descending: bool,
}

impl std::fmt::Display for SortKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", if self.descending { "-" } else { "" }, self.field.as_str())
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::model::{ProviderKind, SourceName};

    fn user(role: Option<&str>, email: Option<&str>, username: Option<&str>, employee: Option<&str>, id: &str) -> User {
        User {
            id: format!("s:{id}"),
            source: SourceName::parse("s").unwrap(),
            provider: ProviderKind::TapIntoSafety,
            provider_id: id.to_owned(),
            email: email.map(str::to_owned),
            username: username.map(str::to_owned),
            first_name: None,
            last_name: None,
            display_name: id.to_owned(),
            role: role.map(str::to_owned),
            employee_id: employee.map(str::to_owned),
            active: None,
            created_at: None,
            updated_at: None,
            last_active_at: None,
        }
    }

    #[test]
    fn each_filter_has_its_spec_meaning() {
        let guid = "0F8FAD5B-D9CB-469F-A165-70867728950E";
        let zoe = user(
            Some("Learner"),
            Some("Zoë.OBrien@X.io"),
            Some("sso|77"),
            Some("EMP-00123"),
            guid,
        );
        let check = |filters: Filters, expected: bool| assert_eq!(filters.matches(&zoe), expected, "{filters:?}");
        check(Filters::default(), true);
        check(
            Filters {
                role: Some(FilterText::new("learner")),
                ..Filters::default()
            },
            true,
        );
        check(
            Filters {
                role: Some(FilterText::new("learn")),
                ..Filters::default()
            },
            false,
        );
        check(
            Filters {
                email: Some(FilterText::new("zoë.o")),
                ..Filters::default()
            },
            true,
        );
        check(
            Filters {
                email: Some(FilterText::new("SSO|7")),
                ..Filters::default()
            },
            true,
        );
        check(
            Filters {
                email: Some(FilterText::new("nobody")),
                ..Filters::default()
            },
            false,
        );
        check(
            Filters {
                employee_id: Some(FilterText::new("emp-001")),
                ..Filters::default()
            },
            true,
        );
        let id = Uuid::try_parse(guid).unwrap();
        check(
            Filters {
                user_id: Some(id),
                ..Filters::default()
            },
            true,
        );
        check(
            Filters {
                user_id: Some(Uuid::nil()),
                ..Filters::default()
            },
            false,
        );
        check(
            Filters {
                role: Some(FilterText::new("LEARNER")),
                employee_id: Some(FilterText::new("999")),
                ..Filters::default()
            },
            false,
        );
        let nobody = user(None, None, None, None, "not-a-uuid");
        assert!(!Filters {
            role: Some(FilterText::new("x")),
            ..Filters::default()
        }
        .matches(&nobody));
        assert!(!Filters {
            user_id: Some(id),
            ..Filters::default()
        }
        .matches(&nobody));
    }
}

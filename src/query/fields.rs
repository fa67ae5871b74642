//! `fields` (SPEC §3, §4): which of a user's fields a caller wants. `id` is always shown.

/// A SPEC §4 field, in the order a user's JSON shows them. `raw` is not one: it is asked
/// for with `include=raw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    Source,
    Provider,
    ProviderId,
    Email,
    Username,
    FirstName,
    LastName,
    DisplayName,
    Role,
    EmployeeId,
    Active,
    CreatedAt,
    UpdatedAt,
    LastActiveAt,
}

impl Field {
    pub const ALL: [Field; 15] = [
        Field::Id,
        Field::Source,
        Field::Provider,
        Field::ProviderId,
        Field::Email,
        Field::Username,
        Field::FirstName,
        Field::LastName,
        Field::DisplayName,
        Field::Role,
        Field::EmployeeId,
        Field::Active,
        Field::CreatedAt,
        Field::UpdatedAt,
        Field::LastActiveAt,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Source => "source",
            Field::Provider => "provider",
            Field::ProviderId => "provider_id",
            Field::Email => "email",
            Field::Username => "username",
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::DisplayName => "display_name",
            Field::Role => "role",
            Field::EmployeeId => "employee_id",
            Field::Active => "active",
            Field::CreatedAt => "created_at",
            Field::UpdatedAt => "updated_at",
            Field::LastActiveAt => "last_active_at",
        }
    }

    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|field| field.as_str() == name)
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// The fields to show; [`FieldSet::ALL`] without `fields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSet(u16);

impl FieldSet {
    pub const ALL: FieldSet = FieldSet((1 << Field::ALL.len()) - 1);

    pub const fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    /// `fields=` text: comma-separated names, repeats allowed, `id` implied. Every unknown
    /// name is reported at once.
    pub fn parse(text: &str) -> Result<FieldSet, String> {
        let mut set = Field::Id.bit();
        let mut unknown = Vec::new();
        for name in text.split(',').map(str::trim) {
            match Field::parse(name) {
                Some(field) => set |= field.bit(),
                None if unknown.len() < 8 => unknown.push(format!("{:?}", super::parse::clip(name))),
                None => {}
            }
        }
        if unknown.is_empty() {
            return Ok(FieldSet(set));
        }
        let hint = if text.split(',').any(|name| name.trim() == "raw") {
            " (the upstream record is asked for with include=raw)"
        } else {
            ""
        };
        let known: Vec<&str> = Field::ALL.iter().map(|field| field.as_str()).collect();
        Err(format!(
            "unknown field{} {}{hint}; fields: {}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", "),
            known.join(", ")
        ))
    }

    pub fn iter(self) -> impl Iterator<Item = Field> {
        Field::ALL.into_iter().filter(move |field| self.contains(*field))
    }
}

impl Default for FieldSet {
    fn default() -> FieldSet {
        FieldSet::ALL
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn names_round_trip_and_id_is_always_in() {
        for field in Field::ALL {
            assert_eq!(Field::parse(field.as_str()), Some(field));
        }
        let set = FieldSet::parse("email, last_name,email").unwrap();
        let names: Vec<&str> = set.iter().map(Field::as_str).collect();
        assert_eq!(names, ["id", "email", "last_name"]);
        assert_eq!(
            FieldSet::parse(&Field::ALL.map(Field::as_str).join(",")).unwrap(),
            FieldSet::ALL
        );
    }

    #[test]
    fn unknown_names_are_each_named() {
        let reason = FieldSet::parse("email,Email,raw,,nope").unwrap_err();
        assert!(
            reason.starts_with(r#"unknown fields "Email", "raw", "", "nope""#),
            "{reason}"
        );
        assert!(reason.contains("include=raw"), "{reason}");
        assert!(reason.contains("last_active_at"), "{reason}");
    }

    proptest! {
        /// Whatever is asked, the set is exactly `id` plus the known names in the text.
        #[test]
        fn a_set_is_id_and_the_names_given(picks in proptest::collection::vec(0usize..15, 1..20)) {
            let text: Vec<&str> = picks.iter().map(|&i| Field::ALL[i].as_str()).collect();
            let set = FieldSet::parse(&text.join(",")).unwrap();
            for field in Field::ALL {
                let expected = field == Field::Id || picks.iter().any(|&i| Field::ALL[i] == field);
                prop_assert_eq!(set.contains(field), expected);
            }
        }
    }
}

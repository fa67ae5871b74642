//! The gateway's sort (SPEC §3): case-insensitive strings, nulls last in both directions,
//! ties broken by `id` (ascending, byte order) so the order is total and pages are exact.

use std::cmp::Ordering;
use std::ops::Deref;

use time::OffsetDateTime;

use crate::model::User;
use crate::query::filter::{SortField, SortKey};

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Text(Option<String>),
    Time(Option<OffsetDateTime>),
}

impl Value {
    fn of(user: &User, field: SortField) -> Value {
        let text = |value: &Option<String>| Value::Text(value.as_deref().map(str::to_lowercase));
        match field {
            SortField::Email => text(&user.email),
            SortField::FirstName => text(&user.first_name),
            SortField::LastName => text(&user.last_name),
            SortField::DisplayName => Value::Text(Some(user.display_name.to_lowercase())),
            SortField::CreatedAt => Value::Time(user.created_at),
            SortField::LastActiveAt => Value::Time(user.last_active_at),
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Value::Text(None) | Value::Time(None))
    }
}

/// A user's precomputed sort key.
#[derive(Debug, PartialEq, Eq)]
struct Keyed {
    values: Vec<(Value, bool)>,
    id: String,
}

impl Ord for Keyed {
    fn cmp(&self, other: &Keyed) -> Ordering {
        for ((a, descending), (b, _)) in self.values.iter().zip(&other.values) {
            let order = match (a.is_null(), b.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) if *descending => b.cmp(a),
                (false, false) => a.cmp(b),
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        self.id.cmp(&other.id)
    }
}

impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Keyed) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Sorts users by the keys; each user's key is computed once.
pub fn sort_users<T: Deref<Target = User>>(users: &mut [T], keys: &[SortKey]) {
    users.sort_by_cached_key(|user| Keyed {
        values: keys
            .iter()
            .map(|key| (Value::of(user, key.field), key.descending))
            .collect(),
        id: user.id.clone(),
    });
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::query::filter::SortField;

    fn user(id: &str, email: Option<&str>, created: Option<i64>) -> Box<User> {
        Box::new(User {
            id: id.to_owned(),
            email: email.map(str::to_owned),
            created_at: created.map(|secs| OffsetDateTime::from_unix_timestamp(secs).unwrap()),
            ..crate::model::bare_user("s", id)
        })
    }

    fn order(users: &mut [Box<User>], keys: &[SortKey]) -> Vec<String> {
        sort_users(users, keys);
        users.iter().map(|user| user.id.clone()).collect()
    }

    #[test]
    fn case_insensitive_nulls_last_ties_by_id() {
        let mut users = vec![
            user("d", None, Some(3)),
            user("c", Some("b@x"), None),
            user("b", Some("B@x"), Some(1)),
            user("a", Some("a@x"), Some(2)),
        ];
        let email = |descending| {
            [SortKey {
                field: SortField::Email,
                descending,
            }]
        };
        assert_eq!(order(&mut users, &email(false)), ["a", "b", "c", "d"]);
        assert_eq!(
            order(&mut users, &email(true)),
            ["b", "c", "a", "d"],
            "nulls stay last; ties by id"
        );
        let created = |descending| {
            [SortKey {
                field: SortField::CreatedAt,
                descending,
            }]
        };
        assert_eq!(order(&mut users, &created(false)), ["b", "a", "d", "c"]);
        assert_eq!(order(&mut users, &created(true)), ["d", "a", "b", "c"]);
    }
}

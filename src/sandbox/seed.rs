//! Deterministic, realistic users for both simulated providers.
//!
//! Names with accents and apostrophes, missing and empty fields, several roles, disabled
//! accounts, SSO usernames: the variety the normalization has to survive. Same seed, same
//! records, on every machine.

use serde_json::{json, Map, Value};

/// SplitMix64: tiny, fast, and stable across versions (unlike a crate's default RNG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with the given percent chance.
    fn percent(&mut self, chance: u64) -> bool {
        self.below(100) < chance
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn uuid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }
}

const FIRST_NAMES: &[&str] = &[
    "Zoë",
    "José",
    "Łukasz",
    "Siobhán",
    "Renée",
    "Mårten",
    "Chloé",
    "François",
    "Aoife",
    "Søren",
    "Ana",
    "Liam",
    "Olivia",
    "Noah",
    "Amelia",
    "Jack",
    "Mia",
    "Wei",
    "Priya",
    "Mohammed",
    "Hannah",
    "Oliver",
    "Isla",
    "Charlotte",
    "Lucas",
    "Ellie",
    "Thomas",
    "Grace",
    "Aarav",
    "Dāvis",
];
const LAST_NAMES: &[&str] = &[
    "O'Brien",
    "D'Angelo",
    "Müller",
    "García",
    "Núñez",
    "O'Connor",
    "Smith",
    "Nguyen",
    "Brown",
    "Wilson",
    "Taylor",
    "Jones",
    "Williams",
    "MacDonald",
    "van der Berg",
    "Kowalski",
    "Ó Súilleabháin",
    "Lefèvre",
    "Dubois",
    "Ahmed",
    "Singh",
    "Chen",
    "Kim",
    "Patel",
    "Rossi",
    "Björk",
    "St. John",
    "Le Roux",
    "Fitzgerald",
    "Żak",
];

/// ASCII for e-mail local parts: accents dropped, apostrophes and spaces removed.
fn ascii_slug(text: &str) -> String {
    text.chars()
        .filter_map(|c| {
            let base = match c {
                'à'..='å' | 'ā' => 'a',
                'ç' => 'c',
                'è'..='ë' => 'e',
                'ì'..='ï' => 'i',
                'ñ' => 'n',
                'ò'..='ö' | 'ø' | 'Ó' => 'o',
                'ù'..='ü' => 'u',
                'ł' | 'Ł' => 'l',
                'ż' | 'Ż' => 'z',
                c if c.is_ascii_alphanumeric() => c.to_ascii_lowercase(),
                _ => return None,
            };
            Some(base)
        })
        .collect()
}

/// `2019-01-01T00:00:00Z` plus up to about six years, in TI's millisecond format.
fn timestamp(rng: &mut Rng, after_secs: i64) -> (i64, String) {
    let secs = after_secs + rng.below(190_000_000) as i64;
    let at = time::OffsetDateTime::from_unix_timestamp(secs).expect("in range");
    let text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        rng.below(1000)
    );
    (secs, text)
}

const EPOCH_2019: i64 = 1_546_300_800;

/// Thought Industries users, in upstream order.
pub fn ti_users(seed: u64, count: usize) -> Vec<Value> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|user_idx| {
            let first = rng.pick(FIRST_NAMES);
            let last = rng.pick(LAST_NAMES);
            let mut user = Map::new();
            user.insert("id".into(), json!(rng.uuid()));
            match rng.below(100) {
                0..=2 => {}
                3..=4 => {
                    user.insert("email".into(), json!(""));
                }
                _ => {
                    let email = format!(
                        "{}.{}{user_idx}@acme-learning.example",
                        ascii_slug(first),
                        ascii_slug(last)
                    );
                    user.insert("email".into(), json!(email));
                }
            }
            let first_value = if rng.percent(4) { Value::Null } else { json!(first) };
            user.insert("firstName".into(), first_value);
            if !rng.percent(3) {
                user.insert("lastName".into(), json!(last));
            }
            user.insert(
                "abbreviatedName".into(),
                json!(format!(
                    "{} {last}",
                    &first[..first.char_indices().nth(1).map_or(first.len(), |(i, _)| i)]
                )),
            );
            match rng.below(100) {
                0..=9 => {}
                10..=14 => {
                    user.insert("name".into(), json!(""));
                }
                _ => {
                    user.insert("name".into(), json!(format!("{first} {last}")));
                }
            }
            let role = match rng.below(100) {
                0..=79 => Some("learner"),
                80..=87 => Some("manager"),
                88..=92 => Some("admin"),
                93..=97 => Some("instructor"),
                _ => None,
            };
            if let Some(role) = role {
                user.insert("roleKey".into(), json!(role));
            }
            if !rng.percent(3) {
                user.insert("disabled".into(), json!(rng.percent(10)));
            }
            let (created_secs, created) = timestamp(&mut rng, EPOCH_2019);
            let (_, updated) = timestamp(&mut rng, created_secs);
            user.insert("createdAt".into(), json!(created));
            user.insert("updatedAt".into(), json!(updated));
            let last_active = if rng.percent(15) {
                Value::Null
            } else {
                json!(timestamp(&mut rng, created_secs).1)
            };
            user.insert("lastActiveAt".into(), last_active);
            user.insert(
                "bio".into(),
                json!(if rng.percent(20) {
                    "Safety lead, night shift."
                } else {
                    ""
                }),
            );
            user.insert("twoFactorEnabled".into(), json!(rng.percent(30)));
            user.insert("lang".into(), json!(rng.pick(&["en", "fr", "de", "en-AU"])));
            user.insert("customFields".into(), json!({}));
            user.insert("purchasedCourses".into(), json!([]));
            let client_id = rng.uuid();
            user.insert("clientId".into(), json!(client_id));
            if rng.percent(30) {
                // TI embeds the user's client, secretKey included: the gateway must redact it.
                let secret = format!("sk_{:016x}", rng.next());
                user.insert(
                    "client".into(),
                    json!({ "id": client_id, "name": "Acme Mining", "slug": "acme-mining", "secretKey": secret }),
                );
            }
            Value::Object(user)
        })
        .collect()
}

/// TapIntoSafety users, in upstream order.
pub fn tis_users(seed: u64, count: usize) -> Vec<Value> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|user_idx| {
            let first = rng.pick(FIRST_NAMES);
            let last = rng.pick(LAST_NAMES);
            let email = format!(
                "{}{}.{user_idx}@site-works.example",
                ascii_slug(first),
                ascii_slug(last)
            );
            let sso = rng.percent(25);
            let username = if sso {
                format!("sso|{:012x}", rng.next() & 0xffff_ffff_ffff)
            } else {
                email.clone()
            };
            let first_value = if rng.percent(4) { json!("") } else { json!(first) };
            let last_value = if rng.percent(3) { Value::Null } else { json!(last) };
            let employee = match rng.below(100) {
                0..=9 => String::new(),
                _ => format!("EMP-{:05}", 10_000 + user_idx * 7 % 90_000),
            };
            json!({
                "id": rng.uuid(),
                "username": username,
                "email": if rng.percent(3) { String::new() } else { email },
                "firstName": first_value,
                "lastName": last_value,
                "birthYear": if rng.percent(40) { -1 } else { 1960 + rng.below(45) as i64 },
                "gender": rng.pick(&["Female", "Male", "Unspecified"]),
                "role": match rng.below(100) { 0..=79 => "Learner", 80..=89 => "Supervisor", _ => "Administrator" },
                "organisationIdentifier": employee,
                "hasAccess": !rng.percent(10),
                "usingSeat": rng.percent(50),
                "accountType": if sso { "SSO" } else { "Standard" },
                "deletionStatus": rng.pick(&["CanDelete", "HasTrainingRecords"]),
                "userFilters": [format!("Site: {}", rng.pick(&["Brisbane", "Perth", "Darwin", "Hobart"]))],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_users_with_variety() {
        assert_eq!(ti_users(3, 50), ti_users(3, 50));
        assert_ne!(ti_users(3, 5), ti_users(4, 5));
        let ti = ti_users(7, 1250);
        let roles: std::collections::BTreeSet<_> = ti.iter().filter_map(|u| u["roleKey"].as_str()).collect();
        assert!(roles.len() >= 4, "{roles:?}");
        assert!(ti.iter().any(|u| u.get("email").is_none()));
        assert!(ti
            .iter()
            .any(|u| u["lastName"].as_str().is_some_and(|n| n.contains('\''))));
        let tis = tis_users(8, 730);
        assert!(tis.iter().any(|u| u["organisationIdentifier"] == ""));
        assert!(tis.iter().any(|u| u["username"].as_str().unwrap().starts_with("sso|")));
        let ids: std::collections::HashSet<_> = tis.iter().map(|u| u["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 730);
    }
}

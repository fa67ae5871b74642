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

/// Thought Industries users as [`ti_users`] makes them, each then padded with more of the
/// fields TI's docs list (addresses, `ref1`…`ref10`, `customFields`, purchased courses,
/// allocated licenses, recommendations, a longer `bio`) until its JSON is about
/// `record_bytes` long, as real tenants' records are. The fields the gateway normalizes are
/// exactly [`ti_users`]'s for the same seed; the padding is deterministic from the seed too.
/// A record already at least `record_bytes` long is left as it is.
pub fn ti_users_padded(seed: u64, count: usize, record_bytes: usize) -> Vec<Value> {
    let mut users = ti_users(seed, count);
    // Its own stream, so padding never shifts the normalized fields.
    let mut rng = Rng(seed ^ 0x005E_ED0F_DA7A_u64.rotate_left(17));
    for user in &mut users {
        if let Value::Object(record) = user {
            pad_ti_record(&mut rng, record, record_bytes);
        }
    }
    users
}

const CITIES: &[(&str, &str, &str)] = &[
    ("Brisbane", "QLD", "4000"),
    ("Perth", "WA", "6000"),
    ("Darwin", "NT", "0800"),
    ("Hobart", "TAS", "7000"),
    ("Newcastle", "NSW", "2300"),
    ("Kalgoorlie", "WA", "6430"),
];
const STREETS: &[&str] = &[
    "Mine Road",
    "Harbour Street",
    "Quarry Lane",
    "Depot Avenue",
    "Smelter Way",
];
const COURSES: &[&str] = &[
    "Working at Heights",
    "Confined Space Entry",
    "Manual Handling",
    "Fire Warden Training",
    "Chemical Safety (SDS)",
    "First Aid Refresher",
    "Site Induction 2024",
    "Hazard Identification",
    "Forklift Operation",
    "Isolation and Tag-out",
];
const COURSE_STATUSES: &[&str] = &["notStarted", "started", "completed", "expired"];
const BIO_WORDS: &[&str] = &[
    "Site",
    "supervisor",
    "with",
    "ten",
    "years",
    "in",
    "open-cut",
    "and",
    "underground",
    "operations.",
    "Leads",
    "toolbox",
    "talks,",
    "signs",
    "off",
    "permits",
    "and",
    "mentors",
    "new",
    "starters",
    "on",
    "night",
    "shift.",
    "Holds",
    "a",
    "Certificate",
    "IV",
    "in",
    "Work",
    "Health",
    "and",
    "Safety.",
];

/// The extra fields of one record, then `bio` text up to the size. Keys and values are
/// plain ASCII except names already in the record, so lengths add up without escaping.
fn pad_ti_record(rng: &mut Rng, record: &mut Map<String, Value>, record_bytes: usize) {
    let json_len = |record: &Map<String, Value>| serde_json::to_string(record).map_or(0, |text| text.len());
    if json_len(record) >= record_bytes {
        return;
    }
    let initial = |key: &str| {
        record
            .get(key)
            .and_then(Value::as_str)
            .and_then(|name| name.chars().next())
            .map_or(Value::Null, |c| json!(c.to_string()))
    };
    let (first_initial, last_initial) = (initial("firstName"), initial("lastName"));
    let (city, state, zip) = CITIES[rng.below(CITIES.len() as u64) as usize];
    let mut extra = vec![
        (
            "asset",
            json!(format!(
                "https://cdn.acme-learning.example/avatars/{:016x}.png",
                rng.next()
            )),
        ),
        ("firstInitial", first_initial),
        ("lastInitial", last_initial),
        (
            "invitedByName",
            json!(rng.pick(&["", "Learning Admin", "HR Onboarding"])),
        ),
        ("shouldHighlight", json!(rng.percent(5))),
        (
            "address1",
            json!(format!("{} {}", 1 + rng.below(400), rng.pick(STREETS))),
        ),
        ("address2", json!(if rng.percent(20) { "Unit 4" } else { "" })),
        ("city", json!(city)),
        ("state", json!(state)),
        ("zipCode", json!(zip)),
        ("country", json!("AU")),
        (
            "telephone",
            json!(format!(
                "+61 4{:02} {:03} {:03}",
                rng.below(100),
                rng.below(1000),
                rng.below(1000)
            )),
        ),
        ("stripeCustomerId", json!(rng.uuid())),
        ("externalCustomerId", json!(rng.uuid())),
        ("sfAccountId", json!(rng.uuid())),
        ("sfContactId", json!(rng.uuid())),
        ("shippingName", json!("")),
        ("preferredCurrency", json!("AUD")),
        ("learnerUserId", json!(rng.uuid())),
        ("managerUserId", json!(rng.uuid())),
        ("balance", json!(rng.below(500))),
        (
            "customFields",
            json!({
                "site": rng.pick(&["Pit 3", "Processing Plant", "Port Hedland Wharf", "Head Office"]),
                "department": rng.pick(&["Maintenance", "Operations", "HSE", "Logistics"]),
                "shift": rng.pick(&["Day", "Night", "Swing"]),
                "licenceNumber": format!("HRW-{:07}", rng.below(10_000_000)),
                "supervisorEmail": format!("supervisor{}@acme-learning.example", rng.below(200)),
                "inductionCompleted": rng.percent(85),
            }),
        ),
        (
            "recommendedTags",
            json!([{ "label": rng.pick(&["heights", "chemicals", "plant"]), "boost": rng.below(10) }]),
        ),
        ("recommendedSlugs", json!([{ "slug": "site-induction", "boost": 1 }])),
        ("accessedFlows", json!(["dashboard", "catalog"])),
        ("purchasedBundles", json!([])),
        (
            "allocatedLicenses",
            json!([{
                "license": { "id": rng.uuid(), "name": "Contractor Licence" },
                "licenseRole": "student",
                "licenseId": rng.uuid(),
                "status": "active",
            }]),
        ),
    ];
    for n in 1..=10 {
        extra.push((REF_KEYS[n - 1], json!(format!("REF{n}-{:06}", rng.below(1_000_000)))));
    }
    for (key, value) in extra {
        record.insert(key.to_owned(), value);
    }
    // Purchased courses, each about 330 bytes, while they fit with room for the bio.
    let mut len = json_len(record);
    let mut courses = Vec::new();
    loop {
        let course_id = rng.uuid();
        let title = rng.pick(COURSES);
        let completed = rng.percent(50);
        let course = json!({
            "course": { "id": course_id, "title": title, "slug": slug(title) },
            "courseId": course_id,
            "certificate": if completed { json!(rng.uuid()) } else { Value::Null },
            "certificateIssuedAt": if completed { json!(timestamp(rng, EPOCH_2019).1) } else { Value::Null },
            "instructorAccessPurchased": false,
            "status": rng.pick(COURSE_STATUSES),
        });
        let course_len = serde_json::to_string(&course).map_or(0, |text| text.len()) + usize::from(!courses.is_empty());
        if len + course_len + 200 > record_bytes {
            break;
        }
        len += course_len;
        courses.push(course);
    }
    record.insert("purchasedCourses".into(), Value::Array(courses));
    // The bio takes up the rest: whole words, ASCII, so its length is its JSON length.
    let bio_now = record.get("bio").and_then(Value::as_str).unwrap_or("").to_owned();
    let len = json_len(record);
    let room = record_bytes.saturating_sub(len) + bio_now.len();
    let mut bio = bio_now;
    let mut word_idx = rng.below(BIO_WORDS.len() as u64) as usize;
    while bio.len() < room {
        if !bio.is_empty() {
            bio.push(' ');
        }
        bio.push_str(BIO_WORDS[word_idx % BIO_WORDS.len()]);
        word_idx += 1;
    }
    bio.truncate(room);
    record.insert("bio".into(), json!(bio));
}

/// `Working at Heights` -> `working-at-heights`.
fn slug(title: &str) -> String {
    title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("-")
}

const REF_KEYS: [&str; 10] = [
    "ref1", "ref2", "ref3", "ref4", "ref5", "ref6", "ref7", "ref8", "ref9", "ref10",
];

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

    #[test]
    fn padded_records_are_about_the_size_asked_and_keep_the_normalized_fields() {
        let plain = ti_users(7, 300);
        let padded = ti_users_padded(7, 300, 3500);
        assert_eq!(padded, ti_users_padded(7, 300, 3500), "deterministic");
        for (plain, padded) in plain.iter().zip(&padded) {
            let len = serde_json::to_string(padded).unwrap().len();
            assert!((3400..=3600).contains(&len), "{len} bytes");
            for key in [
                "id",
                "email",
                "firstName",
                "lastName",
                "name",
                "roleKey",
                "disabled",
                "createdAt",
                "updatedAt",
                "lastActiveAt",
                "client",
                "clientId",
            ] {
                assert_eq!(plain.get(key), padded.get(key), "{key}");
            }
            for key in [
                "customFields",
                "purchasedCourses",
                "address1",
                "ref10",
                "allocatedLicenses",
            ] {
                assert!(padded.get(key).is_some(), "{key}");
            }
        }
        assert_eq!(
            ti_users_padded(7, 20, 100),
            ti_users(7, 20),
            "a size below a record's leaves it"
        );
    }

    /// The default dataset is what the tests and the README show: the first users' ids,
    /// and a digest of all of them, must not move.
    #[test]
    fn default_dataset_is_unchanged() {
        let ti = ti_users(7, 1250);
        let tis = tis_users(8, 730);
        assert_eq!(ti[0]["id"], "022ab1ba-8040-48e6-8b29-3e6770eb3a95");
        let digest = |records: &[Value]| {
            records.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, record| {
                serde_json::to_string(record).unwrap().bytes().fold(hash, |hash, byte| {
                    (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
                })
            })
        };
        assert_eq!(
            (digest(&ti), digest(&tis)),
            (4_963_006_431_593_544_378, 706_753_936_901_380_332)
        );
    }
}

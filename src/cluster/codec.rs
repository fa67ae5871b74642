//! A cached page as stored in Redis: the same representation the page cache holds and
//! weighs. Laid out as `[n: u32 LE][lz4 block of the postcard-encoded users and page
//! numbers: n bytes][the records' lz4 block, as packed]`: the records are copied as one
//! slice, not as postcard's byte-by-byte sequence.
//!
//! Measured against the other way, the upstream body lz4-compressed and parsed again on
//! every read (`docs/BENCHMARKS.md`, "Shared tier"): about as small, and a read is over ten
//! times faster, as nothing is parsed again.
//! A value that does not decode (another layout, a truncated write) is a miss, never an
//! error: the key's format version keeps layouts apart, this is the second line.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{ProviderKind, SourceName, User};
use crate::providers::UpstreamPage;
use crate::raw_records::RawRecords;

#[derive(Serialize, Deserialize)]
struct WirePage<'a> {
    /// When the page was fetched, in milliseconds since the Unix epoch: replicas share
    /// wall-clock time, not a process's monotonic clock.
    fetched_at_ms: u64,
    total: u64,
    page_size: u32,
    echoed_page: Option<u64>,
    #[serde(borrow)]
    users: Vec<WireUser<'a>>,
    raw_ends: Vec<u32>,
    /// The length of the records' block after the head: a cut value is a miss.
    raw_packed_len: u64,
}

/// A [`User`] without its source, which the key names.
#[derive(Serialize, Deserialize)]
struct WireUser<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    thought_industries: bool,
    #[serde(borrow)]
    provider_id: Cow<'a, str>,
    #[serde(borrow)]
    email: Option<Cow<'a, str>>,
    #[serde(borrow)]
    username: Option<Cow<'a, str>>,
    #[serde(borrow)]
    first_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    last_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    display_name: Cow<'a, str>,
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    employee_id: Option<Cow<'a, str>>,
    active: Option<bool>,
    created_at: Option<OffsetDateTime>,
    updated_at: Option<OffsetDateTime>,
    last_active_at: Option<OffsetDateTime>,
}

fn borrowed(text: &Option<String>) -> Option<Cow<'_, str>> {
    text.as_deref().map(Cow::Borrowed)
}

fn owned(text: Option<Cow<'_, str>>) -> Option<String> {
    text.map(Cow::into_owned)
}

/// Milliseconds since the epoch of a moment `age` ago.
pub fn wall_clock_ms(age: Duration) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(now.saturating_sub(age).as_millis()).unwrap_or(u64::MAX)
}

/// How long ago a moment given in epoch milliseconds was (zero if in the future: another
/// replica's clock runs ahead).
pub fn age_of(fetched_at_ms: u64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    now.saturating_sub(Duration::from_millis(fetched_at_ms))
}

pub fn encode(page: &UpstreamPage, fetched_at_ms: u64) -> Vec<u8> {
    let (packed, ends) = page.raw.parts();
    let wire = WirePage {
        fetched_at_ms,
        total: page.total,
        page_size: page.page_size,
        echoed_page: page.echoed_page,
        users: page
            .users
            .iter()
            .map(|user| WireUser {
                id: Cow::Borrowed(&user.id),
                thought_industries: user.provider == ProviderKind::ThoughtIndustries,
                provider_id: Cow::Borrowed(&user.provider_id),
                email: borrowed(&user.email),
                username: borrowed(&user.username),
                first_name: borrowed(&user.first_name),
                last_name: borrowed(&user.last_name),
                display_name: Cow::Borrowed(&user.display_name),
                role: borrowed(&user.role),
                employee_id: borrowed(&user.employee_id),
                active: user.active,
                created_at: user.created_at,
                updated_at: user.updated_at,
                last_active_at: user.last_active_at,
            })
            .collect(),
        raw_ends: ends.to_vec(),
        raw_packed_len: packed.len() as u64,
    };
    let head = lz4_flex::compress_prepend_size(&postcard::to_stdvec(&wire).expect("a page always serializes"));
    let mut bytes = Vec::with_capacity(4 + head.len() + packed.len());
    bytes.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_le_bytes());
    bytes.extend_from_slice(&head);
    bytes.extend_from_slice(packed);
    bytes
}

/// The page and its fetch time (epoch ms), or `None` if `bytes` is not a page of `source`.
pub fn decode(bytes: &[u8], source: &SourceName) -> Option<(UpstreamPage, u64)> {
    let head_len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let head = lz4_flex::decompress_size_prepended(bytes.get(4..4usize.checked_add(head_len)?)?).ok()?;
    let packed = &bytes[4 + head_len..];
    let wire: WirePage<'_> = postcard::from_bytes(&head).ok()?;
    let prefix_ok = |id: &str| {
        id.strip_prefix(source.as_str())
            .is_some_and(|rest| rest.starts_with(':'))
    };
    if wire.raw_packed_len != packed.len() as u64
        || wire.users.len() != wire.raw_ends.len()
        || !wire.users.iter().all(|user| prefix_ok(&user.id))
    {
        return None;
    }
    let raw = RawRecords::from_parts(packed.to_vec(), wire.raw_ends)?;
    let users = wire
        .users
        .into_iter()
        .map(|user| User {
            id: user.id.into_owned(),
            source: source.clone(),
            provider: match user.thought_industries {
                true => ProviderKind::ThoughtIndustries,
                false => ProviderKind::TapIntoSafety,
            },
            provider_id: user.provider_id.into_owned(),
            email: owned(user.email),
            username: owned(user.username),
            first_name: owned(user.first_name),
            last_name: owned(user.last_name),
            display_name: user.display_name.into_owned(),
            role: owned(user.role),
            employee_id: owned(user.employee_id),
            active: user.active,
            created_at: user.created_at,
            updated_at: user.updated_at,
            last_active_at: user.last_active_at,
        })
        .collect();
    let page = UpstreamPage {
        users,
        raw,
        total: wire.total,
        page_size: wire.page_size,
        echoed_page: wire.echoed_page,
    };
    Some((page, wire.fetched_at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_page() -> UpstreamPage {
        let records: Vec<Box<serde_json::value::RawValue>> = (0..3)
            .map(|idx| serde_json::value::RawValue::from_string(format!(r#"{{"id":"{idx}","name":"Zoë"}}"#)).unwrap())
            .collect();
        let mut users: Vec<User> = (0..3)
            .map(|idx| crate::model::bare_user("ti", &idx.to_string()))
            .collect();
        users[1].email = Some("zoë@example.com".into());
        users[1].created_at = Some(time::macros::datetime!(2024-02-29 23:59:59.5 +05:30));
        users[2].provider = ProviderKind::TapIntoSafety;
        users[2].active = Some(false);
        UpstreamPage {
            users,
            raw: RawRecords::pack(records.iter().map(AsRef::as_ref)),
            total: 41,
            page_size: 3,
            echoed_page: Some(2),
        }
    }

    #[test]
    fn a_page_round_trips_with_its_fetch_time() {
        let page = sample_page();
        let bytes = encode(&page, 1_700_000_000_123);
        let (back, at) = decode(&bytes, &SourceName::parse("ti").unwrap()).unwrap();
        assert_eq!(at, 1_700_000_000_123);
        assert_eq!((back.total, back.page_size, back.echoed_page), (41, 3, Some(2)));
        assert_eq!(format!("{:?}", back.users), format!("{:?}", page.users));
        let unpacked = back.raw.unpack();
        assert_eq!(unpacked.get(1).unwrap().get(), r#"{"id":"1","name":"Zoë"}"#);
    }

    #[test]
    fn anything_else_is_a_miss() {
        let bytes = encode(&sample_page(), 1);
        let ti = SourceName::parse("ti").unwrap();
        assert!(
            decode(&bytes, &SourceName::parse("other").unwrap()).is_none(),
            "another source's ids"
        );
        assert!(
            decode(&bytes, &SourceName::parse("t").unwrap()).is_none(),
            "a prefix of the source is not it"
        );
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], &ti).is_none(), "truncated at {cut}");
        }
        assert!(decode(b"{\"json\":true}", &ti).is_none());
    }
}

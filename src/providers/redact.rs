//! Credential redaction of upstream records before they become `raw` (SPEC §4).
//!
//! A key names a credential when, lowercased with `_`, `-` and whitespace removed, it
//! contains one of [`CREDENTIAL_WORDS`]. Its value, of whatever type and at any depth,
//! becomes `"***"`; a `null` stays `null` (there is nothing to hide, and `"***"` would claim
//! a credential the upstream did not send).
//!
//! The record's text is scanned, not re-serialized: keys are decided on their parsed text
//! (so `"s\u0065cretKey"` is caught), only credential values are replaced, and everything
//! else, key order included, stays byte for byte as received. The scan keeps no stack, so
//! no depth is too deep for it; a record it cannot follow is refused, never passed on in clear.

use std::ops::Range;

use serde_json::value::RawValue;

/// Words that make a key name a credential, in the normalized form `names_credential` compares.
pub(crate) const CREDENTIAL_WORDS: [&str; 8] = [
    "secret",
    "token",
    "password",
    "passwd",
    "privatekey",
    "apikey",
    "accesskey",
    "clientsecret",
];

/// A record the scan could not follow (it cannot happen for text serde_json accepted as a
/// value; the caller refuses the record rather than pass it on unredacted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the upstream record could not be scanned for credentials")]
pub(crate) struct Unredactable;

/// Whether an object key names a credential (SPEC §4).
pub(crate) fn names_credential(key: &str) -> bool {
    let normalized: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-') && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    CREDENTIAL_WORDS.iter().any(|word| normalized.contains(word))
}

/// The record with every credential value replaced by `"***"`; a record without one is
/// returned as it came.
pub(crate) fn redact_credentials(raw: Box<RawValue>) -> Result<Box<RawValue>, Unredactable> {
    let spans = credential_values(raw.get())?;
    if spans.is_empty() {
        return Ok(raw);
    }
    let text = raw.get();
    let mut redacted = String::with_capacity(text.len());
    let mut copied = 0;
    for span in spans {
        redacted.push_str(&text[copied..span.start]);
        redacted.push_str("\"***\"");
        copied = span.end;
    }
    redacted.push_str(&text[copied..]);
    RawValue::from_string(redacted).map_err(|_| Unredactable)
}

/// Byte ranges of the values of credential keys in `text`, in order, not overlapping.
///
/// In valid JSON a string followed by `:` is an object key and nothing else is, so one pass
/// that skips string contents finds every key at every depth without tracking nesting.
fn credential_values(text: &str) -> Result<Vec<Range<usize>>, Unredactable> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut idx = 0;
    while idx < bytes.len() {
        if bytes[idx] != b'"' {
            idx += 1;
            continue;
        }
        let string_end = string_end(bytes, idx)?;
        let after = skip_whitespace(bytes, string_end);
        if bytes.get(after) != Some(&b':') {
            idx = string_end;
            continue;
        }
        let value_start = skip_whitespace(bytes, after + 1);
        let value_end = value_end(bytes, value_start)?;
        if names_credential(&key_text(&text[idx..string_end])?) && &bytes[value_start..value_end] != b"null" {
            spans.push(value_start..value_end);
            // The whole value is replaced: keys inside it do not matter.
            idx = value_end;
        } else {
            idx = value_start;
        }
    }
    Ok(spans)
}

/// The key a JSON string literal (quotes included) stands for, escapes decoded.
fn key_text(literal: &str) -> Result<std::borrow::Cow<'_, str>, Unredactable> {
    if literal.contains('\\') {
        serde_json::from_str::<String>(literal)
            .map(std::borrow::Cow::Owned)
            .map_err(|_| Unredactable)
    } else {
        Ok(std::borrow::Cow::Borrowed(&literal[1..literal.len() - 1]))
    }
}

/// Index just past the closing quote of the string starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> Result<usize, Unredactable> {
    let mut idx = start + 1;
    while idx < bytes.len() {
        match bytes[idx] {
            b'\\' => idx += 2,
            b'"' => return Ok(idx + 1),
            _ => idx += 1,
        }
    }
    Err(Unredactable)
}

fn skip_whitespace(bytes: &[u8], mut idx: usize) -> usize {
    while idx < bytes.len() && matches!(bytes[idx], b' ' | b'\t' | b'\n' | b'\r') {
        idx += 1;
    }
    idx
}

/// Index just past the value starting at `start`; nesting is counted, not stacked.
fn value_end(bytes: &[u8], start: usize) -> Result<usize, Unredactable> {
    match bytes.get(start) {
        None => Err(Unredactable),
        Some(b'"') => string_end(bytes, start),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut idx = start;
            while idx < bytes.len() {
                match bytes[idx] {
                    b'"' => {
                        idx = string_end(bytes, idx)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(idx + 1);
                        }
                    }
                    _ => {}
                }
                idx += 1;
            }
            Err(Unredactable)
        }
        Some(_) => {
            let mut idx = start;
            while idx < bytes.len() && !matches!(bytes[idx], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                idx += 1;
            }
            Ok(idx)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    fn redact_text(text: &str) -> String {
        let raw = RawValue::from_string(text.to_owned()).expect("test input is JSON");
        redact_credentials(raw).expect("redacts").get().to_owned()
    }

    /// SPEC §4 read naively over a parsed value: the model the scan is checked against.
    fn model(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, inner)| {
                        let inner = if names_credential(key) && !inner.is_null() {
                            Value::from("***")
                        } else {
                            model(inner)
                        };
                        (key.clone(), inner)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(model).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn the_name_rule_of_spec_4() {
        for key in [
            "secret",
            "secretKey",
            "clientSecret",
            "client_secret",
            "accessToken",
            "sso_access_token",
            "api_key",
            "apiKey",
            "API-KEY",
            "x api key",
            "privateKey",
            "private_key",
            "password",
            "PASSWD",
            "accessKey",
            "aws_access_key_id",
            "refresh-token",
            // Contains `secret`: redacted, by the rule as SPEC states it ("inside a longer name").
            "secretary",
        ] {
            assert!(names_credential(key), "{key}");
        }
        for key in [
            "id", "email", "name", "client", "keys", "access", "private", "api", "passport", "tokn",
        ] {
            assert!(!names_credential(key), "{key}");
        }
    }

    #[test]
    fn credential_values_become_stars_and_all_else_stays_byte_for_byte() {
        let text = r#"{ "zeta": 1, "secretKey" : "sk_1", "client": {"name":"Acme","clientSecret":"cs_2"},
            "list": [{"accessToken": "at_3"}, {"api_key": 4}], "privateKey": {"pem": "pk_5"},
            "sso_access_token": ["t6"], "password": null, "alpha": "kept" }"#;
        let expected = r#"{ "zeta": 1, "secretKey" : "***", "client": {"name":"Acme","clientSecret":"***"},
            "list": [{"accessToken": "***"}, {"api_key": "***"}], "privateKey": "***",
            "sso_access_token": "***", "password": null, "alpha": "kept" }"#;
        assert_eq!(redact_text(text), expected);
    }

    #[test]
    fn escaped_keys_are_decided_on_their_parsed_text() {
        for key in [
            r"s\u0065cretKey",
            r"\u0073ecret",
            r"api\u005fkey",
            r"pass\u0077ord",
            r"to\u006Ben",
        ] {
            let text = format!(r#"{{"id":"u1","{key}":"leaked"}}"#);
            let out = redact_text(&text);
            assert_eq!(out, format!(r#"{{"id":"u1","{key}":"***"}}"#), "{key}");
        }
        // An escaped quote inside a string does not end it early.
        let text = r#"{"note":"a \"secret\": \"x\"","token":"t"}"#;
        assert_eq!(redact_text(text), r#"{"note":"a \"secret\": \"x\"","token":"***"}"#);
    }

    #[test]
    fn a_record_without_credentials_is_returned_as_it_came() {
        let clean = "{\"b\" : 2,\n \"a\": [1, {\"role\": \"token\"}], \"s\": \"secret\", \"password\": null}";
        let raw = RawValue::from_string(clean.to_owned()).unwrap();
        let pointer = raw.get().as_ptr();
        let out = redact_credentials(raw).unwrap();
        assert_eq!(out.get(), clean);
        assert_eq!(out.get().as_ptr(), pointer, "not even copied");
    }

    #[test]
    fn a_secret_deeper_than_serde_json_can_parse_is_still_redacted() {
        for depth in [126usize, 127, 128, 129, 5000] {
            let text = format!(
                "{}{{\"secretKey\":\"sk_deep\",\"ok\":1}}{}",
                "{\"a\":".repeat(depth),
                "}".repeat(depth)
            );
            let out = redact_text(&text);
            assert!(!out.contains("sk_deep"), "depth {depth}");
            assert_eq!(out, text.replace("\"sk_deep\"", "\"***\""), "depth {depth}");
        }
        // Arrays count too.
        let text = format!("{}{{\"token\":\"t_deep\"}}{}", "[".repeat(3000), "]".repeat(3000));
        assert!(!redact_text(&text).contains("t_deep"));
    }

    #[test]
    fn key_order_is_kept_as_received() {
        let text = r#"{"z":1,"secretKey":"s","m":{"y":2,"token":"t","b":3},"a":4}"#;
        let out = redact_text(text);
        let keys: Vec<usize> = [
            "\"z\"",
            "\"secretKey\"",
            "\"m\"",
            "\"y\"",
            "\"token\"",
            "\"b\"",
            "\"a\"",
        ]
        .iter()
        .map(|key| out.find(key).unwrap())
        .collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{out}");
    }

    /// JSON values with keys drawn from a pool that mixes credentials and plain names.
    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(vec![
            "id",
            "email",
            "secretKey",
            "client",
            "clientSecret",
            "accessToken",
            "api_key",
            "privateKey",
            "sso_access_token",
            "name",
            "roles",
            "PassWord",
            "x-api-key",
            "meta",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-z\"\\\\ :{}é]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..6).prop_map(|pairs| Value::Object(
                    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>()
                )),
            ]
        })
    }

    /// Serializes with every key character escaped as `\u00XX` where `escape` says so, and
    /// with whitespace around separators, as an upstream might.
    fn write_escaped(value: &Value, escape: &mut impl FnMut() -> bool, out: &mut String) {
        match value {
            Value::Object(map) => {
                out.push_str("{ ");
                for (idx, (key, inner)) in map.iter().enumerate() {
                    if idx > 0 {
                        out.push_str(" ,\n");
                    }
                    out.push('"');
                    for c in key.chars() {
                        if c.is_ascii_alphanumeric() && escape() {
                            out.push_str(&format!("\\u{:04x}", c as u32));
                        } else {
                            out.push_str(serde_json::to_string(&c.to_string()).unwrap().trim_matches('"'));
                        }
                    }
                    out.push_str("\" : ");
                    write_escaped(inner, escape, out);
                }
                out.push_str(" }");
            }
            Value::Array(items) => {
                out.push('[');
                for (idx, item) in items.iter().enumerate() {
                    if idx > 0 {
                        out.push(',');
                    }
                    write_escaped(item, escape, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the record and however its keys are escaped, the result is the model's.
        #[test]
        fn redaction_matches_the_model(value in json_value(), escapes in prop::collection::vec(any::<bool>(), 1..16)) {
            let mut cycle = escapes.iter().copied().cycle();
            let mut text = String::new();
            write_escaped(&value, &mut || cycle.next().unwrap_or(false), &mut text);
            let out = redact_text(&text);
            let parsed: Value = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(parsed, model(&value));
        }

        /// A record the model leaves alone comes back byte for byte.
        #[test]
        fn clean_records_are_byte_identical(value in json_value()) {
            let text = serde_json::to_string_pretty(&value).unwrap();
            let out = redact_text(&text);
            if model(&value) == value {
                prop_assert_eq!(out, text);
            } else {
                prop_assert_ne!(out, text);
            }
        }
    }
}

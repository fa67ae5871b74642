//! `GET /users` query parameters → [`ListQuery`] (SPEC §3, §6).
//!
//! Every problem is collected and named, so one 400 tells the caller everything that is
//! wrong. Nothing here allocates more than the input's size.

use super::fields::FieldSet;
use super::filter::{FilterText, Filters, SortField, SortKey};
use crate::model::{ProviderKind, SourceName};

pub const DEFAULT_PER_PAGE: u64 = 25;
pub const MAX_PER_PAGE: u64 = 100;
/// Keeps `page * per_page` far from overflow while allowing any realistic page.
pub const MAX_PAGE: u64 = 1_000_000_000;
/// At most this many problems are reported; the rest add nothing a caller can act on.
const MAX_ERRORS: usize = 20;
/// Longest text filter, in characters: longer ones cannot be a role, e-mail or id.
pub const MAX_FILTER_CHARS: usize = 256;

/// A bad parameter and why, as shown in a 400 problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub name: String,
    pub reason: String,
}

impl ParamError {
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> ParamError {
        ParamError {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// What the parser needs to know of one configured source.
#[derive(Debug, Clone)]
pub struct SourceRef {
    pub name: SourceName,
    pub provider: ProviderKind,
}

/// A validated `GET /users` query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListQuery {
    pub page: u64,
    pub per_page: u64,
    /// Indices into the configured sources, in configured order.
    pub sources: Vec<usize>,
    pub include_raw: bool,
    /// The user fields to show (`fields`); all without it.
    pub fields: FieldSet,
    pub filters: Filters,
    /// Empty: the documented default order (sources in order, each in upstream order).
    pub sort: Vec<SortKey>,
    /// The caller's own parameters except `page`, to build paging links that keep them.
    pub link_params: Vec<(String, String)>,
}

const KNOWN: &str = "page, per_page, provider, role, email, employee_id, user_id, sort, include, fields";
const KNOWN_EXPORT: &str = "provider, role, email, employee_id, user_id, sort, include, fields";

/// `GET /users` parameters.
pub fn list_query(raw_query: &str, sources: &[SourceRef]) -> Result<ListQuery, Vec<ParamError>> {
    query(raw_query, sources, true)
}

/// `GET /users/export` parameters: those of `GET /users` but `page` and `per_page` (SPEC §12).
pub fn export_query(raw_query: &str, sources: &[SourceRef]) -> Result<ListQuery, Vec<ParamError>> {
    query(raw_query, sources, false)
}

fn query(raw_query: &str, sources: &[SourceRef], paged: bool) -> Result<ListQuery, Vec<ParamError>> {
    let mut errors = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut page = 1;
    let mut per_page = DEFAULT_PER_PAGE;
    let mut selected: Option<Vec<usize>> = None;
    let mut include_raw = false;
    let mut fields = FieldSet::ALL;
    let mut filters = Filters::default();
    let mut sort = Vec::new();
    let mut link_params = Vec::new();

    for (name, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        if errors.len() >= MAX_ERRORS {
            break;
        }
        if seen.iter().any(|earlier| *earlier == name) {
            errors.push(ParamError::new(name.as_ref(), "given more than once"));
            continue;
        }
        seen.push(name.to_string());
        match name.as_ref() {
            "page" | "per_page" if !paged => errors.push(ParamError::new(
                name.as_ref(),
                format!("the export has no pages: it streams every matching user; known: {KNOWN_EXPORT}"),
            )),
            "page" => match parse_integer(&value, 1, MAX_PAGE) {
                Ok(number) => page = number,
                Err(reason) => errors.push(ParamError::new("page", reason)),
            },
            "per_page" => match parse_integer(&value, 1, MAX_PER_PAGE) {
                Ok(number) => per_page = number,
                Err(reason) => errors.push(ParamError::new("per_page", reason)),
            },
            "provider" => match parse_sources(&value, sources) {
                Ok(indices) => selected = Some(indices),
                Err(reason) => errors.push(ParamError::new("provider", reason)),
            },
            "include" => match value.split(',').map(str::trim).try_for_each(|item| match item {
                "raw" => Ok(()),
                other => Err(format!(
                    "{} is not an include option; the only one is raw",
                    quote(other)
                )),
            }) {
                Ok(()) => include_raw = true,
                Err(reason) => errors.push(ParamError::new("include", reason)),
            },
            "role" => match parse_text(&value) {
                Ok(text) => filters.role = Some(text),
                Err(reason) => errors.push(ParamError::new("role", reason)),
            },
            "email" => match parse_text(&value) {
                Ok(text) => filters.email = Some(text),
                Err(reason) => errors.push(ParamError::new("email", reason)),
            },
            "employee_id" => match parse_text(&value) {
                Ok(text) => filters.employee_id = Some(text),
                Err(reason) => errors.push(ParamError::new("employee_id", reason)),
            },
            "user_id" => match uuid::Uuid::try_parse(value.trim()) {
                Ok(id) => filters.user_id = Some(id),
                Err(_) if value.contains(':') => errors.push(ParamError::new(
                    "user_id",
                    format!(
                        "must be the upstream UUID (provider_id), got {}; for a gateway id use GET /users/{{id}}",
                        quote(&value)
                    ),
                )),
                Err(_) => errors.push(ParamError::new(
                    "user_id",
                    format!(
                        "must be a UUID such as 0f8fad5b-d9cb-469f-a165-70867728950e, got {}",
                        quote(&value)
                    ),
                )),
            },
            "sort" => match parse_sort(&value) {
                Ok(keys) => sort = keys,
                Err(reason) => errors.push(ParamError::new("sort", reason)),
            },
            "fields" => match FieldSet::parse(&value) {
                Ok(set) => fields = set,
                Err(reason) => errors.push(ParamError::new("fields", reason)),
            },
            other => errors.push(ParamError::new(
                clip(other),
                format!("unknown parameter; known: {}", if paged { KNOWN } else { KNOWN_EXPORT }),
            )),
        }
        if name != "page" {
            link_params.push((name.into_owned(), value.into_owned()));
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ListQuery {
        page,
        per_page,
        sources: selected.unwrap_or_else(|| (0..sources.len()).collect()),
        include_raw,
        fields,
        filters,
        sort,
        link_params,
    })
}

fn parse_text(value: &str) -> Result<FilterText, String> {
    if value.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.chars().count() > MAX_FILTER_CHARS {
        return Err(format!("must be at most {MAX_FILTER_CHARS} characters"));
    }
    Ok(FilterText::new(value))
}

/// `field` or `-field`, comma-separated. A field given again adds nothing (ties on it are
/// already ties), so later repeats are ignored rather than rejected.
fn parse_sort(value: &str) -> Result<Vec<SortKey>, String> {
    let known = || SortField::ALL.map(SortField::as_str).join(", ");
    let mut keys: Vec<SortKey> = Vec::new();
    for item in value.split(',').map(str::trim) {
        let (descending, name) = match item.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, item),
        };
        let field = SortField::parse(name)
            .ok_or_else(|| format!("{} is not a sort field; sortable: {}", quote(item), known()))?;
        if !keys.iter().any(|key| key.field == field) {
            keys.push(SortKey { field, descending });
        }
    }
    Ok(keys)
}

/// A validated `GET /users/{id}` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserQuery {
    pub include_raw: bool,
    pub fields: FieldSet,
}

/// `GET /users/{id}` takes `include` and `fields` (SPEC §5).
pub fn user_query(raw_query: &str) -> Result<UserQuery, Vec<ParamError>> {
    let mut query = UserQuery {
        include_raw: false,
        fields: FieldSet::ALL,
    };
    let mut errors = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in form_urlencoded::parse(raw_query.as_bytes()).take(MAX_ERRORS) {
        if seen.iter().any(|earlier| *earlier == name) {
            errors.push(ParamError::new(clip(&name), "given more than once"));
            continue;
        }
        seen.push(name.to_string());
        match (name.as_ref(), value.as_ref()) {
            ("include", "raw") => query.include_raw = true,
            ("include", other) => errors.push(ParamError::new(
                "include",
                format!("{} is not an include option; the only one is raw", quote(other)),
            )),
            ("fields", text) => match FieldSet::parse(text) {
                Ok(set) => query.fields = set,
                Err(reason) => errors.push(ParamError::new("fields", reason)),
            },
            (other, _) => errors.push(ParamError::new(
                clip(other),
                "unknown parameter; known: include, fields",
            )),
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(errors)
    }
}

fn parse_integer(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let reason = || format!("must be an integer from {min} to {max}, got {}", quote(text));
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.len() > 20 || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(reason());
    }
    match trimmed.parse::<u64>() {
        Ok(number) if (min..=max).contains(&number) => Ok(number),
        _ => Err(reason()),
    }
}

/// A comma list of provider or source names → configured source indices, in config order.
fn parse_sources(text: &str, sources: &[SourceRef]) -> Result<Vec<usize>, String> {
    let mut chosen = vec![false; sources.len()];
    for item in text.split(',').map(str::trim) {
        let by_source = sources.iter().position(|source| source.name.as_str() == item);
        let by_provider: Vec<usize> = sources
            .iter()
            .enumerate()
            .filter(|(_, source)| source.provider.as_str() == item)
            .map(|(idx, _)| idx)
            .collect();
        match (by_source, by_provider.is_empty()) {
            (None, true) => {
                let known: Vec<&str> = sources.iter().map(|source| source.name.as_str()).collect();
                return Err(format!(
                    "{} is not a configured provider or source; configured sources: {}",
                    quote(item),
                    known.join(", ")
                ));
            }
            (by_source, _) => {
                by_source
                    .into_iter()
                    .chain(by_provider)
                    .for_each(|idx| chosen[idx] = true);
            }
        }
    }
    Ok(chosen
        .iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(idx, _)| idx)
        .collect())
}

/// Caller text shown back in an error, shortened so a huge input cannot bloat the response.
fn quote(text: &str) -> String {
    format!("{:?}", clip(text))
}

pub(super) fn clip(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        let head: String = text.chars().take(MAX_CHARS).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sources() -> Vec<SourceRef> {
        [
            ("thoughtindustries", ProviderKind::ThoughtIndustries),
            ("tapintosafety", ProviderKind::TapIntoSafety),
            ("ti-eu", ProviderKind::ThoughtIndustries),
        ]
        .into_iter()
        .map(|(name, provider)| SourceRef {
            name: SourceName::parse(name).unwrap(),
            provider,
        })
        .collect()
    }

    fn check(query: &str, expected: Result<(u64, u64, Vec<usize>, bool), Vec<&str>>) {
        let got = list_query(query, &sources());
        match (got, expected) {
            (Ok(q), Ok((page, per_page, selected, raw))) => {
                assert_eq!(
                    (q.page, q.per_page, q.sources, q.include_raw),
                    (page, per_page, selected, raw),
                    "{query}"
                )
            }
            (Err(errors), Err(names)) => {
                let got: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
                assert_eq!(got, names, "{query}: {errors:?}");
            }
            (got, expected) => panic!("{query}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn table() {
        check("", Ok((1, 25, vec![0, 1, 2], false)));
        check("page=3&per_page=100&include=raw", Ok((3, 100, vec![0, 1, 2], true)));
        check("provider=tapintosafety", Ok((1, 25, vec![1], false)));
        check("provider=thoughtindustries", Ok((1, 25, vec![0, 2], false)));
        check("provider=ti-eu,tapintosafety", Ok((1, 25, vec![1, 2], false)));
        check("page=0&per_page=1000", Err(vec!["page", "per_page"]));
        check("page=-1", Err(vec!["page"]));
        check("page=1.5", Err(vec!["page"]));
        check("page=99999999999999999999999", Err(vec!["page"]));
        check("page=1&page=2", Err(vec!["page"]));
        check("provider=nope", Err(vec!["provider"]));
        check("provider=", Err(vec!["provider"]));
        check("include=everything", Err(vec!["include"]));
        check("perpage=10", Err(vec!["perpage"]));
        check("role=&sort=password", Err(vec!["role", "sort"]));
        check("user_id=42&email=%20", Err(vec!["user_id", "email"]));
        check("sort=email,-email", Ok((1, 25, vec![0, 1, 2], false)));
        check("sort=email,", Err(vec!["sort"]));
        check(&format!("employee_id={}", "x".repeat(257)), Err(vec!["employee_id"]));
    }

    #[test]
    fn filters_and_sort() {
        let query = list_query(
            "role=Admin&email=Zo%C3%AB&employee_id=emp-1&user_id=0F8FAD5B-D9CB-469F-A165-70867728950E&sort=-created_at,email",
            &sources(),
        )
        .unwrap();
        assert_eq!(query.filters.role.as_ref().unwrap().folded, "admin");
        assert_eq!(query.filters.role.as_ref().unwrap().original, "Admin");
        assert_eq!(query.filters.email.as_ref().unwrap().folded, "zoë");
        assert_eq!(
            query.filters.user_id.unwrap().to_string(),
            "0f8fad5b-d9cb-469f-a165-70867728950e"
        );
        let sort: Vec<String> = query.sort.iter().map(ToString::to_string).collect();
        assert_eq!(sort, ["-created_at", "email"]);
    }

    #[test]
    fn errors_say_why_and_keep_links_params() {
        let errors = list_query("per_page=1000", &sources()).unwrap_err();
        assert!(errors[0].reason.contains("1 to 100"), "{errors:?}");
        let query = list_query("provider=tapintosafety&page=2&include=raw", &sources()).unwrap();
        assert_eq!(
            query.link_params,
            vec![
                ("provider".to_owned(), "tapintosafety".to_owned()),
                ("include".to_owned(), "raw".to_owned())
            ]
        );
    }

    #[test]
    fn fields_are_parsed_for_lists_users_and_exports() {
        use crate::query::fields::Field;
        let query = list_query("fields=email,role&include=raw", &sources()).unwrap();
        assert!(query.include_raw);
        let shown: Vec<Field> = query.fields.iter().collect();
        assert_eq!(shown, [Field::Id, Field::Email, Field::Role]);
        assert_eq!(list_query("", &sources()).unwrap().fields, FieldSet::ALL);
        check("fields=email,secret", Err(vec!["fields"]));
        check("fields=", Err(vec!["fields"]));

        let one = user_query("fields=last_name&include=raw").unwrap();
        assert!(one.include_raw && one.fields.contains(Field::LastName) && !one.fields.contains(Field::Email));
        let errors = user_query("fields=nope&include=raw&include=raw&page=2").unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["fields", "include", "page"]);
        assert!(errors[0].reason.contains(r#""nope""#), "{errors:?}");
    }

    #[test]
    fn an_export_takes_the_list_parameters_but_paging() {
        let query = export_query("provider=tapintosafety&sort=-email&fields=email", &sources()).unwrap();
        assert_eq!(query.sources, [1]);
        assert_eq!(query.sort.len(), 1);
        let errors = export_query("page=2&per_page=10&role=admin", &sources()).unwrap_err();
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["page", "per_page"]);
        assert!(errors[0].reason.contains("no pages"), "{errors:?}");
        let unknown = export_query("nope=1", &sources()).unwrap_err();
        assert!(!unknown[0].reason.contains("per_page"), "{unknown:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any input parses or fails with a bounded, named error list; never panics.
        #[test]
        fn arbitrary_queries_never_panic(raw in ".{0,300}") {
            match list_query(&raw, &sources()) {
                Ok(query) => {
                    prop_assert!((1..=MAX_PAGE).contains(&query.page));
                    prop_assert!((1..=MAX_PER_PAGE).contains(&query.per_page));
                }
                Err(errors) => {
                    prop_assert!(!errors.is_empty() && errors.len() <= MAX_ERRORS);
                    for error in errors {
                        prop_assert!(error.name.chars().count() <= 65 && error.reason.len() < 600);
                    }
                }
            }
        }

        #[test]
        fn valid_numbers_round_trip(page in 1u64..=MAX_PAGE, per_page in 1u64..=MAX_PER_PAGE) {
            let query = list_query(&format!("page={page}&per_page={per_page}"), &sources()).unwrap();
            prop_assert_eq!((query.page, query.per_page), (page, per_page));
        }
    }
}

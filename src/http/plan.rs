//! `GET /users/plan`: the query plan for the same parameters as `GET /users`, explained.
//!
//! Shows, per source, what is pushed down, what the gateway filters itself, how the source
//! is read and why, and which upstream pages that means (and how many are cached). It is
//! answered from the plan and the cache alone: it never calls an upstream.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::problem::{Error, Problem};
use super::users::{ListParams, ProviderJson};
use super::AppState;
use crate::execute::{FactsView, FilterFacts, SourcePages};
use crate::query::parse;
use crate::query::plan::Action;

pub fn router() -> Router<AppState> {
    Router::new().route("/users/plan", get(explain_plan))
}

/// How `GET /users` would answer these parameters.
#[derive(Serialize, ToSchema)]
pub struct PlanJson {
    #[schema(example = 1)]
    pub page: u64,
    #[schema(example = 25)]
    pub per_page: u64,
    /// The filters given, by name.
    pub filters: BTreeMap<&'static str, String>,
    /// The sort keys given, `-` for descending.
    pub sort: Vec<String>,
    /// The order of the merged list.
    #[schema(example = "sources in configured order (thoughtindustries, tapintosafety), each in upstream order")]
    pub order: String,
    /// Each selected source, in merge order.
    pub sources: Vec<SourcePlanJson>,
    /// Upstream calls the query would make now, when every source's pages are known.
    #[schema(required = true)]
    pub upstream_calls: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlanAction {
    /// The source is called.
    Call,
    /// The source is not called: its users cannot match.
    Skip,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadJson {
    /// Only the upstream pages under the requested window, counted by the upstream's total.
    Direct,
    /// Every page of the pushed-down query, filtered (and sorted) by the gateway.
    Full,
}

/// One source's part of the plan.
#[derive(Serialize, ToSchema)]
pub struct SourcePlanJson {
    #[schema(example = "thoughtindustries")]
    pub source: String,
    pub provider: ProviderJson,
    pub action: PlanAction,
    /// Why the source is skipped, or why it is read the way it is.
    #[schema(
        example = "email cannot be pushed down to thoughtindustries, so the gateway reads every page and filters"
    )]
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<ReadJson>,
    /// Upstream query parameters sent with every page request.
    pub pushed_down: BTreeMap<&'static str, String>,
    /// The upstream request for page N.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "GET /incoming/v2/users?role=admin&page={n}")]
    pub upstream_request: Option<String>,
    /// Every filter the gateway applies to this source's users (pushed-down ones are re-checked,
    /// so a looser upstream match never widens the result).
    pub gateway_filters: Vec<&'static str>,
    /// Filters the upstream cannot apply: only the gateway does.
    pub gateway_only_filters: Vec<&'static str>,
    /// What the gateway assumes about the upstream for this plan.
    pub assumptions: Vec<String>,
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<PagesJson>,
    /// What the gateway has learned about this source's pushed-down query from earlier
    /// requests, and which it uses to choose the read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<FactsJson>,
}

/// Facts kept about one source's pushed-down query (they outlive the cached pages).
#[derive(Serialize, ToSchema)]
pub struct FactsJson {
    /// The upstream's total for the pushed-down query, as every page read so far agrees.
    #[schema(required = true, example = 1250)]
    pub total: Option<u64>,
    /// The upstream's page size.
    #[schema(required = true, example = 40)]
    pub page_size: Option<u32>,
    /// Seconds since the total and page size were learned.
    #[schema(required = true, example = 12)]
    pub learned_secs_ago: Option<u64>,
    pub filter: FilterFactsJson,
    /// With `filter` = `loose`: the upstream page that first held a user outside the filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loose_on_page: Option<u64>,
    /// With `filter` = `exact` or `loose`: seconds since that was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_seen_secs_ago: Option<u64>,
}

/// Whether the upstream applies its pushed-down filter exactly.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FilterFactsJson {
    /// No filter is pushed down to this source.
    NotPushed,
    /// Not yet checked: the next read is a full one that checks it.
    Unchecked,
    /// A full read found only matching users: windows are read directly.
    Exact,
    /// The upstream returned users outside the filter: the source is read in full and filtered.
    Loose,
}

impl From<FactsView> for FactsJson {
    fn from(view: FactsView) -> FactsJson {
        let (filter, loose_on_page, filter_seen_secs_ago) = match view.filter {
            FilterFacts::NotPushed => (FilterFactsJson::NotPushed, None, None),
            FilterFacts::Unchecked => (FilterFactsJson::Unchecked, None, None),
            FilterFacts::Exact { checked_secs_ago } => (FilterFactsJson::Exact, None, Some(checked_secs_ago)),
            FilterFacts::Loose { page, seen_secs_ago } => (FilterFactsJson::Loose, Some(page), Some(seen_secs_ago)),
        };
        FactsJson {
            total: view.total,
            page_size: view.page_size,
            learned_secs_ago: view.learned_secs_ago,
            filter,
            loose_on_page,
            filter_seen_secs_ago,
        }
    }
}

/// The upstream pages a call reads.
#[derive(Serialize, ToSchema)]
pub struct PagesJson {
    /// Pages of the pushed-down query; null until one of its pages has been read.
    #[schema(required = true, example = 32)]
    pub upstream_pages: Option<u64>,
    /// The pages to read, as ranges (`"19"`, `"1-32"`); null while they depend on totals
    /// not yet known (then page 1 comes first, then the pages under the window).
    #[schema(required = true, example = "19")]
    pub to_read: Option<String>,
    #[schema(required = true, example = 2)]
    pub to_read_count: Option<u64>,
    /// How many of those pages (or of page 1, while they are unknown) are cached and would be
    /// served without waiting for an upstream: fresh, or stale by less than
    /// GATEWAY_STALE_WHILE_REVALIDATE_SECS. A page further past its freshness is kept only to
    /// stand in if its refetch fails, and is not counted.
    #[schema(example = 1)]
    pub cached: u64,
    /// How many of the `cached` pages are stale: served at once, flagged `stale`, while one
    /// background refresh replaces each (stale-while-revalidate).
    #[schema(example = 0)]
    pub stale: u64,
    /// `GATEWAY_MAX_UPSTREAM_PAGES`: a full read of more pages is refused with a 422.
    #[schema(example = 1000)]
    pub limit: u64,
    pub within_limit: bool,
}

/// `1, 2, 3, 7` → `"1-3, 7"`.
fn ranges(pages: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut idx = 0;
    while idx < pages.len() {
        let start = pages[idx];
        let mut end = start;
        while idx + 1 < pages.len() && pages[idx + 1] == end + 1 {
            idx += 1;
            end = pages[idx];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        idx += 1;
    }
    parts.join(", ")
}

/// Explain how `GET /users` would answer these parameters.
///
/// Takes exactly the parameters of `GET /users`. Never calls an upstream: pages are
/// described from the plan and the cache, so unknown totals show as null.
#[utoipa::path(
    get,
    path = "/users/plan",
    tag = "users",
    params(ListParams),
    responses(
        (status = 200, description = "The plan", body = PlanJson),
        (status = 400, description = "Invalid parameters, each named", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong caller key (only when GATEWAY_API_KEYS is set)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Load shed: more requests in flight than GATEWAY_MAX_CONCURRENT_REQUESTS; retry after `Retry-After`", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security((), ("bearer" = [])),
)]
pub async fn explain_plan(
    State(state): State<AppState>,
    RawQuery(raw_query): RawQuery,
) -> Result<Json<PlanJson>, Error> {
    let query =
        parse::list_query(raw_query.as_deref().unwrap_or(""), &state.source_refs).map_err(Error::InvalidParams)?;
    let plan = state.plan(&query);
    let explained: Vec<SourcePages> = state.executor.explain(&query, &plan).await;
    let limit = state.executor.max_pages();
    let given = query.filters.given();

    let sources: Vec<SourcePlanJson> = plan
        .steps
        .iter()
        .map(|step| {
            let client = &state.executor.sources()[step.source_idx];
            let base = SourcePlanJson {
                source: client.name.to_string(),
                provider: client.kind().into(),
                action: PlanAction::Skip,
                reason: String::new(),
                read: None,
                pushed_down: BTreeMap::new(),
                upstream_request: None,
                gateway_filters: Vec::new(),
                gateway_only_filters: Vec::new(),
                assumptions: Vec::new(),
                notes: Vec::new(),
                pages: None,
                facts: None,
            };
            match &step.action {
                Action::Skip { reason } => SourcePlanJson {
                    reason: format!("not called: {reason}"),
                    ..base
                },
                Action::Call(call) => {
                    let explained = explained.iter().find(|pages| pages.source_idx == step.source_idx);
                    let (read, reason) = match explained {
                        Some(pages) if !pages.choice.full => (ReadJson::Direct, pages.choice.reason.clone()),
                        Some(pages) => (ReadJson::Full, pages.choice.reason.clone()),
                        None => (ReadJson::Full, String::new()),
                    };
                    let pages_json = explained.map(|pages| PagesJson {
                        upstream_pages: pages.upstream_pages,
                        to_read: pages.to_read.as_deref().map(ranges),
                        to_read_count: pages.to_read.as_ref().map(|pages| pages.len() as u64),
                        cached: pages.cached,
                        stale: pages.stale,
                        limit,
                        within_limit: !pages.over_limit,
                    });
                    let prefix = call.pushed.to_string();
                    let separator = if prefix.is_empty() { "" } else { "&" };
                    SourcePlanJson {
                        action: PlanAction::Call,
                        reason,
                        read: Some(read),
                        pushed_down: call
                            .pushed
                            .pairs()
                            .iter()
                            .map(|(key, value)| (*key, value.clone()))
                            .collect(),
                        upstream_request: Some(format!(
                            "GET {}?{prefix}{separator}page={{n}}",
                            client.provider.list_path()
                        )),
                        gateway_filters: given.iter().map(|name| name.as_str()).collect(),
                        gateway_only_filters: call.gateway_only.iter().map(|name| name.as_str()).collect(),
                        assumptions: call.assumptions.clone(),
                        notes: call.notes.clone(),
                        pages: pages_json,
                        facts: explained.map(|pages| pages.facts.into()),
                        ..base
                    }
                }
            }
        })
        .collect();

    let upstream_calls = explained
        .iter()
        .map(|pages| {
            pages
                .to_read
                .as_ref()
                .map(|to_read| (to_read.len() as u64).saturating_sub(pages.cached))
        })
        .sum::<Option<u64>>();
    let filters = &query.filters;
    let mut filter_map = BTreeMap::new();
    for (name, value) in [
        ("role", filters.role.as_ref().map(|text| text.original.clone())),
        ("email", filters.email.as_ref().map(|text| text.original.clone())),
        (
            "employee_id",
            filters.employee_id.as_ref().map(|text| text.original.clone()),
        ),
        ("user_id", filters.user_id.map(|id| id.to_string())),
    ] {
        if let Some(value) = value {
            filter_map.insert(name, value);
        }
    }
    let source_names: Vec<String> = state.source_refs.iter().map(|source| source.name.to_string()).collect();
    let order = if plan.sorted {
        let keys: Vec<String> = query.sort.iter().map(ToString::to_string).collect();
        format!(
            "merged and sorted by the gateway by {}, then id; strings case-insensitively, nulls last",
            keys.join(", ")
        )
    } else {
        format!(
            "sources in configured order ({}), each in upstream order",
            source_names.join(", ")
        )
    };
    Ok(Json(PlanJson {
        page: query.page,
        per_page: query.per_page,
        filters: filter_map,
        sort: query.sort.iter().map(ToString::to_string).collect(),
        order,
        sources,
        upstream_calls,
    }))
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn page_ranges_read_well() {
        assert_eq!(ranges(&[1, 19]), "1, 19");
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
        assert_eq!(ranges(&[]), "");
    }
}

//! The plan: per selected source, call it (with what pushed down, read how) or skip it.
//!
//! A plan is a value (STYLE rule 8): built here from the query and the adapters' pushdown
//! rules, interpreted by `execute`, shown by `GET /users/plan`. Pure: no I/O.
//!
//! The read mode here is what the query alone decides; `execute` may read a direct source
//! in full as well, from what it learned about the source (its facts).

use std::sync::Arc;

use super::filter::{FilterName, Filters};
use super::parse::{ListQuery, SourceRef};
use super::pushdown::{PushDown, Pushdown, PushdownOptions, PushedQuery};

/// How a called source's users are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadMode {
    /// Only the upstream pages under the caller's window, using the upstream's total:
    /// every filter is pushed down and no sort is asked.
    Direct,
    /// Every page of the pushed-down query, then filtered (and sorted) by the gateway.
    Full { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub pushed: PushedQuery,
    /// Filters the upstream applies; the gateway re-checks them.
    pub pushed_filters: Vec<FilterName>,
    /// The query's filters restricted to `pushed_filters`: what every user the upstream
    /// returns must match, or the upstream matched more loosely than documented.
    pub upstream_must_match: Filters,
    /// Filters only the gateway applies for this source.
    pub gateway_only: Vec<FilterName>,
    pub read: ReadMode,
    pub assumptions: Vec<String>,
    pub notes: Vec<String>,
}

// A plan holds one step per source, built once per request: boxing `Call` buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Call(Call),
    /// No call: the source's users cannot match.
    Skip {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub source_idx: usize,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One step per selected source, in configured order.
    pub steps: Vec<Step>,
    /// The merged list is sorted by the gateway (the caller asked for `sort`).
    pub sorted: bool,
}

impl Plan {
    pub fn calls(&self) -> impl Iterator<Item = (usize, &Call)> {
        self.steps.iter().filter_map(|step| match &step.action {
            Action::Call(call) => Some((step.source_idx, call)),
            Action::Skip { .. } => None,
        })
    }
}

/// `adapters[i]` is the pushdown rule of `sources[i]`.
pub fn plan<A: PushDown + ?Sized>(
    query: &ListQuery,
    sources: &[SourceRef],
    adapters: &[Arc<A>],
    options: &PushdownOptions,
) -> Plan {
    let given = query.filters.given();
    let sorted = !query.sort.is_empty();
    let steps = query
        .sources
        .iter()
        .map(|&source_idx| {
            let provider = sources[source_idx].provider;
            let Pushdown {
                pushed,
                pushed_filters,
                cannot_match,
                assumptions,
                notes,
            } = adapters[source_idx].push_down(&query.filters, options);
            let action = match cannot_match {
                Some(reason) => Action::Skip { reason },
                None => {
                    let gateway_only: Vec<FilterName> = given
                        .iter()
                        .copied()
                        .filter(|name| !pushed_filters.contains(name))
                        .collect();
                    let read = if sorted {
                        ReadMode::Full {
                            reason: "sort: no provider can sort, so the gateway reads every matching user and sorts"
                                .to_owned(),
                        }
                    } else if !gateway_only.is_empty() {
                        let names: Vec<&str> = gateway_only.iter().map(|name| name.as_str()).collect();
                        ReadMode::Full {
                            reason: format!(
                                "{} cannot be pushed down to {provider}, so the gateway reads every page and filters",
                                names.join(", ")
                            ),
                        }
                    } else {
                        ReadMode::Direct
                    };
                    Action::Call(Call {
                        upstream_must_match: query.filters.only(&pushed_filters),
                        pushed,
                        pushed_filters,
                        gateway_only,
                        read,
                        assumptions,
                        notes,
                    })
                }
            };
            Step { source_idx, action }
        })
        .collect();
    Plan { steps, sorted }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProviderKind, SourceName};
    use crate::query::parse::list_query;

    fn sources() -> Vec<SourceRef> {
        [ProviderKind::ThoughtIndustries, ProviderKind::TapIntoSafety]
            .into_iter()
            .map(|provider| SourceRef {
                name: SourceName::parse(provider.as_str()).unwrap(),
                provider,
            })
            .collect()
    }

    /// (pushed query text, read mode is direct) per source, or the skip marker.
    fn check(raw: &str, options: PushdownOptions, expected: &[&str]) {
        let query = list_query(raw, &sources()).unwrap();
        let adapters: Vec<_> = sources()
            .iter()
            .map(|source| crate::providers::adapter(source.provider))
            .collect();
        let plan = plan(&query, &sources(), &adapters, &options);
        let got: Vec<String> = plan
            .steps
            .iter()
            .map(|step| match &step.action {
                Action::Skip { .. } => "skip".to_owned(),
                Action::Call(call) => format!(
                    "{} {}",
                    if call.read == ReadMode::Direct {
                        "direct"
                    } else {
                        "full"
                    },
                    call.pushed
                )
                .trim()
                .to_owned(),
            })
            .collect();
        assert_eq!(got, expected, "{raw}");
    }

    #[test]
    fn decisions() {
        let on = PushdownOptions::default();
        let off = PushdownOptions {
            ti_role_pushdown: false,
        };
        check("", on, &["direct", "direct"]);
        check("role=Admin", on, &["direct role=admin", "full"]);
        check("role=Admin", off, &["full", "full"]);
        check("email=Zo%C3%AB", on, &["full", "direct email=Zo%C3%AB"]);
        check("employee_id=EMP-1", on, &["skip", "direct orgId=EMP-1"]);
        check(
            "user_id=0F8FAD5B-D9CB-469F-A165-70867728950E",
            on,
            &["full", "direct userId=0f8fad5b-d9cb-469f-a165-70867728950e"],
        );
        check("sort=email", on, &["full", "full"]);
        check("role=admin&email=x&provider=tapintosafety", on, &["full email=x"]);
    }
}

//! How each selected source fared, for `meta.sources`.

use std::time::Duration;

use super::pages::PageSet;
use crate::cache::Lookup;
use crate::merge::layout::SourceLayout;
use crate::providers::SourceError;
use crate::query::plan::{Action, Plan};

/// Pages served past their freshness (RFC 5861), for one source or a whole answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// Age of the oldest such page (`age_secs`).
    pub age: Duration,
    /// How far past its freshness the stalest such page is (`Cache-Status: …; ttl=-N`).
    pub stale_for: Duration,
    /// Whether one stood in for a failed upstream call (stale-if-error: `fwd=stale`); when
    /// not, every such page was served while a background refresh replaces it
    /// (stale-while-revalidate).
    pub stood_in: bool,
}

impl Staleness {
    /// The staleness a lookup served, if it served a stale page.
    pub fn of(lookup: Lookup) -> Option<Staleness> {
        match lookup {
            Lookup::Hit | Lookup::Fetched => None,
            Lookup::Stale { age, stale_for } => Some(Staleness {
                age,
                stale_for,
                stood_in: true,
            }),
            Lookup::Revalidating { age, stale_for } => Some(Staleness {
                age,
                stale_for,
                stood_in: false,
            }),
        }
    }

    /// Both together: the oldest page, the stalest page, and whether any stood in.
    pub fn merge(self, other: Staleness) -> Staleness {
        Staleness {
            age: self.age.max(other.age),
            stale_for: self.stale_for.max(other.stale_for),
            stood_in: self.stood_in || other.stood_in,
        }
    }

    /// Over several sources' (or pages') staleness.
    pub fn merged(all: impl IntoIterator<Item = Option<Staleness>>) -> Option<Staleness> {
        all.into_iter().flatten().reduce(Staleness::merge)
    }
}

#[derive(Debug, Clone)]
pub enum SourceStatus {
    /// `total` counts the source's matching users; `stale` says which of the pages it was
    /// read from were served past their freshness (a failed refetch, or a refresh running
    /// in the background).
    Ok {
        total: u64,
        stale: Option<Staleness>,
    },
    Failed(SourceError),
    Skipped {
        reason: String,
    },
}

/// How one selected source fared.
#[derive(Debug, Clone)]
pub struct SourceReport {
    pub source_idx: usize,
    pub status: SourceStatus,
}

/// One report per plan step, from the request's pages and the final layout's states.
pub(super) fn reports(plan: &Plan, set: &PageSet, states: &[SourceLayout]) -> Vec<SourceReport> {
    plan.steps
        .iter()
        .map(|step| SourceReport {
            source_idx: step.source_idx,
            status: match &step.action {
                Action::Skip { reason } => SourceStatus::Skipped { reason: reason.clone() },
                Action::Call(_) => match set.failure(step.source_idx) {
                    Some(error) => SourceStatus::Failed(error.clone()),
                    None => SourceStatus::Ok {
                        total: match states[step.source_idx] {
                            SourceLayout::Direct { total, .. } => total,
                            SourceLayout::Full { matching, .. } => matching.unwrap_or(0),
                            SourceLayout::Absent | SourceLayout::Unknown => 0,
                        },
                        stale: set.stale(step.source_idx),
                    },
                },
            },
        })
        .collect()
}

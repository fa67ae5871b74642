//! How each selected source fared, for `meta.sources`.

use std::time::Duration;

use super::pages::PageSet;
use crate::merge::layout::SourceLayout;
use crate::providers::SourceError;
use crate::query::plan::{Action, Plan};

#[derive(Debug, Clone)]
pub enum SourceStatus {
    /// `total` counts the source's matching users; `stale` is the age of the oldest page
    /// served past its freshness because the upstream failed (stale-if-error).
    Ok {
        total: u64,
        stale: Option<Duration>,
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

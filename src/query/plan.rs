//! The plan: per selected source, call it (with which pushed-down query) or skip it.
//!
//! A plan is a value (STYLE rule 8): built here, interpreted by `execute`, shown in logs.
//! Filters are not served yet, so every selected source is called with an empty
//! pushed-down query; the shape is the one filters will extend.

use super::parse::ListQuery;
use crate::providers::PushedQuery;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read this source's pages for the pushed-down query.
    Call { pushed: PushedQuery },
    /// No call: the source's users cannot match.
    Skip { reason: String },
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
}

pub fn plan(query: &ListQuery) -> Plan {
    Plan {
        steps: query
            .sources
            .iter()
            .map(|&source_idx| Step {
                source_idx,
                action: Action::Call {
                    pushed: PushedQuery::default(),
                },
            })
            .collect(),
    }
}

//! `GET /users/export` (SPEC §12): every matching user in the order a walk of `/users`
//! gives, one chunk at a time through [`Executor::list`], so what is held is one chunk.
//!
//! A source that fails mid-walk drops out and the walk goes on over the others from where
//! each stands. The order over fewer sources keeps their users' relative order (source
//! concatenation, or one total sort order), so the offset into it is the number of users
//! the remaining sources have given so far; a chunk in which a source failed is discarded
//! and asked again over the others.

use std::collections::BTreeMap;

use super::{CallContext, Executor, ListError, SourceReport, SourceStatus, TooManyPages, UserRef};
use crate::query::parse::ListQuery;
use crate::query::plan::Plan;

/// Users one step of the walk asks for: several upstream pages fetched at once per step,
/// and still a small, fixed amount held.
pub const CHUNK: u64 = 500;

/// Where an export stands.
#[derive(Debug)]
pub struct ExportWalk {
    /// `sources` is the sources still in the walk; `page`/`per_page` are set per step.
    query: ListQuery,
    /// Per configured source index: users given so far.
    given: Vec<u64>,
    /// Per source index: the last report (a failure stays).
    reports: BTreeMap<usize, SourceReport>,
    /// Every user is given, or no source is left.
    done: bool,
    /// A step was refused (more pages than the ceiling): the export is not complete.
    refused: bool,
}

/// How an export ended: the final `meta` line.
#[derive(Debug)]
pub struct ExportSummary {
    /// Every selected source answered to the end, and every user it counted was given.
    pub complete: bool,
    /// Users given.
    pub total: u64,
    /// Each selected source, in merge order.
    pub reports: Vec<SourceReport>,
}

impl ExportWalk {
    pub fn new(query: ListQuery, n_sources: usize) -> ExportWalk {
        ExportWalk {
            query,
            given: vec![0; n_sources],
            reports: BTreeMap::new(),
            done: false,
            refused: false,
        }
    }

    /// The next users, or `None` when the walk is over. A refusal is returned once (the
    /// first step's decides the caller's status); the walk is then over.
    pub async fn next(
        &mut self,
        executor: &Executor,
        plan_of: impl Fn(&ListQuery) -> Plan,
        ctx: &CallContext<'_>,
    ) -> Result<Option<Vec<UserRef>>, TooManyPages> {
        while !self.done {
            let offset: u64 = self.query.sources.iter().map(|&idx| self.given[idx]).sum();
            self.query.per_page = CHUNK;
            self.query.page = offset / CHUNK + 1;
            let plan = plan_of(&self.query);
            let result = match executor.list(&self.query, &plan, ctx).await {
                Ok(result) => result,
                Err(ListError::AllFailed { reports }) => {
                    self.note(reports);
                    self.done = true;
                    break;
                }
                Err(ListError::TooManyPages(refused)) => {
                    self.done = true;
                    self.refused = true;
                    return Err(refused);
                }
            };
            let failed: Vec<usize> = result
                .reports
                .iter()
                .filter(|report| matches!(report.status, SourceStatus::Failed(_)))
                .map(|report| report.source_idx)
                .collect();
            self.note(result.reports);
            if !failed.is_empty() {
                // Laid out over the others from this step's page: not where they stand.
                self.query.sources.retain(|idx| !failed.contains(idx));
                self.done = self.query.sources.is_empty();
                continue;
            }
            let skip = (offset % CHUNK) as usize;
            let users: Vec<UserRef> = result.users.into_iter().skip(skip).collect();
            if users.is_empty() {
                self.done = true;
                break;
            }
            for user in &users {
                let idx = executor.sources().iter().position(|client| client.name == user.source);
                if let Some(idx) = idx {
                    self.given[idx] += 1;
                }
            }
            self.done = offset + users.len() as u64 >= result.meta.total;
            return Ok(Some(users));
        }
        Ok(None)
    }

    fn note(&mut self, reports: Vec<SourceReport>) {
        for report in reports {
            let failed = matches!(
                self.reports.get(&report.source_idx).map(|r| &r.status),
                Some(SourceStatus::Failed(_))
            );
            if !failed {
                self.reports.insert(report.source_idx, report);
            }
        }
    }

    /// The final `meta`: complete when nothing failed or was refused and every source gave
    /// exactly the users it last counted.
    pub fn summary(&self) -> ExportSummary {
        let total = self.given.iter().sum();
        let all_given = self.reports.values().all(|report| match &report.status {
            SourceStatus::Ok { total, .. } => self.given[report.source_idx] == *total,
            SourceStatus::Skipped { .. } => true,
            SourceStatus::Failed(_) => false,
        });
        ExportSummary {
            complete: self.done && !self.refused && all_given,
            total,
            reports: self.reports.values().cloned().collect(),
        }
    }
}

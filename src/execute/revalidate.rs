//! The background refresh of a page served stale (stale-while-revalidate, SPEC §7).
//!
//! The cache decides when a page needs one and runs at most one per page; this builds it:
//! the same fetch a request makes (breaker, per-source permits, retries, size limit) under
//! a deadline of its own, stored through the cache (coalesced with any foreground fetch of
//! the page), then checked against the source's facts like every page. It owns everything
//! it uses, so it outlives the request that found the page stale, and that caller hanging
//! up cannot cancel it.

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::Instrument;

use super::reads::Read;
use super::{next_generation, Executor};
use crate::cache::facts::Verdict;
use crate::cache::{CachedPage, FactsStore, PageCache, PageKey, QueryKey};
use crate::query::filter::Filters;

impl Executor {
    /// The refresh of `page` of `read`'s query, on behalf of the request `request_id` (sent
    /// upstream, as every call a request causes carries it).
    pub(super) fn revalidation(
        &self,
        read: &Read<'_>,
        page: u64,
        request_id: &str,
    ) -> impl Future<Output = ()> + Send + 'static {
        let client = self.sources[read.source_idx].clone();
        let (pages, facts) = (self.pages.clone(), self.facts.clone());
        let (pushed, query, must_match) = (
            read.pushed.clone(),
            read.query.clone(),
            read.upstream_must_match.clone(),
        );
        let request_id: Arc<str> = Arc::from(request_id);
        let now = Instant::now();
        let deadline = now.checked_add(self.refresh_deadline).unwrap_or(now);
        let span = tracing::info_span!("revalidate", source = %query.source, page, %request_id);
        span.follows_from(tracing::Span::current());
        async move {
            let key = PageKey::new(&query, page);
            let fetch = client.fetch_page(&pushed, page, &request_id, deadline);
            match pages.revalidate(key, fetch).await {
                Ok((cached, _)) => admit(&pages, &facts, &query, page, &cached, &must_match).await,
                Err(error) => tracing::warn!(
                    %error,
                    "background refresh of a stale page failed; the stale copy stays until its windows end"
                ),
            }
        }
        .instrument(span)
    }
}

/// Checks a refreshed page against its source's facts, as a request checks every page. One
/// that contradicts them leaves the cache with the page it contradicts, and the facts stay:
/// the next request reads both pages again and settles it as it settles any contradiction
/// (forget the facts and reread once, or fail the source with the reason).
async fn admit(
    pages: &PageCache,
    store: &FactsStore,
    query: &QueryKey,
    page: u64,
    cached: &Arc<CachedPage>,
    must_match: &Filters,
) {
    let facts = store.get(query);
    let verdict = facts
        .lock()
        .expect("facts lock")
        .admit(page, cached, must_match, next_generation(), Instant::now());
    match verdict {
        Verdict::Admitted { loose } => {
            if loose {
                tracing::warn!(
                    "upstream matched more loosely than its pushed-down filter; reading it in full from now on"
                );
            }
            store.reweigh(query, &facts);
        }
        Verdict::Contradicts(contradiction) => {
            tracing::warn!(
                reason = %contradiction.reason,
                "a refreshed page contradicts what is known of its source; it and the page it contradicts are dropped"
            );
            for involved in [Some(page), contradiction.other_page].into_iter().flatten() {
                pages.invalidate(&PageKey::new(query, involved)).await;
            }
        }
    }
}

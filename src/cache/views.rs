//! Materialized views of full reads (SPEC §7): for the pages of one or more fully read
//! sources, where the users matching a query's filters are, in upstream order or sorted.
//!
//! A sorted or gateway-filtered walk reads every page of a source for every caller page;
//! with the pages cached that costs no upstream call, but filtering and sorting tens of
//! thousands of users per caller page would still make page 2 as slow as page 1. A view
//! is built once from the pages a request holds and reused by every later request that
//! holds the very same pages (by identity, as `responses` does): the matching count is then
//! O(1) and a window O(per_page). A page refetched, replaced or dropped is a different
//! allocation, so the view no longer matches and is built again: a view can never answer
//! for pages it was not built from.
//!
//! A view holds only positions (8 bytes a matching user) and `Weak`s of its pages: it never
//! keeps an evicted page alive outside the page cache's byte budget.

use std::ops::Range;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::facts::QueryKey;
use super::pages::CachedPage;
use crate::merge::sort::sort_users;
use crate::model::User;
use crate::query::filter::{Filters, SortKey};

/// What a view is of: the sources' pushed-down queries, the filters the gateway applies,
/// and the order (empty: upstream order, source after source).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewKey {
    pub queries: Vec<QueryKey>,
    pub filters: Filters,
    pub sort: Vec<SortKey>,
}

impl ViewKey {
    fn approximate_bytes(&self) -> usize {
        let queries: usize = self
            .queries
            .iter()
            .map(|query| 48 + query.source.as_str().len() + query.pushed.len())
            .sum();
        queries + std::mem::size_of::<Filters>() + 16 * self.sort.len()
    }
}

/// One user's place: the index of its page among the view's pages, and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub page: u32,
    pub idx: u32,
}

/// The matching users of a list of pages, in the view's order.
#[derive(Debug)]
pub struct View {
    /// The pages it was built from, in the order `Pos::page` counts them.
    pages: Vec<Weak<CachedPage>>,
    order: Vec<Pos>,
}

/// A user being placed in a view (sorted through the users it points at).
struct Candidate<'a> {
    pos: Pos,
    user: &'a User,
}

impl std::ops::Deref for Candidate<'_> {
    type Target = User;

    fn deref(&self) -> &User {
        self.user
    }
}

impl View {
    /// The users of `pages` that match `filters`, in page order or sorted by `sort`.
    pub fn build(pages: &[&Arc<CachedPage>], filters: &Filters, sort: &[SortKey]) -> View {
        let mut candidates: Vec<Candidate<'_>> = pages
            .iter()
            .enumerate()
            .flat_map(|(page, cached)| {
                cached
                    .page
                    .users
                    .iter()
                    .enumerate()
                    .filter(|(_, user)| filters.matches(user))
                    .map(move |(idx, user)| Candidate {
                        pos: Pos {
                            page: page as u32,
                            idx: idx as u32,
                        },
                        user,
                    })
            })
            .collect();
        if !sort.is_empty() {
            sort_users(&mut candidates, sort);
        }
        View {
            pages: pages.iter().map(|page| Arc::downgrade(page)).collect(),
            order: candidates.into_iter().map(|candidate| candidate.pos).collect(),
        }
    }

    /// Whether the view was built from exactly these pages (by identity). A `Weak` pins its
    /// allocation, so a new page can never sit at the address of one the view knew.
    pub fn built_from(&self, pages: &[&Arc<CachedPage>]) -> bool {
        self.pages.len() == pages.len()
            && self
                .pages
                .iter()
                .zip(pages)
                .all(|(kept, page)| std::ptr::eq(kept.as_ptr(), Arc::as_ptr(page)))
    }

    /// Matching users.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The places of the users in `range` of the view's order (clamped to its length).
    pub fn positions(&self, range: Range<usize>) -> &[Pos] {
        let end = range.end.min(self.order.len());
        &self.order[range.start.min(end)..end]
    }

    fn approximate_bytes(&self) -> usize {
        std::mem::size_of::<View>()
            + self.pages.len() * std::mem::size_of::<Weak<CachedPage>>()
            + self.order.len() * std::mem::size_of::<Pos>()
    }
}

type Hasher = foldhash::fast::RandomState;

/// A kept view, and until when it answers without its pages being looked up again.
struct Entry {
    view: Arc<View>,
    /// The executor's revision when the request that last found it current began.
    revision: u64,
    /// When the first of its pages goes stale.
    fresh_until: Instant,
}

fn weigh(key: &ViewKey, entry: &Arc<Entry>) -> u32 {
    u32::try_from(key.approximate_bytes() + entry.view.approximate_bytes() + 128).unwrap_or(u32::MAX)
}

/// Views by what they are of, weighed by their bytes.
#[derive(Clone)]
pub struct ViewCache {
    entries: moka::sync::Cache<ViewKey, Arc<Entry>, Hasher>,
    /// The page cache's: a view is fresh as long as its stalest page.
    ttl: Duration,
}

impl ViewCache {
    /// `ttl`: the pages' freshness; `retention`: as long as pages can be served at all (past
    /// that a view can match no request's pages).
    pub fn new(ttl: Duration, retention: Duration, max_bytes: u64) -> ViewCache {
        ViewCache {
            entries: moka::sync::Cache::builder()
                .name("views")
                .max_capacity(max_bytes.max(1))
                .weigher(weigh)
                .time_to_live(retention.max(Duration::from_secs(1)))
                .build_with_hasher(Hasher::default()),
            ttl,
        }
    }

    /// The view of `key` over exactly `pages`, built now if none is kept for them. A
    /// request that began at `revision` holds `pages`: while the revision stands still and
    /// the pages are fresh, [`ViewCache::current`] may hand them out without a lookup.
    pub fn view(&self, key: ViewKey, pages: &[&Arc<CachedPage>], revision: u64) -> Arc<View> {
        let kept = self.entries.get(&key).filter(|entry| entry.view.built_from(pages));
        if let Some(entry) = &kept {
            if entry.revision == revision {
                return entry.view.clone();
            }
        }
        let view = match kept {
            Some(entry) => entry.view.clone(),
            None => Arc::new(View::build(pages, &key.filters, &key.sort)),
        };
        let fresh_until = pages
            .iter()
            .map(|page| page.fetched_at)
            .min()
            .and_then(|oldest| oldest.checked_add(self.ttl))
            .unwrap_or_else(Instant::now);
        let entry = Entry {
            view: view.clone(),
            revision,
            fresh_until,
        };
        self.entries.insert(key, Arc::new(entry));
        view
    }

    /// The pages of the view kept for `key`, when nothing that can change an answer has
    /// happened since a request found it current (the executor's `revision`: a page
    /// replaced or dropped, a filter found loose, a circuit opened), every page is still
    /// fresh and none has been freed. A full read then takes its pages from here, in the
    /// view's order, instead of looking each up.
    pub fn current(&self, key: &ViewKey, revision: u64) -> Option<Vec<Arc<CachedPage>>> {
        let entry = self.entries.get(key)?;
        if entry.revision != revision || Instant::now() >= entry.fresh_until {
            return None;
        }
        entry.view.pages.iter().map(Weak::upgrade).collect()
    }

    /// Bytes held, as weighed (for `/metrics`).
    pub fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourceName;
    use crate::providers::UpstreamPage;
    use crate::query::filter::{FilterText, SortField};
    use crate::raw_records::RawRecords;

    fn user(id: &str, last_name: Option<&str>, role: &str) -> User {
        User {
            last_name: last_name.map(str::to_owned),
            role: Some(role.to_owned()),
            ..crate::model::bare_user("ti", id)
        }
    }

    fn page(users: Vec<User>) -> Arc<CachedPage> {
        Arc::new(CachedPage {
            page: UpstreamPage {
                total: 0,
                page_size: users.len() as u32,
                echoed_page: None,
                raw: RawRecords::pack([]),
                users,
            },
            fetched_at: Instant::now(),
        })
    }

    fn key(filters: Filters, sort: Vec<SortKey>) -> ViewKey {
        ViewKey {
            queries: vec![QueryKey {
                source: SourceName::parse("ti").unwrap(),
                pushed: Arc::from(""),
            }],
            filters,
            sort,
        }
    }

    #[test]
    fn a_view_places_the_matching_users_and_answers_only_for_its_own_pages() {
        let first = page(vec![
            user("a", Some("Zeta"), "admin"),
            user("b", None, "learner"),
            user("c", Some("alpha"), "admin"),
        ]);
        let second = page(vec![user("d", Some("Mid"), "admin")]);
        let pages = [&first, &second];
        let admins = Filters {
            role: Some(FilterText::new("ADMIN")),
            ..Filters::default()
        };
        let by_last_name = vec![SortKey {
            field: SortField::LastName,
            descending: false,
        }];

        let upstream_order = View::build(&pages, &admins, &[]);
        let at = |view: &View| -> Vec<(u32, u32)> {
            view.positions(0..usize::MAX)
                .iter()
                .map(|pos| (pos.page, pos.idx))
                .collect()
        };
        assert_eq!(at(&upstream_order), vec![(0, 0), (0, 2), (1, 0)]);
        let sorted = View::build(&pages, &admins, &by_last_name);
        assert_eq!(at(&sorted), vec![(0, 2), (1, 0), (0, 0)], "alpha, Mid, Zeta");
        assert_eq!(sorted.positions(1..2), &[Pos { page: 1, idx: 0 }]);
        assert!(sorted.positions(5..9).is_empty());

        let views = ViewCache::new(Duration::from_secs(60), Duration::from_secs(90), 1 << 20);
        let sorted_admins = key(admins.clone(), by_last_name.clone());
        assert!(views.current(&sorted_admins, 7).is_none(), "nothing kept yet");
        let kept = views.view(sorted_admins.clone(), &pages, 7);
        let again = views.view(sorted_admins.clone(), &pages, 8);
        assert!(Arc::ptr_eq(&kept, &again), "the same pages reuse the view");
        assert!(views.current(&sorted_admins, 7).is_none(), "stamped again at 8");
        let current = views.current(&sorted_admins, 8).expect("current at 8");
        assert!(current.len() == 2 && Arc::ptr_eq(&current[0], &first) && Arc::ptr_eq(&current[1], &second));

        let refetched = page(vec![user("d", Some("Mid"), "learner")]);
        let rebuilt = views.view(sorted_admins.clone(), &[&first, &refetched], 8);
        assert!(!Arc::ptr_eq(&kept, &rebuilt), "a refetched page rebuilds it");
        assert_eq!(at(&rebuilt), vec![(0, 2), (0, 0)]);
        drop(current);
        drop(refetched);
        assert!(
            views.current(&sorted_admins, 8).is_none(),
            "a freed page is never handed out"
        );
    }
}

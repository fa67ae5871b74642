//! What the gateway has learned about one source for one pushed-down query, kept across
//! requests beside the pages it describes (STYLE rule 16), and the consistency check every
//! page passes before a request may use it (SPEC §3, "whatever an upstream does").
//!
//! Facts: the total and page size every page so far agrees on, which user ids sit on which
//! page, whether the upstream's filter proved exact over a full read (`verified`) or matched
//! more loosely than documented (`loose`, remembered for as long as the facts live, so the
//! source is read in full from then on and `meta.total` never flips between pages).
//!
//! A page that contradicts the facts (another total or page size, a user already on another
//! page, a length its total does not allow) or itself (another page number echoed, a record
//! without an id, an id twice) is a [`Contradiction`]. Never does I/O.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::pages::CachedPage;
use crate::model::SourceName;
use crate::query::filter::Filters;

/// One source's pushed-down query: what pages and facts are kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryKey {
    pub source: SourceName,
    /// The pushed-down query in its canonical text form.
    pub pushed: Arc<str>,
}

/// The paging every page of a query agrees on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub total: u64,
    pub page_size: u32,
}

impl Shape {
    pub fn n_pages(&self) -> u64 {
        self.total.div_ceil(u64::from(self.page_size.max(1))).max(1)
    }

    /// Users page `page` must hold.
    fn expected_len(&self, page: u64) -> u64 {
        let size = u64::from(self.page_size.max(1));
        self.total.saturating_sub((page - 1).saturating_mul(size)).min(size)
    }
}

/// The upstream returned a user its pushed-down filter should have excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loose {
    /// The upstream page it was first seen on.
    pub page: u64,
    pub at: Instant,
}

/// A page that cannot be used: it contradicts itself or what earlier pages said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contradiction {
    /// Written by the gateway for callers: says which contradiction, quotes no upstream value.
    pub reason: String,
    /// The facts contradicted were learned by another request: the upstream data may simply
    /// have changed since, so the request may forget them and read again (once).
    pub with_earlier_facts: bool,
    /// The other upstream page involved, when the contradiction is between two pages: a
    /// request that reads again reads both, so the contradiction cannot hide.
    pub other_page: Option<u64>,
}

/// How a page fared against the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Consistent. `loose`: it holds users the pushed-down filter should have excluded.
    Admitted {
        loose: bool,
    },
    Contradicts(Contradiction),
}

/// An admitted page: which allocation (so a cache hit of the same page is not checked
/// twice; `Weak` pins the address, never the users) and the ids it holds.
#[derive(Debug)]
struct PageFacts {
    page: Weak<CachedPage>,
    ids: Box<[u64]>,
}

/// Everything learned about one source for one pushed-down query.
#[derive(Debug, Default)]
pub struct SourceFacts {
    shape: Option<Shape>,
    /// When the shape was learned.
    learned_at: Option<Instant>,
    /// The request that learned the shape (see [`Contradiction::with_earlier_facts`]).
    generation: u64,
    /// A full read found every user matching the pushed-down filter: windows may be read directly.
    verified_at: Option<Instant>,
    loose: Option<Loose>,
    pages: HashMap<u64, PageFacts>,
    /// Page of each user id (hashed) admitted so far.
    owners: HashMap<u64, u64>,
}

fn id_hash(id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

impl SourceFacts {
    pub fn shape(&self) -> Option<Shape> {
        self.shape
    }

    pub fn learned_at(&self) -> Option<Instant> {
        self.learned_at
    }

    pub fn verified_at(&self) -> Option<Instant> {
        self.verified_at
    }

    pub fn loose(&self) -> Option<Loose> {
        self.loose
    }

    /// Bytes held, for the store's budget: the hash tables by their capacity (a slot and a
    /// control byte each, as hashbrown lays them out), the id lists by their length.
    fn weight(&self) -> u32 {
        let slot = |entry: usize| entry + 1;
        let bytes = std::mem::size_of::<SourceFacts>()
            + self.owners.capacity() * slot(2 * std::mem::size_of::<u64>())
            + self.pages.capacity() * slot(std::mem::size_of::<(u64, PageFacts)>())
            + self.pages.values().map(|page| page.ids.len() * 8).sum::<usize>();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    /// Checks page `page_no` of the query and, when consistent, learns from it.
    ///
    /// `pushed` are the filters the upstream was asked to apply (empty: none); `generation`
    /// identifies the asking request.
    pub fn admit(
        &mut self,
        page_no: u64,
        page: &Arc<CachedPage>,
        pushed: &Filters,
        generation: u64,
        now: Instant,
    ) -> Verdict {
        if self
            .pages
            .get(&page_no)
            .is_some_and(|known| std::ptr::eq(known.page.as_ptr(), Arc::as_ptr(page)))
        {
            return Verdict::Admitted { loose: false };
        }
        let upstream = &page.page;
        let intrinsic = |reason: String| {
            Verdict::Contradicts(Contradiction {
                reason,
                with_earlier_facts: false,
                other_page: None,
            })
        };
        if let Some(echoed) = upstream.echoed_page.filter(|echoed| *echoed != page_no) {
            return intrinsic(format!(
                "asked for upstream page {page_no}, the upstream answered page {echoed}"
            ));
        }
        if let Some(record_idx) = upstream.users.iter().position(|user| user.provider_id.is_empty()) {
            return intrinsic(format!("record {record_idx} of upstream page {page_no} has no id"));
        }
        let ids: Box<[u64]> = upstream.users.iter().map(|user| id_hash(&user.provider_id)).collect();
        let mut on_page: Vec<u64> = ids.to_vec();
        on_page.sort_unstable();
        if on_page.windows(2).any(|pair| pair[0] == pair[1]) {
            return intrinsic(format!("the same user id appears twice on upstream page {page_no}"));
        }

        let page_shape = Shape {
            total: upstream.total,
            page_size: upstream.page_size,
        };
        let earlier = self.generation != generation;
        let against_facts = |reason: String| {
            Verdict::Contradicts(Contradiction {
                reason,
                with_earlier_facts: earlier,
                other_page: None,
            })
        };
        match self.shape {
            Some(shape) if shape.page_size != page_shape.page_size => {
                return against_facts(format!(
                    "upstream page {page_no} has {} users per page where earlier pages had {} (the data may have \
                     changed while paging; retry)",
                    page_shape.page_size, shape.page_size
                ))
            }
            Some(shape) if shape.total != page_shape.total => {
                return against_facts(format!(
                    "upstream page {page_no} says the total is {} where earlier pages said {} (the data may have \
                     changed while paging; retry)",
                    page_shape.total, shape.total
                ))
            }
            Some(_) => {}
            None => {}
        }
        let expected = page_shape.expected_len(page_no);
        if upstream.users.len() as u64 != expected {
            let verdict = format!(
                "upstream page {page_no} holds {} users where a total of {} at {} a page means {expected}",
                upstream.users.len(),
                page_shape.total,
                page_shape.page_size
            );
            return if self.shape.is_some() {
                against_facts(verdict)
            } else {
                intrinsic(verdict)
            };
        }
        if let Some(other) = ids
            .iter()
            .find_map(|id| self.owners.get(id).copied().filter(|other| *other != page_no))
        {
            return Verdict::Contradicts(Contradiction {
                reason: format!(
                    "the same user id is on upstream pages {other} and {page_no}: a user would be served twice"
                ),
                with_earlier_facts: earlier,
                other_page: Some(other),
            });
        }

        if self.shape.is_none() {
            self.shape = Some(page_shape);
            self.learned_at = Some(now);
            self.generation = generation;
        }
        let loose = !pushed.is_empty() && upstream.users.iter().any(|user| !pushed.matches(user));
        if loose && self.loose.is_none() {
            self.loose = Some(Loose { page: page_no, at: now });
        }
        if loose {
            self.verified_at = None;
        }
        if let Some(old) = self.pages.remove(&page_no) {
            for id in old.ids.iter() {
                if self.owners.get(id) == Some(&page_no) {
                    self.owners.remove(id);
                }
            }
        }
        for id in ids.iter() {
            self.owners.insert(*id, page_no);
        }
        self.pages.insert(
            page_no,
            PageFacts {
                page: Arc::downgrade(page),
                ids,
            },
        );
        Verdict::Admitted { loose }
    }

    /// Keeps the ids of a page that was refused, so a later request that reads a page
    /// sharing them sees the contradiction too (the page itself is never taken as checked).
    pub fn remember_ids(&mut self, page_no: u64, page: &CachedPage) {
        if self.pages.contains_key(&page_no) {
            return;
        }
        let ids: Box<[u64]> = page
            .page
            .users
            .iter()
            .filter(|user| !user.provider_id.is_empty())
            .map(|user| id_hash(&user.provider_id))
            .collect();
        for id in ids.iter() {
            self.owners.entry(*id).or_insert(page_no);
        }
        self.pages.insert(page_no, PageFacts { page: Weak::new(), ids });
    }

    /// A full read of `shape` found no user outside the pushed-down filter.
    pub fn mark_verified(&mut self, shape: Shape, now: Instant) {
        if self.shape == Some(shape) && self.loose.is_none() {
            self.verified_at = Some(now);
        }
    }

    /// Forgets the paging facts (not looseness: that is a fact about the upstream) and
    /// returns the pages they came from, for the caller to drop from the cache.
    pub fn reset(&mut self, generation: u64) -> Vec<u64> {
        let mut pages: Vec<u64> = self.pages.keys().copied().collect();
        pages.sort_unstable();
        let loose = self.loose;
        *self = SourceFacts {
            loose,
            generation,
            ..SourceFacts::default()
        };
        pages
    }
}

/// The facts of every query, bounded by bytes.
#[derive(Clone)]
pub struct FactsStore {
    facts: moka::sync::Cache<QueryKey, Arc<Mutex<SourceFacts>>>,
}

impl FactsStore {
    /// Facts outlive the pages they describe (`ttl`, at least an hour): looseness must be
    /// remembered after the pages that showed it expire.
    pub fn new(ttl: Duration, max_bytes: u64) -> FactsStore {
        FactsStore {
            facts: moka::sync::Cache::builder()
                .name("source-facts")
                .max_capacity(max_bytes.max(1))
                .weigher(|_, facts: &Arc<Mutex<SourceFacts>>| facts.lock().map_or(256, |facts| facts.weight()))
                .time_to_live(ttl.max(Duration::from_secs(3600)))
                .build(),
        }
    }

    /// The facts of a query, created empty when none are kept.
    pub fn get(&self, key: &QueryKey) -> Arc<Mutex<SourceFacts>> {
        self.facts.get_with_by_ref(key, Default::default)
    }

    /// The facts of a query, if any are kept (for plans).
    pub fn peek(&self, key: &QueryKey) -> Option<Arc<Mutex<SourceFacts>>> {
        self.facts.get(key)
    }

    /// Bytes held, as weighed (for `/metrics`).
    pub fn weighted_size(&self) -> u64 {
        self.facts.run_pending_tasks();
        self.facts.weighted_size()
    }

    /// Re-weighs a query's facts after they grew (moka weighs on insert only).
    pub fn reweigh(&self, key: &QueryKey, facts: &Arc<Mutex<SourceFacts>>) {
        self.facts.insert(key.clone(), facts.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;
    use crate::providers::UpstreamPage;
    use crate::query::filter::FilterText;

    fn user(id: &str, role: &str) -> User {
        User {
            role: Some(role.to_owned()),
            ..crate::model::bare_user("s", id)
        }
    }

    fn page(echoed: Option<u64>, total: u64, page_size: u32, ids: &[&str]) -> Arc<CachedPage> {
        Arc::new(CachedPage {
            page: UpstreamPage {
                users: ids.iter().map(|id| user(id, "learner")).collect(),
                raw: crate::raw_records::RawRecords::pack([]),
                total,
                page_size,
                echoed_page: echoed,
            },
            fetched_at: Instant::now(),
        })
    }

    fn check(facts: &mut SourceFacts, page_no: u64, page: &Arc<CachedPage>, generation: u64) -> Verdict {
        facts.admit(page_no, page, &Filters::default(), generation, Instant::now())
    }

    fn contradiction(verdict: Verdict) -> Contradiction {
        match verdict {
            Verdict::Contradicts(contradiction) => contradiction,
            Verdict::Admitted { .. } => panic!("admitted"),
        }
    }

    #[tokio::test]
    async fn consistent_pages_are_admitted_and_teach_the_shape() {
        let mut facts = SourceFacts::default();
        assert_eq!(
            check(&mut facts, 1, &page(Some(1), 5, 2, &["a", "b"]), 1),
            Verdict::Admitted { loose: false }
        );
        assert_eq!(facts.shape(), Some(Shape { total: 5, page_size: 2 }));
        assert_eq!(
            check(&mut facts, 3, &page(None, 5, 2, &["e"]), 2),
            Verdict::Admitted { loose: false }
        );
        let refetched = page(Some(1), 5, 2, &["a", "b"]);
        assert_eq!(
            check(&mut facts, 1, &refetched, 3),
            Verdict::Admitted { loose: false },
            "a refetched page replaces its own ids"
        );
    }

    #[tokio::test]
    async fn each_contradiction_is_named() {
        let cases: [(&str, Arc<CachedPage>, u64, &str); 6] = [
            ("ignored page", page(Some(1), 6, 2, &["c", "d"]), 2, "answered page 1"),
            ("missing id", page(Some(2), 6, 2, &["c", ""]), 2, "has no id"),
            ("id twice on a page", page(Some(2), 6, 2, &["c", "c"]), 2, "twice"),
            ("repeated id", page(Some(2), 6, 2, &["b", "c"]), 2, "pages 1 and 2"),
            ("shifting total", page(Some(2), 9, 2, &["c", "d"]), 2, "total is 9"),
            ("short page", page(Some(2), 6, 2, &["c"]), 2, "holds 1 users"),
        ];
        for (name, bad, page_no, needle) in cases {
            let mut facts = SourceFacts::default();
            assert!(matches!(
                check(&mut facts, 1, &page(Some(1), 6, 2, &["a", "b"]), 7),
                Verdict::Admitted { .. }
            ));
            let found = contradiction(check(&mut facts, page_no, &bad, 7));
            assert!(found.reason.contains(needle), "{name}: {}", found.reason);
            assert!(!found.with_earlier_facts, "{name}: same request");
            let from_another_request = contradiction(check(&mut facts, page_no, &bad, 8));
            let intrinsic = matches!(name, "ignored page" | "missing id" | "id twice on a page");
            assert_eq!(from_another_request.with_earlier_facts, !intrinsic, "{name}");
        }
    }

    #[tokio::test]
    async fn looseness_survives_a_reset_and_blocks_verification() {
        let mut facts = SourceFacts::default();
        let admins = Filters {
            role: Some(FilterText::new("admin")),
            ..Filters::default()
        };
        let first = page(Some(1), 3, 2, &["a", "b"]);
        let verdict = facts.admit(1, &first, &admins, 1, Instant::now());
        assert_eq!(verdict, Verdict::Admitted { loose: true }, "learners are not admins");
        assert_eq!(facts.loose().map(|loose| loose.page), Some(1));
        let shape = facts.shape().unwrap();
        facts.mark_verified(shape, Instant::now());
        assert_eq!(facts.verified_at(), None);
        assert_eq!(facts.reset(2), vec![1]);
        assert!(facts.shape().is_none());
        assert!(facts.loose().is_some(), "looseness is remembered");
    }
}

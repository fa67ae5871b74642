//! Upstream pages in Redis (the second tier, L2) and the lease that makes one replica
//! fetch a cold page while the others wait for what it writes (SPEC §10).
//!
//! An entry lives as long as a page may still be served (TTL plus the longer stale window),
//! stamped with the wall-clock moment it was fetched, so every replica applies the same
//! TTL and stale windows to it. A lease is a `SET NX PX` of a random token; the fetcher
//! writes the page and drops its lease in one script, so a waiter that sees the lease gone
//! either finds the page or knows the fetch failed. The holder renews its lease while it
//! fetches (a fetch may wait for the source's budget and retry for longer than one lease),
//! so a lease lapses only when its holder died or lost Redis: a replica that died holding
//! one delays the others by one lease's length at most. A waiter gives up after four.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::codec;
use super::Redis;
use crate::cache::PageKey;
use crate::providers::{SourceError, UpstreamPage};

/// Writes the page and releases the writer's lease (if it still holds it) in one step.
const PUT_AND_RELEASE: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1
"#;

/// The page, if Redis holds one with more than `ARGV[1]` ms to live (recent enough: an
/// entry is written to live `keep` from its fetch, so its remaining life tells its age on
/// Redis's own clock); else the lease, if free; else word that another replica holds it.
/// One step, so no page written between a look and a lease is missed.
const PAGE_OR_LEASE: &str = r#"
if redis.call('PTTL', KEYS[1]) > tonumber(ARGV[1]) then
  return {'page', redis.call('GET', KEYS[1])}
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {'taken', ''}
end
return {'held', ''}
"#;

/// Releases a lease only if it is still the caller's (it may have expired and been retaken).
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Extends a lease only if it is still the caller's: the holder's heartbeat.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// First pause of a waiter between looks at the page; doubled up to [`POLL_MAX`].
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct SharedPages {
    redis: Redis,
    /// How long an entry is kept: TTL plus the longer stale window.
    keep: Duration,
    /// How long a lease lasts, and so the longest a replica waits for another's fetch.
    lease: Duration,
    put_script: std::sync::Arc<::redis::Script>,
    release_script: std::sync::Arc<::redis::Script>,
    lease_script: std::sync::Arc<::redis::Script>,
    renew_script: std::sync::Arc<::redis::Script>,
}

/// A page read from Redis, with how long ago it was fetched.
pub struct SharedPage {
    pub page: UpstreamPage,
    pub age: Duration,
}

/// Who fetched a page `fetch_once` returns.
pub enum Fetched {
    /// This replica, from the upstream.
    Here(UpstreamPage),
    /// Another replica, while this one waited on its lease.
    Elsewhere(SharedPage),
}

enum Lease {
    /// A page recent enough was there after all.
    Page(SharedPage),
    Taken,
    HeldElsewhere,
    /// Redis did not answer: nothing is shared.
    Unavailable,
}

impl SharedPages {
    pub fn new(redis: Redis, keep: Duration, lease: Duration) -> SharedPages {
        SharedPages {
            redis,
            keep,
            lease,
            put_script: std::sync::Arc::new(::redis::Script::new(PUT_AND_RELEASE)),
            release_script: std::sync::Arc::new(::redis::Script::new(RELEASE)),
            lease_script: std::sync::Arc::new(::redis::Script::new(PAGE_OR_LEASE)),
            renew_script: std::sync::Arc::new(::redis::Script::new(RENEW)),
        }
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// `page:{source}:{page}:{pushed query}`: the same key on every replica; no API key
    /// and no base URL in it.
    fn page_key(&self, key: &PageKey) -> String {
        self.redis
            .key("page", &format!("{}:{}:{}", key.source, key.page, key.pushed))
    }

    fn lease_key(&self, key: &PageKey) -> String {
        self.redis
            .key("lease", &format!("{}:{}:{}", key.source, key.page, key.pushed))
    }

    /// The page as another replica (or this one) stored it, if Redis has it.
    pub async fn get(&self, key: &PageKey) -> Option<SharedPage> {
        let bytes: Option<Vec<u8>> = self
            .redis
            .run("GET", ::redis::cmd("GET").arg(self.page_key(key)))
            .await?;
        let Some(bytes) = bytes else {
            crate::telemetry::record_shared_lookup("miss");
            return None;
        };
        match codec::decode(&bytes, &key.source) {
            Some((page, fetched_at_ms)) => {
                crate::telemetry::record_shared_lookup("hit");
                Some(SharedPage {
                    page,
                    age: codec::age_of(fetched_at_ms),
                })
            }
            None => {
                crate::telemetry::record_shared_lookup("undecodable");
                tracing::warn!(source = %key.source, page = key.page, "a page in Redis did not decode; ignored");
                None
            }
        }
    }

    /// Stores a page fetched `age` ago, releasing `lease` if given.
    async fn put(&self, key: &PageKey, page: &UpstreamPage, age: Duration, lease: Option<&str>) {
        let Some(left) = self.keep.checked_sub(age).filter(|left| !left.is_zero()) else {
            if let Some(token) = lease {
                self.release(key, token).await;
            }
            return;
        };
        let bytes = codec::encode(page, codec::wall_clock_ms(age));
        let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = self.put_script.prepare_invoke();
        invocation
            .key(self.page_key(key))
            .key(self.lease_key(key))
            .arg(bytes)
            .arg(millis)
            .arg(lease.unwrap_or(""));
        let _: Option<i64> = self.redis.run_script("SET page", &invocation).await;
    }

    async fn release(&self, key: &PageKey, token: &str) {
        let mut invocation = self.release_script.prepare_invoke();
        invocation.key(self.lease_key(key)).arg(token);
        let _: Option<i64> = self.redis.run_script("DEL lease", &invocation).await;
    }

    /// Drops the page from Redis (an upstream contradiction refused it).
    pub async fn remove(&self, key: &PageKey) {
        let _: Option<i64> = self.redis.run("DEL", ::redis::cmd("DEL").arg(self.page_key(key))).await;
    }

    /// A page younger than `max_age` (on Redis's clock), or the lease under `token`.
    async fn page_or_lease(&self, key: &PageKey, token: &str, max_age: Duration) -> Lease {
        let min_left = self.keep.saturating_sub(max_age);
        let mut invocation = self.lease_script.prepare_invoke();
        invocation
            .key(self.page_key(key))
            .key(self.lease_key(key))
            .arg(u64::try_from(min_left.as_millis()).unwrap_or(u64::MAX))
            .arg(token)
            .arg(u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX).max(1));
        let Some((kind, bytes)) = self.redis.run_script::<(String, Vec<u8>)>("lease", &invocation).await else {
            return Lease::Unavailable;
        };
        match kind.as_str() {
            "taken" => Lease::Taken,
            "held" => Lease::HeldElsewhere,
            _ => match codec::decode(&bytes, &key.source) {
                Some((page, fetched_at_ms)) => Lease::Page(SharedPage {
                    page,
                    age: codec::age_of(fetched_at_ms),
                }),
                None => {
                    crate::telemetry::record_shared_lookup("undecodable");
                    Lease::Unavailable
                }
            },
        }
    }

    /// The page fetched once across replicas: a page in Redis fetched since `started` (or
    /// younger than `fresh_for`, when given), else fetched under this replica's lease and
    /// written to Redis, else the page of the replica holding the lease, waited for. When
    /// the lease lapses (its holder died) this replica takes it; after four lease lengths
    /// it fetches regardless.
    pub async fn fetch_once<Fut>(
        &self,
        key: &PageKey,
        started: Instant,
        fresh_for: Option<Duration>,
        fetch: Fut,
    ) -> Result<Fetched, SourceError>
    where
        Fut: Future<Output = Result<UpstreamPage, SourceError>>,
    {
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let give_up = Instant::now() + self.lease * 4;
        let mut pause = POLL_MIN;
        let mut waited = false;
        loop {
            let max_age = started.elapsed().max(fresh_for.unwrap_or_default());
            match self.page_or_lease(key, &token, max_age).await {
                Lease::Page(page) => {
                    crate::telemetry::record_lease(if waited { "shared" } else { "found" });
                    return Ok(Fetched::Elsewhere(page));
                }
                Lease::Taken => {
                    crate::telemetry::record_lease(if waited { "expired" } else { "taken" });
                    return self.fetch_and_share(key, fetch, Some(&token)).await;
                }
                Lease::Unavailable => return fetch.await.map(Fetched::Here),
                Lease::HeldElsewhere => {}
            }
            if !waited {
                waited = true;
                crate::telemetry::record_lease("waited");
            }
            if Instant::now() >= give_up {
                crate::telemetry::record_lease("expired");
                return self.fetch_and_share(key, fetch, None).await;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    async fn fetch_and_share<Fut>(&self, key: &PageKey, fetch: Fut, lease: Option<&str>) -> Result<Fetched, SourceError>
    where
        Fut: Future<Output = Result<UpstreamPage, SourceError>>,
    {
        let result = match lease {
            Some(token) => self.renewing(key, token, fetch).await,
            None => fetch.await,
        };
        match result {
            Ok(page) => {
                self.put(key, &page, Duration::ZERO, lease).await;
                Ok(Fetched::Here(page))
            }
            Err(error) => {
                // Failures are not shared: the waiters fetch themselves and see the failure.
                if let Some(token) = lease {
                    self.release(key, token).await;
                }
                Err(error)
            }
        }
    }

    /// `fetch`, renewing the lease every third of its length until it ends.
    async fn renewing<Fut>(&self, key: &PageKey, token: &str, fetch: Fut) -> Result<UpstreamPage, SourceError>
    where
        Fut: Future<Output = Result<UpstreamPage, SourceError>>,
    {
        let heartbeat = async {
            let mut ticks = tokio::time::interval(self.lease / 3);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let mut invocation = self.renew_script.prepare_invoke();
                invocation
                    .key(self.lease_key(key))
                    .arg(token)
                    .arg(u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX).max(1));
                let _: Option<i64> = self.redis.run_script("renew lease", &invocation).await;
            }
        };
        tokio::select! {
            result = fetch => result,
            never = heartbeat => never,
        }
    }
}

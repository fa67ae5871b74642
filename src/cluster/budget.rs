//! A source's request budget (`max_rps`, SPEC §10): GCRA, the generic cell rate algorithm.
//!
//! The state is one number, the theoretical arrival time (TAT) of the next request. A
//! request *reserves* the slot at `max(TAT, now)` and moves TAT on by one interval; it may
//! start `tolerance` before its slot (the burst), so it waits `slot - tolerance - now` when
//! that is positive. A reservation whose wait would outlast the request's deadline is not
//! made, and the request is refused: the budget is never spent on a request that gives up.
//!
//! With Redis the TAT lives there and one Lua script reserves atomically on Redis's clock,
//! so every replica draws from one budget. Without Redis, or while it fails, the same
//! arithmetic runs in the process ([`reserve`]): each replica then has the whole budget.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Redis;
use crate::model::SourceName;
use crate::providers::{SourceError, SourceErrorCode};

/// The reservation, as [`reserve`] makes it; returns the wait in µs, or -1 for a refusal.
const RESERVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > 0 and wait >= max_wait then return -1 end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1000)
return wait
"#;

/// One reservation on a TAT (µs on any clock that `now` shares): the new TAT and the wait,
/// or `None` when the wait would reach `max_wait`.
pub fn reserve(tat: u64, now: u64, interval: u64, tolerance: u64, max_wait: u64) -> Option<(u64, u64)> {
    let slot = tat.max(now);
    let wait = slot.saturating_sub(tolerance).saturating_sub(now);
    // A start at the deadline itself is no use to the request either.
    (wait == 0 || wait < max_wait).then(|| (slot.saturating_add(interval), wait))
}

pub struct Budget {
    source: SourceName,
    max_rps: f64,
    /// µs between requests.
    interval: u64,
    /// µs a request may start before its slot: `burst - 1` intervals.
    tolerance: u64,
    /// The per-process TAT, in µs since `epoch`.
    local: Mutex<u64>,
    epoch: Instant,
    shared: Option<(Redis, String, ::redis::Script)>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("source", &self.source)
            .field("max_rps", &self.max_rps)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl Budget {
    /// `max_rps` requests a second, in bursts of up to a tenth of that (at least one).
    pub fn new(source: SourceName, max_rps: f64, redis: Option<Redis>) -> Budget {
        let interval = (1_000_000.0 / max_rps).round().max(1.0) as u64;
        let burst = (max_rps / 10.0).ceil().max(1.0) as u64;
        let shared = redis.map(|redis| {
            let key = redis.key("budget", source.as_str());
            (redis, key, ::redis::Script::new(RESERVE))
        });
        Budget {
            source,
            max_rps,
            interval,
            tolerance: interval * (burst - 1),
            local: Mutex::new(0),
            epoch: Instant::now(),
            shared,
        }
    }

    /// Waits for this request's slot, or refuses when none comes before `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<(), SourceError> {
        let max_wait = deadline.saturating_duration_since(Instant::now());
        let max_wait_us = u64::try_from(max_wait.as_micros()).unwrap_or(u64::MAX);
        let wait = match self.reserve_shared(max_wait_us).await {
            Some(wait) => wait,
            None => self.reserve_local(max_wait_us),
        };
        let Some(wait) = wait else {
            crate::telemetry::record_budget(&self.source, "refused", Duration::ZERO);
            return Err(SourceError::new(
                SourceErrorCode::RateLimited,
                format!(
                    "the gateway's own request budget for this source ({} requests/s) had no slot before the request's deadline",
                    self.max_rps
                ),
            ));
        };
        let wait = Duration::from_micros(wait);
        if wait.is_zero() {
            crate::telemetry::record_budget(&self.source, "granted", wait);
        } else {
            crate::telemetry::record_budget(&self.source, "waited", wait);
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// `Some(None)`: refused by the shared budget; `None`: no shared budget answered.
    async fn reserve_shared(&self, max_wait_us: u64) -> Option<Option<u64>> {
        let (redis, key, script) = self.shared.as_ref()?;
        let mut invocation = script.prepare_invoke();
        invocation
            .key(key)
            .arg(self.interval)
            .arg(self.tolerance)
            .arg(max_wait_us);
        let wait: i64 = redis.run_script("budget", &invocation).await?;
        Some(u64::try_from(wait).ok())
    }

    fn reserve_local(&self, max_wait_us: u64) -> Option<u64> {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut tat = self.local.lock().expect("budget lock");
        let (next, wait) = reserve(*tat, now, self.interval, self.tolerance, max_wait_us)?;
        *tat = next;
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a naive model: requests at any times, each either waits for its slot or is
        /// refused; in any window, the granted starts never exceed rate × window + burst.
        #[test]
        fn granted_requests_never_exceed_rate_times_window_plus_burst(
            interval in 1u64..10_000,
            burst in 1u64..5,
            mut arrivals in proptest::collection::vec(0u64..200_000, 1..200),
            max_wait in 0u64..50_000,
        ) {
            arrivals.sort_unstable();
            let tolerance = interval * (burst - 1);
            let mut tat = 0;
            let mut starts = Vec::new();
            for now in arrivals {
                if let Some((next, wait)) = reserve(tat, now, interval, tolerance, max_wait) {
                    prop_assert!(wait <= max_wait);
                    tat = next;
                    starts.push(now + wait);
                }
            }
            starts.sort_unstable();
            for (i, &from) in starts.iter().enumerate() {
                for window in [interval, interval * 3, interval * 10] {
                    let inside = starts[i..].iter().take_while(|&&at| at < from + window).count() as u64;
                    prop_assert!(inside <= window / interval + burst, "{inside} starts within {window} µs");
                }
            }
        }
    }

    #[test]
    fn a_refusal_spends_nothing() {
        let (tat, wait) = reserve(0, 1_000, 100, 0, 0).unwrap();
        assert_eq!((tat, wait), (1_100, 0));
        assert_eq!(reserve(tat, 1_000, 100, 0, 99), None, "the next slot is 100 µs away");
        assert_eq!(
            reserve(tat, 1_000, 100, 0, 100),
            None,
            "a slot at the deadline is no use"
        );
        assert_eq!(reserve(tat, 1_000, 100, 0, 101), Some((1_200, 100)));
    }

    #[tokio::test(start_paused = true)]
    async fn without_redis_the_budget_holds_in_the_process_and_refuses_past_the_deadline() {
        let budget = Budget::new(SourceName::parse("ti").unwrap(), 10.0, None);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(1);
        for _ in 0..10 {
            budget.acquire(deadline).await.unwrap();
        }
        assert_eq!(started.elapsed(), Duration::from_millis(900), "ten slots, 100 ms apart");
        let error = budget.acquire(deadline).await.unwrap_err();
        assert_eq!(error.code, SourceErrorCode::RateLimited);
        assert!(
            error.message.contains("gateway's own request budget"),
            "{}",
            error.message
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(900),
            "a refusal waits for nothing"
        );
    }
}

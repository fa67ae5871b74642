//! A per-source circuit breaker: after enough consecutive failed fetches the source is not
//! called for a cool-down; then one probe decides whether it closes again.
//!
//! Every call that goes out holds a [`Permit`] and reports through it. The verdicts,
//! [`Permit::success`] and [`Permit::failure`], consume the permit, so none can be given
//! twice; dropping a permit without a verdict (the caller's future was cancelled, or only the
//! gateway's own limits ended the call) is the safe default and never wedges the circuit:
//! a probe dropped that way hands the circuit back to open with its cool-down already
//! served, so the next call is the next probe; any other permit changes nothing.
//!
//! A verdict counts only for the state it was issued in: once the circuit has moved on
//! (opened, started probing, closed), a late report of a call let through before is ignored,
//! so only the probe decides a half-open circuit.
//!
//! Uses tokio's clock, so tests drive it with paused time. It never adds durations to
//! instants, so no configured cool-down can overflow it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The breaker's state as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    /// A probe is out, or the next call will be one.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        consecutive_failures: u32,
    },
    /// Refusing calls until `wait` has passed since `since`; then the next call is the probe.
    Open {
        since: Instant,
        wait: Duration,
    },
    /// One probe is out; everyone else is refused until it reports or is dropped.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Counts changes between the `State` variants, so a permit can tell whether the state
    /// it was issued in still holds.
    epoch: u64,
}

impl Inner {
    fn enter(&mut self, state: State) {
        self.state = state;
        self.epoch = self.epoch.wrapping_add(1);
    }
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    inner: Mutex<Inner>,
    /// How many times the circuit opened: read without the lock, so that a reused response
    /// can tell at once that a circuit it showed as closed has opened since.
    openings: std::sync::atomic::AtomicU64,
}

/// A refused call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Open: no call until the cool-down ends, this long from now.
    Open { retry_in: Duration },
    /// Half-open: the probe is out, and no other call goes until it reports.
    ProbeInFlight,
}

/// What a finished call says about the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    Failure,
}

/// Leave to make one call. Report the upstream's answer with [`Permit::success`] or
/// [`Permit::failure`]; dropping it reports nothing (see the module docs).
#[must_use = "report the upstream's outcome with success() or failure(); dropping the permit reports nothing"]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    /// The breaker's epoch when this permit was issued.
    epoch: u64,
    probe: bool,
    /// Set by a verdict, so `Drop` does not report again.
    reported: bool,
}

impl Permit<'_> {
    /// Whether this call is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The upstream answered (a rejection of the request counts: it is up).
    pub fn success(mut self) {
        self.report(Some(Verdict::Success));
    }

    /// The upstream failed: it could not be reached, timed out, or answered 5xx, 429 or garbage.
    pub fn failure(mut self) {
        self.report(Some(Verdict::Failure));
    }

    fn report(&mut self, verdict: Option<Verdict>) {
        self.reported = true;
        self.breaker.settle(self.epoch, verdict);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.report(None);
        }
    }
}

impl Breaker {
    /// `threshold` consecutive failures open it for `cool_down`. A threshold of 0 disables it.
    pub fn new(threshold: u32, cool_down: Duration) -> Breaker {
        Breaker {
            threshold,
            cool_down,
            inner: Mutex::new(Inner {
                state: State::Closed {
                    consecutive_failures: 0,
                },
                epoch: 0,
            }),
            openings: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many times the circuit has opened.
    pub fn openings(&self) -> u64 {
        self.openings.load(std::sync::atomic::Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a plain value, valid even if a holder panicked.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn state(&self) -> CircuitState {
        match self.lock().state {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { since, wait } if since.elapsed() >= wait => CircuitState::HalfOpen,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen => CircuitState::HalfOpen,
        }
    }

    /// Leave for one call now, or why not. A permit issued once the cool-down has passed
    /// is the probe.
    pub fn allow(&self) -> Result<Permit<'_>, Refused> {
        let mut inner = self.lock();
        let probe = match inner.state {
            State::Closed { .. } => false,
            State::Open { since, wait } => {
                let waited = since.elapsed();
                if waited < wait {
                    return Err(Refused::Open {
                        retry_in: wait.saturating_sub(waited),
                    });
                }
                inner.enter(State::HalfOpen);
                true
            }
            State::HalfOpen => return Err(Refused::ProbeInFlight),
        };
        Ok(Permit {
            breaker: self,
            epoch: inner.epoch,
            probe,
            reported: false,
        })
    }

    /// Applies a permit's verdict (`None`: dropped without one) if its state still holds.
    fn settle(&self, epoch: u64, verdict: Option<Verdict>) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            // Issued before the circuit last changed: what it says is out of date.
            return;
        }
        let opened = State::Open {
            since: Instant::now(),
            wait: self.cool_down,
        };
        match (inner.state, verdict) {
            (State::Closed { .. }, None) => {}
            (State::Closed { .. }, Some(Verdict::Success)) => {
                inner.state = State::Closed {
                    consecutive_failures: 0,
                }
            }
            (State::Closed { .. }, Some(Verdict::Failure)) if self.threshold == 0 => {}
            (State::Closed { consecutive_failures }, Some(Verdict::Failure)) => {
                let consecutive_failures = consecutive_failures.saturating_add(1);
                if consecutive_failures < self.threshold {
                    inner.state = State::Closed { consecutive_failures };
                } else {
                    inner.enter(opened);
                }
            }
            (State::HalfOpen, Some(Verdict::Success)) => inner.enter(State::Closed {
                consecutive_failures: 0,
            }),
            (State::HalfOpen, Some(Verdict::Failure)) => inner.enter(opened),
            // The probe learned nothing (its caller went away, or the gateway's own deadline
            // cut it): open as before, its cool-down already served, so the next call probes.
            (State::HalfOpen, None) => inner.enter(State::Open {
                since: Instant::now(),
                wait: Duration::ZERO,
            }),
            // No permit is issued while open, so none can carry an open state's epoch.
            (State::Open { .. }, _) => {}
        }
        if inner.epoch != epoch && matches!(inner.state, State::Open { .. }) {
            self.openings.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(breaker: &Breaker) {
        breaker.allow().expect("let through").failure();
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_probes_then_closes() {
        let breaker = Breaker::new(3, Duration::from_secs(10));
        fail(&breaker);
        fail(&breaker);
        breaker.allow().unwrap().success();
        assert_eq!(breaker.state(), CircuitState::Closed, "a success resets the count");
        for _ in 0..3 {
            fail(&breaker);
        }
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(
            breaker.allow().unwrap_err(),
            Refused::Open {
                retry_in: Duration::from_secs(10)
            }
        );

        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        let probe = breaker.allow().expect("one probe goes out");
        assert!(probe.is_probe());
        assert_eq!(breaker.allow().unwrap_err(), Refused::ProbeInFlight, "only one probe");
        probe.failure();
        assert_eq!(breaker.state(), CircuitState::Open, "a failed probe opens it again");

        tokio::time::advance(Duration::from_secs(10)).await;
        breaker.allow().expect("the next probe").success();
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert!(!breaker.allow().unwrap().is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_dropped_without_a_verdict_does_not_wedge_the_circuit() {
        let breaker = Breaker::new(1, Duration::from_secs(10));
        fail(&breaker);
        tokio::time::advance(Duration::from_secs(10)).await;

        // The probe's caller went away while the upstream hung.
        let probe = breaker.allow().expect("the probe");
        assert!(probe.is_probe());
        drop(probe);
        assert_eq!(breaker.state(), CircuitState::HalfOpen, "due for a probe, not refusing");
        let probe = breaker.allow().expect("a new probe at once, no fresh cool-down");
        assert!(probe.is_probe());
        assert_eq!(breaker.allow().unwrap_err(), Refused::ProbeInFlight);
        probe.success();
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_permit_dropped_without_a_verdict_changes_nothing() {
        let breaker = Breaker::new(2, Duration::from_secs(10));
        fail(&breaker);
        drop(breaker.allow().unwrap());
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open, "the drop did not reset the count");

        let breaker = Breaker::new(2, Duration::from_secs(10));
        for _ in 0..10 {
            drop(breaker.allow().unwrap());
        }
        assert_eq!(breaker.state(), CircuitState::Closed, "nor count as failures");
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_probe_decides_a_half_open_circuit() {
        let breaker = Breaker::new(1, Duration::from_secs(10));
        let (early_success, early_failure) = (breaker.allow().unwrap(), breaker.allow().unwrap());
        fail(&breaker);
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = breaker.allow().unwrap();
        early_success.success();
        early_failure.failure();
        assert_eq!(
            breaker.allow().unwrap_err(),
            Refused::ProbeInFlight,
            "calls let through before the circuit opened report too late"
        );
        probe.failure();
        assert_eq!(breaker.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cool_down_too_long_for_the_clock_refuses_without_panicking() {
        let breaker = Breaker::new(1, Duration::MAX);
        fail(&breaker);
        tokio::time::advance(Duration::from_secs(365 * 24 * 3600)).await;
        assert_eq!(breaker.state(), CircuitState::Open);
        let refused = breaker.allow().map(|permit| permit.is_probe());
        match refused {
            Err(Refused::Open { retry_in }) => assert!(retry_in > Duration::from_secs(1 << 40)),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_zero_threshold_never_opens() {
        let breaker = Breaker::new(0, Duration::from_secs(1));
        for _ in 0..100 {
            fail(&breaker);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}

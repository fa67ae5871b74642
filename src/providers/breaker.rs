//! A per-source circuit breaker: after enough consecutive failures the source is not
//! called for a cool-down; then one probe decides whether it closes again.
//!
//! Uses tokio's clock, so tests drive it with paused time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The breaker's state as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
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
    Open {
        until: Instant,
    },
    /// One probe is out; everyone else is refused until it reports.
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

/// A refused call: how long until the breaker lets a probe through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_in: Duration,
}

impl Breaker {
    /// `threshold` consecutive failures open it for `cool_down`. A threshold of 0 disables it.
    pub fn new(threshold: u32, cool_down: Duration) -> Breaker {
        Breaker {
            threshold,
            cool_down,
            state: Mutex::new(State::Closed {
                consecutive_failures: 0,
            }),
        }
    }

    pub fn state(&self) -> CircuitState {
        match *self.state.lock().expect("breaker lock") {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if Instant::now() >= until => CircuitState::HalfOpen,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen => CircuitState::HalfOpen,
        }
    }

    /// Whether a call may go out now. A call let through while half-open is the probe and
    /// must report its outcome.
    pub fn allow(&self) -> Result<(), Refused> {
        let mut state = self.state.lock().expect("breaker lock");
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen;
                    Ok(())
                } else {
                    Err(Refused { retry_in: until - now })
                }
            }
            State::HalfOpen => Err(Refused {
                retry_in: Duration::ZERO,
            }),
        }
    }

    pub fn record_success(&self) {
        *self.state.lock().expect("breaker lock") = State::Closed {
            consecutive_failures: 0,
        };
    }

    pub fn record_failure(&self) {
        if self.threshold == 0 {
            return;
        }
        let mut state = self.state.lock().expect("breaker lock");
        *state = match *state {
            State::Closed { consecutive_failures } if consecutive_failures + 1 < self.threshold => State::Closed {
                consecutive_failures: consecutive_failures + 1,
            },
            State::Closed { .. } | State::HalfOpen => State::Open {
                until: Instant::now() + self.cool_down,
            },
            // Failures of calls that went out before it opened change nothing.
            open @ State::Open { .. } => open,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_probes_then_closes() {
        let breaker = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            breaker.allow().unwrap();
            breaker.record_failure();
        }
        breaker.record_success();
        assert_eq!(breaker.state(), CircuitState::Closed, "a success resets the count");
        for _ in 0..3 {
            breaker.allow().unwrap();
            breaker.record_failure();
        }
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(
            breaker.allow(),
            Err(Refused {
                retry_in: Duration::from_secs(10)
            })
        );

        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        breaker.allow().expect("one probe goes out");
        assert!(breaker.allow().is_err(), "only one probe");
        breaker.record_failure();
        assert_eq!(breaker.state(), CircuitState::Open, "a failed probe opens it again");

        tokio::time::advance(Duration::from_secs(10)).await;
        breaker.allow().expect("the next probe");
        breaker.record_success();
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.allow().unwrap();
    }

    #[test]
    fn a_zero_threshold_never_opens() {
        let breaker = Breaker::new(0, Duration::from_secs(1));
        for _ in 0..100 {
            breaker.record_failure();
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}

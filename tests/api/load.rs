//! Load on loopback: 200 concurrent callers while one provider flaps between healthy and
//! failing, then a clean shutdown; and a shutdown with 200 requests in flight.
//!
//! The default suite runs a fixed number of requests (600, about a second). `LOAD_SECS=10
//! cargo test --test api load -- --nocapture` runs the callers for that many seconds instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use users_gateway::sandbox::{Control, Fault, SandboxOptions};

use crate::helpers::{spawn_with, tick_paused_clock, wait_until};

const CALLERS: usize = 200;
const RETRIES: u64 = 2;
/// Requests per caller in the default suite: one to warm up, then two.
const WARM_UP_REQUESTS: u64 = 1;
const MEASURED_REQUESTS: u64 = 2;
/// TIS switches between healthy and answering 502 after every this many answers. More than
/// `CALLERS`, so each phase holds answers to requests begun after it started.
const FLAP_EVERY: u64 = 250;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    full: AtomicU64,
    partial: AtomicU64,
    stale: AtomicU64,
    bad: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn answered(&self) -> u64 {
        self.full.load(Ordering::Relaxed) + self.partial.load(Ordering::Relaxed) + self.stale.load(Ordering::Relaxed)
    }
}

/// How long each caller keeps asking.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Requests(u64),
    Until(Instant),
}

impl Budget {
    fn allows(self, n_done: u64) -> bool {
        match self {
            Budget::Requests(n) => n_done < n,
            Budget::Until(until) => Instant::now() < until,
        }
    }
}

/// What every caller shares.
struct Load {
    client: reqwest::Client,
    base: String,
    tally: Tally,
    /// Answers so far, good or bad: drives the flapping.
    n_answers: AtomicU64,
    tis: Arc<Control>,
}

impl Load {
    /// Counts one answer, and flips TIS between healthy and failing every `FLAP_EVERY`.
    fn record(&self, outcome: Result<(bool, bool), String>) {
        match outcome {
            Ok((partial, stale)) => {
                let counter = if stale {
                    &self.tally.stale
                } else if partial {
                    &self.tally.partial
                } else {
                    &self.tally.full
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.tally.bad.fetch_add(1, Ordering::Relaxed);
                self.tally.first_error.lock().unwrap().get_or_insert(error);
            }
        }
        let n_answers = self.n_answers.fetch_add(1, Ordering::SeqCst) + 1;
        if n_answers.is_multiple_of(FLAP_EVERY) {
            let failing = (n_answers / FLAP_EVERY) % 2 == 1;
            // 502: retryable, no Retry-After.
            self.tis
                .set_fault(if failing { Fault::Status(502) } else { Fault::None });
        }
    }

    /// Runs `CALLERS` callers, each walking all 80 pages (TI users, then TIS users) from its
    /// own start, within `budget`.
    async fn drive(self: &Arc<Self>, budget: Budget) {
        let callers: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let load = self.clone();
                tokio::spawn(async move {
                    let mut page = (caller as u64 % 80) + 1;
                    let mut n_done = 0;
                    while budget.allows(n_done) {
                        page = page % 80 + 1;
                        let url = format!("{}/users?page={page}&per_page=25", load.base);
                        let outcome = match load.client.get(url).send().await {
                            Ok(response) if response.status() == 200 => {
                                check(&response.text().await.unwrap_or_default(), page)
                            }
                            Ok(response) => Err(format!("HTTP {}", response.status())),
                            Err(error) => Err(format!("lost: {error}")),
                        };
                        load.record(outcome);
                        n_done += 1;
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
    }
}

/// Checks one answer against the sandbox's shape: exactly the users the totals promise.
fn check(body: &str, page: u64) -> Result<(bool, bool), String> {
    let body: Value = serde_json::from_str(body).map_err(|e| format!("malformed: {e}"))?;
    let total = body["meta"]["total"].as_u64().ok_or("no total")?;
    let partial = body["meta"]["partial"].as_bool().ok_or("no partial")?;
    let expected_total = if partial { 1250 } else { 1980 };
    if total != expected_total {
        return Err(format!("total {total}, partial {partial}"));
    }
    let expected_len = total.saturating_sub((page - 1) * 25).min(25);
    let got = body["data"].as_array().ok_or("no data")?.len() as u64;
    if got != expected_len {
        return Err(format!("{got} users on page {page}, expected {expected_len}"));
    }
    let stale = body["meta"]["sources"][1]["stale"] == true;
    Ok((partial, stale))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_callers_through_a_flapping_provider_then_a_clean_shutdown() {
    let secs: Option<u64> = std::env::var("LOAD_SECS").ok().and_then(|s| s.parse().ok());
    // Every request goes upstream, so the flapping provider is really exercised.
    let app = spawn_with(
        SandboxOptions::default(),
        &[
            ("GATEWAY_CACHE_TTL_SECS", "0"),
            ("GATEWAY_STALE_WHILE_REVALIDATE_SECS", "0"),
            ("GATEWAY_STALE_IF_ERROR_SECS", "1"),
            ("GATEWAY_UPSTREAM_RETRIES", "2"),
            ("GATEWAY_UPSTREAM_BACKOFF_MS", "5"),
            ("GATEWAY_BREAKER_FAILURES", "20"),
            ("GATEWAY_BREAKER_COOL_DOWN_SECS", "1"),
            ("GATEWAY_UPSTREAM_CONCURRENCY", "32"),
        ],
    )
    .await;
    let load = Arc::new(Load {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(CALLERS)
            .build()
            .unwrap(),
        base: app.base.clone(),
        tally: Tally::default(),
        n_answers: AtomicU64::new(0),
        tis: app.sandbox.tis.control.clone(),
    });

    let started = Instant::now();
    let (warm_up, measured) = match secs {
        Some(secs) => (
            Budget::Until(started + Duration::from_secs(secs.min(2))),
            Budget::Until(started + Duration::from_secs(secs)),
        ),
        None => (Budget::Requests(WARM_UP_REQUESTS), Budget::Requests(MEASURED_REQUESTS)),
    };
    load.drive(warm_up).await;
    let memory_after_warmup = resident_kib();
    // The measured load starts with TIS failing, as if `FLAP_EVERY` answers had just
    // flipped it: every caller's first measured request begins in the failing phase, so
    // the failure is felt whatever the timing (counting answers alone, a phase could pass
    // with every TIS page already in flight).
    load.n_answers.store(FLAP_EVERY, Ordering::SeqCst);
    app.sandbox.tis.control.set_fault(Fault::Status(502));
    load.drive(measured).await;
    let elapsed = started.elapsed();
    app.sandbox.tis.control.set_fault(Fault::None);
    let memory_at_end = resident_kib();

    let tally = &load.tally;
    let (full, partial, stale, bad) = (
        tally.full.load(Ordering::Relaxed),
        tally.partial.load(Ordering::Relaxed),
        tally.stale.load(Ordering::Relaxed),
        tally.bad.load(Ordering::Relaxed),
    );
    let answered = tally.answered();
    eprintln!(
        "load: {answered} answers in {elapsed:.1?} ({:.0} /s): {full} full, {stale} with stale TIS pages, {partial} partial; \
         memory {memory_after_warmup} KiB after warm-up, {memory_at_end} KiB at the end",
        answered as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(
        bad,
        0,
        "lost or malformed answers; first: {:?}",
        tally.first_error.lock().unwrap()
    );
    if secs.is_none() {
        assert_eq!(
            answered,
            CALLERS as u64 * (WARM_UP_REQUESTS + MEASURED_REQUESTS),
            "every request answered"
        );
    }
    assert!(answered > CALLERS as u64, "the load ran");
    assert!(full > 0 && partial + stale > 0, "the flapping was felt both ways");
    // Each answer needs at most two TIS pages, each at most 1 + RETRIES attempts.
    let tis_calls = app.sandbox.tis.control.requests().len() as u64;
    assert!(
        tis_calls <= answered * 2 * (1 + RETRIES),
        "{tis_calls} TIS calls for {answered} answers"
    );
    assert!(
        memory_at_end < memory_after_warmup + 128 * 1024,
        "memory grew from {memory_after_warmup} KiB to {memory_at_end} KiB"
    );
    app.shutdown().await;
}

/// SIGTERM-style shutdown with 200 requests in flight: every one of them is answered. On the
/// paused clock, so the upstream's 2 s latency holds them in flight however slow the machine.
#[tokio::test(start_paused = true)]
async fn a_shutdown_answers_all_two_hundred_requests_in_flight() {
    let _clock = tick_paused_clock();
    // Enough permits that every request's upstream call is out at once, where the sandbox sees it.
    let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_UPSTREAM_CONCURRENCY", "256")]).await;
    let tis = &app.sandbox.tis.control;
    tis.set_latency(Duration::from_secs(2));
    // One TIS query each (TIS filters `email` itself), so no two share an upstream call. In
    // waves: a burst of 200 connects on one thread would overflow the listeners' accept
    // queues (backlog 128), and the kernel would retry the dropped ones a wall second later.
    let mut in_flight = Vec::new();
    for wave in (0..CALLERS).collect::<Vec<_>>().chunks(50) {
        for caller in wave {
            let url = format!("{}/users?provider=tapintosafety&email=caller-{caller}", app.base);
            let client = app.http.clone();
            in_flight.push(tokio::spawn(async move {
                let response = client.get(url).send().await?;
                let status = response.status().as_u16();
                let body = response.text().await?;
                Ok::<_, reqwest::Error>((status, body))
            }));
        }
        wait_until("the wave to reach the upstream", Duration::from_secs(1), || {
            tis.requests().len() == in_flight.len()
        })
        .await;
    }
    assert!(
        in_flight.iter().all(|request| !request.is_finished()),
        "all still in flight"
    );
    app.begin_shutdown();
    let mut answered_in_shutdown = 0;
    for request in in_flight {
        let (status, body) = request.await.unwrap().expect("an in-flight request was dropped");
        assert_eq!(status, 200, "{body}");
        answered_in_shutdown += 1;
    }
    assert_eq!(answered_in_shutdown, CALLERS);
    app.shutdown().await;
}

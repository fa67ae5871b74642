//! Load on loopback: 200 concurrent callers for a bounded time while one provider flaps
//! between healthy and failing; then SIGTERM-style shutdown with 200 requests in flight.
//! `LOAD_SECS` sets the duration (default 10).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use users_gateway::sandbox::{Fault, SandboxOptions};

use crate::helpers::spawn_with;

const CALLERS: usize = 200;
const RETRIES: u64 = 2;

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
    let secs: u64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // Every request goes upstream, so the flapping provider is really exercised.
    let app = spawn_with(
        SandboxOptions::default(),
        &[
            ("GATEWAY_CACHE_TTL_SECS", "0"),
            ("GATEWAY_STALE_IF_ERROR_SECS", "1"),
            ("GATEWAY_UPSTREAM_RETRIES", "2"),
            ("GATEWAY_UPSTREAM_BACKOFF_MS", "5"),
            ("GATEWAY_BREAKER_FAILURES", "20"),
            ("GATEWAY_BREAKER_COOL_DOWN_SECS", "1"),
            ("GATEWAY_UPSTREAM_CONCURRENCY", "32"),
        ],
    )
    .await;
    let (sandbox, base) = (&app.sandbox, app.base.clone());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CALLERS)
        .build()
        .unwrap();

    // TIS flaps: 300 ms healthy, 300 ms answering 502 (retryable, no Retry-After).
    let running = Arc::new(AtomicBool::new(true));
    let flapper = tokio::spawn({
        let control = sandbox.tis.control.clone();
        let running = running.clone();
        async move {
            let mut failing = false;
            while running.load(Ordering::Relaxed) {
                failing = !failing;
                control.set_fault(if failing { Fault::Status(502) } else { Fault::None });
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            control.set_fault(Fault::None);
        }
    });

    let tally = Arc::new(Tally::default());
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut memory_after_warmup = 0;
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (client, base, tally, first_error) = (client.clone(), base.clone(), tally.clone(), first_error.clone());
            tokio::spawn(async move {
                let mut page = (caller as u64 % 50) + 1;
                while Instant::now() < until {
                    page = page % 50 + 1;
                    let outcome = match client.get(format!("{base}/users?page={page}&per_page=25")).send().await {
                        Ok(response) if response.status() == 200 => {
                            check(&response.text().await.unwrap_or_default(), page)
                        }
                        Ok(response) => Err(format!("HTTP {}", response.status())),
                        Err(error) => Err(format!("lost: {error}")),
                    };
                    match outcome {
                        Ok((partial, stale)) => {
                            let counter = if stale {
                                &tally.stale
                            } else if partial {
                                &tally.partial
                            } else {
                                &tally.full
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            tally.bad.fetch_add(1, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(error);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs.min(2))).await;
    memory_after_warmup = memory_after_warmup.max(resident_kib());
    for caller in callers {
        caller.await.unwrap();
    }
    running.store(false, Ordering::Relaxed);
    flapper.await.unwrap();
    let memory_at_end = resident_kib();

    let (full, partial, stale, bad) = (
        tally.full.load(Ordering::Relaxed),
        tally.partial.load(Ordering::Relaxed),
        tally.stale.load(Ordering::Relaxed),
        tally.bad.load(Ordering::Relaxed),
    );
    let answered = full + partial + stale;
    eprintln!(
        "load: {answered} answers in {secs} s ({} /s): {full} full, {stale} with stale TIS pages, {partial} partial; \
         memory {memory_after_warmup} KiB after warm-up, {memory_at_end} KiB at the end",
        answered / secs.max(1)
    );
    assert_eq!(
        bad,
        0,
        "lost or malformed answers; first: {:?}",
        first_error.lock().unwrap()
    );
    assert!(answered > CALLERS as u64, "the load ran");
    assert!(full > 0 && partial + stale > 0, "the flapping was felt both ways");
    // Each answer needs at most two TIS pages, each at most 1 + RETRIES attempts.
    let tis_calls = sandbox.tis.control.requests().len() as u64;
    assert!(
        tis_calls <= answered * 2 * (1 + RETRIES),
        "{tis_calls} TIS calls for {answered} answers"
    );
    assert!(
        memory_at_end < memory_after_warmup + 128 * 1024,
        "memory grew from {memory_after_warmup} KiB to {memory_at_end} KiB"
    );

    // Shutdown with 200 requests in flight: every one of them is answered.
    sandbox.ti.control.set_latency(Duration::from_millis(400));
    let in_flight: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let url = format!("{base}/users?page={}&per_page=25", caller % 50 + 1);
            let client = client.clone();
            tokio::spawn(async move {
                let response = client.get(url).send().await?;
                let status = response.status().as_u16();
                let body = response.text().await?;
                Ok::<_, reqwest::Error>((status, body))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
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

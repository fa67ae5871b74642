//! The one Redis connection of a process: every call bounded by `GATEWAY_REDIS_TIMEOUT_MS`,
//! its outcome measured, and Redis's health tracked for `/readyz`, a gauge and a log line
//! at each change.
//!
//! A failed call leaves Redis alone for [`BACK_OFF`]: with Redis down, requests then pay
//! nothing for it. `redis`'s `ConnectionManager` reconnects by itself in the background;
//! the first call after the back-off finds out whether Redis is back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

/// The layout version of every key and value: replicas of two versions never misread each
/// other's entries, they just do not share them.
pub const FORMAT: &str = "v1";

/// How long Redis is left alone after a failed call.
const BACK_OFF: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    manager: ConnectionManager,
    /// `GATEWAY_REDIS_PREFIX` + [`FORMAT`] + `:`.
    prefix: String,
    timeout: Duration,
    health: Mutex<Health>,
}

struct Health {
    /// `None` until the first call.
    up: Option<bool>,
    since: Instant,
    last_error: Option<String>,
    /// While down: no call before this.
    retry_at: Option<Instant>,
}

/// Redis as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStatus {
    /// `None` before the first call.
    pub up: Option<bool>,
    pub since: Duration,
    pub last_error: Option<String>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.inner.prefix)
            .field("url", &"***")
            .finish()
    }
}

impl Redis {
    /// A lazy connection: nothing is dialled until the first call, so a replica starts (and
    /// serves) with Redis down. Fails only on a URL the client cannot use.
    pub fn connect(url: &SecretString, prefix: &str, timeout: Duration) -> Result<Redis, String> {
        // The client's error may quote the URL, which may hold a password: say only what kind.
        let client = ::redis::Client::open(url.expose_secret())
            .map_err(|error| format!("GATEWAY_REDIS_URL is not usable ({:?})", error.kind()))?;
        let config = ConnectionManagerConfig::new()
            // Each call is bounded by `timeout` on this side; a connection attempt may take
            // longer in the background (a TLS handshake) without holding a request.
            .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|error| format!("cannot set up the Redis connection ({:?})", error.kind()))?;
        crate::telemetry::record_redis_up(None);
        Ok(Redis {
            inner: Arc::new(Inner {
                manager,
                prefix: format!("{prefix}{FORMAT}:"),
                timeout,
                health: Mutex::new(Health {
                    up: None,
                    since: Instant::now(),
                    last_error: None,
                    retry_at: None,
                }),
            }),
        })
    }

    /// `prefix` + format version + `kind` + `:` + `rest`.
    pub fn key(&self, kind: &str, rest: &str) -> String {
        let mut key = String::with_capacity(self.inner.prefix.len() + kind.len() + rest.len() + 1);
        key.push_str(&self.inner.prefix);
        key.push_str(kind);
        key.push(':');
        key.push_str(rest);
        key
    }

    pub fn status(&self) -> RedisStatus {
        let health = self.inner.health.lock().expect("redis health lock");
        RedisStatus {
            up: health.up,
            since: health.since.elapsed(),
            last_error: health.last_error.clone(),
        }
    }

    /// Whether Redis is being left alone after a failure.
    fn backing_off(&self) -> bool {
        let health = self.inner.health.lock().expect("redis health lock");
        health.retry_at.is_some_and(|at| Instant::now() < at)
    }

    /// Runs `cmd` on the connection, bounded by the timeout. `None` when Redis failed, was
    /// too slow, or is being left alone; `command` names it in metrics.
    pub async fn run<T: ::redis::FromRedisValue>(&self, command: &'static str, cmd: &::redis::Cmd) -> Option<T> {
        if self.backing_off() {
            return None;
        }
        let mut connection = self.inner.manager.clone();
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.inner.timeout, cmd.query_async::<T>(&mut connection)).await;
        self.finish(command, started, outcome)
    }

    /// Like [`Redis::run`], for a script (loaded on first use, then run by its hash).
    pub async fn run_script<T: ::redis::FromRedisValue>(
        &self,
        command: &'static str,
        invocation: &::redis::ScriptInvocation<'_>,
    ) -> Option<T> {
        if self.backing_off() {
            return None;
        }
        let mut connection = self.inner.manager.clone();
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.inner.timeout, invocation.invoke_async::<T>(&mut connection)).await;
        self.finish(command, started, outcome)
    }

    fn finish<T>(
        &self,
        command: &'static str,
        started: Instant,
        outcome: Result<::redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        let elapsed = started.elapsed();
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(redis_error(&error)),
            Err(_) => Err(format!("no answer within {} ms", self.inner.timeout.as_millis())),
        };
        crate::telemetry::record_redis(command, result.is_ok(), elapsed);
        match result {
            Ok(value) => {
                self.mark(true, None);
                Some(value)
            }
            Err(reason) => {
                self.mark(false, Some(reason));
                None
            }
        }
    }

    fn mark(&self, up: bool, error: Option<String>) {
        let mut health = self.inner.health.lock().expect("redis health lock");
        let changed = health.up != Some(up);
        if changed {
            health.up = Some(up);
            health.since = Instant::now();
        }
        health.retry_at = (!up).then(|| Instant::now() + BACK_OFF);
        if let Some(error) = error {
            health.last_error = Some(error);
        }
        if changed {
            crate::telemetry::record_redis_up(Some(up));
            match up {
                true => tracing::info!("Redis answers: sharing pages and budgets with the other replicas"),
                false => tracing::warn!(
                    error = health.last_error.as_deref().unwrap_or(""),
                    "Redis failed: serving from memory and the upstreams, budgets per process, until it answers"
                ),
            }
        }
    }
}

/// A Redis error as logged and shown in `/readyz`: its kind and, for I/O, the OS's words
/// (never the URL, which may hold a password).
fn redis_error(error: &::redis::RedisError) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    if error.is_io_error() || error.is_connection_refusal() || error.is_connection_dropped() {
        return format!("connection failed ({:?})", error.kind());
    }
    format!("Redis error ({:?})", error.kind())
}

//! `spawn_app()`: a sandbox and a gateway over it, exactly as production wires them.

use std::collections::HashMap;

use reqwest::header::HeaderMap;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use users_gateway::app::App;
use users_gateway::config::{Config, SourceConfig};
use users_gateway::sandbox::{Sandbox, SandboxOptions};

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub http: reqwest::Client,
    pub sandbox: Sandbox,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    server: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(SandboxOptions::default(), &[]).await
}

/// A gateway whose settings come from `env` (GATEWAY_* names), over a sandbox built from `options`.
pub async fn spawn_with(options: SandboxOptions, env: &[(&str, &str)]) -> TestApp {
    spawn_with_sources(options, env, |_| {}).await
}

/// Like `spawn_with`, with the sandbox's source configs edited first (e.g. a dead URL).
pub async fn spawn_with_sources(
    options: SandboxOptions,
    env: &[(&str, &str)],
    edit: impl FnOnce(&mut Vec<SourceConfig>),
) -> TestApp {
    let sandbox = Sandbox::start(options).await.expect("sandbox starts");
    let mut sources = sandbox.sources();
    edit(&mut sources);
    spawn_over(sandbox, sources, env).await
}

/// A gateway over `sources` of a running `sandbox` (several replicas may share one).
pub async fn spawn_over(sandbox: Sandbox, sources: Vec<SourceConfig>, env: &[(&str, &str)]) -> TestApp {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lookup = move |name: &str| env.get(name).cloned();
    let config = Config::load(&lookup, None, Some(sources)).expect("config loads");
    let app = App::build(&config).expect("app builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        http: reqwest::Client::new(),
        sandbox,
        stop: std::sync::Mutex::new(Some(stop)),
        server: std::sync::Mutex::new(Some(server)),
    }
}

/// The gateway's router over a sandbox, called in process (`tower::ServiceExt::oneshot`):
/// for tests that hold a response body unread.
pub async fn app_router(options: SandboxOptions, env: &[(&str, &str)]) -> (axum::Router, Sandbox) {
    let sandbox = Sandbox::start(options).await.expect("sandbox starts");
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lookup = move |name: &str| env.get(name).cloned();
    let config = Config::load(&lookup, None, Some(sandbox.sources())).expect("config loads");
    let app = App::build(&config).expect("app builds");
    (app.router(), sandbox)
}

impl TestApp {
    /// Asks for shutdown, as SIGTERM does, and waits until the server has stopped.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        let server = self.server.lock().unwrap().take();
        if let Some(server) = server {
            server.await.unwrap().unwrap();
        }
    }

    /// Asks for shutdown without waiting.
    pub fn begin_shutdown(&self) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[]).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        assert_no_secrets(&self.sandbox, &headers, &text);
        Reply { status, headers, text }
    }

    /// The ids of the sandbox's users in the gateway's documented default order.
    pub fn expected_ids(&self) -> Vec<String> {
        let ti = self
            .sandbox
            .ti
            .records
            .iter()
            .map(|r| format!("thoughtindustries:{}", r["id"].as_str().unwrap()));
        let tis = self
            .sandbox
            .tis
            .records
            .iter()
            .map(|r| format!("tapintosafety:{}", r["id"].as_str().unwrap()));
        ti.chain(tis).collect()
    }

    /// Upstream requests each simulated provider received: (thoughtindustries, tapintosafety).
    pub fn upstream_requests(&self) -> (Vec<String>, Vec<String>) {
        (self.sandbox.ti.control.requests(), self.sandbox.tis.control.requests())
    }

    pub fn clear_upstream_requests(&self) {
        self.sandbox.ti.control.clear_requests();
        self.sandbox.tis.control.clear_requests();
    }
}

/// Upstream API keys must never reach a caller (SPEC §2).
pub fn assert_no_secrets(sandbox: &Sandbox, headers: &HeaderMap, body: &str) {
    for key in [sandbox.ti.api_key, sandbox.tis.api_key] {
        assert!(!body.contains(key), "an upstream key leaked into a body: {body}");
        for value in headers.values() {
            assert!(
                !value.to_str().unwrap_or("").contains(key),
                "an upstream key leaked into a header"
            );
        }
    }
}

/// `data[*].id` of a list response.
pub fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A naive reading of SPEC §4, written from the upstream record alone.
pub fn expected_user(source: &str, record: &Value) -> Value {
    let text = |key: &str| {
        record
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let join = |first: Option<String>, last: Option<String>| match (first, last) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (f, l) => f.or(l),
    };
    let id = text("id").unwrap();
    let (first, last) = (text("firstName"), text("lastName"));
    let ti = source == "thoughtindustries";
    let display = if ti {
        text("name")
            .or(join(first.clone(), last.clone()))
            .or(text("email"))
            .unwrap_or(id.clone())
    } else {
        join(first.clone(), last.clone())
            .or(text("username"))
            .unwrap_or(id.clone())
    };
    serde_json::json!({
        "id": format!("{source}:{id}"),
        "source": source,
        "provider": source,
        "provider_id": id,
        "email": text("email"),
        "username": if ti { None } else { text("username") },
        "first_name": first,
        "last_name": last,
        "display_name": display,
        "role": if ti { text("roleKey") } else { text("role") },
        "employee_id": if ti { None } else { text("organisationIdentifier") },
        "active": if ti { record.get("disabled").and_then(Value::as_bool).map(|d| !d) } else { record.get("hasAccess").and_then(Value::as_bool) },
        "created_at": if ti { text("createdAt") } else { None },
        "updated_at": if ti { text("updatedAt") } else { None },
        "last_active_at": if ti { text("lastActiveAt") } else { None },
        "raw": redacted(record),
    })
}

/// The record with every `secretKey` value replaced by `***`, as the gateway promises.
fn redacted(record: &Value) -> Value {
    match record {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value = if key == "secretKey" {
                        Value::from("***")
                    } else {
                        redacted(value)
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

/// Every sandbox user as SPEC §4 says the gateway must show it, in the default order.
pub fn expected_users(sandbox: &Sandbox) -> Vec<Value> {
    let ti = sandbox.ti.records.iter().map(|r| expected_user("thoughtindustries", r));
    let tis = sandbox.tis.records.iter().map(|r| expected_user("tapintosafety", r));
    ti.chain(tis).collect()
}

/// Makes a paused clock (`#[tokio::test(start_paused = true)]`) advance in 1 ms steps while
/// the runtime is idle, until dropped.
///
/// A paused clock jumps to the next timer whenever no task can run, and waiting on a
/// loopback socket counts as idle: without this, a request's own deadline would fire before
/// its answer is read. With a timer always 1 ms away, an answer already on the wire (a few
/// polls) always beats a timer of seconds, while a cool-down, a backoff or a hanging upstream
/// still passes in a few milliseconds of wall time. Timings stay virtual; no test sleeps.
pub fn tick_paused_clock() -> TickingClock {
    TickingClock(tokio::spawn(async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }))
}

pub struct TickingClock(tokio::task::JoinHandle<()>);

impl Drop for TickingClock {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits (on the ticking paused clock) until `done` holds, checking every millisecond;
/// panics naming `what` if it does not within `within`.
pub async fn wait_until(what: &str, within: std::time::Duration, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(within, async {
        while !done() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "still waiting after {within:?} for {what}");
}

/// An upstream on 127.0.0.1:0 that answers every request with the raw HTTP/1.1 `response`
/// (which must frame its body, e.g. `content-length: 0`): for answers the sandbox cannot
/// give. Returns its base URL and a count of the requests it answered.
pub async fn fixed_upstream(response: String) -> (url::Url, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
    let answered = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    let response = std::sync::Arc::new(response);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (counter, response) = (counter.clone(), response.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                    // GET requests have no body: each blank line ends one.
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        head.drain(..end + 4);
                        counter.fetch_add(1, Ordering::SeqCst);
                        if socket.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, answered)
}

/// A §4 string field, case-folded as the gateway compares it.
pub fn folded(value: &Value) -> Option<String> {
    value.as_str().map(str::to_lowercase)
}

/// `a` before `b` by SPEC §3's rule for one sort key: nulls last in either direction.
pub fn compare_nulls_last<T: Ord>(a: Option<T>, b: Option<T>, descending: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) if descending => b.cmp(&a),
        (Some(a), Some(b)) => a.cmp(&b),
    }
}

/// SPEC §3's `sort` read naively over §4 users: each key (`-` = descending as `true`), nulls
/// last, timestamps as instants, strings case-folded, ties by `id`. No keys: order kept.
pub fn sort_reference<U: std::borrow::Borrow<Value>>(users: &mut [U], sort: &[(&str, bool)]) {
    use time::format_description::well_known::Rfc3339;
    if sort.is_empty() {
        return;
    }
    users.sort_by(|a, b| {
        let (a, b) = (a.borrow(), b.borrow());
        for (field, desc) in sort {
            let order = if field.ends_with("_at") {
                let time = |u: &Value| {
                    u[*field]
                        .as_str()
                        .map(|t| time::OffsetDateTime::parse(t, &Rfc3339).unwrap())
                };
                compare_nulls_last(time(a), time(b), *desc)
            } else {
                compare_nulls_last(folded(&a[*field]), folded(&b[*field]), *desc)
            };
            if order != std::cmp::Ordering::Equal {
                return order;
            }
        }
        a["id"].as_str().cmp(&b["id"].as_str())
    });
}

/// SPEC §3 naively: filter, then sort (ties by id, nulls last).
pub fn reference(users: &[Value], keep: impl Fn(&Value) -> bool, sort: &[(&str, bool)]) -> Vec<Value> {
    let mut matching: Vec<Value> = users.iter().filter(|u| keep(u)).cloned().collect();
    sort_reference(&mut matching, sort);
    matching
}

pub fn sort_param(sort: &[(&str, bool)]) -> String {
    sort.iter()
        .map(|(field, desc)| format!("{}{field}", if *desc { "-" } else { "" }))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn instant(value: &Value) -> Option<OffsetDateTime> {
    value.as_str().map(|t| OffsetDateTime::parse(t, &Rfc3339).unwrap())
}

/// The user as shown equals the user as SPEC §4 derives it from its record (raw included
/// when `raw`).
pub fn assert_same_user(got: &Value, want: &Value, raw: bool, context: &str) {
    let want_obj = want.as_object().unwrap();
    for (field, want_value) in want_obj {
        if field == "raw" && !raw {
            continue;
        }
        let got_value = got.get(field).unwrap_or(&Value::Null);
        if field.ends_with("_at") {
            assert_eq!(
                instant(got_value),
                instant(want_value),
                "{context}: {field} of {}",
                want["id"]
            );
        } else {
            assert_eq!(got_value, want_value, "{context}: {field} of {}", want["id"]);
        }
    }
}

pub fn role_is(role: &'static str) -> impl Fn(&Value) -> bool {
    move |u: &Value| folded(&u["role"]) == Some(role.to_owned())
}

pub fn email_has(needle: &'static str) -> impl Fn(&Value) -> bool {
    move |u: &Value| {
        folded(&u["email"]).is_some_and(|v| v.contains(needle))
            || folded(&u["username"]).is_some_and(|v| v.contains(needle))
    }
}

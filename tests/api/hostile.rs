//! Hostile input at the HTTP layer and in upstream records (SPEC §4, §6): over-long heads,
//! stalled heads, credential keys hidden deep or behind escapes.
//!
//! Heads are written over raw TCP: no HTTP client sends a 70 KB target or a stalled head.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use users_gateway::sandbox::SandboxOptions;

use crate::helpers::{spawn_app, spawn_with, spawn_with_sources};

/// Bound on every wait below; only reached when the behaviour under test is broken.
const GUARD: Duration = Duration::from_secs(10);

/// One HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Asserts the response is an RFC 9457 problem with this status, and returns it.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let problem: Value = serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"));
        assert_eq!(problem["status"], status);
        for field in ["type", "title", "detail"] {
            assert!(
                problem[field].as_str().is_some_and(|text| !text.is_empty()),
                "{field}: {problem}"
            );
        }
        problem
    }
}

/// Writes `request` and reads until the server closes the connection; returns every
/// response it sent, in order.
async fn exchange(base: &str, request: &[u8]) -> Vec<RawResponse> {
    let mut stream = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(GUARD, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .unwrap();
    parse_responses(&received)
}

fn parse_responses(mut bytes: &[u8]) -> Vec<RawResponse> {
    let mut responses = Vec::new();
    while !bytes.is_empty() {
        let head_end = bytes
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(bytes)));
        let head = std::str::from_utf8(&bytes[..head_end]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.to_owned(), value.trim().to_owned())
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, value)| value.parse().unwrap());
        let body_start = head_end + 4;
        let body = String::from_utf8(bytes[body_start..body_start + length].to_vec()).unwrap();
        bytes = &bytes[body_start + length..];
        responses.push(RawResponse { status, headers, body });
    }
    responses
}

fn get_head(target: &str, headers: &[String], close: bool) -> Vec<u8> {
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: gateway\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[tokio::test]
async fn a_70_kb_target_gets_a_414_problem_not_hyper_s_empty_one() {
    let app = spawn_app().await;
    let target = format!("/users?email={}", "a".repeat(70 * 1024));
    let responses = exchange(&app.base, &get_head(&target, &[], false)).await;
    assert_eq!(responses.len(), 1, "{responses:?}");
    let problem = responses[0].problem(414);
    assert_eq!(problem["type"], "/problems/uri-too-long");
    assert!(problem["detail"].as_str().unwrap().contains("8192"), "{problem}");
    assert_eq!(responses[0].header("connection"), Some("close"));
    let (ti, tis) = app.upstream_requests();
    assert!(ti.is_empty() && tis.is_empty(), "nothing reached an upstream");
}

#[tokio::test]
async fn a_hundred_and_fifty_small_headers_get_a_431_problem() {
    let app = spawn_app().await;
    let headers: Vec<String> = (0..150).map(|idx| format!("x-h{idx}: v")).collect();
    let responses = exchange(&app.base, &get_head("/users", &headers, false)).await;
    assert_eq!(responses.len(), 1, "{responses:?}");
    let problem = responses[0].problem(431);
    assert!(
        problem["detail"].as_str().unwrap().contains("100 header fields"),
        "{problem}"
    );
    assert_eq!(responses[0].header("connection"), Some("close"));

    // At the limit (100 with `Host`) a keep-alive connection goes on; just past it, the
    // head is refused and the connection closed.
    let at_limit: Vec<String> = (0..99).map(|idx| format!("x-h{idx}: v")).collect();
    let past_limit: Vec<String> = (0..100).map(|idx| format!("x-h{idx}: v")).collect();
    let mut requests = get_head("/healthz", &at_limit, false);
    requests.extend(get_head("/healthz", &at_limit, false));
    requests.extend(get_head("/healthz", &past_limit, false));
    requests.extend(get_head("/healthz", &[], false));
    let responses = exchange(&app.base, &requests).await;
    let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
    assert_eq!(statuses, [200, 200, 431], "{responses:?}");
    responses[2].problem(431);
}

#[tokio::test]
async fn header_blocks_past_hyper_s_buffer_get_a_431_problem() {
    let app = spawn_app().await;
    for header in [
        format!("x-big: {}", "v".repeat(600 * 1024)),
        format!("{}: v", "n".repeat(600 * 1024)),
    ] {
        let responses = exchange(&app.base, &get_head("/users", &[header], false)).await;
        assert_eq!(responses.len(), 1, "{responses:?}");
        let problem = responses[0].problem(431);
        assert_eq!(problem["type"], "/problems/headers-too-large");
    }
}

#[tokio::test]
async fn a_cut_head_after_good_requests_answers_them_all_in_order() {
    let app = spawn_app().await;
    let mut requests = get_head("/healthz", &[], false);
    requests.extend(get_head("/nope", &[], false));
    requests.extend(get_head(&format!("/users?email={}", "b".repeat(100_000)), &[], false));
    requests.extend(get_head("/healthz", &[], false));
    let responses = exchange(&app.base, &requests).await;
    let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
    // The fourth request is never read: the connection closes after the 414.
    assert_eq!(statuses, [200, 404, 414], "{responses:?}");
    responses[2].problem(414);
}

#[tokio::test]
async fn an_over_long_method_is_a_405_problem() {
    let app = spawn_app().await;
    let head = format!("{} /users HTTP/1.1\r\nHost: gateway\r\n\r\n", "M".repeat(100_000));
    let responses = exchange(&app.base, head.as_bytes()).await;
    assert_eq!(responses.len(), 1, "{responses:?}");
    responses[0].problem(405);
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn wait_for_close(stream: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    tokio::time::timeout(GUARD, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .unwrap();
    (received, Instant::now())
}

#[tokio::test]
async fn a_stalled_or_idle_connection_is_closed_after_the_header_read_timeout() {
    let app = spawn_with(SandboxOptions::default(), &[("GATEWAY_HEADER_READ_TIMEOUT_MS", "200")]).await;
    let addr = app.base.trim_start_matches("http://").to_owned();

    let started = Instant::now();
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled.write_all(b"GET /users HTTP/1.1\r\nHost: gate").await.unwrap();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    let (stalled_got, stalled_closed) = wait_for_close(&mut stalled).await;
    let (idle_got, idle_closed) = wait_for_close(&mut idle).await;
    assert!(
        stalled_got.is_empty() && idle_got.is_empty(),
        "closed without an answer"
    );
    for closed in [stalled_closed, idle_closed] {
        assert!(
            closed - started >= Duration::from_millis(150),
            "closed by the timeout, not at once"
        );
    }

    // A request that completes its head in time is served, however slow its answer.
    let reply = app.get("/users?per_page=1").await;
    assert_eq!(reply.status, 200);
}

/// A Thought Industries page holding `records` (JSON texts), served for any request.
async fn fake_ti(records: Vec<String>) -> url::Url {
    let body = format!(
        r#"{{"data":{{"APIUsers":{{"pageInfo":{{"perPage":{n},"currentPage":1,"total":{n},"hasMore":false}},"users":[{}]}}}}}}"#,
        records.join(","),
        n = records.len()
    );
    let router = axum::Router::new().route(
        "/incoming/v2/users",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

#[tokio::test]
async fn include_raw_redacts_credentials_at_any_depth_behind_any_escape() {
    let deep = format!(
        r#"{}{{"secretKey":"sk-deep-126"}}{}"#,
        r#"{"nest":"#.repeat(126),
        "}".repeat(126)
    );
    let hostile = format!(
        r#"{{"id":"u1","zeta":"first","s\u0065cretKey":"sk-escaped","clientSecret":"cs-1","accessToken":"at-1","api_key":"ak-1","privateKey":{{"pem":"pk-1"}},"sso_access_token":"st-1","profile":{{"password":"pw-1","passwd":"pw-2"}},"deep":{deep},"alpha":"last"}}"#
    );
    let clean = r#"{"id":"u2","zeta":2,"email":"clean@example.com","tags":["token-free"],"alpha":{"b":1,"a":2}}"#;
    let ti = fake_ti(vec![hostile.clone(), clean.to_owned()]).await;
    let app = spawn_with_sources(SandboxOptions::default(), &[], |sources| {
        sources[0].base_url = ti;
    })
    .await;
    let reply = app.get("/users?provider=thoughtindustries&include=raw").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    for secret in [
        "sk-deep-126",
        "sk-escaped",
        "cs-1",
        "at-1",
        "ak-1",
        "pk-1",
        "st-1",
        "pw-1",
        "pw-2",
    ] {
        assert!(!reply.text.contains(secret), "{secret} came back in clear");
    }
    assert_eq!(reply.text.matches("\"***\"").count(), 9, "{}", reply.text);
    // The clean record is byte for byte what the upstream sent, keys in their order.
    assert!(reply.text.contains(&format!("\"raw\":{clean}")), "{}", reply.text);
    // The redacted one keeps its key order too.
    let raw = &reply.text[reply.text.find("\"zeta\":\"first\"").unwrap()..];
    let positions: Vec<usize> = [
        "\"zeta\"",
        "s\\u0065cretKey",
        "\"clientSecret\"",
        "\"deep\"",
        "\"alpha\":\"last\"",
    ]
    .iter()
    .map(|key| raw.find(key).unwrap_or_else(|| panic!("{key} in {raw}")))
    .collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{positions:?}");
}

//! Latency and fault injection, and the request log, for one simulated provider.
//!
//! Tests flip faults at run time through [`Control`]; the CLI sets them at start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// What a simulated provider does instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer with this HTTP status and a small JSON error body.
    Status(u16),
    /// Accept the request and never answer.
    Hang,
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with JSON of another shape.
    WrongShape,
    /// 200 with a body of this many bytes.
    Oversized(usize),
    /// 302 to elsewhere.
    Redirect,
    /// 429 with this `Retry-After` (seconds).
    RateLimited {
        retry_after_secs: u64,
    },
    /// 200, part of the body, then the connection is cut.
    ResetMidBody,
    /// 200 and a valid-looking body sent one byte every 50 ms.
    Trickle,
}

impl std::str::FromStr for Fault {
    type Err = String;

    /// `none`, an HTTP status such as `500`, `hang`, `malformed`, `wrong-shape`,
    /// `oversized`, `redirect`.
    fn from_str(text: &str) -> Result<Fault, String> {
        Ok(match text {
            "none" => Fault::None,
            "hang" => Fault::Hang,
            "malformed" => Fault::Malformed,
            "wrong-shape" => Fault::WrongShape,
            "oversized" => Fault::Oversized(32 * 1024 * 1024),
            "redirect" => Fault::Redirect,
            "reset" => Fault::ResetMidBody,
            "trickle" => Fault::Trickle,
            status => match status.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => Fault::Status(code),
                _ => {
                    return Err(format!(
                    "{text:?} is not a fault: none, an HTTP status, hang, malformed, wrong-shape, oversized, redirect, reset, trickle"
                ))
                }
            },
        })
    }
}

/// One request as a simulated provider received it (for tests of SPEC §8 headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Path and query.
    pub target: String,
    pub request_id: Option<String>,
    pub user_agent: Option<String>,
    pub accept: Option<String>,
    /// Whether it carried `Authorization: Bearer <this provider's key>`.
    pub authorized: bool,
}

/// Run-time switches and the request log of one simulated provider.
pub struct Control {
    api_key: &'static str,
    fault: Mutex<Fault>,
    /// Faults for the next requests, one each, before the standing `fault` applies again.
    scripted: Mutex<std::collections::VecDeque<Fault>>,
    latency: Mutex<Duration>,
    log: Mutex<Vec<Received>>,
}

impl Control {
    pub fn new(api_key: &'static str, latency: Duration) -> Control {
        Control {
            api_key,
            fault: Mutex::new(Fault::None),
            scripted: Mutex::new(std::collections::VecDeque::new()),
            latency: Mutex::new(latency),
            log: Mutex::new(Vec::new()),
        }
    }

    pub fn api_key(&self) -> &'static str {
        self.api_key
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().expect("fault lock") = fault;
    }

    /// The next `count` requests get `fault`; then the standing fault applies again.
    pub fn fail_next(&self, count: usize, fault: Fault) {
        let mut scripted = self.scripted.lock().expect("script lock");
        scripted.extend(std::iter::repeat_n(fault, count));
    }

    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().expect("latency lock") = latency;
    }

    /// Path and query of every request received, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.received().into_iter().map(|received| received.target).collect()
    }

    /// Every request received, with the headers tests check, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().expect("log lock").clone()
    }

    pub fn clear_requests(&self) {
        self.log.lock().expect("log lock").clear();
    }
}

/// Puts the request log, latency and faults in front of a provider's router.
pub fn wrap(router: Router, control: Arc<Control>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(control, inject))
}

fn received_of(request: &Request, control: &Control) -> Received {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    Received {
        target: request
            .uri()
            .path_and_query()
            .map(|path| path.as_str().to_owned())
            .unwrap_or_default(),
        request_id: header("x-request-id"),
        user_agent: header("user-agent"),
        accept: header("accept"),
        authorized: super::authorized(request.headers(), control),
    }
}

async fn inject(State(control): State<Arc<Control>>, request: Request, next: Next) -> Response {
    control
        .log
        .lock()
        .expect("log lock")
        .push(received_of(&request, &control));

    let latency = *control.latency.lock().expect("latency lock");
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let scripted = control.scripted.lock().expect("script lock").pop_front();
    let fault = scripted.unwrap_or_else(|| control.fault.lock().expect("fault lock").clone());
    match fault {
        Fault::None => next.run(request).await,
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (
                status,
                [("content-type", "application/json")],
                r#"{"message":"injected fault"}"#,
            )
                .into_response();
            if code == 429 || code == 503 {
                response
                    .headers_mut()
                    .insert("retry-after", "1".parse().expect("valid header"));
            }
            response
        }
        Fault::Hang => std::future::pending().await,
        Fault::Malformed => (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"data\": {\"APIUsers\": [",
        )
            .into_response(),
        Fault::WrongShape => (
            StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"items":[],"count":"none"}"#,
        )
            .into_response(),
        Fault::Oversized(bytes) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            " ".repeat(bytes),
        )
            .into_response(),
        Fault::Redirect => (StatusCode::FOUND, [("location", "http://127.0.0.1:9/elsewhere")], "").into_response(),
        Fault::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("content-type", "application/json".to_owned()),
                ("retry-after", retry_after_secs.to_string()),
            ],
            r#"{"message":"slow down"}"#,
        )
            .into_response(),
        Fault::ResetMidBody => {
            let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                Ok(r#"{"entities":[{"id":"#),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected reset",
                )),
            ];
            let body = Body::from_stream(futures_util::stream::iter(chunks));
            (StatusCode::OK, [("content-type", "application/json")], body).into_response()
        }
        Fault::Trickle => {
            let bytes = futures_util::stream::unfold(0u32, |sent| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b" ")), sent + 1))
            });
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                Body::from_stream(bytes),
            )
                .into_response()
        }
    }
}

//! Latency and fault injection, and the request log, for one simulated provider.
//!
//! Tests flip faults at run time through [`Control`]; the CLI sets them at start.
//! Transport faults replace the whole answer here, in [`inject`]; data faults
//! ([`DataFault`]) travel to the provider's handler in the request's extensions, because
//! only the handler that cuts the page can make it lie in a documented shape.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

/// What a simulated provider does instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer with this HTTP status and a small JSON error body (`Retry-After: 1` on 429 and 503).
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
    /// 429 with this `Retry-After` (seconds); [`Fault::RetryAfter`] sends any value.
    RateLimited {
        retry_after_secs: u64,
    },
    /// `status` (429 or 503 from the CLI) with `Retry-After: <value>` sent verbatim, so huge
    /// (`10000000000000000000`), negative, far-future HTTP-date or garbage values reach the
    /// gateway as an upstream would send them.
    /// CLI: `retry-after=<value>` (429), `retry-after-503=<value>` (503).
    RetryAfter {
        status: u16,
        value: String,
    },
    /// 200, part of the body, then the connection is cut.
    ResetMidBody,
    /// 200 and a valid-looking body sent one byte every 50 ms.
    Trickle,
    /// The first `n` requests after this fault is set hang forever (as [`Fault::Hang`]);
    /// every later request is answered normally, so a probe's caller can hang up and then see
    /// the upstream recover.
    /// The count is shared by the standing fault and any scripted copies of it, and starts
    /// again at each [`Control::set_fault`].
    /// CLI: `hang-then-ok=<n>` (`hang-then-ok` alone is `n = 1`).
    HangThenOk(usize),
    /// A 200 of the documented shape whose content lies; see [`DataFault`].
    Data(DataFault),
}

/// How a provider's 200 page lies while keeping the documented shape (SPEC §3 "That holds
/// whatever an upstream does"). Applied by the provider's handler while it cuts the page;
/// a page size is TI's `perPage` (40 by default) or TIS's 50.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFault {
    /// The pushed-down filter matches more loosely than documented (TI: `role`; TIS: `email`
    /// and `orgId`, while `userId` stays exact), consistently: the upstream's list is every
    /// matching user plus the non-matching ones that come after its first `from_page - 1`
    /// pages of matching users, and every page reports that list's total (TI
    /// `pageInfo.total`, `hasMore`; TIS `totalEntities`). So pages before `from_page` look
    /// exact and the looseness shows from `from_page` on, as a forward walk meets it; only
    /// re-applying the filter reveals it. With `from_page: 1` the filter is ignored outright.
    /// Requests that send no such filter are answered truthfully.
    /// CLI: `loose-filter` (`from_page` 2) or `loose-filter=<from_page>`.
    LooseFilter { from_page: usize },
    /// Every page from 2 on opens with the last user of page N-1 in place of its own first,
    /// as an upstream whose order shifts between requests would: that user is on two pages
    /// and the one it replaced on none. Totals and page lengths stay true.
    /// CLI: `repeat-ids`.
    RepeatIds,
    /// `page` is ignored: every answer is page 1, claiming `currentPage: 1` (TI) / `page: 1`
    /// (TIS). CLI: `ignore-page`.
    IgnorePage,
    /// Page 1 reports the true total; every later page reports the true total plus 5 (TI
    /// `total` and `hasMore` follow it, TIS `totalEntities`), while the records stay true.
    /// CLI: `shifting-total`.
    ShiftingTotal,
    /// The first record of page 2 loses its id: `"id": ""` when `absent` is false, no `id`
    /// key at all when it is true. Other pages, and answers with a single page, are untouched.
    /// CLI: `missing-id` (or `missing-id=empty`) and `missing-id=absent`.
    MissingId { absent: bool },
}

/// The modes `Fault::from_str` takes, listed in its error message.
pub const FAULT_SYNTAX: &str = "none, an HTTP status (500, 401, 429…), hang, malformed, wrong-shape, oversized, \
     redirect, reset, trickle, loose-filter[=<from_page>], repeat-ids, ignore-page, shifting-total, \
     missing-id[=empty|absent], retry-after=<value>, retry-after-503=<value>, hang-then-ok[=<n>]";

impl std::str::FromStr for Fault {
    type Err = String;

    /// One of [`FAULT_SYNTAX`].
    fn from_str(text: &str) -> Result<Fault, String> {
        let not_a_fault = |why: &str| format!("{text:?} is not a fault{why}: {FAULT_SYNTAX}");
        let positive = |value: &str, name: &str| match value.parse::<usize>() {
            Ok(number) if number >= 1 => Ok(number),
            _ => Err(not_a_fault(&format!(" ({name} must be a whole number of at least 1)"))),
        };
        let header_value = |value: &str| match HeaderValue::from_str(value) {
            Ok(_) => Ok(value.to_owned()),
            Err(_) => Err(not_a_fault(" (the Retry-After value cannot hold control characters)")),
        };
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (text, None),
        };
        Ok(match (name, value) {
            ("none", None) => Fault::None,
            ("hang", None) => Fault::Hang,
            ("malformed", None) => Fault::Malformed,
            ("wrong-shape", None) => Fault::WrongShape,
            ("oversized", None) => Fault::Oversized(32 * 1024 * 1024),
            ("redirect", None) => Fault::Redirect,
            ("reset", None) => Fault::ResetMidBody,
            ("trickle", None) => Fault::Trickle,
            ("loose-filter", None) => Fault::Data(DataFault::LooseFilter { from_page: 2 }),
            ("loose-filter", Some(page)) => Fault::Data(DataFault::LooseFilter {
                from_page: positive(page, "from_page")?,
            }),
            ("repeat-ids", None) => Fault::Data(DataFault::RepeatIds),
            ("ignore-page", None) => Fault::Data(DataFault::IgnorePage),
            ("shifting-total", None) => Fault::Data(DataFault::ShiftingTotal),
            ("missing-id", None | Some("empty")) => Fault::Data(DataFault::MissingId { absent: false }),
            ("missing-id", Some("absent")) => Fault::Data(DataFault::MissingId { absent: true }),
            ("retry-after", Some(value)) => Fault::RetryAfter {
                status: 429,
                value: header_value(value)?,
            },
            ("retry-after-503", Some(value)) => Fault::RetryAfter {
                status: 503,
                value: header_value(value)?,
            },
            ("hang-then-ok", None) => Fault::HangThenOk(1),
            ("hang-then-ok", Some(count)) => Fault::HangThenOk(positive(count, "n")?),
            (status, None) => match status.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => Fault::Status(code),
                _ => return Err(not_a_fault("")),
            },
            _ => return Err(not_a_fault("")),
        })
    }
}

/// One page as a provider's handler answers it: which records, and the page number and
/// total the answer claims.
#[derive(Debug, PartialEq)]
pub(crate) struct Cut<'a> {
    pub users: Vec<Cow<'a, Value>>,
    pub page: usize,
    pub total: usize,
}

impl DataFault {
    /// Cuts page `page` of `size` records, truthfully for `None`. `matching` is the list the
    /// query asks for; `unfiltered` the same list without the pushed-down filters a loose
    /// upstream drops; `filter_sent` whether the request carried any of them.
    pub(crate) fn cut<'a>(
        fault: Option<DataFault>,
        matching: &[&'a Value],
        unfiltered: &[&'a Value],
        filter_sent: bool,
        page: usize,
        size: usize,
    ) -> Cut<'a> {
        let truthful = |list: &[&'a Value], page: usize| Cut {
            users: super::page_of(list, page, size)
                .iter()
                .map(|user| Cow::Borrowed(*user))
                .collect(),
            page,
            total: list.len(),
        };
        match fault {
            None => truthful(matching, page),
            Some(DataFault::LooseFilter { from_page }) if filter_sent => {
                // A consistently wider filter: every user that matches, plus the ones that do
                // not but come after the first `from_page - 1` pages of matching users. Each
                // page agrees on the total, and the first pages look exact.
                let matching_ids: std::collections::HashSet<*const Value> =
                    matching.iter().map(|user| *user as *const Value).collect();
                let clean = from_page.saturating_sub(1).saturating_mul(size);
                let mut seen = 0usize;
                let widened: Vec<&'a Value> = unfiltered
                    .iter()
                    .copied()
                    .filter(|user| {
                        let matches = matching_ids.contains(&(*user as *const Value));
                        seen += usize::from(matches);
                        matches || seen >= clean
                    })
                    .collect();
                truthful(&widened, page)
            }
            Some(DataFault::LooseFilter { .. }) => truthful(matching, page),
            Some(DataFault::RepeatIds) if page >= 2 => {
                let mut cut = truthful(matching, page);
                let previous_last = (page - 1).saturating_mul(size).checked_sub(1);
                if let (Some(first), Some(last)) =
                    (cut.users.first_mut(), previous_last.and_then(|at| matching.get(at)))
                {
                    *first = Cow::Borrowed(*last);
                }
                cut
            }
            Some(DataFault::RepeatIds) => truthful(matching, page),
            Some(DataFault::IgnorePage) => truthful(matching, 1),
            Some(DataFault::ShiftingTotal) => {
                let mut cut = truthful(matching, page);
                if page >= 2 {
                    cut.total += 5;
                }
                cut
            }
            Some(DataFault::MissingId { absent }) => {
                let mut cut = truthful(matching, page);
                if page == 2 {
                    if let Some(Value::Object(user)) = cut.users.first_mut().map(Cow::to_mut) {
                        if absent {
                            user.retain(|key, _| key != "id");
                        } else {
                            user.insert("id".to_owned(), Value::from(""));
                        }
                    }
                }
                cut
            }
        }
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
    /// Requests [`Fault::HangThenOk`] has hung since the standing fault was last set.
    hung: AtomicUsize,
    latency: Mutex<Duration>,
    log: Mutex<Vec<Received>>,
    /// The length of `log`, for tests that wait for a request to arrive instead of sleeping.
    arrived: tokio::sync::watch::Sender<usize>,
}

impl Control {
    pub fn new(api_key: &'static str, latency: Duration) -> Control {
        Control {
            api_key,
            fault: Mutex::new(Fault::None),
            scripted: Mutex::new(std::collections::VecDeque::new()),
            hung: AtomicUsize::new(0),
            latency: Mutex::new(latency),
            log: Mutex::new(Vec::new()),
            arrived: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn api_key(&self) -> &'static str {
        self.api_key
    }

    /// The standing fault, from the next request on; restarts [`Fault::HangThenOk`]'s count.
    pub fn set_fault(&self, fault: Fault) {
        let mut standing = self.fault.lock().expect("fault lock");
        self.hung.store(0, Ordering::SeqCst);
        *standing = fault;
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
        let mut log = self.log.lock().expect("log lock");
        log.clear();
        self.arrived.send_replace(0);
    }

    /// Resolves once the log holds at least `count` requests (a hanging one counts as soon
    /// as it arrived), so a test can act while an upstream call is known to be in flight.
    pub async fn wait_for_requests(&self, count: usize) {
        let mut arrived = self.arrived.subscribe();
        // The sender lives in `self`, which outlives this borrow: the wait cannot fail.
        let _ = arrived.wait_for(|n_received| *n_received >= count).await;
    }

    /// The fault for the request arriving now: a scripted one, else the standing one.
    fn next_fault(&self) -> Fault {
        let scripted = self.scripted.lock().expect("script lock").pop_front();
        scripted.unwrap_or_else(|| self.fault.lock().expect("fault lock").clone())
    }

    /// Whether [`Fault::HangThenOk`] of `n` hangs this request, counting it if so.
    fn hang_one_of(&self, n: usize) -> bool {
        self.hung
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |hung| {
                (hung < n).then_some(hung + 1)
            })
            .is_ok()
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

async fn inject(State(control): State<Arc<Control>>, mut request: Request, next: Next) -> Response {
    {
        let mut log = control.log.lock().expect("log lock");
        log.push(received_of(&request, &control));
        control.arrived.send_replace(log.len());
    }

    let latency = *control.latency.lock().expect("latency lock");
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match control.next_fault() {
        Fault::None => next.run(request).await,
        Fault::Data(fault) => {
            request.extensions_mut().insert(fault);
            next.run(request).await
        }
        Fault::HangThenOk(n) if control.hang_one_of(n) => std::future::pending().await,
        Fault::HangThenOk(_) => next.run(request).await,
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
                    .insert("retry-after", HeaderValue::from_static("1"));
            }
            response
        }
        Fault::RetryAfter { status, value } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut response = (
                status,
                [("content-type", "application/json")],
                r#"{"message":"slow down"}"#,
            )
                .into_response();
            match HeaderValue::from_str(&value) {
                Ok(value) => {
                    response.headers_mut().insert("retry-after", value);
                }
                // Only a test can build such a fault (the CLI refuses it); say so loudly.
                Err(_) => tracing::warn!(
                    ?value,
                    "sandbox: Retry-After value is not a valid header; sent without it"
                ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(text: &str, expected: Fault) {
        assert_eq!(text.parse::<Fault>(), Ok(expected), "{text}");
    }

    #[test]
    fn every_mode_parses() {
        check("none", Fault::None);
        check("503", Fault::Status(503));
        check("hang", Fault::Hang);
        check("malformed", Fault::Malformed);
        check("wrong-shape", Fault::WrongShape);
        check("oversized", Fault::Oversized(32 * 1024 * 1024));
        check("redirect", Fault::Redirect);
        check("reset", Fault::ResetMidBody);
        check("trickle", Fault::Trickle);
        check("loose-filter", Fault::Data(DataFault::LooseFilter { from_page: 2 }));
        check("loose-filter=1", Fault::Data(DataFault::LooseFilter { from_page: 1 }));
        check("loose-filter=7", Fault::Data(DataFault::LooseFilter { from_page: 7 }));
        check("repeat-ids", Fault::Data(DataFault::RepeatIds));
        check("ignore-page", Fault::Data(DataFault::IgnorePage));
        check("shifting-total", Fault::Data(DataFault::ShiftingTotal));
        check("missing-id", Fault::Data(DataFault::MissingId { absent: false }));
        check("missing-id=empty", Fault::Data(DataFault::MissingId { absent: false }));
        check("missing-id=absent", Fault::Data(DataFault::MissingId { absent: true }));
        for value in [
            "10000000000000000000",
            "-1",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "soon",
            "naïve",
            "",
        ] {
            let verbatim = value.to_owned();
            check(
                &format!("retry-after={value}"),
                Fault::RetryAfter {
                    status: 429,
                    value: verbatim.clone(),
                },
            );
            check(
                &format!("retry-after-503={value}"),
                Fault::RetryAfter {
                    status: 503,
                    value: verbatim,
                },
            );
        }
        check(
            "retry-after=a=b",
            Fault::RetryAfter {
                status: 429,
                value: "a=b".to_owned(),
            },
        );
        check("hang-then-ok", Fault::HangThenOk(1));
        check("hang-then-ok=3", Fault::HangThenOk(3));
    }

    #[test]
    fn bad_values_are_refused_with_the_list_of_modes() {
        for text in [
            "",
            "bogus",
            "600",
            "99",
            "loose-filter=0",
            "loose-filter=two",
            "loose-filter=",
            "hang-then-ok=0",
            "hang-then-ok=-1",
            "missing-id=maybe",
            "ignore-page=3",
            "retry-after",
            "retry-after=\u{7}",
            "none=1",
        ] {
            let message = text.parse::<Fault>().expect_err(text);
            assert!(message.contains(&format!("{text:?}")), "names the value: {message}");
            for mode in [
                "loose-filter",
                "repeat-ids",
                "ignore-page",
                "shifting-total",
                "missing-id",
                "retry-after=",
                "hang-then-ok",
            ] {
                assert!(message.contains(mode), "{text:?}: {message} lists {mode}");
            }
        }
        let message = "loose-filter=0".parse::<Fault>().unwrap_err();
        assert!(
            message.contains("from_page must be a whole number of at least 1"),
            "{message}"
        );
    }

    /// Ten records `{"id": "u0"}` … `{"id": "u9"}`; the even ones match the filter.
    fn records() -> Vec<Value> {
        (0..10)
            .map(|user_idx| json!({ "id": format!("u{user_idx}") }))
            .collect()
    }

    fn ids(cut: &Cut) -> Vec<String> {
        cut.users
            .iter()
            .map(|user| {
                user.get("id")
                    .map_or("<absent>".to_owned(), |id| id.as_str().unwrap().to_owned())
            })
            .collect()
    }

    fn cut_of(fault: Option<DataFault>, filter_sent: bool, page: usize) -> (Vec<String>, usize, usize) {
        let records = records();
        let everyone: Vec<&Value> = records.iter().collect();
        let even: Vec<&Value> = records.iter().step_by(2).collect();
        let matching = if filter_sent { &even } else { &everyone };
        let cut = DataFault::cut(fault, matching, &everyone, filter_sent, page, 2);
        (ids(&cut), cut.page, cut.total)
    }

    fn expect(ids: &[&str], page: usize, total: usize) -> (Vec<String>, usize, usize) {
        (ids.iter().map(|id| (*id).to_owned()).collect(), page, total)
    }

    #[test]
    fn truthful_pages() {
        assert_eq!(cut_of(None, true, 1), expect(&["u0", "u2"], 1, 5));
        assert_eq!(cut_of(None, true, 3), expect(&["u8"], 3, 5));
        assert_eq!(cut_of(None, true, 4), expect(&[], 4, 5));
        assert_eq!(cut_of(None, false, 5), expect(&["u8", "u9"], 5, 10));
        assert_eq!(cut_of(None, false, usize::MAX), expect(&[], usize::MAX, 10));
    }

    #[test]
    fn a_loose_filter_widens_consistently_from_a_page_on() {
        let loose = Some(DataFault::LooseFilter { from_page: 2 });
        // u1 comes before the second matching user, so it is left out: pages agree on 9.
        assert_eq!(cut_of(loose, true, 1), expect(&["u0", "u2"], 1, 9));
        assert_eq!(cut_of(loose, true, 2), expect(&["u3", "u4"], 2, 9));
        assert_eq!(cut_of(loose, true, 5), expect(&["u9"], 5, 9));
        assert_eq!(
            cut_of(loose, false, 2),
            expect(&["u2", "u3"], 2, 10),
            "no filter, nothing to loosen"
        );
        let always = Some(DataFault::LooseFilter { from_page: 1 });
        assert_eq!(cut_of(always, true, 1), expect(&["u0", "u1"], 1, 10));
    }

    #[test]
    fn contradictions() {
        let repeat = Some(DataFault::RepeatIds);
        assert_eq!(cut_of(repeat, false, 1), expect(&["u0", "u1"], 1, 10));
        assert_eq!(cut_of(repeat, false, 2), expect(&["u1", "u3"], 2, 10));
        assert_eq!(
            cut_of(repeat, false, 5),
            expect(&["u7", "u9"], 5, 10),
            "u8 is never served"
        );
        assert_eq!(cut_of(repeat, false, usize::MAX), expect(&[], usize::MAX, 10));

        let ignore = Some(DataFault::IgnorePage);
        for page in [1, 2, 5, 9] {
            assert_eq!(cut_of(ignore, false, page), expect(&["u0", "u1"], 1, 10));
        }

        let shifting = Some(DataFault::ShiftingTotal);
        assert_eq!(cut_of(shifting, false, 1), expect(&["u0", "u1"], 1, 10));
        assert_eq!(cut_of(shifting, false, 2), expect(&["u2", "u3"], 2, 15));

        let blank = Some(DataFault::MissingId { absent: false });
        assert_eq!(cut_of(blank, false, 1), expect(&["u0", "u1"], 1, 10));
        assert_eq!(cut_of(blank, false, 2), expect(&["", "u3"], 2, 10));
        assert_eq!(cut_of(blank, false, 3), expect(&["u4", "u5"], 3, 10));
        let absent = Some(DataFault::MissingId { absent: true });
        assert_eq!(cut_of(absent, false, 2), expect(&["<absent>", "u3"], 2, 10));
    }

    #[test]
    fn hang_then_ok_counts_hung_requests_until_set_again() {
        let control = Control::new("key", Duration::ZERO);
        control.set_fault(Fault::HangThenOk(2));
        let hung: Vec<bool> = (0..4).map(|_| control.hang_one_of(2)).collect();
        assert_eq!(hung, [true, true, false, false]);
        control.set_fault(Fault::HangThenOk(2));
        assert!(control.hang_one_of(2), "set_fault starts the count again");
    }
}

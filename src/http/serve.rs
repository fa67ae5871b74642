//! Serving connections: hyper's HTTP/1 server, held to the limits SPEC §6 puts on the HTTP layer.
//!
//! `axum::serve` exposes neither a header read timeout nor hyper's head limits, so the
//! gateway drives hyper itself: a connection that has not delivered a complete request head
//! within `GATEWAY_HEADER_READ_TIMEOUT_MS` is closed (idle keep-alive connections included).
//!
//! hyper answers some over-long heads itself, with an empty body: a request target over
//! 64 KiB (a constant inside hyper) and a head larger than its read buffer. So every
//! connection's bytes pass through a [`HeadGuard`] that follows request heads as they arrive.
//! A head past the gateway's limits is cut short before hyper could refuse it, the rest of
//! that head is read and dropped, and the request hyper then sees is marked with a
//! [`HeadCut`] that `over_limits` answers with a 414/431 (or 405) problem and
//! `Connection: close`. The guard never changes a head within the limits, never looks into a
//! body, and after a head that announces a body it steps aside for that connection (hyper's
//! own limits, set generously below, then apply; the README lists this residual).

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::{MAX_HEADER_BYTES, MAX_HEADER_COUNT, MAX_URI_BYTES};

/// Longest method the guard passes; every route is `GET`, so anything longer is a 405.
pub(crate) const MAX_METHOD_BYTES: usize = 32;
/// Raw bytes of a head's header lines (names, colons, whitespace, values) the guard passes.
/// Twice what `over_limits` allows of names and values, so that only `over_limits`
/// decides about heads near its limit, whatever whitespace they carry.
const MAX_HEADER_SECTION_BYTES: usize = 2 * MAX_HEADER_BYTES;
/// hyper's read buffer limit: above the largest head the guard passes (about 73 KiB), and
/// the memory one connection may hold while its head arrives.
const HYPER_MAX_BUF_BYTES: usize = 128 * 1024;

/// Why the guard cut a request head short; `over_limits` answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadCut {
    MethodTooLong,
    TargetTooLong,
    TooManyHeaders,
    HeadersTooLarge,
}

/// How the gateway serves connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// A connection without a complete request head by then is closed.
    pub header_read_timeout: Duration,
    /// After shutdown is asked for, how long in-flight requests may take to finish.
    pub drain: Duration,
}

/// Serves `router` until `shutdown` resolves, then stops accepting, lets in-flight requests
/// finish for at most `options.drain`, and closes whatever is still open.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        // hyper's header count limit is left at its default, 100 = `MAX_HEADER_COUNT`: the
        // guard cuts a head at its 101st field, so hyper never refuses one first. (Setting
        // any limit makes hyper allocate and fill a header table for every request.)
        .max_buf_size(HYPER_MAX_BUF_BYTES);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small JSON answers: do not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(&http, &graceful, stream, router.clone()));
                }
                Err(error) if is_per_connection(&error) => {}
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(%error, "cannot accept connections; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            // Reaps finished connections so the set stays as large as what is open.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(options.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(drain = ?options.drain, "drain timeout reached: closing the connections still open");
    }
    connections.shutdown().await;
    Ok(())
}

fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// One connection: the guard in front of hyper, the router behind it, watched for shutdown.
fn serve_connection(
    http: &hyper::server::conn::http1::Builder,
    graceful: &GracefulShutdown,
    stream: tokio::net::TcpStream,
    router: Router,
) -> impl Future<Output = ()> + Send + 'static {
    let verdict = Arc::new(OnceLock::new());
    let guard = HeadGuard {
        inner: stream,
        scanner: HeadScanner::default(),
        verdict: verdict.clone(),
    };
    // hyper serves one request at a time per HTTP/1 connection, in order: the n-th call
    // is the n-th head the guard saw.
    let served = AtomicU64::new(0);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let index = served.fetch_add(1, Ordering::Relaxed);
        let mut request = request.map(Body::new);
        if let Some(&(cut_index, cut)) = verdict.get() {
            if cut_index == index {
                request.extensions_mut().insert(cut);
            }
        }
        router.clone().oneshot(request)
    });
    let connection = graceful.watch(http.serve_connection(TokioIo::new(guard), service));
    async move {
        if let Err(error) = connection.await {
            // Timeouts, resets and malformed requests: the caller's doing, not the gateway's.
            tracing::debug!(%error, "connection closed with an error");
        }
    }
}

/// The read side of a connection, as hyper sees it: request heads past the limits are cut
/// short (see the module docs). Writes pass through untouched.
struct HeadGuard<T> {
    inner: T,
    scanner: HeadScanner,
    /// The head the guard cut (index on this connection) and why, for the service.
    verdict: Arc<OnceLock<(u64, HeadCut)>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadGuard<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let start = buf.filled().len();
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.scanner.has_completion() {
                let written = this.scanner.write_completion(buf.initialize_unfilled());
                buf.advance(written);
                return Poll::Ready(Ok(()));
            }
            if this.scanner.is_done() {
                // The cut head is complete: hyper answers it and closes. Nothing after it is
                // read, so nothing after it can be taken for a request.
                return Poll::Pending;
            }
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let read = buf.filled().len() - start;
            if read == 0 {
                return Poll::Ready(Ok(()));
            }
            let kept = this.scanner.feed(&mut buf.filled_mut()[start..]);
            buf.set_filled(start + kept);
            if let Some(cut) = this.scanner.cut() {
                let _ = this.verdict.set(cut);
            }
            if this.scanner.has_completion() && buf.remaining() > 0 {
                let written = this.scanner.write_completion(buf.initialize_unfilled());
                buf.advance(written);
            }
            if buf.filled().len() > start {
                return Poll::Ready(Ok(()));
            }
            // Everything read was dropped: read on, or hyper would take it for EOF.
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadGuard<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where in the byte stream of a connection the guard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before a request line; empty lines here are dropped (RFC 9112 §2.2 lets a server ignore them).
    Start,
    Method,
    Target,
    /// The rest of the request line.
    Version,
    /// At the start of a header line, or of the empty line that ends the head.
    LineStart,
    /// A CR at the start of a line: LF ends the head.
    EndCr,
    Name,
    Value,
    ValueCr,
    /// A body announced by `Content-Length`: passed on, not looked into.
    Body(u64),
    /// A head was cut: the rest of it is read and dropped, so the answer is not lost to a
    /// reset from unread data. `at_line_start` finds the empty line that ends it.
    Drain {
        at_line_start: bool,
    },
    /// The cut head has been completed for hyper; nothing more is read.
    Done,
    /// Framing the guard does not follow (a chunked body, malformed syntax): everything
    /// passes, and hyper's own limits apply.
    Passthrough,
}

/// What the header being read is, for framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderKind {
    Other,
    ContentLength,
    TransferEncoding,
    /// `Expect: 100-continue`: the body may never come, so the guard cannot tell where the next head starts.
    Expect,
}

/// Follows request heads byte by byte and cuts those past the limits. Pure, so it can be
/// tested over any split of the stream into reads.
#[derive(Debug)]
struct HeadScanner {
    phase: Phase,
    /// Heads completed on this connection: the index of the head being read.
    heads: u64,
    method: [u8; 7],
    method_len: usize,
    target_len: usize,
    version_len: usize,
    header_count: usize,
    header_bytes: usize,
    /// The header name so far, lowercased, while it could still be one the framing needs.
    name: [u8; 17],
    name_len: usize,
    kind: HeaderKind,
    /// A `Content-Length` value so far (digits and whitespace are all it may hold).
    length_text: [u8; 24],
    length_len: usize,
    content_length: Option<u64>,
    /// The head's framing is not one the guard follows: step aside after it.
    unfollowed: bool,
    cut: Option<(u64, HeadCut)>,
    /// Bytes that complete a cut head for hyper, and how many were handed over.
    completion: &'static [u8],
    completion_sent: usize,
}

impl Default for HeadScanner {
    fn default() -> HeadScanner {
        HeadScanner {
            phase: Phase::Start,
            heads: 0,
            method: [0; 7],
            method_len: 0,
            target_len: 0,
            version_len: 0,
            header_count: 0,
            header_bytes: 0,
            name: [0; 17],
            name_len: 0,
            kind: HeaderKind::Other,
            length_text: [0; 24],
            length_len: 0,
            content_length: None,
            unfollowed: false,
            cut: None,
            completion: b"",
            completion_sent: 0,
        }
    }
}

impl HeadScanner {
    /// Scans `data` (bytes just read), keeps the bytes hyper should see at its front, and
    /// returns how many.
    fn feed(&mut self, data: &mut [u8]) -> usize {
        let mut kept = 0;
        let mut idx = 0;
        while idx < data.len() {
            match self.phase {
                Phase::Passthrough => {
                    let rest = data.len() - idx;
                    data.copy_within(idx.., kept);
                    return kept + rest;
                }
                Phase::Done => return kept,
                Phase::Body(remaining) => {
                    let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(data.len() - idx);
                    data.copy_within(idx..idx + take, kept);
                    kept += take;
                    idx += take;
                    let remaining = remaining - take as u64;
                    self.phase = if remaining == 0 {
                        Phase::Start
                    } else {
                        Phase::Body(remaining)
                    };
                }
                _ => {
                    if let Some(run) = self.plain_run(&data[idx..]) {
                        data.copy_within(idx..idx + run, kept);
                        kept += run;
                        idx += run;
                        continue;
                    }
                    let byte = data[idx];
                    if self.step(byte) {
                        data[kept] = byte;
                        kept += 1;
                    }
                    idx += 1;
                }
            }
        }
        kept
    }

    /// How many of `rest`'s first bytes are a plain run that [`step`](Self::step) would pass
    /// one by one with nothing to note but their count: the inside of a target, or of an
    /// ordinary header's value, up to the next delimiter and within the limit (the byte past
    /// the limit is left to `step`, which cuts there). `None` when the next byte needs `step`.
    /// Taken at once, because byte-by-byte scanning was a tenth of a cache hit's cost.
    fn plain_run(&mut self, rest: &[u8]) -> Option<usize> {
        let (until_delimiter, allowed) = match self.phase {
            Phase::Target => (
                memchr::memchr3(b' ', b'\r', b'\n', rest),
                MAX_URI_BYTES.saturating_sub(self.target_len),
            ),
            Phase::Value if self.kind == HeaderKind::Other => (
                memchr::memchr2(b'\r', b'\n', rest),
                MAX_HEADER_SECTION_BYTES.saturating_sub(self.header_bytes),
            ),
            _ => return None,
        };
        let run = until_delimiter.unwrap_or(rest.len()).min(allowed);
        if run == 0 {
            return None;
        }
        match self.phase {
            Phase::Target => self.target_len += run,
            _ => self.header_bytes += run,
        }
        Some(run)
    }

    /// One byte of a head; whether hyper gets it.
    fn step(&mut self, byte: u8) -> bool {
        match self.phase {
            Phase::Start => match byte {
                b'\r' | b'\n' => false,
                _ => {
                    self.phase = Phase::Method;
                    self.method_byte(byte)
                }
            },
            Phase::Method => match byte {
                b' ' => {
                    self.phase = Phase::Target;
                    true
                }
                b'\r' | b'\n' => self.step_aside(),
                _ => self.method_byte(byte),
            },
            Phase::Target => match byte {
                b' ' => {
                    self.phase = Phase::Version;
                    true
                }
                b'\r' | b'\n' => self.step_aside(),
                _ => {
                    self.target_len += 1;
                    if self.target_len > MAX_URI_BYTES {
                        return self.cut_here(HeadCut::TargetTooLong, b" HTTP/1.1\r\n\r\n");
                    }
                    true
                }
            },
            Phase::Version => match byte {
                b'\n' => {
                    self.phase = Phase::LineStart;
                    true
                }
                _ => {
                    self.version_len += 1;
                    // `HTTP/1.1` and a CR; hyper refuses anything else, the guard only stops following.
                    if self.version_len > 16 {
                        return self.step_aside();
                    }
                    true
                }
            },
            Phase::LineStart => match byte {
                b'\r' => {
                    self.phase = Phase::EndCr;
                    true
                }
                b'\n' => self.end_of_head(),
                _ => {
                    self.header_count += 1;
                    if self.header_count > MAX_HEADER_COUNT {
                        return self.cut_here(HeadCut::TooManyHeaders, b"\r\n");
                    }
                    if !self.count_header_byte() {
                        return self.cut_here(HeadCut::HeadersTooLarge, b"\r\n");
                    }
                    self.name_len = 0;
                    self.kind = HeaderKind::Other;
                    self.phase = Phase::Name;
                    self.name_byte(byte);
                    true
                }
            },
            Phase::EndCr => match byte {
                b'\n' => self.end_of_head(),
                _ => self.step_aside(),
            },
            Phase::Name => match byte {
                b':' => {
                    if !self.count_header_byte() {
                        return self.cut_here(HeadCut::HeadersTooLarge, b":\r\n\r\n");
                    }
                    self.start_value();
                    true
                }
                b'\r' | b'\n' => self.step_aside(),
                _ => {
                    if !self.count_header_byte() {
                        return self.cut_here(HeadCut::HeadersTooLarge, b":\r\n\r\n");
                    }
                    self.name_byte(byte);
                    true
                }
            },
            Phase::Value => match byte {
                b'\r' => {
                    self.phase = Phase::ValueCr;
                    true
                }
                b'\n' => self.end_of_header_line(),
                _ => {
                    if !self.count_header_byte() {
                        return self.cut_here(HeadCut::HeadersTooLarge, b"\r\n\r\n");
                    }
                    self.value_byte(byte);
                    true
                }
            },
            Phase::ValueCr => match byte {
                b'\n' => self.end_of_header_line(),
                _ => self.step_aside(),
            },
            Phase::Drain { at_line_start } => {
                match byte {
                    b'\n' if at_line_start => self.phase = Phase::Done,
                    b'\n' => self.phase = Phase::Drain { at_line_start: true },
                    b'\r' => {}
                    _ => self.phase = Phase::Drain { at_line_start: false },
                }
                false
            }
            Phase::Done => false,
            Phase::Passthrough | Phase::Body(_) => true,
        }
    }

    fn method_byte(&mut self, byte: u8) -> bool {
        if self.method_len == MAX_METHOD_BYTES {
            return self.cut_here(HeadCut::MethodTooLong, b" / HTTP/1.1\r\n\r\n");
        }
        if let Some(slot) = self.method.get_mut(self.method_len) {
            *slot = byte;
        }
        self.method_len += 1;
        true
    }

    /// Counts one byte of a header line; false once the header section is over its limit.
    fn count_header_byte(&mut self) -> bool {
        self.header_bytes += 1;
        self.header_bytes <= MAX_HEADER_SECTION_BYTES
    }

    fn name_byte(&mut self, byte: u8) {
        if let Some(slot) = self.name.get_mut(self.name_len) {
            *slot = byte.to_ascii_lowercase();
        }
        self.name_len += 1;
    }

    fn start_value(&mut self) {
        let name = &self.name[..self.name_len.min(self.name.len())];
        self.kind = match (self.name_len, name) {
            (14, b"content-length") => HeaderKind::ContentLength,
            (17, b"transfer-encoding") => HeaderKind::TransferEncoding,
            (6, b"expect") => HeaderKind::Expect,
            _ => HeaderKind::Other,
        };
        self.length_len = 0;
        self.phase = Phase::Value;
    }

    fn value_byte(&mut self, byte: u8) {
        if self.kind == HeaderKind::ContentLength {
            match self.length_text.get_mut(self.length_len) {
                Some(slot) => *slot = byte,
                // Longer than any length the guard would follow.
                None => self.unfollowed = true,
            }
            self.length_len += 1;
        }
    }

    fn end_of_header_line(&mut self) -> bool {
        match self.kind {
            HeaderKind::Other => {}
            HeaderKind::TransferEncoding | HeaderKind::Expect => self.unfollowed = true,
            HeaderKind::ContentLength => {
                let text = &self.length_text[..self.length_len.min(self.length_text.len())];
                let length = std::str::from_utf8(text)
                    .ok()
                    .map(|text| text.trim_matches([' ', '\t']))
                    .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|text| text.parse::<u64>().ok());
                match (length, self.content_length) {
                    (Some(length), None) => self.content_length = Some(length),
                    // A second length, or one that is not a number: hyper decides.
                    _ => self.unfollowed = true,
                }
            }
        }
        self.phase = Phase::LineStart;
        true
    }

    fn end_of_head(&mut self) -> bool {
        let connect = self.method_len == 7 && &self.method == b"CONNECT";
        self.phase = if self.unfollowed || connect {
            Phase::Passthrough
        } else {
            match self.content_length {
                Some(length) if length > 0 => Phase::Body(length),
                _ => Phase::Start,
            }
        };
        self.heads += 1;
        self.method_len = 0;
        self.target_len = 0;
        self.version_len = 0;
        self.header_count = 0;
        self.header_bytes = 0;
        self.content_length = None;
        self.unfollowed = false;
        true
    }

    /// Stops following this connection; the byte (and all after it) pass to hyper.
    fn step_aside(&mut self) -> bool {
        self.phase = Phase::Passthrough;
        true
    }

    /// Cuts the head here: this byte and the rest of the head are dropped, and `completion`
    /// (what makes the bytes passed so far a complete head) follows once the head has ended.
    fn cut_here(&mut self, cut: HeadCut, completion: &'static [u8]) -> bool {
        self.cut = Some((self.heads, cut));
        self.completion = completion;
        self.phase = Phase::Drain { at_line_start: false };
        false
    }

    fn cut(&self) -> Option<(u64, HeadCut)> {
        self.cut
    }

    fn has_completion(&self) -> bool {
        self.phase == Phase::Done && self.completion_sent < self.completion.len()
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn write_completion(&mut self, out: &mut [u8]) -> usize {
        let rest = &self.completion[self.completion_sent..];
        let written = rest.len().min(out.len());
        out[..written].copy_from_slice(&rest[..written]);
        self.completion_sent += written;
        written
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Runs `stream` through a scanner in reads of the given sizes (cycled), like a socket would.
    fn scan(stream: &[u8], read_sizes: &[usize]) -> (Vec<u8>, Option<(u64, HeadCut)>) {
        let mut scanner = HeadScanner::default();
        let mut out = Vec::new();
        let mut offset = 0;
        let mut sizes = read_sizes.iter().copied().cycle();
        while offset < stream.len() && !scanner.is_done() {
            let size = sizes.next().unwrap_or(stream.len()).max(1).min(stream.len() - offset);
            let mut chunk = stream[offset..offset + size].to_vec();
            offset += size;
            let kept = scanner.feed(&mut chunk);
            out.extend_from_slice(&chunk[..kept]);
        }
        while scanner.has_completion() {
            let mut piece = [0u8; 3];
            let written = scanner.write_completion(&mut piece);
            out.extend_from_slice(&piece[..written]);
        }
        (out, scanner.cut())
    }

    fn get(target: &str, headers: &[String]) -> Vec<u8> {
        let mut head = format!("GET {target} HTTP/1.1\r\nhost: gateway\r\n");
        for header in headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    fn small_headers(count: usize) -> Vec<String> {
        (0..count).map(|idx| format!("x-h{idx}: v")).collect()
    }

    #[test]
    fn heads_within_the_limits_pass_unchanged() {
        let mut stream = get("/users?page=2", &small_headers(99));
        stream.extend(get(&format!("/users?email={}", "a".repeat(MAX_URI_BYTES - 13)), &[]));
        stream.extend(get("/healthz", &[format!("x-big: {}", "b".repeat(MAX_HEADER_BYTES))]));
        for sizes in [&[1][..], &[7, 1, 300], &[100_000]] {
            assert_eq!(scan(&stream, sizes), (stream.clone(), None), "reads of {sizes:?}");
        }
    }

    #[test]
    fn a_long_target_is_cut_to_the_limit_and_completed() {
        let target = format!("/users?email={}", "a".repeat(70 * 1024));
        let stream = get(&target, &small_headers(3));
        let expected = format!("GET {} HTTP/1.1\r\n\r\n", &target[..MAX_URI_BYTES]);
        for sizes in [&[1][..], &[4096], &[100_000]] {
            let (out, cut) = scan(&stream, sizes);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
            assert_eq!(cut, Some((0, HeadCut::TargetTooLong)));
        }
    }

    #[test]
    fn too_many_headers_are_cut_after_the_limit() {
        let stream = get("/users", &small_headers(150));
        let (out, cut) = scan(&stream, &[5]);
        // `host` and 99 more are kept: the 101st header line is where the cut is.
        let expected = get("/users", &small_headers(MAX_HEADER_COUNT - 1));
        assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(expected).unwrap());
        assert_eq!(cut, Some((0, HeadCut::TooManyHeaders)));
    }

    #[test]
    fn a_huge_header_is_cut_inside_its_value_or_name() {
        let value = "v".repeat(200 * 1024);
        let (out, cut) = scan(&get("/users", &[format!("x-big: {value}")]), &[1000]);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.ends_with("vvv\r\n\r\n") && out.len() < MAX_HEADER_SECTION_BYTES + 100,
            "{}",
            out.len()
        );
        assert_eq!(cut, Some((0, HeadCut::HeadersTooLarge)));

        let name = "n".repeat(200 * 1024);
        let (out, cut) = scan(&get("/users", &[format!("{name}: v")]), &[1000]);
        assert!(String::from_utf8(out).unwrap().ends_with("nnn:\r\n\r\n"));
        assert_eq!(cut, Some((0, HeadCut::HeadersTooLarge)));
    }

    #[test]
    fn a_long_method_is_cut() {
        let stream = format!("{} / HTTP/1.1\r\n\r\n", "M".repeat(10_000)).into_bytes();
        let (out, cut) = scan(&stream, &[64]);
        assert_eq!(
            out,
            format!("{} / HTTP/1.1\r\n\r\n", "M".repeat(MAX_METHOD_BYTES)).into_bytes()
        );
        assert_eq!(cut, Some((0, HeadCut::MethodTooLong)));
    }

    #[test]
    fn the_cut_names_the_head_it_happened_in_and_nothing_after_it_passes() {
        let mut stream = get("/a", &[]);
        stream.extend(get("/b", &[]));
        let mut third = get(&"/c".repeat(MAX_URI_BYTES), &[]);
        stream.append(&mut third);
        stream.extend(get("/d", &[]));
        let (out, cut) = scan(&stream, &[13]);
        assert_eq!(cut, Some((2, HeadCut::TargetTooLong)));
        assert!(!String::from_utf8(out).unwrap().contains("/d"));
    }

    #[test]
    fn leading_empty_lines_are_dropped() {
        let mut stream = b"\r\n\r\n\n".to_vec();
        stream.extend(get("/a", &[]));
        assert_eq!(scan(&stream, &[2]), (get("/a", &[]), None));
    }

    #[test]
    fn a_content_length_body_is_not_taken_for_a_head() {
        let body = format!("{} HTTP/1.1\r\n\r\n", "x".repeat(20_000));
        let mut stream = format!("POST /users HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes();
        stream.extend(get(&"/e".repeat(MAX_URI_BYTES), &[]));
        let (out, cut) = scan(&stream, &[999]);
        assert_eq!(cut, Some((1, HeadCut::TargetTooLong)));
        assert!(String::from_utf8(out).unwrap().contains(&body));
    }

    #[test]
    fn framing_it_does_not_follow_makes_the_guard_step_aside() {
        for first in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned(),
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".to_owned(),
            "POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n".to_owned(),
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n".to_owned(),
            "GET /\r\n".to_owned(),
        ] {
            let mut stream = first.into_bytes();
            stream.extend(get(&"/f".repeat(MAX_URI_BYTES), &[]));
            assert_eq!(scan(&stream, &[17]), (stream.clone(), None));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// However a stream of heads within the limits is split into reads, it passes unchanged.
        #[test]
        fn any_split_of_clean_heads_passes_unchanged(
            targets in prop::collection::vec("/[a-z0-9?=&%]{0,200}", 1..6),
            n_headers in 0usize..99,
            sizes in prop::collection::vec(1usize..600, 1..8),
        ) {
            let mut stream = Vec::new();
            for target in &targets {
                stream.extend(get(target, &small_headers(n_headers)));
            }
            prop_assert_eq!(scan(&stream, &sizes), (stream.clone(), None));
        }

        /// However a header block of long values is split into reads, it passes whole within
        /// the limit and is cut at the same byte past it.
        #[test]
        fn any_split_of_long_header_values_cuts_the_same(
            value_len in 1usize..20_000,
            n_headers in 1usize..8,
            sizes in prop::collection::vec(1usize..5000, 1..8),
        ) {
            let headers: Vec<String> = (0..n_headers).map(|idx| format!("x-v{idx}: {}", "v".repeat(value_len))).collect();
            let head = get("/users?page=1", &headers);
            let whole = scan(&head, &[head.len()]);
            prop_assert_eq!(scan(&head, &sizes), whole.clone());
            // `host: gateway` plus each `x-vN: value`, counted as the guard counts them.
            let section: usize = "host: gateway".len() + headers.iter().map(String::len).sum::<usize>();
            if section <= MAX_HEADER_SECTION_BYTES {
                prop_assert_eq!(whole, (head.clone(), None));
            } else {
                prop_assert_eq!(whole.1, Some((0, HeadCut::HeadersTooLarge)));
            }
        }

        /// However a too-long target is split into reads, the cut is the same.
        #[test]
        fn any_split_of_a_long_target_cuts_the_same(extra in 1usize..20_000, sizes in prop::collection::vec(1usize..5000, 1..8)) {
            let target = format!("/{}", "t".repeat(MAX_URI_BYTES - 1 + extra));
            let (out, cut) = scan(&get(&target, &[]), &sizes);
            prop_assert_eq!(out, format!("GET {} HTTP/1.1\r\n\r\n", &target[..MAX_URI_BYTES]).into_bytes());
            prop_assert_eq!(cut, Some((0, HeadCut::TargetTooLong)));
        }
    }
}

//! The ticket tier's forwarder, sans-IO: keep-alive HTTP/1.1 connections to the vacancy service as
//! state machines, and the per-shard pool that picks among them. It knows no sockets, no executors
//! and no clock: the transport feeds bytes in, writes the bytes appended to its output buffer,
//! reports how many it wrote, and passes the current `Instant` in.
//!
//! Layout:
//! - [`UpstreamConn`]: one connection. [`UpstreamConn::enqueue`] appends a `POST /api/v1/reserve`
//!   to the caller's output buffer; [`UpstreamConn::on_input`] parses responses (proto-http's
//!   response parser, Content-Length and chunked bodies) and reports `(id, Outcome)` in request
//!   order, as HTTP/1.1 pipelining answers them.
//! - [`Pool`]: a shard's connections, at most `max_connections`, at most `keepalive` of them idle.
//!
//! Invariants:
//! - Requests on one connection are answered in the order they were enqueued; the queue is FIFO
//!   and the n-th complete response belongs to the n-th queued request.
//! - Every enqueued id gets exactly one [`Outcome`], from `on_input`, `expire`, `on_closed` or
//!   `on_error`; `in_flight()` counts the ids still waiting.
//! - A request whose bytes may have reached the vacancy service and whose answer we did not read
//!   ends as [`FailKind::Unknown`] or [`FailKind::Timeout`]: it may have sold tickets, so it is never
//!   retried. Only [`FailKind::NotSent`] (no byte of it was reported written) may be retried
//!   elsewhere. A partly written request is counted as sent: the rule stays "no byte left us".
//! - A connection that timed out, saw a malformed or unsolicited response, or was told
//!   `Connection: close` is broken: it takes no new request, and the transport closes it once
//!   `in_flight()` is 0. After a timeout its stream is still read, so the late answer of the expired
//!   request is consumed and dropped and the requests behind it still complete.
//! - Peer input never panics; `assert!` guards the caller's use of the API (enqueue on a broken
//!   connection, reporting more bytes sent than were enqueued, opening past the maximum).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proto_http::{
    parse_response, write_request, BodyFraming, ChunkedDecoder, Limits, Status, EMPTY_HEADER,
};

use crate::config::Config;
use crate::json::Cursor;

/// Requests pipelined on one connection at most. The vacancy service answers a pipelined batch
/// from one read, so a few requests per connection save syscalls on both sides; beyond 16, one slow
/// answer (head-of-line blocking) delays too many purchases, and another connection is better.
pub const PIPELINE_DEPTH_MAX: usize = 16;

/// Header storage for one response head. Our vacancy service sends four fields; 32 leaves room
/// for a proxy in between without letting a peer make us scan an unbounded list.
const RESPONSE_HEADERS_CAPACITY: usize = 32;

/// Framing bytes allowed around a chunked body on top of its data (size lines, CRLFs), as in
/// connection.rs: a response larger than `head + 2 × body + this` is malformed, not buffered.
const CHUNK_FRAMING_BYTES_MAX: usize = 4 * 1024;

/// Above this capacity the pending buffer is freed once it empties, so an idle connection costs
/// nothing after one large response.
const PENDING_KEEP_BYTES: usize = 4 * 1024;

/// The vacancy service's endpoints the ticket tier calls (CONTRACT.md).
const RESERVE_TARGET: &[u8] = b"/api/v1/reserve";
const AVAILABLE_TARGET: &[u8] = b"/api/v1/available";
const HEALTH_TARGET: &[u8] = b"/api/v1/health";

/// What the ticket tier asks the vacancy service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `POST /api/v1/reserve` with `{"qty":qty}`: a purchase.
    Reserve {
        /// Tickets asked for.
        qty: u64,
    },
    /// `GET /api/v1/available`: the stock, for `/available` once the ticket tier's copy is stale.
    Available,
    /// `GET /api/v1/health`: the readiness probe behind the ticket tier's `/ready`.
    Health,
}

/// The caller's name for a forwarded request: it maps the outcome back to the waiting purchase.
pub type RequestId = u64;

/// What became of one forwarded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `200 {"success":true,"remaining":N}`: the tickets are taken.
    Reserved {
        /// Tickets left after this reserve, as the vacancy service counted them.
        remaining: u64,
    },
    /// `200 {"success":false,"remaining":N}`: not enough stock, nothing taken.
    Insufficient {
        /// Tickets left, fewer than asked for.
        remaining: u64,
    },
    /// `200 {"qty":N}` to [`Request::Available`].
    Available {
        /// Tickets left.
        qty: u64,
    },
    /// `200` to [`Request::Health`].
    Healthy,
    /// No answer we can act on; the request answers 503.
    Failed(FailKind),
}

/// Why a forwarded reserve has no usable answer. Only [`FailKind::NotSent`] is known not to have
/// sold anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailKind {
    /// No byte of the request left us before the connection failed: safe to retry elsewhere.
    NotSent,
    /// The request was sent and the connection closed or failed before its answer: it may have
    /// sold.
    Unknown,
    /// Sent (or stuck behind a connect) and unanswered at its deadline: it may have sold.
    Timeout,
    /// The vacancy service answered with this status instead of 200. A 3xx or 4xx is a refusal
    /// (the request was not acted on); any other status may have sold (see
    /// [`FailKind::outcome_unknown`]).
    Status(u16),
    /// The response was not valid HTTP/1.1 (or exceeded our limits); the stream is lost.
    Malformed,
    /// A 200 whose body is not the one its request expects (`{"success":bool,"remaining":N,...}`
    /// for a reserve, `{"qty":N}` for available): a reserve may have sold.
    BadBody,
    /// Not sent at all: every connection of the shard's pool was at its pipelining limit and the
    /// pool at `HTTP_MAX_CONNECTIONS`.
    Busy,
}

impl FailKind {
    /// True only when the vacancy service cannot have acted on the request.
    pub fn is_retryable(self) -> bool {
        self == FailKind::NotSent
    }

    /// True when the vacancy service may have acted on the request: a reserve that failed so may
    /// have sold its tickets.
    ///
    /// Of the statuses, only a 3xx (redirection: the request must go elsewhere to be acted on)
    /// or a 4xx (the request was refused as the client's error, RFC 9110 §15.5) says nothing was
    /// done. A 5xx says the server failed, not that it did nothing: the vacancy service answers
    /// 503 `journal_failed` when its journal failed while the reserve waited, and that reserve
    /// may or may not have been made; a proxy's 502 or 504 may come after the reserve reached
    /// the vacancy service. A 2xx other than the 200 we read (202 Accepted) may have sold too.
    pub fn outcome_unknown(self) -> bool {
        match self {
            FailKind::Unknown | FailKind::Timeout | FailKind::Malformed | FailKind::BadBody => true,
            FailKind::Status(status) => !(300..500).contains(&status),
            FailKind::NotSent | FailKind::Busy => false,
        }
    }

    /// A stable snake_case name, for logs and the error body's detail.
    pub fn as_str(self) -> &'static str {
        match self {
            FailKind::NotSent => "not_sent",
            FailKind::Unknown => "connection_lost",
            FailKind::Timeout => "timeout",
            FailKind::Status(_) => "bad_status",
            FailKind::Malformed => "malformed_response",
            FailKind::BadBody => "unexpected_body",
            FailKind::Busy => "pool_full",
        }
    }
}

/// What every connection of a pool needs to know, built once at start-up.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// The `Host` value: `host:port`, with brackets around an IPv6 address.
    pub host_header: Vec<u8>,
    /// How long a forwarded reserve may wait for its answer (`VACANCY_TIMEOUT`).
    pub timeout: Duration,
    /// The response parser's bounds.
    pub limits: Limits,
}

impl UpstreamConfig {
    /// A configuration for the vacancy service at `host:port`.
    pub fn new(host: &str, port: u16, timeout: Duration, limits: Limits) -> Self {
        let host_header = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        UpstreamConfig {
            host_header: host_header.into_bytes(),
            timeout,
            limits,
        }
    }

    /// The vacancy service of the ticket mode, with proto-http's default limits: the server's
    /// configured limits bound what clients send us, not what the vacancy service answers.
    pub fn from_config(config: &Config) -> Self {
        Self::new(
            &config.vacancy_host,
            config.vacancy_port,
            config.vacancy_timeout,
            Limits::default(),
        )
    }
}

/// One request awaiting its response.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    /// The caller's id; `None` once the request expired (its late answer is read and dropped).
    id: Option<RequestId>,
    /// What was asked, which says how to read the answer.
    request: Request,
    /// Offset of the request's first byte in the connection's output stream.
    start: u64,
    /// When the request times out.
    deadline: Instant,
}

/// A response whose body runs until the connection closes (no Content-Length, not chunked).
#[derive(Clone, Copy, Debug)]
struct UntilClose {
    /// Its status code.
    status: u16,
    /// Where its body starts in `pending`.
    body_start: usize,
}

/// One keep-alive HTTP/1.1 connection to the vacancy service.
#[derive(Debug)]
pub struct UpstreamConn {
    /// Host header, timeout and limits.
    config: UpstreamConfig,
    /// Requests awaiting responses, oldest first (pipelining answers in this order).
    queue: VecDeque<InFlight>,
    /// Entries of `queue` whose id is still waiting (not expired).
    live: usize,
    /// Bytes of requests appended to the caller's output buffer over the connection's life.
    written: u64,
    /// Of those, bytes the transport reported written to the socket.
    sent: u64,
    /// Received bytes not yet consumed: the start of an incomplete response.
    pending: Vec<u8>,
    /// Reused buffer for a decoded chunked body.
    body: Vec<u8>,
    /// A response whose body ends with the connection is being read.
    until_close: Option<UntilClose>,
    /// The connection takes no new request; close it once nothing is in flight.
    broken: bool,
}

impl UpstreamConn {
    /// A connection (connecting or connected) with nothing in flight.
    pub fn new(config: UpstreamConfig) -> Self {
        UpstreamConn {
            config,
            queue: VecDeque::with_capacity(PIPELINE_DEPTH_MAX),
            live: 0,
            written: 0,
            sent: 0,
            pending: Vec::new(),
            body: Vec::new(),
            until_close: None,
            broken: false,
        }
    }

    /// Requests still waiting for an outcome.
    pub fn in_flight(&self) -> usize {
        self.live
    }

    /// True when the connection must not carry another request.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// True when a new request may be enqueued.
    pub fn can_reuse(&self) -> bool {
        !self.broken
    }

    /// The earliest deadline of a waiting request, for the transport's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue
            .iter()
            .filter(|f| f.id.is_some())
            .map(|f| f.deadline)
            .min()
    }

    /// Appends `request` (for a reserve, `POST /api/v1/reserve` with `{"qty":qty}`) to `out`, the
    /// connection's output buffer, and remembers `id` with the deadline `now + timeout`. The
    /// transport writes `out` in order and reports progress with [`UpstreamConn::on_sent`].
    pub fn enqueue(&mut self, id: RequestId, request: Request, now: Instant, out: &mut Vec<u8>) {
        assert!(!self.broken, "enqueue on a broken upstream connection");
        let before = out.len();
        match request {
            Request::Reserve { qty } => {
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(qty).as_bytes();
                // `{"qty":` + at most 20 digits + `}`.
                let mut body = [0u8; 28];
                body[..7].copy_from_slice(b"{\"qty\":");
                body[7..7 + digits.len()].copy_from_slice(digits);
                body[7 + digits.len()] = b'}';
                write_request(
                    out,
                    b"POST",
                    RESERVE_TARGET,
                    &self.config.host_header,
                    &[(b"Content-Type", b"application/json")],
                    &body[..8 + digits.len()],
                );
            }
            Request::Available | Request::Health => {
                let target = if request == Request::Available {
                    AVAILABLE_TARGET
                } else {
                    HEALTH_TARGET
                };
                write_request(out, b"GET", target, &self.config.host_header, &[], b"");
            }
        }
        let start = self.written;
        self.written += (out.len() - before) as u64;
        self.queue.push_back(InFlight {
            id: Some(id),
            request,
            start,
            deadline: now + self.config.timeout,
        });
        self.live += 1;
    }

    /// Takes no new request from now on; the transport closes the connection once nothing is in
    /// flight (an idle connection beyond the keep-alive count, or a pool being shut down).
    pub fn retire(&mut self) {
        self.broken = true;
    }

    /// The transport wrote `n` more bytes of the output stream to the socket.
    pub fn on_sent(&mut self, n: usize) {
        self.sent += n as u64;
        assert!(
            self.sent <= self.written,
            "more bytes reported sent than enqueued"
        );
    }

    /// Feeds received bytes; appends the outcome of every response they complete to `done`, in
    /// request order. `done` is the caller's reused buffer, so nothing allocates once it has grown.
    pub fn on_input(&mut self, input: &[u8], done: &mut Vec<(RequestId, Outcome)>) {
        if self.until_close.is_some() {
            self.pending.extend_from_slice(input);
            if self.pending.len() > self.response_bytes_max() {
                self.fail_all(FailKind::Malformed, done);
            }
            return;
        }
        if self.pending.is_empty() {
            let consumed = self.process(input, done);
            if !self.queue.is_empty() {
                self.pending.extend_from_slice(&input[consumed..]);
            }
        } else {
            self.pending.extend_from_slice(input);
            let pending = std::mem::take(&mut self.pending);
            let consumed = self.process(&pending, done);
            self.pending = pending;
            self.pending.drain(..consumed);
        }
        if self.queue.is_empty() {
            self.pending.clear();
            if self.pending.capacity() > PENDING_KEEP_BYTES {
                self.pending = Vec::new();
            }
        }
    }

    /// Fails every waiting request whose deadline has come (`now >= deadline`) and breaks the
    /// connection: the answer may still arrive, so the stream is read on (the late answer is
    /// dropped) but carries nothing new. A request any byte of which was sent fails as
    /// [`FailKind::Timeout`]; one still wholly unsent (stuck behind a connect) as
    /// [`FailKind::NotSent`], and then **the caller must drop the connection's unwritten bytes**,
    /// or "not sent" would become false.
    pub fn expire(&mut self, now: Instant, done: &mut Vec<(RequestId, Outcome)>) {
        for f in self.queue.iter_mut() {
            if f.deadline <= now {
                if let Some(id) = f.id.take() {
                    let kind = if self.sent > f.start {
                        FailKind::Timeout
                    } else {
                        FailKind::NotSent
                    };
                    done.push((id, Outcome::Failed(kind)));
                    self.live -= 1;
                    self.broken = true;
                }
            }
        }
        self.check();
    }

    /// The peer closed the connection (a read of 0 bytes). A response running until close is
    /// complete now; every other waiting request fails as Unknown (sent) or NotSent.
    pub fn on_closed(&mut self, done: &mut Vec<(RequestId, Outcome)>) {
        if let Some(u) = self.until_close.take() {
            let request = self.front_request();
            let outcome = outcome(request, u.status, &self.pending[u.body_start..]);
            self.complete_front(outcome, done);
        }
        self.fail_rest(done);
    }

    /// The connection failed (connect refused, reset, write error): every waiting request fails
    /// as Unknown (sent) or NotSent, a response running until close included (it is truncated).
    pub fn on_error(&mut self, done: &mut Vec<(RequestId, Outcome)>) {
        self.until_close = None;
        self.fail_rest(done);
    }

    /// What the oldest request in flight asked (the one the next response answers).
    fn front_request(&self) -> Request {
        self.queue
            .front()
            .expect("a response is read only while a request is in flight")
            .request
    }

    /// The most bytes one response may occupy in `pending`.
    fn response_bytes_max(&self) -> usize {
        let limits = &self.config.limits;
        let body = usize::try_from(limits.body_bytes_max).unwrap_or(usize::MAX / 4);
        limits.head_bytes_max + 2 * body + CHUNK_FRAMING_BYTES_MAX
    }

    /// Completes every whole response at the front of `buf`; returns the bytes consumed.
    fn process(&mut self, buf: &[u8], done: &mut Vec<(RequestId, Outcome)>) -> usize {
        let mut start = 0;
        while start < buf.len() {
            if self.queue.is_empty() {
                // A response nobody asked for: the stream cannot be trusted any more.
                self.broken = true;
                return buf.len();
            }
            let rest = &buf[start..];
            let mut storage = [EMPTY_HEADER; RESPONSE_HEADERS_CAPACITY];
            let head = match parse_response(rest, &mut storage, &self.config.limits) {
                Ok(Status::Complete(head)) => head,
                Ok(Status::Partial) => return start,
                Err(_) => return self.malformed(buf, done),
            };
            let (status, keep_alive, head_len) = (head.status, head.keep_alive, head.head_len);
            let request = self.front_request();
            if (100..200).contains(&status) {
                // An interim response (we never send Expect, but RFC 9110 §15.2 lets a server send
                // one anyway): skip it. 101 would switch protocols, which we never asked for.
                if status == 101 {
                    return self.malformed(buf, done);
                }
                start += head_len;
                continue;
            }
            let (outcome, consumed) = match head.body {
                BodyFraming::None => (outcome(request, status, b""), head_len),
                BodyFraming::Length(n) => {
                    if n > self.config.limits.body_bytes_max {
                        return self.malformed(buf, done);
                    }
                    let end = head_len + n as usize; // n <= body_bytes_max, checked above
                    if rest.len() < end {
                        return start;
                    }
                    (outcome(request, status, &rest[head_len..end]), end)
                }
                BodyFraming::Chunked => {
                    self.body.clear();
                    let mut decoder = ChunkedDecoder::new(&self.config.limits);
                    match decoder.decode(&rest[head_len..], &mut self.body) {
                        Err(_) => return self.malformed(buf, done),
                        Ok(d) if !d.done => {
                            if rest.len() > self.response_bytes_max() {
                                return self.malformed(buf, done);
                            }
                            return start;
                        }
                        Ok(d) => (outcome(request, status, &self.body), head_len + d.consumed),
                    }
                }
                BodyFraming::UntilClose => {
                    // The body is everything until the peer closes: keep it, answer on close.
                    self.until_close = Some(UntilClose {
                        status,
                        body_start: head_len,
                    });
                    self.broken = true;
                    return start;
                }
            };
            self.complete_front(outcome, done);
            start += consumed;
            if !keep_alive {
                // `Connection: close`: nothing behind this response will be answered.
                self.fail_rest(done);
                return buf.len();
            }
        }
        start
    }

    /// The stream is unreadable: the front request fails as Malformed, the rest as Unknown or
    /// NotSent. Returns `buf.len()`: every byte is consumed (dropped).
    fn malformed(&mut self, buf: &[u8], done: &mut Vec<(RequestId, Outcome)>) -> usize {
        self.fail_all(FailKind::Malformed, done);
        buf.len()
    }

    /// The front request fails with `kind`, every other one as Unknown or NotSent.
    fn fail_all(&mut self, kind: FailKind, done: &mut Vec<(RequestId, Outcome)>) {
        self.until_close = None;
        self.complete_front(Outcome::Failed(kind), done);
        self.fail_rest(done);
    }

    /// Pops the front request and reports `outcome` for it, unless it expired.
    fn complete_front(&mut self, outcome: Outcome, done: &mut Vec<(RequestId, Outcome)>) {
        let front = self.queue.pop_front();
        assert!(
            front.is_some(),
            "a response completed with nothing in flight"
        );
        if let Some(InFlight { id: Some(id), .. }) = front {
            self.live -= 1;
            done.push((id, outcome));
        }
        self.check();
    }

    /// Fails every queued request: Unknown when any of its bytes was sent, NotSent otherwise.
    /// The connection is finished.
    fn fail_rest(&mut self, done: &mut Vec<(RequestId, Outcome)>) {
        self.broken = true;
        self.pending.clear();
        for f in self.queue.drain(..) {
            if let Some(id) = f.id {
                let kind = if self.sent > f.start {
                    FailKind::Unknown
                } else {
                    FailKind::NotSent
                };
                done.push((id, Outcome::Failed(kind)));
            }
        }
        self.live = 0;
        self.check();
    }

    /// The pair invariant: `live` counts exactly the queued requests still waiting.
    fn check(&self) {
        debug_assert_eq!(
            self.live,
            self.queue.iter().filter(|f| f.id.is_some()).count()
        );
        assert!(self.sent <= self.written);
    }
}

/// Maps a final response to `request` to an outcome.
fn outcome(request: Request, status: u16, body: &[u8]) -> Outcome {
    if status != 200 {
        return Outcome::Failed(FailKind::Status(status));
    }
    let read = match request {
        Request::Reserve { .. } => reserve_reply(body).map(|(success, remaining)| {
            if success {
                Outcome::Reserved { remaining }
            } else {
                Outcome::Insufficient { remaining }
            }
        }),
        Request::Available => available_reply(body).map(|qty| Outcome::Available { qty }),
        // A 200 that says `"status": "healthy"`: a stray server answering 200 to anything is
        // not our vacancy service.
        Request::Health => health_reply(body).then_some(Outcome::Healthy),
    };
    read.unwrap_or(Outcome::Failed(FailKind::BadBody))
}

/// True when the body holds the member `"status": "healthy"` (with optional JSON whitespace), as
/// the vacancy service's health reply does, whatever else it holds.
fn health_reply(body: &[u8]) -> bool {
    let key = b"\"status\"";
    (0..body.len()).any(|at| {
        let mut s = Cursor::at(body, at);
        s.rest().starts_with(key)
            && s.token(key).is_some()
            && s.token(b":").is_some()
            && s.token(b"\"healthy\"").is_some()
    })
}

/// Reads `{"qty":N}` with optional JSON whitespace, the vacancy service's available reply.
fn available_reply(body: &[u8]) -> Option<u64> {
    let mut s = Cursor::new(body);
    s.token(b"{")?;
    s.token(b"\"qty\"")?;
    s.token(b":")?;
    let qty = s.integer()?;
    s.token(b"}")?;
    s.finish().then_some(qty)
}

/// Reads `{"success":bool,"remaining":N` and then `,...}` or `}`, with optional JSON whitespace
/// between tokens: the shape the vacancy service writes (routes.rs) and the contract documents.
/// The two members must come first and in this order; what follows them is only checked to end
/// the object. Anything else is `None`, which the caller treats as an unknown outcome.
fn reserve_reply(body: &[u8]) -> Option<(bool, u64)> {
    let mut s = Cursor::new(body);
    s.token(b"{")?;
    s.token(b"\"success\"")?;
    s.token(b":")?;
    let success = if s.token(b"true").is_some() {
        true
    } else {
        s.token(b"false")?;
        false
    };
    s.token(b",")?;
    s.token(b"\"remaining\"")?;
    s.token(b":")?;
    let remaining = s.integer()?;
    // The object ends here, or goes on with more members and ends with the body.
    let mut end = s;
    if end.token(b"}").is_some() && end.finish() {
        return Some((success, remaining));
    }
    s.token(b",")?;
    body.trim_ascii_end()
        .ends_with(b"}")
        .then_some((success, remaining))
}

/// What the caller does with a forwarded reserve, from [`Pool::pick`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Enqueue it on the connection at this index.
    Use(usize),
    /// Open a new connection ([`Pool::open`]) and enqueue it there.
    Open,
    /// Every connection is at its pipelining limit and the pool at `max_connections`: queue the
    /// purchase or answer 503.
    Full,
}

/// A shard's connections to the vacancy service. Indices are stable while a connection lives;
/// a closed one's index is reused by the next [`Pool::open`].
#[derive(Debug)]
pub struct Pool {
    /// Given to every connection.
    config: UpstreamConfig,
    /// Connections by index; `None` is a free slot.
    slots: Vec<Option<UpstreamConn>>,
    /// `Some` entries of `slots`.
    open: usize,
    /// At most this many connections (`HTTP_MAX_CONNECTIONS`).
    max_connections: usize,
    /// At most this many idle reusable connections stay open (`HTTP_KEEPALIVE_CONNECTIONS`).
    keepalive: usize,
}

impl Pool {
    /// An empty pool. The configuration already checks `keepalive <= max_connections`; it is
    /// asserted again here because the pool's arithmetic relies on it.
    pub fn new(config: UpstreamConfig, max_connections: usize, keepalive: usize) -> Self {
        assert!(max_connections > 0, "a pool needs at least one connection");
        assert!(
            keepalive <= max_connections,
            "keepalive above max_connections"
        );
        Pool {
            config,
            slots: Vec::with_capacity(max_connections),
            open: 0,
            max_connections,
            keepalive,
        }
    }

    /// Open connections, broken ones still draining included.
    pub fn open_count(&self) -> usize {
        self.open
    }

    /// Where the next request goes: the reusable connection with the fewest requests in flight
    /// below [`PIPELINE_DEPTH_MAX`] (the lowest index among equals), else a new connection while
    /// below `max_connections`, else [`Pick::Full`]. No clock is needed: deadlines are enforced by
    /// [`Pool::expire`], which breaks a late connection so it is no longer picked.
    pub fn pick(&self) -> Pick {
        let best = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.as_ref()?)))
            .filter(|(_, c)| c.can_reuse() && c.in_flight() < PIPELINE_DEPTH_MAX)
            .min_by_key(|(_, c)| c.in_flight());
        match best {
            Some((i, _)) => Pick::Use(i),
            None if self.open < self.max_connections => Pick::Open,
            None => Pick::Full,
        }
    }

    /// Adds a connection (the caller starts connecting it) and returns its index.
    pub fn open(&mut self) -> usize {
        assert!(self.open < self.max_connections, "pool is full");
        let conn = Some(UpstreamConn::new(self.config.clone()));
        self.open += 1;
        match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = conn;
                i
            }
            None => {
                self.slots.push(conn);
                self.slots.len() - 1
            }
        }
    }

    /// The connection at `index`, which must be open.
    pub fn conn(&mut self, index: usize) -> &mut UpstreamConn {
        self.slots[index]
            .as_mut()
            .expect("no upstream connection at this index")
    }

    /// The transport closed the connection at `index` (peer close, error, or trimmed): what was
    /// still in flight fails as by [`UpstreamConn::on_closed`], and the slot is freed. After an
    /// error, call [`UpstreamConn::on_error`] first, so a truncated body is not read as whole.
    pub fn closed(&mut self, index: usize, done: &mut Vec<(RequestId, Outcome)>) {
        let mut conn = self.slots[index]
            .take()
            .expect("no upstream connection at this index");
        conn.on_closed(done);
        self.open -= 1;
    }

    /// Expires late requests on every connection (see [`UpstreamConn::expire`]).
    pub fn expire(&mut self, now: Instant, done: &mut Vec<(RequestId, Outcome)>) {
        for conn in self.slots.iter_mut().flatten() {
            conn.expire(now, done);
        }
    }

    /// The earliest deadline over all connections, for the shard's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .flatten()
            .filter_map(UpstreamConn::next_deadline)
            .min()
    }

    /// Connections the caller should close now: broken ones with nothing in flight, and idle
    /// reusable ones beyond the first `keepalive` (by index, so the survivors are stable).
    pub fn idle_excess(&self) -> impl Iterator<Item = usize> + '_ {
        let mut kept = 0;
        self.slots.iter().enumerate().filter_map(move |(i, s)| {
            let conn = s.as_ref()?;
            if conn.in_flight() > 0 {
                return None;
            }
            if conn.is_broken() {
                return Some(i);
            }
            if kept < self.keepalive {
                kept += 1;
                return None;
            }
            Some(i)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Done = Vec<(RequestId, Outcome)>;

    const RESERVED_5: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 63\r\n\r\n\
          {\"success\":true,\"remaining\":5,\"message\":\"Purchase successful!\"}";
    const INSUFFICIENT_0: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 77\r\n\r\n\
          {\"success\": false, \"remaining\": 0, \"message\": \"Not enough tickets available\"}";
    const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}";
    const CHUNKED_RESERVED_7: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          b\r\n{\"success\":\r\n13;ext=1\r\ntrue,\"remaining\":7}\r\n0\r\nX-Trailer: 1\r\n\r\n";

    fn config() -> UpstreamConfig {
        UpstreamConfig::new("127.0.0.1", 8001, Duration::from_secs(2), Limits::default())
    }

    /// A connection with `ids` enqueued at `now`, all reported sent.
    fn conn_with(ids: &[RequestId], now: Instant) -> UpstreamConn {
        let mut conn = UpstreamConn::new(config());
        let mut out = Vec::new();
        for &id in ids {
            conn.enqueue(id, Request::Reserve { qty: 2 }, now, &mut out);
        }
        conn.on_sent(out.len());
        conn
    }

    #[test]
    fn request_bytes() {
        let mut conn = UpstreamConn::new(UpstreamConfig::new(
            "::1",
            8001,
            Duration::from_secs(2),
            Limits::default(),
        ));
        let mut out = b"x".to_vec();
        conn.enqueue(1, Request::Reserve { qty: 12 }, Instant::now(), &mut out);
        assert_eq!(
            out,
            b"xPOST /api/v1/reserve HTTP/1.1\r\nHost: [::1]:8001\r\n\
              Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"qty\":12}"
                .to_vec()
        );
        conn.enqueue(
            2,
            Request::Reserve { qty: u64::MAX },
            Instant::now(),
            &mut out,
        );
        assert!(out.ends_with(b"{\"qty\":18446744073709551615}"));
        assert_eq!(conn.in_flight(), 2);
    }

    /// Pipelined responses map to their ids in order, however the bytes are split.
    #[test]
    fn pipelined_in_order_at_every_split() {
        let now = Instant::now();
        let table: &[(&[&[u8]], &[Outcome])] = &[
            (
                &[RESERVED_5, INSUFFICIENT_0, UNAVAILABLE],
                &[
                    Outcome::Reserved { remaining: 5 },
                    Outcome::Insufficient { remaining: 0 },
                    Outcome::Failed(FailKind::Status(503)),
                ],
            ),
            (
                &[CHUNKED_RESERVED_7, RESERVED_5],
                &[
                    Outcome::Reserved { remaining: 7 },
                    Outcome::Reserved { remaining: 5 },
                ],
            ),
            (
                &[b"HTTP/1.1 100 Continue\r\n\r\n", RESERVED_5],
                &[Outcome::Reserved { remaining: 5 }],
            ),
        ];
        for &(responses, want) in table {
            let wire: Vec<u8> = responses.concat();
            let ids: Vec<RequestId> = (0..want.len() as u64).map(|i| 100 + i).collect();
            let want: Done = ids.iter().copied().zip(want.iter().copied()).collect();
            let check = |pieces: &[&[u8]]| {
                let mut conn = conn_with(&ids, now);
                let mut done = Vec::new();
                for piece in pieces {
                    conn.on_input(piece, &mut done);
                }
                assert_eq!(done, want, "{}", String::from_utf8_lossy(&wire));
                assert_eq!(conn.in_flight(), 0);
                assert!(conn.can_reuse());
                assert!(conn.pending.is_empty());
            };
            for cut in 0..=wire.len() {
                check(&[&wire[..cut], &wire[cut..]]);
            }
            let bytes: Vec<&[u8]> = wire.chunks(1).collect();
            check(&bytes);
        }
    }

    /// Nothing completes before a response's last byte.
    #[test]
    fn partial_until_last_byte() {
        for response in [RESERVED_5, CHUNKED_RESERVED_7, UNAVAILABLE] {
            let mut conn = conn_with(&[1], Instant::now());
            let mut done = Vec::new();
            for (i, b) in response.iter().enumerate() {
                conn.on_input(&[*b], &mut done);
                assert_eq!(done.len(), usize::from(i + 1 == response.len()));
            }
        }
    }

    /// Responses we cannot read fail the front request; framing errors break the connection and
    /// fail the rest as Unknown (sent).
    #[test]
    fn malformed_and_unexpected() {
        use FailKind::*;
        let table: &[(&[u8], FailKind, bool)] = &[
            (b"HTTP/1.1 2000 OK\r\n\r\n", Malformed, true),
            (b"garbage\r\n\r\n", Malformed, true),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Malformed, true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", Malformed, true),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Malformed, true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n", Malformed, true),
            // Well framed but not our JSON: the stream is fine, the outcome unknown.
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", BadBody, false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", BadBody, false),
            (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", Status(404), false),
            // `Connection: close`: answered, then nothing behind it will be.
            (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", Status(503), true),
        ];
        for &(response, kind, broken) in table {
            let mut conn = conn_with(&[1, 2], Instant::now());
            let mut done = Vec::new();
            conn.on_input(response, &mut done);
            let text = String::from_utf8_lossy(response);
            assert_eq!(done[0], (1, Outcome::Failed(kind)), "{text}");
            assert_eq!(conn.is_broken(), broken, "{text}");
            if broken {
                assert_eq!(done[1], (2, Outcome::Failed(Unknown)), "{text}");
                assert_eq!(conn.in_flight(), 0);
            } else {
                assert_eq!(done.len(), 1);
                assert_eq!(conn.in_flight(), 1);
            }
        }
        // A response with nothing in flight breaks an idle connection.
        let mut conn = conn_with(&[], Instant::now());
        let mut done = Vec::new();
        conn.on_input(RESERVED_5, &mut done);
        assert!(done.is_empty() && conn.is_broken());
    }

    /// What a failure says about a reserve's tickets: only an unsent request, a full pool and a
    /// 3xx or 4xx answer are known to have sold nothing; every 5xx may have sold.
    #[test]
    fn which_failures_may_have_sold() {
        use FailKind::*;
        let table: &[(FailKind, bool, bool)] = &[
            // (kind, outcome unknown, retryable)
            (NotSent, false, true),
            (Busy, false, false),
            (Unknown, true, false),
            (Timeout, true, false),
            (Malformed, true, false),
            (BadBody, true, false),
            (Status(201), true, false),
            (Status(202), true, false),
            (Status(301), false, false),
            (Status(400), false, false),
            (Status(404), false, false),
            (Status(422), false, false),
            (Status(429), false, false),
            (Status(499), false, false),
            (Status(500), true, false),
            (Status(502), true, false),
            (Status(503), true, false),
            (Status(504), true, false),
            (Status(599), true, false),
        ];
        for &(kind, unknown, retryable) in table {
            assert_eq!(kind.outcome_unknown(), unknown, "{kind:?}");
            assert_eq!(kind.is_retryable(), retryable, "{kind:?}");
            // Nothing is both: a retry of a request that may have sold could sell twice.
            assert!(!(kind.outcome_unknown() && kind.is_retryable()), "{kind:?}");
        }
    }

    #[test]
    fn reply_bodies() {
        type Reply = Option<(bool, u64)>;
        let table: &[(&[u8], Reply)] = &[
            (b"{\"success\":true,\"remaining\":0}", Some((true, 0))),
            (
                b" { \"success\" : false , \"remaining\" : 12 , \"message\":\"x\" } \n",
                Some((false, 12)),
            ),
            (
                b"{\"success\":true,\"remaining\":18446744073709551615}",
                Some((true, u64::MAX)),
            ),
            (
                b"{\"success\":true,\"remaining\":18446744073709551616}",
                None,
            ),
            (b"{\"success\":true,\"remaining\":01}", None),
            (b"{\"success\":true,\"remaining\":1.0}", None),
            (b"{\"success\":true,\"remaining\":-1}", None),
            (b"{\"success\":1,\"remaining\":1}", None),
            (b"{\"remaining\":1,\"success\":true}", None),
            (b"{\"success\":true,\"remaining\":1", None),
            (b"{\"success\":true,\"remaining\":1,", None),
            (b"{\"success\":true,\"remaining\":1}x", None),
            (b"", None),
        ];
        for &(body, want) in table {
            assert_eq!(
                reserve_reply(body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Available and health requests: their bytes, and each answer read by what was asked, in a
    /// pipeline mixed with a reserve.
    #[test]
    fn available_and_health_requests() {
        let mut conn = UpstreamConn::new(config());
        let mut out = Vec::new();
        let now = Instant::now();
        conn.enqueue(1, Request::Available, now, &mut out);
        conn.enqueue(2, Request::Health, now, &mut out);
        conn.enqueue(3, Request::Reserve { qty: 1 }, now, &mut out);
        conn.enqueue(4, Request::Available, now, &mut out);
        assert!(out.starts_with(
            b"GET /api/v1/available HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\n\
              GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\nPOST "
        ));
        conn.on_sent(out.len());
        let mut done = Done::new();
        let input = [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"qty\":42}"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 21\r\n\r\n{\"status\": \"healthy\"}",
            RESERVED_5,
            // A reserve-shaped body is not an available answer.
            b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{\"success\":true,\"remaining\":1}",
        ]
        .concat();
        conn.on_input(&input, &mut done);
        assert_eq!(
            done,
            [
                (1, Outcome::Available { qty: 42 }),
                (2, Outcome::Healthy),
                (3, Outcome::Reserved { remaining: 5 }),
                (4, Outcome::Failed(FailKind::BadBody)),
            ]
        );
    }

    #[test]
    fn health_bodies() {
        let table: &[(&[u8], bool)] = &[
            (b"{\"status\":\"healthy\",\"service\":\"vacancy\"}", true),
            (b"{\"service\":\"vacancy\", \"status\" : \"healthy\"}", true),
            (b"{\"status\":\"unhealthy\"}", false),
            (b"{}", false),
            (b"hello", false),
            (b"", false),
        ];
        for &(body, want) in table {
            assert_eq!(
                health_reply(body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn available_bodies() {
        let table: &[(&[u8], Option<u64>)] = &[
            (b"{\"qty\":0}", Some(0)),
            (b" { \"qty\" : 17 } \n", Some(17)),
            (b"{\"qty\":18446744073709551615}", Some(u64::MAX)),
            (b"{\"qty\":18446744073709551616}", None),
            (b"{\"qty\":-1}", None),
            (b"{\"qty\":1.5}", None),
            (b"{\"qty\":1,\"x\":2}", None),
            (b"{\"qty\":1}}", None),
            (b"", None),
        ];
        for &(body, want) in table {
            assert_eq!(
                available_reply(body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// On close or error, requests any byte of which was written are Unknown (they may have sold);
    /// requests whose bytes never left are NotSent (safe to retry elsewhere).
    #[test]
    fn close_tells_sent_from_unsent() {
        use FailKind::*;
        let now = Instant::now();
        let mut out = Vec::new();
        let mut probe = UpstreamConn::new(config());
        probe.enqueue(0, Request::Reserve { qty: 2 }, now, &mut out);
        let one = out.len();
        // (bytes reported sent, outcomes of ids 1, 2, 3)
        let table: &[(usize, [FailKind; 3])] = &[
            (0, [NotSent, NotSent, NotSent]),
            (1, [Unknown, NotSent, NotSent]),
            (one, [Unknown, NotSent, NotSent]),
            (one + 1, [Unknown, Unknown, NotSent]),
            (2 * one, [Unknown, Unknown, NotSent]),
            (3 * one, [Unknown, Unknown, Unknown]),
        ];
        for &(sent, kinds) in table {
            for error in [false, true] {
                let mut conn = UpstreamConn::new(config());
                let mut out = Vec::new();
                for id in 1..=3 {
                    conn.enqueue(id, Request::Reserve { qty: 2 }, now, &mut out);
                }
                conn.on_sent(sent);
                let mut done = Vec::new();
                if error {
                    conn.on_error(&mut done);
                } else {
                    conn.on_closed(&mut done);
                }
                let want: Done = (1..=3).zip(kinds.map(Outcome::Failed)).collect();
                assert_eq!(done, want, "sent {sent}");
                assert!(conn.is_broken() && conn.in_flight() == 0);
                assert_eq!(
                    done.iter()
                        .filter(|(_, o)| *o == Outcome::Failed(NotSent))
                        .count(),
                    kinds.iter().filter(|k| k.is_retryable()).count()
                );
            }
        }
    }

    /// A response without framing runs until close: complete on close, truncated on error.
    #[test]
    fn until_close() {
        let response: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n{\"success\":true,\"remaining\":3}";
        let mut conn = conn_with(&[1, 2], Instant::now());
        let mut done = Vec::new();
        conn.on_input(&response[..25], &mut done);
        conn.on_input(&response[25..], &mut done);
        assert!(done.is_empty() && conn.is_broken());
        conn.on_closed(&mut done);
        assert_eq!(
            done,
            vec![
                (1, Outcome::Reserved { remaining: 3 }),
                (2, Outcome::Failed(FailKind::Unknown))
            ]
        );
        let mut conn = conn_with(&[1], Instant::now());
        let mut done = Vec::new();
        conn.on_input(response, &mut done);
        conn.on_error(&mut done);
        assert_eq!(done, vec![(1, Outcome::Failed(FailKind::Unknown))]);
    }

    /// Deadlines fire at `now >= deadline`, not before; they break the connection, and the late
    /// answer is read and dropped while the request behind it still completes.
    #[test]
    fn deadlines() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(2);
        let mut conn = UpstreamConn::new(config());
        let mut out = Vec::new();
        conn.enqueue(1, Request::Reserve { qty: 2 }, t0, &mut out);
        conn.enqueue(
            2,
            Request::Reserve { qty: 2 },
            t0 + Duration::from_secs(1),
            &mut out,
        );
        conn.on_sent(out.len());
        assert_eq!(conn.next_deadline(), Some(t0 + timeout));
        let mut done = Vec::new();
        conn.expire(t0 + timeout - Duration::from_nanos(1), &mut done);
        assert!(done.is_empty() && conn.can_reuse());
        conn.expire(t0 + timeout, &mut done);
        assert_eq!(done, vec![(1, Outcome::Failed(FailKind::Timeout))]);
        assert!(conn.is_broken() && !conn.can_reuse());
        assert_eq!(conn.in_flight(), 1);
        assert_eq!(conn.next_deadline(), Some(t0 + Duration::from_secs(3)));
        done.clear();
        conn.on_input(&[RESERVED_5, INSUFFICIENT_0].concat(), &mut done);
        assert_eq!(done, vec![(2, Outcome::Insufficient { remaining: 0 })]);
        assert_eq!(conn.in_flight(), 0);
        // Expiring twice reports nothing twice.
        conn.expire(t0 + Duration::from_secs(60), &mut done);
        assert_eq!(done.len(), 1);
    }

    /// Enqueueing on a broken connection is a programmer error, caught by an assertion that
    /// names it.
    #[test]
    fn enqueue_on_broken_is_refused_by_an_assertion() {
        let mut conn = conn_with(&[1], Instant::now());
        conn.on_closed(&mut Vec::new());
        assert!(conn.is_broken());
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            conn.enqueue(
                2,
                Request::Reserve { qty: 1 },
                Instant::now(),
                &mut Vec::new(),
            );
        }))
        .expect_err("enqueue on a broken connection must not pass");
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(message.contains("broken"), "{message}");
    }

    #[test]
    fn pool_spreads_opens_fills_and_trims() {
        let now = Instant::now();
        let mut pool = Pool::new(config(), 3, 1);
        let mut out = Vec::new();
        let mut done = Vec::new();
        assert_eq!(pool.pick(), Pick::Open);
        assert_eq!(pool.open(), 0);
        // One connection takes requests up to the pipelining limit, then another opens.
        for id in 0..PIPELINE_DEPTH_MAX as u64 {
            assert_eq!(pool.pick(), Pick::Use(0));
            pool.conn(0)
                .enqueue(id, Request::Reserve { qty: 1 }, now, &mut out);
        }
        assert_eq!(pool.pick(), Pick::Open);
        assert_eq!(pool.open(), 1);
        assert_eq!(pool.open(), 2);
        // Load spreads to the least loaded, lowest index first.
        let mut picks = Vec::new();
        for id in 100..104 {
            let Pick::Use(i) = pool.pick() else { panic!() };
            pool.conn(i)
                .enqueue(id, Request::Reserve { qty: 1 }, now, &mut out);
            picks.push(i);
        }
        assert_eq!(picks, [1, 2, 1, 2]);
        // Fill everything: Full at max.
        while let Pick::Use(i) = pool.pick() {
            pool.conn(i)
                .enqueue(0, Request::Reserve { qty: 1 }, now, &mut out);
        }
        assert_eq!(pool.pick(), Pick::Full);
        assert_eq!(pool.open_count(), 3);
        // Connection 1 answers everything; 2 and 0 close. Only 1 is idle: kept (keepalive 1).
        let answers = RESERVED_5.repeat(PIPELINE_DEPTH_MAX);
        pool.conn(1).on_sent(0);
        pool.conn(1).on_input(&answers, &mut done);
        assert_eq!(done.len(), PIPELINE_DEPTH_MAX);
        assert_eq!(pool.pick(), Pick::Use(1));
        assert_eq!(pool.idle_excess().count(), 0);
        done.clear();
        pool.closed(2, &mut done);
        assert_eq!(done.len(), PIPELINE_DEPTH_MAX);
        assert!(done
            .iter()
            .all(|(_, o)| *o == Outcome::Failed(FailKind::NotSent)));
        // A freed slot is reused; two idle connections exceed keepalive 1: the later is trimmed.
        assert_eq!(pool.open(), 2);
        assert_eq!(pool.idle_excess().collect::<Vec<_>>(), [2]);
        // A broken idle connection is always excess, and never picked.
        done.clear();
        pool.conn(0).on_error(&mut done);
        assert_eq!(pool.idle_excess().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(pool.pick(), Pick::Use(1));
        for i in [0, 2] {
            pool.closed(i, &mut done);
        }
        assert_eq!(pool.open_count(), 1);
        assert_eq!(pool.pick(), Pick::Use(1));
    }

    /// Expiry through the pool breaks the late connection, so the next pick avoids it.
    #[test]
    fn pool_expire_avoids_late_connection() {
        let t0 = Instant::now();
        let mut pool = Pool::new(config(), 2, 2);
        let mut out = Vec::new();
        let mut done = Vec::new();
        let a = pool.open();
        pool.conn(a)
            .enqueue(1, Request::Reserve { qty: 1 }, t0, &mut out);
        assert_eq!(pool.next_deadline(), Some(t0 + Duration::from_secs(2)));
        pool.expire(t0 + Duration::from_secs(2), &mut done);
        // No byte was reported written (stuck behind its connect): not sent, the caller drops
        // the bytes.
        assert_eq!(done, vec![(1, Outcome::Failed(FailKind::NotSent))]);
        assert_eq!(pool.pick(), Pick::Open);
        assert_eq!(pool.idle_excess().collect::<Vec<_>>(), [a]);
    }
}

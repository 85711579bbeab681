//! One client connection as a sans-IO state machine: received bytes in, responses appended to an
//! output buffer, and what the transport should do next. It knows nothing of sockets or executors,
//! so every framing rule is testable with plain byte slices.
//!
//! Requests that arrive whole are parsed straight out of the transport's receive buffer; only an
//! incomplete request is copied into the connection's own `pending` buffer. All responses produced
//! by one input are appended to one output buffer, so pipelined requests cost one write.

use std::net::IpAddr;

use proto_http::{
    parse_request, BodyFraming, ChunkedDecoder, Error, HttpDate, Limits, Method, Status, Version,
    EMPTY_HEADER,
};

use crate::app::admin::Admin;
use crate::app::cors::Grant;
use crate::app::routes::{error, Answer, App, Deferred, Exchange, Reply};
use crate::stock::rebalance::OrderId;

/// Header storage on the stack of each parse. The configured `headers_max` is clamped to it.
pub const HEADERS_CAPACITY: usize = 128;

/// `100 Continue`, sent when a client waits for it before sending a body (RFC 9110 §10.1.1).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Framing bytes allowed around a chunked body on top of its data: a chunked body of `n` data bytes
/// may arrive as many small chunks, each with a size line and CRLF. A request whose bytes exceed
/// `head + 2 × body + this` is refused with 413 rather than buffered.
const CHUNK_FRAMING_BYTES_MAX: usize = 4 * 1024;

/// Input kept while an order waits for the coordinator (a few milliseconds at most). A client that
/// pipelines more than this behind one waiting order is closed rather than buffered.
const WAITING_PENDING_BYTES_MAX: usize = 64 * 1024;

/// Above this capacity the pending buffer is freed once it empties, so an idle connection that
/// once received a large request goes back to costing nothing.
const PENDING_KEEP_BYTES: usize = 4 * 1024;

/// Limits of one connection, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// The parser's bounds.
    pub http: Limits,
    /// Header lines per request (at most [`HEADERS_CAPACITY`]).
    pub headers_max: usize,
}

impl ConnLimits {
    /// The largest number of bytes one request may occupy in `pending`.
    fn request_bytes_max(&self) -> usize {
        let body = usize::try_from(self.http.body_bytes_max).unwrap_or(usize::MAX / 4);
        self.http.head_bytes_max + 2 * body + CHUNK_FRAMING_BYTES_MAX
    }
}

/// What the transport does after feeding input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Write the output (if any) and keep reading.
    Read,
    /// Write the output, then close the connection.
    Close,
    /// Write the output; a request waits for the coordinator or the vacancy service. When its
    /// answer comes, call [`Connection::resume`]. Input that arrives meanwhile is kept, not
    /// answered.
    Wait(OrderId),
}

/// The state kept between two inputs.
#[derive(Debug, Default)]
pub struct Connection {
    /// Received bytes not yet answered: the start of an incomplete request.
    pending: Vec<u8>,
    /// `pending` must reach this length before parsing again (a Content-Length body in flight).
    need: usize,
    /// How much of `pending` was already searched for the end of a head without finding it.
    head_searched: usize,
    /// A `100 Continue` was sent for the request at the front of `pending`.
    continue_sent: bool,
    /// Reused buffer for a decoded chunked body.
    chunked_body: Vec<u8>,
    /// An order waiting for the coordinator: its response comes before anything after it.
    deferred: Option<Deferred>,
    /// The client's address, when the transport looked it up (only with a rate limit on).
    peer: Option<IpAddr>,
    /// A connection of the admin listener: its requests go to the admin routes, never to the
    /// public ones (and the public listener's never to these).
    admin: Option<&'static Admin>,
}

impl Connection {
    /// A new connection from `peer` (`None`: not looked up).
    pub fn new(peer: Option<IpAddr>) -> Connection {
        Connection {
            peer: peer.map(|ip| ip.to_canonical()),
            ..Connection::default()
        }
    }

    /// A connection of the admin listener (`app/admin.rs`).
    pub fn admin(admin: &'static Admin) -> Connection {
        Connection {
            admin: Some(admin),
            ..Connection::default()
        }
    }

    /// True when no request is in progress: the idle timeout applies, not the head deadline.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.deferred.is_none()
    }

    /// The order this connection waits for, if any.
    pub fn waiting_for(&self) -> Option<OrderId> {
        self.deferred.map(|d| d.order)
    }

    /// Bytes this connection holds beyond its fixed size, for the memory accounting.
    pub fn buffered_capacity(&self) -> usize {
        self.pending.capacity() + self.chunked_body.capacity()
    }

    /// Feeds received bytes; appends every response they complete to `out`.
    /// `draining` asks that responses close the connection (shutdown in progress).
    pub fn on_input(
        &mut self,
        input: &[u8],
        app: &mut App,
        limits: &ConnLimits,
        date: &HttpDate,
        draining: bool,
        out: &mut Vec<u8>,
    ) -> Next {
        if self.deferred.is_some() {
            // Requests behind a waiting order wait too, so responses keep their order.
            self.pending.extend_from_slice(input);
            if self.pending.len() > WAITING_PENDING_BYTES_MAX {
                return Next::Close;
            }
            return Next::Read;
        }
        if self.pending.is_empty() {
            let (consumed, next) = self.process(input, app, limits, date, draining, out);
            if next != Next::Close && consumed < input.len() {
                self.pending.extend_from_slice(&input[consumed..]);
            }
            return next;
        }
        self.pending.extend_from_slice(input);
        if !self.worth_parsing(limits) {
            return Next::Read;
        }
        self.process_pending(app, limits, date, draining, out)
    }

    /// Writes the response of the request this connection waited for, then answers what arrived
    /// behind it.
    pub fn resume(
        &mut self,
        answer: Answer,
        app: &mut App,
        limits: &ConnLimits,
        date: &HttpDate,
        draining: bool,
        out: &mut Vec<u8>,
    ) -> Next {
        let Some(mut d) = self.deferred.take() else {
            return Next::Read;
        };
        d.keep_alive &= !draining;
        app.finish_order(&d, answer, date, out);
        if !d.keep_alive {
            return Next::Close;
        }
        if self.pending.is_empty() {
            return Next::Read;
        }
        self.head_searched = 0;
        self.need = 0;
        self.process_pending(app, limits, date, draining, out)
    }

    fn process_pending(
        &mut self,
        app: &mut App,
        limits: &ConnLimits,
        date: &HttpDate,
        draining: bool,
        out: &mut Vec<u8>,
    ) -> Next {
        let pending = std::mem::take(&mut self.pending);
        let (consumed, next) = self.process(&pending, app, limits, date, draining, out);
        self.pending = pending;
        self.pending.drain(..consumed);
        if self.pending.is_empty() && self.pending.capacity() > PENDING_KEEP_BYTES {
            self.pending = Vec::new();
        }
        next
    }

    /// Skips re-parsing when the new bytes cannot have completed anything: a Content-Length body
    /// still short, or no line end among the new bytes of a head under the limit. Parsing at every
    /// line end (not only at the blank line) reports a malformed line as soon as it is complete.
    fn worth_parsing(&mut self, limits: &ConnLimits) -> bool {
        if self.need > 0 {
            return self.pending.len() >= self.need;
        }
        let searched = self.head_searched.min(self.pending.len());
        self.head_searched = self.pending.len();
        self.pending.len() >= limits.http.head_bytes_max
            || self.pending[searched..].contains(&b'\n')
    }

    /// Answers every complete request at the front of `buf`; returns the bytes consumed.
    fn process(
        &mut self,
        buf: &[u8],
        app: &mut App,
        limits: &ConnLimits,
        date: &HttpDate,
        draining: bool,
        out: &mut Vec<u8>,
    ) -> (usize, Next) {
        let mut start = 0;
        self.need = 0;
        while start < buf.len() {
            let rest = &buf[start..];
            let mut storage = [EMPTY_HEADER; HEADERS_CAPACITY];
            let headers = &mut storage[..limits.headers_max.min(HEADERS_CAPACITY)];
            let head = match parse_request(rest, headers, &limits.http) {
                Ok(Status::Complete(head)) => head,
                Ok(Status::Partial) => {
                    self.head_searched = rest.len();
                    return (start, Next::Read);
                }
                Err(e) => return (buf.len(), reject(e, app, date, out)),
            };
            let body_start = head.head_len;
            let (body, consumed): (&[u8], usize) = match head.body {
                BodyFraming::None | BodyFraming::UntilClose => (&[], body_start),
                BodyFraming::Length(n) => {
                    let end = body_start + n as usize; // n <= body_bytes_max, checked by the parser
                    if rest.len() < end {
                        self.need = end;
                        self.head_searched = rest.len();
                        self.send_continue(head.expect_continue, rest.len() == body_start, out);
                        return (start, Next::Read);
                    }
                    (&rest[body_start..end], end)
                }
                BodyFraming::Chunked => {
                    self.chunked_body.clear();
                    let mut decoder = ChunkedDecoder::new(&limits.http);
                    match decoder.decode(&rest[body_start..], &mut self.chunked_body) {
                        Err(e) => return (buf.len(), reject(e, app, date, out)),
                        Ok(d) if !d.done => {
                            if rest.len() > limits.request_bytes_max() {
                                return (buf.len(), reject(Error::BodyTooLarge, app, date, out));
                            }
                            self.head_searched = rest.len();
                            self.send_continue(head.expect_continue, rest.len() == body_start, out);
                            return (start, Next::Read);
                        }
                        Ok(d) => (&self.chunked_body[..], body_start + d.consumed),
                    }
                }
            };
            let keep_alive = head.keep_alive && !draining;
            let request_id = app.request_ids.pick(head.header(b"x-request-id"));
            let x = Exchange {
                version: head.version,
                keep_alive,
                head: head.method == Method::Head,
                date,
                cors: Grant::None,
                request_id: &request_id,
                client: self.peer,
            };
            let reply = match self.admin {
                Some(admin) => app.handle_admin(admin, &head, body, x, out),
                None => app.handle(&head, body, x, out),
            };
            self.continue_sent = false;
            start += consumed;
            if let Reply::Deferred(d) = reply {
                self.deferred = Some(d);
                return (start, Next::Wait(d.order));
            }
            if !keep_alive {
                return (buf.len(), Next::Close);
            }
        }
        (start, Next::Read)
    }

    /// Sends `100 Continue` once per request, when the client asked and no body byte has come yet.
    fn send_continue(&mut self, expected: bool, no_body_yet: bool, out: &mut Vec<u8>) {
        if expected && no_body_yet && !self.continue_sent {
            out.extend_from_slice(CONTINUE);
            self.continue_sent = true;
        }
    }
}

/// Answers a framing error with its mapped status and the JSON error body, and closes: after a
/// framing error the position of the next request is unknown (RFC 9112 §9.3).
fn reject(e: Error, app: &mut App, date: &HttpDate, out: &mut Vec<u8>) -> Next {
    app.counters.http_error(e);
    app.counters.requests += 1;
    // The head did not parse, so a client id in it cannot be trusted: a fresh one names this
    // answer.
    let request_id = app.request_ids.next_id();
    tracing::debug!(error = e.as_str(), %request_id, "request rejected");
    let x = Exchange {
        version: Version::Http11,
        keep_alive: false,
        head: false,
        date,
        cors: Grant::None,
        request_id: &request_id,
        client: None,
    };
    error(out, x, e.status(), e.as_str(), e.detail(), None);
    Next::Close
}

#[cfg(test)]
mod tests {
    use proto_http::{HttpDate, Limits};

    use super::*;
    use crate::app::routes::{Answer, App};
    use crate::config::Mode;
    use crate::stock::rebalance::{Node, Outbox};
    use crate::stock::slice::Sale;

    /// Shard 0 of 2 with 10 tickets: it holds 5, so an order for 6 waits for the coordinator.
    fn app() -> App {
        App {
            mode: Mode::Monolith,
            shard: 0,
            shards: 2,
            node: Node::new(0, 2, 10),
            outbox: Outbox::default(),
            max_order_qty: 1_000,
            counters: Default::default(),
            forwarding: None,
            halted: false,
            docs: crate::app::routes::docs(Mode::Monolith, 1_000),
            cors: crate::app::cors::Cors::off(),
            board: crate::app::board::Board::leak(2),
            scraped: Vec::new(),
            request_ids: crate::request_id::Generator::new(0),
            rate_limit: None,
            keys: crate::app::idempotency::Keys::new(crate::app::idempotency::Settings::DEFAULT),
        }
    }

    fn limits() -> ConnLimits {
        ConnLimits {
            http: Limits::default(),
            headers_max: 32,
        }
    }

    fn purchase(qty: u64) -> String {
        let body = format!("{{\"qty\":{qty}}}");
        format!(
            "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    const GET: &str = "GET /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n";

    /// Feeds `input` in pieces split at `splits`; returns the output and the last `Next`.
    fn feed(
        conn: &mut Connection,
        app: &mut App,
        input: &[u8],
        splits: &[usize],
    ) -> (String, Next) {
        let date = HttpDate::now();
        let mut out = Vec::new();
        let mut next = Next::Read;
        let mut at = 0;
        for &split in splits.iter().chain(std::iter::once(&input.len())) {
            next = conn.on_input(&input[at..split], app, &limits(), &date, false, &mut out);
            at = split;
        }
        (String::from_utf8(out).expect("utf-8"), next)
    }

    fn statuses(out: &str) -> Vec<&str> {
        out.match_indices("HTTP/1.1 ")
            .map(|(i, _)| &out[i + 9..i + 12])
            .collect()
    }

    /// Two pipelined requests, split at every byte: nothing is answered before a request is
    /// whole, both are answered in order, and one input's answers come in one output.
    #[test]
    fn pipelined_requests_are_answered_in_order_at_every_split() {
        let input = format!("{GET}{}", purchase(2));
        for split in 0..=input.len() {
            let (mut conn, mut app) = (Connection::default(), app());
            let (out, next) = feed(&mut conn, &mut app, input.as_bytes(), &[split]);
            assert_eq!(next, Next::Read, "split {split}");
            assert_eq!(statuses(&out), ["200", "200"], "split {split}: {out}");
            assert!(out.find("\"qty\":10").unwrap() < out.find("\"success\":true").unwrap());
            assert!(conn.is_idle(), "split {split}");
            assert_eq!(app.node.slice().sold(), 2, "split {split}");
        }
    }

    /// A request cut short leaves the connection busy (the head deadline applies) and answers
    /// nothing.
    #[test]
    fn a_partial_request_answers_nothing() {
        let (mut conn, mut app) = (Connection::default(), app());
        let (out, next) = feed(&mut conn, &mut app, &GET.as_bytes()[..10], &[]);
        assert_eq!((out.as_str(), next), ("", Next::Read));
        assert!(!conn.is_idle());
    }

    /// A framing error answers its status with the JSON error body and closes: what follows it
    /// is never answered (its start is unknowable).
    #[test]
    fn a_framing_error_answers_and_closes() {
        let table: &[(&str, &str)] = &[
            (
                "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "400",
            ),
            ("GET / HTTP/2.0\r\nHost: t\r\n\r\n", "505"),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
        ];
        for &(bad, status) in table {
            let (mut conn, mut app) = (Connection::default(), app());
            let input = format!("{bad}{GET}");
            let (out, next) = feed(&mut conn, &mut app, input.as_bytes(), &[]);
            assert_eq!(next, Next::Close, "{bad:?}");
            assert_eq!(statuses(&out), [status], "{bad:?}: {out}");
            assert!(out.contains("\"code\":"), "{out}");
        }
    }

    /// An order that waits for the coordinator holds back what was pipelined behind it; its
    /// answer comes first on resume, then the rest, in order.
    #[test]
    fn a_waiting_order_holds_back_what_follows_it() {
        let (mut conn, mut app) = (Connection::default(), app());
        let input = format!("{}{GET}", purchase(6));
        let (out, next) = feed(&mut conn, &mut app, input.as_bytes(), &[]);
        let Next::Wait(order) = next else {
            panic!("the order waits: {next:?}");
        };
        assert_eq!(out, "", "nothing before the order's answer");
        assert_eq!(conn.waiting_for(), Some(order));
        // More input meanwhile is kept, not answered.
        let (out, next) = feed(&mut conn, &mut app, GET.as_bytes(), &[]);
        assert_eq!((out.as_str(), next), ("", Next::Read));
        let mut out = Vec::new();
        let date = HttpDate::now();
        let next = conn.resume(
            Answer::Decided(Sale::Sold),
            &mut app,
            &limits(),
            &date,
            false,
            &mut out,
        );
        let out = String::from_utf8(out).unwrap();
        assert_eq!(next, Next::Read);
        assert_eq!(statuses(&out), ["200", "200", "200"], "{out}");
        assert!(out.starts_with("HTTP/1.1 200") && out.contains("\"success\":true"));
        assert!(conn.is_idle());
    }

    /// `Connection: close` and a stop in progress both close after the response.
    #[test]
    fn close_is_honoured() {
        let (mut conn, mut app) = (Connection::default(), self::app());
        let input = "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        let (out, next) = feed(&mut conn, &mut app, input.as_bytes(), &[]);
        assert_eq!(next, Next::Close);
        assert!(
            out.contains("Connection: close") || out.contains("connection: close"),
            "{out}"
        );
        let (mut conn, mut shard) = (Connection::default(), self::app());
        let mut out = Vec::new();
        let date = HttpDate::now();
        let next = conn.on_input(GET.as_bytes(), &mut shard, &limits(), &date, true, &mut out);
        assert_eq!(next, Next::Close, "draining closes");
    }

    /// `Expect: 100-continue` is answered once, before the body, and the request after it.
    #[test]
    fn expect_continue_is_answered_before_the_body() {
        let (mut conn, mut app) = (Connection::default(), app());
        let head = "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\
                    Content-Length: 9\r\n\r\n";
        let (out, next) = feed(&mut conn, &mut app, head.as_bytes(), &[]);
        assert_eq!(
            (out.as_str(), next),
            ("HTTP/1.1 100 Continue\r\n\r\n", Next::Read)
        );
        let (out, _) = feed(&mut conn, &mut app, b"{\"qty\":1}", &[]);
        assert_eq!(statuses(&out), ["200"], "{out}");
    }
}

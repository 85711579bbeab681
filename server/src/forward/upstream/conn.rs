//! One keep-alive HTTP/1.1 connection to the vacancy service, as a state machine: requests are
//! appended to the caller's output buffer, responses are fed in and matched to their requests in
//! order (the invariants are in [`super`]).

use std::collections::VecDeque;
use std::time::Instant;

use proto_http::{
    parse_response, write_request, BodyFraming, ChunkedDecoder, Status, EMPTY_HEADER,
};

use super::reply::outcome;
use super::{FailKind, Outcome, Request, RequestId, UpstreamConfig, PIPELINE_DEPTH_MAX};

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
    /// A non-empty `request_id` goes along as `X-Request-Id` (the client request's).
    pub fn enqueue(
        &mut self,
        id: RequestId,
        request: Request,
        request_id: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        assert!(!self.broken, "enqueue on a broken upstream connection");
        let before = out.len();
        let mut key_text = [0u8; super::FORWARD_KEY_BYTES];
        let (qty, key) = match request {
            Request::Reserve { qty } => (qty, None),
            Request::KeyedReserve { qty, key } => (qty, Some(key.write(&mut key_text))),
            Request::Available | Request::Health => (0, None),
        };
        let mut headers: [(&[u8], &[u8]); 3] = [
            (b"Content-Type", b"application/json"),
            (crate::request_id::HEADER, request_id),
            (b"Idempotency-Key", b""),
        ];
        let mut count = 1;
        if !request_id.is_empty() {
            count += 1;
        }
        if let Some(key) = key {
            headers[count] = (b"Idempotency-Key", key);
            count += 1;
        }
        let with_id = usize::from(!request_id.is_empty());
        match request {
            Request::Reserve { .. } | Request::KeyedReserve { .. } => {
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
                    &headers[..count],
                    &body[..8 + digits.len()],
                );
            }
            Request::Available | Request::Health => {
                let target = if request == Request::Available {
                    AVAILABLE_TARGET
                } else {
                    HEALTH_TARGET
                };
                let id_header = &headers[1..1 + with_id];
                write_request(
                    out,
                    b"GET",
                    target,
                    &self.config.host_header,
                    id_header,
                    b"",
                );
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
            let replayed = head
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(b"idempotent-replayed") && h.value == b"true");
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
            let outcome = if replayed {
                outcome.replayed()
            } else {
                outcome
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proto_http::Limits;

    use super::*;
    use crate::forward::upstream::tests::{config, RESERVED_5};

    /// What a test's connections reported, in order.
    type Done = Vec<(RequestId, Outcome)>;

    const INSUFFICIENT_0: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 77\r\n\r\n\
          {\"success\": false, \"remaining\": 0, \"message\": \"Not enough tickets available\"}";
    const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}";
    const CHUNKED_RESERVED_7: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          b\r\n{\"success\":\r\n13;ext=1\r\ntrue,\"remaining\":7}\r\n0\r\nX-Trailer: 1\r\n\r\n";

    /// A connection with `ids` enqueued at `now`, all reported sent.
    fn conn_with(ids: &[RequestId], now: Instant) -> UpstreamConn {
        let mut conn = UpstreamConn::new(config());
        let mut out = Vec::new();
        for &id in ids {
            conn.enqueue(id, Request::Reserve { qty: 2 }, b"", now, &mut out);
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
        conn.enqueue(
            1,
            Request::Reserve { qty: 12 },
            b"",
            Instant::now(),
            &mut out,
        );
        assert_eq!(
            out,
            b"xPOST /api/v1/reserve HTTP/1.1\r\nHost: [::1]:8001\r\n\
              Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"qty\":12}"
                .to_vec()
        );
        conn.enqueue(
            2,
            Request::Reserve { qty: u64::MAX },
            b"",
            Instant::now(),
            &mut out,
        );
        assert!(out.ends_with(b"{\"qty\":18446744073709551615}"));
        assert_eq!(conn.in_flight(), 2);
        // The client request's id goes along on every kind of request.
        let mut out = Vec::new();
        conn.enqueue(
            3,
            Request::Reserve { qty: 1 },
            b"id-1",
            Instant::now(),
            &mut out,
        );
        conn.enqueue(4, Request::Available, b"id-2", Instant::now(), &mut out);
        assert_eq!(
            out,
            b"POST /api/v1/reserve HTTP/1.1\r\nHost: [::1]:8001\r\n\
              Content-Type: application/json\r\nX-Request-Id: id-1\r\nContent-Length: 9\r\n\r\n\
              {\"qty\":1}GET /api/v1/available HTTP/1.1\r\nHost: [::1]:8001\r\n\
              X-Request-Id: id-2\r\n\r\n"
                .to_vec()
        );
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

    /// Available and health requests: their bytes, and each answer read by what was asked, in a
    /// pipeline mixed with a reserve.
    #[test]
    fn available_and_health_requests() {
        let mut conn = UpstreamConn::new(config());
        let mut out = Vec::new();
        let now = Instant::now();
        conn.enqueue(1, Request::Available, b"", now, &mut out);
        conn.enqueue(2, Request::Health, b"", now, &mut out);
        conn.enqueue(3, Request::Reserve { qty: 1 }, b"", now, &mut out);
        conn.enqueue(4, Request::Available, b"", now, &mut out);
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

    /// On close or error, requests any byte of which was written are Unknown (they may have sold);
    /// requests whose bytes never left are NotSent (safe to retry elsewhere).
    #[test]
    fn close_tells_sent_from_unsent() {
        use FailKind::*;
        let now = Instant::now();
        let mut out = Vec::new();
        let mut probe = UpstreamConn::new(config());
        probe.enqueue(0, Request::Reserve { qty: 2 }, b"", now, &mut out);
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
                    conn.enqueue(id, Request::Reserve { qty: 2 }, b"", now, &mut out);
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
        conn.enqueue(1, Request::Reserve { qty: 2 }, b"", t0, &mut out);
        conn.enqueue(
            2,
            Request::Reserve { qty: 2 },
            b"",
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
                b"",
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
}

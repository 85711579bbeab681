//! One client connection: its socket, its read and write buffers, the queue of requests in flight,
//! and the response reader that turns bytes into [`Reply`]s with proto-http.
//!
//! Invariants: `inflight` holds exactly the requests written (or queued to write) whose responses
//! have not been read, oldest first, so the n-th response answers `inflight[n]` (HTTP/1.1
//! pipelining answers in order). The buffers never shrink and never grow past
//! [`RESPONSE_BYTES_MAX`], so a connection allocates only when it first meets a large response.
//! This module knows nothing of scenarios, schedules or statistics.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use proto_http::{parse_response, BodyFraming, ChunkedDecoder, Limits, Status, EMPTY_HEADER};

/// Initial read buffer: about a hundred of our ~150-byte responses, so one read takes a whole
/// pipelined batch, while 28,000 connections still fit in under 0.5 GiB.
pub const READ_BUF_BYTES: usize = 16 * 1024;
/// Largest response we read: proto-http's default head limit plus its default body limit. Our
/// servers' replies are under 300 bytes; anything near this is not a ticket API.
pub const RESPONSE_BYTES_MAX: usize = Limits::HEAD_BYTES_MAX + Limits::BODY_BYTES_MAX as usize;
/// Header fields per response: nginx sends 6, ticketd 4; 32 leaves room for a proxy's additions.
pub const HEADERS_MAX: usize = 32;

/// The parser limits for responses: proto-http's defaults.
const LIMITS: Limits = Limits {
    head_bytes_max: Limits::HEAD_BYTES_MAX,
    target_bytes_max: Limits::TARGET_BYTES_MAX,
    body_bytes_max: Limits::BODY_BYTES_MAX,
    chunk_ext_bytes_max: Limits::CHUNK_EXT_BYTES_MAX,
    trailer_bytes_max: Limits::TRAILER_BYTES_MAX,
};

/// A request written (or queued) whose response has not arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inflight {
    /// When it should have been sent: the schedule's time in open loop, the send time otherwise.
    /// Latency is measured from here.
    pub intended: Instant,
    /// When it was queued for writing; the timeout counts from here.
    pub sent: Instant,
}

/// One complete response and the request it answers.
#[derive(Debug)]
pub struct Reply<'b> {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked if it came chunked.
    pub body: &'b [u8],
    /// The request it answers.
    pub request: Inflight,
}

/// Where the connection's socket stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No socket; open one at `retry_at`.
    Down {
        /// When to (re)connect.
        retry_at: Instant,
    },
    /// A nonblocking connect is under way since `since`.
    Connecting {
        /// When the connect started; it times out after --timeout.
        since: Instant,
    },
    /// Connected; requests may be written.
    Open,
}

/// How a readable event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// Everything available was read; wait for the next event.
    Wait,
    /// The server ended the connection: end of stream, a reset, or `Connection: close` on the
    /// response just delivered. Requests still in flight are lost.
    Ended,
    /// A response did not parse (or answered no request); the connection is unusable.
    Malformed,
}

/// Where the reader stands inside a response body that is not length-delimited.
#[derive(Debug)]
enum Body {
    /// Between responses: the next bytes are a response head.
    Head,
    /// Inside a chunked body.
    Chunked {
        /// The response's status.
        status: u16,
        /// Whether the connection stays open after it.
        keep_alive: bool,
        /// The decoder, fed every byte after the head.
        decoder: ChunkedDecoder,
    },
    /// Inside a body that runs until the server closes the connection.
    UntilClose {
        /// The response's status.
        status: u16,
    },
}

/// One client connection.
#[derive(Debug)]
pub struct Connection {
    /// Index among all connections of the run (decides its stream and its schedule phase).
    pub id: usize,
    /// Which stream of the plan it sends.
    pub stream: usize,
    /// Socket state.
    pub state: State,
    /// The socket, while connecting or open.
    socket: Option<TcpStream>,
    /// Bytes read, `read_start..read_end` not yet parsed.
    read_buf: Vec<u8>,
    /// Start of the unparsed bytes.
    read_start: usize,
    /// End of the bytes read.
    read_end: usize,
    /// Requests queued for writing, `write_pos..` not yet written.
    write_buf: Vec<u8>,
    /// Bytes of `write_buf` already written.
    write_pos: usize,
    /// Requests in flight, oldest first.
    pub inflight: VecDeque<Inflight>,
    /// Body reader state.
    body: Body,
    /// De-chunked (or until-close) body of the response being read.
    body_buf: Vec<u8>,
    /// Open loop: when the next request is due.
    pub next_intended: Instant,
    /// Requests queued on the current socket (for --reconnect-after).
    pub requests_on_socket: u64,
}

impl Connection {
    /// A connection with no socket yet, to be opened at `start`.
    pub fn new(id: usize, stream: usize, pipeline: usize, start: Instant) -> Connection {
        Connection {
            id,
            stream,
            state: State::Down { retry_at: start },
            socket: None,
            read_buf: vec![0; READ_BUF_BYTES],
            read_start: 0,
            read_end: 0,
            write_buf: Vec::new(),
            write_pos: 0,
            inflight: VecDeque::with_capacity(pipeline),
            body: Body::Head,
            body_buf: Vec::new(),
            next_intended: start,
            requests_on_socket: 0,
        }
    }

    /// Starts a nonblocking connect, registered for both readiness kinds under `token`.
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        registry: &Registry,
        token: Token,
        now: Instant,
    ) -> io::Result<()> {
        debug_assert!(self.socket.is_none() && self.inflight.is_empty());
        let mut socket = TcpStream::connect(addr)?;
        registry.register(&mut socket, token, Interest::READABLE | Interest::WRITABLE)?;
        self.socket = Some(socket);
        self.state = State::Connecting { since: now };
        self.requests_on_socket = 0;
        Ok(())
    }

    /// After an event on a connecting socket: `Ok(true)` once connected, `Ok(false)` while
    /// still connecting, `Err` when the connect failed.
    pub fn finish_connect(&mut self) -> io::Result<bool> {
        let socket = self.socket.as_ref().expect("connecting without a socket");
        if let Some(e) = socket.take_error()? {
            return Err(e);
        }
        match socket.peer_addr() {
            Ok(_) => {
                // Requests are small and latency is what we measure: send each write now.
                socket.set_nodelay(true)?;
                self.state = State::Open;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Closes the socket and resets the buffers; requests in flight stay in `inflight` for the
    /// caller to account for. The connection reopens at `retry_at`.
    pub fn close(&mut self, registry: &Registry, retry_at: Instant) {
        if let Some(mut socket) = self.socket.take() {
            // Deregistering a socket about to close cannot fail in a way we could act on.
            let _ = registry.deregister(&mut socket);
        }
        self.state = State::Down { retry_at };
        self.read_start = 0;
        self.read_end = 0;
        self.write_buf.clear();
        self.write_pos = 0;
        self.body = Body::Head;
        self.body_buf.clear();
    }

    /// Queues one request for writing; with `key_at`, the copy gets the next key number there.
    pub fn queue(
        &mut self,
        request: &[u8],
        key_at: Option<usize>,
        intended: Instant,
        sent: Instant,
    ) {
        let start = self.write_buf.len();
        self.write_buf.extend_from_slice(request);
        if let Some(at) = key_at {
            crate::scenario::write_next_key(&mut self.write_buf[start..], at);
        }
        self.inflight.push_back(Inflight { intended, sent });
        self.requests_on_socket += 1;
    }

    /// Writes as much of the queued requests as the socket takes. `Ok` with bytes left means
    /// the socket is full; a writable event will call this again.
    pub fn flush(&mut self) -> io::Result<()> {
        let Some(socket) = self.socket.as_mut() else {
            return Ok(());
        };
        while self.write_pos < self.write_buf.len() {
            match socket.write(&self.write_buf[self.write_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.write_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.write_buf.clear();
        self.write_pos = 0;
        Ok(())
    }

    /// Reads what the socket has and hands every complete response to `on_reply`, in order.
    ///
    /// The socket is registered edge-triggered, so it must be read until it is empty; a read
    /// that does not fill the buffer proves that already (a stream socket returns all it has),
    /// which saves the extra `read` that would only return `WouldBlock`. Not so when the event
    /// said the peer closed (`closed`): its FIN may have come with the data, and no later event
    /// would report it, so then we read on until end of stream.
    pub fn on_readable(&mut self, closed: bool, mut on_reply: impl FnMut(Reply<'_>)) -> ReadEnd {
        loop {
            if self.read_end == self.read_buf.len() && !self.make_room() {
                return ReadEnd::Malformed;
            }
            let Some(socket) = self.socket.as_mut() else {
                return ReadEnd::Ended;
            };
            let space = self.read_buf.len() - self.read_end;
            match socket.read(&mut self.read_buf[self.read_end..]) {
                Ok(0) => {
                    if let Body::UntilClose { status } = self.body {
                        if self.deliver(status, &mut on_reply).is_err() {
                            return ReadEnd::Malformed;
                        }
                    }
                    return ReadEnd::Ended;
                }
                Ok(n) => {
                    self.read_end += n;
                    match self.parse(&mut on_reply) {
                        Err(()) => return ReadEnd::Malformed,
                        Ok(false) => return ReadEnd::Ended,
                        Ok(true) if n < space && !closed => return ReadEnd::Wait,
                        Ok(true) => {}
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadEnd::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return ReadEnd::Ended,
            }
        }
    }

    /// Makes room in a full read buffer: moves unparsed bytes to the front, or grows the buffer
    /// for one large response. False when a single response is over [`RESPONSE_BYTES_MAX`].
    fn make_room(&mut self) -> bool {
        if self.read_start > 0 {
            self.read_buf.copy_within(self.read_start..self.read_end, 0);
            self.read_end -= self.read_start;
            self.read_start = 0;
            return true;
        }
        if self.read_buf.len() >= RESPONSE_BYTES_MAX {
            return false;
        }
        let grown = (self.read_buf.len() * 2).min(RESPONSE_BYTES_MAX);
        self.read_buf.resize(grown, 0);
        true
    }

    /// Parses every complete response in the buffer. `Ok(false)`: the last one closes the
    /// connection. `Err`: malformed.
    fn parse(&mut self, on_reply: &mut impl FnMut(Reply<'_>)) -> Result<bool, ()> {
        let keep_open = self.parse_responses(on_reply)?;
        if self.read_start == self.read_end {
            self.read_start = 0;
            self.read_end = 0;
        }
        Ok(keep_open)
    }

    fn parse_responses(&mut self, on_reply: &mut impl FnMut(Reply<'_>)) -> Result<bool, ()> {
        loop {
            match &mut self.body {
                Body::Head => {}
                Body::Chunked {
                    status,
                    keep_alive,
                    decoder,
                } => {
                    let (status, keep_alive) = (*status, *keep_alive);
                    let input = &self.read_buf[self.read_start..self.read_end];
                    let step = decoder.decode(input, &mut self.body_buf).map_err(|_| ())?;
                    self.read_start += step.consumed;
                    if !step.done {
                        return Ok(true);
                    }
                    self.deliver(status, on_reply)?;
                    if !keep_alive {
                        return Ok(false);
                    }
                    continue;
                }
                Body::UntilClose { .. } => {
                    let input = &self.read_buf[self.read_start..self.read_end];
                    if self.body_buf.len() + input.len() > RESPONSE_BYTES_MAX {
                        return Err(());
                    }
                    self.body_buf.extend_from_slice(input);
                    self.read_start = self.read_end;
                    return Ok(true);
                }
            }
            let input = &self.read_buf[self.read_start..self.read_end];
            if input.is_empty() {
                return Ok(true);
            }
            let mut headers = [EMPTY_HEADER; HEADERS_MAX];
            let head = match parse_response(input, &mut headers, &LIMITS) {
                Err(_) => return Err(()),
                Ok(Status::Partial) => return Ok(true),
                Ok(Status::Complete(head)) => head,
            };
            let (status, keep_alive, head_len) = (head.status, head.keep_alive, head.head_len);
            if (100..200).contains(&status) {
                // An interim response (100 Continue): the final one follows.
                self.read_start += head_len;
                continue;
            }
            let body_len = match head.body {
                BodyFraming::None => 0,
                BodyFraming::Length(n) => n as usize,
                BodyFraming::Chunked => {
                    self.read_start += head_len;
                    self.body = Body::Chunked {
                        status,
                        keep_alive,
                        decoder: ChunkedDecoder::new(&LIMITS),
                    };
                    continue;
                }
                BodyFraming::UntilClose => {
                    self.read_start += head_len;
                    self.body = Body::UntilClose { status };
                    continue;
                }
            };
            let whole = head_len + body_len;
            if input.len() < whole {
                // LIMITS bounds the body, so `whole` fits the buffer once grown.
                debug_assert!(whole <= RESPONSE_BYTES_MAX);
                return Ok(true);
            }
            let body = &input[head_len..whole];
            let request = self.inflight.pop_front().ok_or(())?;
            on_reply(Reply {
                status,
                body,
                request,
            });
            self.read_start += whole;
            if !keep_alive {
                return Ok(false);
            }
        }
    }

    /// Hands over the response whose body is in `body_buf`.
    fn deliver(&mut self, status: u16, on_reply: &mut impl FnMut(Reply<'_>)) -> Result<(), ()> {
        let request = self.inflight.pop_front().ok_or(())?;
        on_reply(Reply {
            status,
            body: &self.body_buf,
            request,
        });
        self.body_buf.clear();
        self.body = Body::Head;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    /// A connected client [`Connection`] and the server's end of its socket.
    fn pair(inflight: usize) -> (Connection, std::net::TcpStream, mio::Poll) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let poll = mio::Poll::new().unwrap();
        let now = Instant::now();
        let mut c = Connection::new(0, 0, 4, now);
        c.connect(
            listener.local_addr().unwrap(),
            poll.registry(),
            Token(0),
            now,
        )
        .unwrap();
        let (server, _) = listener.accept().unwrap();
        while !c.finish_connect().unwrap() {
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..inflight {
            c.queue(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None, now, now);
        }
        c.flush().unwrap();
        (c, server, poll)
    }

    /// Feeds `wire` to a connection in pieces of `step` bytes and collects (status, body).
    /// Loopback delivers a write to the peer's socket before `write` returns; the short sleep
    /// only makes that independent of the kernel.
    fn replies(wire: &[u8], inflight: usize, step: usize) -> (Vec<(u16, Vec<u8>)>, ReadEnd) {
        let (mut c, mut server, _poll) = pair(inflight);
        let mut got = Vec::new();
        let mut end = ReadEnd::Wait;
        for piece in wire.chunks(step) {
            server.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_micros(200));
            end = c.on_readable(false, |r| got.push((r.status, r.body.to_vec())));
            if end != ReadEnd::Wait {
                break;
            }
        }
        (got, end)
    }

    #[test]
    fn responses_in_any_split() {
        let wire: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"qty\":1000}\
            HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"su\r\n3\r\nx\":\r\n1\r\n1\r\n1\r\n}\r\n0\r\n\r\n";
        let want = vec![
            (200, b"{\"qty\":1000}".to_vec()),
            (503, Vec::new()),
            (200, b"{\"sux\":1}".to_vec()),
        ];
        for step in [wire.len(), 1, 7, 40] {
            let (got, end) = replies(wire, 3, step);
            assert_eq!(got, want, "step {step}");
            assert_eq!(end, ReadEnd::Wait);
        }
    }

    #[test]
    fn close_and_until_close() {
        let wire = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}";
        let (got, end) = replies(wire, 2, wire.len());
        assert_eq!(got, vec![(200, b"{}".to_vec())]);
        assert_eq!(end, ReadEnd::Ended);

        let (mut c, mut server, _poll) = pair(1);
        // Read the request first: closing with unread bytes would send a reset, not a FIN.
        let mut request = [0u8; 64];
        let n = std::io::Read::read(&mut server, &mut request).unwrap();
        assert!(request[..n].ends_with(b"\r\n\r\n"));
        server
            .write_all(b"HTTP/1.0 200 OK\r\n\r\nbody until close")
            .unwrap();
        drop(server);
        std::thread::sleep(Duration::from_millis(20));
        let mut got = Vec::new();
        // The event for a closed peer says so (EPOLLRDHUP).
        let end = c.on_readable(true, |r| got.push((r.status, r.body.to_vec())));
        assert_eq!(end, ReadEnd::Ended);
        assert_eq!(got, vec![(200, b"body until close".to_vec())]);
    }

    #[test]
    fn malformed() {
        let table: &[&[u8]] = &[
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            // A second response that answers no request.
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ];
        for wire in table {
            let (_, end) = replies(wire, 1, wire.len());
            assert_eq!(end, ReadEnd::Malformed, "{}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn large_body_grows_the_buffer() {
        let body = vec![b'x'; READ_BUF_BYTES * 2];
        let mut wire =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        wire.extend_from_slice(&body);
        let (got, end) = replies(&wire, 1, 4096);
        assert_eq!(end, ReadEnd::Wait);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, body);
    }
}

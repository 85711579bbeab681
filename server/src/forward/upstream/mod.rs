//! The ticket tier's forwarder, sans-IO: keep-alive HTTP/1.1 connections to the vacancy service as
//! state machines, and the per-shard pool that picks among them. It knows no sockets, no executors
//! and no clock: the transport feeds bytes in, writes the bytes appended to its output buffer,
//! reports how many it wrote, and passes the current `Instant` in.
//!
//! Layout, by job:
//! - this file: what is asked ([`Request`]), what became of it ([`Outcome`], [`FailKind`], which
//!   says whether a failed reserve may have sold), and the connection settings
//!   ([`UpstreamConfig`]).
//! - `conn.rs`, [`UpstreamConn`]: one connection. [`UpstreamConn::enqueue`] appends a request
//!   (`POST /api/v1/reserve`, `GET /api/v1/available`, `GET /api/v1/health`) to the caller's output
//!   buffer; [`UpstreamConn::on_input`] parses responses (proto-http's response parser,
//!   Content-Length and chunked bodies) and reports `(id, Outcome)` in request order, as HTTP/1.1
//!   pipelining answers them.
//! - `reply.rs`: a final response's status and body, read by what was asked, as an [`Outcome`]
//!   (through the shared [`crate::json`] scanner).
//! - `pool.rs`, [`Pool`]: a shard's connections, at most `max_connections`, at most `keepalive` of
//!   them idle.
//!
//! Invariants:
//! - Requests on one connection are answered in the order they were enqueued; the queue is FIFO
//!   and the n-th complete response belongs to the n-th queued request.
//! - Every enqueued id gets exactly one [`Outcome`], from `on_input`, `expire`, `on_closed` or
//!   `on_error`; `in_flight()` counts the ids still waiting.
//! - A request whose bytes may have reached the vacancy service and whose answer we did not read
//!   ends as [`FailKind::Unknown`] or [`FailKind::Timeout`]: it may have sold tickets, so it is
//!   never retried unless it carries an `Idempotency-Key` ([`Request::KeyedReserve`]), which the
//!   vacancy service executes once. Otherwise only [`FailKind::NotSent`] (no byte of it was
//!   reported written) may be retried elsewhere. A partly written request is counted as sent.
//! - A connection that timed out, saw a malformed or unsolicited response, or was told
//!   `Connection: close` is broken: it takes no new request, and the transport closes it once
//!   `in_flight()` is 0. After a timeout its stream is still read, so the late answer of the expired
//!   request is consumed and dropped and the requests behind it still complete.
//! - Peer input never panics; `assert!` guards the caller's use of the API (enqueue on a broken
//!   connection, reporting more bytes sent than were enqueued, opening past the maximum).

mod conn;
mod pool;
mod reply;

use std::time::Duration;

use proto_http::Limits;

use crate::config::Config;

pub use conn::UpstreamConn;
pub use pool::{Pick, Pool};

/// Requests pipelined on one connection at most. The vacancy service answers a pipelined batch
/// from one read, so a few requests per connection save syscalls on both sides; beyond 16, one slow
/// answer (head-of-line blocking) delays too many purchases, and another connection is better.
pub const PIPELINE_DEPTH_MAX: usize = 16;

/// What the ticket tier asks the vacancy service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `POST /api/v1/reserve` with `{"qty":qty}`: a purchase.
    Reserve {
        /// Tickets asked for.
        qty: u64,
    },
    /// `POST /api/v1/reserve` with `{"qty":qty}` and an `Idempotency-Key`: a purchase that may
    /// be sent again after its bytes left (a broken connection, a 5xx), since the vacancy service
    /// executes a key once and answers its repeats the same.
    KeyedReserve {
        /// Tickets asked for.
        qty: u64,
        /// The key sent along.
        key: ForwardKey,
    },
    /// `GET /api/v1/available`: the stock, for `/available` once the ticket tier's copy is stale.
    Available,
    /// `GET /api/v1/health`: the readiness probe behind the ticket tier's `/ready`.
    Health,
}

/// The `Idempotency-Key` of a forwarded reserve: fixed-size, so a request stays `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardKey {
    /// Derived from the client's own key (its 128-bit digest): `c-` and 32 hex digits, so the
    /// client's retries through any ticket node reach the vacancy service as one key.
    Client(u128),
    /// Made by the ticket tier for a purchase without a key: `t-` and 32 hex digits of (the
    /// shard's start time in ms, the shard, a counter), unique across restarts.
    Made(u128),
}

/// Bytes of a [`ForwardKey`] on the wire: a prefix of two and 32 hex digits.
pub const FORWARD_KEY_BYTES: usize = 34;

impl ForwardKey {
    /// The header value, written into `buf`.
    pub fn write(self, buf: &mut [u8; FORWARD_KEY_BYTES]) -> &[u8] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let (prefix, value) = match self {
            ForwardKey::Client(v) => (b'c', v),
            ForwardKey::Made(v) => (b't', v),
        };
        buf[0] = prefix;
        buf[1] = b'-';
        for i in 0..32 {
            buf[2 + i] = HEX[((value >> (124 - 4 * i)) & 0xf) as usize];
        }
        &buf[..]
    }
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
    /// A reserve answered with `Idempotent-Replayed: true`: the answer its key got before.
    Replayed {
        /// Whether that answer sold.
        sold: bool,
        /// The `remaining` it reported.
        remaining: u64,
    },
    /// No answer we can act on; the request answers 503.
    Failed(FailKind),
}

impl Outcome {
    /// A reserve's answer marked `Idempotent-Replayed: true`: the answer its key got before.
    pub(crate) fn replayed(self) -> Outcome {
        match self {
            Outcome::Reserved { remaining } => Outcome::Replayed {
                sold: true,
                remaining,
            },
            Outcome::Insufficient { remaining } => Outcome::Replayed {
                sold: false,
                remaining,
            },
            other => other,
        }
    }

    /// The answer as a first one: a replay that answers the ticket tier's own retry (of an
    /// attempt whose answer was lost) is the first answer the client hears.
    pub(crate) fn first(self) -> Outcome {
        match self {
            Outcome::Replayed {
                sold: true,
                remaining,
            } => Outcome::Reserved { remaining },
            Outcome::Replayed {
                sold: false,
                remaining,
            } => Outcome::Insufficient { remaining },
            other => other,
        }
    }
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
    /// A keyed reserve answered 409 `idempotency_key_in_flight`: its key's first request is
    /// still being executed (by an earlier attempt, or the client's own duplicate).
    KeyInFlight,
    /// A keyed reserve answered 422 `idempotency_key_reused`: the client's key was used for
    /// another quantity; nothing was done.
    KeyReused,
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
            // Refusals of the key: this attempt did nothing.
            FailKind::KeyInFlight | FailKind::KeyReused => false,
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
            FailKind::KeyInFlight => "idempotency_key_in_flight",
            FailKind::KeyReused => "idempotency_key_reused",
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

#[cfg(test)]
mod tests {
    //! The tests of [`FailKind`], and fixtures that the tests of `conn.rs` and `pool.rs` share.

    use super::*;

    /// A reserve's answer: sold, 5 left.
    pub(super) const RESERVED_5: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 63\r\n\r\n\
          {\"success\":true,\"remaining\":5,\"message\":\"Purchase successful!\"}";

    /// A forwarded key is its prefix and 32 hex digits, most significant first.
    #[test]
    fn forward_keys_are_written_in_hex() {
        let mut buf = [0u8; FORWARD_KEY_BYTES];
        let made = ForwardKey::Made(0x0123_4567_89ab_cdef_0000_0000_0000_00ff);
        assert_eq!(made.write(&mut buf), b"t-0123456789abcdef00000000000000ff");
        let client = ForwardKey::Client(u128::MAX);
        assert_eq!(
            client.write(&mut buf),
            b"c-ffffffffffffffffffffffffffffffff"
        );
    }

    /// The vacancy service at 127.0.0.1:8001, a 2 s timeout, default limits.
    pub(super) fn config() -> UpstreamConfig {
        UpstreamConfig::new("127.0.0.1", 8001, Duration::from_secs(2), Limits::default())
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
            (KeyInFlight, false, false),
            (KeyReused, false, false),
        ];
        for &(kind, unknown, retryable) in table {
            assert_eq!(kind.outcome_unknown(), unknown, "{kind:?}");
            assert_eq!(kind.is_retryable(), retryable, "{kind:?}");
            // Nothing is both: a retry of a request that may have sold could sell twice.
            assert!(!(kind.outcome_unknown() && kind.is_retryable()), "{kind:?}");
        }
    }
}

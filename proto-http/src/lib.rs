//! proto-http: a sans-IO HTTP/1.1 layer (RFC 9112, with the field rules of RFC 9110).
//!
//! Bytes in, borrowed values out; responses appended to a buffer the caller owns. It knows nothing
//! of sockets, async runtimes or tickets, which is what lets it be fuzzed, benchmarked and
//! compared against httparse byte for byte.
//!
//! Layout:
//! - [`request`]: the request head parser. It decides the body framing itself (Content-Length or
//!   chunked) and rejects every ambiguity that request smuggling feeds on.
//! - [`response`]: the response head parser, for clients (the pooled forwarder, the load generator).
//! - [`chunked`]: the incremental chunked-body decoder, shared by both.
//! - [`write`]: the response and request writers.
//! - [`date`]: the IMF-fixdate `Date` value, formatted by the caller once a second.
//! - [`error`]: the fieldless [`Error`] enum and its one map to a status code.
//! - `grammar`: byte classes of the grammar, as lookup tables.
//!
//! Invariants:
//! - Parsers never allocate and never panic on any input; they borrow from the input.
//! - "Not enough bytes yet" is [`Status::Partial`], never an error: feeding a valid message one
//!   byte at a time gives `Partial` until its last byte, then the same result as feeding it whole.
//! - Every limit is a field of [`Limits`] with a documented default.

pub mod chunked;
pub mod date;
pub mod error;
mod fields;
mod grammar;
pub mod request;
pub mod response;
pub mod write;

pub use chunked::{ChunkedDecoder, Decoded};
pub use date::HttpDate;
pub use error::Error;
pub use request::{parse_request, Method, RequestHead};
pub use response::{parse_response, ResponseHead};
pub use write::{reason_phrase, write_request, write_response, Response};

/// The outcome of feeding bytes to a parser: a complete value, or a need for more bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// The value, parsed from a prefix of the input.
    Complete(T),
    /// The input is a valid prefix; call again with more bytes.
    Partial,
}

impl<T> Status<T> {
    /// The complete value, if any.
    pub fn complete(self) -> Option<T> {
        match self {
            Status::Complete(t) => Some(t),
            Status::Partial => None,
        }
    }
}

/// One field line, borrowed from the input. Names keep their case; compare them with
/// `eq_ignore_ascii_case`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'b> {
    /// The field name: one or more tchars.
    pub name: &'b [u8],
    /// The field value with surrounding whitespace removed: field-vchars, SP and HTAB.
    pub value: &'b [u8],
}

/// An empty header, to initialise the caller's header storage: `[EMPTY_HEADER; 32]`.
pub const EMPTY_HEADER: Header<'static> = Header {
    name: b"",
    value: b"",
};

/// The protocol version of a message. Minor versions above 1 are read as HTTP/1.1, as RFC 9110
/// §2.5 asks of a recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// HTTP/1.0: no keep-alive unless asked for, no chunked bodies.
    Http10,
    /// HTTP/1.1 (or a later 1.x).
    Http11,
}

impl Version {
    /// The minor version number, for comparison with other parsers.
    pub const fn minor(self) -> u8 {
        match self {
            Version::Http10 => 0,
            Version::Http11 => 1,
        }
    }
}

/// How the message body is delimited (RFC 9112 §6.3), as decided by the head parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no Content-Length, no Transfer-Encoding, or a response that never has one).
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// A chunked body follows: decode it with [`ChunkedDecoder`].
    Chunked,
    /// A response body that runs until the connection closes (responses only).
    UntilClose,
}

/// Every bound the parsers apply. A server builds one from its configuration; the defaults are
/// the values an operator would pick for a JSON API with small bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request or response head, request line included.
    pub head_bytes_max: usize,
    /// Longest request-target.
    pub target_bytes_max: usize,
    /// Largest body, declared by Content-Length or summed over chunks.
    pub body_bytes_max: u64,
    /// Longest chunk extension (`;name=value...`) on one chunk-size line: we ignore them, so a
    /// long one is only ever an attempt to make us buffer.
    pub chunk_ext_bytes_max: usize,
    /// Largest trailer section of a chunked body; trailers are read and ignored.
    pub trailer_bytes_max: usize,
}

impl Limits {
    /// 16 KiB of head: room for a request line at [`Limits::TARGET_BYTES_MAX`] plus the
    /// fields of a browser (4-8 KiB with cookies). It bounds the per-connection read buffer,
    /// which grows only as far as a request needs and is freed after a large one, so an idle
    /// connection costs no more for it.
    pub const HEAD_BYTES_MAX: usize = 16 * 1024;
    /// 8 KiB of target: RFC 9112 §3 recommends supporting request lines of at least 8,000
    /// octets; our API paths are under 32 bytes, so only long query strings a proxy or a client
    /// appends come near it. It sits well below the head limit so that 414 is reported first.
    pub const TARGET_BYTES_MAX: usize = 8 * 1024;
    /// 64 KiB of body: a purchase body is ~10 bytes; anything near this is not a ticket order.
    pub const BODY_BYTES_MAX: u64 = 64 * 1024;
    /// 256 bytes of chunk extension: no client we serve sends any.
    pub const CHUNK_EXT_BYTES_MAX: usize = 256;
    /// 4 KiB of trailers: read and discarded, so only enough to tolerate a well-meaning client.
    pub const TRAILER_BYTES_MAX: usize = 4 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head_bytes_max: Self::HEAD_BYTES_MAX,
            target_bytes_max: Self::TARGET_BYTES_MAX,
            body_bytes_max: Self::BODY_BYTES_MAX,
            chunk_ext_bytes_max: Self::CHUNK_EXT_BYTES_MAX,
            trailer_bytes_max: Self::TRAILER_BYTES_MAX,
        }
    }
}

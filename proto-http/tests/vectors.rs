//! Table-driven proof of the parser against known inputs.
//!
//! - Malformed and smuggling request heads (RFC 9112, and the CL.TE / TE.CL / TE.TE obfuscations
//!   of public request-smuggling research) are each rejected with one exact [`Error`], and every
//!   strict prefix of them is `Partial` or that same error (an error never depends on bytes that
//!   have not arrived yet).
//! - Malformed chunked bodies are rejected by [`ChunkedDecoder`] with one exact error, whether fed
//!   whole or one byte at a time.
//! - Every variant of [`Error::ALL`] is produced by at least one vector.
//! - Valid requests parse to the expected method, target, version, framing, persistence, expect
//!   flag and header count; every strict prefix of the head is `Partial`, every longer prefix gives
//!   the same head; chunked bodies decode to the same bytes at every split point.
//! - Pipelined requests: `head_len` plus the body framing locate the next request exactly.

use std::collections::HashSet;

use proto_http::{
    parse_request, parse_response, BodyFraming, ChunkedDecoder, Error, Limits, Status, Version,
    EMPTY_HEADER,
};

/// Header slots used by the vectors unless a vector says otherwise.
const SLOTS: usize = 16;

/// An owned copy of a parsed request head, so results of different calls can be compared.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Head {
    method: Vec<u8>,
    target: Vec<u8>,
    version: Version,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    head_len: usize,
}

/// Parses `buf` with `slots` header slots and copies the result out of the borrowed buffers.
fn parse(buf: &[u8], limits: &Limits, slots: usize) -> Result<Status<Head>, Error> {
    let mut headers = vec![EMPTY_HEADER; slots];
    Ok(match parse_request(buf, &mut headers, limits)? {
        Status::Partial => Status::Partial,
        Status::Complete(h) => Status::Complete(Head {
            method: h.method.as_bytes().to_vec(),
            target: h.target.to_vec(),
            version: h.version,
            headers: h
                .headers
                .iter()
                .map(|f| (f.name.to_vec(), f.value.to_vec()))
                .collect(),
            body: h.body,
            keep_alive: h.keep_alive,
            expect_continue: h.expect_continue,
            head_len: h.head_len,
        }),
    })
}

/// Decodes a whole chunked body in one call: (body, consumed, done).
fn decode(input: &[u8], limits: &Limits) -> Result<(Vec<u8>, usize, bool), Error> {
    let mut out = Vec::new();
    let d = ChunkedDecoder::new(limits).decode(input, &mut out)?;
    Ok((out, d.consumed, d.done))
}

/// Decodes a chunked body fed one byte per call, stopping at the end of the body or the first
/// error: (body, consumed, done).
fn decode_bytewise(input: &[u8], limits: &Limits) -> Result<(Vec<u8>, usize, bool), Error> {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut out = Vec::new();
    let mut consumed = 0;
    for byte in input.chunks(1) {
        let d = decoder.decode(byte, &mut out)?;
        consumed += d.consumed;
        if d.done {
            return Ok((out, consumed, true));
        }
    }
    Ok((out, consumed, false))
}

/// Lossy text of a vector, for assertion messages.
fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

/// A request that must be rejected with default limits and [`SLOTS`] header slots.
struct Bad {
    /// What the vector is, and where it comes from.
    name: &'static str,
    /// The bytes, a complete head (or as far as needed to be rejected).
    input: &'static [u8],
    /// The one error expected.
    want: Error,
}

const fn bad(name: &'static str, input: &'static [u8], want: Error) -> Bad {
    Bad { name, input, want }
}

/// Malformed and smuggling request heads with default limits.
// One vector per line, so the table reads as a table: rustfmt would spread each over five.
#[rustfmt::skip]
const BAD_REQUESTS: &[Bad] = &[
    // --- Request line (RFC 9112 §3) ---
    bad("double space after method", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadRequestLine),
    bad("double space before version: a double space is a malformed request line", b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadRequestLine),
    bad("leading space before method", b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadRequestLine),
    bad("tab as request-line delimiter after method", b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadRequestLine),
    bad("tab as request-line delimiter before version", b"GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
    bad("HTTP/0.9 simple request without version", b"GET /\r\n\r\n", Error::BadRequestLine),
    bad("method only", b"GET\r\n\r\n", Error::BadRequestLine),
    bad("missing method", b"/ HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadRequestLine),
    bad("non-token byte in method", b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadRequestLine),
    bad("non-ASCII method", b"G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadRequestLine),
    bad("NUL in method", b"GE\x00T / HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadRequestLine),
    bad("trailing space after version", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", Error::BadVersion),
    bad("three-digit minor version HTTP/1.32", b"GET / HTTP/1.32\r\nHost: a\r\n\r\n", Error::BadVersion),
    bad("leading zero major version HTTP/01.1", b"GET / HTTP/01.1\r\nHost: a\r\n\r\n", Error::BadVersion),
    bad("version without minor HTTP/1", b"GET / HTTP/1\r\nHost: a\r\n\r\n", Error::BadVersion),
    bad("non-digit minor version", b"GET / HTTP/1.x\r\nHost: a\r\n\r\n", Error::BadVersion),
    bad("lower-case protocol name", b"GET / http/1.1\r\nHost: a\r\n\r\n", Error::BadVersion),
    bad("HTTP/2.0 over HTTP/1 framing", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Error::VersionNotSupported),
    bad("HTTP/0.9 version", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", Error::VersionNotSupported),
    bad("HTTP/3.0", b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", Error::VersionNotSupported),
    bad("request line ends with bare LF", b"GET / HTTP/1.1\nHost: a\r\n\r\n", Error::BareLf),
    bad("request line ends with bare CR", b"GET / HTTP/1.1\rHost: a\r\n\r\n", Error::BareCr),
    bad("bare LF before the request line", b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Error::BareLf),
    bad("bare CR before the request line", b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", Error::BareCr),
    bad("obs-text in target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
    bad("high byte in target", b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
    bad("NUL in target", b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
    bad("DEL in target", b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTarget),
    bad("CR inside target", b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadRequestLine),
    bad("LF inside target", b"GET /a\nb HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadRequestLine),
    // --- Field lines (RFC 9112 §5) ---
    bad("obs-fold with SP", b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", Error::ObsFold),
    bad("obs-fold with HTAB", b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", Error::ObsFold),
    bad("space before the first field line hides Transfer-Encoding", b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n", Error::ObsFold),
    bad("folded Transfer-Encoding value", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", Error::ObsFold),
    bad("Transfer-Encoding SP colon (TE.TE)", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", Error::WhitespaceBeforeColon),
    bad("Content-Length HTAB colon", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\nhello", Error::WhitespaceBeforeColon),
    bad("Host SP colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Error::WhitespaceBeforeColon),
    bad("empty field name", b"GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", Error::EmptyHeaderName),
    bad("field line without colon", b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", Error::BadHeaderName),
    bad("non-token byte in field name", b"GET / HTTP/1.1\r\nHost: a\r\nX@Y: z\r\n\r\n", Error::BadHeaderName),
    bad("parenthesis in field name", b"GET / HTTP/1.1\r\nHost: a\r\nX(Y): z\r\n\r\n", Error::BadHeaderName),
    bad("NUL in field name", b"GET / HTTP/1.1\r\nHost: a\r\nX\x00Y: z\r\n\r\n", Error::BadHeaderName),
    bad("obs-text in field name", b"GET / HTTP/1.1\r\nHost: a\r\nX\xe9: z\r\n\r\n", Error::BadHeaderName),
    bad("bare LF between field name and colon", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\n: chunked\r\n\r\n", Error::BadHeaderName),
    bad("NUL in field value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", Error::BadHeaderValue),
    bad("DEL in field value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", Error::BadHeaderValue),
    bad("ESC in field value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[0m\r\n\r\n", Error::BadHeaderValue),
    bad("vertical tab before chunked (TE.TE)", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", Error::BadHeaderValue),
    bad("form feed after chunked (TE.TE)", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0c\r\n\r\n", Error::BadHeaderValue),
    bad("NUL inside Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\x00\r\n\r\nhello", Error::BadHeaderValue),
    bad("bare CR inside a field value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", Error::BareCr),
    bad("bare LF inside a field value smuggles a TE line", b"POST / HTTP/1.1\r\nHost: a\r\nX: x\nTransfer-Encoding: chunked\r\n\r\n", Error::BareLf),
    bad("field line ends with bare LF", b"GET / HTTP/1.1\r\nHost: a\n\r\n", Error::BareLf),
    bad("head ends with bare LF", b"GET / HTTP/1.1\r\nHost: a\r\n\n", Error::BareLf),
    bad("head ends with bare CR", b"GET / HTTP/1.1\r\nHost: a\r\n\rX", Error::BareCr),
    bad("head ends with LF LF", b"GET / HTTP/1.1\n\n", Error::BareLf),
    // --- Host (RFC 9112 §3.2) ---
    bad("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", Error::MissingHost),
    bad("HTTP/1.1 without any field", b"GET / HTTP/1.1\r\n\r\n", Error::MissingHost),
    bad("two Host lines", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Error::DuplicateHost),
    bad("two identical Host lines, different case", b"GET / HTTP/1.1\r\nHost: a\r\nhOST: a\r\n\r\n", Error::DuplicateHost),
    bad("two Host lines in HTTP/1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", Error::DuplicateHost),
    bad("two Host lines, the first invalid: the repetition is named", b"GET / HTTP/1.1\r\nHost: u@a\r\nHost: b\r\n\r\n", Error::DuplicateHost),
    // --- Host value (RFC 9110 §7.2: uri-host [ ":" port ]; RFC 9112 §3.2: invalid Host is 400) ---
    bad("Host with userinfo", b"GET / HTTP/1.1\r\nHost: user@h\r\n\r\n", Error::BadHost),
    bad("Host with userinfo and password", b"GET / HTTP/1.1\r\nHost: u:p@h:80\r\n\r\n", Error::BadHost),
    bad("Host with a path", b"GET / HTTP/1.1\r\nHost: h/path\r\n\r\n", Error::BadHost),
    bad("Host with a query", b"GET / HTTP/1.1\r\nHost: h?q\r\n\r\n", Error::BadHost),
    bad("empty Host in HTTP/1.1: §3.2 allows it only for a target URI without authority, and an http URI always has one (RFC 9110 §4.2.1)", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", Error::BadHost),
    bad("blank Host in HTTP/1.1", b"GET / HTTP/1.1\r\nHost: \t \r\n\r\n", Error::BadHost),
    bad("Host list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", Error::BadHost),
    bad("Host list without space", b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", Error::BadHost),
    bad("Host with inner space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Error::BadHost),
    bad("Host of a port only", b"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", Error::BadHost),
    bad("Host port not digits", b"GET / HTTP/1.1\r\nHost: h:8x\r\n\r\n", Error::BadHost),
    bad("Host port of six digits", b"GET / HTTP/1.1\r\nHost: h:100000\r\n\r\n", Error::BadHost),
    bad("Host with two ports", b"GET / HTTP/1.1\r\nHost: h:1:2\r\n\r\n", Error::BadHost),
    bad("Host IPv6 without brackets closed", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", Error::BadHost),
    bad("Host IPv6 literal not an address", b"GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", Error::BadHost),
    bad("Host with a broken percent-encoding", b"GET / HTTP/1.1\r\nHost: a%2\r\n\r\n", Error::BadHost),
    bad("Host with obs-text", b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", Error::BadHost),
    bad("Host with userinfo in HTTP/1.0", b"GET / HTTP/1.0\r\nHost: user@h\r\n\r\n", Error::BadHost),
    // --- Request-target form (RFC 9112 §3.2) ---
    bad("asterisk-form with GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    bad("asterisk-form with POST", b"POST * HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", Error::BadTargetForm),
    bad("two asterisks with OPTIONS", b"OPTIONS ** HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    bad("authority-form with GET", b"GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    bad("authority-form with OPTIONS", b"OPTIONS example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    bad("CONNECT with an origin-form target", b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    bad("CONNECT with an absolute-form target", b"CONNECT http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    bad("CONNECT without a port", b"CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    bad("CONNECT with an empty port", b"CONNECT example.com: HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    bad("CONNECT with userinfo", b"CONNECT u@example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    bad("URN target", b"GET urn:x HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    bad("scheme starting with a digit", b"GET 1http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    bad("relative path", b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", Error::BadTargetForm),
    // --- Content-Length (RFC 9110 §8.6, RFC 9112 §6.3) ---
    bad("Content-Length +5", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", Error::BadContentLength),
    bad("Content-Length -1", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", Error::BadContentLength),
    bad("Content-Length 0x10", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", Error::BadContentLength),
    bad("Content-Length empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", Error::BadContentLength),
    bad("Content-Length only whitespace", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t \r\n\r\n", Error::BadContentLength),
    bad("Content-Length overflow 99999999999999999999999", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", Error::BadContentLength),
    bad("Content-Length u64::MAX + 1", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", Error::BadContentLength),
    bad("Content-Length with inner space", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", Error::BadContentLength),
    bad("Content-Length decimal point", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\nhello", Error::BadContentLength),
    bad("Content-Length exponent", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e1\r\n\r\n", Error::BadContentLength),
    bad("Content-Length underscore", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1_0\r\n\r\n", Error::BadContentLength),
    bad("Content-Length trailing semicolon", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5;\r\n\r\nhello", Error::BadContentLength),
    bad("Content-Length empty list element", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,,5\r\n\r\nhello", Error::BadContentLength),
    bad("Content-Length full-width digit", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \xef\xbc\x95\r\n\r\n", Error::BadContentLength),
    bad("Content-Length: 5, 6", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", Error::ConflictingContentLength),
    bad("two differing Content-Length lines", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", Error::ConflictingContentLength),
    bad("Content-Length 0 then 5", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\ncontent-length: 5\r\n\r\nhello", Error::ConflictingContentLength),
    bad("Content-Length above the body limit", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n", Error::BodyTooLarge),
    bad("Content-Length u64::MAX", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n", Error::BodyTooLarge),
    // --- CL.TE and TE.CL (RFC 9112 §6.3) ---
    bad("CL.TE: Content-Length then Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX", Error::ContentLengthWithTransferEncoding),
    bad("TE.CL: Transfer-Encoding then Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", Error::ContentLengthWithTransferEncoding),
    bad("Content-Length 0 beside chunked", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", Error::ContentLengthWithTransferEncoding),
    bad("Content-Length beside an obfuscated TE (framing beats 501)", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n", Error::ContentLengthWithTransferEncoding),
    bad("Content-Length beside an empty TE", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\nContent-Length: 4\r\n\r\n", Error::ContentLengthWithTransferEncoding),
    // --- Transfer-Encoding (RFC 9112 §6.1, §6.3, §7) ---
    bad("TE.TE: two chunked lines", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Error::BadTransferEncoding),
    bad("chunked, chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Error::BadTransferEncoding),
    bad("chunked, gzip: chunked not final", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Error::BadTransferEncoding),
    bad("gzip alone: chunked missing", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", Error::BadTransferEncoding),
    bad("empty Transfer-Encoding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", Error::BadTransferEncoding),
    bad("Transfer-Encoding of empty list elements", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , ,\r\n\r\n", Error::BadTransferEncoding),
    bad("quoted chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", Error::BadTransferEncoding),
    bad("chunked followed by junk after space", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked x\r\n\r\n", Error::BadTransferEncoding),
    bad("Transfer-Encoding in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Error::TransferEncodingInHttp10),
    bad("Transfer-Encoding in HTTP/1.0 with Host", b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", Error::TransferEncodingInHttp10),
    bad("unknown coding before chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n", Error::UnsupportedTransferCoding),
    bad("gzip, chunked: known but not implemented", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Error::UnsupportedTransferCoding),
    bad("deflate line then chunked line", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n", Error::UnsupportedTransferCoding),
    // --- Expect (RFC 9110 §10.1.1) ---
    bad("Expect other than 100-continue", b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 101-continue\r\nContent-Length: 1\r\n\r\n", Error::UnsupportedExpectation),
    bad("Expect with a suffix", b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continuex\r\n\r\n", Error::UnsupportedExpectation),
    bad("Expect list", b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, foo\r\n\r\n", Error::UnsupportedExpectation),
    bad("empty Expect", b"POST / HTTP/1.1\r\nHost: a\r\nExpect:\r\n\r\n", Error::UnsupportedExpectation),
];

/// A request that must be rejected under specific limits and header storage.
struct BadWithLimits {
    /// What the vector is.
    name: &'static str,
    /// The bytes.
    input: &'static [u8],
    /// The limits in force.
    limits: Limits,
    /// Header slots the caller provides.
    slots: usize,
    /// The one error expected.
    want: Error,
}

/// The default limits, spelled out so that const tables can use them.
const DEFAULT: Limits = Limits {
    head_bytes_max: Limits::HEAD_BYTES_MAX,
    target_bytes_max: Limits::TARGET_BYTES_MAX,
    body_bytes_max: Limits::BODY_BYTES_MAX,
    chunk_ext_bytes_max: Limits::CHUNK_EXT_BYTES_MAX,
    trailer_bytes_max: Limits::TRAILER_BYTES_MAX,
};

/// Small limits, so that limit vectors stay short.
const SMALL: Limits = Limits {
    head_bytes_max: 64,
    target_bytes_max: 8,
    body_bytes_max: 10,
    chunk_ext_bytes_max: 4,
    trailer_bytes_max: 8,
};

/// Request vectors that need a limit or a small header array.
const BAD_WITH_LIMITS: &[BadWithLimits] = &[
    BadWithLimits {
        name: "target one byte over target_bytes_max",
        input: b"GET /12345678 HTTP/1.1\r\nHost: a\r\n\r\n",
        limits: SMALL,
        slots: SLOTS,
        want: Error::TargetTooLong,
    },
    BadWithLimits {
        name: "target far over the limit, still arriving",
        input: b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        limits: SMALL,
        slots: SLOTS,
        want: Error::TargetTooLong,
    },
    BadWithLimits {
        name: "head that never ends within head_bytes_max",
        input: b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        limits: SMALL,
        slots: SLOTS,
        want: Error::HeadTooLarge,
    },
    BadWithLimits {
        name: "complete head one byte over head_bytes_max",
        input: b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        limits: SMALL,
        slots: SLOTS,
        want: Error::HeadTooLarge,
    },
    BadWithLimits {
        name: "empty lines before the request line count against the head limit",
        input: b"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
        limits: SMALL,
        slots: SLOTS,
        want: Error::HeadTooLarge,
    },
    BadWithLimits {
        name: "three fields, two slots",
        input: b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n",
        limits: DEFAULT,
        slots: 2,
        want: Error::TooManyHeaders,
    },
    BadWithLimits {
        name: "one field, no slots",
        input: b"GET / HTTP/1.0\r\nA: 1\r\n\r\n",
        limits: DEFAULT,
        slots: 0,
        want: Error::TooManyHeaders,
    },
    BadWithLimits {
        name: "Content-Length one over body_bytes_max",
        input: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
        limits: SMALL,
        slots: SLOTS,
        want: Error::BodyTooLarge,
    },
];

/// A chunked body that must be rejected.
struct BadChunked {
    /// What the vector is.
    name: &'static str,
    /// The body bytes, starting at the first chunk-size.
    input: &'static [u8],
    /// The limits in force.
    limits: Limits,
    /// The one error expected.
    want: Error,
}

const fn bad_chunked(name: &'static str, input: &'static [u8], want: Error) -> BadChunked {
    BadChunked {
        name,
        input,
        limits: SMALL_CHUNKED,
        want,
    }
}

/// Default limits but small extension, trailer and body bounds.
const SMALL_CHUNKED: Limits = Limits {
    head_bytes_max: Limits::HEAD_BYTES_MAX,
    target_bytes_max: Limits::TARGET_BYTES_MAX,
    body_bytes_max: 16,
    chunk_ext_bytes_max: 8,
    trailer_bytes_max: 16,
};

/// Malformed chunked bodies (RFC 9112 §7.1).
// One vector per line, so the table reads as a table: rustfmt would spread each over five.
#[rustfmt::skip]
const BAD_CHUNKED: &[BadChunked] = &[
    bad_chunked("non-hex chunk size", b"g\r\nabc\r\n0\r\n\r\n", Error::BadChunkSize),
    bad_chunked("empty chunk size", b"\r\nabc\r\n0\r\n\r\n", Error::BadChunkSize),
    bad_chunked("negative chunk size", b"-1\r\n", Error::BadChunkSize),
    bad_chunked("0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n", Error::BadChunkSize),
    bad_chunked("plus sign", b"+5\r\nhello\r\n0\r\n\r\n", Error::BadChunkSize),
    bad_chunked("leading space", b" 5\r\nhello\r\n0\r\n\r\n", Error::BadChunkSize),
    bad_chunked("size followed by junk", b"5x\r\nhello\r\n0\r\n\r\n", Error::BadChunkSize),
    bad_chunked("size overflows u64", b"10000000000000000\r\n", Error::BadChunkSize),
    bad_chunked("size overflows u64 by many digits", b"fffffffffffffffffffffffffffffff\r\n", Error::BadChunkSize),
    bad_chunked("u64::MAX chunk is over the body limit", b"ffffffffffffffff\r\n", Error::BodyTooLarge),
    bad_chunked("one chunk over the body limit", b"11\r\n", Error::BodyTooLarge),
    bad_chunked("chunks summing over the body limit", b"8\r\n12345678\r\n9\r\n", Error::BodyTooLarge),
    bad_chunked("data longer than the size", b"5\r\nhelloX\r\n0\r\n\r\n", Error::BadChunkEnd),
    bad_chunked("data shorter than the size", b"5\r\nhel\r\n0\r\n\r\n", Error::BadChunkEnd),
    bad_chunked("CR after data not followed by LF", b"5\r\nhello\rX0\r\n\r\n", Error::BadChunkEnd),
    bad_chunked("bare LF after data", b"5\r\nhello\n0\r\n\r\n", Error::BadChunkEnd),
    bad_chunked("size line ends with bare LF", b"5\nhello\r\n0\r\n\r\n", Error::BareLf),
    bad_chunked("size line ends with bare CR", b"5\rhello\r\n0\r\n\r\n", Error::BareCr),
    bad_chunked("last chunk ends with bare LF", b"0\n\r\n", Error::BareLf),
    bad_chunked("final empty line is a bare LF", b"0\r\n\n", Error::BareLf),
    bad_chunked("final empty line is a bare CR", b"0\r\n\rX", Error::BareCr),
    bad_chunked("extension one byte over the limit (the `;` is not counted)", b"5;abcdefghi\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("whitespace then junk after size", b"5 x\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("whitespace then CR after size", b"5 \r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("whitespace run over the extension limit", b"5         ;a\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("NUL in extension", b"5;a\x00\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("bare semicolon", b"5;\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("bare semicolon on the last chunk", b"0;\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("semicolon after a name", b"5;a;\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("two semicolons", b"5;;a\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("non-token byte in a name", b"5;bad[=x\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("obs-text name", b"5;\xff\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("value without a name", b"5;=x\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("empty value", b"5;a=\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("non-token byte in a value", b"5;a=b@\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("two values", b"5;a=b c\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("whitespace before CR after a name", b"5;a \r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("whitespace before CR after a value", b"5;a=b\t\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("unterminated quoted-string", b"5;a=\"b\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("byte after a quoted-string", b"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("NUL in a quoted-string", b"5;a=\"\x00\"\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("escaped CR in a quoted-string", b"5;a=\"\\\r\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("bare LF in extension", b"5;a\nhello\r\n0\r\n\r\n", Error::BadChunkExtension),
    bad_chunked("trailer one byte over the limit", b"0\r\nX-Trailer: 123456\r\n\r\n", Error::BadTrailer),
    bad_chunked("trailer starting with SP (obs-fold)", b"0\r\n X: y\r\n\r\n", Error::BadTrailer),
    bad_chunked("trailer starting with HTAB", b"0\r\n\tX: y\r\n\r\n", Error::BadTrailer),
    bad_chunked("trailer with empty name", b"0\r\n: y\r\n\r\n", Error::BadTrailer),
    bad_chunked("NUL in trailer", b"0\r\nX: \x00\r\n\r\n", Error::BadTrailer),
    bad_chunked("trailer line ends with bare LF", b"0\r\nX: y\n\r\n", Error::BareLf),
    bad_chunked("trailer line ends with bare CR", b"0\r\nX: y\rZ\r\n\r\n", Error::BareCr),
];

/// Response heads that must be rejected (the client side).
// One vector per line, so the table reads as a table: rustfmt would spread each over five.
#[rustfmt::skip]
const BAD_RESPONSES: &[Bad] = &[
    bad("four-digit status", b"HTTP/1.1 2000 OK\r\n\r\n", Error::BadStatusLine),
    bad("two-digit status", b"HTTP/1.1 20 OK\r\n\r\n", Error::BadStatusLine),
    bad("status below 100", b"HTTP/1.1 099 Low\r\n\r\n", Error::BadStatusLine),
    bad("HTTP/2.0 status line", b"HTTP/2.0 200 OK\r\n\r\n", Error::BadStatusLine),
    bad("lower-case protocol", b"http/1.1 200 OK\r\n\r\n", Error::BadStatusLine),
    bad("NUL in reason", b"HTTP/1.1 200 O\x00K\r\n\r\n", Error::BadStatusLine),
    bad("status line ends with bare LF", b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", Error::BadStatusLine),
    bad("bare CR after reason", b"HTTP/1.1 200 OK\rX\n\r\n", Error::BareCr),
    bad("differing Content-Length in a response", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Error::ConflictingContentLength),
    bad("Content-Length beside chunked in a response", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Error::ContentLengthWithTransferEncoding),
    bad("obs-fold in a response", b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", Error::ObsFold),
];

/// Every malformed request vector yields exactly its error, and every strict prefix of it yields
/// `Partial` or that same error: a rejection never depends on bytes not yet received.
#[test]
fn malformed_requests_are_rejected_with_the_exact_error() {
    assert!(BAD_REQUESTS.len() + BAD_WITH_LIMITS.len() >= 70);
    let default_table = BAD_REQUESTS.iter().map(|b| BadWithLimits {
        name: b.name,
        input: b.input,
        limits: Limits::default(),
        slots: SLOTS,
        want: b.want,
    });
    let limit_table = BAD_WITH_LIMITS.iter().map(|b| BadWithLimits { ..*b });
    for v in default_table.chain(limit_table) {
        assert_eq!(
            parse(v.input, &v.limits, v.slots),
            Err(v.want),
            "{}: {}",
            v.name,
            show(v.input)
        );
        for cut in 0..v.input.len() {
            let got = parse(&v.input[..cut], &v.limits, v.slots);
            assert!(
                got == Ok(Status::Partial) || got == Err(v.want),
                "{}: prefix {cut} gave {got:?}",
                v.name
            );
        }
    }
}

/// Every malformed chunked body yields exactly its error whether fed whole or one byte at a time,
/// and every strict prefix of it is either that error or an unfinished body.
#[test]
fn malformed_chunked_bodies_are_rejected_with_the_exact_error() {
    for v in BAD_CHUNKED {
        for cut in 0..v.input.len() {
            let got = decode(&v.input[..cut], &v.limits);
            assert!(
                got == Err(v.want) || matches!(got, Ok((_, consumed, false)) if consumed == cut),
                "{}: prefix {cut} gave {got:?}",
                v.name
            );
        }
        assert_eq!(
            decode(v.input, &v.limits),
            Err(v.want),
            "{}: {}",
            v.name,
            show(v.input)
        );
        assert_eq!(
            decode_bytewise(v.input, &v.limits),
            Err(v.want),
            "{} byte by byte",
            v.name
        );
    }
}

/// Every malformed response head yields exactly its error.
#[test]
fn malformed_responses_are_rejected_with_the_exact_error() {
    for v in BAD_RESPONSES {
        let mut headers = [EMPTY_HEADER; SLOTS];
        let got = parse_response(v.input, &mut headers, &Limits::default())
            .map(|s| s.complete().is_some());
        assert_eq!(got, Err(v.want), "{}: {}", v.name, show(v.input));
    }
}

/// Every variant of `Error::ALL` is produced by running at least one vector through its parser,
/// so no rule of the parser goes unexercised.
#[test]
fn every_error_variant_is_triggered_by_a_vector() {
    let mut seen = HashSet::new();
    for v in BAD_REQUESTS {
        seen.extend(parse(v.input, &Limits::default(), SLOTS).err());
    }
    for v in BAD_WITH_LIMITS {
        seen.extend(parse(v.input, &v.limits, v.slots).err());
    }
    for v in BAD_CHUNKED {
        seen.extend(decode(v.input, &v.limits).err());
    }
    for v in BAD_RESPONSES {
        let mut headers = [EMPTY_HEADER; SLOTS];
        seen.extend(parse_response(v.input, &mut headers, &Limits::default()).err());
    }
    let missing: Vec<Error> = Error::ALL
        .iter()
        .copied()
        .filter(|e| !seen.contains(e))
        .collect();
    assert!(missing.is_empty(), "no vector triggers {missing:?}");
}

/// The status classes of the contract: framing and syntax errors are 400, an unknown coding 501,
/// a version other than 1.x 505, a long target 414, a large head 431, a large body 413.
#[test]
fn errors_map_to_the_contract_statuses() {
    let table = [
        (Error::ContentLengthWithTransferEncoding, 400),
        (Error::ConflictingContentLength, 400),
        (Error::BadContentLength, 400),
        (Error::BadChunkSize, 400),
        (Error::BadTransferEncoding, 400),
        (Error::ObsFold, 400),
        (Error::WhitespaceBeforeColon, 400),
        (Error::BareCr, 400),
        (Error::BareLf, 400),
        (Error::BadHeaderValue, 400),
        (Error::MissingHost, 400),
        (Error::DuplicateHost, 400),
        (Error::BadRequestLine, 400),
        (Error::UnsupportedTransferCoding, 501),
        (Error::VersionNotSupported, 505),
        (Error::TargetTooLong, 414),
        (Error::HeadTooLarge, 431),
        (Error::TooManyHeaders, 431),
        (Error::BodyTooLarge, 413),
        (Error::UnsupportedExpectation, 417),
    ];
    for (error, status) in table {
        assert_eq!(error.status(), status, "{error:?}");
    }
}

/// A request that must be accepted, and what it must parse to.
struct Valid {
    /// What the vector is.
    name: &'static str,
    /// Head and complete body, nothing after.
    input: &'static [u8],
    /// Expected method bytes.
    method: &'static [u8],
    /// Expected request-target.
    target: &'static [u8],
    /// Expected version.
    version: Version,
    /// Expected framing.
    body: BodyFraming,
    /// Expected persistence.
    keep_alive: bool,
    /// Expected `Expect: 100-continue` flag.
    expect_continue: bool,
    /// Expected number of field lines.
    header_count: usize,
    /// The body bytes the framing delimits (decoded, for chunked).
    content: &'static [u8],
}

/// Valid requests (RFC 9112 and the leniencies it allows).
const VALID: &[Valid] = &[
    Valid {
        name: "minimal GET",
        input: b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "browser-like GET with query",
        input: b"GET /api/v1/available?x=1&y=%20 HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: k6/0.49 (https://k6.io/)\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n\r\n",
        method: b"GET",
        target: b"/api/v1/available?x=1&y=%20",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 4,
        content: b"",
    },
    Valid {
        name: "POST with Content-Length",
        input: b"POST /api/v1/purchase HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"qty\": 1}",
        method: b"POST",
        target: b"/api/v1/purchase",
        version: Version::Http11,
        body: BodyFraming::Length(10),
        keep_alive: true,
        expect_continue: false,
        header_count: 3,
        content: b"{\"qty\": 1}",
    },
    Valid {
        name: "POST chunked with extension and trailer",
        input: b"POST /api/v1/reserve HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;a=b\r\n{\"qt\r\n6\r\ny\": 2}\r\n0\r\nX-Checksum: 1\r\n\r\n",
        method: b"POST",
        target: b"/api/v1/reserve",
        version: Version::Http11,
        body: BodyFraming::Chunked,
        keep_alive: true,
        expect_continue: false,
        header_count: 2,
        content: b"{\"qty\": 2}",
    },
    Valid {
        name: "Transfer-Encoding: HTAB chunked (valid OWS)",
        input: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        method: b"POST",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::Chunked,
        keep_alive: true,
        expect_continue: false,
        header_count: 2,
        content: b"abc",
    },
    Valid {
        name: "upper-case CHUNKED, upper-case hex size, leading zeros",
        input: b"PUT /x HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n000A\r\n0123456789\r\n00\r\n\r\n",
        method: b"PUT",
        target: b"/x",
        version: Version::Http11,
        body: BodyFraming::Chunked,
        keep_alive: true,
        expect_continue: false,
        header_count: 2,
        content: b"0123456789",
    },
    Valid {
        name: "HTTP/1.0 without Host closes by default",
        input: b"GET / HTTP/1.0\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http10,
        body: BodyFraming::None,
        keep_alive: false,
        expect_continue: false,
        header_count: 0,
        content: b"",
    },
    Valid {
        name: "HTTP/1.0 with Connection: keep-alive",
        input: b"GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        method: b"GET",
        target: b"/health",
        version: Version::Http10,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "HTTP/1.0 POST with Content-Length",
        input: b"POST /p HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
        method: b"POST",
        target: b"/p",
        version: Version::Http10,
        body: BodyFraming::Length(2),
        keep_alive: false,
        expect_continue: false,
        header_count: 1,
        content: b"hi",
    },
    Valid {
        name: "Connection: close",
        input: b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: false,
        expect_continue: false,
        header_count: 2,
        content: b"",
    },
    Valid {
        name: "close wins over keep-alive in a Connection list",
        input: b"GET / HTTP/1.0\r\nConnection: keep-alive , CLOSE\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http10,
        body: BodyFraming::None,
        keep_alive: false,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "Expect: 100-continue with Content-Length",
        input: b"POST /api/v1/purchase HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc",
        method: b"POST",
        target: b"/api/v1/purchase",
        version: Version::Http11,
        body: BodyFraming::Length(3),
        keep_alive: true,
        expect_continue: true,
        header_count: 3,
        content: b"abc",
    },
    Valid {
        name: "absolute-form target",
        input: b"GET http://example.com:8000/api/v1/available?q HTTP/1.1\r\nHost: example.com:8000\r\n\r\n",
        method: b"GET",
        target: b"http://example.com:8000/api/v1/available?q",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "asterisk-form OPTIONS",
        input: b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        method: b"OPTIONS",
        target: b"*",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "authority-form CONNECT",
        input: b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        method: b"CONNECT",
        target: b"example.com:443",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "leading empty lines before the request line",
        input: b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "tabs and spaces in values, trimmed at both ends",
        input: b"GET / HTTP/1.1\r\nHost:a\r\nX-Tab: \t a\tb c \t\r\nX-Empty:\r\nX-Blank: \t \r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 4,
        content: b"",
    },
    Valid {
        name: "obs-text in values",
        input: b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9 \x80\xff\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 2,
        content: b"",
    },
    Valid {
        name: "identical repeated Content-Lengths, as lines and as a list",
        input: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5, 5\r\n\r\nhello",
        method: b"POST",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::Length(5),
        keep_alive: true,
        expect_continue: false,
        header_count: 3,
        content: b"hello",
    },
    Valid {
        name: "Content-Length: 0 is no body",
        input: b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        method: b"POST",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 2,
        content: b"",
    },
    Valid {
        name: "minor version above 1 reads as HTTP/1.1",
        input: b"GET / HTTP/1.9\r\nHost: a\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "extension method and every tchar in a field name",
        input: b"PURGE /cache HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n",
        method: b"PURGE",
        target: b"/cache",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 2,
        content: b"",
    },
    Valid {
        name: "chunked with empty list elements and a parameter-free chunked",
        input: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n1 ;x\r\nz\r\n0\r\n\r\n",
        method: b"POST",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::Chunked,
        keep_alive: true,
        expect_continue: false,
        header_count: 2,
        content: b"z",
    },
    Valid {
        name: "Transfer_Encoding is just another field (no framing)",
        input: b"GET / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent_Length: 9\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 3,
        content: b"",
    },
    Valid {
        name: "OPTIONS * (asterisk-form, RFC 9112 §3.2.4)",
        input: b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        method: b"OPTIONS",
        target: b"*",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "CONNECT host:port (authority-form, RFC 9112 §3.2.3)",
        input: b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        method: b"CONNECT",
        target: b"example.com:443",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "CONNECT to an IPv6 literal",
        input: b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n",
        method: b"CONNECT",
        target: b"[2001:db8::1]:8443",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "Host: IPv6 literal with port",
        input: b"GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "Host: IPv4 with port, upper case name",
        input: b"GET / HTTP/1.1\r\nHOST: 127.0.0.1:8000\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "Host: sub-delims and a percent-encoding, empty port",
        input: b"GET / HTTP/1.1\r\nHost: a-b_c~d!$&'()*+;=%41:\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "Host: IPvFuture",
        input: b"GET / HTTP/1.1\r\nHost: [v1.a:b]\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http11,
        body: BodyFraming::None,
        keep_alive: true,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "empty Host in HTTP/1.0 (Host is optional there)",
        input: b"GET / HTTP/1.0\r\nHost:\r\n\r\n",
        method: b"GET",
        target: b"/",
        version: Version::Http10,
        body: BodyFraming::None,
        keep_alive: false,
        expect_continue: false,
        header_count: 1,
        content: b"",
    },
    Valid {
        name: "chunk extensions with quoted-strings and BWS",
        input: b"POST /api/v1/purchase HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4 ; a = \"x;y\" ; b\r\n{\"qt\r\n5;c=\"\\\"\"\r\ny\":1}\r\n0;d=e\r\n\r\n",
        method: b"POST",
        target: b"/api/v1/purchase",
        version: Version::Http11,
        body: BodyFraming::Chunked,
        keep_alive: true,
        expect_continue: false,
        header_count: 2,
        content: b"{\"qty\":1}",
    },
];

/// The body of `v` as its framing delimits it: (decoded bytes, wire bytes taken).
fn body_of(v: &Valid, head: &Head) -> (Vec<u8>, usize) {
    let rest = &v.input[head.head_len..];
    match head.body {
        BodyFraming::None => (Vec::new(), 0),
        BodyFraming::Length(n) => {
            let n = usize::try_from(n).unwrap();
            (rest[..n].to_vec(), n)
        }
        BodyFraming::Chunked => {
            let (out, consumed, done) = decode(rest, &Limits::default()).unwrap();
            assert!(done, "{}: chunked body did not end", v.name);
            (out, consumed)
        }
        BodyFraming::UntilClose => panic!("{}: requests never read until close", v.name),
    }
}

/// Every valid vector parses to its expected head, its framing delimits exactly the rest of the
/// input, and the body is the expected one.
#[test]
fn valid_requests_parse_to_the_expected_head() {
    assert!(VALID.len() >= 15);
    for v in VALID {
        let got = parse(v.input, &Limits::default(), SLOTS);
        let Ok(Status::Complete(head)) = got else {
            panic!("{}: {got:?}", v.name)
        };
        assert_eq!(head.method, v.method, "{}", v.name);
        assert_eq!(head.target, v.target, "{}", v.name);
        assert_eq!(head.version, v.version, "{}", v.name);
        assert_eq!(head.body, v.body, "{}", v.name);
        assert_eq!(head.keep_alive, v.keep_alive, "{}", v.name);
        assert_eq!(head.expect_continue, v.expect_continue, "{}", v.name);
        assert_eq!(head.headers.len(), v.header_count, "{}", v.name);
        let (content, wire) = body_of(v, &head);
        assert_eq!(content, v.content, "{}", v.name);
        assert_eq!(head.head_len + wire, v.input.len(), "{}: framing", v.name);
    }
}

/// Every strict prefix of a valid head is `Partial`; every prefix that holds the whole head (and
/// any part of the body) gives the same head as the whole input.
#[test]
fn valid_requests_at_every_split_point() {
    for v in VALID {
        let whole = parse(v.input, &Limits::default(), SLOTS).unwrap();
        let Status::Complete(head) = &whole else {
            panic!("{}: partial", v.name)
        };
        for cut in 0..head.head_len {
            assert_eq!(
                parse(&v.input[..cut], &Limits::default(), SLOTS),
                Ok(Status::Partial),
                "{}: prefix {cut}",
                v.name
            );
        }
        for cut in head.head_len..=v.input.len() {
            assert_eq!(
                parse(&v.input[..cut], &Limits::default(), SLOTS),
                Ok(whole.clone()),
                "{}: prefix {cut}",
                v.name
            );
        }
    }
}

/// The chunked body of each valid chunked request decodes to the same bytes whether split in two
/// at any point or fed one byte at a time, and the decoder consumes exactly the body.
#[test]
fn chunked_bodies_at_every_split_point() {
    for v in VALID.iter().filter(|v| v.body == BodyFraming::Chunked) {
        let Ok(Status::Complete(head)) = parse(v.input, &Limits::default(), SLOTS) else {
            panic!("{}", v.name)
        };
        let body = &v.input[head.head_len..];
        for split in 0..=body.len() {
            let mut decoder = ChunkedDecoder::new(&Limits::default());
            let mut out = Vec::new();
            let first = decoder.decode(&body[..split], &mut out).unwrap();
            assert_eq!(first.consumed, split, "{}: split {split}", v.name);
            let second = decoder.decode(&body[split..], &mut out).unwrap();
            assert!(
                second.done && decoder.is_done(),
                "{}: split {split}",
                v.name
            );
            assert_eq!(first.consumed + second.consumed, body.len());
            assert_eq!(out, v.content, "{}: split {split}", v.name);
            assert_eq!(decoder.body_len(), v.content.len() as u64);
        }
        assert_eq!(
            decode_bytewise(body, &Limits::default()),
            Ok((v.content.to_vec(), body.len(), true)),
            "{}",
            v.name
        );
    }
}

/// Valid chunked bodies beyond those in requests: the decoder stops right after the body, leaving
/// the next bytes unread, at every split point.
#[test]
fn valid_chunked_bodies_stop_at_the_end() {
    let table: &[(&[u8], &[u8])] = &[
        (b"0\r\n\r\n", b""),
        (b"1\r\na\r\n0\r\n\r\n", b"a"),
        (b"3;name=value;flag\r\nabc\r\n0;last\r\n\r\n", b"abc"),
        (b"3 ; a = \"b\"\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3\t;a\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3;a=\"\xff \\\" \\\\;\"\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"3;a=b;c=\"\";d\r\nabc\r\n0\r\n\r\n", b"abc"),
        (
            b"3 ; a ; b = c ; d = \"e\"\r\nabc\r\n0;x=\"y\"\r\n\r\n",
            b"abc",
        ),
        (
            b"3;!#$%&'*+-.^_`|~09azAZ=!#$%&'*+-.^_`|~09azAZ\r\nabc\r\n0\r\n\r\n",
            b"abc",
        ),
        (b"2\r\n\r\n\r\n0\r\n\r\n", b"\r\n"),
        (
            b"1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
            b"abcdefghijklmnopqrstuvwxyz",
        ),
        (b"0000000000000000000000001\r\nz\r\n0\r\n\r\n", b"z"),
        (b"1\r\nx\r\n0\r\nA: b\r\nC-D:e\tf\r\n\r\n", b"x"),
    ];
    for &(body, want) in table {
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        for split in 0..=input.len() {
            let mut decoder = ChunkedDecoder::new(&Limits::default());
            let mut out = Vec::new();
            let first = decoder.decode(&input[..split], &mut out).unwrap();
            let rest = &input[first.consumed..];
            let second = decoder.decode(rest, &mut out).unwrap();
            assert!(second.done, "{}: split {split}", show(body));
            assert_eq!(
                first.consumed + second.consumed,
                body.len(),
                "{}",
                show(body)
            );
            assert_eq!(out, want, "{}: split {split}", show(body));
        }
    }
}

/// At the boundary every limit is inclusive: a target, head, body, extension, trailer or header
/// count exactly at the limit is accepted.
#[test]
fn limits_are_inclusive() {
    let target_at_limit = b"GET /1234567 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(parse(target_at_limit, &SMALL, SLOTS)
        .unwrap()
        .complete()
        .is_some());

    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
    head.resize(SMALL.head_bytes_max - 4, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), SMALL.head_bytes_max);
    assert!(parse(&head, &SMALL, SLOTS).unwrap().complete().is_some());

    let body_at_limit = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n";
    assert!(parse(body_at_limit, &SMALL, SLOTS)
        .unwrap()
        .complete()
        .is_some());

    let fields_at_slots = b"GET / HTTP/1.1\r\nHost: a\r\nB: 2\r\n\r\n";
    assert!(parse(fields_at_slots, &Limits::default(), 2)
        .unwrap()
        .complete()
        .is_some());

    let chunked = b"8;abcdefg\r\n12345678\r\n8\r\n12345678\r\n0\r\nX-T: 123456\r\n\r\n";
    assert_eq!(
        decode(chunked, &SMALL_CHUNKED),
        Ok((b"1234567812345678".to_vec(), chunked.len(), true))
    );
}

/// RFC 9112 §3: "It is RECOMMENDED that all HTTP senders and recipients support, at a minimum,
/// request-line lengths of 8000 octets." With the default limits a request line of exactly 8,000
/// octets parses, at every split point; a target one byte over `TARGET_BYTES_MAX` is refused
/// with `TargetTooLong`, and the head limit leaves room for such a line plus the fields of a
/// browser.
#[test]
fn default_limits_accept_an_8000_octet_request_line() {
    let line_bytes = 8000;
    let target_bytes = line_bytes - "GET  HTTP/1.1".len();
    let target = format!("/{}", "a".repeat(target_bytes - 1));
    let input = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes();
    assert_eq!(input.len(), line_bytes + "\r\nHost: a\r\n\r\n".len());
    let Ok(Status::Complete(head)) = parse(&input, &Limits::default(), SLOTS) else {
        panic!("an 8,000-octet request line is refused")
    };
    assert_eq!(head.target, target.as_bytes());
    assert_eq!(head.head_len, input.len());
    for cut in 0..input.len() {
        assert_eq!(
            parse(&input[..cut], &Limits::default(), SLOTS),
            Ok(Status::Partial),
            "prefix {cut}"
        );
    }
    let over = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(Limits::TARGET_BYTES_MAX)
    );
    assert_eq!(
        parse(over.as_bytes(), &Limits::default(), SLOTS),
        Err(Error::TargetTooLong)
    );
    const BROWSER_FIELDS_BYTES: usize = 4096;
    const { assert!(Limits::HEAD_BYTES_MAX >= Limits::TARGET_BYTES_MAX + BROWSER_FIELDS_BYTES) };
}

/// Two requests back to back: the first head's `head_len` plus its body framing lands exactly on
/// the second request, which then parses as if alone. Tried for every ordered pair of vectors.
#[test]
fn pipelined_requests_parse_in_order() {
    for first in VALID {
        for second in VALID {
            let mut input = first.input.to_vec();
            input.extend_from_slice(second.input);
            let Ok(Status::Complete(head)) = parse(&input, &Limits::default(), SLOTS) else {
                panic!("{} then {}", first.name, second.name)
            };
            let body_wire = match head.body {
                BodyFraming::None => 0,
                BodyFraming::Length(n) => usize::try_from(n).unwrap(),
                BodyFraming::Chunked => {
                    let mut decoder = ChunkedDecoder::new(&Limits::default());
                    let mut out = Vec::new();
                    let d = decoder.decode(&input[head.head_len..], &mut out).unwrap();
                    assert!(d.done);
                    assert_eq!(out, first.content);
                    d.consumed
                }
                BodyFraming::UntilClose => unreachable!("requests never read until close"),
            };
            let next_at = head.head_len + body_wire;
            assert_eq!(
                next_at,
                first.input.len(),
                "{} then {}",
                first.name,
                second.name
            );
            assert_eq!(
                parse(&input[next_at..], &Limits::default(), SLOTS),
                parse(second.input, &Limits::default(), SLOTS),
                "{} then {}",
                first.name,
                second.name
            );
        }
    }
}

/// Transfer-Encoding values whose final coding is not `chunked`, where some coding is unknown.
/// RFC 9112 §6.3 rule 4: "If a Transfer-Encoding header field is present in a request and the
/// chunked transfer coding is not the final encoding, the message body length cannot be
/// determined reliably; the server MUST respond with the 400 (Bad Request) status code". The 501
/// of §6.1 is only a SHOULD, and `check_transfer_encoding` itself says the smuggling signals
/// (400) come before "not implemented" (501).
// One vector per line, so the table reads as a table: rustfmt would spread each over five.
#[rustfmt::skip]
const TE_NOT_FINAL_CHUNKED: &[Bad] = &[
    bad("TE.TE: xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", Error::BadTransferEncoding),
    bad("TE.TE: chunked, identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", Error::BadTransferEncoding),
    bad("TE.TE: chunked then an unknown coding on a second line", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", Error::BadTransferEncoding),
    bad("TE.TE: single-quoted chunked is a different token", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: 'chunked'\r\n\r\n", Error::BadTransferEncoding),
    bad("identity alone", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", Error::BadTransferEncoding),
];

/// A Transfer-Encoding that does not end in `chunked` is a framing error (400) even when one of
/// its codings is unknown: the body length cannot be determined, which RFC 9112 §6.3 answers with
/// 400 before any question of implementing the coding (501, for `foo, chunked`, stays 501).
#[test]
fn te_not_ending_in_chunked_is_bad_framing_even_when_a_coding_is_unknown() {
    for v in TE_NOT_FINAL_CHUNKED {
        assert_eq!(
            parse(v.input, &Limits::default(), SLOTS),
            Err(v.want),
            "{}: {}",
            v.name,
            show(v.input)
        );
    }
}

/// RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0 request
/// MUST ignore that expectation." An HTTP/1.0 client does not know the 1xx interim response, so
/// `expect_continue` must be false for it, while an HTTP/1.1 request keeps it.
#[test]
fn expect_continue_is_ignored_in_http10() {
    let http10 = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx";
    let Ok(Status::Complete(head)) = parse(http10, &Limits::default(), SLOTS) else {
        panic!("HTTP/1.0 with Expect must parse")
    };
    assert!(
        !head.expect_continue,
        "HTTP/1.0: expect_continue must be ignored"
    );
    let http11 =
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx";
    let Ok(Status::Complete(head)) = parse(http11, &Limits::default(), SLOTS) else {
        panic!("HTTP/1.1 with Expect must parse")
    };
    assert!(head.expect_continue);
}

/// The outcome of a head does not depend on how its bytes were split across reads, even past the
/// head limit: a connection that reads `head_bytes_max` bytes and then the rest gets the same
/// error as one that reads everything at once. Bytes beyond the limit must not be looked at, or a
/// malformed byte there turns a 431 into a 400 depending on the peer's segment sizes.
#[test]
fn errors_do_not_depend_on_bytes_beyond_the_head_limit() {
    let mut input = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
    input.resize(SMALL.head_bytes_max + 8, b'a');
    input.extend_from_slice(b"\x00\r\n\r\n");
    let at_limit = parse(&input[..SMALL.head_bytes_max], &SMALL, SLOTS);
    assert_eq!(at_limit, Err(Error::HeadTooLarge));
    assert_eq!(
        parse(&input, &SMALL, SLOTS),
        at_limit,
        "request: whole input"
    );

    let mut response = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    response.resize(SMALL.head_bytes_max + 8, b'a');
    response.extend_from_slice(b"\x00\r\n\r\n");
    let mut headers = [EMPTY_HEADER; SLOTS];
    let at_limit = parse_response(&response[..SMALL.head_bytes_max], &mut headers, &SMALL)
        .map(|s| s.complete().is_some());
    assert_eq!(at_limit, Err(Error::HeadTooLarge));
    let mut headers = [EMPTY_HEADER; SLOTS];
    let whole = parse_response(&response, &mut headers, &SMALL).map(|s| s.complete().is_some());
    assert_eq!(whole, at_limit, "response: whole input");
}

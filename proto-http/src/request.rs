//! The request head parser (RFC 9112 §3).
//!
//! ```text
//! HTTP-message   = start-line CRLF *( field-line CRLF ) CRLF [ message-body ]
//! request-line   = method SP request-target SP HTTP-version
//! method         = token
//! HTTP-version   = HTTP-name "/" DIGIT "." DIGIT
//! ```
//! The parser re-reads the buffer from its start on every call, like httparse: heads are small and
//! usually arrive whole, so one pass over a complete head is the case to make fast.

use crate::fields::{parse_fields, Framing};
use crate::grammar::{is_authority, scan_target, scan_token, Port};
use crate::{BodyFraming, Error, Header, Limits, Status, Version};

/// The request method. The common ones are variants, so routing is a `match`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method<'b> {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// PATCH
    Patch,
    /// CONNECT
    Connect,
    /// TRACE
    Trace,
    /// Any other token (methods are case-sensitive, so `get` lands here).
    Other(&'b [u8]),
}

impl<'b> Method<'b> {
    fn from_token(token: &'b [u8]) -> Self {
        match token {
            b"GET" => Method::Get,
            b"POST" => Method::Post,
            b"HEAD" => Method::Head,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            other => Method::Other(other),
        }
    }

    /// The method as it appeared on the wire.
    pub fn as_bytes(&self) -> &'b [u8] {
        match self {
            Method::Get => b"GET",
            Method::Head => b"HEAD",
            Method::Post => b"POST",
            Method::Put => b"PUT",
            Method::Delete => b"DELETE",
            Method::Options => b"OPTIONS",
            Method::Patch => b"PATCH",
            Method::Connect => b"CONNECT",
            Method::Trace => b"TRACE",
            Method::Other(token) => token,
        }
    }
}

/// A complete request head, borrowed from the input buffer and the caller's header storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead<'b, 'h> {
    /// The method.
    pub method: Method<'b>,
    /// The request-target exactly as sent (origin-, absolute-, authority- or asterisk-form).
    pub target: &'b [u8],
    /// The protocol version.
    pub version: Version,
    /// The field lines, in order.
    pub headers: &'h [Header<'b>],
    /// How the body that follows the head is delimited.
    pub body: BodyFraming,
    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` and waits for a 100 before sending the body.
    pub expect_continue: bool,
    /// Bytes of the input taken by the head; the body (or the next pipelined request) starts here.
    pub head_len: usize,
}

impl<'b> RequestHead<'b, '_> {
    /// The path of the target without query: `/a/b` for `/a/b?x=1` and for
    /// `http://host:80/a/b?x=1` (absolute-form, RFC 9112 §3.2.2); `/` for `http://host`.
    pub fn path(&self) -> &'b [u8] {
        let target = self.target;
        let without_authority = match target.first() {
            Some(b'/') | Some(b'*') | None => target,
            Some(_) => match target.windows(3).position(|w| w == b"://") {
                Some(scheme_end) => {
                    let authority_start = scheme_end + 3;
                    match target[authority_start..]
                        .iter()
                        .position(|&b| b == b'/' || b == b'?')
                    {
                        Some(p) if target[authority_start + p] == b'/' => {
                            &target[authority_start + p..]
                        }
                        _ => b"/",
                    }
                }
                None => target, // authority-form (CONNECT host:port)
            },
        };
        match without_authority.iter().position(|&b| b == b'?') {
            Some(q) => &without_authority[..q],
            None => without_authority,
        }
    }

    /// The value of the first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &[u8]) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Parses a request head from the start of `buf`, storing field lines in `headers`.
///
/// Returns `Partial` while `buf` is a valid prefix of a head, and the head (with its length in
/// `head_len`) once complete; bytes after the head are untouched. Errors are final: the caller
/// answers `err.status()` and closes the connection.
pub fn parse_request<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    limits: &Limits,
) -> Result<Status<RequestHead<'b, 'h>>, Error> {
    // Only the first `head_bytes_max` bytes are looked at, so the answer cannot depend on how
    // the peer's bytes beyond the limit were split across reads.
    let seen = &buf[..buf.len().min(limits.head_bytes_max)];
    match parse_inner(seen, headers, limits)? {
        Status::Partial if buf.len() >= limits.head_bytes_max => Err(Error::HeadTooLarge),
        status => Ok(status),
    }
}

#[inline(always)]
fn parse_inner<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    limits: &Limits,
) -> Result<Status<RequestHead<'b, 'h>>, Error> {
    macro_rules! byte_at {
        ($at:expr) => {
            match buf.get($at) {
                Some(&b) => b,
                None => return Ok(Status::Partial),
            }
        };
    }
    let mut i = 0;
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line received before the
    // request-line. Each is bounded by the head limit like any other byte.
    loop {
        match byte_at!(i) {
            b'\r' => match byte_at!(i + 1) {
                b'\n' => i += 2,
                _ => return Err(Error::BareCr),
            },
            b'\n' => return Err(Error::BareLf),
            _ => break,
        }
    }

    // The two methods our clients send, recognised in one comparison; any other token takes the
    // general path.
    let method = match buf.get(i..i + 5) {
        Some([b'G', b'E', b'T', b' ', _]) => {
            i += 4;
            Method::Get
        }
        Some(b"POST ") => {
            i += 5;
            Method::Post
        }
        _ => {
            let method_start = i;
            i = scan_token(buf, i);
            match byte_at!(i) {
                b' ' if i > method_start => {}
                _ => return Err(Error::BadRequestLine),
            }
            i += 1;
            Method::from_token(&buf[method_start..i - 1])
        }
    };

    let target_start = i;
    i = scan_target(buf, i);
    if i - target_start > limits.target_bytes_max {
        return Err(Error::TargetTooLong);
    }
    match byte_at!(i) {
        b' ' if i > target_start => {}
        b' ' | b'\r' | b'\n' => return Err(Error::BadRequestLine),
        _ => return Err(Error::BadTarget),
    }
    let target = &buf[target_start..i];
    check_target_form(method, target)?;
    i += 1;

    let version = parse_version(buf, &mut i)?;
    let Some(version) = version.complete() else {
        return Ok(Status::Partial);
    };

    let mut framing = Framing::default();
    let Status::Complete((head_len, count)) = parse_fields(buf, i, headers, &mut framing)? else {
        return Ok(Status::Partial);
    };
    if head_len > limits.head_bytes_max {
        return Err(Error::HeadTooLarge);
    }
    let body = framing.request_body(version, limits)?;
    let headers: &'h [Header<'b>] = headers;
    Ok(Status::Complete(RequestHead {
        method,
        target,
        version,
        headers: &headers[..count],
        body,
        keep_alive: framing.keep_alive(version),
        // RFC 9110 §10.1.1: a server MUST ignore a 100-continue expectation in HTTP/1.0.
        expect_continue: framing.expect_continue && version == Version::Http11,
        head_len,
    }))
}

/// Which form of request-target a method may use (RFC 9112 §3.2):
///
/// ```text
/// origin-form    = absolute-path [ "?" query ]   ; every method but CONNECT
/// absolute-form  = absolute-URI                  ; every method but CONNECT (sent to proxies)
/// authority-form = uri-host ":" port             ; CONNECT only (§3.2.3)
/// asterisk-form  = "*"                           ; OPTIONS only (§3.2.4)
/// ```
/// The origin-form of every request we serve costs one comparison.
#[inline(always)]
fn check_target_form(method: Method<'_>, target: &[u8]) -> Result<(), Error> {
    let allowed = match target {
        [b'/', ..] => method != Method::Connect,
        b"*" => method == Method::Options,
        _ if method == Method::Connect => is_authority(target, Port::Required),
        _ => is_absolute_form(target),
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::BadTargetForm)
    }
}

/// `scheme "://"` at the start of `target`, `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`
/// (RFC 3986 §3.1). An absolute-URI without `//` (`h:443`, `urn:x`) is no URI a client sends an
/// HTTP server; accepting it would let `host:port` pass as absolute-form with any method.
#[cold]
fn is_absolute_form(target: &[u8]) -> bool {
    let scheme_end = target
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
        .unwrap_or(target.len());
    scheme_end > 0 && target[0].is_ascii_alphabetic() && target[scheme_end..].starts_with(b"://")
}

/// `HTTP-version CRLF` at `buf[*i..]`; advances `i` past the CRLF.
#[inline(always)]
fn parse_version(buf: &[u8], i: &mut usize) -> Result<Status<Version>, Error> {
    let rest = &buf[*i..];
    // The shape `HTTP/D.D\r\n`, checked in one go when it has all arrived (the common case).
    if let Some(&[b'H', b'T', b'T', b'P', b'/', major, b'.', minor, b'\r', b'\n']) = rest.get(..10)
    {
        if major.is_ascii_digit() && minor.is_ascii_digit() {
            *i += 10;
            return version_number(major, minor);
        }
    }
    parse_version_slow(rest, i)
}

/// The byte-by-byte check: a partial version, or the exact error of a malformed one.
#[cold]
fn parse_version_slow(rest: &[u8], i: &mut usize) -> Result<Status<Version>, Error> {
    const SHAPE_LEN: usize = 10; // `HTTP/D.D\r\n`
    if rest.first() == Some(&b' ') {
        return Err(Error::BadRequestLine); // a second space after the target
    }
    let common = rest.len().min(SHAPE_LEN);
    for (k, &b) in rest[..common].iter().enumerate() {
        let ok = match k {
            0..=4 => b == b"HTTP/"[k],
            5 | 7 => b.is_ascii_digit(),
            6 => b == b'.',
            8 => b == b'\r',
            _ => b == b'\n',
        };
        if !ok {
            return Err(match k {
                8 if b == b'\n' => Error::BareLf,
                9 => Error::BareCr,
                _ => Error::BadVersion,
            });
        }
    }
    if common < SHAPE_LEN {
        return Ok(Status::Partial);
    }
    *i += SHAPE_LEN;
    version_number(rest[5], rest[7])
}

fn version_number(major: u8, minor: u8) -> Result<Status<Version>, Error> {
    match (major, minor) {
        (b'1', b'0') => Ok(Status::Complete(Version::Http10)),
        (b'1', _) => Ok(Status::Complete(Version::Http11)),
        _ => Err(Error::VersionNotSupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EMPTY_HEADER;

    /// What the tests compare: method, target, body framing, keep-alive, head length.
    type Summary<'b> = (Method<'b>, Vec<u8>, BodyFraming, bool, usize);

    fn parse(buf: &[u8]) -> Result<Status<Summary<'_>>, Error> {
        let mut headers = [EMPTY_HEADER; 16];
        let status = parse_request(buf, &mut headers, &Limits::default())?;
        Ok(match status {
            Status::Complete(h) => Status::Complete((
                h.method,
                h.target.to_vec(),
                h.body,
                h.keep_alive,
                h.head_len,
            )),
            Status::Partial => Status::Partial,
        })
    }

    #[test]
    fn simple_get() {
        let req = b"GET /api/v1/available HTTP/1.1\r\nHost: x\r\n\r\n";
        let Status::Complete((method, target, body, keep_alive, len)) = parse(req).unwrap() else {
            panic!("partial")
        };
        assert_eq!(method, Method::Get);
        assert_eq!(target, b"/api/v1/available");
        assert_eq!(body, BodyFraming::None);
        assert!(keep_alive);
        assert_eq!(len, req.len());
    }

    #[test]
    fn path_strips_query_and_authority() {
        let table: &[(&[u8], &[u8], &[u8])] = &[
            (b"GET ", b"/a/b?x=1", b"/a/b"),
            (b"GET ", b"/", b"/"),
            (b"GET ", b"http://h:80/a/b?x=1", b"/a/b"),
            (b"GET ", b"http://h", b"/"),
            (b"GET ", b"http://h?x", b"/"),
            (b"OPTIONS ", b"*", b"*"),
            (b"CONNECT ", b"h:443", b"h:443"),
        ];
        for &(method, target, path) in table {
            let mut req = method.to_vec();
            req.extend_from_slice(target);
            req.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
            let mut headers = [EMPTY_HEADER; 4];
            let head = parse_request(&req, &mut headers, &Limits::default())
                .unwrap()
                .complete()
                .unwrap();
            assert_eq!(head.path(), path, "{}", String::from_utf8_lossy(target));
        }
    }

    #[test]
    fn minor_versions_above_one_read_as_http11() {
        let mut headers = [EMPTY_HEADER; 4];
        let head = parse_request(
            b"GET / HTTP/1.7\r\nHost: h\r\n\r\n",
            &mut headers,
            &Limits::default(),
        );
        assert_eq!(head.unwrap().complete().unwrap().version, Version::Http11);
    }
}

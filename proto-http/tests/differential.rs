//! Differential proof against httparse, the parser hyper and most of the Rust ecosystem use.
//!
//! On a corpus of real-world requests (and mechanical variations of them) and on proptest-generated
//! requests, whenever both parsers accept a head they agree on the method, the target, the minor
//! version, every field name and value (after OWS trimming), and the head length. Whenever we
//! accept, httparse accepts too, except where we deliberately differ; whenever we reject a line for
//! its syntax, httparse rejects it too, except where it is deliberately more lenient; whenever
//! httparse rejects what we still wait on, we reject it too once the head is complete (we may
//! wait for a line's end before judging it, but never accept what httparse refused).
//!
//! Deliberate disagreements (each checked to be the only reason when the two differ):
//!
//! - **Bare LF.** httparse accepts a lone LF as a line end (RFC 9112 §2.2 allows a recipient to);
//!   we reject it (`BareLf`), because parsers that disagree on line ends enable smuggling.
//! - **Non-ASCII request-targets.** httparse allows obs-text bytes (0x80-0xFF) in the target when
//!   they form UTF-8; we allow only visible ASCII (`BadTarget`), as RFC 3986 does unencoded.
//! - **HTTP/1.2 to HTTP/1.9.** We read them as HTTP/1.1 (RFC 9110 §2.5 asks a recipient to accept a
//!   higher minor version); httparse knows only `HTTP/1.0` and `HTTP/1.1` and rejects them.
//! - **Framing semantics.** httparse does not interpret fields; we reject what RFC 9112 makes us
//!   reject: a missing or repeated Host, a bad or conflicting Content-Length, Content-Length with
//!   Transfer-Encoding, a bad or unsupported Transfer-Encoding, Transfer-Encoding in HTTP/1.0, an
//!   unsupported Expect, and our limits (target, head, body). These are errors only we raise, and
//!   each is excused only when httparse's own reading of the head shows what the error names (a
//!   `MissingHost` only for an HTTP/1.1 head with no Host field, and so on).
//! - **Host and target form.** httparse checks neither the Host value nor which form of target a
//!   method uses; we reject a Host that is not `uri-host [ ":" port ]` (or is empty in HTTP/1.1,
//!   or has a comma: `BadHost`), and `*` other than with OPTIONS, authority-form other than with
//!   CONNECT, CONNECT with another form, or a target of no form at all (`BadTargetForm`). Each is
//!   excused only when a second reading here, written from RFC 3986 apart from the parser's
//!   tables, finds the same fault.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use proto_http::{parse_request, Error, Limits, Status, EMPTY_HEADER};

/// Header slots on both sides: more than any generated request has.
const SLOTS: usize = 64;

/// Limits high enough that none of ours fires on the generated requests.
const WIDE: Limits = Limits {
    head_bytes_max: 1 << 20,
    target_bytes_max: 1 << 20,
    body_bytes_max: Limits::BODY_BYTES_MAX,
    chunk_ext_bytes_max: Limits::CHUNK_EXT_BYTES_MAX,
    trailer_bytes_max: Limits::TRAILER_BYTES_MAX,
};

/// What both parsers report for a complete head, as owned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Head {
    method: Vec<u8>,
    target: Vec<u8>,
    minor: u8,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    head_len: usize,
}

/// Our parser's view of `buf`.
fn ours(buf: &[u8]) -> Result<Status<Head>, Error> {
    let mut headers = [EMPTY_HEADER; SLOTS];
    Ok(match parse_request(buf, &mut headers, &WIDE)? {
        Status::Partial => Status::Partial,
        Status::Complete(h) => Status::Complete(Head {
            method: h.method.as_bytes().to_vec(),
            target: h.target.to_vec(),
            minor: h.version.minor(),
            headers: h
                .headers
                .iter()
                .map(|f| (f.name.to_vec(), f.value.to_vec()))
                .collect(),
            head_len: h.head_len,
        }),
    })
}

/// httparse's view of `buf`, with its default configuration.
fn theirs(buf: &[u8]) -> Result<httparse::Status<Head>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; SLOTS];
    let mut req = httparse::Request::new(&mut headers);
    Ok(match req.parse(buf)? {
        httparse::Status::Partial => httparse::Status::Partial,
        httparse::Status::Complete(head_len) => httparse::Status::Complete(Head {
            method: req.method.unwrap().as_bytes().to_vec(),
            target: req.path.unwrap().as_bytes().to_vec(),
            minor: req.version.unwrap(),
            headers: req
                .headers
                .iter()
                .map(|f| (f.name.as_bytes().to_vec(), f.value.to_vec()))
                .collect(),
            head_len,
        }),
    })
}

/// The values of every field named `name` (case-insensitively) in `head`.
fn fields<'a>(head: &'a Head, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    head.headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// The comma-separated elements of a field value, without OWS (RFC 9110 §5.6.1).
fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(|e| {
        let start = e
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(e.len());
        let end = e
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(start, |i| i + 1);
        &e[start..end]
    })
}

/// Every Content-Length element of `head`, as a number where it is one (`1*DIGIT`, fits a u64).
fn content_lengths(head: &Head) -> Vec<Option<u64>> {
    fields(head, b"content-length")
        .flat_map(elements)
        .map(|e| {
            let digits = !e.is_empty() && e.iter().all(u8::is_ascii_digit);
            digits
                .then(|| std::str::from_utf8(e).ok()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// The transfer codings `head` names, in order (empty list elements skipped, parameters cut).
fn codings(head: &Head) -> Vec<Vec<u8>> {
    fields(head, b"transfer-encoding")
        .flat_map(elements)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let name = e.split(|&b| b == b';').next().unwrap_or(e);
            elements(name).next().unwrap_or(name).to_ascii_lowercase()
        })
        .collect()
}

/// Whether `e` is an error that comes from field semantics or our limits, which httparse never
/// checks, *and* `head` (httparse's reading of the same input) has what `e` names: an excuse
/// that the input does not bear out is no excuse.
fn semantic(e: Error, head: &Head) -> bool {
    let hosts = fields(head, b"host").count();
    let lengths = content_lengths(head);
    let has_te = fields(head, b"transfer-encoding").next().is_some();
    let codings = codings(head);
    let chunked = codings
        .iter()
        .filter(|c| c.as_slice() == b"chunked")
        .count();
    match e {
        Error::MissingHost => head.minor == 1 && hosts == 0,
        Error::DuplicateHost => hosts > 1,
        Error::BadContentLength => lengths.iter().any(Option::is_none),
        Error::ConflictingContentLength => {
            let mut numbers: Vec<u64> = lengths.iter().flatten().copied().collect();
            numbers.sort_unstable();
            numbers.dedup();
            numbers.len() > 1
        }
        Error::ContentLengthWithTransferEncoding => !lengths.is_empty() && has_te,
        Error::TransferEncodingInHttp10 => has_te && head.minor == 0,
        Error::BadTransferEncoding => {
            has_te && (chunked != 1 || codings.last().map(Vec::as_slice) != Some(b"chunked"))
        }
        Error::UnsupportedTransferCoding => codings.iter().any(|c| c.as_slice() != b"chunked"),
        Error::UnsupportedExpectation => {
            fields(head, b"expect").any(|v| !v.eq_ignore_ascii_case(b"100-continue"))
        }
        Error::BodyTooLarge => lengths.iter().flatten().any(|&n| n > WIDE.body_bytes_max),
        Error::TargetTooLong => head.target.len() > WIDE.target_bytes_max,
        Error::HeadTooLarge => head.head_len > WIDE.head_bytes_max,
        Error::BadHost => fields(head, b"host").any(|v| {
            (v.is_empty() && head.minor == 1) || (!v.is_empty() && !authority_ok(v, false))
        }),
        Error::BadTargetForm => !target_form_ok(&head.method, &head.target),
        _ => false,
    }
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2-3; `port_required`: `uri-host ":" 1*DIGIT`), with at
/// most 5 port digits and no comma, read again from the RFC: a bracketed IPv6 address or
/// IPvFuture, or a non-empty reg-name of unreserved, sub-delims and `%XX`.
fn authority_ok(v: &[u8], port_required: bool) -> bool {
    let Ok(v) = std::str::from_utf8(v) else {
        return false;
    };
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        let future = inner.len() > 1
            && inner.starts_with(['v', 'V'])
            && inner[1..].split_once('.').is_some_and(|(hex, tail)| {
                !hex.is_empty()
                    && hex.bytes().all(|b| b.is_ascii_hexdigit())
                    && !tail.is_empty()
                    && tail.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:".contains(b as char)
                    })
            });
        if !future && inner.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => ("x", None),
            _ => match after.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match v.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (v, None),
        }
    };
    let reg_name = !host.is_empty()
        && host.split('%').enumerate().all(|(i, part)| {
            let rest = if i == 0 {
                Some(part)
            } else {
                part.get(..2)
                    .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(|_| &part[2..])
            };
            rest.is_some_and(|r| {
                r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || "-._~!$&'()*+;=".contains(b as char))
            })
        });
    let port_ok = match port {
        None => !port_required,
        Some(p) => {
            (!port_required || !p.is_empty())
                && p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
        }
    };
    reg_name && port_ok
}

/// RFC 9112 §3.2: origin-form (`/...`) or absolute-form (`scheme://...`) for every method but
/// CONNECT, `*` only for OPTIONS, authority-form only and always for CONNECT.
fn target_form_ok(method: &[u8], target: &[u8]) -> bool {
    if method == b"CONNECT" {
        return authority_ok(target, true);
    }
    let absolute = target.first().is_some_and(u8::is_ascii_alphabetic)
        && std::str::from_utf8(target).is_ok_and(|t| {
            t.split_once("://").is_some_and(|(scheme, _)| {
                scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            })
        });
    target.starts_with(b"/") || (target == b"*" && method == b"OPTIONS") || absolute
}

/// The bytes up to the end of the head (the first empty line, by either line-end convention).
fn head_region(buf: &[u8]) -> &[u8] {
    let end = (0..buf.len())
        .find(|&i| buf[i..].starts_with(b"\r\n\r\n") || buf[i..].starts_with(b"\n\n"))
        .map_or(buf.len(), |i| i + 4);
    &buf[..end.min(buf.len())]
}

/// True if `buf` has an LF not preceded by CR before the end of its head.
fn has_bare_lf(buf: &[u8]) -> bool {
    let head = head_region(buf);
    (0..head.len()).any(|i| head[i] == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// The request line's version bytes are `HTTP/1.d` with d in 2..=9.
fn higher_minor_version(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let end = line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let line = &line[..end];
    line.len() >= 9
        && line[line.len() - 9] == b' '
        && line[line.len() - 8..line.len() - 1] == *b"HTTP/1."
        && (b'2'..=b'9').contains(&line[line.len() - 1])
}

/// Checks every agreement rule on one input; the `Err` says which rule broke.
fn compare(buf: &[u8]) -> Result<(), String> {
    let a = ours(buf);
    let b = theirs(buf);
    let show = || String::from_utf8_lossy(buf).escape_debug().to_string();
    match (&a, &b) {
        (Ok(Status::Complete(x)), Ok(httparse::Status::Complete(y))) if x != y => Err(format!(
            "both accept but differ: {x:?} vs {y:?} on {}",
            show()
        )),
        (Ok(Status::Complete(_)), Ok(httparse::Status::Complete(_))) => Ok(()),
        (Ok(Status::Complete(_)), Err(httparse::Error::Version)) if higher_minor_version(buf) => {
            Ok(())
        }
        (Ok(Status::Complete(_)), other) => {
            Err(format!("we accept, httparse gives {other:?} on {}", show()))
        }
        (Err(e), Ok(httparse::Status::Complete(y))) => {
            let documented = semantic(*e, y)
                || (*e == Error::BareLf && has_bare_lf(buf))
                || (*e == Error::BadTarget && !y.target.is_ascii());
            if documented {
                Ok(())
            } else {
                Err(format!(
                    "we reject with {e:?}, httparse accepts on {}",
                    show()
                ))
            }
        }
        (Ok(Status::Partial), Ok(httparse::Status::Complete(_))) => Err(format!(
            "we want more bytes, httparse completes on {}",
            show()
        )),
        // httparse already rejects what we still wait on (it judges a byte as it reads it; we may
        // wait for the end of the line): completing the head must not make us accept it, save
        // for a version we read as HTTP/1.1 on purpose.
        (Ok(Status::Partial), Err(their)) => {
            let mut completed = buf.to_vec();
            completed.extend_from_slice(b"\r\n\r\n");
            match ours(&completed) {
                Err(_) => Ok(()),
                Ok(_) if *their == httparse::Error::Version && higher_minor_version(buf) => Ok(()),
                Ok(status) => Err(format!(
                    "httparse rejects ({their:?}) what we wait on, and completed we give \
                     {status:?}, on {}",
                    show()
                )),
            }
        }
        // Both reject, or both want more bytes.
        (Err(_), Err(_)) | (Ok(Status::Partial), Ok(httparse::Status::Partial)) => Ok(()),
        // We reject while httparse wants more bytes: it checks less, so it may wait for bytes
        // after a line we already know is malformed.
        (Err(_), Ok(httparse::Status::Partial)) => Ok(()),
    }
}

/// Real-world and edge-of-the-grammar requests that both parsers must accept.
const CORPUS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /api/v1/available HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    b"GET /api/v1/available?x=1&y=%20 HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: k6/0.49 (https://k6.io/)\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n\r\n",
    b"POST /api/v1/purchase HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"qty\": 1}",
    b"POST /api/v1/reserve HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"qt\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    b"POST /p HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"POST /api/v1/purchase HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET http://example.com:8000/api/v1/available?q HTTP/1.1\r\nHost: example.com:8000\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost:a\r\nX-Tab: \t a\tb c \t\r\nX-Empty:\r\nX-Blank: \t \r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9 \x80\xff\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5, 5\r\n\r\nhello",
    b"PURGE /cache HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n",
    b"get /lower-case-method HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /~user/a;b,c=d!$&'()*+@:/?%41 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=b; c=\"d e\"; f={}[]\\|<>\r\n\r\n",
];

/// Mechanical variations of a corpus request, each of which either still parses identically on
/// both sides or falls under a documented disagreement.
fn variations(base: &[u8]) -> Vec<Vec<u8>> {
    let replace = |from: &[u8], to: &[u8]| -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < base.len() {
            if base[i..].starts_with(from) {
                out.extend_from_slice(to);
                i += from.len();
            } else {
                out.push(base[i]);
                i += 1;
            }
        }
        out
    };
    vec![
        base.to_vec(),
        replace(b"\r\n", b"\n"),
        replace(b"HTTP/1.1", b"HTTP/1.0"),
        replace(b"HTTP/1.1", b"HTTP/1.5"),
        replace(b"HTTP/1.1", b"HTTP/2.0"),
        replace(b": ", b":"),
        replace(b": ", b":  \t"),
        replace(b"\r\n\r\n", b" \r\n\r\n"),
        replace(b"\r\n\r\n", b"\r\nX-Extra: 1\r\n\r\n"),
        replace(b"Host", b"HOST"),
        replace(b" /", b" /\xc3\xa9"),
        replace(b" /", b"  /"),
        replace(b"a\r\n", b"a\x00\r\n"),
        replace(b"\r\nHost", b"\r\n Host"),
        replace(b"Host:", b"Host :"),
        replace(b"\r\n\r\n", b"\r\n: empty\r\n\r\n"),
        replace(b"\r\n\r\n", b"\r\nHost: b\r\n\r\n"),
    ]
}

/// On every corpus request both parsers accept and agree exactly.
#[test]
fn corpus_requests_agree_exactly() {
    for &buf in CORPUS {
        let a = ours(buf);
        let b = theirs(buf);
        let (Ok(Status::Complete(x)), Ok(httparse::Status::Complete(y))) = (&a, &b) else {
            panic!(
                "both must accept {}: {a:?} vs {b:?}",
                String::from_utf8_lossy(buf)
            )
        };
        assert_eq!(x, y);
    }
}

/// On every variation of every corpus request the agreement rules hold, and every prefix of each
/// one obeys them too (neither parser completes on less than the other).
#[test]
fn corpus_variations_obey_the_agreement_rules() {
    for &base in CORPUS {
        for v in variations(base) {
            compare(&v).unwrap();
            for cut in 0..v.len() {
                compare(&v[..cut]).unwrap();
            }
        }
    }
}

/// One byte of a generated request: mostly grammar bytes, sometimes the edge bytes that
/// parsers disagree on.
fn edge_byte(common: impl Strategy<Value = u8> + 'static, common_weight: u32) -> BoxedStrategy<u8> {
    prop_oneof![
        common_weight => common,
        1 => 0x80u8..=0xff,
        1 => prop::sample::select(vec![0u8, b'\t', b' ', 0x7f, b'\r', b'\n', b':', 0x0b, 0x1f]),
    ]
    .boxed()
}

/// A token (method or field name) of tchars.
fn token() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(
            b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                .to_vec(),
        ),
        1..10,
    )
}

/// A method: a common one, a random token, or a token with an edge byte.
fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec!["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH"]).prop_map(|m| m.as_bytes().to_vec()),
        2 => token(),
        1 => prop::collection::vec(edge_byte(b'A'..=b'Z', 20), 0..6),
    ]
}

/// A request-target: visible ASCII with sometimes an edge byte.
fn target() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(edge_byte(0x21u8..=0x7e, 150), 0..16).prop_map(|mut t| {
        t.insert(0, b'/');
        t
    })
}

/// An HTTP-version, well-formed or not.
fn version() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        6 => Just(&b"HTTP/1.1"[..]),
        2 => Just(&b"HTTP/1.0"[..]),
        1 => prop::sample::select(vec![&b"HTTP/1.5"[..], b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.10", b"http/1.1", b"HTTP/1", b"HTTP/01.1"]),
    ]
}

/// A field value: field-vchars, SP, HTAB, obs-text, and rarely a control byte.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(edge_byte(0x20u8..=0x7e, 60), 0..20)
}

/// A line end: almost always CRLF.
fn eol() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![30 => Just(&b"\r\n"[..]), 1 => Just(&b"\n"[..])]
}

/// A field name: a token, `Host`, or a token with an edge byte.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => token(),
        1 => Just(b"Host".to_vec()),
        1 => prop::collection::vec(edge_byte(b'a'..=b'z', 20), 0..8),
    ]
}

/// A whole request head, assembled from generated parts.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        method(),
        prop_oneof![20 => Just(&b" "[..]), 1 => Just(&b"  "[..])],
        target(),
        version(),
        eol(),
        prop::collection::vec((name(), value(), eol()), 0..8),
        eol(),
        prop::option::weighted(0.9, 0..8usize),
    )
        .prop_map(
            |(method, sp, target, version, eol1, mut fields, last, host_at)| {
                if let Some(at) = host_at {
                    let host = (b"Host".to_vec(), b" h".to_vec(), &b"\r\n"[..]);
                    fields.insert(at.min(fields.len()), host);
                }
                let mut out = method;
                out.extend_from_slice(sp);
                out.extend_from_slice(&target);
                out.push(b' ');
                out.extend_from_slice(version);
                out.extend_from_slice(eol1);
                for (name, value, eol) in fields {
                    out.extend_from_slice(&name);
                    out.push(b':');
                    out.extend_from_slice(&value);
                    out.extend_from_slice(eol);
                }
                out.extend_from_slice(last);
                out
            },
        )
}

/// A request both parsers must accept: token method, visible-ASCII target, HTTP/1.x, one Host,
/// token names (not framing fields), values of vchar / SP / HTAB / obs-text, CRLF.
fn valid_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![Just(b"GET".to_vec()), Just(b"POST".to_vec()), token()];
    let target = prop::collection::vec(0x21u8..=0x7e, 0..24);
    let value = prop::collection::vec(
        prop_oneof![10 => 0x21u8..=0x7e, 1 => Just(b' '), 1 => Just(b'\t'), 1 => 0x80u8..=0xff],
        0..24,
    );
    let field = (token(), value).prop_filter("not a framing field", |(n, _)| {
        ![
            &b"host"[..],
            b"content-length",
            b"transfer-encoding",
            b"expect",
            b"connection",
        ]
        .iter()
        .any(|f| n.eq_ignore_ascii_case(f))
    });
    (
        method,
        target,
        any::<bool>(),
        prop::collection::vec(field, 0..10),
        0..10usize,
    )
        .prop_map(|(method, target, http10, fields, host_at)| {
            let mut out = method;
            out.extend_from_slice(b" /");
            out.extend_from_slice(&target);
            out.extend_from_slice(if http10 {
                b" HTTP/1.0\r\n"
            } else {
                b" HTTP/1.1\r\n"
            });
            for (i, (name, value)) in fields.iter().enumerate() {
                if i == host_at.min(fields.len()) {
                    out.extend_from_slice(b"Host: h\r\n");
                }
                out.extend_from_slice(name);
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            if host_at >= fields.len() {
                out.extend_from_slice(b"Host: h\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/differential.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    /// On generated requests full of edge bytes, the agreement rules hold: both accept and agree,
    /// or they disagree only as documented at the top of this file.
    #[test]
    fn generated_requests_obey_the_agreement_rules(buf in request()) {
        if let Err(why) = compare(&buf) {
            prop_assert!(false, "{}", why);
        }
    }

    /// On generated well-formed requests both parsers accept and agree exactly, and each prefix
    /// obeys the agreement rules.
    #[test]
    fn generated_valid_requests_agree_exactly(buf in valid_request()) {
        let a = ours(&buf);
        let b = theirs(&buf);
        match (&a, &b) {
            (Ok(Status::Complete(x)), Ok(httparse::Status::Complete(y))) => prop_assert_eq!(x, y),
            _ => prop_assert!(false, "both must accept {}: {:?} vs {:?}", String::from_utf8_lossy(&buf), a, b),
        }
        for cut in (0..buf.len()).step_by(3) {
            if let Err(why) = compare(&buf[..cut]) {
                prop_assert!(false, "{}", why);
            }
        }
    }
}

//! Round trips from our writers to our parsers, on proptest-generated messages.
//!
//! - What `write_response` and `write_response_with` append, `parse_response` reads back exactly:
//!   status, reason, every header in order, persistence, and the body delimited by
//!   `Content-Length`, whatever the split of the bytes into reads.
//! - What `write_request` appends, `parse_request` reads back exactly, at any split.
//! - A chunked encoder written here (random chunk sizes, hex case, leading zeros, extensions,
//!   trailers) and `ChunkedDecoder` fed at random split points give back the original body and
//!   stop exactly at its end.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use proto_http::{
    parse_request, parse_response, reason_phrase, write::write_response_with, write_request,
    write_response, BodyFraming, ChunkedDecoder, Header, HttpDate, Limits, Response, Status,
    Version, EMPTY_HEADER,
};

/// Header slots: more than any generated message has.
const SLOTS: usize = 32;

/// Cases per property: enough to cover the shapes, few enough for a debug build in seconds.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/roundtrip.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// Statuses a server sends, plus one without a reason phrase.
const STATUSES: &[u16] = &[
    200, 201, 204, 400, 404, 405, 408, 413, 414, 417, 422, 429, 431, 500, 501, 502, 503, 504, 505,
    299,
];

/// A field name that is a token and not one whose meaning the parser interprets, so that the
/// head stays valid and the writer's own framing fields stay the only ones.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(
            b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                .to_vec(),
        ),
        1..16,
    )
    .prop_filter("not a field the parser interprets", |n| {
        ![
            &b"host"[..],
            b"content-length",
            b"transfer-encoding",
            b"connection",
            b"expect",
        ]
        .iter()
        .any(|f| n.eq_ignore_ascii_case(f))
    })
}

/// A field value without surrounding whitespace (which a parser trims): field-vchars and obs-text
/// with inner SP and HTAB.
fn value() -> impl Strategy<Value = Vec<u8>> {
    let inner = prop_oneof![
        12 => 0x21u8..=0x7e,
        2 => 0x80u8..=0xff,
        1 => Just(b' '),
        1 => Just(b'\t'),
    ];
    (
        prop::collection::vec(inner, 0..30),
        0x21u8..=0x7e,
        0x21u8..=0x7e,
    )
        .prop_map(|(mut v, first, last)| {
            if v.is_empty() {
                return v;
            }
            v[0] = first;
            let end = v.len() - 1;
            v[end] = last;
            v
        })
}

/// Every strict prefix shorter than `head_len` is `Partial`, every longer one gives `whole`.
fn assert_split_invariant<T: PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    head_len: usize,
    whole: &T,
    parse: impl Fn(&[u8]) -> Option<T>,
) -> Result<(), TestCaseError> {
    for cut in 0..=bytes.len() {
        let got = parse(&bytes[..cut]);
        if cut < head_len {
            prop_assert!(
                got.is_none(),
                "prefix {} of head {} completed",
                cut,
                head_len
            );
        } else {
            prop_assert_eq!(got.as_ref(), Some(whole), "prefix {}", cut);
        }
    }
    Ok(())
}

/// A parsed response, owned.
#[derive(Debug, PartialEq, Eq)]
struct ParsedResponse {
    status: u16,
    reason: Vec<u8>,
    version: Version,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: BodyFraming,
    keep_alive: bool,
    head_len: usize,
}

/// `parse_response` with default limits, owned; `None` while `Partial`.
fn parse_response_owned(buf: &[u8]) -> Option<ParsedResponse> {
    let mut headers = [EMPTY_HEADER; SLOTS];
    match parse_response(buf, &mut headers, &Limits::default()).expect("written response") {
        Status::Partial => None,
        Status::Complete(h) => Some(ParsedResponse {
            status: h.status,
            reason: h.reason.to_vec(),
            version: h.version,
            headers: owned(h.headers),
            body: h.body,
            keep_alive: h.keep_alive,
            head_len: h.head_len,
        }),
    }
}

/// Field lines as owned (name, value) pairs.
fn owned(headers: &[Header<'_>]) -> Vec<(Vec<u8>, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_vec(), h.value.to_vec()))
        .collect()
}

proptest! {
    #![proptest_config(config())]

    /// A response written by either writer (after whatever the buffer already held) parses back
    /// to the status, reason, headers, persistence and body that were written, at every split.
    #[test]
    fn written_responses_parse_back(
        status in prop::sample::select(STATUSES),
        http10 in any::<bool>(),
        keep_alive in any::<bool>(),
        date_secs in 0u64..4_102_444_800,
        content_type in prop::option::of(value()),
        extra in prop::collection::vec((name(), value()), 0..6),
        body in prop::collection::vec(any::<u8>(), 0..200),
        in_place in any::<bool>(),
        previous in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        // RFC 9110 §6.4.1: a 204 has no content; its Content-Length is then 0.
        let body = if status == 204 { Vec::new() } else { body };
        let version = if http10 { Version::Http10 } else { Version::Http11 };
        let date = HttpDate::from_unix_seconds(date_secs);
        let extra_refs: Vec<(&[u8], &[u8])> =
            extra.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        let response = Response {
            status,
            version,
            keep_alive,
            date: &date,
            content_type: content_type.as_deref(),
            extra_headers: &extra_refs,
        };
        let mut out = previous.clone();
        if in_place {
            write_response_with(&mut out, &response, |b| b.extend_from_slice(&body));
        } else {
            write_response(&mut out, &response, &body);
        }
        prop_assert_eq!(&out[..previous.len()], &previous[..], "the writer appends");
        let wire = &out[previous.len()..];

        let mut want_headers = vec![(b"Date".to_vec(), date.as_bytes().to_vec())];
        if let Some(ct) = &content_type {
            want_headers.push((b"Content-Type".to_vec(), ct.clone()));
        }
        match (version, keep_alive) {
            (Version::Http11, true) => {}
            (Version::Http10, true) => want_headers.push((b"Connection".to_vec(), b"keep-alive".to_vec())),
            (_, false) => want_headers.push((b"Connection".to_vec(), b"close".to_vec())),
        }
        want_headers.extend(extra.iter().cloned());
        want_headers.push((b"Content-Length".to_vec(), body.len().to_string().into_bytes()));

        let parsed = parse_response_owned(wire).expect("complete");
        prop_assert_eq!(parsed.status, status);
        prop_assert_eq!(&parsed.reason[..], reason_phrase(status).as_bytes());
        prop_assert_eq!(parsed.version, Version::Http11, "we always speak HTTP/1.1");
        prop_assert_eq!(&parsed.headers, &want_headers);
        prop_assert_eq!(parsed.keep_alive, keep_alive);
        if status == 204 {
            prop_assert_eq!(parsed.body, BodyFraming::None);
        } else {
            prop_assert_eq!(parsed.body, BodyFraming::Length(body.len() as u64));
        }
        prop_assert_eq!(&wire[parsed.head_len..], &body[..]);
        assert_split_invariant(wire, parsed.head_len, &parsed, parse_response_owned)?;
    }
}

/// A parsed request, owned.
#[derive(Debug, PartialEq, Eq)]
struct ParsedRequest {
    method: Vec<u8>,
    target: Vec<u8>,
    version: Version,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    head_len: usize,
}

/// `parse_request` with default limits, owned; `None` while `Partial`.
fn parse_request_owned(buf: &[u8]) -> Option<ParsedRequest> {
    let mut headers = [EMPTY_HEADER; SLOTS];
    match parse_request(buf, &mut headers, &Limits::default()).expect("written request") {
        Status::Partial => None,
        Status::Complete(h) => Some(ParsedRequest {
            method: h.method.as_bytes().to_vec(),
            target: h.target.to_vec(),
            version: h.version,
            headers: owned(h.headers),
            body: h.body,
            keep_alive: h.keep_alive,
            expect_continue: h.expect_continue,
            head_len: h.head_len,
        }),
    }
}

/// A method: a common one or any token.
fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
            .prop_map(|m| m.as_bytes().to_vec()),
        name(),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// A request written by `write_request` parses back to its method, target, Host, extra
    /// headers, Content-Length and body, as HTTP/1.1 keep-alive, at every split.
    #[test]
    fn written_requests_parse_back(
        method in method(),
        target in prop::collection::vec(0x21u8..=0x7e, 0..40),
        host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
        extra in prop::collection::vec((name(), value()), 0..6),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut target = target;
        target.insert(0, b'/');
        let extra_refs: Vec<(&[u8], &[u8])> =
            extra.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        let mut wire = Vec::new();
        write_request(&mut wire, &method, &target, host.as_bytes(), &extra_refs, &body);

        let mut want_headers = vec![(b"Host".to_vec(), host.as_bytes().to_vec())];
        want_headers.extend(extra.iter().cloned());
        let with_length = !body.is_empty() || [&b"POST"[..], b"PUT", b"PATCH"].contains(&&method[..]);
        if with_length {
            want_headers.push((b"Content-Length".to_vec(), body.len().to_string().into_bytes()));
        }

        let parsed = parse_request_owned(&wire).expect("complete");
        prop_assert_eq!(&parsed.method, &method);
        prop_assert_eq!(&parsed.target, &target);
        prop_assert_eq!(parsed.version, Version::Http11);
        prop_assert_eq!(&parsed.headers, &want_headers);
        prop_assert!(parsed.keep_alive);
        prop_assert!(!parsed.expect_continue);
        let want_body = if body.is_empty() { BodyFraming::None } else { BodyFraming::Length(body.len() as u64) };
        prop_assert_eq!(parsed.body, want_body);
        prop_assert_eq!(&wire[parsed.head_len..], &body[..]);
        assert_split_invariant(&wire, parsed.head_len, &parsed, parse_request_owned)?;
    }
}

/// How the test's chunked encoder spells one chunk-size line.
#[derive(Clone, Debug)]
struct SizeStyle {
    /// Upper-case hex digits.
    upper: bool,
    /// Leading zeros before the size.
    zeros: usize,
    /// A chunk extension, written after the size (with BWS when `spaced`).
    extension: Option<Vec<u8>>,
    /// BWS around the extension's `;`.
    spaced: bool,
}

/// A random spelling of a chunk-size line.
fn size_style() -> impl Strategy<Value = SizeStyle> {
    let extension = prop::option::weighted(
        0.3,
        (
            "[a-z][a-z0-9-]{0,8}",
            prop::option::of(prop_oneof!["[a-zA-Z0-9]{1,8}", "\"[ a-z0-9]{0,8}\""]),
        )
            .prop_map(|(n, v)| match v {
                Some(v) => format!("{n}={v}").into_bytes(),
                None => n.into_bytes(),
            }),
    );
    (any::<bool>(), 0..3usize, extension, any::<bool>()).prop_map(
        |(upper, zeros, extension, spaced)| SizeStyle {
            upper,
            zeros,
            extension,
            spaced,
        },
    )
}

/// Appends one chunk-size line for `size` in `style`.
fn push_size_line(out: &mut Vec<u8>, size: usize, style: &SizeStyle) {
    out.extend(std::iter::repeat_n(b'0', style.zeros));
    let hex = if style.upper {
        format!("{size:X}")
    } else {
        format!("{size:x}")
    };
    out.extend_from_slice(hex.as_bytes());
    if let Some(ext) = &style.extension {
        out.extend_from_slice(if style.spaced { b" ; " } else { b";" });
        out.extend_from_slice(ext);
    }
    out.extend_from_slice(b"\r\n");
}

/// Encodes `body` as chunks of the given sizes (cycled), a last chunk and optional trailers.
fn encode_chunked(
    body: &[u8],
    sizes: &[usize],
    styles: &[SizeStyle],
    trailers: &[(Vec<u8>, Vec<u8>)],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut k = 0;
    while !rest.is_empty() {
        let n = sizes[k % sizes.len()].min(rest.len());
        push_size_line(&mut out, n, &styles[k % styles.len()]);
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        k += 1;
    }
    push_size_line(&mut out, 0, &styles[k % styles.len()]);
    for (name, value) in trailers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

proptest! {
    #![proptest_config(config())]

    /// A body chunked by the encoder above, followed by the next request, and fed to the decoder
    /// in pieces split at random points, decodes to the original body; the decoder consumes
    /// exactly the chunked body and leaves the next request untouched.
    #[test]
    fn chunked_bodies_decode_back_at_any_split(
        body in prop::collection::vec(any::<u8>(), 0..1500),
        sizes in prop::collection::vec(1usize..400, 1..8),
        styles in prop::collection::vec(size_style(), 1..4),
        trailers in prop::collection::vec((name(), value()), 0..3),
        splits in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let encoded = encode_chunked(&body, &sizes, &styles, &trailers);
        let mut input = encoded.clone();
        input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");

        let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.push(0);
        cuts.push(input.len());
        cuts.sort_unstable();

        let mut decoder = ChunkedDecoder::new(&Limits::default());
        let mut out = Vec::new();
        let mut at = 0;
        for window in cuts.windows(2) {
            let end = window[1].max(at);
            let d = decoder.decode(&input[at..end], &mut out).expect("valid chunked body");
            at += d.consumed;
            if d.done {
                break;
            }
            prop_assert_eq!(at, end, "an unfinished body takes every byte");
        }
        if !decoder.is_done() {
            let d = decoder.decode(&input[at..], &mut out).expect("valid chunked body");
            at += d.consumed;
        }
        prop_assert!(decoder.is_done());
        prop_assert_eq!(at, encoded.len(), "stops exactly after the body");
        prop_assert_eq!(decoder.body_len(), body.len() as u64);
        prop_assert_eq!(out, body);
    }
}

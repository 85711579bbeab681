//! The API's own description: the OpenAPI 3.1 document (`GET /openapi.json`) and the page that
//! renders it (`GET /docs`), each kept plain and gzip-encoded.
//!
//! Both are files in this folder, compiled in: `openapi.json` describes every endpoint, and
//! `docs.html` is a self-contained page (inline CSS and script, nothing fetched but
//! `/openapi.json`). [`Docs::new`] runs once per shard at start-up: it fills in what depends on
//! the configuration (the version, `MAX_ORDER_QTY`), keeps only the operations the mode serves,
//! and compresses; a request then copies bytes. This module knows nothing of routes or modes: the
//! caller says what is served.

use std::io::Write as _;

use proto_http::Method;
use serde_json::Value;

/// The document as written, before start-up fills it in.
const OPENAPI_TEMPLATE: &str = include_str!("openapi.json");

/// The page, served as it is.
const PAGE: &str = include_str!("docs.html");

/// Bodies up to this size go plain whatever the client accepts: below it, gzip's header and the
/// client's inflating cost about what they save (the threshold of the original's GZip middleware,
/// 500 bytes, is of the same order; the issue asked for 1 KiB).
pub const GZIP_MIN_BYTES: usize = 1024;

/// The operations an OpenAPI path item may hold, by their field names.
const OPERATIONS: [(&str, Method<'static>); 8] = [
    ("get", Method::Get),
    ("put", Method::Put),
    ("post", Method::Post),
    ("delete", Method::Delete),
    ("options", Method::Options),
    ("head", Method::Head),
    ("patch", Method::Patch),
    ("trace", Method::Trace),
];

/// Which of the two documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doc {
    /// `/openapi.json`.
    OpenApi,
    /// `/docs`.
    Page,
}

/// One document, ready to copy into a response.
#[derive(Debug)]
struct Encoded {
    /// `Content-Type`.
    content_type: &'static [u8],
    /// The bytes as they are.
    plain: Vec<u8>,
    /// The same bytes gzip-encoded, when `plain` is over [`GZIP_MIN_BYTES`].
    gzip: Option<Vec<u8>>,
}

impl Encoded {
    fn new(content_type: &'static [u8], plain: Vec<u8>) -> Encoded {
        let gzip = (plain.len() > GZIP_MIN_BYTES).then(|| gzip(&plain));
        Encoded {
            content_type,
            plain,
            gzip,
        }
    }
}

/// What a response carries: the body and how to label it.
#[derive(Clone, Copy, Debug)]
pub struct Body<'a> {
    /// `Content-Type`.
    pub content_type: &'static [u8],
    /// The bytes to send.
    pub bytes: &'a [u8],
    /// `bytes` are gzip-encoded (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// A gzip form exists, so the response depends on `Accept-Encoding` (`Vary`).
    pub vary: bool,
}

/// Both documents, as one shard serves them.
#[derive(Debug)]
pub struct Docs {
    /// `/openapi.json`.
    openapi: Encoded,
    /// `/docs`.
    page: Encoded,
}

impl Docs {
    /// [`Docs::new`], kept for the process's life.
    pub fn leak(
        max_order_qty: u64,
        serves: impl Fn(&str, Method<'static>) -> bool,
    ) -> &'static Docs {
        Box::leak(Box::new(Docs::new(max_order_qty, serves)))
    }

    /// The documents of a process whose orders take at most `max_order_qty` tickets and that
    /// answers `method` on `path` when `serves(path, method)`.
    pub fn new(max_order_qty: u64, serves: impl Fn(&str, Method<'static>) -> bool) -> Docs {
        let document = document(max_order_qty, serves);
        let json = serde_json::to_vec(&document).expect("a JSON value always serializes");
        Docs {
            openapi: Encoded::new(b"application/json", json),
            page: Encoded::new(b"text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        }
    }

    /// `doc` for a request whose `Accept-Encoding` field lines are `accept_encoding`.
    pub fn get<'v>(&self, doc: Doc, accept_encoding: impl Iterator<Item = &'v [u8]>) -> Body<'_> {
        let encoded = match doc {
            Doc::OpenApi => &self.openapi,
            Doc::Page => &self.page,
        };
        let gzip = encoded
            .gzip
            .as_deref()
            .filter(|_| accepts_gzip(accept_encoding));
        Body {
            content_type: encoded.content_type,
            bytes: gzip.unwrap_or(&encoded.plain),
            gzip: gzip.is_some(),
            vary: encoded.gzip.is_some(),
        }
    }
}

/// The OpenAPI document: the template with the version and the order limit filled in, and only
/// the operations `serves` says are answered (a path left with none goes too).
pub fn document(max_order_qty: u64, serves: impl Fn(&str, Method<'static>) -> bool) -> Value {
    let mut doc: Value = serde_json::from_str(OPENAPI_TEMPLATE).expect("openapi.json is JSON");
    doc["info"]["version"] = Value::from(env!("CARGO_PKG_VERSION"));
    let qty = &mut doc["components"]["schemas"]["Order"]["properties"]["qty"];
    assert!(qty.get("maximum").is_some(), "openapi.json: Order.qty");
    qty["maximum"] = Value::from(max_order_qty);
    let paths = doc["paths"].as_object_mut().expect("openapi.json: paths");
    paths.retain(|path, item| {
        let item = item.as_object_mut().expect("openapi.json: a path item");
        item.retain(
            |field, _| match OPERATIONS.iter().find(|(name, _)| name == field) {
                Some(&(_, method)) => serves(path, method),
                None => true,
            },
        );
        OPERATIONS.iter().any(|(name, _)| item.contains_key(*name))
    });
    doc
}

/// Whether an `Accept-Encoding` (its field lines, in order) accepts gzip (RFC 9110 §12.5.3):
/// `gzip` (or its alias `x-gzip`, §8.4.1.3) with a weight above 0, or else `*` with one. No
/// field, or a value that does not parse, accepts nothing but the plain body.
///
/// ```text
/// Accept-Encoding = #( codings [ weight ] )
/// codings         = content-coding / "identity" / "*"
/// weight          = OWS ";" OWS "q=" qvalue
/// qvalue          = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
/// ```
pub fn accepts_gzip<'v>(values: impl Iterator<Item = &'v [u8]>) -> bool {
    let (mut gzip, mut any) = (None, None);
    for element in values.flat_map(|v| v.split(|&b| b == b',')) {
        let mut parts = element.split(|&b| b == b';');
        let coding = trim(parts.next().unwrap_or_default());
        let mut weight = Some(true);
        for param in parts {
            let param = trim(param);
            weight = match param.split_first() {
                Some((q, rest)) if q.eq_ignore_ascii_case(&b'q') => {
                    rest.strip_prefix(b"=").and_then(qvalue_positive)
                }
                // Codings take no other parameters.
                _ => None,
            };
        }
        let Some(positive) = weight else { return false };
        if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            gzip = Some(positive);
        } else if coding == b"*" {
            any = Some(positive);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// Whether a qvalue is above 0; `None` when it is not one.
fn qvalue_positive(q: &[u8]) -> Option<bool> {
    let (int, frac) = match q.iter().position(|&b| b == b'.') {
        Some(dot) => (&q[..dot], &q[dot + 1..]),
        None => (q, &b""[..]),
    };
    let digits = frac.len() <= 3 && frac.iter().all(u8::is_ascii_digit);
    match int {
        b"0" if digits => Some(frac.iter().any(|&d| d != b'0')),
        b"1" if digits && frac.iter().all(|&d| d == b'0') => Some(true),
        _ => None,
    }
}

/// `bytes` without leading and trailing OWS (SP, HTAB).
fn trim(bytes: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `bytes` gzip-encoded at `level`.
pub fn gzip_at(bytes: &[u8], level: flate2::Compression) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
    encoder.write_all(bytes).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

/// `bytes` gzip-encoded at the best compression: this runs once per shard at start-up.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn accept_encoding() {
        let table: &[(&[&str], bool)] = &[
            (&[], false),
            (&["gzip"], true),
            (&["GZip"], true),
            (&["x-gzip"], true),
            (&["deflate, gzip;q=1.0, br"], true),
            (&["gzip;q=0"], false),
            (&["gzip; q=0.000"], false),
            (&["gzip;Q=0.001"], true),
            (&["gzip ; q=0.5"], true),
            (&["*"], true),
            (&["*;q=0"], false),
            (&["*, gzip;q=0"], false),
            (&["gzip;q=0, *"], false),
            (&["identity"], false),
            (&["br", "gzip"], true),
            (&["deflate"], false),
            (&[""], false),
            (&["gzip;q=2"], false),
            (&["gzip;q=1.5"], false),
            (&["gzip;q=0.1234"], false),
            (&["gzip;q="], false),
            (&["gzip;level=1"], false),
        ];
        for &(values, want) in table {
            let got = accepts_gzip(values.iter().map(|v| v.as_bytes()));
            assert_eq!(got, want, "{values:?}");
        }
    }

    #[test]
    fn the_document_keeps_what_is_served_and_fills_in_the_limit() {
        let doc = document(7, |path, method| {
            path != "/api/v1/reserve" && matches!(method, Method::Get | Method::Post)
        });
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let qty = &doc["components"]["schemas"]["Order"]["properties"]["qty"];
        assert_eq!(qty["maximum"], 7);
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/api/v1/purchase"));
        assert!(!paths.contains_key("/api/v1/reserve"));
    }

    /// Every code the server sends is in the document: the body errors, and every error of the
    /// request parser under the status it answers (a code added without its line in
    /// `openapi.json` fails here).
    #[test]
    fn every_error_code_is_documented() {
        let doc = document(1, |_, _| true);
        let codes = |response: &str| -> Vec<String> {
            let schema = &doc["components"]["responses"][response]["content"]["application/json"]
                ["schema"]["allOf"][1]["properties"]["code"]["enum"];
            let codes = schema.as_array().unwrap_or_else(|| panic!("{response}"));
            codes
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect()
        };
        let default = codes("HttpError");
        for e in proto_http::Error::ALL {
            if e == proto_http::Error::BadStatusLine {
                continue; // a response parser's error: no request gets it
            }
            assert!(default.contains(&e.as_str().to_owned()), "{e:?}");
            if e.status() == 400 {
                assert!(
                    codes("BadRequest").contains(&e.as_str().to_owned()),
                    "{e:?}"
                );
            }
        }
        use crate::app::body::BodyError::*;
        for e in [
            NotJson,
            NotObject,
            MissingQty,
            DuplicateQty,
            QtyNotInteger,
            QtyOutOfRange,
        ] {
            let response = if e.status() == 400 {
                "BadRequest"
            } else {
                "InvalidOrder"
            };
            assert!(codes(response).contains(&e.code().to_owned()), "{e:?}");
        }
        for code in ["not_found", "method_not_allowed", "rate_limited"] {
            assert!(default.contains(&code.to_owned()));
        }
        assert_eq!(codes("RateLimited"), ["rate_limited"]);
    }

    #[test]
    fn large_documents_have_a_gzip_form_that_inflates_to_the_plain_one() {
        let docs = Docs::new(5, |_, _| true);
        for doc in [Doc::OpenApi, Doc::Page] {
            let plain = docs.get(doc, std::iter::empty());
            assert!(!plain.gzip && plain.vary);
            let gz = docs.get(doc, [&b"gzip"[..]].into_iter());
            assert!(gz.gzip && gz.bytes.len() < plain.bytes.len());
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(gz.bytes)
                .read_to_end(&mut inflated)
                .unwrap();
            assert_eq!(inflated, plain.bytes);
        }
    }
}

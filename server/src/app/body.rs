//! The purchase and reserve request body, `{"qty": n}`.
//!
//! Two parsers sit behind [`parse_qty`]:
//!
//! - [`parse_qty_fast`], a hand-written scanner (the shared [`crate::json::Cursor`]) for the
//!   canonical shape `{"qty":N}` with optional JSON whitespace around every token. Every client we
//!   know of (the original k6 script, curl examples, Python's `json=`) sends exactly that, so this
//!   is the only parser on the hot path. It allocates nothing and declines (`None`) whenever it is
//!   not sure.
//! - The full path, for every body the fast path declines: serde_json, strict RFC 8259, read
//!   through a visitor of our own that never fails, so that any error serde_json reports means
//!   "not JSON" and everything else is classified from what the visitor saw.
//!
//! The rules, decided once here and shared by both paths (`parse_qty_fast` never answers
//! differently from the full path; a property test holds it to that, and another holds the full
//! path to an independent classification over `serde_json::Value`):
//!
//! | body | result |
//! |---|---|
//! | not JSON (see [`BodyError::NotJson`]), `{"qty":1}x` | [`BodyError::NotJson`], 400 |
//! | JSON, but not an object (`[1]`, `null`, `3`, `"qty"`) | [`BodyError::NotObject`], 422 |
//! | an object with `"qty"` more than once | [`BodyError::DuplicateQty`], 422 |
//! | an object without `"qty"` | [`BodyError::MissingQty`], 422 |
//! | `qty` not a JSON integer (`1.0`, `1e3`, `-0`, `"1"`, `null`, `true`, `[1]`, `{}`) | [`BodyError::QtyNotInteger`], 422 |
//! | `qty` an integer outside `1..=max_qty` (`0`, `-5`, `99999999999999999999999`) | [`BodyError::QtyOutOfRange`], 422 |
//! | otherwise | `Ok(qty)` |
//!
//! Other fields in the object are ignored, as the original FastAPI/pydantic service ignored them;
//! a client that sends `{"qty": 1, "user": "x"}` keeps working.
//!
//! Why not simd-json, the faster parser: simd-json 0.15.1 accepts some bodies that are not JSON
//! (`{"qty":1}` followed by a NUL byte; a float of 19 or more digits followed by garbage, as in
//! `{"qty":1.00000000000000000000x}`), misreads such floats depending on where they sit in the
//! body, and refuses valid integers from -2^64+1 to -2^63-1. The full path is off the hot path,
//! so exactness wins. Why not `#[derive(Deserialize)]`: a derived struct also accepts a JSON
//! array (`[1]` as `{"qty":1}`), and its errors can only be told apart by their messages.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::json::Cursor;

/// Why a body was rejected. [`BodyError::status`] is 400 for [`BodyError::NotJson`] and 422 for
/// the rest (the body is JSON, but not the JSON we want).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The body is not one JSON value (RFC 8259): empty, a syntax error, invalid UTF-8, an
    /// unpaired surrogate escape such as `"\ud800"` (not valid Unicode), something other than
    /// whitespace after the value (`{"qty":1}x`, `{"qty":1}{}`), arrays and objects nested
    /// deeper than 127 levels (serde_json's guard for the stack), or a number too large for an
    /// `f64` (`1e400`).
    NotJson,
    /// The body is JSON but not an object: an array (even `[1]`), a string, a number, a boolean
    /// or `null`.
    NotObject,
    /// The object has no `"qty"` member. Names are compared after unescaping, so `"q\u0074y"` is
    /// `qty`; the comparison is case-sensitive, so `"QTY"` is not.
    MissingQty,
    /// The object has `"qty"` more than once. JSON leaves duplicate names to the receiver; picking
    /// the first or the last would silently sell a quantity the client may not have meant.
    DuplicateQty,
    /// `qty` is not a JSON integer: a string, `null`, a boolean, an array, an object, or a number
    /// with a fraction or exponent (`1.0`, `1e3`) even when its value is whole. `-0` counts as a
    /// float here, because serde_json reads it as -0.0.
    QtyNotInteger,
    /// `qty` is an integer outside `1..=max_qty`: zero, negative, above the maximum, or beyond
    /// 64 bits. serde_json reads an integer literal beyond 64 bits as a float, so any number whose
    /// magnitude is at least 2^63 lands here rather than in [`BodyError::QtyNotInteger`], whatever
    /// its spelling (`1e19` too): no quantity could be that large.
    QtyOutOfRange,
}

impl BodyError {
    /// The HTTP status for this rejection: 400 when the body is not JSON, 422 when it is JSON of
    /// the wrong shape (FastAPI's choice, which the original clients expect).
    pub fn status(self) -> u16 {
        match self {
            BodyError::NotJson => 400,
            BodyError::NotObject
            | BodyError::MissingQty
            | BodyError::DuplicateQty
            | BodyError::QtyNotInteger
            | BodyError::QtyOutOfRange => 422,
        }
    }

    /// A stable snake_case identifier for the `code` field of the error body; clients may match
    /// on it, so it never changes.
    pub fn code(self) -> &'static str {
        match self {
            BodyError::NotJson => "not_json",
            BodyError::NotObject => "not_object",
            BodyError::MissingQty => "missing_qty",
            BodyError::DuplicateQty => "duplicate_qty",
            BodyError::QtyNotInteger => "qty_not_integer",
            BodyError::QtyOutOfRange => "qty_out_of_range",
        }
    }

    /// A sentence for humans, for the `detail` field of the error body.
    pub fn detail(self) -> &'static str {
        match self {
            BodyError::NotJson => "The request body is not valid JSON.",
            BodyError::NotObject => "The request body must be a JSON object such as {\"qty\": 1}.",
            BodyError::MissingQty => "The field \"qty\" is required.",
            BodyError::DuplicateQty => "The field \"qty\" must appear only once.",
            BodyError::QtyNotInteger => {
                "The field \"qty\" must be a JSON integer such as 1, without fraction or exponent."
            }
            BodyError::QtyOutOfRange => {
                "The field \"qty\" must be at least 1 and at most the maximum order quantity."
            }
        }
    }
}

/// Parses a request body into `qty`, with `1 <= qty <= max_qty`.
///
/// Tries [`parse_qty_fast`] first, which allocates nothing. Only a body it declines goes to the
/// full parser, which reads the body where it lies and allocates only to unescape a string
/// containing escapes.
///
/// # Panics
/// If `max_qty` is 0: configuration guarantees at least 1, so 0 is a programmer error.
pub fn parse_qty(body: &[u8], max_qty: u64) -> Result<u64, BodyError> {
    match parse_qty_fast(body, max_qty) {
        Some(result) => result,
        None => parse_qty_full(body, max_qty),
    }
}

/// The strict fast path alone. `Some(result)` when the body is the canonical shape
/// `{"qty":N}` (JSON whitespace allowed before and after every token, N a plain decimal integer
/// without sign, leading zero, fraction or exponent that fits in a `u64`); `None` when it is
/// anything else, which the full path must then decide.
///
/// Besides `Some(Ok(n))` it answers `Some(Err(BodyError::QtyOutOfRange))` for a canonical body
/// whose N is 0 or above `max_qty`: that answer is as certain as an acceptance. It never answers
/// any other error.
///
/// # Panics
/// If `max_qty` is 0 (see [`parse_qty`]).
pub fn parse_qty_fast(body: &[u8], max_qty: u64) -> Option<Result<u64, BodyError>> {
    assert!(max_qty >= 1, "max_qty must be at least 1");
    // The grammar accepted, a subset of RFC 8259's:
    //   ws "{" ws %x22.71.74.79.22 ws ":" ws ( "0" / digit1-9 *DIGIT ) ws "}" ws
    //   ws = *( %x20 / %x09 / %x0A / %x0D )
    let mut json = Cursor::new(body);
    json.token(b"{")?;
    json.token(b"\"qty\"")?;
    json.token(b":")?;
    // A leading zero, an overflow, a fraction or an exponent declines: the full path classifies.
    let qty = json.integer()?;
    json.token(b"}")?;
    if !json.finish() {
        return None;
    }
    Some(check_range(qty, max_qty))
}

/// `Ok(qty)` when `1 <= qty <= max_qty`.
fn check_range(qty: u64, max_qty: u64) -> Result<u64, BodyError> {
    if (1..=max_qty).contains(&qty) {
        Ok(qty)
    } else {
        Err(BodyError::QtyOutOfRange)
    }
}

/// The full path: serde_json reads the whole body through [`Kind`]'s visitor, which accepts every
/// JSON value, so an error can only mean the body is not JSON.
fn parse_qty_full(body: &[u8], max_qty: u64) -> Result<u64, BodyError> {
    assert!(max_qty >= 1, "max_qty must be at least 1");
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let kind = Kind::deserialize(&mut deserializer).and_then(|kind| {
        // Only whitespace may follow the value.
        deserializer.end()?;
        Ok(kind)
    });
    match kind {
        Err(_) => Err(BodyError::NotJson),
        Ok(Kind::Number(_) | Kind::Other) => Err(BodyError::NotObject),
        Ok(Kind::Object(Qty::Missing)) => Err(BodyError::MissingQty),
        Ok(Kind::Object(Qty::Repeated)) => Err(BodyError::DuplicateQty),
        Ok(Kind::Object(Qty::Once(None))) => Err(BodyError::QtyNotInteger),
        Ok(Kind::Object(Qty::Once(Some(number)))) => classify_number(number, max_qty),
    }
}

/// The smallest magnitude that no integer literal within 64 bits has: 2^63. serde_json hands us
/// any integer literal beyond 64 bits as a float, and every such float is at least this large.
const FLOAT_MAGNITUDE_OUT_OF_RANGE: f64 = 9_223_372_036_854_775_808.0;

/// Classifies the number given as `qty`.
fn classify_number(number: Number, max_qty: u64) -> Result<u64, BodyError> {
    match number {
        Number::Unsigned(qty) => check_range(qty, max_qty),
        Number::Negative => Err(BodyError::QtyOutOfRange),
        Number::Float(qty) if qty.abs() >= FLOAT_MAGNITUDE_OUT_OF_RANGE => {
            Err(BodyError::QtyOutOfRange)
        }
        Number::Float(_) => Err(BodyError::QtyNotInteger),
    }
}

/// A JSON number as serde_json reads it.
#[derive(Clone, Copy, Debug)]
enum Number {
    /// An integer literal from 0 to `u64::MAX`.
    Unsigned(u64),
    /// A negative integer literal down to `i64::MIN`.
    Negative,
    /// Any other number: one with a fraction or exponent, `-0`, or an integer beyond 64 bits.
    Float(f64),
}

/// What an object's `"qty"` members were.
#[derive(Clone, Copy, Debug)]
enum Qty {
    /// None.
    Missing,
    /// One, with its value when that is a number (`None`: any other kind of value).
    Once(Option<Number>),
    /// More than one.
    Repeated,
}

/// What a JSON value is, as far as the body's rules go. Reading one consumes the whole value,
/// nested contents included, checking them as strictly as `serde_json::Value` would (strings are
/// decoded, so an unpaired surrogate escape is refused wherever it is).
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A number.
    Number(Number),
    /// An object, with what its own `"qty"` members were.
    Object(Qty),
    /// A string, boolean, `null` or array.
    Other,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Kind, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

/// The visitor behind [`Kind`]. It accepts every JSON value, so it never fails on its own.
struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_u64<E>(self, value: u64) -> Result<Kind, E> {
        Ok(Kind::Number(Number::Unsigned(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Kind, E> {
        Ok(Kind::Number(match u64::try_from(value) {
            Ok(value) => Number::Unsigned(value),
            Err(_) => Number::Negative,
        }))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Kind, E> {
        Ok(Kind::Number(Number::Float(value)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        while seq.next_element::<Kind>()?.is_some() {}
        Ok(Kind::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        // Read every member even after a duplicate, so that a later syntax error still wins.
        let mut qty = Qty::Missing;
        while let Some(is_qty) = map.next_key_seed(NameIsQty)? {
            let value = map.next_value::<Kind>()?;
            if is_qty {
                qty = match (qty, value) {
                    (Qty::Missing, Kind::Number(number)) => Qty::Once(Some(number)),
                    (Qty::Missing, _) => Qty::Once(None),
                    (Qty::Once(_) | Qty::Repeated, _) => Qty::Repeated,
                };
            }
        }
        Ok(Kind::Object(qty))
    }
}

/// Reads an object member's name and tells whether it is `qty` (after unescaping).
struct NameIsQty;

impl<'de> DeserializeSeed<'de> for NameIsQty {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for NameIsQty {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<bool, E> {
        Ok(name == "qty")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u64 = 1_000_000_000;

    use BodyError::*;

    /// Body → expected result with `max_qty = MAX`, and whether the fast path must answer it
    /// (`true`) or may decline (`false`).
    #[rustfmt::skip]
    const TABLE: &[(&str, Result<u64, BodyError>, bool)] = &[
        // The canonical shape and its whitespace variants: all on the fast path.
        (r#"{"qty":1}"#, Ok(1), true),
        (r#"{"qty": 3}"#, Ok(3), true),
        (r#"{ "qty" : 3 }"#, Ok(3), true),
        ("{\"qty\":7}\n", Ok(7), true),
        ("\r\n\t {\t\"qty\"\r\n:\n42\t}\r\n", Ok(42), true),
        (r#"{"qty":1000000000}"#, Ok(MAX), true),
        (r#"{"qty":1000000001}"#, Err(QtyOutOfRange), true),
        (r#"{"qty":0}"#, Err(QtyOutOfRange), true),
        (r#"{"qty":18446744073709551615}"#, Err(QtyOutOfRange), true),
        // Integers the fast path leaves to the full path.
        (r#"{"qty":-5}"#, Err(QtyOutOfRange), false),
        (r#"{"qty":-9223372036854775808}"#, Err(QtyOutOfRange), false),
        (r#"{"qty":-9223372036854775809}"#, Err(QtyOutOfRange), false),
        (r#"{"qty":-18446744073709551615}"#, Err(QtyOutOfRange), false),
        (r#"{"qty":18446744073709551616}"#, Err(QtyOutOfRange), false),
        (r#"{"qty":99999999999999999999999999}"#, Err(QtyOutOfRange), false),
        (r#"{"qty":-99999999999999999999999999}"#, Err(QtyOutOfRange), false),
        (r#"{"qty":10000000000000000000.5}"#, Err(QtyOutOfRange), false),
        (r#"{"qty":1e30}"#, Err(QtyOutOfRange), false),
        (r#"{"qty":-1e19}"#, Err(QtyOutOfRange), false),
        // Other members are ignored, wherever they are and whatever they hold.
        (r#"{"qty":2,"user":"ann"}"#, Ok(2), false),
        (r#"{"user":{"a":[1,{"qty":9}]},"qty":2}"#, Ok(2), false),
        (r#"{"QTY":1,"qty":5,"Qty":[]}"#, Ok(5), false),
        (r#"{"q\u0074y":4}"#, Ok(4), false),
        (r#"{"qty":2,"note":"\u00e9\ud83d\ude00"}"#, Ok(2), false),
        (r#"{"a":[-10000000000000000000,"-1"],"qty":3}"#, Ok(3), false),
        (r#"{"a":-10000000000000000000.5e1,"qty":3}"#, Ok(3), false),
        // Not an integer.
        (r#"{"qty":1.0}"#, Err(QtyNotInteger), false),
        (r#"{"qty":1.5}"#, Err(QtyNotInteger), false),
        (r#"{"qty":1e3}"#, Err(QtyNotInteger), false),
        (r#"{"qty":1E0}"#, Err(QtyNotInteger), false),
        (r#"{"qty":-1.5}"#, Err(QtyNotInteger), false),
        (r#"{"qty":-0}"#, Err(QtyNotInteger), false),
        (r#"{"qty":"1"}"#, Err(QtyNotInteger), false),
        (r#"{"qty":null}"#, Err(QtyNotInteger), false),
        (r#"{"qty":true}"#, Err(QtyNotInteger), false),
        (r#"{"qty":false}"#, Err(QtyNotInteger), false),
        (r#"{"qty":[1]}"#, Err(QtyNotInteger), false),
        (r#"{"qty":{}}"#, Err(QtyNotInteger), false),
        (r#"{"qty":{"qty":1}}"#, Err(QtyNotInteger), false),
        // Missing or repeated.
        ("{}", Err(MissingQty), false),
        (r#"{"QTY":1}"#, Err(MissingQty), false),
        (r#"{"qty ":1}"#, Err(MissingQty), false),
        (r#"{"a":{"qty":1}}"#, Err(MissingQty), false),
        (r#"{"qty":1,"qty":1}"#, Err(DuplicateQty), false),
        (r#"{"qty":1,"qty":"x"}"#, Err(DuplicateQty), false),
        (r#"{"qty":1,"q\u0074y":2}"#, Err(DuplicateQty), false),
        // JSON, but not an object.
        ("[1]", Err(NotObject), false),
        (r#"[{"qty":1}]"#, Err(NotObject), false),
        ("[]", Err(NotObject), false),
        ("null", Err(NotObject), false),
        ("1", Err(NotObject), false),
        (r#""qty""#, Err(NotObject), false),
        ("true", Err(NotObject), false),
        // Not JSON at all.
        ("", Err(NotJson), false),
        ("   \n", Err(NotJson), false),
        ("qty=1", Err(NotJson), false),
        (r#"{"qty":1"#, Err(NotJson), false),
        (r#"{"qty":1}x"#, Err(NotJson), false),
        (r#"{"qty":1}}"#, Err(NotJson), false),
        (r#"{"qty":1}{}"#, Err(NotJson), false),
        (r#"{"qty":1},"#, Err(NotJson), false),
        ("{\"qty\":1}\0", Err(NotJson), false),
        ("{\"qty\":1\0}", Err(NotJson), false),
        ("{\"qty\":\"\0\"}", Err(NotJson), false),
        (r#"{"qty":01}"#, Err(NotJson), false),
        (r#"{"qty":+1}"#, Err(NotJson), false),
        (r#"{"qty":1.}"#, Err(NotJson), false),
        (r#"{"qty":.5}"#, Err(NotJson), false),
        (r#"{"qty":0x10}"#, Err(NotJson), false),
        (r#"{"qty":NaN}"#, Err(NotJson), false),
        (r#"{"qty":Infinity}"#, Err(NotJson), false),
        (r#"{"qty":1e400}"#, Err(NotJson), false),
        (r#"{"qty":1.00000000000000000000x}"#, Err(NotJson), false),
        (r#"{"a":-10000000000000000000x,"qty":3}"#, Err(NotJson), false),
        (r#"{"qty":1,}"#, Err(NotJson), false),
        (r#"{qty:1}"#, Err(NotJson), false),
        (r#"{'qty':1}"#, Err(NotJson), false),
        (r#"{"qty" 1}"#, Err(NotJson), false),
        ("{\"qty\":\u{a0}1}", Err(NotJson), false),
        (r#"{"qty":1} // comment"#, Err(NotJson), false),
        // An unpaired surrogate escape is not Unicode: refused wherever it is.
        (r#"{"qty":2,"note":"\ud800"}"#, Err(NotJson), false),
        (r#"{"\udc00":1,"qty":2}"#, Err(NotJson), false),
        (r#"{"qty":"\ud800"}"#, Err(NotJson), false),
    ];

    #[test]
    fn table() {
        assert!(TABLE.len() >= 40);
        for &(body, expected, fast) in TABLE {
            let got = parse_qty(body.as_bytes(), MAX);
            assert_eq!(got, expected, "parse_qty({body:?})");
            let full = parse_qty_full(body.as_bytes(), MAX);
            assert_eq!(full, expected, "parse_qty_full({body:?})");
            let fast_result = parse_qty_fast(body.as_bytes(), MAX);
            if fast {
                assert_eq!(fast_result, Some(expected), "parse_qty_fast({body:?})");
            } else {
                assert_eq!(fast_result, None, "parse_qty_fast({body:?}) should decline");
            }
        }
    }

    #[test]
    fn invalid_utf8_is_not_json() {
        for body in [
            &b"{\"qty\":1,\"a\":\"\xff\"}"[..],
            b"{\"\xc3\x28\":1}",
            b"\xff",
        ] {
            assert_eq!(parse_qty(body, MAX), Err(NotJson), "{body:?}");
        }
    }

    /// Nesting is bounded (serde_json stops past 127 levels), so a peer cannot exhaust the
    /// stack: 127 levels in all are classified, 128 are not JSON, and 100,000 return promptly.
    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let cases = [
            (format!(r#"{{"a":{},"qty":3}}"#, nested(126)), Ok(3)),
            (format!(r#"{{"qty":{}}}"#, nested(126)), Err(QtyNotInteger)),
            (nested(127), Err(NotObject)),
            (format!(r#"{{"a":{},"qty":3}}"#, nested(127)), Err(NotJson)),
            (nested(128), Err(NotJson)),
            (
                format!(r#"{{"a":{},"qty":3}}"#, nested(100_000)),
                Err(NotJson),
            ),
            (
                format!(r#"{{"qty":{}}}"#, "{\"a\":".repeat(100_000)),
                Err(NotJson),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse_qty(body.as_bytes(), MAX), expected, "{}", body.len());
            assert_eq!(oracle(body.as_bytes(), MAX), expected, "{}", body.len());
        }
    }

    #[test]
    fn max_qty_bounds_are_inclusive() {
        for body in [r#"{"qty":1}"#, r#"{"qty": 1 ,"x":0}"#] {
            assert_eq!(parse_qty(body.as_bytes(), 1), Ok(1));
        }
        let body = format!(r#"{{"qty":{}}}"#, u64::MAX);
        assert_eq!(parse_qty(body.as_bytes(), u64::MAX), Ok(u64::MAX));
        let body = format!(r#"{{"qty":{} }}"#, i64::MAX);
        let max = i64::MAX as u64;
        assert_eq!(parse_qty(body.as_bytes(), max), Ok(max));
        assert_eq!(parse_qty(body.as_bytes(), max - 1), Err(QtyOutOfRange));
    }

    #[test]
    fn every_error_has_a_status_code_and_detail() {
        let all = [
            NotJson,
            NotObject,
            MissingQty,
            DuplicateQty,
            QtyNotInteger,
            QtyOutOfRange,
        ];
        let mut codes: Vec<&str> = all.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "codes are distinct");
        for error in all {
            let expected = if error == NotJson { 400 } else { 422 };
            assert_eq!(error.status(), expected, "{error:?}");
            assert!(error
                .code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(error.detail().ends_with('.'), "{error:?}");
            // Every variant is reachable: the table has a row for each.
            assert!(
                TABLE.iter().any(|row| row.1 == Err(error)),
                "{error:?} untested"
            );
        }
    }

    /// The same rules written independently, over `serde_json::Value`. The object's members are
    /// also collected as a list so that duplicate names stay visible (`serde_json::Map` keeps
    /// only the last).
    fn oracle(body: &[u8], max_qty: u64) -> Result<u64, BodyError> {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Err(NotJson);
        };
        if !value.is_object() {
            return Err(NotObject);
        }
        let Members(members) = serde_json::from_slice(body).expect("an object a second time");
        let mut qtys = members
            .into_iter()
            .filter(|(key, _)| key == "qty")
            .map(|(_, v)| v);
        let qty = match (qtys.next(), qtys.next()) {
            (None, _) => return Err(MissingQty),
            (Some(_), Some(_)) => return Err(DuplicateQty),
            (Some(qty), None) => qty,
        };
        if let Some(qty) = qty.as_u64() {
            check_range(qty, max_qty)
        } else if qty.is_i64() {
            Err(QtyOutOfRange) // negative
        } else if let Some(qty) = qty.as_f64() {
            if qty.abs() >= FLOAT_MAGNITUDE_OUT_OF_RANGE {
                Err(QtyOutOfRange)
            } else {
                Err(QtyNotInteger)
            }
        } else {
            Err(QtyNotInteger)
        }
    }

    /// A JSON object's members in order, duplicates included.
    struct Members(Vec<(String, serde_json::Value)>);

    impl<'de> serde::Deserialize<'de> for Members {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Members;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Members, A::Error> {
                    let mut members = Vec::new();
                    while let Some(member) = map.next_entry()? {
                        members.push(member);
                    }
                    Ok(Members(members))
                }
            }
            deserializer.deserialize_map(Visit)
        }
    }

    /// Checks one body against all three parsers.
    fn check_agreement(body: &[u8], max_qty: u64) -> Result<(), TestCaseError> {
        let full = parse_qty_full(body, max_qty);
        if let Some(fast) = parse_qty_fast(body, max_qty) {
            prop_assert_eq!(
                fast,
                full,
                "fast path disagrees on {:?}",
                String::from_utf8_lossy(body)
            );
        }
        prop_assert_eq!(parse_qty(body, max_qty), full);
        let expected = oracle(body, max_qty);
        prop_assert_eq!(
            full,
            expected,
            "serde_json::Value disagrees on {:?}",
            String::from_utf8_lossy(body)
        );
        Ok(())
    }

    /// JSON whitespace, including none.
    fn ws() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", "", " ", "  ", "\t", "\n", "\r\n", " \n\t"])
    }

    /// Number literals, valid and not: signs, leading zeros, fractions, exponents, huge ones.
    fn number() -> impl Strategy<Value = String> {
        let digits = "[0-9]{1,25}";
        prop_oneof![
            4 => (1u64..2_000_000_000).prop_map(|n| n.to_string()),
            2 => any::<u64>().prop_map(|n| n.to_string()),
            2 => any::<i64>().prop_map(|n| n.to_string()),
            1 => Just("0".to_string()),
            1 => Just("-0".to_string()),
            2 => (prop::sample::select(vec!["", "-", "+", "0", "-0", "00"]), digits)
                .prop_map(|(sign, digits)| format!("{sign}{digits}")),
            2 => (digits, prop::sample::select(vec![".", ".0", ".5", "e3", "E-2", "e+400", "e", ".e1"]))
                .prop_map(|(digits, tail)| format!("{digits}{tail}")),
            1 => any::<f64>().prop_map(|f| f.to_string()),
        ]
    }

    /// A JSON-ish value for `qty` or another member.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => number(),
            1 => prop::sample::select(vec![
                "null", "true", "false", "\"1\"", "\"\"", "[]", "[1]", "{}", "{\"qty\":1}",
                "nul", "\"\\ud800\"", "\"\\u00e9\"", "[1,]", "'1'",
            ])
            .prop_map(str::to_string),
        ]
    }

    /// Member names: mostly `qty`, in its spellings and near misses.
    fn key() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "\"qty\"",
            "\"qty\"",
            "\"qty\"",
            "\"q\\u0074y\"",
            "\"QTY\"",
            "\"qty \"",
            "\"user\"",
            "\"a\"",
            "qty",
            "\"qty",
        ])
    }

    /// Bodies near the canonical shape: an object (or, rarely, something else) of random
    /// members with random whitespace, optionally followed by garbage.
    fn near_canonical() -> impl Strategy<Value = String> {
        let member = (ws(), key(), ws(), ws(), value(), ws())
            .prop_map(|(w1, k, w2, w3, v, w4)| format!("{w1}{k}{w2}:{w3}{v}{w4}"));
        let members = prop::collection::vec(member, 0..4);
        let separator = prop::sample::select(vec![",", ",", ",", ",", "", ",,"]);
        let wrapper = prop::sample::select(vec![
            ("{", "}"),
            ("{", "}"),
            ("{", "}"),
            ("[", "]"),
            ("{", ""),
        ]);
        let trailing = prop::sample::select(vec!["", "", "", "\n", " ", "x", "}", ",", "{}", "\0"]);
        (ws(), wrapper, members, separator, trailing).prop_map(
            |(w, (open, close), members, separator, trailing)| {
                format!("{w}{open}{}{close}{w}{trailing}", members.join(separator))
            },
        )
    }

    /// The canonical shape with random whitespace and any unsigned number.
    fn canonical() -> impl Strategy<Value = (String, u64)> {
        (ws(), ws(), ws(), ws(), ws(), ws(), ws(), any::<u64>()).prop_map(
            |(w1, w2, w3, w4, w5, w6, w7, n)| {
                (format!("{w1}{{{w2}\"qty\"{w3}:{w4}{n}{w5}}}{w6}{w7}"), n)
            },
        )
    }

    fn max_qty() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(MAX),
            Just(1),
            Just(i64::MAX as u64),
            Just(u64::MAX),
            1..u64::MAX
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn random_bytes_agree(body in prop::collection::vec(any::<u8>(), 0..48), max in max_qty()) {
            check_agreement(&body, max)?;
        }

        #[test]
        fn json_alphabet_agrees(
            body in "[{}\\[\\]\":,qty0-9 \\-+.eE\n]{0,24}",
            max in max_qty(),
        ) {
            check_agreement(body.as_bytes(), max)?;
        }

        #[test]
        fn near_canonical_bodies_agree(body in near_canonical(), max in max_qty()) {
            check_agreement(body.as_bytes(), max)?;
        }

        /// The fast path answers every canonical body itself.
        #[test]
        fn fast_path_takes_every_canonical_body((body, n) in canonical(), max in max_qty()) {
            let expected = check_range(n, max);
            prop_assert_eq!(parse_qty_fast(body.as_bytes(), max), Some(expected));
            check_agreement(body.as_bytes(), max)?;
        }
    }
}

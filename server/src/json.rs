//! The hand-written JSON scanner for the few fixed shapes ticketd reads without a parser: the
//! `{"qty":N}` fast path of a request body (`app/body.rs`) and the vacancy service's replies
//! (`forward/upstream/reply.rs`). One [`Cursor`] over the bytes, with the three things those
//! shapes are made of: whitespace, exact tokens and unsigned integers.
//!
//! It is a scanner, not a parser: it knows no nesting, no strings with escapes, no floats. A
//! caller reads the one shape it expects and gives up (`None`) at the first byte that is not that
//! shape; whether such a body is still valid JSON is for a full parser (body.rs) or is simply an
//! unusable answer (upstream).
//!
//! Grammar (RFC 8259 §2 and §6), as far as it is implemented here:
//!
//! ```text
//! ws  = *( %x20 / %x09 / %x0A / %x0D )   ; space, tab, line feed, carriage return
//! int = "0" / digit1-9 *DIGIT            ; no sign, no leading zero, no fraction, no exponent
//! ```
//!
//! Invariants: nothing allocates or panics, whatever the input; a read that fails (`None`)
//! leaves the cursor where it was. Knows nothing of HTTP, tickets or the modules that use it.

/// JSON whitespace (RFC 8259 §2): space, tab, line feed, carriage return. Nothing else, not even
/// a no-break space or a form feed.
pub fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A position in JSON text. `Copy`, so a caller can try one reading and fall back to another.
#[derive(Clone, Copy, Debug)]
pub struct Cursor<'b> {
    /// The text.
    bytes: &'b [u8],
    /// The next byte to read, at most `bytes.len()`.
    at: usize,
}

impl<'b> Cursor<'b> {
    /// A cursor at the first byte of `bytes`.
    pub fn new(bytes: &'b [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }

    /// A cursor at `bytes[at]` (or at the end when `at` is past it).
    pub fn at(bytes: &'b [u8], at: usize) -> Self {
        Cursor {
            bytes,
            at: at.min(bytes.len()),
        }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'b [u8] {
        &self.bytes[self.at..]
    }

    /// Skips whitespace.
    pub fn skip_whitespace(&mut self) {
        while self.bytes.get(self.at).copied().is_some_and(is_whitespace) {
            self.at += 1;
        }
    }

    /// Skips whitespace, then `token` exactly. `None`, and the cursor unmoved, when the text
    /// does not continue with it.
    pub fn token(&mut self, token: &[u8]) -> Option<()> {
        let mut next = *self;
        next.skip_whitespace();
        next.rest().starts_with(token).then(|| {
            self.at = next.at + token.len();
        })
    }

    /// Skips whitespace, then reads a JSON integer without sign (`int` above) that fits in a
    /// `u64`. `None`, and the cursor unmoved, for anything else: no digit, a leading zero (`01`
    /// is not JSON), more than `u64::MAX`, or a number that goes on with a fraction or exponent
    /// (`1.0`, `1e3`: not an integer literal, whatever its value).
    pub fn integer(&mut self) -> Option<u64> {
        let mut next = *self;
        next.skip_whitespace();
        let rest = next.rest();
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let text = &rest[..digits];
        if digits == 0 || (digits > 1 && text[0] == b'0') {
            return None;
        }
        if matches!(rest.get(digits), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let value = text.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })?;
        self.at = next.at + digits;
        Some(value)
    }

    /// Skips whitespace; true when nothing else is left.
    pub fn finish(mut self) -> bool {
        self.skip_whitespace();
        self.at == self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_only_rfc_8259s() {
        for b in 0..=255u8 {
            assert_eq!(
                is_whitespace(b),
                b" \t\n\r".contains(&b),
                "{b:#04x} is whitespace?"
            );
        }
    }

    #[test]
    fn integers() {
        // (text, value, what is left after it)
        let table: &[(&str, Option<u64>, &str)] = &[
            ("0", Some(0), ""),
            ("7", Some(7), ""),
            (" \t\r\n42}", Some(42), "}"),
            ("10,", Some(10), ","),
            ("0}", Some(0), "}"),
            ("18446744073709551615", Some(u64::MAX), ""),
            ("1 2", Some(1), " 2"),
            ("1-", Some(1), "-"),
            // Refused, and the cursor stays where it was.
            ("", None, ""),
            ("  ", None, "  "),
            ("18446744073709551616", None, "18446744073709551616"),
            ("99999999999999999999999", None, "99999999999999999999999"),
            ("01", None, "01"),
            ("00", None, "00"),
            ("-1", None, "-1"),
            ("+1", None, "+1"),
            ("-0", None, "-0"),
            ("1.0", None, "1.0"),
            ("0.5", None, "0.5"),
            ("1e3", None, "1e3"),
            ("1E0", None, "1E0"),
            (" 1.", None, " 1."),
            ("\u{a0}1", None, "\u{a0}1"),
            ("\x0c1", None, "\x0c1"),
            ("x1", None, "x1"),
            ("\"1\"", None, "\"1\""),
        ];
        for &(text, want, left) in table {
            let mut cursor = Cursor::new(text.as_bytes());
            assert_eq!(cursor.integer(), want, "{text:?}");
            assert_eq!(cursor.rest(), left.as_bytes(), "{text:?}");
        }
    }

    #[test]
    fn tokens() {
        // (text, token, found, what is left)
        let table: &[(&str, &str, bool, &str)] = &[
            ("{", "{", true, ""),
            (" \n{\"qty\"", "{", true, "\"qty\""),
            ("\"qty\" :", "\"qty\"", true, " :"),
            ("\t:1", ":", true, "1"),
            ("true,", "true", true, ","),
            ("", "}", false, ""),
            (" ]", "}", false, " ]"),
            ("\"qt\"", "\"qty\"", false, "\"qt\""),
            ("\u{a0}{", "{", false, "\u{a0}{"),
        ];
        for &(text, token, found, left) in table {
            let mut cursor = Cursor::new(text.as_bytes());
            assert_eq!(
                cursor.token(token.as_bytes()).is_some(),
                found,
                "{text:?} {token:?}"
            );
            assert_eq!(cursor.rest(), left.as_bytes(), "{text:?} {token:?}");
        }
    }

    #[test]
    fn finish_allows_only_trailing_whitespace() {
        for (text, done) in [("", true), (" \r\n\t", true), (" x", false), ("}", false)] {
            assert_eq!(Cursor::new(text.as_bytes()).finish(), done, "{text:?}");
        }
        assert!(Cursor::at(b"ab", 2).finish());
        assert!(Cursor::at(b"ab", 9).finish());
        assert_eq!(Cursor::at(b"ab", 1).rest(), b"b");
    }

    /// A whole shape read token by token, as the callers do, with whitespace anywhere between.
    #[test]
    fn a_shape_token_by_token() {
        let read = |text: &str| {
            let mut c = Cursor::new(text.as_bytes());
            c.token(b"{")?;
            c.token(b"\"qty\"")?;
            c.token(b":")?;
            let qty = c.integer()?;
            c.token(b"}")?;
            c.finish().then_some(qty)
        };
        assert_eq!(read("{\"qty\":5}"), Some(5));
        assert_eq!(read(" { \"qty\" :\t5\n} \r\n"), Some(5));
        assert_eq!(read("{\"qty\":5}x"), None);
        assert_eq!(read("{\"qty\":5,}"), None);
        assert_eq!(read("{\"qty\":5"), None);
    }
}

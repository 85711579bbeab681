//! The field section (RFC 9112 §5) shared by requests and responses, and the framing semantics
//! of the fields that decide how a message is delimited: Content-Length, Transfer-Encoding, Host,
//! Connection and Expect.
//!
//! ```text
//! field-line   = field-name ":" OWS field-value OWS
//! field-name   = token
//! field-value  = *field-content
//! ```
//! Everything a smuggling attack could use to make two parsers disagree is an error here:
//! obs-fold, whitespace before the colon, bare CR or LF, differing Content-Lengths, Content-Length
//! beside Transfer-Encoding, a Transfer-Encoding that does not end in exactly one `chunked`.

use crate::grammar::{is_authority, scan_token, scan_value, trim_ows, Port};
use crate::{BodyFraming, Error, Header, Limits, Status, Version};

/// What the framing fields of one message said, gathered line by line.
#[derive(Default)]
pub(crate) struct Framing {
    /// The Content-Length, once one was seen; later ones must agree.
    pub content_length: Option<u64>,
    /// A Transfer-Encoding field was present (even an empty one).
    pub te_present: bool,
    /// How many times `chunked` appeared across all Transfer-Encoding lines.
    pub te_chunked_count: u32,
    /// The last coding named was `chunked`.
    pub te_last_chunked: bool,
    /// A coding we know of but do not implement (gzip, deflate, compress) was named.
    pub te_other_known: bool,
    /// A coding we have never heard of was named.
    pub te_unknown: bool,
    /// Host field lines seen.
    pub host_count: u32,
    /// A Host value was empty: allowed only in HTTP/1.0, where Host is optional.
    pub host_empty: bool,
    /// A Host value was not `uri-host [ ":" port ]`.
    pub host_bad: bool,
    /// `Connection: close` was seen.
    pub close: bool,
    /// `Connection: keep-alive` was seen.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was seen.
    pub expect_continue: bool,
    /// Some other expectation was seen.
    pub expect_other: bool,
}

impl Framing {
    /// Records one field line. Names are matched by length first, then case-insensitively.
    pub fn observe(&mut self, name: &[u8], value: &[u8]) -> Result<(), Error> {
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                self.host_count += 1;
                if value.is_empty() {
                    self.host_empty = true;
                } else if !is_authority(value, Port::Optional) {
                    self.host_bad = true;
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                } else {
                    self.expect_other = true;
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for option in value.split(|&b| b == b',').map(trim_ows) {
                    if option.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if option.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => self.content_length(value)?,
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.transfer_encoding(value)?
            }
            _ => {}
        }
        Ok(())
    }

    /// `Content-Length = 1*DIGIT` (RFC 9110 §8.6). A list of identical values (`5, 5`) or a
    /// repeated identical field is accepted, as §8.6 permits; anything differing is not.
    fn content_length(&mut self, value: &[u8]) -> Result<(), Error> {
        for element in value.split(|&b| b == b',').map(trim_ows) {
            let n = parse_decimal(element).ok_or(Error::BadContentLength)?;
            match self.content_length {
                Some(seen) if seen != n => return Err(Error::ConflictingContentLength),
                _ => self.content_length = Some(n),
            }
        }
        Ok(())
    }

    /// `Transfer-Encoding = #transfer-coding` (RFC 9112 §6.1); codings accumulate across lines.
    fn transfer_encoding(&mut self, value: &[u8]) -> Result<(), Error> {
        self.te_present = true;
        for element in value.split(|&b| b == b',').map(trim_ows) {
            if element.is_empty() {
                continue; // RFC 9110 §5.6.1: recipients accept empty list elements.
            }
            // transfer-coding = token *( OWS ";" OWS transfer-parameter )
            let coding_end = scan_token(element, 0);
            let coding = &element[..coding_end];
            let rest = trim_ows(&element[coding_end..]);
            if coding.is_empty() || !(rest.is_empty() || rest[0] == b';') {
                return Err(Error::BadTransferEncoding);
            }
            self.te_last_chunked = false;
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.te_chunked_count += 1;
                self.te_last_chunked = true;
            } else if [
                &b"gzip"[..],
                b"x-gzip",
                b"deflate",
                b"compress",
                b"x-compress",
            ]
            .iter()
            .any(|known| coding.eq_ignore_ascii_case(known))
            {
                self.te_other_known = true;
            } else {
                self.te_unknown = true;
            }
        }
        Ok(())
    }

    /// The body framing of a request (RFC 9112 §6.3), and every framing rule that needs the whole
    /// head: Host, Transfer-Encoding versus Content-Length and version, the body limit.
    pub fn request_body(&self, version: Version, limits: &Limits) -> Result<BodyFraming, Error> {
        if version == Version::Http11 && self.host_count == 0 {
            return Err(Error::MissingHost);
        }
        if self.host_count > 1 {
            return Err(Error::DuplicateHost);
        }
        // RFC 9112 §3.2: a server MUST respond 400 to a request whose Host is invalid. An empty
        // Host is what a client sends for a target URI without an authority, which no target we
        // serve is; HTTP/1.0 clients may send it as "no Host".
        if self.host_bad || (self.host_empty && version == Version::Http11) {
            return Err(Error::BadHost);
        }
        if self.expect_other {
            return Err(Error::UnsupportedExpectation);
        }
        if self.te_present {
            self.check_transfer_encoding(version)?;
            return Ok(BodyFraming::Chunked);
        }
        match self.content_length {
            Some(n) if n > limits.body_bytes_max => Err(Error::BodyTooLarge),
            Some(0) | None => Ok(BodyFraming::None),
            Some(n) => Ok(BodyFraming::Length(n)),
        }
    }

    /// The body framing of a response to a request that was not HEAD (RFC 9112 §6.3).
    pub fn response_body(&self, version: Version, status: u16) -> Result<BodyFraming, Error> {
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(BodyFraming::None);
        }
        if self.te_present {
            self.check_transfer_encoding(version)?;
            return Ok(BodyFraming::Chunked);
        }
        Ok(match self.content_length {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::UntilClose,
        })
    }

    fn check_transfer_encoding(&self, version: Version) -> Result<(), Error> {
        // Order matters: the smuggling signals (400) are reported before "not implemented" (501).
        if self.content_length.is_some() {
            return Err(Error::ContentLengthWithTransferEncoding);
        }
        if version == Version::Http10 {
            return Err(Error::TransferEncodingInHttp10);
        }
        // RFC 9112 §6.3: chunked not final is a MUST-400; the 501 of §6.1 is only a SHOULD.
        if !self.te_last_chunked || self.te_chunked_count != 1 {
            return Err(Error::BadTransferEncoding);
        }
        if self.te_unknown || self.te_other_known {
            return Err(Error::UnsupportedTransferCoding);
        }
        Ok(())
    }

    /// Persistence (RFC 9112 §9.3): `close` always wins; HTTP/1.1 persists by default; HTTP/1.0
    /// only with `keep-alive`.
    pub fn keep_alive(&self, version: Version) -> bool {
        !self.close && (version == Version::Http11 || self.keep_alive)
    }
}

/// `1*DIGIT` as a u64; `None` if empty, not all digits, or too large.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Parses field lines from `buf[i..]` up to and including the empty line that ends the section.
/// Returns the index just past that empty line and the number of headers stored.
#[inline(always)]
pub(crate) fn parse_fields<'b>(
    buf: &'b [u8],
    mut i: usize,
    headers: &mut [Header<'b>],
    framing: &mut Framing,
) -> Result<Status<(usize, usize)>, Error> {
    macro_rules! byte_at {
        ($at:expr) => {
            match buf.get($at) {
                Some(&b) => b,
                None => return Ok(Status::Partial),
            }
        };
    }
    let mut count = 0;
    loop {
        match byte_at!(i) {
            b'\r' => {
                return match byte_at!(i + 1) {
                    b'\n' => Ok(Status::Complete((i + 2, count))),
                    _ => Err(Error::BareCr),
                };
            }
            b'\n' => return Err(Error::BareLf),
            b' ' | b'\t' => return Err(Error::ObsFold),
            b':' => return Err(Error::EmptyHeaderName),
            _ => {}
        }
        let name_start = i;
        i = scan_token(buf, i);
        match byte_at!(i) {
            b':' if i > name_start => {}
            b' ' | b'\t' if i > name_start => return Err(Error::WhitespaceBeforeColon),
            _ => return Err(Error::BadHeaderName),
        }
        let name = &buf[name_start..i];
        i += 1;
        let value_start = i;
        loop {
            i = scan_value(buf, i);
            match byte_at!(i) {
                b'\t' => i += 1,
                b'\r' => match byte_at!(i + 1) {
                    b'\n' => break,
                    _ => return Err(Error::BareCr),
                },
                b'\n' => return Err(Error::BareLf),
                _ => return Err(Error::BadHeaderValue),
            }
        }
        let value = trim_ows(&buf[value_start..i]);
        i += 2;
        let slot = headers.get_mut(count).ok_or(Error::TooManyHeaders)?;
        *slot = Header { name, value };
        count += 1;
        framing.observe(name, value)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_accepts_only_plain_digits() {
        let table: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"007", Some(7)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"", None),
            (b"+5", None),
            (b"-1", None),
            (b"0x10", None),
            (b"1 2", None),
            (b"1.0", None),
        ];
        for &(input, want) in table {
            assert_eq!(
                parse_decimal(input),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn keep_alive_by_version_and_connection() {
        let mut f = Framing::default();
        assert!(f.keep_alive(Version::Http11));
        assert!(!f.keep_alive(Version::Http10));
        f.keep_alive = true;
        assert!(f.keep_alive(Version::Http10));
        f.close = true;
        assert!(!f.keep_alive(Version::Http10));
        assert!(!f.keep_alive(Version::Http11));
    }
}

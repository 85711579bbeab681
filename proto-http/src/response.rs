//! The response head parser (RFC 9112 §4), for clients: the pooled forwarder of the ticket tier
//! and the load generator.
//!
//! ```text
//! status-line = HTTP-version SP status-code SP [ reason-phrase ]
//! status-code = 3DIGIT
//! reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
//! ```
//! A status line without the SP before an empty reason (`HTTP/1.1 200\r\n`) is accepted, as
//! RFC 9112 §4 recommends. Every malformation of the status line is `Error::BadStatusLine`.

use crate::fields::{parse_fields, Framing};
use crate::{BodyFraming, Error, Header, Limits, Status, Version};

/// A complete response head, borrowed from the input buffer and the caller's header storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead<'b, 'h> {
    /// The protocol version.
    pub version: Version,
    /// The three-digit status code.
    pub status: u16,
    /// The reason phrase (possibly empty).
    pub reason: &'b [u8],
    /// The field lines, in order.
    pub headers: &'h [Header<'b>],
    /// How the body is delimited, for a response to anything but HEAD.
    pub body: BodyFraming,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
    /// Bytes of the input taken by the head.
    pub head_len: usize,
}

impl<'b> ResponseHead<'b, '_> {
    /// The value of the first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &[u8]) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Parses a response head from the start of `buf`, storing field lines in `headers`.
pub fn parse_response<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    limits: &Limits,
) -> Result<Status<ResponseHead<'b, 'h>>, Error> {
    let seen = &buf[..buf.len().min(limits.head_bytes_max)];
    match parse_inner(seen, headers)? {
        Status::Partial if buf.len() >= limits.head_bytes_max => Err(Error::HeadTooLarge),
        Status::Complete(head) if head.head_len > limits.head_bytes_max => Err(Error::HeadTooLarge),
        status => Ok(status),
    }
}

fn parse_inner<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
) -> Result<Status<ResponseHead<'b, 'h>>, Error> {
    // `HTTP/D.D SP DDD`: twelve bytes of fixed shape.
    const SHAPE: &[u8] = b"HTTP/D.D DDD";
    for (&b, &s) in buf.iter().zip(SHAPE) {
        let ok = if s == b'D' {
            b.is_ascii_digit()
        } else {
            b == s
        };
        if !ok {
            return Err(Error::BadStatusLine);
        }
    }
    if buf.len() < SHAPE.len() {
        return Ok(Status::Partial);
    }
    let version = match (buf[5], buf[7]) {
        (b'1', b'0') => Version::Http10,
        (b'1', _) => Version::Http11,
        _ => return Err(Error::BadStatusLine),
    };
    let status = buf[9..12]
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if status < 100 {
        return Err(Error::BadStatusLine);
    }
    let mut i = SHAPE.len();
    let reason_start;
    match buf.get(i) {
        None => return Ok(Status::Partial),
        Some(b' ') => {
            i += 1;
            reason_start = i;
            loop {
                match buf.get(i) {
                    None => return Ok(Status::Partial),
                    Some(b'\r') => break,
                    Some(b'\t' | 0x20..=0x7e | 0x80..=0xff) => i += 1,
                    Some(_) => return Err(Error::BadStatusLine),
                }
            }
        }
        Some(b'\r') => reason_start = i,
        Some(_) => return Err(Error::BadStatusLine),
    }
    let reason = &buf[reason_start..i];
    match buf.get(i + 1) {
        None => return Ok(Status::Partial),
        Some(b'\n') => i += 2,
        Some(_) => return Err(Error::BareCr),
    }
    let mut framing = Framing::default();
    let Status::Complete((head_len, count)) = parse_fields(buf, i, headers, &mut framing)? else {
        return Ok(Status::Partial);
    };
    if framing.host_count > 1 {
        return Err(Error::DuplicateHost);
    }
    let body = framing.response_body(version, status)?;
    let keep_alive = framing.keep_alive(version) && body != BodyFraming::UntilClose;
    let headers: &'h [Header<'b>] = headers;
    Ok(Status::Complete(ResponseHead {
        version,
        status,
        reason,
        headers: &headers[..count],
        body,
        keep_alive,
        head_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EMPTY_HEADER;

    #[test]
    fn table() {
        type Want = Result<Option<(u16, BodyFraming, bool)>, Error>;
        let table: &[(&[u8], Want)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", Ok(Some((200, BodyFraming::Length(5), true)))),
            (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", Ok(Some((200, BodyFraming::Length(0), true)))),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Ok(Some((200, BodyFraming::Chunked, true)))),
            (b"HTTP/1.1 200 OK\r\n\r\n", Ok(Some((200, BodyFraming::UntilClose, false)))),
            (b"HTTP/1.1 204 No Content\r\n\r\n", Ok(Some((204, BodyFraming::None, true)))),
            (b"HTTP/1.1 100 Continue\r\n\r\n", Ok(Some((100, BodyFraming::None, true)))),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Ok(Some((200, BodyFraming::Length(1), false)))),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                Ok(Some((200, BodyFraming::Length(1), true))),
            ),
            (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", Ok(Some((503, BodyFraming::Length(2), false)))),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Err(Error::ConflictingContentLength)),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Err(Error::ContentLengthWithTransferEncoding)),
            (b"HTTP/1.1 2000 OK\r\n\r\n", Err(Error::BadStatusLine)),
            (b"HTTP/1.1 20 OK\r\n\r\n", Err(Error::BadStatusLine)),
            (b"HTTP/2.0 200 OK\r\n\r\n", Err(Error::BadStatusLine)),
            (b"HTTP/1.1 099 Low\r\n\r\n", Err(Error::BadStatusLine)),
            (b"HTTP/1.1 200 O\x00K\r\n\r\n", Err(Error::BadStatusLine)),
            (b"HTTP/1.1 200 OK\rX\n\r\n", Err(Error::BareCr)),
            (b"http/1.1 200 OK\r\n\r\n", Err(Error::BadStatusLine)),
            (b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", Err(Error::WhitespaceBeforeColon)),
        ];
        for &(input, ref want) in table {
            let mut headers = [EMPTY_HEADER; 8];
            let got = parse_response(input, &mut headers, &Limits::default())
                .map(|s| s.complete().map(|h| (h.status, h.body, h.keep_alive)));
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(input));
            // Every strict prefix of a valid response is Partial.
            if want.is_ok() {
                for cut in 0..input.len().min(input.len() - 1) {
                    let mut headers = [EMPTY_HEADER; 8];
                    let prefix = parse_response(&input[..cut], &mut headers, &Limits::default());
                    if input[cut..].starts_with(b"hello")
                        || cut >= input.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
                    {
                        continue;
                    }
                    assert_eq!(
                        prefix,
                        Ok(Status::Partial),
                        "prefix {cut} of {}",
                        String::from_utf8_lossy(input)
                    );
                }
            }
        }
    }
}

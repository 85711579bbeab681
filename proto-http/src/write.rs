//! Writers: a response (for the server) and a request (for clients), appended to a `Vec<u8>` the
//! caller owns and reuses, so nothing allocates once the buffer has grown to its working size.
//!
//! Every response carries `Date` and `Content-Length` (our contract), and `Connection` only when
//! it changes the default of the request's version.

use crate::{HttpDate, Version};

/// The head of a response to write; the body is given separately.
#[derive(Clone, Copy, Debug)]
pub struct Response<'a> {
    /// The status code; its reason phrase comes from [`reason_phrase`].
    pub status: u16,
    /// The version of the request being answered: it decides which `Connection` header to send.
    pub version: Version,
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
    /// The cached `Date` value.
    pub date: &'a HttpDate,
    /// `Content-Type`, when there is a body.
    pub content_type: Option<&'a [u8]>,
    /// Further header lines, each written as `name: value`.
    pub extra_headers: &'a [(&'a [u8], &'a [u8])],
}

/// The reason phrase of the statuses this server sends; `""` for others (RFC 9112 §4 allows an
/// empty reason).
pub const fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Appends a complete response with `body` to `out`.
pub fn write_response(out: &mut Vec<u8>, response: &Response<'_>, body: &[u8]) {
    write_head_until_length(out, response);
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// Appends a complete response whose body `write_body` appends straight into `out`, so a body
/// can be formatted in place; the `Content-Length` digits are then inserted before it (a move of
/// the body by a few bytes, cheaper than a second buffer for the small bodies we send).
pub fn write_response_with(
    out: &mut Vec<u8>,
    response: &Response<'_>,
    write_body: impl FnOnce(&mut Vec<u8>),
) {
    write_head_until_length(out, response);
    let body_start = out.len();
    write_body(out);
    let body_len = out.len() - body_start;
    let mut digits = [0u8; 20];
    let digits = decimal(&mut digits, body_len as u64);
    let insert = digits.len() + 4;
    out.resize(out.len() + insert, 0);
    out.copy_within(body_start..body_start + body_len, body_start + insert);
    out[body_start..body_start + digits.len()].copy_from_slice(digits);
    out[body_start + digits.len()..body_start + insert].copy_from_slice(b"\r\n\r\n");
}

/// Appends a `204 No Content` response: its head only, without `Content-Length` (RFC 9110 §8.6:
/// a server MUST NOT send one in a 204) and without `Content-Type`.
pub fn write_no_content(out: &mut Vec<u8>, response: &Response<'_>) {
    assert_eq!(
        response.status, 204,
        "only a 204 goes without Content-Length"
    );
    write_status_and_fields(out, response);
    out.extend_from_slice(b"\r\n\r\n");
}

/// Status line and headers, ending with `Content-Length: ` (the digits follow).
fn write_head_until_length(out: &mut Vec<u8>, response: &Response<'_>) {
    write_status_and_fields(out, response);
    out.extend_from_slice(b"\r\nContent-Length: ");
}

/// Status line and headers, without the CRLF that ends the last one.
fn write_status_and_fields(out: &mut Vec<u8>, response: &Response<'_>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(response.status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(response.status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(response.date.as_bytes());
    if let Some(content_type) = response.content_type {
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(content_type);
    }
    match (response.version, response.keep_alive) {
        (Version::Http11, true) => {}
        (Version::Http10, true) => out.extend_from_slice(b"\r\nConnection: keep-alive"),
        (_, false) => out.extend_from_slice(b"\r\nConnection: close"),
    }
    for (name, value) in response.extra_headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
    }
}

/// Appends an HTTP/1.1 request. `Content-Length` is written whenever there is a body or the
/// method is one that normally carries one, so the server never waits for a body that is not sent.
pub fn write_request(
    out: &mut Vec<u8>,
    method: &[u8],
    target: &[u8],
    host: &[u8],
    extra_headers: &[(&[u8], &[u8])],
    body: &[u8],
) {
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host);
    for (name, value) in extra_headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
    }
    if !body.is_empty() || matches!(method, b"POST" | b"PUT" | b"PATCH") {
        out.extend_from_slice(b"\r\nContent-Length: ");
        push_decimal(out, body.len() as u64);
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(&mut digits, n));
}

fn decimal(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response<'a>(date: &'a HttpDate, version: Version, keep_alive: bool) -> Response<'a> {
        Response {
            status: 200,
            version,
            keep_alive,
            date,
            content_type: Some(b"application/json"),
            extra_headers: &[],
        }
    }

    #[test]
    fn both_writers_give_the_same_bytes() {
        let date = HttpDate::from_unix_seconds(0);
        for (version, keep_alive) in [
            (Version::Http11, true),
            (Version::Http11, false),
            (Version::Http10, true),
        ] {
            for body in [&b""[..], b"{\"qty\":1000}", &[b'x'; 1234]] {
                let r = response(&date, version, keep_alive);
                let mut a = Vec::new();
                write_response(&mut a, &r, body);
                let mut b = b"previous".to_vec();
                write_response_with(&mut b, &r, |out| out.extend_from_slice(body));
                assert_eq!(&b[8..], &a[..]);
            }
        }
    }

    #[test]
    fn exact_bytes() {
        let date = HttpDate::from_unix_seconds(0);
        let mut out = Vec::new();
        let r = Response {
            extra_headers: &[(b"Allow", b"GET")],
            ..response(&date, Version::Http10, true)
        };
        write_response(&mut out, &r, b"{}");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Type: application/json\r\n\
              Connection: keep-alive\r\nAllow: GET\r\nContent-Length: 2\r\n\r\n{}"
                .to_vec()
        );
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}

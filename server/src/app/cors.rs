//! CORS (the Fetch standard's CORS protocol): which web origins may read our responses from a
//! page, decided per request from its `Origin`, and the header lines that say so.
//!
//! The policy is built once at start-up from `--cors-allow-origins` and leaked, so that a
//! decision ([`Grant`]) is a `Copy` value holding `&'static` bytes: it travels with a deferred
//! order and is written without allocating. A request without `Origin` (every non-browser client)
//! is decided by one look through its field lines; with the policy off, not even that.
//!
//! We never send `Access-Control-Allow-Credentials`, so `*` is never combined with credentials:
//! a browser sends no cookies or HTTP authentication to ticketd across origins.

use proto_http::RequestHead;

use crate::config::CorsOrigins;

/// How long a browser may cache a preflight's answer, in seconds: 10 minutes, so that a changed
/// policy reaches browsers soon, while a page's burst of purchases costs one preflight. (Chromium
/// caps it at 2 hours, Firefox at 24.)
pub const PREFLIGHT_MAX_AGE_SECONDS: &[u8] = b"600";

/// The request headers a preflight is granted when it names none we can echo: the one header a
/// JSON client sets that is not CORS-safelisted.
pub const ALLOW_HEADERS_DEFAULT: &[u8] = b"Content-Type";

/// The longest `Access-Control-Request-Headers` echoed back: a page asks for a handful of
/// headers; a longer list gets [`ALLOW_HEADERS_DEFAULT`] instead.
pub const REQUEST_HEADERS_ECHO_BYTES_MAX: usize = 256;

/// Which origins may read responses.
#[derive(Debug)]
pub enum Cors {
    /// No CORS headers at all: browsers keep other origins' pages from reading responses.
    Off,
    /// Any origin (`Access-Control-Allow-Origin: *`), as the original FastAPI system allowed.
    Any,
    /// These origins, each as the browser serialises it (`scheme://host[:port]`, lower case).
    List(Vec<Box<[u8]>>),
}

/// One header line: name and value.
pub type Line = (&'static [u8], &'static [u8]);

/// The CORS answer to one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Grant {
    /// No `Origin`, or CORS is off: no header.
    #[default]
    None,
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// `Access-Control-Allow-Origin: <this origin>` and `Vary: Origin`.
    Origin(&'static [u8]),
    /// An origin not on the list: only `Vary: Origin`, so that a cache does not serve this
    /// response to a listed origin (or the other way round).
    Refused,
}

impl Cors {
    /// The policy of `--cors-allow-origins`, leaked: it lives as long as the process.
    pub fn leak(origins: &CorsOrigins) -> &'static Cors {
        let cors = match origins {
            CorsOrigins::None => Cors::Off,
            CorsOrigins::Any => Cors::Any,
            CorsOrigins::List(list) => Cors::List(
                list.iter()
                    .map(|origin| origin.as_bytes().to_vec().into_boxed_slice())
                    .collect(),
            ),
        };
        Box::leak(Box::new(cors))
    }

    /// No CORS: for tests and tools that build a shard without a configuration.
    pub fn off() -> &'static Cors {
        static OFF: Cors = Cors::Off;
        &OFF
    }

    /// The answer to a request: by its `Origin` field, if any.
    #[inline]
    pub fn grant(&'static self, req: &RequestHead<'_, '_>) -> Grant {
        if let Cors::Off = self {
            return Grant::None;
        }
        match req.header(b"origin") {
            None => Grant::None,
            Some(origin) => self.grant_origin(origin),
        }
    }

    /// The answer to a request from `origin`.
    pub fn grant_origin(&'static self, origin: &[u8]) -> Grant {
        match self {
            Cors::Off => Grant::None,
            Cors::Any => Grant::Any,
            Cors::List(list) => list
                .iter()
                .find(|listed| ***listed == *origin)
                .map_or(Grant::Refused, |listed| Grant::Origin(listed)),
        }
    }
}

impl Grant {
    /// The header lines of this answer: up to two, in `lines[..count]`.
    pub fn headers(self) -> ([Line; 2], usize) {
        const ALLOW_ORIGIN: &[u8] = b"Access-Control-Allow-Origin";
        const VARY: Line = (b"Vary", b"Origin");
        const NONE: Line = (b"", b"");
        match self {
            Grant::None => ([NONE, NONE], 0),
            Grant::Any => ([(ALLOW_ORIGIN, b"*"), NONE], 1),
            Grant::Origin(origin) => ([(ALLOW_ORIGIN, origin), VARY], 2),
            Grant::Refused => ([VARY, NONE], 1),
        }
    }

    /// Whether the origin may read the response (so a preflight is answered for it).
    pub fn allows(self) -> bool {
        matches!(self, Grant::Any | Grant::Origin(_))
    }
}

/// The `Access-Control-Allow-Headers` of a preflight: the requested list echoed when it is a
/// short list of tokens (which is all a browser sends), else [`ALLOW_HEADERS_DEFAULT`]. Echoing
/// is what FastAPI's `allow_headers=["*"]` does; nothing unvalidated goes back on the wire.
pub fn allow_headers(requested: Option<&[u8]>) -> &[u8] {
    let echo = requested.filter(|list| {
        !list.is_empty()
            && list.len() <= REQUEST_HEADERS_ECHO_BYTES_MAX
            && list
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~, \t".contains(&b))
    });
    echo.unwrap_or(ALLOW_HEADERS_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_by_policy() {
        let list = Cors::leak(&CorsOrigins::List(vec![
            "http://a.example".into(),
            "https://b.example:8443".into(),
        ]));
        let any = Cors::leak(&CorsOrigins::Any);
        let table: &[(&'static Cors, &[u8], Grant)] = &[
            (Cors::off(), b"http://a.example", Grant::None),
            (any, b"http://x", Grant::Any),
            (
                list,
                b"http://a.example",
                Grant::Origin(b"http://a.example"),
            ),
            (
                list,
                b"https://b.example:8443",
                Grant::Origin(b"https://b.example:8443"),
            ),
            (list, b"http://a.example:80", Grant::Refused),
            (list, b"http://a.example.evil", Grant::Refused),
            (list, b"null", Grant::Refused),
        ];
        for &(cors, origin, want) in table {
            assert_eq!(cors.grant_origin(origin), want, "{cors:?} {origin:?}");
        }
        assert_eq!(Grant::None.headers().1, 0);
        assert_eq!(
            Grant::Refused.headers().0[0],
            (&b"Vary"[..], &b"Origin"[..])
        );
    }

    #[test]
    fn requested_headers_are_echoed_only_when_a_short_token_list() {
        let long = vec![b'a'; REQUEST_HEADERS_ECHO_BYTES_MAX + 1];
        let table: &[(Option<&[u8]>, &[u8])] = &[
            (None, ALLOW_HEADERS_DEFAULT),
            (Some(b""), ALLOW_HEADERS_DEFAULT),
            (Some(b"content-type"), b"content-type"),
            (
                Some(b"content-type, x-request-id"),
                b"content-type, x-request-id",
            ),
            (Some(b"x\"y"), ALLOW_HEADERS_DEFAULT),
            (Some(&long), ALLOW_HEADERS_DEFAULT),
        ];
        for &(requested, want) in table {
            assert_eq!(allow_headers(requested), want, "{requested:?}");
        }
    }
}

//! What a process says about itself: `/ready`, `/metrics`, and the `/openapi.json` and `/docs`
//! documents. Off the hot path, so `write!` and a buffer per scrape are fine here.

use std::io::Write as _;
use std::time::Instant;

use proto_http::write::write_response;
use proto_http::{RequestHead, Response};

use crate::app::docs::Doc;
use crate::app::exposition;
use crate::app::routes::{json, push_request_id, App, Exchange, Reply, COMMON_HEADERS_MAX};

impl App {
    /// `/openapi.json` or `/docs`, gzip-encoded when the client accepts it. Only these routes
    /// read `Accept-Encoding`.
    pub(super) fn document(
        &self,
        doc: Doc,
        req: &RequestHead<'_, '_>,
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
        let accept_encoding = accept_encoding(req);
        let body = self.docs.get(doc, accept_encoding);
        let encoding = Encoding {
            vary: body.vary,
            gzip: body.gzip,
        };
        encoded(out, x, body.content_type, encoding, body.bytes)
    }

    pub(super) fn ready(&self, x: Exchange<'_>, out: &mut Vec<u8>) -> Reply {
        let (mode, shards) = (self.mode.as_str(), self.shards);
        json(out, x, 200, |o| {
            let _ = write!(
                o,
                "{{\"status\":\"ready\",\"mode\":\"{mode}\",\"shards\":{shards}}}"
            );
        })
    }

    /// `GET /metrics`: every shard's last published numbers (this one's too), in Prometheus'
    /// text format, gzip-encoded when the client accepts it and the text is over
    /// [`crate::app::docs::GZIP_MIN_BYTES`] (it is rendered per scrape, so it is compressed per
    /// scrape, at a fast level). Reads the board, never a peer's core: see [`crate::app::board`].
    pub(super) fn metrics(
        &mut self,
        req: &RequestHead<'_, '_>,
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
        self.board.read(&mut self.scraped);
        let accept_encoding = accept_encoding(req);
        let mut body = Vec::new();
        let scrape = exposition::Scrape {
            slots: &self.scraped,
            now: Instant::now(),
            mode: self.mode,
        };
        exposition::render(&mut body, scrape);
        let gzip = body.len() > crate::app::docs::GZIP_MIN_BYTES
            && crate::app::docs::accepts_gzip(accept_encoding);
        if gzip {
            body = crate::app::docs::gzip_at(&body, flate2::Compression::fast());
        }
        let encoding = Encoding { vary: true, gzip };
        encoded(out, x, exposition::CONTENT_TYPE, encoding, &body)
    }
}

/// How a self-description's body is encoded.
#[derive(Clone, Copy)]
struct Encoding {
    /// The body may vary with `Accept-Encoding`.
    vary: bool,
    /// The body is gzip-encoded.
    gzip: bool,
}

/// A 200 carrying `body` (HEAD: its head alone) with the encoding lines, then the CORS grant (so
/// a page on another origin may read it), then `X-Request-Id`: what `/openapi.json`, `/docs` and
/// `/metrics` answer.
fn encoded(
    out: &mut Vec<u8>,
    x: Exchange<'_>,
    content_type: &[u8],
    encoding: Encoding,
    body: &[u8],
) -> Reply {
    let mut headers: [(&[u8], &[u8]); 2 + COMMON_HEADERS_MAX] =
        [(b"", b""); 2 + COMMON_HEADERS_MAX];
    let mut count = 0;
    if encoding.vary {
        headers[count] = (b"Vary", b"Accept-Encoding");
        count += 1;
    }
    if encoding.gzip {
        headers[count] = (b"Content-Encoding", b"gzip");
        count += 1;
    }
    let (grant, grant_count) = x.cors.headers();
    headers[count..count + grant_count].copy_from_slice(&grant[..grant_count]);
    count += grant_count;
    count += push_request_id(&mut headers[count..], x.request_id);
    let response = Response {
        status: 200,
        version: x.version,
        keep_alive: x.keep_alive,
        date: x.date,
        content_type: Some(content_type),
        extra_headers: &headers[..count],
    };
    write_response(out, &response, body);
    if x.head {
        out.truncate(out.len() - body.len());
    }
    Reply::Done(200)
}

/// The request's `Accept-Encoding` values.
fn accept_encoding<'r>(req: &'r RequestHead<'_, '_>) -> impl Iterator<Item = &'r [u8]> {
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"accept-encoding"))
        .map(|h| h.value)
}

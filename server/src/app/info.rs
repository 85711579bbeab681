//! What a process says about itself: `GET /` (mode, shard, counters), `/ready`, and the
//! `/openapi.json` and `/docs` documents. Off the hot path, so `write!` is fine here.

use std::io::Write as _;

use proto_http::write::write_response;
use proto_http::{RequestHead, Response};

use crate::app::docs::Doc;
use crate::app::routes::{json, push_request_id, App, Exchange, Reply};

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
        let accept_encoding = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(b"accept-encoding"))
            .map(|h| h.value);
        let body = self.docs.get(doc, accept_encoding);
        let mut headers: [(&[u8], &[u8]); 3] = [
            (b"Vary", b"Accept-Encoding"),
            (b"Content-Encoding", b"gzip"),
            (b"", b""),
        ];
        let mut count = usize::from(body.vary) + usize::from(body.gzip);
        count += push_request_id(&mut headers[count..], x.request_id);
        let response = Response {
            status: 200,
            version: x.version,
            keep_alive: x.keep_alive,
            date: x.date,
            content_type: Some(body.content_type),
            extra_headers: &headers[..count],
        };
        write_response(out, &response, body.bytes);
        if x.head {
            out.truncate(out.len() - body.bytes.len());
        }
        Reply::Done(200)
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
}

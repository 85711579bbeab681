//! The stock check of selling scenarios: `GET /api/v1/available` before and after the load, over
//! its own short blocking connection (proto-http writes the request and reads the reply), and
//! the comparison of what the server says it sold with what its responses promised.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use proto_http::{parse_response, BodyFraming, ChunkedDecoder, Limits, Status, EMPTY_HEADER};
use serde::{Deserialize, Serialize};

use crate::connection::{HEADERS_MAX, RESPONSE_BYTES_MAX};
use crate::scenario::json_field;
use crate::target::Target;
use crate::Error;

/// Connect, read and write timeout of the probe: a server that cannot answer one GET in 5 s
/// after the load has not recovered, and the check would mean nothing.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server says it sold against what its responses said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockCheck {
    /// `/api/v1/available` before the load (warm-up included).
    pub before: u64,
    /// `/api/v1/available` after the load and the settle time.
    pub after: u64,
    /// `before - after`: tickets the server says it sold (negative if stock grew).
    pub sold: i64,
    /// Responses that said `"success": true`, warm-up included.
    pub successes: u64,
    /// Tickets per request (the largest, with a mix).
    pub qty: u64,
    /// With a --qty-mix: the quantities ordered (then `expected` adds up each one's successes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qty_mix: Vec<u64>,
    /// `successes * qty`: tickets the responses say were sold.
    pub expected: u64,
    /// Selling requests whose outcome we never saw (timed out or lost with a connection): each
    /// may or may not have sold its tickets.
    pub unknown: u64,
    /// True when `expected <= sold <= expected` + the tickets of the `unknown` requests.
    pub ok: bool,
}

/// The orders of one quantity, as the stock check adds them up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Orders {
    /// Tickets per order.
    pub qty: u64,
    /// Orders answered `"success": true`.
    pub successes: u64,
    /// Orders whose outcome we never saw.
    pub unknown: u64,
}

impl StockCheck {
    /// Compares the two readings with the responses seen.
    pub fn new(before: u64, after: u64, successes: u64, unknown: u64, qty: u64) -> StockCheck {
        let orders = Orders {
            qty,
            successes,
            unknown,
        };
        StockCheck::of_orders(before, after, &[orders])
    }

    /// The same for orders of several quantities.
    pub fn of_orders(before: u64, after: u64, orders: &[Orders]) -> StockCheck {
        let sold = before as i64 - after as i64;
        let expected = orders.iter().map(|o| o.successes * o.qty).sum::<u64>();
        let slack = orders.iter().map(|o| o.unknown * o.qty).sum::<u64>() as i64;
        let qty_mix: Vec<u64> = match orders.len() {
            0 | 1 => Vec::new(),
            _ => orders.iter().map(|o| o.qty).collect(),
        };
        StockCheck {
            before,
            after,
            sold,
            successes: orders.iter().map(|o| o.successes).sum(),
            qty: orders.iter().map(|o| o.qty).max().unwrap_or(0),
            qty_mix,
            expected,
            unknown: orders.iter().map(|o| o.unknown).sum(),
            ok: sold >= expected as i64 && sold <= expected as i64 + slack,
        }
    }

    /// One line for a summary.
    pub fn describe(&self) -> String {
        format!(
            "{}: server sold {} (available {} -> {}), responses say {} ({} successes x {}){}",
            if self.ok { "ok" } else { "MISMATCH" },
            self.sold,
            self.before,
            self.after,
            self.expected,
            self.successes,
            match self.qty_mix.is_empty() {
                true => format!("qty {}", self.qty),
                false => format!("qty {:?}", self.qty_mix),
            },
            if self.unknown > 0 {
                format!(", {} requests with unknown outcome", self.unknown)
            } else {
                String::new()
            }
        )
    }
}

/// Reads `qty` from `GET /api/v1/available`.
pub fn available(target: &Target) -> Result<u64, Error> {
    let (status, body) = get(target, "/api/v1/available")?;
    if status != 200 {
        return Err(Error::Probe(format!(
            "GET /api/v1/available answered {status}"
        )));
    }
    json_field(&body, b"qty")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .ok_or_else(|| {
            Error::Probe(format!(
                "no \"qty\" in {:?}",
                String::from_utf8_lossy(&body)
            ))
        })
}

/// One GET on a fresh connection: the status and the (de-chunked) body.
pub fn get(target: &Target, path: &str) -> Result<(u16, Vec<u8>), Error> {
    let what = || format!("GET {path} from {}", target.addr);
    let mut socket =
        TcpStream::connect_timeout(&target.addr, PROBE_TIMEOUT).map_err(Error::io(what()))?;
    socket
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|()| socket.set_write_timeout(Some(PROBE_TIMEOUT)))
        .map_err(Error::io(what()))?;
    let mut request = Vec::new();
    proto_http::write_request(
        &mut request,
        b"GET",
        target.path(path).as_bytes(),
        target.authority.as_bytes(),
        &[(b"Connection", b"close")],
        b"",
    );
    socket.write_all(&request).map_err(Error::io(what()))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(reply) = complete(&buf, false)? {
            return Ok(reply);
        }
        if buf.len() > RESPONSE_BYTES_MAX {
            return Err(Error::Probe(format!("{}: response too large", what())));
        }
        let n = socket.read(&mut chunk).map_err(Error::io(what()))?;
        if n == 0 {
            return complete(&buf, true)?.ok_or_else(|| {
                Error::Probe(format!("{}: closed before a whole response", what()))
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The response in `buf`, once it is all there (`eof`: the server has closed the connection).
fn complete(buf: &[u8], eof: bool) -> Result<Option<(u16, Vec<u8>)>, Error> {
    let limits = Limits::default();
    let mut headers = [EMPTY_HEADER; HEADERS_MAX];
    let head = match parse_response(buf, &mut headers, &limits) {
        Err(e) => return Err(Error::Probe(format!("bad response: {e:?}"))),
        Ok(Status::Partial) => return Ok(None),
        Ok(Status::Complete(head)) => head,
    };
    let rest = &buf[head.head_len..];
    match head.body {
        BodyFraming::None => Ok(Some((head.status, Vec::new()))),
        BodyFraming::Length(n) => {
            let n = n as usize;
            Ok((rest.len() >= n).then(|| (head.status, rest[..n].to_vec())))
        }
        BodyFraming::Chunked => {
            let mut body = Vec::new();
            let mut decoder = ChunkedDecoder::new(&limits);
            let step = decoder
                .decode(rest, &mut body)
                .map_err(|e| Error::Probe(format!("bad chunked body: {e:?}")))?;
            Ok(step.done.then_some((head.status, body)))
        }
        // Read to the end: we asked for Connection: close, so it comes.
        BodyFraming::UntilClose => Ok(eof.then(|| (head.status, rest.to_vec()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let table = [
            // before, after, successes, unknown, qty, ok
            (1000, 900, 100, 0, 1, true),
            (1000, 900, 50, 0, 2, true),
            (1000, 899, 100, 0, 1, false),
            (1000, 898, 100, 2, 1, true),
            (1000, 897, 100, 2, 1, false),
            (1000, 1001, 0, 0, 1, false),
            (0, 0, 0, 0, 1, true),
        ];
        for (before, after, successes, unknown, qty, ok) in table {
            let c = StockCheck::new(before, after, successes, unknown, qty);
            assert_eq!(c.ok, ok, "{c:?}");
        }
        assert!(StockCheck::new(10, 8, 2, 1, 1)
            .describe()
            .starts_with("ok: server sold 2"));
        let order = |qty, successes, unknown| Orders {
            qty,
            successes,
            unknown,
        };
        let mix = StockCheck::of_orders(10, 0, &[order(1, 4, 0), order(2, 3, 0)]);
        assert!(
            mix.ok && mix.expected == 10 && mix.successes == 7,
            "{mix:?}"
        );
        assert!(mix.describe().contains("x qty [1, 2]"));
        let slack = StockCheck::of_orders(10, 0, &[order(1, 4, 0), order(2, 2, 1)]);
        assert!(slack.ok, "{slack:?}");
        assert!(!StockCheck::of_orders(10, 1, &[order(1, 4, 0), order(2, 3, 0)]).ok);
    }

    #[test]
    fn replies() {
        type Want = Option<(u16, &'static [u8])>;
        let table: &[(&[u8], Want)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"qty\":5}",
                Some((200, b"{\"qty\":5}")),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"qty\"",
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                Some((200, b"{}")),
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", Some((204, b""))),
        ];
        for &(wire, want) in table {
            let got = complete(wire, false).unwrap();
            assert_eq!(got.as_ref().map(|(s, b)| (*s, b.as_slice())), want);
        }
        assert!(complete(b"HTTP/9 x", false).is_err());
        let until_close = b"HTTP/1.0 200 OK\r\n\r\n{}";
        assert_eq!(complete(until_close, false).unwrap(), None);
        assert_eq!(
            complete(until_close, true).unwrap(),
            Some((200, b"{}".to_vec()))
        );
    }
}

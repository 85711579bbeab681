//! HTTP/1.1 behaviour of ticketd, proved over real TCP sockets against the real binary: the
//! contract's routes and their JSON, error mapping, keep-alive, pipelining, arbitrary splits of
//! the input, chunked bodies, `Expect: 100-continue`, malformed framing, limits, timeouts, the
//! per-shard connection cap and the lingering close.
//!
//! Every test starts its own server (tests run in parallel threads) and, where it can, reuses one
//! connection for many assertions. Stock assertions use `--shards 1`, where `/available` is exact.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{get, post, read_reply, Reply, Server};

// ---------------------------------------------------------------------------------------------
// Requests, replies and connections.
// ---------------------------------------------------------------------------------------------

/// `GET path` over HTTP/1.1, keep-alive.
fn get_req(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// `POST path` with a Content-Length body, keep-alive.
fn post_req(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `POST path` with an already chunk-encoded body, keep-alive.
fn chunked_req(path: &str, chunked_body: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_body}")
        .into_bytes()
}

/// Purchase of `qty`, the body as the original clients send it.
fn purchase_req(qty: u64) -> Vec<u8> {
    post_req("/api/v1/purchase", &format!("{{\"qty\": {qty}}}"))
}

fn sold(remaining: u64) -> Value {
    json!({"success": true, "remaining": remaining, "message": "Purchase successful!"})
}

fn reserved(remaining: u64, qty: u64) -> Value {
    json!({"success": true, "remaining": remaining, "message": format!("Reserved {qty} tickets")})
}

fn insufficient(remaining: u64) -> Value {
    json!({"success": false, "remaining": remaining, "message": "Insufficient inventory"})
}

/// The reason phrase the contract's `error` field carries for each status we expect.
fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        other => panic!("no reason phrase listed for {other}"),
    }
}

/// The headers every final response carries: an IMF-fixdate `Date`, a `Content-Length` equal to
/// the body's length, and `Content-Type: application/json`.
fn check_framing(r: &Reply) {
    let date = r
        .header("date")
        .unwrap_or_else(|| panic!("no Date in {r:?}"));
    let b = date.as_bytes();
    assert!(
        b.len() == 29 && b[3] == b',' && date.ends_with(" GMT"),
        "Date is not an IMF-fixdate: {date:?}"
    );
    let length = r
        .header("content-length")
        .unwrap_or_else(|| panic!("no Content-Length in {r:?}"));
    assert_eq!(
        length.parse::<usize>().unwrap(),
        r.body.len(),
        "Content-Length vs body in {r:?}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert_eq!(
        r.headers
            .iter()
            .filter(|(n, _)| n == "content-length")
            .count(),
        1,
        "{r:?}"
    );
}

/// A 204 carries `Date` and neither `Content-Length` (RFC 9110 §8.6) nor `Content-Type`.
fn check_no_content(r: &Reply) {
    assert!(r.header("date").is_some(), "no Date in {r:?}");
    assert_eq!(r.header("content-length"), None, "{r:?}");
    assert_eq!(r.header("content-type"), None, "{r:?}");
    assert!(r.body.is_empty(), "{r:?}");
}

/// The body as JSON; panics (with the body) when it is not valid JSON.
fn body_json(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {r:?}"))
}

/// Asserts a 200 whose body is exactly `expected`.
fn assert_ok(r: &Reply, expected: &Value) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(&body_json(r), expected, "{r:?}");
}

/// Asserts the contract's JSON error: `status`, and a body that is exactly
/// `{"error": <reason phrase>, "detail": <sentence>, "code": code}`.
fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "expected {status} {code}, got {r:?}");
    let body = body_json(r);
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {r:?}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "detail", "error"], "{r:?}");
    assert_eq!(body["error"], reason(status), "{r:?}");
    assert_eq!(body["code"], code, "{r:?}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{r:?}"
    );
}

/// Reads until the peer closes (end of stream or reset) or `limit` passes. Returns what arrived
/// and whether the peer closed.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, false)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (got, true),
        }
    }
}

/// One client connection and the bytes read past the last response.
struct Client {
    stream: TcpStream,
    carry: Vec<u8>,
}

impl Client {
    fn new(server: &Server) -> Client {
        Client {
            stream: server.connect(),
            carry: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends `bytes` and waits until the server has read them, so that what is sent next arrives
    /// in a read of its own.
    fn send_read(&mut self, bytes: &[u8]) {
        self.send(bytes);
        support::wait_read(&self.stream);
    }

    /// Reads one response; a final one must have the framing every response has.
    fn reply(&mut self) -> Reply {
        let r = read_reply(&mut self.stream, &mut self.carry);
        if r.status == 204 {
            check_no_content(&r);
        } else if r.status >= 200 {
            check_framing(&r);
        }
        r
    }

    fn roundtrip(&mut self, request: &[u8]) -> Reply {
        self.send(request);
        self.reply()
    }

    /// `/api/v1/available` on this connection.
    fn available(&mut self) -> u64 {
        let r = self.roundtrip(&get_req("/api/v1/available"));
        assert_eq!(r.status, 200, "{r:?}");
        body_json(&r)["qty"]
            .as_u64()
            .unwrap_or_else(|| panic!("{r:?}"))
    }

    /// Asserts that the server closes the connection within 2 s without sending anything more.
    fn assert_closed(&mut self) {
        let (more, closed) = read_until_closed(&mut self.stream, Duration::from_secs(2));
        assert!(
            self.carry.is_empty() && more.is_empty(),
            "unexpected bytes: {:?}{:?}",
            self.carry,
            more
        );
        assert!(closed, "the server kept the connection open");
    }

    /// Asserts that nothing arrives and the connection stays open for `wait`.
    fn assert_silent_and_open(&mut self, wait: Duration) {
        let (more, closed) = read_until_closed(&mut self.stream, wait);
        assert!(
            more.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&more)
        );
        assert!(!closed, "the server closed the connection");
        self.stream
            .set_read_timeout(Some(support::READ_TIMEOUT))
            .unwrap();
    }
}

/// `/api/v1/available` on a new connection.
fn available(server: &Server) -> u64 {
    let r = get(server, "/api/v1/available");
    check_framing(&r);
    assert_eq!(r.status, 200, "{r:?}");
    body_json(&r)["qty"].as_u64().unwrap()
}

/// A server with one shard (exact stock) and `stock` tickets, plus `extra` flags.
fn one_shard(stock: u64, extra: &[&str]) -> Server {
    let stock = stock.to_string();
    let mut args = vec!["--shards", "1", "--initial-stock", &stock];
    args.extend_from_slice(extra);
    Server::start(&args)
}

// ---------------------------------------------------------------------------------------------
// Routes.
// ---------------------------------------------------------------------------------------------

/// Every endpoint of the contract answers in monolith mode with status 200 and its exact JSON
/// body, on one keep-alive connection (HTTP/1.1 responses carry no `Connection` header): a
/// purchase or reserve takes exactly its qty, an order larger than the stock answers
/// `success: false` and takes nothing, health and ready answer on both paths, `/` names the
/// service, its version, mode and shard count. Query strings and absolute-form targets route by
/// path.
#[test]
fn every_route_answers_with_the_contract_shape() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);
    let r = c.roundtrip(&get_req("/api/v1/available"));
    assert_ok(&r, &json!({"qty": 100}));
    assert_eq!(
        r.header("connection"),
        None,
        "HTTP/1.1 keep-alive is the default: {r:?}"
    );

    assert_ok(&c.roundtrip(&purchase_req(3)), &sold(97));
    assert_ok(
        &c.roundtrip(&post_req("/api/v1/reserve", r#"{"qty": 2}"#)),
        &reserved(95, 2),
    );
    assert_ok(&c.roundtrip(&purchase_req(96)), &insufficient(95));
    assert_ok(
        &c.roundtrip(&post_req("/api/v1/reserve", r#"{"qty":96}"#)),
        &insufficient(95),
    );
    assert_eq!(c.available(), 95, "a failed order takes nothing");
    assert_ok(&c.roundtrip(&purchase_req(95)), &sold(0));
    assert_ok(&c.roundtrip(&purchase_req(1)), &insufficient(0));
    assert_ok(
        &c.roundtrip(&get_req("/api/v1/available?fresh=1")),
        &json!({"qty": 0}),
    );
    assert_ok(
        &c.roundtrip(&get_req("http://t/api/v1/available")),
        &json!({"qty": 0}),
    );

    for path in ["/health", "/api/v1/health"] {
        let r = c.roundtrip(&get_req(path));
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let body = body_json(&r);
        assert_eq!(body["status"], "healthy", "{path}: {r:?}");
        assert_eq!(body["mode"], "monolith", "{path}: {r:?}");
        assert!(body["service"].is_string(), "{path}: {r:?}");
    }
    for path in ["/ready", "/api/v1/ready"] {
        let r = c.roundtrip(&get_req(path));
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let body = body_json(&r);
        assert_eq!(body["status"], "ready", "{path}: {r:?}");
        assert_eq!(body["mode"], "monolith", "{path}: {r:?}");
    }
    let r = c.roundtrip(&get_req("/"));
    assert_eq!(r.status, 200, "{r:?}");
    let root = body_json(&r);
    assert_eq!(root["service"], "ticketd", "{r:?}");
    assert_eq!(root["version"], env!("CARGO_PKG_VERSION"), "{r:?}");
    assert_eq!(root["mode"], "monolith", "{r:?}");
    assert_eq!(root["shards"], 1, "{r:?}");

    // The harness's one-shot helpers (Connection: close) see the same framing.
    let r = post(&server, "/api/v1/purchase", r#"{"qty":1}"#);
    check_framing(&r);
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert_eq!(body_json(&r), insufficient(0));
}

/// `GET /` reports the configured shard count, and the stock is split without loss: with two
/// shards the total on `/available` is still the initial stock.
#[test]
fn root_reports_the_shard_count() {
    let server = Server::start(&["--shards", "2", "--initial-stock", "101"]);
    let r = get(&server, "/");
    check_framing(&r);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(body_json(&r)["shards"], 2, "{r:?}");
    assert_eq!(available(&server), 101);
}

/// An unknown path answers 404 and a known path with the wrong method 405 with `Allow` naming the
/// one method it takes, both with the JSON error body, without closing the connection. A body
/// sent with such a request is still consumed by its framing: all of them pipelined in one write,
/// followed by a GET, get exactly one answer each, in order, and no stock moves.
#[test]
fn unknown_paths_are_404_and_wrong_methods_are_405_with_allow() {
    let server = one_shard(100, &[]);
    let order = r#"{"qty":1}"#;
    let table: Vec<(Vec<u8>, u16, &str, Option<&str>)> = vec![
        (get_req("/nope"), 404, "not_found", None),
        (get_req("/api/v1/available/"), 404, "not_found", None),
        (get_req("/API/V1/AVAILABLE"), 404, "not_found", None),
        (post_req("/api/v1/nope", order), 404, "not_found", None),
        (
            get_req("/api/v1/purchase"),
            405,
            "method_not_allowed",
            Some("POST, OPTIONS"),
        ),
        (
            get_req("/api/v1/reserve"),
            405,
            "method_not_allowed",
            Some("POST, OPTIONS"),
        ),
        (
            post_req("/api/v1/available", order),
            405,
            "method_not_allowed",
            Some("GET, HEAD, OPTIONS"),
        ),
        (
            post_req("/health", order),
            405,
            "method_not_allowed",
            Some("GET, HEAD, OPTIONS"),
        ),
        (
            post_req("/ready", order),
            405,
            "method_not_allowed",
            Some("GET, HEAD, OPTIONS"),
        ),
        (
            post_req("/", order),
            405,
            "method_not_allowed",
            Some("GET, HEAD, OPTIONS"),
        ),
        (
            b"DELETE /api/v1/purchase HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            405,
            "method_not_allowed",
            Some("POST, OPTIONS"),
        ),
        (
            b"PUT /api/v1/ready HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            405,
            "method_not_allowed",
            Some("GET, HEAD, OPTIONS"),
        ),
        (
            b"get /health HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            405,
            "method_not_allowed",
            Some("GET, HEAD, OPTIONS"),
        ),
        (
            chunked_req("/api/v1/available", "9\r\n{\"qty\":1}\r\n0\r\n\r\n"),
            405,
            "method_not_allowed",
            Some("GET, HEAD, OPTIONS"),
        ),
    ];
    let mut c = Client::new(&server);
    let pipeline: Vec<u8> = table.iter().flat_map(|row| row.0.clone()).collect();
    c.send(&pipeline);
    c.send(&get_req("/api/v1/available"));
    for (request, status, code, allow) in &table {
        let r = c.reply();
        let request = String::from_utf8_lossy(request);
        assert_error(&r, *status, code);
        assert_eq!(r.header("allow"), *allow, "{request}: {r:?}");
        assert_eq!(
            r.header("connection"),
            None,
            "{request}: a 4xx keeps the connection: {r:?}"
        );
    }
    assert_ok(&c.reply(), &json!({"qty": 100}));
}

/// `OPTIONS` and `CONNECT`, on one keep-alive connection: `OPTIONS *` is 204 with the server's
/// methods in `Allow` (RFC 9110 §9.3.7), `OPTIONS` on a known path 204 with that route's `Allow`
/// plus OPTIONS, on an unknown path 404; `CONNECT host:port` 405 with the server's `Allow` (not a
/// proxy). A 204 has no `Content-Length` (RFC 9110 §8.6) and the next response follows it
/// directly; nothing is sold.
#[test]
fn options_and_connect_are_answered() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);
    let all = Some("GET, HEAD, POST, OPTIONS");
    let table: Vec<(&[u8], u16, Option<&str>)> = vec![
        (b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", 204, all),
        (
            b"OPTIONS /api/v1/purchase HTTP/1.1\r\nHost: t\r\n\r\n",
            204,
            Some("POST, OPTIONS"),
        ),
        (
            b"OPTIONS /api/v1/reserve HTTP/1.1\r\nHost: t\r\n\r\n",
            204,
            Some("POST, OPTIONS"),
        ),
        (
            b"OPTIONS /api/v1/available?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
            204,
            Some("GET, HEAD, OPTIONS"),
        ),
        (
            b"OPTIONS /health HTTP/1.1\r\nHost: t\r\n\r\n",
            204,
            Some("GET, HEAD, OPTIONS"),
        ),
        (
            b"OPTIONS / HTTP/1.1\r\nHost: t\r\n\r\n",
            204,
            Some("GET, HEAD, OPTIONS"),
        ),
        (
            b"OPTIONS http://t/ready HTTP/1.1\r\nHost: t\r\n\r\n",
            204,
            Some("GET, HEAD, OPTIONS"),
        ),
        (b"OPTIONS /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404, None),
        (b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 405, all),
        (
            b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
            405,
            all,
        ),
    ];
    let pipeline: Vec<u8> = table.iter().flat_map(|row| row.0.to_vec()).collect();
    c.send(&pipeline);
    for (request, status, allow) in &table {
        let r = c.reply();
        let request = String::from_utf8_lossy(request);
        assert_eq!(r.status, *status, "{request}: {r:?}");
        assert_eq!(r.header("allow"), *allow, "{request}: {r:?}");
        match status {
            404 => assert_error(&r, 404, "not_found"),
            405 => assert_error(&r, 405, "method_not_allowed"),
            _ => {}
        }
    }
    assert_eq!(c.available(), 100);
}

/// RFC 9112 §3 recommends request lines of at least 8,000 octets: with the default limits an
/// 8,000-octet request line is routed (404 for its unknown path, not 414), and so is a purchase
/// whose query string makes its line 8,000 octets long (it sells); a target one byte over the
/// default target limit (8 KiB) still gets 414 and a close.
#[test]
fn request_lines_of_8000_octets_are_accepted_by_default() {
    let server = one_shard(100, &[]);
    let line = |path: &str, len: usize| {
        let fixed = format!("GET {path} HTTP/1.1").len();
        format!("{path}{}", "a".repeat(len - fixed))
    };
    let long_unknown = line("/x", 8000);
    assert_eq!(format!("GET {long_unknown} HTTP/1.1").len(), 8000);
    let mut c = Client::new(&server);
    let r = c.roundtrip(&get_req(&long_unknown));
    assert_error(&r, 404, "not_found");
    let long_purchase = line("/api/v1/purchase?q=", 8001);
    assert_ok(
        &c.roundtrip(&post_req(&long_purchase, r#"{"qty":1}"#)),
        &sold(99),
    );
    let over = format!("/{}", "a".repeat(8192));
    let r = c.roundtrip(&get_req(&over));
    assert_error(&r, 414, "target_too_long");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    c.assert_closed();
}

/// HEAD on a GET route is answered 200 with no content (RFC 9110 §9.3.2, RFC 9112 §6.3 rule 1):
/// the next pipelined response starts right after the HEAD response's empty line.
#[test]
fn head_responses_have_no_body() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);
    c.send(b"HEAD /health HTTP/1.1\r\nHost: t\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = c.carry.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = c.stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the HEAD response");
        c.carry.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&c.carry[..head_end]).to_string();
    // GET routes answer HEAD (RFC 9110 §9.1), with the Content-Length a GET would have.
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Length: "), "{head}");
    c.carry.drain(..head_end);
    while c.carry.len() < 9 {
        let n = c.stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the GET response");
        c.carry.extend_from_slice(&buf[..n]);
    }
    assert!(
        c.carry.starts_with(b"HTTP/1.1 200"),
        "the response to HEAD carried content; after its head came: {:?}",
        String::from_utf8_lossy(&c.carry)
    );
}

// ---------------------------------------------------------------------------------------------
// Order bodies.
// ---------------------------------------------------------------------------------------------

/// Every invalid order body is rejected, on purchase and on reserve alike: 400 `not_json` when it
/// is not JSON, 422 with the precise code when it is JSON with an invalid `qty` (0, negative,
/// fraction, string, null, missing, array, above `--max-order-qty`, repeated). Each answer is
/// the JSON error body, the connection stays usable, and `/available` never moves. The maximum
/// itself is accepted, and fields other than `qty` are ignored.
#[test]
fn invalid_order_bodies_are_rejected_and_sell_nothing() {
    let server = one_shard(100, &["--max-order-qty", "50"]);
    let table: &[(&str, u16, &str)] = &[
        ("qty=1", 400, "not_json"),
        ("", 400, "not_json"),
        ("{\"qty\":1", 400, "not_json"),
        ("{\"qty\":1}x", 400, "not_json"),
        ("{'qty':1}", 400, "not_json"),
        ("{\"qty\":0}", 422, "qty_out_of_range"),
        ("{\"qty\":-1}", 422, "qty_out_of_range"),
        ("{\"qty\":51}", 422, "qty_out_of_range"),
        ("{\"qty\":99999999999999999999999}", 422, "qty_out_of_range"),
        ("{\"qty\":1.5}", 422, "qty_not_integer"),
        ("{\"qty\":1.0}", 422, "qty_not_integer"),
        ("{\"qty\":\"3\"}", 422, "qty_not_integer"),
        ("{\"qty\":null}", 422, "qty_not_integer"),
        ("{\"qty\":[1]}", 422, "qty_not_integer"),
        ("{}", 422, "missing_qty"),
        ("{\"QTY\":1}", 422, "missing_qty"),
        ("[1]", 422, "not_object"),
        ("{\"qty\":1,\"qty\":1}", 422, "duplicate_qty"),
    ];
    let mut c = Client::new(&server);
    for path in ["/api/v1/purchase", "/api/v1/reserve"] {
        for &(body, status, code) in table {
            let r = c.roundtrip(&post_req(path, body));
            assert_error(&r, status, code);
            assert_eq!(r.header("connection"), None, "{path} {body:?}: {r:?}");
            assert_eq!(c.available(), 100, "{path} {body:?} changed the stock");
        }
        // No body at all (no Content-Length) is an empty body: not JSON.
        let r = c.roundtrip(format!("POST {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_error(&r, 400, "not_json");
        assert_eq!(c.available(), 100);
    }
    assert_ok(&c.roundtrip(&purchase_req(50)), &sold(50));
    assert_ok(
        &c.roundtrip(&post_req(
            "/api/v1/purchase",
            r#"{"qty": 1, "user": "ann"}"#,
        )),
        &sold(49),
    );
}

// ---------------------------------------------------------------------------------------------
// Persistence.
// ---------------------------------------------------------------------------------------------

/// HTTP/1.1 connections persist by default: 30 requests of every kind on one connection are all
/// answered, none of the answers says `Connection`, and the connection is still open afterwards.
#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);
    let mut stock = 100;
    for i in 0..30 {
        let r = match i % 3 {
            0 => c.roundtrip(&get_req("/api/v1/available")),
            1 => c.roundtrip(&purchase_req(1)),
            _ => c.roundtrip(&get_req("/health")),
        };
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.header("connection"), None, "request {i}: {r:?}");
        match i % 3 {
            0 => assert_eq!(body_json(&r), json!({"qty": stock})),
            1 => {
                stock -= 1;
                assert_eq!(body_json(&r), sold(stock));
            }
            _ => {}
        }
    }
    c.assert_silent_and_open(Duration::from_millis(100));
    assert_eq!(c.available(), 90);
}

/// HTTP/1.0 closes after the response unless the request asks for keep-alive: without it the
/// response says `Connection: close` and the server closes; with `Connection: keep-alive` (any
/// case) the response says `Connection: keep-alive` and the connection serves further HTTP/1.0
/// requests, bodies included. HTTP/1.0 needs no Host.
#[test]
fn http10_closes_unless_keep_alive_is_asked_for() {
    let server = one_shard(100, &[]);

    let mut c = Client::new(&server);
    let r = c.roundtrip(b"GET /api/v1/available HTTP/1.0\r\n\r\n");
    assert_ok(&r, &json!({"qty": 100}));
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    c.assert_closed();

    let mut c = Client::new(&server);
    let r = c.roundtrip(b"GET /api/v1/available HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_ok(&r, &json!({"qty": 100}));
    assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
    let r = c.roundtrip(
        b"POST /api/v1/purchase HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 9\r\n\r\n{\"qty\":2}",
    );
    assert_ok(&r, &sold(98));
    assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
    let r = c.roundtrip(b"GET /health HTTP/1.0\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    c.assert_closed();
}

/// `Connection: close` is honoured: the response says `Connection: close`, the server closes, and
/// a request pipelined behind it is never answered. `close` wins over `keep-alive` in one field.
/// A client that half-closes its side after a request is still answered before the close.
#[test]
fn connection_close_is_honoured() {
    let server = one_shard(100, &[]);

    let mut c = Client::new(&server);
    let r = c.roundtrip(b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_ok(&r, &json!({"qty": 100}));
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    c.assert_closed();

    let mut c = Client::new(&server);
    let mut pipeline = get_req("/health");
    pipeline.extend_from_slice(
        b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, close\r\nContent-Length: 9\r\n\r\n{\"qty\":1}",
    );
    pipeline.extend_from_slice(&purchase_req(1));
    c.send(&pipeline);
    let r = c.reply();
    assert_eq!((r.status, r.header("connection")), (200, None), "{r:?}");
    let r = c.reply();
    assert_ok(&r, &sold(99));
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    c.assert_closed();
    assert_eq!(
        available(&server),
        99,
        "the request after `close` was not served"
    );

    // A client that half-closes after its request still gets the answer, then the close.
    let mut c = Client::new(&server);
    c.send(&get_req("/api/v1/available"));
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_ok(&c.reply(), &json!({"qty": 99}));
    c.assert_closed();
}

// ---------------------------------------------------------------------------------------------
// Pipelining and arbitrary splits.
// ---------------------------------------------------------------------------------------------

/// 16 requests (GET available, purchase, an invalid purchase, reserve) written in ONE write get
/// 16 responses in request order, the stock decreasing request by request; then 100 requests in
/// one write (larger than the server's 4 KiB read buffer, so requests straddle reads) do too.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = one_shard(1000, &[]);
    let mut c = Client::new(&server);
    let mut stock = 1000;
    for batch in [16, 100] {
        let mut pipeline = Vec::new();
        let mut expected = Vec::new();
        for i in 0..batch {
            match i % 4 {
                0 => {
                    pipeline.extend_from_slice(&get_req("/api/v1/available"));
                    expected.push((200, json!({"qty": stock})));
                }
                1 => {
                    pipeline.extend_from_slice(&purchase_req(1));
                    stock -= 1;
                    expected.push((200, sold(stock)));
                }
                2 => {
                    pipeline.extend_from_slice(&post_req("/api/v1/purchase", r#"{"qty":0}"#));
                    expected.push((422, Value::Null));
                }
                _ => {
                    pipeline.extend_from_slice(&post_req("/api/v1/reserve", r#"{"qty":2}"#));
                    stock -= 2;
                    expected.push((200, reserved(stock, 2)));
                }
            }
        }
        c.send(&pipeline);
        for (i, (status, body)) in expected.iter().enumerate() {
            let r = c.reply();
            if *status == 422 {
                assert_error(&r, 422, "qty_out_of_range");
            } else {
                assert_eq!(
                    (r.status, &body_json(&r)),
                    (*status, body),
                    "response {i} of {batch}: {r:?}"
                );
            }
        }
    }
    assert_eq!(c.available(), stock);
}

/// A mixed pipeline (GET, Content-Length purchase, chunked purchase with an extension, GET
/// /health, HTTP/1.0 keep-alive GET) split into two reads at every byte offset in turn is
/// answered exactly as if sent whole: the split may fall inside a request line, between CR and
/// LF, inside a body, inside a chunk-size line or on a request boundary. The second part is
/// written only once the server has read the first (`support::wait_read`).
#[test]
fn a_pipeline_split_at_any_offset_is_answered_the_same() {
    let server = one_shard(1_000_000, &[]);
    let mut pipeline = get_req("/api/v1/available");
    pipeline.extend_from_slice(&purchase_req(1));
    pipeline.extend_from_slice(&chunked_req(
        "/api/v1/purchase",
        "4;a=b\r\n{\"qt\r\n5\r\ny\":2}\r\n0\r\n\r\n",
    ));
    pipeline.extend_from_slice(&get_req("/health"));
    pipeline.extend_from_slice(b"GET /api/v1/available HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let mut c = Client::new(&server);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut stock = 1_000_000;
    for split in 1..pipeline.len() {
        c.send_read(&pipeline[..split]);
        c.send(&pipeline[split..]);
        let at = format!(
            "split after {:?}",
            String::from_utf8_lossy(&pipeline[..split])
        );
        let mut next =
            |n: usize| try_reply(&mut c).unwrap_or_else(|| panic!("{at}: no response {n}"));
        assert_eq!(body_json(&next(1)), json!({"qty": stock}), "{at}");
        assert_eq!(body_json(&next(2)), sold(stock - 1), "{at}");
        assert_eq!(body_json(&next(3)), sold(stock - 3), "{at}");
        assert_eq!(body_json(&next(4))["status"], "healthy", "{at}");
        let r = next(5);
        assert_eq!(body_json(&r), json!({"qty": stock - 3}), "{at}");
        assert_eq!(r.header("connection"), Some("keep-alive"), "{at}");
        stock -= 3;
    }
}

/// A chunked request whose head arrives before its body is answered on a connection that earlier
/// received a request in pieces (what the server remembers of an earlier partial head must not
/// make it overlook the new bytes): a long head in two writes, then a chunked purchase whose head
/// and body are two writes, as curl sends an upload.
#[test]
fn a_chunked_body_after_its_head_is_read_on_a_reused_connection() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    c.send_read(
        format!(
            "GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: {}",
            "p".repeat(200)
        )
        .as_bytes(),
    );
    c.send(b"\r\n\r\n");
    assert_eq!(c.reply().status, 200);
    c.send_read(b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(b"9\r\n{\"qty\":1}\r\n0\r\n\r\n");
    let r = try_reply(&mut c).expect("no answer to a chunked body sent after its head");
    assert_ok(&r, &sold(99));
}

/// Requests written one byte per write (TCP_NODELAY, no delay between bytes) are answered
/// correctly: a Content-Length purchase, a chunked reserve, then a GET.
#[test]
fn a_request_written_one_byte_at_a_time_is_answered() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);
    let trickle = |c: &mut Client, request: &[u8]| {
        for byte in request {
            c.send(std::slice::from_ref(byte));
        }
        c.reply()
    };
    assert_ok(&trickle(&mut c, &purchase_req(2)), &sold(98));
    let r = trickle(
        &mut c,
        &chunked_req(
            "/api/v1/reserve",
            "3\r\n{\"q\r\n6;x=y\r\nty\":3}\r\n0\r\n\r\n",
        ),
    );
    assert_ok(&r, &reserved(95, 3));
    assert_ok(
        &trickle(&mut c, &get_req("/api/v1/available")),
        &json!({"qty": 95}),
    );
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies and 100-continue.
// ---------------------------------------------------------------------------------------------

/// `Transfer-Encoding: chunked` request bodies are decoded: one chunk, several chunks, chunk
/// extensions (with and without whitespace before `;`), upper- and lower-case hex sizes, leading
/// zeros, a trailer section, on purchase and reserve. Each is consumed exactly (the next request on
/// the connection is answered), and an invalid `qty` in a chunked body is a 422 that sells nothing.
#[test]
fn chunked_request_bodies_are_decoded() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);
    let purchase = "/api/v1/purchase";
    let table: &[(&str, &str, Value)] = &[
        (purchase, "9\r\n{\"qty\":1}\r\n0\r\n\r\n", sold(99)),
        (purchase, "7\r\n{\"qty\":\r\n2\r\n2}\r\n0\r\n\r\n", sold(97)),
        (
            purchase,
            "1\r\n{\r\n1\r\n\"\r\n7\r\nqty\":1}\r\n0\r\n\r\n",
            sold(96),
        ),
        (
            purchase,
            "9;name=value\r\n{\"qty\":1}\r\n0;last\r\n\r\n",
            sold(95),
        ),
        (
            purchase,
            "9 ;a=\"quoted\"\r\n{\"qty\":1}\r\n0\r\n\r\n",
            sold(94),
        ),
        (purchase, "A\r\n{\"qty\": 1}\r\n0\r\n\r\n", sold(93)),
        (purchase, "a\r\n{\"qty\": 1}\r\n0\r\n\r\n", sold(92)),
        (purchase, "0009\r\n{\"qty\":1}\r\n000\r\n\r\n", sold(91)),
        (
            purchase,
            "9\r\n{\"qty\":1}\r\n0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n",
            sold(90),
        ),
        (
            "/api/v1/reserve",
            "9\r\n{\"qty\":5}\r\n0\r\n\r\n",
            reserved(85, 5),
        ),
    ];
    for (path, chunked, expected) in table {
        let r = c.roundtrip(&chunked_req(path, chunked));
        assert_eq!(
            (r.status, &body_json(&r)),
            (200, expected),
            "{chunked:?}: {r:?}"
        );
        assert_eq!(
            c.available(),
            expected["remaining"].as_u64().unwrap(),
            "after {chunked:?}"
        );
    }
    let r = c.roundtrip(&chunked_req(purchase, "9\r\n{\"qty\":0}\r\n0\r\n\r\n"));
    assert_error(&r, 422, "qty_out_of_range");
    let r = c.roundtrip(&chunked_req(purchase, "0\r\n\r\n"));
    assert_error(&r, 400, "not_json");
    assert_eq!(c.available(), 85);
}

/// A chunked body that arrives in pieces, split inside the size line, between CR and LF, inside
/// chunk data and inside the last chunk, each piece read by the server before the next is
/// written, is decoded the same.
#[test]
fn a_chunked_body_split_across_writes_is_decoded() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);
    let pieces: &[&[u8]] = &[
        b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"1",
        b"1;ext",
        b"=1\r",
        b"\n{\"qty\"",
        b":        ",
        b"4}\r",
        b"\n",
        b"0",
        b"\r\n\r",
        b"\n",
    ];
    for piece in pieces {
        c.send_read(piece);
    }
    assert_ok(&c.reply(), &sold(96));
    assert_eq!(c.available(), 96);
}

/// `Expect: 100-continue`: when the head arrives alone, the server answers `100 Continue`, then
/// the final response once the body comes (Content-Length and chunked alike, the expectation
/// matched case-insensitively); when the body comes with the head, no 100 is sent.
#[test]
fn expect_100_continue_is_answered() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);

    c.send(b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
    let r = c.reply();
    assert_eq!((r.status, r.headers.len()), (100, 0), "{r:?}");
    c.send(b"{\"qty\":1}");
    assert_ok(&c.reply(), &sold(99));

    c.send(b"POST /api/v1/reserve HTTP/1.1\r\nHost: t\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    let r = c.reply();
    assert_eq!(r.status, 100, "{r:?}");
    c.send(b"9\r\n{\"qty\":2}\r\n0\r\n\r\n");
    assert_ok(&c.reply(), &reserved(97, 2));

    c.send(b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n{\"qty\":3}");
    assert_ok(&c.reply(), &sold(94));
    assert_eq!(c.available(), 94);
}

/// An HTTP/1.0 client never gets a `100 Continue` (RFC 9110 §10.1.1: a server MUST ignore a
/// 100-continue expectation in an HTTP/1.0 request, whose client cannot parse a 1xx): while it
/// waits with its head sent, nothing arrives; once the body comes, the 200 is the first response.
#[test]
fn expect_100_continue_is_ignored_for_http10() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);
    c.send(b"POST /api/v1/purchase HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
    c.assert_silent_and_open(Duration::from_millis(200));
    c.send(b"{\"qty\":1}");
    assert_ok(&c.reply(), &sold(99));
}

// ---------------------------------------------------------------------------------------------
// Malformed input.
// ---------------------------------------------------------------------------------------------

/// Malformed or ambiguous requests get the mapped status with the JSON error body (its `code`
/// naming the rule broken) and `Connection: close`, then the server closes the connection:
/// a Host with userinfo or a path, empty or a list (RFC 9112 §3.2), `*` with GET, authority-form
/// with GET and origin-form with CONNECT (§3.2), chunk extensions off their grammar (`9;`,
/// `9;bad[=x`, a bare `;` on the last chunk: §7.1.1) on purchases that would otherwise sell,
/// bare LF, bare CR, obs-fold, Content-Length with Transfer-Encoding, bad or differing
/// Content-Lengths, whitespace before a colon, missing or repeated Host, a bad request line or
/// target, control bytes in a value, HTTP/2.0 and 0.9 (505), unknown or unimplemented transfer
/// codings (501), a Transfer-Encoding not ending in one chunked, chunked in HTTP/1.0, bad chunk
/// sizes and chunk ends, an unsupported expectation (417). The purchases among them carry valid
/// bodies, and none sells anything. `GET /` then serves the parser errors counted by kind.
#[test]
fn malformed_requests_get_their_status_and_close() {
    let server = one_shard(100, &[]);
    const P: &str = "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\n";
    let post = |headers: &str, body: &str| format!("{P}{headers}\r\n{body}").into_bytes();
    let order = "{\"qty\":1}";
    let chunked_order = "9\r\n{\"qty\":1}\r\n0\r\n\r\n";
    let table: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("bare LF", b"GET /health HTTP/1.1\nHost: t\n\n".to_vec(), 400, "bare_lf"),
        ("bare LF in a field", b"GET /health HTTP/1.1\r\nHost: t\nX: y\r\n\r\n".to_vec(), 400, "bare_lf"),
        ("bare CR", b"GET /health HTTP/1.1\r\nHost: t\rX: y\r\n\r\n".to_vec(), 400, "bare_cr"),
        ("obs-fold", b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n\r\n".to_vec(), 400, "obs_fold"),
        (
            "CL then TE",
            post("Content-Length: 9\r\nTransfer-Encoding: chunked\r\n", chunked_order),
            400,
            "content_length_with_transfer_encoding",
        ),
        (
            "TE then CL",
            post("Transfer-Encoding: chunked\r\nContent-Length: 9\r\n", order),
            400,
            "content_length_with_transfer_encoding",
        ),
        ("CL not digits", post("Content-Length: abc\r\n", order), 400, "bad_content_length"),
        ("CL with plus", post("Content-Length: +9\r\n", order), 400, "bad_content_length"),
        ("CL negative", post("Content-Length: -1\r\n", order), 400, "bad_content_length"),
        ("CL empty", post("Content-Length: \r\n", order), 400, "bad_content_length"),
        ("CL hex", post("Content-Length: 0x9\r\n", order), 400, "bad_content_length"),
        (
            "differing CLs",
            post("Content-Length: 9\r\nContent-Length: 10\r\n", order),
            400,
            "conflicting_content_length",
        ),
        ("differing CL list", post("Content-Length: 9, 10\r\n", order), 400, "conflicting_content_length"),
        (
            "space before colon",
            b"GET /health HTTP/1.1\r\nHost : t\r\n\r\n".to_vec(),
            400,
            "whitespace_before_colon",
        ),
        (
            "space before colon in CL",
            post("Content-Length : 9\r\n", order),
            400,
            "whitespace_before_colon",
        ),
        ("missing Host", b"GET /health HTTP/1.1\r\n\r\n".to_vec(), 400, "missing_host"),
        ("two Hosts", b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), 400, "duplicate_host"),
        ("empty field name", b"GET /health HTTP/1.1\r\nHost: t\r\n: x\r\n\r\n".to_vec(), 400, "empty_header_name"),
        ("field without colon", b"GET /health HTTP/1.1\r\nHost: t\r\nX\r\n\r\n".to_vec(), 400, "bad_header_name"),
        ("NUL in value", b"GET /health HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n".to_vec(), 400, "bad_header_value"),
        ("double space", b"GET  /health HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400, "bad_request_line"),
        ("no version", b"GET /health\r\nHost: t\r\n\r\n".to_vec(), 400, "bad_request_line"),
        ("control in target", b"GET /he\x01lth HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400, "bad_target"),
        ("version garbage", b"GET /health HTTP/1.x\r\nHost: t\r\n\r\n".to_vec(), 400, "bad_version"),
        ("HTTP/2.0", b"GET /health HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), 505, "version_not_supported"),
        ("HTTP/0.9", b"GET /health HTTP/0.9\r\nHost: t\r\n\r\n".to_vec(), 505, "version_not_supported"),
        (
            "unknown coding",
            post("Transfer-Encoding: foo, chunked\r\n", chunked_order),
            501,
            "unsupported_transfer_coding",
        ),
        (
            "gzip coding",
            post("Transfer-Encoding: gzip, chunked\r\n", chunked_order),
            501,
            "unsupported_transfer_coding",
        ),
        ("TE not ending in chunked", post("Transfer-Encoding: gzip\r\n", order), 400, "bad_transfer_encoding"),
        (
            "chunked twice",
            post("Transfer-Encoding: chunked, chunked\r\n", chunked_order),
            400,
            "bad_transfer_encoding",
        ),
        (
            "TE in HTTP/1.0",
            format!("POST /api/v1/purchase HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_order}").into_bytes(),
            400,
            "transfer_encoding_in_http10",
        ),
        (
            "chunk size not hex",
            post("Transfer-Encoding: chunked\r\n", "zz\r\n{\"qty\":1}\r\n0\r\n\r\n"),
            400,
            "bad_chunk_size",
        ),
        (
            "chunk size empty",
            post("Transfer-Encoding: chunked\r\n", "\r\n{\"qty\":1}\r\n0\r\n\r\n"),
            400,
            "bad_chunk_size",
        ),
        (
            "chunk size overflow",
            post("Transfer-Encoding: chunked\r\n", "1ffffffffffffffff\r\n{\"qty\":1}\r\n0\r\n\r\n"),
            400,
            "bad_chunk_size",
        ),
        (
            "chunk size signed",
            post("Transfer-Encoding: chunked\r\n", "-9\r\n{\"qty\":1}\r\n0\r\n\r\n"),
            400,
            "bad_chunk_size",
        ),
        (
            "chunk data too long",
            post("Transfer-Encoding: chunked\r\n", "8\r\n{\"qty\":1}\r\n0\r\n\r\n"),
            400,
            "bad_chunk_end",
        ),
        ("unsupported expectation", post("Expect: 200-ok\r\nContent-Length: 9\r\n", order), 417, "unsupported_expectation"),
        ("Host with userinfo", b"GET /health HTTP/1.1\r\nHost: user@h\r\n\r\n".to_vec(), 400, "bad_host"),
        ("Host with a path", b"GET /health HTTP/1.1\r\nHost: h/path\r\n\r\n".to_vec(), 400, "bad_host"),
        ("empty Host", b"GET /health HTTP/1.1\r\nHost:\r\n\r\n".to_vec(), 400, "bad_host"),
        ("Host list", b"GET /health HTTP/1.1\r\nHost: a, b\r\n\r\n".to_vec(), 400, "bad_host"),
        (
            "purchase with a bad Host",
            b"POST /api/v1/purchase HTTP/1.1\r\nHost: u@t\r\nContent-Length: 9\r\n\r\n{\"qty\":1}".to_vec(),
            400,
            "bad_host",
        ),
        ("GET *", b"GET * HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400, "bad_target_form"),
        ("GET authority-form", b"GET t:443 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400, "bad_target_form"),
        ("CONNECT origin-form", b"CONNECT /health HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400, "bad_target_form"),
        (
            "chunk extension: bare semicolon",
            post("Transfer-Encoding: chunked\r\n", "9;\r\n{\"qty\":1}\r\n0\r\n\r\n"),
            400,
            "bad_chunk_extension",
        ),
        (
            "chunk extension: name not a token",
            post("Transfer-Encoding: chunked\r\n", "9;bad[=x\r\n{\"qty\":1}\r\n0\r\n\r\n"),
            400,
            "bad_chunk_extension",
        ),
        (
            "chunk extension on the last chunk: bare semicolon",
            post("Transfer-Encoding: chunked\r\n", "9\r\n{\"qty\":1}\r\n0;\r\n\r\n"),
            400,
            "bad_chunk_extension",
        ),
    ];
    for (name, request, status, code) in &table {
        let mut c = Client::new(&server);
        let r = c.roundtrip(request);
        assert_error(&r, *status, code);
        assert_eq!(r.header("connection"), Some("close"), "{name}: {r:?}");
        let (more, closed) = read_until_closed(&mut c.stream, Duration::from_secs(2));
        assert!(
            c.carry.is_empty() && more.is_empty(),
            "{name}: bytes after the error: {more:?}"
        );
        assert!(closed, "{name}: the server kept the connection open");
    }
    assert_eq!(available(&server), 100, "a rejected request sold tickets");
    // Each rejection was counted by its kind, and `GET /` serves every kind's count.
    let root = body_json(&get(&server, "/"));
    let served = &root["counters"]["http_errors"];
    for e in proto_http::Error::ALL {
        let rejected = table.iter().filter(|row| row.3 == e.as_str()).count();
        assert_eq!(
            served[e.as_str()],
            json!(rejected),
            "{}: {root}",
            e.as_str()
        );
    }
    assert_eq!(
        served.as_object().map(|kinds| kinds.len()),
        Some(proto_http::Error::ALL.len()),
        "{root}"
    );
}

/// A framing error after valid pipelined requests: the valid ones are answered first, in order,
/// then the error, then the close.
#[test]
fn a_malformed_request_behind_valid_ones_is_answered_in_turn() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);
    let mut pipeline = purchase_req(1);
    pipeline.extend_from_slice(&get_req("/health"));
    pipeline.extend_from_slice(
        b"GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
    );
    pipeline.extend_from_slice(&purchase_req(1));
    c.send(&pipeline);
    assert_ok(&c.reply(), &sold(99));
    assert_eq!(c.reply().status, 200);
    let r = c.reply();
    assert_error(&r, 400, "conflicting_content_length");
    assert_eq!(r.header("connection"), Some("close"));
    c.assert_closed();
    assert_eq!(available(&server), 99);
}

/// Lingering close: after the error response to a malformed request, the client still reads the
/// whole response although it keeps sending garbage behind it; the server neither resets the
/// connection under the response nor answers the garbage, and then closes.
#[test]
fn lingering_close_delivers_the_error_response() {
    let server = one_shard(100, &[]);
    let mut c = Client::new(&server);
    let mut bytes = b"GET /health HTTP/1.1\r\nHost : t\r\n\r\n".to_vec();
    bytes.resize(bytes.len() + 32 * 1024, b'x');
    c.send(&bytes);
    // Let the server answer and close its side while garbage is still unread; then send more.
    std::thread::sleep(Duration::from_millis(50));
    let garbage = [b'y'; 8 * 1024];
    for _ in 0..2 {
        if c.stream.write_all(&garbage).is_err() {
            break;
        }
    }
    let r = c.reply();
    assert_error(&r, 400, "whitespace_before_colon");
    assert_eq!(r.header("connection"), Some("close"));
    let (more, closed) = read_until_closed(&mut c.stream, Duration::from_secs(2));
    assert!(
        c.carry.is_empty() && more.is_empty(),
        "bytes after the error: {more:?}"
    );
    assert!(closed, "the server kept the connection open");
}

// ---------------------------------------------------------------------------------------------
// Limits.
// ---------------------------------------------------------------------------------------------

/// A head of exactly `n` bytes: GET /health with a padding field.
fn head_of(n: usize) -> Vec<u8> {
    let bare = "GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: \r\n\r\n".len();
    format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(n - bare)
    )
    .into_bytes()
}

/// The configured limits are enforced exactly at their bounds, with the mapped status, the JSON
/// error body and a close: a head over `--head-bytes-max` is 431 (complete or not, so the server
/// never buffers more), a target over `--target-bytes-max` 414, a body over `--body-bytes-max` 413
/// (declared by Content-Length, answered before any body byte; or summed over chunks, or one
/// chunk alone), more fields than `--headers-max` 431; an unended head trickled in small writes is
/// refused as soon as it reaches the limit. Requests exactly at each limit succeed,
/// and the rejected purchases sell nothing.
#[test]
fn limits_are_enforced_at_their_bounds() {
    let server = one_shard(
        100,
        &[
            "--head-bytes-max",
            "512",
            "--target-bytes-max",
            "64",
            "--body-bytes-max",
            "32",
            "--headers-max",
            "8",
        ],
    );
    let target_of = |n: usize| {
        format!(
            "/api/v1/available?{}",
            "q".repeat(n - "/api/v1/available?".len())
        )
    };
    let fields = |n: usize| (1..n).map(|i| format!("X-{i}: v\r\n")).collect::<String>();
    let body_32 = format!("{{\"qty\":1}}{}", " ".repeat(32 - 9));

    let mut c = Client::new(&server);
    assert_eq!(
        c.roundtrip(&head_of(512)).status,
        200,
        "a head of exactly the limit"
    );
    assert_ok(&c.roundtrip(&get_req(&target_of(64))), &json!({"qty": 100}));
    let r = c.roundtrip(format!("GET /health HTTP/1.1\r\nHost: t\r\n{}\r\n", fields(8)).as_bytes());
    assert_eq!(r.status, 200, "exactly --headers-max fields: {r:?}");
    assert_ok(
        &c.roundtrip(&post_req("/api/v1/purchase", &body_32)),
        &sold(99),
    );
    let chunked_32 = format!(
        "10\r\n{}\r\n10\r\n{}\r\n0\r\n\r\n",
        &body_32[..16],
        &body_32[16..]
    );
    assert_ok(
        &c.roundtrip(&chunked_req("/api/v1/purchase", &chunked_32)),
        &sold(98),
    );

    let head_unended = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {}",
        "b".repeat(600)
    );
    let body_33 = format!("{body_32} ");
    let table: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("head one byte over", head_of(513), 431, "head_too_large"),
        (
            "head over, never ended",
            head_unended.into_bytes(),
            431,
            "head_too_large",
        ),
        (
            "target one byte over",
            get_req(&target_of(65)),
            414,
            "target_too_long",
        ),
        (
            "one field too many",
            format!("GET /health HTTP/1.1\r\nHost: t\r\n{}\r\n", fields(9)).into_bytes(),
            431,
            "too_many_headers",
        ),
        (
            "Content-Length over, head only",
            b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 33\r\n\r\n".to_vec(),
            413,
            "body_too_large",
        ),
        (
            "Content-Length over with body",
            post_req("/api/v1/purchase", &body_33),
            413,
            "body_too_large",
        ),
        (
            "chunks summing over",
            chunked_req(
                "/api/v1/purchase",
                &format!(
                    "10\r\n{}\r\n11\r\n{}\r\n0\r\n\r\n",
                    &body_33[..16],
                    &body_33[16..]
                ),
            ),
            413,
            "body_too_large",
        ),
        (
            "one chunk over",
            chunked_req("/api/v1/purchase", &format!("21\r\n{body_33}\r\n0\r\n\r\n")),
            413,
            "body_too_large",
        ),
    ];
    for (name, request, status, code) in &table {
        let mut c = Client::new(&server);
        let r = c.roundtrip(request);
        assert_error(&r, *status, code);
        assert_eq!(r.header("connection"), Some("close"), "{name}: {r:?}");
        let (more, closed) = read_until_closed(&mut c.stream, Duration::from_secs(2));
        assert!(
            c.carry.is_empty() && more.is_empty(),
            "{name}: bytes after the error: {more:?}"
        );
        assert!(closed, "{name}: the server kept the connection open");
    }

    // An unended head trickled in pieces is refused once it reaches the limit, not buffered on.
    let mut c = Client::new(&server);
    c.send(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ");
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(2));
        if c.stream.write_all(&[b'b'; 100]).is_err() {
            break;
        }
    }
    let r = c.reply();
    assert_error(&r, 431, "head_too_large");
    c.assert_closed();

    assert_eq!(available(&server), 98, "a rejected request sold tickets");
}

// ---------------------------------------------------------------------------------------------
// Timeouts.
// ---------------------------------------------------------------------------------------------

/// With `--head-timeout-ms 300` (and the default 60 s idle timeout, so only the head deadline can
/// act): a client that sends half a head and stalls is disconnected after the deadline, well
/// within 2 s, without any response; a client that trickles one byte of a never-ending head every
/// 50 ms is disconnected too (the deadline runs from the first byte, reads do not extend it); and
/// a head sent in pieces that completes within the deadline is answered.
#[test]
fn a_head_that_does_not_complete_in_time_is_cut() {
    let server = one_shard(100, &["--head-timeout-ms", "300"]);

    let mut c = Client::new(&server);
    c.send(b"GET /api/v1/available HTTP/1.1\r\nHo");
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut c.stream, Duration::from_secs(3));
    let elapsed = started.elapsed();
    assert!(closed, "a stalled head was not cut");
    assert!(
        got.is_empty(),
        "a stalled head got an answer: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        elapsed >= Duration::from_millis(250),
        "cut before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "cut too late: {elapsed:?}"
    );

    let mut c = Client::new(&server);
    c.send(b"GET /health HTTP/1.1\r\nX: ");
    let started = Instant::now();
    c.stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 256];
    let closed_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a trickled head was not cut"
        );
        if c.stream.write_all(b"a").is_err() {
            break started.elapsed();
        }
        match c.stream.read(&mut buf) {
            Ok(0) => break started.elapsed(),
            Ok(n) => panic!(
                "a trickled head got an answer: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break started.elapsed(),
        }
    };
    assert!(
        closed_after >= Duration::from_millis(250),
        "cut before the deadline: {closed_after:?}"
    );

    let mut c = Client::new(&server);
    for piece in [
        &b"GET /api/v1/avail"[..],
        b"able HTTP/1.1\r\n",
        b"Host: t\r\n",
        b"\r\n",
    ] {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(40));
    }
    assert_ok(&c.reply(), &json!({"qty": 100}));
}

/// With `--idle-timeout-ms 300`: a keep-alive connection idle after a response is closed after
/// the timeout (within 2 s) without any further bytes, and so is a connection that never sends
/// anything.
#[test]
fn idle_keep_alive_connections_are_closed() {
    let server = one_shard(100, &["--idle-timeout-ms", "300"]);
    let mut silent = Client::new(&server);
    let mut c = Client::new(&server);
    assert_ok(
        &c.roundtrip(&get_req("/api/v1/available")),
        &json!({"qty": 100}),
    );
    let started = Instant::now();
    for client in [&mut c, &mut silent] {
        let (got, closed) = read_until_closed(&mut client.stream, Duration::from_secs(3));
        assert!(closed, "an idle connection was not closed");
        assert!(
            got.is_empty(),
            "an idle connection got bytes: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "closed before the idle timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "closed too late: {elapsed:?}"
    );
}

/// With both timeouts at 300 ms, a connection that keeps sending requests in time is not cut:
/// six rounds of 150 ms idle, then a head sent in two halves 100 ms apart, span about four times
/// each timeout, and every request is answered on the same connection.
#[test]
fn a_connection_that_keeps_sending_in_time_is_not_cut() {
    let server = one_shard(
        100,
        &["--head-timeout-ms", "300", "--idle-timeout-ms", "300"],
    );
    let mut c = Client::new(&server);
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(150));
        c.send(b"GET /api/v1/available HTTP/1.1\r\n");
        std::thread::sleep(Duration::from_millis(100));
        c.send(b"Host: t\r\n\r\n");
        let r =
            try_reply(&mut c).unwrap_or_else(|| panic!("round {round}: the connection was cut"));
        assert_ok(&r, &json!({"qty": 100}));
    }
}

/// The head deadline belongs to each request, not to a run of requests: a client whose writes
/// each finish one request and start the next (so the connection is never idle between them),
/// every head completing within 100 ms of its first byte, is served for well over the 300 ms
/// head timeout.
#[test]
fn back_to_back_requests_each_get_their_own_head_deadline() {
    let server = one_shard(100, &["--head-timeout-ms", "300"]);
    let mut c = Client::new(&server);
    c.send(b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\n");
    for round in 0..8 {
        std::thread::sleep(Duration::from_millis(100));
        c.send(b"\r\nGET /api/v1/available HTTP/1.1\r\nHost: t\r\n");
        let r = try_reply(&mut c).unwrap_or_else(|| {
            panic!(
                "round {round}: the connection was cut {} ms into a run of quick requests",
                (round + 1) * 100
            )
        });
        assert_ok(&r, &json!({"qty": 100}));
    }
    c.send(b"\r\n");
    assert_ok(&c.reply(), &json!({"qty": 100}));
}

/// One response, or `None` when the server closed the connection first.
fn try_reply(c: &mut Client) -> Option<Reply> {
    let r = support::try_read_reply(&mut c.stream, &mut c.carry)?;
    check_framing(&r);
    Some(r)
}

// ---------------------------------------------------------------------------------------------
// Connections per shard.
// ---------------------------------------------------------------------------------------------

/// With `--shards 1 --connections-max 2`, two open connections take both slots: a third
/// connection (queued by the kernel) gets no answer to its request while they stay open, and is
/// answered as soon as one of them closes. The two first ones keep working throughout.
#[test]
fn connections_per_shard_are_capped() {
    let server = one_shard(100, &["--connections-max", "2"]);
    let mut first = Client::new(&server);
    let mut second = Client::new(&server);
    assert_eq!(first.available(), 100);
    assert_eq!(second.available(), 100);

    let mut third = Client::new(&server);
    third.send(&get_req("/api/v1/available"));
    third.assert_silent_and_open(Duration::from_millis(300));
    assert_eq!(
        second.available(),
        100,
        "an admitted connection still works"
    );

    drop(first);
    assert_ok(&third.reply(), &json!({"qty": 100}));
    assert_eq!(second.available(), 100);
}

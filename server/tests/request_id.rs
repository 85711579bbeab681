//! `X-Request-Id` over TCP against the real binary: a client's usable id is echoed, an unusable
//! one replaced, generated ids are unique across shards, every response carries one (errors and
//! an escalated order's deferred answer included), and ticket mode forwards it to the vacancy
//! service.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use support::{exchange, free_port, read_reply, Reply, Server};

/// `POST /api/v1/purchase` for `qty` with the header line `id_line` (may be empty).
fn purchase(qty: u64, id_line: &str) -> Vec<u8> {
    let body = format!("{{\"qty\":{qty}}}");
    format!(
        "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\n{id_line}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get_with(server: &Server, path: &str, id_line: &str) -> Reply {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{id_line}Connection: close\r\n\r\n");
    exchange(server, request.as_bytes())
}

/// A generated id: `{8 hex}-{shard}-{hex counter}`.
fn is_generated(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 3
        && parts[0].len() == 8
        && parts[0].bytes().all(|b| b.is_ascii_hexdigit())
        && parts[1].parse::<usize>().is_ok()
        && u64::from_str_radix(parts[2], 16).is_ok()
}

/// A usable client id is echoed as sent; one too long, not visible ASCII, or empty is replaced
/// by a generated one; on both transports.
#[test]
fn client_ids_are_echoed_or_replaced() {
    for transport in ["uring", "glommio"] {
        let server =
            Server::start_with_env(&["--shards", "1"], &[("TICKETD_TRANSPORT", transport)]);
        ids_are_echoed_or_replaced(&server);
    }
}

fn ids_are_echoed_or_replaced(server: &Server) {
    let kept = "a".repeat(64);
    let reply = get_with(
        server,
        "/api/v1/available",
        &format!("X-Request-Id: {kept}\r\n"),
    );
    assert_eq!(reply.header("x-request-id"), Some(kept.as_str()));
    let reply = get_with(server, "/health", "x-request-id: trace-42/abc\r\n");
    assert_eq!(reply.header("x-request-id"), Some("trace-42/abc"));
    let too_long = "b".repeat(65);
    for line in [
        format!("X-Request-Id: {too_long}\r\n"),
        "X-Request-Id: caf\u{e9}\r\n".to_string(),
        "X-Request-Id: two words\r\n".to_string(),
        "X-Request-Id:\r\n".to_string(),
        String::new(),
    ] {
        let reply = get_with(server, "/api/v1/available", &line);
        assert_eq!(reply.status, 200, "{line:?}");
        let id = reply.header("x-request-id").expect("an id");
        assert!(is_generated(id), "{line:?} got {id:?}");
    }
}

/// Ids generated for many fresh connections spread over 2 shards are all different, and both
/// shards made some.
#[test]
fn generated_ids_are_unique_across_shards() {
    let server = Server::start(&["--shards", "2"]);
    let mut ids = HashSet::new();
    let mut shards = HashSet::new();
    for _ in 0..400 {
        let reply = get_with(&server, "/api/v1/available", "");
        let id = reply.header("x-request-id").expect("an id").to_string();
        assert!(is_generated(&id), "{id}");
        shards.insert(id.split('-').nth(1).unwrap().to_string());
        assert!(ids.insert(id.clone()), "{id} repeated");
    }
    assert_eq!(shards.len(), 2, "both shards answered: {shards:?}");
}

/// Errors carry the id too: 404, 405, 422, a framing error's 400 (a fresh id: the head did not
/// parse), and an escalated order's deferred answer (2 shards with 5 tickets each, an order
/// for 8 waits for the coordinator).
#[test]
fn errors_and_deferred_answers_carry_the_id() {
    let server = Server::start(&["--shards", "2", "--initial-stock", "10"]);
    let line = "X-Request-Id: err-1\r\n";
    assert_eq!(get_with(&server, "/nope", line).status, 404);
    assert_eq!(
        get_with(&server, "/nope", line).header("x-request-id"),
        Some("err-1")
    );
    let reply = get_with(&server, "/api/v1/purchase", line);
    assert_eq!(
        (reply.status, reply.header("x-request-id")),
        (405, Some("err-1"))
    );
    let reply = exchange(&server, &purchase(0, line));
    assert_eq!(
        (reply.status, reply.header("x-request-id")),
        (422, Some("err-1"))
    );
    let reply = exchange(&server, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(reply.status, 400);
    assert!(is_generated(reply.header("x-request-id").unwrap()));
    let reply = exchange(&server, &purchase(8, "X-Request-Id: big-order\r\n"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("\"success\":true"), "{}", reply.body);
    assert_eq!(reply.header("x-request-id"), Some("big-order"));
}

/// A fake vacancy service that records every request head it gets and answers each reserve
/// with a sale (and anything else with `{"qty":1}`).
fn recording_vacancy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                let (n, v) = l.split_once(':')?;
                                n.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() < end + 4 + length {
                            break;
                        }
                        buf.drain(..end + 4 + length);
                        let body: &str = if head.starts_with("POST") {
                            "{\"success\":true,\"remaining\":5,\"message\":\"Reserved 1 tickets\"}"
                        } else {
                            "{\"qty\":1}"
                        };
                        seen.lock().unwrap().push(head);
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (port, heads)
}

/// Ticket mode sends the client's id (or the one it generated) to the vacancy service with the
/// forwarded reserve, and echoes it to the client; a failed forward's 503 carries it too.
#[test]
fn ticket_mode_forwards_the_id() {
    let (port, heads) = recording_vacancy();
    let url = format!("http://127.0.0.1:{port}");
    let ticket = Server::start(&["--mode", "ticket", "--shards", "1", "--vacancy-url", &url]);
    let reply = exchange(&ticket, &purchase(1, "X-Request-Id: fwd-7\r\n"));
    assert_eq!(
        (reply.status, reply.header("x-request-id")),
        (200, Some("fwd-7"))
    );
    let reply = exchange(&ticket, &purchase(1, ""));
    assert_eq!(reply.status, 200);
    let generated = reply.header("x-request-id").unwrap().to_string();
    assert!(is_generated(&generated), "{generated}");
    let heads = heads.lock().unwrap().clone();
    let reserves: Vec<&String> = heads.iter().filter(|h| h.starts_with("POST")).collect();
    assert_eq!(reserves.len(), 2, "{heads:?}");
    assert!(
        reserves[0].contains("\r\nX-Request-Id: fwd-7"),
        "{}",
        reserves[0]
    );
    assert!(
        reserves[1].contains(&format!("\r\nX-Request-Id: {generated}")),
        "{}",
        reserves[1]
    );

    // A vacancy service that is not there: the 503 names the request too.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let ticket = Server::start(&[
        "--mode",
        "ticket",
        "--shards",
        "1",
        "--vacancy-url",
        &dead,
        "--vacancy-timeout",
        "0.5",
    ]);
    let reply = exchange(&ticket, &purchase(1, "X-Request-Id: down-1\r\n"));
    assert_eq!(
        (reply.status, reply.header("x-request-id")),
        (503, Some("down-1"))
    );
}

/// A real vacancy process echoes the id the ticket tier forwards, and the ticket tier's own
/// response carries it (both tiers name the request the same way).
#[test]
fn vacancy_echoes_a_forwarded_id() {
    let vacancy = Server::start(&["--mode", "vacancy", "--shards", "1", "--initial-stock", "5"]);
    let reserve = b"POST /api/v1/reserve HTTP/1.1\r\nHost: t\r\nX-Request-Id: from-ticket\r\n\
                    Content-Length: 9\r\nConnection: close\r\n\r\n{\"qty\":1}";
    let reply = exchange(&vacancy, reserve);
    assert_eq!(
        (reply.status, reply.header("x-request-id")),
        (200, Some("from-ticket"))
    );
    let mut stream = vacancy.connect();
    stream
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut stream, &mut Vec::new());
    assert!(is_generated(reply.header("x-request-id").unwrap()));
}

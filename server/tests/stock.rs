//! Stock invariants through the real server with several shards (unpinned on small machines):
//! concurrent clients never get more tickets than exist, every ticket sells, a sold-out answer is
//! never premature, and at rest `sold + available == initial` exactly.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{get, read_reply, Server};

/// Freshness used by these tests, so that `/available` becomes exact quickly once writes stop.
const CACHE_TTL: &str = "0.2";

/// Waits long enough for every shard's report to reach every other shard.
fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}

/// Runs `clients` threads, each on its own keep-alive connection, sending `orders` orders each
/// and returning the tickets granted. `order(i)` gives (path, qty) for the i-th order.
fn hammer(
    server: &Server,
    clients: usize,
    orders: usize,
    order: fn(usize, usize) -> (&'static str, u64),
) -> u64 {
    let granted = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        for client in 0..clients {
            let granted = granted.clone();
            scope.spawn(move || {
                let mut stream = server.connect();
                let mut carry = Vec::new();
                for i in 0..orders {
                    let (path, qty) = order(client, i);
                    let body = format!("{{\"qty\":{qty}}}");
                    let request = format!(
                        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    stream.write_all(request.as_bytes()).unwrap();
                    let reply = read_reply(&mut stream, &mut carry);
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    if reply.json("success").as_deref() == Some("true") {
                        granted.fetch_add(qty, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    granted.load(Ordering::Relaxed)
}

fn available(server: &Server) -> u64 {
    get(server, "/api/v1/available")
        .json("qty")
        .unwrap()
        .parse()
        .unwrap()
}

/// With 2, 4 and 8 shards, 16 clients on connections spread over all shards, buying one ticket at
/// a time far past the stock, get exactly the stock in successes, and `/available` ends at 0:
/// slices rebalance, and nobody is told "sold out" while a ticket remains anywhere.
#[test]
fn every_ticket_sells_exactly_once_on_any_shard_count() {
    for shards in ["2", "4", "8"] {
        let server = Server::start(&[
            "--shards",
            shards,
            "--initial-stock",
            "500",
            "--cache-ttl-seconds",
            CACHE_TTL,
        ]);
        let sold = hammer(&server, 16, 60, |_, _| ("/api/v1/purchase", 1));
        assert_eq!(sold, 500, "{shards} shards: 960 orders for 500 tickets");
        settle();
        assert_eq!(available(&server), 0, "{shards} shards: nothing left");
    }
}

/// An order for the whole stock succeeds from one connection, gathered from every slice; an
/// order one larger fails and leaves the stock whole.
#[test]
fn an_order_for_the_whole_stock_is_gathered_from_every_slice() {
    for shards in ["2", "4", "8"] {
        let server = Server::start(&[
            "--shards",
            shards,
            "--initial-stock",
            "1000",
            "--cache-ttl-seconds",
            CACHE_TTL,
        ]);
        let too_many = support::post(&server, "/api/v1/purchase", r#"{"qty":1001}"#);
        assert_eq!(
            too_many.json("success").as_deref(),
            Some("false"),
            "{shards}: {}",
            too_many.body
        );
        settle();
        assert_eq!(
            available(&server),
            1000,
            "{shards} shards: a failed gather gives every ticket back"
        );
        let all = support::post(&server, "/api/v1/purchase", r#"{"qty":1000}"#);
        assert_eq!(
            all.json("success").as_deref(),
            Some("true"),
            "{shards}: {}",
            all.body
        );
        let more = support::post(&server, "/api/v1/purchase", r#"{"qty":1}"#);
        assert_eq!(more.json("success").as_deref(), Some("false"));
        settle();
        assert_eq!(available(&server), 0);
    }
}

/// Random mixes of purchase and reserve with random quantities conserve the stock exactly.
#[test]
fn random_mixes_conserve_exactly() {
    let server = Server::start(&[
        "--shards",
        "4",
        "--initial-stock",
        "10000",
        "--cache-ttl-seconds",
        CACHE_TTL,
    ]);
    let sold = hammer(&server, 8, 100, |client, i| {
        // A small deterministic generator per (client, i): no randomness crate needed.
        let x = (client as u64 * 7919 + i as u64 * 104_729) % 97;
        let path = if x.is_multiple_of(2) {
            "/api/v1/purchase"
        } else {
            "/api/v1/reserve"
        };
        (path, 1 + x % 40)
    });
    assert!(sold <= 10_000);
    settle();
    assert_eq!(sold + available(&server), 10_000);
}

/// `/available` starts at the initial stock on every shard, whatever the shard count.
#[test]
fn every_shard_reports_the_whole_initial_stock() {
    let server = Server::start(&["--shards", "3", "--initial-stock", "1001"]);
    for _ in 0..12 {
        assert_eq!(available(&server), 1001);
    }
}

//! The per-client rate limit over TCP against the real binary: off by default; with a low
//! limit a burst of purchases from one client gets 429s with `Retry-After` and the JSON error
//! body, nothing beyond the limit is sold, other routes stay unaffected unless every route is
//! limited, and the bucket refills after its period.

mod support;

use std::io::Write;
use std::time::Duration;

use support::{get, read_reply, Reply, Server};

fn purchase_request() -> &'static [u8] {
    b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":1}"
}

/// Sends `n` purchases pipelined on one keep-alive connection (so they land on one shard);
/// returns the replies.
fn burst(server: &Server, n: usize) -> Vec<Reply> {
    let mut stream = server.connect();
    stream.write_all(&purchase_request().repeat(n)).unwrap();
    let mut carry = Vec::new();
    (0..n)
        .map(|_| read_reply(&mut stream, &mut carry))
        .collect()
}

fn sold(server: &Server) -> u64 {
    let stock: u64 = get(server, "/api/v1/available")
        .json("qty")
        .unwrap()
        .parse()
        .unwrap();
    100 - stock
}

/// A burst of 3 at 1 purchase per second: of 10 pipelined purchases, 3 sell and 7 answer 429
/// `rate_limited` with `Retry-After: 1` and the error body; exactly 3 tickets are gone; GET
/// routes answer 200 meanwhile; after the period one more purchase sells. Both transports.
#[test]
fn purchases_over_the_limit_get_429_and_sell_nothing() {
    for transport in ["uring", "glommio"] {
        let server = Server::start_with_env(
            &[
                "--shards",
                "1",
                "--initial-stock",
                "100",
                "--rate-limit-purchases-per-second",
                "1",
                "--rate-limit-burst",
                "3",
            ],
            &[("TICKETD_TRANSPORT", transport)],
        );
        let replies = burst(&server, 10);
        let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [200, 200, 200, 429, 429, 429, 429, 429, 429, 429],
            "{transport}"
        );
        for r in &replies[3..] {
            assert_eq!(r.header("retry-after"), Some("1"), "{transport}");
            assert_eq!(
                r.json("code").as_deref(),
                Some("\"rate_limited\""),
                "{}",
                r.body
            );
            assert_eq!(r.json("error").as_deref(), Some("\"Too Many Requests\""));
            assert!(r.header("x-request-id").is_some());
        }
        for _ in 0..20 {
            assert_eq!(get(&server, "/api/v1/available").status, 200, "{transport}");
            assert_eq!(get(&server, "/health").status, 200, "{transport}");
        }
        assert_eq!(
            sold(&server),
            3,
            "{transport}: nothing beyond the limit sold"
        );
        std::thread::sleep(Duration::from_millis(1100));
        let after = burst(&server, 2);
        assert_eq!(after[0].status, 200, "{transport}: a token came back");
        assert_eq!(after[1].status, 429, "{transport}");
        assert_eq!(sold(&server), 4, "{transport}");
    }
}

/// With `--rate-limit-all-routes`, GETs count too: a burst of GETs passes up to the bucket's
/// size (less the start-up probe's `GET /health`, which counted too), then gets 429 with a
/// wait of 2 s at half a token a second.
#[test]
fn all_routes_can_be_limited() {
    let server = Server::start(&[
        "--shards",
        "1",
        "--rate-limit-purchases-per-second",
        "0.5",
        "--rate-limit-burst",
        "3",
        "--rate-limit-all-routes",
    ]);
    let mut stream = server.connect();
    stream
        .write_all(&b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n".repeat(4))
        .unwrap();
    let mut carry = Vec::new();
    let replies: Vec<Reply> = (0..4)
        .map(|_| read_reply(&mut stream, &mut carry))
        .collect();
    let passed = replies.iter().take_while(|r| r.status == 200).count();
    assert!((1..=3).contains(&passed), "{passed} passed");
    for r in &replies[passed..] {
        assert_eq!(
            (r.status, r.header("retry-after")),
            (429, Some("2")),
            "{}",
            r.body
        );
    }
}

/// Off by default: 100 purchases in a burst from one client all sell.
#[test]
fn off_by_default() {
    let server = Server::start(&["--shards", "1", "--initial-stock", "100"]);
    let replies = burst(&server, 100);
    assert!(replies
        .iter()
        .all(|r| r.status == 200 && r.body.contains("\"success\":true")));
    assert_eq!(sold(&server), 100);
}

/// The documented bound with SO_REUSEPORT: each of 2 shards gives the client the full burst, so
/// of 60 purchases on fresh connections (spread over both shards) between 1× and 2× the burst
/// sell, and every other one answers 429.
#[test]
fn connections_spread_over_shards_get_at_most_shards_times_the_burst() {
    let server = Server::start(&[
        "--shards",
        "2",
        "--initial-stock",
        "1000",
        "--rate-limit-purchases-per-second",
        "0.001",
        "--rate-limit-burst",
        "5",
    ]);
    let replies: Vec<Reply> = (0..60).map(|_| burst(&server, 1).remove(0)).collect();
    let sold = replies
        .iter()
        .filter(|r| r.status == 200 && r.body.contains("\"success\":true"))
        .count();
    let limited = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(sold + limited, 60);
    assert!((5..=10).contains(&sold), "{sold} sold");
}

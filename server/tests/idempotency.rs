//! `Idempotency-Key` over TCP against the real server (issue 17): a keyed order sells once
//! whichever shard its connections land on, also across kill -9 and a compaction; another body
//! with the same key is 422; concurrent duplicates sell once; bad keys are 400.
//!
//! Every server runs with its own data directory (a fresh temp dir, or one made here for the
//! restarts).

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};

use support::{buy, read_reply, DataDir, Reply, Server};

/// A keyed POST on `stream` (keep-alive).
fn keyed(stream: &mut TcpStream, path: &str, key: &str, body: &str) -> Reply {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_reply(stream, &mut Vec::new())
}

/// `GET /` on `stream`: the shard that serves the connection.
fn shard_of(stream: &mut TcpStream) -> u64 {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let reply = read_reply(stream, &mut Vec::new());
    reply.json("shard").unwrap().parse().unwrap()
}

/// Buys the rest one ticket at a time until refused; returns how many sold.
fn drain(server: &Server) -> u64 {
    let mut stream = server.connect();
    let mut sold = 0;
    loop {
        let body = "{\"qty\":1}";
        let request = format!(
            "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let reply = read_reply(&mut stream, &mut Vec::new());
        if reply.json("success").as_deref() != Some("true") {
            return sold;
        }
        sold += 1;
    }
}

/// The status line's code, the body and the fields a replay must repeat.
fn answer(reply: &Reply) -> (u16, String) {
    (reply.status, reply.body.clone())
}

#[test]
fn a_keyed_purchase_repeated_on_every_shard_sells_once() {
    const SHARDS: u64 = 3;
    // 60 of 100 is more than any one slice holds: the owner escalates it to the coordinator.
    let server = Server::start(&["--shards", "3", "--initial-stock", "100"]);
    let mut first = None;
    let mut shards_seen = [0u32; SHARDS as usize];
    for i in 0..100 {
        let mut stream = server.connect();
        shards_seen[shard_of(&mut stream) as usize] += 1;
        let reply = keyed(&mut stream, "/api/v1/purchase", "order-60", "{\"qty\":60}");
        assert_eq!(reply.status, 200, "try {i}: {reply:?}");
        match &first {
            None => {
                assert_eq!(reply.json("success").as_deref(), Some("true"), "{reply:?}");
                first = Some(answer(&reply));
            }
            Some(first) => assert_eq!(&answer(&reply), first, "try {i}"),
        }
    }
    assert!(
        shards_seen.iter().all(|&n| n > 0),
        "connections reached every shard: {shards_seen:?}"
    );
    // One sale of 60: 40 remain, and no more.
    assert!(!buy(&server, 41));
    assert_eq!(drain(&server), 40);
}

#[test]
fn a_keyed_sale_survives_kill_9_and_answers_the_same() {
    let dir = DataDir::new("idem", "kill9");
    let args = [
        "--shards",
        "2",
        "--initial-stock",
        "10",
        "--data-dir",
        dir.arg(),
    ];
    let mut server = Server::start(&args);
    let mut keys = Vec::new();
    for i in 0..6 {
        let key = format!("crash-{i}");
        let reply = keyed(
            &mut server.connect(),
            "/api/v1/purchase",
            &key,
            "{\"qty\":1}",
        );
        assert_eq!(reply.json("success").as_deref(), Some("true"), "{reply:?}");
        keys.push((key, answer(&reply)));
    }
    server.crash();
    let server = Server::start(&args);
    let mut shards_seen = [0u32; 2];
    for (key, first) in &keys {
        for _ in 0..10 {
            let mut stream = server.connect();
            shards_seen[shard_of(&mut stream) as usize] += 1;
            let reply = keyed(&mut stream, "/api/v1/purchase", key, "{\"qty\":1}");
            assert_eq!(&answer(&reply), first, "{key} after kill -9");
            assert_eq!(reply.header("idempotent-replayed"), Some("true"));
        }
    }
    assert!(shards_seen.iter().all(|&n| n > 0), "{shards_seen:?}");
    assert_eq!(
        drain(&server),
        4,
        "six keyed sales of one ticket, each once"
    );
}

#[test]
fn compaction_keeps_live_keys() {
    let dir = DataDir::new("idem", "compact");
    let args = [
        "--shards",
        "1",
        "--initial-stock",
        "10000",
        "--journal-compact-bytes",
        "65536",
        "--data-dir",
        dir.arg(),
    ];
    let mut server = Server::start(&args);
    let first = keyed(
        &mut server.connect(),
        "/api/v1/purchase",
        "kept",
        "{\"qty\":5}",
    );
    assert_eq!(first.json("success").as_deref(), Some("true"), "{first:?}");
    // 3,000 sale records (27 bytes each) pass the 64 KiB threshold: the file is compacted.
    let mut stream = server.connect();
    let body = "{\"qty\":1}";
    let one = format!(
        "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut carry = Vec::new();
    for _ in 0..30 {
        stream.write_all(one.repeat(100).as_bytes()).unwrap();
        for _ in 0..100 {
            let reply = read_reply(&mut stream, &mut carry);
            assert_eq!(reply.json("success").as_deref(), Some("true"));
        }
    }
    let file: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("shard-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(file < 3_000 * 27, "the journal was compacted: {file} bytes");
    server.crash();
    let server = Server::start(&args);
    let again = keyed(
        &mut server.connect(),
        "/api/v1/purchase",
        "kept",
        "{\"qty\":5}",
    );
    assert_eq!(
        answer(&again),
        answer(&first),
        "the key outlived the compaction"
    );
    assert!(!buy(&server, 10_000 - 3_000 - 5 + 1));
    assert!(buy(&server, 10_000 - 3_000 - 5));
}

#[test]
fn another_body_with_the_same_key_is_422() {
    let server = Server::start(&["--shards", "2", "--initial-stock", "100"]);
    let first = keyed(
        &mut server.connect(),
        "/api/v1/purchase",
        "k-422",
        "{\"qty\":2}",
    );
    assert_eq!(first.status, 200);
    // The same request written otherwise is the same request.
    let same = keyed(
        &mut server.connect(),
        "/api/v1/purchase",
        "k-422",
        "{ \"qty\" : 2 }",
    );
    assert_eq!(answer(&same), answer(&first));
    for (path, body) in [
        ("/api/v1/purchase", "{\"qty\":3}"),
        ("/api/v1/reserve", "{\"qty\":2}"),
    ] {
        let reply = keyed(&mut server.connect(), path, "k-422", body);
        assert_eq!(reply.status, 422, "{path} {body}: {reply:?}");
        assert_eq!(
            reply.json("code").as_deref(),
            Some("\"idempotency_key_reused\"")
        );
    }
    assert_eq!(drain(&server), 98, "only the first sold");
}

#[test]
fn bad_keys_are_400_and_sell_nothing() {
    let server = Server::start(&["--shards", "1", "--initial-stock", "5"]);
    let long = "k".repeat(256);
    for key in ["a b", long.as_str(), "caf\u{e9}"] {
        let reply = keyed(
            &mut server.connect(),
            "/api/v1/purchase",
            key,
            "{\"qty\":1}",
        );
        assert_eq!(reply.status, 400, "{key}: {reply:?}");
        assert_eq!(
            reply.json("code").as_deref(),
            Some("\"idempotency_key_invalid\"")
        );
    }
    // The header twice with different values: which one was meant cannot be known.
    let twice = keyed(
        &mut server.connect(),
        "/api/v1/purchase",
        "order-a\r\nIdempotency-Key: order-b",
        "{\"qty\":1}",
    );
    assert_eq!(twice.status, 400, "{twice:?}");
    assert!(twice.body.contains("more than once"), "{}", twice.body);
    let max = "k".repeat(255);
    let reply = keyed(
        &mut server.connect(),
        "/api/v1/purchase",
        &max,
        "{\"qty\":1}",
    );
    assert_eq!(reply.status, 200, "255 bytes is a key");
    // Twice with the same value (a proxy may repeat a field): one key.
    let same = keyed(
        &mut server.connect(),
        "/api/v1/purchase",
        "order-c\r\nIdempotency-Key: order-c",
        "{\"qty\":1}",
    );
    assert_eq!(same.status, 200, "{same:?}");
    let root = support::get(&server, "/");
    assert!(root.body.contains("\"invalid\":4"), "{}", root.body);
    assert!(root.body.contains("\"keys\":2"), "{}", root.body);
    assert_eq!(drain(&server), 3);
}

#[test]
fn concurrent_duplicates_sell_once() {
    const CLIENTS: usize = 24;
    let server = Arc::new(Server::start(&["--shards", "2", "--initial-stock", "1000"]));
    for round in 0..5 {
        let key = format!("race-{round}");
        let barrier = Arc::new(Barrier::new(CLIENTS));
        let threads: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (server, barrier, key) = (server.clone(), barrier.clone(), key.clone());
                std::thread::spawn(move || {
                    let mut stream = server.connect();
                    barrier.wait();
                    keyed(&mut stream, "/api/v1/purchase", &key, "{\"qty\":7}")
                })
            })
            .collect();
        let replies: Vec<Reply> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let ok: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
        assert!(!ok.is_empty());
        assert!(ok.iter().all(|r| answer(r) == answer(ok[0])), "{ok:?}");
        for r in replies.iter().filter(|r| r.status != 200) {
            assert_eq!(r.status, 409, "{r:?}");
            assert_eq!(
                r.json("code").as_deref(),
                Some("\"idempotency_key_in_flight\"")
            );
        }
    }
    assert_eq!(drain(&server), 1000 - 5 * 7, "five keys, five sales");
}

/// Reads one HTTP/1.1 message (head, and a body by Content-Length) from `stream`, keeping what
/// follows in `carry`; `None` when the stream ends first.
fn read_message(stream: &mut TcpStream, carry: &mut Vec<u8>) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = carry.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&carry[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            let total = end + 4 + length;
            while carry.len() < total {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                carry.extend_from_slice(&chunk[..n]);
            }
            return Some(carry.drain(..total).collect());
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        carry.extend_from_slice(&chunk[..n]);
    }
}

/// A TCP proxy in front of the vacancy service that injects one fault: the first reserve it
/// sees goes to the vacancy service, which answers (and sells), and then the proxy closes the
/// ticket tier's connection without passing the answer on. Everything else is relayed, one
/// request and its answer at a time.
struct FaultyProxy {
    port: u16,
    dropped: Arc<std::sync::atomic::AtomicU32>,
}

impl FaultyProxy {
    fn start(upstream: std::net::SocketAddr) -> FaultyProxy {
        use std::sync::atomic::{AtomicU32, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dropped = Arc::new(AtomicU32::new(0));
        let drops = dropped.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let drops = drops.clone();
                std::thread::spawn(move || {
                    let mut vacancy = TcpStream::connect(upstream).unwrap();
                    let (mut from_client, mut from_vacancy) = (Vec::new(), Vec::new());
                    while let Some(request) = read_message(&mut client, &mut from_client) {
                        vacancy.write_all(&request).unwrap();
                        let Some(answer) = read_message(&mut vacancy, &mut from_vacancy) else {
                            return;
                        };
                        let reserve = request.starts_with(b"POST /api/v1/reserve");
                        if reserve && drops.fetch_add(1, Ordering::SeqCst) == 0 {
                            let _ = client.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        client.write_all(&answer).unwrap();
                    }
                });
            }
        });
        FaultyProxy { port, dropped }
    }
}

/// Reserves one ticket at a time straight from the vacancy service until refused.
fn drain_vacancy(vacancy: &Server) -> u64 {
    let mut sold = 0;
    loop {
        let reply = support::post(vacancy, "/api/v1/reserve", "{\"qty\":1}");
        if reply.json("success").as_deref() != Some("true") {
            return sold;
        }
        sold += 1;
    }
}

#[test]
fn the_ticket_tier_retries_a_reserve_whose_answer_was_lost() {
    let vacancy = Server::start(&[
        "--mode",
        "vacancy",
        "--shards",
        "2",
        "--initial-stock",
        "10",
    ]);
    let proxy = FaultyProxy::start(vacancy.addr);
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let ticket = Server::start(&[
        "--mode",
        "ticket",
        "--shards",
        "1",
        "--vacancy-url",
        &url,
        "--vacancy-timeout",
        "5",
    ]);
    // The reserve sells, its answer is lost with the connection: the ticket tier sends it again
    // with the same key and the vacancy service answers what it did.
    let reply = support::post(&ticket, "/api/v1/purchase", "{\"qty\":3}");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json("success").as_deref(), Some("true"), "{reply:?}");
    assert_eq!(reply.json("remaining").as_deref(), Some("7"), "{reply:?}");
    // The vacancy service replayed the first attempt's answer to the retry: for the client it
    // is the first answer, not marked as a replay.
    assert_eq!(reply.header("idempotent-replayed"), None, "{reply:?}");
    let attempts = proxy.dropped.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        attempts, 2,
        "the first attempt was cut, the retry went through"
    );
    // A client's own key reaches the vacancy service as one key, from any ticket connection.
    let mut first = None;
    for i in 0..5 {
        let reply = keyed(
            &mut ticket.connect(),
            "/api/v1/purchase",
            "client-k",
            "{\"qty\":2}",
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        let answer = answer(&reply);
        assert_eq!(first.get_or_insert(answer.clone()), &answer);
        // The client's repeats are replays, marked as the vacancy service marks them.
        let replayed = (i > 0).then_some("true");
        assert_eq!(reply.header("idempotent-replayed"), replayed, "{reply:?}");
    }
    // The ticket tier counts the sale once, not once per replay.
    let root = support::get(&ticket, "/");
    assert!(root.body.contains("\"orders_sold\":2,"), "{}", root.body);
    let reused = keyed(
        &mut ticket.connect(),
        "/api/v1/purchase",
        "client-k",
        "{\"qty\":1}",
    );
    assert_eq!(reused.status, 422, "{reused:?}");
    let bad = keyed(
        &mut ticket.connect(),
        "/api/v1/purchase",
        "a b",
        "{\"qty\":1}",
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(drain_vacancy(&vacancy), 10 - 3 - 2, "one sale each");
}

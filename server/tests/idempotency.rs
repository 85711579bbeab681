//! `Idempotency-Key` over TCP against the real server (issue 17): a keyed order sells once
//! whichever shard its connections land on, also across kill -9 and a compaction; another body
//! with the same key is 422; concurrent duplicates sell once; bad keys are 400.
//!
//! Every server runs with its own data directory (a fresh temp dir, or one made here for the
//! restarts).

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use support::{read_reply, Reply, Server};

/// A data directory that outlives one server (for restarts); removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new(name: &str) -> DataDir {
        let path = std::env::temp_dir().join(format!("ticketd-idem-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        DataDir(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp dir")
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

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

/// A purchase without a key; whether it sold.
fn buy(server: &Server, qty: u64) -> bool {
    let reply = support::post(server, "/api/v1/purchase", &format!("{{\"qty\":{qty}}}"));
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json("success").as_deref() == Some("true")
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
    let dir = DataDir::new("kill9");
    let args = ["--shards", "2", "--initial-stock", "10", "--data-dir", dir.arg()];
    let mut server = Server::start(&args);
    let mut keys = Vec::new();
    for i in 0..6 {
        let key = format!("crash-{i}");
        let reply = keyed(&mut server.connect(), "/api/v1/purchase", &key, "{\"qty\":1}");
        assert_eq!(reply.json("success").as_deref(), Some("true"), "{reply:?}");
        keys.push((key, answer(&reply)));
    }
    server.crash();
    let server = Server::start(&args);
    for (key, first) in &keys {
        for _ in 0..4 {
            let mut stream = server.connect();
            let reply = keyed(&mut stream, "/api/v1/purchase", key, "{\"qty\":1}");
            assert_eq!(&answer(&reply), first, "{key} after kill -9");
        }
    }
    assert_eq!(drain(&server), 4, "six keyed sales of one ticket, each once");
}

#[test]
fn compaction_keeps_live_keys() {
    let dir = DataDir::new("compact");
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
    let first = keyed(&mut server.connect(), "/api/v1/purchase", "kept", "{\"qty\":5}");
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
    let again = keyed(&mut server.connect(), "/api/v1/purchase", "kept", "{\"qty\":5}");
    assert_eq!(answer(&again), answer(&first), "the key outlived the compaction");
    assert!(!buy(&server, 10_000 - 3_000 - 5 + 1));
    assert!(buy(&server, 10_000 - 3_000 - 5));
}

#[test]
fn another_body_with_the_same_key_is_422() {
    let server = Server::start(&["--shards", "2", "--initial-stock", "100"]);
    let first = keyed(&mut server.connect(), "/api/v1/purchase", "k-422", "{\"qty\":2}");
    assert_eq!(first.status, 200);
    // The same request written otherwise is the same request.
    let same = keyed(&mut server.connect(), "/api/v1/purchase", "k-422", "{ \"qty\" : 2 }");
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
        let reply = keyed(&mut server.connect(), "/api/v1/purchase", key, "{\"qty\":1}");
        assert_eq!(reply.status, 400, "{key}: {reply:?}");
        assert_eq!(
            reply.json("code").as_deref(),
            Some("\"idempotency_key_invalid\"")
        );
    }
    let max = "k".repeat(255);
    let reply = keyed(&mut server.connect(), "/api/v1/purchase", &max, "{\"qty\":1}");
    assert_eq!(reply.status, 200, "255 bytes is a key");
    let root = support::get(&server, "/");
    assert!(root.body.contains("\"invalid\":3"), "{}", root.body);
    assert!(root.body.contains("\"keys\":1"), "{}", root.body);
    assert_eq!(drain(&server), 4);
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

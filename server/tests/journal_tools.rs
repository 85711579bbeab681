//! `ticketd journal inspect` and `ticketd journal reset` through the real binary, on data
//! directories a real server wrote over TCP: inspect shows what each shard sold and holds, names
//! a torn tail and a corruption apart with file and offset, and says so in its exit status; reset
//! refuses while a server runs, and starts a new sale the next server serves without a warning.
//! (A reset cut at every step is tested in `durability::journal::reset`, on the memory disk.)

mod support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    available_once_settled, buy, get, listing, try_read_reply, DataDir, Server, SETTLE_TIMEOUT,
};

/// How long a tool may take: it reads a few small files.
const TOOL_TIMEOUT: Duration = Duration::from_secs(20);

/// Freshness of `/available`, so that it becomes exact quickly.
const CACHE_TTL: &str = "0.05";

/// Bytes of a one-shard snapshot record (19 + 26 + 32); each sale after it takes 27.
const SNAPSHOT_1: u64 = 77;
/// Bytes of one sale record.
const SALE: u64 = 27;

/// Exit statuses of `ticketd journal` (see `ticketd::tools::journal`).
const EXIT_CLEAN: i32 = 0;
const EXIT_FAILED: i32 = 1;
const EXIT_TORN_TAIL: i32 = 3;
const EXIT_DAMAGED: i32 = 4;

/// The one shard file of the current epoch for `shard` in `dir`.
fn shard_file(dir: &DataDir, shard: usize) -> PathBuf {
    let prefix = format!("shard-{shard}.e");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".log")
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

/// What a tool run gave: exit status, stdout, stderr.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Stdout as the JSON of `inspect --json`.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `ticketd journal ARGS` (with an empty environment for its options) to completion.
fn journal(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .current_dir(std::env::temp_dir())
        .arg("journal")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("DATA_DIR")
        .env_remove("INITIAL_STOCK")
        .env_remove("SHARDS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TOOL_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ticketd journal {args:?} hangs");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut run = Run {
        code: child.wait().unwrap().code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::new(),
    };
    child
        .stdout
        .unwrap()
        .read_to_string(&mut run.stdout)
        .unwrap();
    child
        .stderr
        .unwrap()
        .read_to_string(&mut run.stderr)
        .unwrap();
    run
}

/// `inspect --json` of `dir`, expecting exit status `code`.
fn inspect(dir: &DataDir, code: i32) -> Value {
    let run = journal(&["inspect", "--json", "--data-dir", dir.arg()]);
    assert_eq!(run.code, code, "{}\n{}", run.stdout, run.stderr);
    run.json()
}

/// Buys `n` tickets one at a time on one connection, `depth` orders in flight, so that the
/// journal's records are many and small.
fn buy_pipelined(server: &Server, n: usize, depth: usize) {
    let body = "{\"qty\":1}";
    let request = format!(
        "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = server.connect();
    let mut carry = Vec::new();
    let mut sent = 0;
    while sent < n {
        let burst = depth.min(n - sent);
        stream.write_all(request.repeat(burst).as_bytes()).unwrap();
        for _ in 0..burst {
            let reply = try_read_reply(&mut stream, &mut carry).expect("an order went unanswered");
            assert_eq!(
                reply.json("success").as_deref(),
                Some("true"),
                "{}",
                reply.body
            );
        }
        sent += burst;
    }
}

/// The value of `name{shard="i"}` for each of `shards` shards on `/metrics`.
fn per_shard(text: &str, name: &str, shards: usize) -> Vec<u64> {
    (0..shards)
        .map(|i| {
            let key = format!("{name}{{shard=\"{i}\"}} ");
            let line = text
                .lines()
                .find(|l| l.starts_with(&key))
                .unwrap_or_else(|| panic!("no {key} in\n{text}"));
            line[key.len()..].trim().parse().unwrap()
        })
        .collect()
}

/// `(sold, available)` per shard from `/metrics`, once the shards' sales add up to `sold`.
fn metrics_once_settled(server: &Server, shards: usize, sold: u64) -> (Vec<u64>, Vec<u64>) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let text = get(server, "/metrics").body;
        let s = per_shard(&text, "ticketd_slice_tickets_sold_total", shards);
        let a = per_shard(&text, "ticketd_stock_available_tickets", shards);
        if s.iter().sum::<u64>() == sold || Instant::now() > deadline {
            return (s, a);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn field(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

/// After sales over TCP on two shards, `inspect --json` shows each shard's sold and available
/// as the server reported them on `/metrics`, the totals, the manifest, and exit status 0; the
/// text form says the same to a person, and changes no file.
#[test]
fn inspect_shows_sold_and_available_per_shard() {
    let dir = DataDir::new("journal-tools", "inspect");
    let args = [
        "--shards",
        "2",
        "--initial-stock",
        "100",
        "--data-dir",
        dir.arg(),
    ];
    let server = Server::start(&args);
    // One connection per order: SO_REUSEPORT spreads them over both shards.
    for qty in [1, 2, 3, 4, 5, 6] {
        assert!(buy(&server, qty), "sold");
    }
    let (sold, available) = metrics_once_settled(&server, 2, 21);
    drop(server);

    let before = listing(dir.path());
    let v = inspect(&dir, EXIT_CLEAN);
    assert_eq!(v["status"], "clean", "{v}");
    assert_eq!(v["in_use"], false, "{v}");
    assert_eq!(field(&v["manifest"], "stock"), 100, "{v}");
    assert_eq!(field(&v["manifest"], "shards"), 2, "{v}");
    assert_eq!((field(&v, "sold"), field(&v, "available")), (21, 79), "{v}");
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "{v}");
    for (i, shard) in shards.iter().enumerate() {
        assert_eq!(field(shard, "sold"), sold[i], "shard {i}: {v}");
        assert_eq!(field(shard, "available"), available[i], "shard {i}: {v}");
        assert_eq!(field(&shard["records"], "snapshot"), 1, "{v}");
    }
    let sales: u64 = shards.iter().map(|s| field(&s["records"], "sale")).sum();
    assert_eq!(sales, 6, "{v}");
    assert!(v["damage"].as_array().unwrap().is_empty(), "{v}");

    let text = journal(&["inspect", "--data-dir", dir.arg()]);
    assert_eq!(text.code, EXIT_CLEAN, "{}", text.stderr);
    assert!(
        text.stdout.contains("stock 100, sold 21, available 79"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("status: clean"), "{}", text.stdout);
    assert_eq!(
        listing(dir.path()),
        before,
        "inspect changed the data directory"
    );
}

/// A shard file cut in the middle of its last record is a torn tail, named with the file and
/// the offset where the record began (exit status 3); the next start cuts it and keeps the rest.
#[test]
fn a_torn_tail_is_named_with_file_and_offset() {
    let dir = DataDir::new("journal-tools", "torn");
    let args = [
        "--shards",
        "1",
        "--initial-stock",
        "100",
        "--data-dir",
        dir.arg(),
        "--cache-ttl-seconds",
        CACHE_TTL,
    ];
    let server = Server::start(&args);
    for _ in 0..5 {
        assert!(buy(&server, 1), "sold");
    }
    drop(server);
    let file = shard_file(&dir, 0);
    let torn_at = SNAPSHOT_1 + 4 * SALE;
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(torn_at + 10).unwrap();
    drop(f);

    let v = inspect(&dir, EXIT_TORN_TAIL);
    assert_eq!(v["status"], "torn_tail", "{v}");
    let damage = v["damage"].as_array().unwrap();
    assert_eq!(damage.len(), 1, "{v}");
    let name = file.file_name().unwrap().to_str().unwrap();
    assert_eq!(damage[0]["kind"], "torn_tail", "{v}");
    assert_eq!(damage[0]["file"], name, "{v}");
    assert_eq!(field(&damage[0], "offset"), torn_at, "{v}");
    assert_eq!((field(&v, "sold"), field(&v, "available")), (4, 96), "{v}");
    let text = journal(&["inspect", "--data-dir", dir.arg()]);
    assert_eq!(text.code, EXIT_TORN_TAIL);
    let line = format!("damage: torn tail in {name} at offset {torn_at}");
    assert!(text.stdout.contains(&line), "{}", text.stdout);

    let server = Server::start(&args);
    assert_eq!(available_once_settled(&server, 96), 96);
}

/// A flipped byte in a record with thousands of intact records after it is corruption, not a
/// torn tail: named with the file and the record's offset, exit status 4.
#[test]
fn corruption_in_the_middle_is_named_with_file_and_offset() {
    let dir = DataDir::new("journal-tools", "corrupt");
    let args = [
        "--shards",
        "1",
        "--initial-stock",
        "10000",
        "--data-dir",
        dir.arg(),
    ];
    let server = Server::start(&args);
    // 2,600 sales of 27 bytes: past the 64 KiB a torn last batch can reach.
    buy_pipelined(&server, 2600, 64);
    drop(server);
    let file = shard_file(&dir, 0);
    let mut bytes = std::fs::read(&file).unwrap();
    let bad = SNAPSHOT_1 + 10 * SALE;
    bytes[(bad + 9) as usize] ^= 0x01; // inside the record's sequence number
    std::fs::write(&file, &bytes).unwrap();

    let v = inspect(&dir, EXIT_DAMAGED);
    assert_eq!(v["status"], "damaged", "{v}");
    let damage = &v["damage"][0];
    assert_eq!(damage["kind"], "corruption", "{v}");
    let name = file.file_name().unwrap().to_str().unwrap();
    assert_eq!(damage["file"], name, "{v}");
    assert_eq!(field(damage, "offset"), bad, "{v}");
    assert_eq!(field(&v["shards"][0]["records"], "sale"), 10, "{v}");
    assert!(v["sold"].is_null(), "{v}");
    let text = journal(&["inspect", "--data-dir", dir.arg()]);
    assert_eq!(text.code, EXIT_DAMAGED);
    let line = format!("damage: corruption in {name} at offset {bad}: checksum mismatch");
    assert!(text.stdout.contains(&line), "{}", text.stdout);
}

/// While a server holds the data directory, reset refuses with one line and changes nothing:
/// the server sells on from the same stock, and a later inspect finds every sale. Without
/// `--initial-stock` (or `INITIAL_STOCK`) it refuses too.
#[test]
fn reset_refuses_while_a_server_runs_and_without_a_stock() {
    let dir = DataDir::new("journal-tools", "busy");
    let args = [
        "--shards",
        "2",
        "--initial-stock",
        "100",
        "--data-dir",
        dir.arg(),
        "--cache-ttl-seconds",
        CACHE_TTL,
    ];
    let server = Server::start(&args);
    assert!(buy(&server, 3), "sold");
    let before = listing(dir.path());
    let run = journal(&["reset", "--initial-stock", "5", "--data-dir", dir.arg()]);
    assert_eq!(run.code, EXIT_FAILED, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("in use by a running ticketd"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert_eq!(
        listing(dir.path()),
        before,
        "a refused reset changed the data directory"
    );
    let v = inspect(&dir, EXIT_CLEAN);
    assert_eq!(v["in_use"], true, "{v}");
    assert_eq!(available_once_settled(&server, 97), 97);
    assert!(buy(&server, 2), "sold");
    drop(server);
    let v = inspect(&dir, EXIT_CLEAN);
    assert_eq!((field(&v, "sold"), field(&v, "available")), (5, 95), "{v}");

    // Without a stock of its own a reset refuses (a usage error, 2), with the server stopped
    // too: it never starts a new sale of the default 1000 by accident.
    let before = listing(dir.path());
    let run = journal(&["reset", "--data-dir", dir.arg()]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("--initial-stock N"), "{}", run.stderr);
    assert_eq!(
        listing(dir.path()),
        before,
        "a refused reset changed nothing"
    );
}

/// A server started with another INITIAL_STOCK keeps the journal's and its warning names the
/// command; after `reset --initial-stock 40`, a server starts with 40 available and no journal
/// warning, and inspect shows the new sale.
#[test]
fn after_a_reset_the_server_starts_the_new_sale_without_a_warning() {
    let dir = DataDir::new("journal-tools", "reset");
    let with_stock = |stock: &'static str| {
        vec![
            "--shards",
            "2",
            "--initial-stock",
            stock,
            "--data-dir",
            dir.arg(),
            "--cache-ttl-seconds",
            CACHE_TTL,
        ]
    };
    let server = Server::start(&with_stock("100"));
    assert!(buy(&server, 7), "sold");
    drop(server);
    let server = Server::start(&with_stock("40"));
    assert_eq!(available_once_settled(&server, 93), 93);
    let log = server.log_once("ticketd listening", SETTLE_TIMEOUT);
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("ticketd journal reset --initial-stock 40")),
        "the warning does not name the command:\n{log}"
    );
    drop(server);

    let run = journal(&[
        "reset",
        "--initial-stock",
        "40",
        "--shards",
        "2",
        "--data-dir",
        dir.arg(),
    ]);
    assert_eq!(run.code, EXIT_CLEAN, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("a new sale of 40 tickets over 2 shards"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("a sale of 100 tickets, 7 sold, 93 available"),
        "{}",
        run.stdout
    );
    let v = inspect(&dir, EXIT_CLEAN);
    assert_eq!(field(&v["manifest"], "stock"), 40, "{v}");
    assert_eq!((field(&v, "sold"), field(&v, "available")), (0, 40), "{v}");

    let server = Server::start(&with_stock("40"));
    assert_eq!(available_once_settled(&server, 40), 40);
    assert!(buy(&server, 40), "sold");
    let log = server.log_once("ticketd listening", SETTLE_TIMEOUT);
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("journal"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// Inspect of a directory that does not exist fails with one line and creates nothing; of an
/// empty one, says there is no journal yet and exits 0. A reset of an empty one starts a sale.
#[test]
fn inspect_of_a_missing_or_empty_directory() {
    let dir = DataDir::new("journal-tools", "missing");
    let run = journal(&["inspect", "--data-dir", dir.arg()]);
    assert_eq!(run.code, EXIT_FAILED, "{}", run.stdout);
    assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);
    assert!(!dir.path().exists(), "inspect created the directory");

    std::fs::create_dir_all(dir.path()).unwrap();
    let v = inspect(&dir, EXIT_CLEAN);
    assert!(v["manifest"].is_null() && v["sold"].is_null(), "{v}");
    let text = journal(&["inspect", "--data-dir", dir.arg()]);
    assert!(text.stdout.contains("manifest: none"), "{}", text.stdout);

    let run = journal(&[
        "reset",
        "--initial-stock",
        "9",
        "--shards",
        "1",
        "--data-dir",
        dir.arg(),
    ]);
    assert_eq!(run.code, EXIT_CLEAN, "{}", run.stderr);
    assert!(
        run.stdout.contains("it replaced no journal"),
        "{}",
        run.stdout
    );
    let v = inspect(&dir, EXIT_CLEAN);
    assert_eq!((field(&v, "sold"), field(&v, "available")), (0, 9), "{v}");
}

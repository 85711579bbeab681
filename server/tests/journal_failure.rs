//! A journal that cannot write: the real binary under `ulimit -f` (RLIMIT_FSIZE), so that a
//! journal file growing past the limit fails its write with EFBIG, as a full or failing disk
//! would. The shard stops selling (503), every shard stops selling and `/ready` turns 503 on every
//! shard, the error is logged once with its cause, nothing is retried, and a restart without the
//! limit still holds every sale that was acknowledged.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, read_reply, try_read_reply, Server};

/// The file size limit, in `ulimit -f` units of 1,024 bytes: the epoch's first block (4 KiB,
/// the snapshot) and one more block of sales (a sale record is 27 bytes: about 150 sales), then
/// EFBIG.
const FSIZE_KIB: u64 = 8;

/// One purchase of one ticket on `stream`: `Some(status, body)`, or `None` when the server
/// closed the connection without answering (a response it could not make durable).
fn buy(stream: &mut TcpStream) -> Option<(u16, String)> {
    let request =
        "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":1}";
    stream.write_all(request.as_bytes()).ok()?;
    try_read_reply(stream, &mut Vec::new()).map(|r| (r.status, r.body))
}

/// A counter of `GET /`'s body.
fn counter(body: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let start = body
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + key.len();
    body[start..]
        .split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(support::READ_TIMEOUT))
        .unwrap();
    stream
}

/// One shard, seen on one fresh connection (a connection's requests all go to the shard that
/// accepted it): which shard it is (`GET /`) and its `GET /ready`; once it is not ready, also a
/// purchase of one ticket and its `GET /` after it (its counters). A shard that is still ready
/// is asked nothing more: it may not have heard of the failure yet, and would sell.
struct ShardView {
    shard: usize,
    ready: support::Reply,
    /// The purchase and the counters after it, when not ready.
    halted: Option<(support::Reply, support::Reply)>,
}

fn view_a_shard(addr: SocketAddr) -> ShardView {
    let mut stream = connect(addr);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /ready HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut carry = Vec::new();
    let shard = read_reply(&mut stream, &mut carry).json("shard").unwrap();
    let ready = read_reply(&mut stream, &mut carry);
    let halted = (ready.status == 503).then(|| {
        stream
            .write_all(
                b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":1}\
                  GET / HTTP/1.1\r\nHost: t\r\n\r\n",
            )
            .unwrap();
        let purchase = read_reply(&mut stream, &mut carry);
        (purchase, read_reply(&mut stream, &mut carry))
    });
    ShardView {
        shard: shard.parse().unwrap(),
        ready,
        halted,
    }
}

/// Waits until something answers on `addr`.
fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "ticketd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A write error stops the sales: the purchase whose record could not be written is not
/// acknowledged, every later one answers 503 `journal_failed` on every shard (each shard is seen
/// to answer, by the shard number `GET /` names), `/ready` answers 503 on every shard, and
/// `GET /` counts the refusals (`orders_refused`); the log names the cause, once: the write is not
/// retried; after a restart without the limit every acknowledged sale is still sold, and nothing
/// refused was.
#[test]
fn a_write_error_stops_selling_and_keeps_what_was_acknowledged() {
    let dir = std::env::temp_dir().join(format!("ticketd-efbig-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let log = dir.join("server.log");
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -f {FSIZE_KIB} && exec {} --host 127.0.0.1 --port {port} --shards 2 \
             --initial-stock 100000 --data-dir {}",
            env!("CARGO_BIN_EXE_ticketd"),
            data.display()
        ))
        .current_dir(&dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_listening(addr);

    let mut acknowledged = 0u64;
    let mut stream = connect(addr);
    let mut refused = None;
    for _ in 0..2_000 {
        match buy(&mut stream) {
            Some((200, body)) => {
                assert!(body.contains("\"success\":true"), "{body}");
                acknowledged += 1;
            }
            Some((status, body)) => {
                refused = Some((status, body));
                break;
            }
            // The response held for the failed write was dropped with its connection.
            None => stream = connect(addr),
        }
    }
    let (status, body) = match refused {
        Some(refused) => refused,
        None => buy(&mut stream).expect("an answer after the failure"),
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"code\":\"journal_failed\""), "{body}");
    assert!(acknowledged > 0 && acknowledged < 2_000, "{acknowledged}");
    // Nothing is sold any more, and readiness says so.
    let (status, body) = buy(&mut stream).unwrap();
    assert_eq!(status, 503, "{body}");
    // On every shard: the failed shard told its peer. Fresh connections until each of the two
    // shards has answered one (bounded); a shard that has not heard yet is asked again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut halted = [None, None];
    let mut connections = 0;
    while halted.contains(&None) {
        assert!(
            connections < 500 && Instant::now() < deadline,
            "after {connections} connections: {halted:?}"
        );
        connections += 1;
        let view = view_a_shard(addr);
        if let Some((purchase, root)) = view.halted {
            // Once a shard says it is not ready, it sells nothing...
            assert_eq!(
                purchase.status, 503,
                "shard {}: {}",
                view.shard, purchase.body
            );
            assert!(
                purchase.body.contains("\"code\":\"journal_failed\""),
                "{}",
                purchase.body
            );
            assert!(
                view.ready.body.contains("\"code\":\"not_ready\""),
                "{}",
                view.ready.body
            );
            // ... and serves the refusals it counted.
            let refused = counter(&root.body, "orders_refused");
            assert!(refused >= 1, "shard {}: {}", view.shard, root.body);
            halted[view.shard] = Some(refused);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("File too large"), "{text}");
    // Nothing is retried: the failed write is reported once, by the one shard whose journal
    // failed (a retried write would fail again, and be reported again), and its peer stops once.
    assert_eq!(text.matches("the journal failed").count(), 1, "{text}");
    assert_eq!(text.matches("a peer's journal failed").count(), 1, "{text}");

    // Without the limit: every acknowledged sale is still sold (the failed one may or may not
    // be: it was never acknowledged, and its record may be on disk).
    let server = Server::start(&[
        "--shards",
        "2",
        "--data-dir",
        data.to_str().unwrap(),
        "--cache-ttl-seconds",
        "0.05",
    ]);
    let available: u64 = support::get(&server, "/api/v1/available")
        .json("qty")
        .unwrap()
        .parse()
        .unwrap();
    let sold = 100_000 - available;
    // Unacknowledged purchases: at most one in flight per connection at the failure. None of the
    // purchases refused since was recorded (or sold) anywhere, on either shard.
    assert!(
        (acknowledged..=acknowledged + 2).contains(&sold),
        "sold {sold}, acknowledged {acknowledged}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

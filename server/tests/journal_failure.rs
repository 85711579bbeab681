//! A journal that cannot write: the real binary under `ulimit -f` (RLIMIT_FSIZE), so that a
//! journal file growing past the limit fails its write with EFBIG, as a full or failing disk
//! would. The shard stops selling (503), `/ready` turns 503 on every shard, the error is logged
//! with its cause, nothing is retried, and a restart without the limit still holds every sale
//! that was acknowledged.

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

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(support::READ_TIMEOUT))
        .unwrap();
    stream
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
/// acknowledged, every later one answers 503 `journal_failed`, `/ready` answers 503 on every
/// shard, the log names the cause; after a restart without the limit every acknowledged sale is
/// still sold.
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
    // On every shard (connections spread over both): the failed shard told its peer.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let statuses: Vec<u16> = (0..8)
            .map(|_| {
                let mut ready = connect(addr);
                ready
                    .write_all(b"GET /ready HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                read_reply(&mut ready, &mut Vec::new()).status
            })
            .collect();
        if statuses.iter().all(|&s| s == 503) {
            break;
        }
        assert!(Instant::now() < deadline, "{statuses:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("the journal failed"), "{text}");
    assert!(text.contains("File too large"), "{text}");

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
    // Unacknowledged purchases: at most one in flight per connection at the failure.
    assert!(
        (acknowledged..=acknowledged + 2).contains(&sold),
        "sold {sold}, acknowledged {acknowledged}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

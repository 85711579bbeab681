//! The transports (`TICKETD_TRANSPORT=uring|glommio`): both answer the same bytes, and the uring
//! transport's own mechanisms hold under stress: backpressure on a client that does not read,
//! many simultaneous pipelined receives, and start-up selection.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{read_reply, Server};

const TRANSPORTS: [&str; 2] = ["uring", "glommio"];

/// A server on one shard with the given transport.
fn start(transport: &str, args: &[&str]) -> Server {
    let mut all = vec!["--shards", "1", "--initial-stock", "1000000"];
    all.extend_from_slice(args);
    Server::start_with_env(&all, &[("TICKETD_TRANSPORT", transport)])
}

/// Everything the server sends until it closes, with each `Date:` line blanked.
fn read_all_dateless(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .split("\r\n")
        .map(|line| {
            if line.starts_with("Date: ") {
                "Date: -"
            } else if line.starts_with("X-Request-Id: ") {
                // Generated per process: its first part is random.
                "X-Request-Id: -"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A mixed pipeline (routes, a purchase, a chunked reserve, errors, HTTP/1.0, then a request that
/// closes) sent whole, then in pieces of 7 bytes that the server reads one at a time (each is
/// written once the server has read the one before, `support::wait_read`), gets byte-identical
/// answers from both transports (apart from `Date` and the generated `X-Request-Id`).
#[test]
fn both_transports_answer_the_same_bytes() {
    let pipeline: &[u8] = b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n\
        POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":3}\
        POST /api/v1/reserve HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"qty\":2}\r\n0\r\n\r\n\
        GET /nope HTTP/1.1\r\nHost: t\r\n\r\n\
        DELETE /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n\
        POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":0}\
        GET /api/v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
        GET /api/v1/available HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let mut answers = Vec::new();
    for transport in TRANSPORTS {
        for piece in [pipeline.len(), 7] {
            let server = start(transport, &[]);
            let mut stream = server.connect();
            let chunks: Vec<&[u8]> = pipeline.chunks(piece).collect();
            let (last, first) = chunks.split_last().unwrap();
            for chunk in first {
                stream.write_all(chunk).unwrap();
                support::wait_read(&stream);
            }
            // After the last piece the server answers and closes: nothing left to wait for.
            stream.write_all(last).unwrap();
            answers.push((transport, piece, read_all_dateless(&mut stream)));
        }
    }
    let (first_transport, first_piece, first) = &answers[0];
    assert_eq!(first.matches("HTTP/1.").count(), 8, "{first}");
    assert!(first.ends_with("{\"qty\":999995}"), "{first}");
    for (transport, piece, answer) in &answers[1..] {
        assert_eq!(
            answer, first,
            "{transport} (pieces of {piece}) differs from {first_transport} (pieces of {first_piece})"
        );
    }
}

/// A client with tiny socket buffers pipelines 60,000 purchases (about 9 MB of answers, more than
/// the kernel's socket buffers hold: 4 MB at most for a send buffer by default) without reading,
/// so the server's sends stall and it stops reading the client. The pause is observed: request
/// bytes wait unread in the server's socket, and neither they nor the client's writes move for
/// 200 ms (a server that kept reading would drain its socket, holding the answers itself). Once
/// the client reads, every purchase is answered, in order (each `remaining` one below the last).
#[test]
fn a_client_that_does_not_read_is_paused_and_answered_in_order() {
    const ORDERS: usize = 60_000;
    for transport in TRANSPORTS {
        let server = start(transport, &[]);
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.set_send_buffer_size(4096).unwrap();
        socket.connect(&server.addr.into()).unwrap();
        let mut stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(support::READ_TIMEOUT))
            .unwrap();
        let request =
            b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":1}";
        let mut writer = stream.try_clone().unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let counted = written.clone();
        let sender = std::thread::spawn(move || {
            for _ in 0..ORDERS {
                writer.write_all(request).unwrap();
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Sampled every 20 ms: paused once ten samples in a row see the same unread bytes in the
        // server's socket (more than none) and the same count of requests written.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut last, mut unchanged) = ((usize::MAX, 0), 0);
        while unchanged < 10 {
            assert!(
                Instant::now() < deadline,
                "{transport}: no pause: {} of {ORDERS} requests written, {} bytes unread",
                last.0,
                last.1
            );
            std::thread::sleep(Duration::from_millis(20));
            let (_, unread) = support::tcp_queues(&stream).expect("the connection is open");
            let now = (written.load(Ordering::Relaxed), unread);
            unchanged = if now == last && unread > 0 {
                unchanged + 1
            } else {
                0
            };
            last = now;
        }
        let mut carry = Vec::new();
        for i in 0..ORDERS {
            let reply = read_reply(&mut stream, &mut carry);
            let remaining: u64 = reply.json("remaining").unwrap().parse().unwrap();
            assert_eq!(
                remaining,
                1_000_000 - 1 - i as u64,
                "{transport}: reply {i} out of order"
            );
        }
        sender.join().unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
    }
}

/// 600 connections each send four pipelined requests at once, three times over: every connection
/// gets its four answers each time. (A burst larger than the uring transport's buffer ring, made
/// certain by stopping the server while it is written, is `tests/tail.rs`'s.)
#[test]
fn more_simultaneous_receives_than_buffers_are_all_answered() {
    let server = start("uring", &[]);
    let mut conns: Vec<TcpStream> = (0..600).map(|_| server.connect()).collect();
    let request = b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n".repeat(4);
    for round in 0..3 {
        for stream in &mut conns {
            stream.write_all(&request).unwrap();
        }
        for (i, stream) in conns.iter_mut().enumerate() {
            let mut carry = Vec::new();
            for _ in 0..4 {
                let reply = read_reply(stream, &mut carry);
                assert_eq!(reply.status, 200, "round {round}, connection {i}");
            }
            assert!(
                carry.is_empty(),
                "round {round}, connection {i}: extra bytes"
            );
        }
    }
}

/// The transport in use is named in the start-up line, and a transport that does not exist is a
/// start-up failure with one line naming the variable.
#[test]
fn the_transport_is_chosen_at_start_up() {
    let start_up_line =
        |server: &Server| server.log_once("ticketd listening", Duration::from_secs(10));
    let server = start("uring", &[]);
    let log = start_up_line(&server);
    assert!(log.contains("transport=\"uring\""), "{log}");
    let server = start("glommio", &[]);
    let log = start_up_line(&server);
    assert!(log.contains("transport=\"glommio\""), "{log}");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("TICKETD_TRANSPORT", "carrier-pigeon")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ticketd:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains("TICKETD_TRANSPORT") && line.contains("uring or glommio"),
        "{line}"
    );
}

//! Shared by the integration tests: a tiny ticket server on 127.0.0.1:0 (so the tests need no
//! ticketd binary), a scratch folder, and a parser for `.hgrm` files written independently of
//! the one in `ticket_bench::compare`.
#![allow(dead_code)] // each test file uses its own part of this module

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ticket_bench::cli::{Cli, Command, RunArgs};

/// The tiny server: `GET /api/v1/available` and `POST /api/v1/purchase` / `reserve` with a
/// stock counter, keep-alive and pipelining (every complete request in a read is answered, in
/// order, in one write), `Connection: close` honoured; `GET /stall/N/MS` answers `{}` after
/// sleeping MS ms on every N-th request to such a path (counted over the server); anything
/// else is 404. Started with
/// [`TicketServer::start_lying`], it answers its first orders "sold out" whatever the stock.
pub struct TicketServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Tickets left.
    pub stock: Arc<AtomicI64>,
    /// Requests answered.
    pub requests: Arc<AtomicU64>,
    /// Orders still to refuse falsely.
    pub lies: Arc<AtomicU64>,
    /// Connections that made more than one request (not a one-off stock reading), by the method
    /// of their first: GET, POST.
    pub opened_by: Arc<[AtomicU64; 2]>,
}

impl TicketServer {
    /// Starts the server with `stock` tickets; its threads live until the test process ends.
    pub fn start(stock: i64) -> TicketServer {
        TicketServer::start_lying(stock, 0)
    }

    /// Starts a server that answers its first `lies` orders `"success": false` while the stock
    /// is there: a false "sold out".
    pub fn start_lying(stock: i64, lies: u64) -> TicketServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = TicketServer {
            addr,
            stock: Arc::new(AtomicI64::new(stock)),
            requests: Arc::new(AtomicU64::new(0)),
            lies: Arc::new(AtomicU64::new(lies)),
            opened_by: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
        };
        let (stock, requests) = (server.stock.clone(), server.requests.clone());
        let (lies, opened_by) = (server.lies.clone(), server.opened_by.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (stock, requests) = (stock.clone(), requests.clone());
                let (lies, opened_by) = (lies.clone(), opened_by.clone());
                std::thread::spawn(move || serve(conn, &stock, &requests, &lies, &opened_by));
            }
        });
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve(
    mut conn: TcpStream,
    stock: &AtomicI64,
    requests: &AtomicU64,
    lies: &AtomicU64,
    opened_by: &[AtomicU64; 2],
) {
    let mut buf = Vec::new();
    let mut served = 0u64;
    let mut first_was_get = false;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let mut close = false;
        while let Some((head_len, body_len)) = frame(&buf) {
            let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
            let body = String::from_utf8_lossy(&buf[head_len..head_len + body_len]).to_string();
            served += 1;
            match served {
                1 => first_was_get = head.starts_with("get "),
                2 => _ = opened_by[usize::from(!first_was_get)].fetch_add(1, Ordering::Relaxed),
                _ => {}
            }
            stall(&head);
            let (status, reply) = route(&head, &body, stock, lies);
            requests.fetch_add(1, Ordering::Relaxed);
            close = head.contains("\r\nconnection: close");
            out.extend_from_slice(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{reply}",
                    reply.len(),
                    if close { "Connection: close\r\n" } else { "" }
                )
                .as_bytes(),
            );
            buf.drain(..head_len + body_len);
            if close {
                break;
            }
        }
        if conn.write_all(&out).is_err() || close {
            return;
        }
    }
}

/// `GET /stall/N/MS` requests seen, over every connection.
static STALL_PATH_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Sleeps if `head` is the N-th `GET /stall/N/MS`.
fn stall(head: &str) {
    let Some(rest) = head.strip_prefix("get /stall/") else {
        return;
    };
    let path = rest.split(' ').next().unwrap_or("");
    let (n, ms) = path.split_once('/').unwrap();
    let (n, ms): (u64, u64) = (n.parse().unwrap(), ms.parse().unwrap());
    if (STALL_PATH_REQUESTS.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(n) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The head and body lengths of the first complete request in `buf`.
fn frame(buf: &[u8]) -> Option<(usize, usize)> {
    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    let body_len = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    (buf.len() >= head_len + body_len).then_some((head_len, body_len))
}

fn route(head: &str, body: &str, stock: &AtomicI64, lies: &AtomicU64) -> (&'static str, String) {
    let line = head.lines().next().unwrap_or("");
    if line.starts_with("get /api/v1/available ") {
        return (
            "200 OK",
            format!("{{\"qty\":{}}}", stock.load(Ordering::SeqCst)),
        );
    }
    if line.starts_with("post /api/v1/purchase ") || line.starts_with("post /api/v1/reserve ") {
        let qty: i64 = body
            .trim_start_matches("{\"qty\":")
            .trim_end_matches('}')
            .parse()
            .unwrap_or(0);
        let lie = lies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let taken = !lie
            && stock
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                    (s >= qty).then(|| s - qty)
                })
                .is_ok();
        let left = stock.load(Ordering::SeqCst);
        return (
            "200 OK",
            format!("{{\"success\":{taken},\"remaining\":{left},\"message\":\"x\"}}"),
        );
    }
    if line.starts_with("get /stall/") {
        return ("200 OK", "{}".into());
    }
    ("404 Not Found", "{\"error\":\"Not Found\"}".into())
}

/// A fresh, empty folder under the system temp dir, named after `name`.
pub fn scratch(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "ticket-bench-test-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `ticket-bench run` options from a command line (after `run`).
pub fn run_args(args: &[&str]) -> RunArgs {
    let mut argv = vec!["ticket-bench", "run"];
    argv.extend_from_slice(args);
    match <Cli as clap::Parser>::parse_from(argv).command {
        Command::Run(a) => a,
        Command::Compare(_) => unreachable!(),
    }
}

/// One row of a `.hgrm` file, as this independent parser reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// Value in ms.
    pub value_ms: f64,
    /// Percentile as a fraction.
    pub percentile: f64,
    /// Values at or below.
    pub total_count: u64,
    /// `1/(1-p)`, absent on the 100 % row.
    pub inverse: Option<f64>,
}

/// A parsed `.hgrm`: its rows and its footer.
#[derive(Clone, Debug, PartialEq)]
pub struct Hgrm {
    /// The rows, in order.
    pub rows: Vec<Row>,
    /// `#[Mean = ...]`, ms.
    pub mean_ms: f64,
    /// `#[Max = ...]`, ms.
    pub max_ms: f64,
    /// `Total count`.
    pub total_count: u64,
}

/// Parses a `.hgrm`, checking the header and footer shapes the HdrHistogram plotter expects.
pub fn parse_hgrm(text: &str) -> Hgrm {
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("       Value     Percentile TotalCount 1/(1-Percentile)")
    );
    assert_eq!(lines.next(), Some(""));
    let mut hgrm = Hgrm {
        rows: Vec::new(),
        mean_ms: f64::NAN,
        max_ms: f64::NAN,
        total_count: 0,
    };
    let number_after = |line: &str, key: &str| -> String {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.trim_start_matches([' ', '='])
            .split([',', ']'])
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    for line in lines {
        if line.starts_with("#[Mean") {
            hgrm.mean_ms = number_after(line, "Mean").parse().unwrap();
        } else if line.starts_with("#[Max") {
            hgrm.max_ms = number_after(line, "Max").parse().unwrap();
            hgrm.total_count = number_after(line, "Total count").parse().unwrap();
        } else if line.starts_with("#[Buckets") {
        } else {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert!(cols.len() == 3 || cols.len() == 4, "{line:?}");
            hgrm.rows.push(Row {
                value_ms: cols[0].parse().unwrap(),
                percentile: cols[1].parse().unwrap(),
                total_count: cols[2].parse().unwrap(),
                inverse: cols.get(3).map(|c| c.parse().unwrap()),
            });
        }
    }
    hgrm
}

//! Test support: start the real `ticketd` binary on a free loopback port, talk raw bytes to it.
#![allow(dead_code)] // each test file uses a different part of this module

pub mod rng;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for the server to accept connections after start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one read waits before the test gives up on a response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A running ticketd, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Server {
    /// Starts ticketd with these extra arguments (and `--host 127.0.0.1 --port P`), and waits
    /// until it answers `GET /health`.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// As [`Server::start`], with environment variables added.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn(None, args, env)
    }

    /// As [`Server::start`] on a given port (to restart a server where its clients expect it).
    pub fn start_at(port: u16, args: &[&str]) -> Server {
        Self::spawn(Some(port), args, &[])
    }

    fn spawn(fixed_port: Option<u16>, args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir =
            std::env::temp_dir().join(format!("ticketd-test-{}-{}", std::process::id(), unique()));
        fresh_dir(&dir);
        for _attempt in 0..5 {
            let port = fixed_port.unwrap_or_else(free_port);
            let log = dir.join(format!("server-{port}.log"));
            let mut command = Command::new(env!("CARGO_BIN_EXE_ticketd"));
            command
                .current_dir(&dir)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(args)
                .env_remove("RUST_LOG")
                .env("LOG_LEVEL", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            for (k, v) in env {
                command.env(k, v);
            }
            let child = command.spawn().expect("spawning ticketd");
            let mut server = Server {
                child: Some(child),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                log,
            };
            if server.wait_ready() {
                return server;
            }
            let log = server.log();
            server.kill();
            if !log.contains("in use") || fixed_port.is_some() {
                panic!("ticketd did not start:\n{log}");
            }
        }
        panic!("no free port after 5 attempts");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!("ticketd exited early: {status}");
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(self.addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                if stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .is_ok()
                {
                    let mut out = Vec::new();
                    let _ = stream.read_to_end(&mut out);
                    if out.starts_with(b"HTTP/1.1 200") {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A new connection with a read timeout.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connecting to ticketd");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it holds `needle`, or as it is after `within`. The start-up line ("ticketd
    /// listening") comes once every shard listens, a moment after the first answers `/health`.
    pub fn log_once(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Kills it with SIGKILL, as a crash would, and waits for it.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A data directory of its own under the temp dir, named after the test binary (`prefix`), the
/// process and the test; emptied when made, removed when dropped unless the test failed (then
/// its path is printed, to look at the journal).
pub struct DataDir(std::path::PathBuf);

impl DataDir {
    pub fn new(prefix: &str, name: &str) -> DataDir {
        let path =
            std::env::temp_dir().join(format!("ticketd-{prefix}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        DataDir(path)
    }

    /// The path as an argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp dir")
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("data directory kept: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Makes `dir` an empty directory. Its name holds the process id, which the kernel reuses: a
/// folder left by an earlier run of another test binary with the same id would hand this server
/// that run's journal (`./data`), and with it a stock already sold (seen: 98 of 2,000 tickets).
fn fresh_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot empty {}: {e}", dir.display()),
    }
    std::fs::create_dir_all(dir).unwrap();
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    // ticketd listens with SO_REUSEPORT, so two servers of one test binary (tests run in
    // parallel) given the same port would both bind it and share its connections: never hand a
    // port out twice in one process.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header lines as (lowercased name, value).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Reply {
    /// The first value of a header (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field of a flat JSON body, as raw text (strings keep their quotes).
    pub fn json(&self, field: &str) -> Option<String> {
        let key = format!("\"{field}\":");
        let start = self.body.find(&key)? + key.len();
        let rest = self.body[start..].trim_start();
        let end = if let Some(quoted) = rest.strip_prefix('"') {
            quoted.find('"').map(|i| i + 2)?
        } else {
            rest.find([',', '}']).unwrap_or(rest.len())
        };
        Some(rest[..end].trim().to_string())
    }
}

/// Reads exactly one response (head by CRLFCRLF, body by Content-Length) from `stream`,
/// keeping any bytes after it in `carry`. Panics on timeout or early close.
/// One request on an admin listener at 127.0.0.1:`port`, with `token` as the bearer token (if
/// any), on a connection of its own.
pub fn admin_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Reply {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect(addr).expect("the admin listener accepts");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    read_reply(&mut stream, &mut Vec::new())
}

pub fn read_reply(stream: &mut TcpStream, carry: &mut Vec<u8>) -> Reply {
    try_read_reply(stream, carry).expect("connection closed before a complete response")
}

/// As [`read_reply`], `None` if the connection closes first.
pub fn try_read_reply(stream: &mut TcpStream, carry: &mut Vec<u8>) -> Option<Reply> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = carry.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&carry[..end]).to_string();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap();
            let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .map(|l| {
                    let (n, v) = l.split_once(':').unwrap();
                    (n.trim().to_ascii_lowercase(), v.trim().to_string())
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let total = end + 4 + length;
            while carry.len() < total {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                carry.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&carry[end + 4..total]).to_string();
            carry.drain(..total);
            return Some(Reply {
                status,
                headers,
                body,
            });
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        carry.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `request` on a new connection and reads one reply.
pub fn exchange(server: &Server, request: &[u8]) -> Reply {
    let mut stream = server.connect();
    stream.write_all(request).unwrap();
    read_reply(&mut stream, &mut Vec::new())
}

/// `GET path` with `Connection: close`.
pub fn get(server: &Server, path: &str) -> Reply {
    exchange(
        server,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// `POST path` with a body and `Connection: close`.
pub fn post(server: &Server, path: &str, body: &str) -> Reply {
    exchange(
        server,
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// True when the peer has closed the connection (read returns 0 or an error) within the timeout.
pub fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Writes `path`'s content (a helper for `.env` tests).
pub fn write_file(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
}

/// Runs the binary with `args` to completion (it must fail fast) and returns (code, stderr).
pub fn run_failing(args: &[&str]) -> (i32, String) {
    // In a directory of its own, so that a start that gets further than expected leaves its
    // default `./data` there, not in the source tree.
    let dir = std::env::temp_dir().join(format!(
        "ticketd-failing-{}-{}",
        std::process::id(),
        unique()
    ));
    fresh_dir(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .current_dir(&dir)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ticketd {args:?} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

impl Server {
    /// Whether the process is still running (it has not exited).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }
}

/// `ADDR:PORT` as `/proc/net/tcp` writes an IPv4 socket address: the address as the native-endian
/// integer of its network-order bytes, then the port, both in upper-case hex.
fn proc_net_addr(addr: SocketAddr) -> String {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only: {addr}")
    };
    format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    )
}

/// The kernel's queues of one loopback connection, from `/proc/net/tcp`: the bytes `stream` wrote
/// that the server's end has not acknowledged, and the bytes waiting in the server's end that the
/// server has not read. `None` when either end is gone.
pub fn tcp_queues(stream: &TcpStream) -> Option<(u64, u64)> {
    let ours = proc_net_addr(stream.local_addr().unwrap());
    let theirs = proc_net_addr(stream.peer_addr().unwrap());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let (mut unacked, mut unread) = (None, None);
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (tx, rx) = fields[4].split_once(':').unwrap();
        let hex = |q: &str| u64::from_str_radix(q, 16).unwrap();
        if fields[1] == ours && fields[2] == theirs {
            unacked = Some(hex(tx));
        } else if fields[1] == theirs && fields[2] == ours {
            unread = Some(hex(rx));
        }
    }
    Some((unacked?, unread?))
}

/// Waits until the server has read every byte written so far on `stream`: all of it reached the
/// server's end (acknowledged) and none of it waits there unread. A write, this, then the next
/// write make the server receive the two writes in two reads, whatever the scheduling; no sleep
/// can promise that. Panics after [`READ_TIMEOUT`].
pub fn wait_read(stream: &TcpStream) {
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        match tcp_queues(stream) {
            Some((0, 0)) => return,
            queues => assert!(
                Instant::now() < deadline,
                "the server did not read what was sent (unacknowledged, unread): {queues:?}"
            ),
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// How long `/available` may take to show what the shards know (and recovery found).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// `/api/v1/available` on a new connection.
pub fn available(server: &Server) -> u64 {
    let reply = get(server, "/api/v1/available");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json("qty").unwrap().parse().unwrap()
}

/// `/available` once it reads `expected`, or the last value read after [`SETTLE_TIMEOUT`].
pub fn available_once_settled(server: &Server, expected: u64) -> u64 {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let qty = available(server);
        if qty == expected || Instant::now() > deadline {
            return qty;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Buys `qty` on a new connection (a 200 is asserted); whether it sold.
pub fn buy(server: &Server, qty: u64) -> bool {
    let reply = post(server, "/api/v1/purchase", &format!("{{\"qty\":{qty}}}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json("success").as_deref() == Some("true")
}

/// Every file of a directory with its bytes, sorted by name.
pub fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Whether the tool at `path` (or on PATH) is there. A missing one fails the test under CI;
/// elsewhere the test is skipped, loudly.
pub fn have(tool: &Path, install: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v \"$0\""])
        .arg(tool)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "{} is missing under CI; {install}",
        tool.display()
    );
    // Straight to the process's stderr, not through `eprintln!`, which the harness captures and
    // shows only for a failing test.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED ({}): {} is not installed ({install}), so this check did not run (under CI it fails)",
        std::thread::current().name().unwrap_or("test"),
        tool.display()
    );
    false
}

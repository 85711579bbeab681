//! systemd's `Type=notify` protocol against the real binary: each test owns a datagram socket,
//! points `NOTIFY_SOCKET` at it (a path or an abstract `@name`), and reads what ticketd sends.

mod support;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::Server;

/// How long a test waits for any one message before failing (never hangs).
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// A socket the test owns, and the `NOTIFY_SOCKET` value that names it.
struct Listener {
    socket: UnixDatagram,
    address: String,
    /// The directory to remove afterwards (path form only).
    dir: Option<PathBuf>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A socket bound at a fresh temporary path.
fn path_listener() -> Listener {
    let dir = std::env::temp_dir().join(format!(
        "ticketd-notify-{}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(RECV_TIMEOUT)).unwrap();
    Listener {
        socket,
        address: path.to_str().unwrap().to_string(),
        dir: Some(dir),
    }
}

/// A socket bound at a fresh abstract name.
fn abstract_listener() -> Listener {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("ticketd-test-{}-{}", std::process::id(), unique());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket.set_read_timeout(Some(RECV_TIMEOUT)).unwrap();
    Listener {
        socket,
        address: format!("@{name}"),
        dir: None,
    }
}

impl Listener {
    /// The next datagram, as text; panics after [`RECV_TIMEOUT`].
    fn recv(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("no notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Reads until a datagram has a line equal to `line`; returns that datagram.
    fn recv_until(&self, line: &str) -> String {
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "no {line} in time");
            let message = self.recv();
            if message.lines().any(|l| l == line) {
                return message;
            }
        }
    }
}

/// Starts ticketd pointed at `listener`, checks READY=1 with a STATUS naming shards and stock,
/// then SIGTERM: STOPPING=1 arrives and the process exits 0.
fn ready_then_stopping(listener: &Listener) {
    let mut server = Server::start_with_env(
        &["--shards", "2", "--initial-stock", "777"],
        &[("NOTIFY_SOCKET", &listener.address)],
    );
    let ready = listener.recv_until("READY=1");
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= in {ready:?}"));
    assert!(status.contains(&server.addr.to_string()), "{status}");
    assert!(status.contains("2 shards"), "{status}");
    assert!(status.contains("777 tickets"), "{status}");

    server.signal(libc::SIGTERM);
    let stopping = listener.recv_until("STOPPING=1");
    assert!(stopping.contains("STATUS="), "{stopping:?}");
    let exit = server
        .wait_exit(Duration::from_secs(5))
        .expect("no exit after SIGTERM");
    assert!(exit.success(), "exit status {exit}");
}

/// Path form of NOTIFY_SOCKET: READY=1 and STATUS= once listening, STOPPING=1 on SIGTERM, exit 0.
#[test]
fn path_socket_gets_ready_status_and_stopping() {
    ready_then_stopping(&path_listener());
}

/// Abstract form (`@name`): the same messages arrive.
#[test]
fn abstract_socket_gets_ready_status_and_stopping() {
    ready_then_stopping(&abstract_listener());
}

/// With WATCHDOG_USEC=200000, WATCHDOG=1 arrives every ~100 ms (half the period) while the shards
/// are healthy, and none arrives once the stop began: a request left half-sent keeps the drain
/// (and the process) going while the test listens for five ping periods after STOPPING=1; then
/// the request is completed, answered, and the process exits 0.
#[test]
fn watchdog_pings_at_half_the_period() {
    let listener = abstract_listener();
    let mut server = Server::start_with_env(
        &["--shards", "2"],
        &[
            ("NOTIFY_SOCKET", &listener.address),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    listener.recv_until("READY=1");
    let window = Instant::now();
    let mut pings = Vec::new();
    while window.elapsed() < Duration::from_millis(700) {
        if listener.recv().lines().any(|l| l == "WATCHDOG=1") {
            pings.push(Instant::now());
        }
    }
    assert!(pings.len() >= 4, "{} pings in 700 ms", pings.len());
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(80) && gap <= Duration::from_millis(250),
            "ping interval {gap:?} in {:?}",
            pings.windows(2).map(|p| p[1] - p[0]).collect::<Vec<_>>()
        );
    }

    // A request in flight: the drain waits for it (up to the 5 s grace), so the process lives on.
    let mut pending = server.connect();
    pending.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    support::wait_read(&pending);
    server.signal(libc::SIGTERM);
    listener.recv_until("STOPPING=1");
    let stopping = Instant::now();
    listener
        .socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while stopping.elapsed() < Duration::from_millis(500) {
        match listener.socket.recv(&mut buf) {
            Ok(n) => {
                let message = String::from_utf8_lossy(&buf[..n]);
                assert!(
                    !message.lines().any(|l| l == "WATCHDOG=1"),
                    "WATCHDOG=1 {:?} after STOPPING=1",
                    stopping.elapsed()
                );
            }
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            ),
        }
    }
    assert!(
        server.running(),
        "the process ended before the test listened for five ping periods"
    );
    pending.write_all(b"Host: t\r\n\r\n").unwrap();
    let reply = support::read_reply(&mut pending, &mut Vec::new());
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
    let exit = server.wait_exit(Duration::from_secs(5)).expect("no exit");
    assert!(exit.success(), "exit status {exit}");
}

/// WATCHDOG_PID naming another process: the watchdog is not ours, so no pings (READY still is).
#[test]
fn watchdog_for_another_pid_is_ignored() {
    let listener = abstract_listener();
    let _server = Server::start_with_env(
        &["--shards", "1"],
        &[
            ("NOTIFY_SOCKET", &listener.address),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    listener.recv_until("READY=1");
    listener
        .socket
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut buf = [0u8; 256];
    match listener.socket.recv(&mut buf) {
        Ok(n) => panic!(
            "unexpected notification {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
}

/// No NOTIFY_SOCKET (the usual case outside systemd): the server starts, serves and stops as
/// ever, with WATCHDOG_USEC set or not.
#[test]
fn without_notify_socket_nothing_changes() {
    let mut server = Server::start_with_env(
        &["--shards", "1"],
        &[("NOTIFY_SOCKET", ""), ("WATCHDOG_USEC", "200000")],
    );
    assert_eq!(support::get(&server, "/health").status, 200);
    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(Duration::from_secs(5)).expect("no exit");
    assert!(exit.success(), "exit status {exit}");
}

//! Start-up and shutdown of the real binary: signals end it cleanly and promptly, in-flight work
//! finishes, and every start-up failure is one line on stderr with a non-zero exit, never a panic.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{get, read_reply, run_failing, Server};

/// SIGTERM with an idle keep-alive connection open: the connection is closed and the process
/// exits 0 well within the shutdown grace.
#[test]
fn sigterm_closes_idle_connections_and_exits_zero() {
    let mut server = Server::start(&["--shards", "2", "--shutdown-timeout-ms", "3000"]);
    let mut idle = server.connect();
    idle.write_all(b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut idle, &mut Vec::new()).status, 200);
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("ticketd did not exit after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(support::closed_by_peer(&mut idle));
    assert!(server.log().contains("stopping"), "{}", server.log());
}

/// SIGINT behaves as SIGTERM.
#[test]
fn sigint_exits_zero() {
    let mut server = Server::start(&["--shards", "1"]);
    assert_eq!(get(&server, "/health").status, 200);
    server.signal(libc::SIGINT);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("no exit after SIGINT");
    assert!(status.success(), "exit status {status}");
}

/// A request whose head is complete but whose body is still arriving when SIGTERM comes is
/// answered (with `Connection: close`) before the process exits.
#[test]
fn sigterm_finishes_a_request_in_flight() {
    let mut server = Server::start(&["--shards", "1", "--shutdown-timeout-ms", "3000"]);
    let mut busy = server.connect();
    busy.write_all(b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    busy.write_all(b"\":1}").unwrap();
    let reply = read_reply(&mut busy, &mut Vec::new());
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json("success").as_deref(), Some("true"));
    assert_eq!(reply.header("connection"), Some("close"));
    let status = server.wait_exit(Duration::from_secs(5)).expect("no exit");
    assert!(status.success());
}

/// A port held by another process: exit 1 and a line that names the cause and the fix.
#[test]
fn port_in_use_is_one_clear_line() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let (code, stderr) = run_failing(&["--host", "127.0.0.1", "--port", &port]);
    assert_eq!(code, 1, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ticketd:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("in use") && line.contains("--port"), "{line}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A CPU outside the affinity mask: exit 1, naming the allowed CPUs.
#[test]
fn unavailable_cpu_is_one_clear_line() {
    let (code, stderr) = run_failing(&["--host", "127.0.0.1", "--port", "0", "--cpus", "4000"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--cpus") && stderr.contains("may only run on"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A malformed CPU list is a configuration error: exit 2.
#[test]
fn malformed_cpu_list_exits_two() {
    let (code, stderr) = run_failing(&["--cpus", "3-1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--cpus"), "{stderr}");
}

/// More shards than CPUs run unpinned, with a warning, and serve.
#[test]
fn more_shards_than_cpus_run_unpinned_with_a_warning() {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let shards = (cpus * 2).to_string();
    let server = Server::start(&["--shards", &shards]);
    let root = get(&server, "/");
    assert_eq!(root.json("shards"), Some(shards.clone()));
    assert!(
        server.log().contains("more shards than CPUs"),
        "{}",
        server.log()
    );
}

/// RLIMIT_MEMLOCK below what glommio needs, with a hard limit that forbids raising it: exit 1
/// and one line that names the limit and the fix.
#[test]
fn memlock_too_low_is_one_clear_line() {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -l 64 && exec {} --host 127.0.0.1 --port 0 --shards 1",
            env!("CARGO_BIN_EXE_ticketd")
        ))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ticketd:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains("RLIMIT_MEMLOCK") && line.contains("ulimit -l"),
        "{line}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `JSON_LOGS=true` makes every log line a JSON object, the start-up line included: every line the
/// process wrote to stderr, from start to exit (the stop's lines too), parses as an object with
/// a level.
#[test]
fn json_logs_are_json_lines() {
    let mut server = Server::start_with_env(&["--shards", "1"], &[("JSON_LOGS", "true")]);
    // The shards answer before the main thread has logged that they all listen.
    server.log_once("ticketd listening", Duration::from_secs(5));
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("no exit after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let log = server.log();
    assert!(log.contains("ticketd listening"), "{log}");
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value.is_object(), "{line}");
        assert!(value["level"].is_string(), "{line}");
    }
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["level"], "INFO", "{log}");
}

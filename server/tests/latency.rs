//! `--latency-dump`: the real server records one service time per request (clients here wait for
//! each response, so every input is one request), and writes per-shard `.hgrm` files that parse
//! back to those counts and `.hlog` files that hdrhistogram's own reader decodes to the same
//! totals, at shutdown and, when asked, periodically while running.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use support::{read_reply, run_failing, Server};

const TRANSPORTS: [&str; 2] = ["uring", "glommio"];

/// Requests the harness sends before a test's own: `Server::start` waits for one `GET /health`.
const READINESS_PROBES: u64 = 1;

/// A fresh, empty directory for one test's dumps (its parent exists; the server creates it).
fn dump_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ticketd-latency-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// One row of a `.hgrm` distribution.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// Milliseconds.
    value: f64,
    /// 0..=1.
    percentile: f64,
    total_count: u64,
}

/// A parsed `.hgrm`: its rows and the `Max` and `Total count` of its footer.
#[derive(Debug)]
struct Hgrm {
    rows: Vec<Row>,
    max: f64,
    total_count: u64,
}

/// Parses the text of Java's `outputPercentileDistribution`: a column header, a blank line, rows
/// of `Value Percentile TotalCount [1/(1-Percentile)]` (the last row has no fourth column), and
/// `#[...]` footer lines of `Name = value` pairs. Panics on anything else.
fn parse_hgrm(text: &str) -> Hgrm {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    assert_eq!(lines.next(), Some(""), "a blank line after the header");
    let mut rows = Vec::new();
    let (mut max, mut total_count) = (None, None);
    for line in lines {
        if let Some(footer) = line.strip_prefix("#[") {
            let footer = footer.strip_suffix(']').expect("a footer ends with ]");
            for pair in footer.split(',') {
                let (name, value) = pair.split_once('=').expect("name = value");
                match name.trim() {
                    "Max" => max = Some(value.trim().parse::<f64>().expect("Max")),
                    "Total count" => {
                        total_count = Some(value.trim().parse::<u64>().expect("Total count"))
                    }
                    _ => {}
                }
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(
            fields.len() == 3 || fields.len() == 4,
            "a row has 3 or 4 columns: {line:?}"
        );
        let row = Row {
            value: fields[0].parse().expect("Value"),
            percentile: fields[1].parse().expect("Percentile"),
            total_count: fields[2].parse().expect("TotalCount"),
        };
        if let Some(inverse) = fields.get(3) {
            let inverse: f64 = inverse.parse().expect("1/(1-Percentile)");
            assert!((inverse - 1.0 / (1.0 - row.percentile)).abs() <= 0.01 * inverse);
        } else {
            assert_eq!(
                row.percentile, 1.0,
                "only the last row lacks 1/(1-p): {line:?}"
            );
        }
        rows.push(row);
    }
    Hgrm {
        rows,
        max: max.expect("a Max footer"),
        total_count: total_count.expect("a Total count footer"),
    }
}

/// Checks a distribution is well formed, and returns its total count.
fn check_hgrm(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = parse_hgrm(&text);
    if h.total_count == 0 {
        assert!(h.rows.is_empty());
        return 0;
    }
    for pair in h.rows.windows(2) {
        assert!(pair[0].value <= pair[1].value, "{pair:?}");
        assert!(pair[0].percentile <= pair[1].percentile, "{pair:?}");
        assert!(pair[0].total_count <= pair[1].total_count, "{pair:?}");
    }
    let last = h.rows.last().expect("rows");
    assert_eq!((last.percentile, last.total_count), (1.0, h.total_count));
    assert_eq!(last.value, h.max, "the last row is the maximum");
    // Service times on loopback: above zero, and well under the 60 s the histogram tracks.
    assert!(h.max > 0.0 && h.max < 10_000.0, "max {} ms", h.max);
    h.total_count
}

/// The intervals of a `.hlog`, decoded by hdrhistogram's own reader: (start s, histogram).
/// Only whole lines are read, so a log still being written can be read too.
fn read_hlog(path: &Path) -> Vec<(f64, Histogram<u64>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&bytes[..whole]).expect("UTF-8");
    assert!(
        text.starts_with("#[ticketd shard ") && text.contains("service time in nanoseconds"),
        "{text}"
    );
    let mut intervals = Vec::new();
    let mut times = 0;
    for entry in IntervalLogIterator::new(text.as_bytes()) {
        match entry.expect("a well-formed log entry") {
            LogEntry::StartTime(_) | LogEntry::BaseTime(_) => times += 1,
            LogEntry::Interval(interval) => {
                let encoded = STANDARD
                    .decode(interval.encoded_histogram())
                    .expect("base64");
                let h: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut encoded.as_slice())
                    .expect("a V2 histogram");
                // The max column is in ms of the ns values.
                assert!((interval.max() - h.max() as f64 / 1e6).abs() <= 0.001);
                intervals.push((interval.start_timestamp().as_secs_f64(), h));
            }
        }
    }
    assert_eq!(times, 2, "StartTime and BaseTime");
    intervals
}

/// Sends `count` requests, one at a time, on a keep-alive connection; each must be answered 200.
fn send_one_at_a_time(stream: &mut TcpStream, requests: &[&[u8]], count: usize) {
    let mut carry = Vec::new();
    for request in requests.iter().cycle().take(count) {
        stream.write_all(request).unwrap();
        let reply = read_reply(stream, &mut carry);
        assert_eq!(reply.status, 200, "{reply:?}");
    }
}

const AVAILABLE: &[u8] = b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n";
const PURCHASE_ONE: &[u8] =
    b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":1}";
/// More than one shard's slice (1000 tickets over 2 shards): the order waits for the coordinator.
const PURCHASE_MANY: &[u8] =
    b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n{\"qty\":600}";

/// Two shards, a few hundred requests on eight keep-alive connections (availability checks,
/// purchases, and purchases too big for one slice, which wait for the coordinator), then SIGTERM:
/// each shard's `.hgrm` and `.hlog` hold one value per request, with either transport.
#[test]
fn shutdown_dumps_one_value_per_request() {
    for transport in TRANSPORTS {
        let dir = dump_dir(&format!("shutdown-{transport}"));
        let mut server = Server::start_with_env(
            &[
                "--shards",
                "2",
                "--initial-stock",
                "1000",
                "--latency-dump",
                dir.to_str().unwrap(),
            ],
            &[("TICKETD_TRANSPORT", transport)],
        );
        let mut sent = 0u64;
        let mut connections: Vec<TcpStream> = (0..8).map(|_| server.connect()).collect();
        for stream in &mut connections {
            send_one_at_a_time(stream, &[AVAILABLE, AVAILABLE, PURCHASE_ONE], 50);
            sent += 50;
        }
        send_one_at_a_time(&mut connections[0], &[PURCHASE_MANY], 3);
        sent += 3;
        server.signal(libc::SIGTERM);
        let status = server
            .wait_exit(Duration::from_secs(10))
            .expect("ticketd did not exit after SIGTERM");
        assert!(status.success(), "{transport}: exit status {status}");

        let mut hgrm_total = 0;
        let mut hlog_total = 0;
        for shard in 0..2 {
            let counted = check_hgrm(&dir.join(format!("shard-{shard}.hgrm")));
            let intervals = read_hlog(&dir.join(format!("shard-{shard}.hlog")));
            assert_eq!(intervals.len(), 1, "{transport}: one interval, at shutdown");
            let logged: u64 = intervals.iter().map(|(_, h)| h.len()).sum();
            assert_eq!(
                logged, counted,
                "{transport}: shard {shard}'s .hlog and .hgrm"
            );
            hgrm_total += counted;
            hlog_total += logged;
        }
        assert_eq!(
            hgrm_total,
            sent + READINESS_PROBES,
            "{transport}: one value per request"
        );
        assert_eq!(hlog_total, hgrm_total);
        assert!(
            !dir.join(".shard-0.hgrm.tmp").exists(),
            "the temporary file was renamed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// With `--latency-dump-interval-seconds 0.2`, the `.hlog` grows by an interval every 0.2 s while
/// the server runs (each interval starts at least 0.2 s after the one before, and well before a
/// period ten times as long would have ended), the `.hgrm` already exists, and at shutdown the
/// intervals add up to the cumulative count.
#[test]
fn periodic_dumps_grow_the_log_while_running() {
    let dir = dump_dir("periodic");
    let mut server = Server::start(&[
        "--shards",
        "1",
        "--latency-dump",
        dir.to_str().unwrap(),
        "--latency-dump-interval-seconds",
        "0.2",
    ]);
    let hlog = dir.join("shard-0.hlog");
    let mut stream = server.connect();
    let mut sent = 0u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while seen < 4 {
        assert!(
            Instant::now() < deadline,
            "only {seen} intervals after 10 s"
        );
        send_one_at_a_time(&mut stream, &[AVAILABLE], 10);
        sent += 10;
        std::thread::sleep(Duration::from_millis(20));
        seen = read_hlog(&hlog).len();
    }
    let running = read_hlog(&hlog);
    let starts: Vec<f64> = running.iter().map(|(start, _)| *start).collect();
    // A dump comes one period after the previous one ended (a timer is never early; the log's
    // timestamps have millisecond precision), and a loaded machine may make it late, but not by
    // seconds: 1 s is five periods, and half a period of 2 s.
    assert!(
        starts
            .windows(2)
            .all(|w| w[1] - w[0] >= 0.2 - 0.001 && w[1] - w[0] < 1.0),
        "intervals 0.2 s apart: {starts:?}"
    );
    assert!(
        check_hgrm(&dir.join("shard-0.hgrm")) > 0,
        "a .hgrm while running"
    );

    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10)).expect("no exit");
    assert!(status.success(), "exit status {status}");
    let intervals = read_hlog(&hlog);
    assert!(
        intervals.len() > running.len(),
        "a last interval at shutdown"
    );
    let logged: u64 = intervals.iter().map(|(_, h)| h.len()).sum();
    let counted = check_hgrm(&dir.join("shard-0.hgrm"));
    assert_eq!((logged, counted), (sent + READINESS_PROBES, logged));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A dump directory that cannot be created (a file is in the way) fails the start with one line
/// naming the path and the option, and exit status 1, before anything listens.
#[test]
fn an_unwritable_dump_directory_fails_the_start() {
    let dir = dump_dir("unwritable");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("file");
    std::fs::write(&file, "").unwrap();
    let target = file.join("dumps");
    let (code, stderr) = run_failing(&[
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--shards",
        "1",
        "--latency-dump",
        target.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    let line = stderr
        .lines()
        .find(|line| line.starts_with("ticketd: "))
        .unwrap_or_else(|| panic!("no ticketd: line in {stderr}"));
    let expected = format!(
        "ticketd: cannot write latency histograms to {}: ",
        target.display()
    );
    assert!(line.starts_with(&expected), "{line}");
    assert!(
        line.ends_with(
            "point --latency-dump (LATENCY_DUMP) at a directory ticketd may create and write"
        ),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

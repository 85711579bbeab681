//! `ticket-bench run` against a real HTTP server on loopback (the tiny one in `support`, so this
//! crate needs no ticketd binary): complete run folders, correct counts and stock checks, and
//! interval logs that decode back to what was recorded.

mod support;

use std::sync::atomic::Ordering;

use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use support::{run_args, scratch, TicketServer};
use ticket_bench::run::run;
use ticket_bench::summary::Summary;

/// Runs `args` (after `--url URL --out DIR`) against `server`; returns the folder and summary.
fn bench(server: &TicketServer, name: &str, args: &[&str]) -> (std::path::PathBuf, Summary) {
    let dir = scratch(name);
    let url = server.url();
    let out = dir.to_str().unwrap().to_string();
    let mut all = vec!["--url", &url, "--out", &out];
    all.extend_from_slice(args);
    let outcome = run(&run_args(&all), format!("test {name}")).unwrap();
    assert_eq!(outcome.dir, dir);
    // summary.json holds exactly the summary returned.
    let json = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    let read: Summary = serde_json::from_str(&json).unwrap();
    assert_eq!(read, outcome.summary);
    (dir, outcome.summary)
}

/// The interval histograms of a `.hlog`, decoded with hdrhistogram's reader and V2 decoder.
fn intervals(path: &Path) -> Vec<(Duration, Duration, Histogram<u64>)> {
    let text = std::fs::read(path).unwrap();
    let mut base_seen = false;
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(&text) {
        match entry.unwrap() {
            LogEntry::BaseTime(_) => base_seen = true,
            LogEntry::StartTime(_) => {}
            LogEntry::Interval(i) => {
                let bytes = STANDARD.decode(i.encoded_histogram()).unwrap();
                let h: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut bytes.as_slice())
                    .unwrap();
                assert_eq!(i.max(), h.max() as f64 / 1000.0);
                out.push((i.start_timestamp(), i.duration(), h));
            }
        }
    }
    assert!(base_seen, "{} has no BaseTime", path.display());
    out
}

/// A purchase run bounded by a request count writes every file; its counts, histograms and
/// interval log agree; and the stock check finds exactly qty x successes sold.
#[test]
fn purchase_run_writes_a_complete_folder_with_a_correct_stock_check() {
    let server = TicketServer::start(1_000_000);
    let (dir, s) = bench(
        &server,
        "purchase",
        &[
            "--scenario",
            "purchase",
            "-c",
            "8",
            "--requests",
            "3000",
            "--pipeline",
            "2",
            "--qty",
            "2",
            "--warmup",
            "100ms",
            "--settle",
            "0s",
            "--threads",
            "2",
            "--server-options",
            "tiny test server",
        ],
    );
    for file in [
        "summary.md",
        "summary.json",
        "purchase.hgrm",
        "purchase.hlog",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert_eq!(s.requests, 3000);
    assert_eq!(s.errors.total, 0, "{:?}", s.errors);
    assert_eq!(s.latency_ms.count, 3000);
    assert!(s.rps > 0.0 && s.latency_ms.p50 > 0.0 && s.latency_ms.max >= s.latency_ms.p99);
    assert_eq!(s.server_options.as_deref(), Some("tiny test server"));
    assert_eq!(s.setup.mode, "closed-loop");

    let check = s
        .stock_check
        .clone()
        .expect("a purchase run checks the stock");
    assert!(check.ok, "{check:?}");
    assert_eq!(check.before, 1_000_000);
    assert_eq!(check.successes, 3000 + s.warmup_requests);
    assert_eq!(check.sold, 2 * check.successes as i64);
    assert_eq!(
        server.stock.load(std::sync::atomic::Ordering::SeqCst) as u64,
        check.after
    );

    // The .hgrm's total and the .hlog's intervals add up to the measured requests.
    let hgrm = support::parse_hgrm(&std::fs::read_to_string(dir.join("purchase.hgrm")).unwrap());
    assert_eq!(hgrm.total_count, 3000);
    let logged = intervals(&dir.join("purchase.hlog"));
    assert!(!logged.is_empty());
    let sum: u64 = logged.iter().map(|(_, _, h)| h.len()).sum();
    assert_eq!(sum, 3000);
    for (n, (start, length, _)) in logged.iter().enumerate() {
        assert_eq!(*start, Duration::from_secs(n as u64));
        assert!(*length <= Duration::from_secs(1));
    }
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("## Stock check") && md.contains("ok: server sold"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// When the stock runs out, the rest of the purchases are `success:false` errors, and the stock
/// check still balances.
#[test]
fn sold_out_is_counted_as_success_false() {
    let server = TicketServer::start(50);
    let (dir, s) = bench(
        &server,
        "sold-out",
        &[
            "--scenario",
            "reserve",
            "-c",
            "4",
            "--requests",
            "200",
            "--settle",
            "0s",
        ],
    );
    assert_eq!(s.requests, 200);
    assert_eq!(s.errors.success_false, 150);
    assert_eq!(s.errors.total, 150);
    let check = s.stock_check.unwrap();
    assert!(
        check.ok && check.sold == 50 && check.successes == 50,
        "{check:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The mix scenario puts half the connections on each stream and logs each series apart.
#[test]
fn mix_splits_connections_between_available_and_purchase() {
    let server = TicketServer::start(1_000_000);
    let (dir, s) = bench(
        &server,
        "mix",
        &[
            "--scenario",
            "mix",
            "-c",
            "4",
            "--requests",
            "2000",
            "--settle",
            "0s",
        ],
    );
    let names: Vec<&str> = s.series.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["mix", "mix-available", "mix-purchase"]);
    assert_eq!(s.series[1].requests + s.series[2].requests, 2000);
    // Half the connections on each stream, as the server saw them (how many requests each
    // stream makes in a shared budget depends on scheduling: once, on a loaded CI machine, a
    // stream made fewer than a quarter).
    let opened = server
        .opened_by
        .each_ref()
        .map(|n| n.load(Ordering::Relaxed));
    assert_eq!(
        opened,
        [2, 2],
        "load connections opened by a GET, by a POST"
    );
    assert!(
        s.series[1].requests > 0 && s.series[2].requests > 0,
        "{names:?}"
    );
    for file in [
        "mix.hgrm",
        "mix.hlog",
        "mix-available.hgrm",
        "mix-purchase.hlog",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let check = s.stock_check.unwrap();
    assert!(
        check.ok && check.successes == s.series[2].requests,
        "{check:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Open loop sends at the asked rate, and its warm-up stays out of the figures.
#[test]
fn open_loop_keeps_the_rate_and_excludes_the_warmup() {
    let server = TicketServer::start(0);
    let (dir, s) = bench(
        &server,
        "open",
        &["--rate", "2000", "-c", "4", "-d", "1s", "--warmup", "300ms"],
    );
    assert_eq!(s.setup.mode, "open-loop");
    // 2000 req/s for 1 s: the schedule sends 2000 measured requests (one less at an edge).
    assert!((1990..=2000).contains(&s.requests), "{}", s.requests);
    assert!(
        (550..=650).contains(&s.warmup_requests),
        "{}",
        s.warmup_requests
    );
    assert_eq!(s.errors.total, 0);
    assert!(s.stock_check.is_none(), "available sells nothing");
    let logged = intervals(&dir.join("available.hlog"));
    let sum: u64 = logged.iter().map(|(_, _, h)| h.len()).sum();
    assert_eq!(sum, s.requests);
    std::fs::remove_dir_all(dir).unwrap();

    // Bounded by a request count instead of time, with two threads sharing it.
    let (dir, s) = bench(
        &server,
        "open-count",
        &[
            "--rate",
            "5000",
            "-c",
            "4",
            "-t",
            "2",
            "--requests",
            "500",
            "--pipeline",
            "4",
        ],
    );
    assert_eq!(s.requests, 500);
    assert_eq!(s.setup.duration_s, None);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Errors are counted by kind: statuses, and connects to a port where nothing listens.
#[test]
fn errors_are_counted_by_kind() {
    let server = TicketServer::start(0);
    let (dir, s) = bench(
        &server,
        "status",
        &[
            "--scenario",
            "custom",
            "--path",
            "/nope",
            "-c",
            "2",
            "--requests",
            "100",
        ],
    );
    assert_eq!(s.errors.status.get(&404), Some(&100));
    assert_eq!(s.errors.total, 100);
    std::fs::remove_dir_all(dir).unwrap();

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = scratch("refused");
    let out = dir.to_str().unwrap();
    let args = run_args(&["--url", &url, "--out", out, "-c", "2", "-d", "300ms"]);
    let s = run(&args, "test refused".into()).unwrap().summary;
    assert!(s.errors.connect >= 2, "{:?}", s.errors);
    assert_eq!(s.requests, 0);
    std::fs::remove_dir_all(dir).unwrap();

    // A server that accepts (in the kernel's backlog) but never answers: timeouts.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let dir = scratch("silent");
    let out = dir.to_str().unwrap();
    let args = run_args(&[
        "--url",
        &url,
        "--out",
        out,
        "-c",
        "2",
        "-d",
        "500ms",
        "--timeout",
        "150ms",
    ]);
    let s = run(&args, "test silent".into()).unwrap().summary;
    assert!(s.errors.timeout >= 2, "{:?}", s.errors);
    assert_eq!(s.errors.total, s.errors.timeout + s.errors.closed);
    assert_eq!(s.requests, 0);
    std::fs::remove_dir_all(dir).unwrap();
    drop(silent);
}

/// --slow-log writes every measured response past its threshold to slow.csv, and only those,
/// stamped on CLOCK_MONOTONIC within the run: the test server sleeps 60 ms on every 50th
/// request, so of 200 requests on one connection exactly 4 take 60 ms or more.
#[test]
fn slow_log_lists_the_stalled_responses_on_the_monotonic_clock() {
    let server = TicketServer::start(0);
    let before = ticket_bench::slow::monotonic_ns();
    let (dir, s) = bench(
        &server,
        "slow-log",
        &[
            "--scenario",
            "custom",
            "--path",
            "/stall/50/60",
            "-c",
            "1",
            "--requests",
            "200",
            "--slow-log",
            "20ms",
        ],
    );
    let after = ticket_bench::slow::monotonic_ns();
    assert_eq!((s.requests, s.errors.total), (200, 0));
    let text = std::fs::read_to_string(dir.join("slow.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(ticket_bench::slow::CSV_HEADER));
    let rows: Vec<Vec<u64>> = lines
        .map(|l| l.split(',').map(|f| f.parse().unwrap()).collect())
        .collect();
    // A loaded machine may make a fast request slow; never a stalled one fast.
    let stalled: Vec<&Vec<u64>> = rows.iter().filter(|r| r[2] >= 60_000).collect();
    assert_eq!(stalled.len(), 4, "{text}");
    for r in &rows {
        let (intended, arrival, latency_us) = (r[0], r[1], r[2]);
        assert!(
            before <= intended && intended < arrival && arrival <= after,
            "{r:?}"
        );
        assert_eq!((arrival - intended) / 1000, latency_us);
        assert!(latency_us >= 20_000);
        assert_eq!(
            (r[3], r[4], r[5]),
            (0, 0, 200),
            "connection, thread, status"
        );
    }
    assert!(s.notes.iter().any(|n| n.starts_with(&format!(
        "slow.csv: {} measured responses of 20ms or more",
        rows.len()
    ))));
    std::fs::remove_dir_all(dir).unwrap();
}

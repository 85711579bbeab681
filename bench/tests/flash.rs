//! `ticket-bench run --scenario flash` against the tiny server of `support`: the run is split at
//! the sell-out, the successes are checked against the stock, and late successes (a success sent
//! after a "sold out" answer had arrived) are counted: none from an honest server, some from one
//! that answers "sold out" before its stock is gone.

mod support;

use support::{run_args, scratch, TicketServer};
use ticket_bench::flash::FlashReport;
use ticket_bench::run::run;
use ticket_bench::summary::Summary;

/// Runs a flash sale (`args` after `--url URL --out DIR --scenario flash`) against `server`.
fn flash(server: &TicketServer, name: &str, args: &[&str]) -> (std::path::PathBuf, Summary) {
    let dir = scratch(name);
    let (url, out) = (server.url(), dir.to_str().unwrap().to_string());
    let mut all = vec!["--url", &url, "--out", &out, "--scenario", "flash"];
    all.extend_from_slice(args);
    let summary = run(&run_args(&all), format!("test {name}"))
        .unwrap()
        .summary;
    let json = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), summary);
    (dir, summary)
}

fn report(s: &Summary) -> &FlashReport {
    s.flash.as_ref().expect("a flash run has a flash report")
}

/// 256 connections, each reopened after 20 requests, against an honest server with 2,000
/// tickets: it sells out, both phases have answers and latencies, every ticket is sold exactly
/// once, no success is late, and "sold out" answers are not errors.
#[test]
fn an_honest_sale_sells_the_stock_with_no_late_success() {
    let server = TicketServer::start(2000);
    let (dir, s) = flash(
        &server,
        "flash-honest",
        &[
            "-c",
            "256",
            "--reconnect-after",
            "20",
            "-d",
            "1s",
            "--settle",
            "0s",
        ],
    );
    let f = report(&s);
    assert!(f.ok, "{f:?}");
    assert!(f.sold_out_after_s.is_some(), "{f:?}");
    assert_eq!((f.successes, f.tickets, f.stock), (2000, 2000, Some(2000)));
    assert_eq!(f.successes_equal_stock, Some(true));
    assert_eq!(f.late_successes, 0);
    let after = f.after.as_ref().expect("an after phase");
    assert!(
        after.requests > 0 && after.sold_out > 0 && after.rps > 0.0,
        "{after:?}"
    );
    assert_eq!(f.before.sold + after.sold, 2000);
    assert_eq!(f.before.requests + after.requests, s.requests);
    assert!(f.before.latency_ms.p50 > 0.0 && after.latency_ms.max >= after.latency_ms.p99);
    assert!(f.reconnects > 0, "{f:?}");
    assert_eq!((f.non_200, f.timeouts), (0, 0));
    assert_eq!(s.errors.total, 0, "{:?}", s.errors);
    assert!(s.stock_check.as_ref().unwrap().ok);
    for file in ["flash.hgrm", "flash-before.hgrm", "flash-after.hgrm"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        md.contains("## Flash sale") && md.contains("late successes"),
        "{md}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A server that answers its first 50 orders "sold out" with 500 tickets in stock: the clients
/// that were told so and ordered again succeeded, and each such success is counted late.
#[test]
fn a_false_sold_out_shows_as_late_successes() {
    let server = TicketServer::start_lying(500, 50);
    let (dir, s) = flash(
        &server,
        "flash-lying",
        &["-c", "16", "-d", "500ms", "--settle", "0s"],
    );
    let f = report(&s);
    assert!(f.late_successes > 0, "{f:?}");
    assert_eq!(f.late_by_qty.get(&1), Some(&f.late_successes));
    assert!(!f.ok);
    // The lie was the first refusal, so the "sell-out" came early, before most sales.
    assert!(f.after.as_ref().unwrap().sold > 0);
    // The stock itself still balances: the lie took nothing.
    assert_eq!(f.successes_equal_stock, Some(true));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Open loop at a fixed rate with a mix of quantities: the stock check adds up each quantity's
/// successes, the sell-out is the first refusal of qty 1, and refusals of qty 2 while one ticket
/// is left are not late.
#[test]
fn open_loop_with_a_qty_mix() {
    let server = TicketServer::start(1001);
    let (dir, s) = flash(
        &server,
        "flash-mix",
        &[
            "--qty-mix",
            "1,2",
            "--rate",
            "5000",
            "-c",
            "64",
            "-d",
            "600ms",
            "--settle",
            "0s",
        ],
    );
    let f = report(&s);
    assert!(f.ok, "{f:?}");
    assert_eq!(f.qty_min, 1);
    assert_eq!((f.tickets, f.late_successes), (1001, 0));
    assert_eq!(s.setup.mode, "open-loop");
    let check = s.stock_check.as_ref().unwrap();
    assert!(check.ok && check.qty_mix == [1, 2], "{check:?}");
    let names: Vec<&str> = s.series.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["flash", "flash-purchase-q1", "flash-purchase-q2"]);
    std::fs::remove_dir_all(dir).unwrap();
}

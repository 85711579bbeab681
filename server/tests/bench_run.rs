//! `ticket-bench run` against the real ticketd: a short purchase run (a few thousand requests)
//! produces a complete run folder, and its stock check balances: the tickets ticketd says it sold
//! are exactly the successes the responses reported.

mod support;

use std::time::Duration;

use support::Server;
use ticket_bench::cli::{Cli, Command};

fn run_args(args: &[&str]) -> ticket_bench::cli::RunArgs {
    let mut argv = vec!["ticket-bench", "run"];
    argv.extend_from_slice(args);
    match <Cli as clap::Parser>::parse_from(argv).command {
        Command::Run(run) => run,
        Command::Compare(_) => unreachable!("a run was asked for"),
    }
}

/// 3,000 purchases over 8 connections against 2 shards: every output file is written, nothing
/// failed, and the stock check finds 3,000 tickets sold for 3,000 successes.
#[test]
fn a_short_purchase_run_against_ticketd_balances() {
    let server = Server::start(&[
        "--shards",
        "2",
        "--initial-stock",
        "100000",
        "--cache-ttl-seconds",
        "0.2",
    ]);
    let out = std::env::temp_dir().join(format!("ticketd-bench-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let url = format!("http://{}", server.addr);
    let out_arg = out.to_str().unwrap().to_string();
    let args = run_args(&[
        "--url",
        &url,
        "--out",
        &out_arg,
        "--scenario",
        "purchase",
        "--connections",
        "8",
        "--requests",
        "3000",
        "--warmup",
        "0s",
        "--settle",
        "0.6s",
        "--label",
        "test",
    ]);
    let outcome = ticket_bench::run::run(&args, "test".to_string()).expect("the run completes");
    for file in [
        "summary.md",
        "summary.json",
        "purchase.hgrm",
        "purchase.hlog",
    ] {
        let path = outcome.dir.join(file);
        assert!(
            std::fs::metadata(&path)
                .map(|m| m.len() > 0)
                .unwrap_or(false),
            "{} missing",
            path.display()
        );
    }
    let summary = outcome.summary;
    assert_eq!(summary.requests, 3000);
    let stock = summary.stock_check.expect("purchase runs check the stock");
    assert!(stock.ok, "{stock:?}");
    assert_eq!(stock.unknown, 0, "{stock:?}");
    assert_eq!(stock.successes, 3000, "{stock:?}");
    assert_eq!(stock.sold, 3000, "{stock:?}");
    assert_eq!(stock.before, 100_000);
    std::thread::sleep(Duration::from_millis(10));
    let _ = std::fs::remove_dir_all(&out);
}

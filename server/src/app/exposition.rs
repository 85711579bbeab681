//! `GET /metrics`: every shard's published [`Snapshot`] as Prometheus' text exposition format
//! 0.0.4 (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! Each series is given per shard (`shard="N"`, the mesh's shard number as `GET /` reports it)
//! and, where adding makes sense (counters, histograms, tickets, connections), summed over the
//! shards as `shard="all"`. An explicit label value rather than a series without the label, so a
//! query names what it wants: `sum(x{shard!="all"})` and `x{shard="all"}` agree, and a bare
//! `sum(x)` counts twice. Sequence numbers, flags and the bound are per shard only.
//!
//! A shard that has not published yet (the first moments after start) is left out; every
//! number is as old as its shard's snapshot (see [`crate::app::board`]): the HELP text says so.
//! Families with no value on any shard (the journal without one, service times without
//! `--latency-dump`) are left out whole.

use std::io::Write as _;
use std::time::Instant;

use crate::app::board::{Published, Snapshot, PUBLISH_PERIOD};
use crate::buckets::Buckets;
use crate::config::Mode;

/// `Content-Type` of the text format, version 0.0.4.
pub const CONTENT_TYPE: &[u8] = b"text/plain; version=0.0.4; charset=utf-8";

/// A Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One metric family of one value per shard.
struct Family {
    /// The metric name (counters end in `_total`).
    name: &'static str,
    /// What it counts (a sentence; the staleness note is added).
    help: &'static str,
    /// Counter or gauge.
    kind: Kind,
    /// Its value on a shard (`None`: the shard has none, and no series).
    value: fn(&Snapshot) -> Option<u64>,
    /// A `shard="all"` series adds the shards' values.
    summed: bool,
}

/// A counter of [`crate::app::metrics::Counters`] or of the protocol's moves.
macro_rules! counter {
    ($name:literal, $help:literal, |$s:ident| $value:expr) => {
        Family {
            name: $name,
            help: $help,
            kind: Kind::Counter,
            value: |$s| Some($value),
            summed: true,
        }
    };
}

/// Every family of one value per shard, in the order scraped.
const FAMILIES: &[Family] = &[
    counter!(
        "ticketd_connections_accepted_total",
        "Connections accepted.",
        |s| s.counters.connections_accepted
    ),
    counter!(
        "ticketd_connections_closed_total",
        "Connections closed, for any reason.",
        |s| s.counters.connections_closed
    ),
    counter!(
        "ticketd_connections_timed_out_total",
        "Connections closed by the head deadline or the idle timeout.",
        |s| s.counters.connections_timed_out
    ),
    counter!(
        "ticketd_requests_total",
        "Requests answered, whatever the status.",
        |s| s.counters.requests
    ),
    counter!(
        "ticketd_orders_sold_total",
        "Purchases and reserves that took tickets, counted by the shard that answered.",
        |s| s.counters.orders_sold
    ),
    counter!(
        "ticketd_orders_insufficient_total",
        "Purchases and reserves answered success false.",
        |s| s.counters.orders_insufficient
    ),
    counter!(
        "ticketd_orders_refused_total",
        "Orders answered 503 because a journal failed.",
        |s| s.counters.orders_refused
    ),
    counter!(
        "ticketd_tickets_sold_total",
        "Tickets taken by successful orders, counted by the shard that answered.",
        |s| s.counters.tickets_sold
    ),
    counter!(
        "ticketd_body_errors_total",
        "Request bodies rejected (400 or 422).",
        |s| s.counters.body_errors
    ),
    counter!(
        "ticketd_not_found_total",
        "Requests for unknown paths (404).",
        |s| s.counters.not_found
    ),
    counter!(
        "ticketd_method_not_allowed_total",
        "Requests with a method the path does not allow (405).",
        |s| s.counters.method_not_allowed
    ),
    counter!(
        "ticketd_rate_limited_total",
        "Requests answered 429 by the per-client rate limit.",
        |s| s.counters.rate_limited
    ),
    counter!(
        "ticketd_forwarded_total",
        "Ticket mode: requests sent to the vacancy service.",
        |s| s.counters.forwarded
    ),
    counter!(
        "ticketd_forward_failed_total",
        "Ticket mode: forwarded requests answered 503.",
        |s| s.counters.forward_failed
    ),
    counter!(
        "ticketd_forward_outcome_unknown_total",
        "Ticket mode: forwarded purchases that may or may not have sold.",
        |s| s.counters.forward_outcome_unknown
    ),
    counter!(
        "ticketd_uring_recv_enobufs_total",
        "io_uring transport: multishot receives ended by ENOBUFS (the provided-buffer ring was empty).",
        |s| s.counters.transport.recv_enobufs
    ),
    counter!(
        "ticketd_uring_recv_rearms_total",
        "io_uring transport: multishot receives armed again on an open connection.",
        |s| s.counters.transport.recv_rearms
    ),
    counter!(
        "ticketd_uring_parks_total",
        "io_uring transport: times the driver parked with nothing to do.",
        |s| s.counters.transport.parks
    ),
    counter!(
        "ticketd_uring_park_wakes_total",
        "io_uring transport: parks woken by the driver's eventfd.",
        |s| s.counters.transport.park_wakes
    ),
    counter!(
        "ticketd_uring_park_timeouts_total",
        "io_uring transport: parks ended by the sweep timer.",
        |s| s.counters.transport.park_timeouts
    ),
    counter!(
        "ticketd_uring_late_wakes_total",
        "io_uring transport: parks ended by the sweep timer while completions waited (expected near 0).",
        |s| s.counters.transport.late_wakes
    ),
    counter!(
        "ticketd_uring_yields_total",
        "io_uring transport: times the busy driver gave way to glommio.",
        |s| s.counters.transport.yields
    ),
    counter!(
        "ticketd_uring_slow_yields_total",
        "io_uring transport: times the driver got the CPU back more than 1 ms after giving way.",
        |s| s.counters.transport.slow_yields
    ),
    counter!(
        "ticketd_uring_sends_behind_total",
        "io_uring transport: responses made while the connection's previous send was in flight.",
        |s| s.counters.transport.sends_behind
    ),
    counter!(
        "ticketd_moves_orders_local_total",
        "Orders sold from the shard's own slice without any message.",
        |s| s.moves.orders_local
    ),
    counter!(
        "ticketd_moves_orders_escalated_total",
        "Orders escalated to the coordinator.",
        |s| s.moves.orders_escalated
    ),
    counter!(
        "ticketd_moves_refills_asked_total",
        "Refills asked of the coordinator.",
        |s| s.moves.refills_asked
    ),
    counter!(
        "ticketd_moves_takes_answered_total",
        "Take requests of the coordinator answered.",
        |s| s.moves.takes_answered
    ),
    counter!(
        "ticketd_moves_tickets_in_total",
        "Tickets received from other shards' slices.",
        |s| s.moves.tickets_in
    ),
    counter!(
        "ticketd_moves_tickets_out_total",
        "Tickets given to other shards' slices.",
        |s| s.moves.tickets_out
    ),
    counter!(
        "ticketd_moves_gathers_failed_total",
        "Gathers that ended insufficient (coordinator).",
        |s| s.moves.gathers_failed
    ),
    counter!(
        "ticketd_moves_orders_refused_locally_total",
        "Orders refused with no message: more than the known bound of tickets left.",
        |s| s.moves.orders_refused_locally
    ),
    counter!(
        "ticketd_slice_tickets_sold_total",
        "Tickets taken from the shard's slice (an escalated order's come from the coordinator's).",
        |s| s.stock.sold
    ),
    Family {
        name: "ticketd_stock_available_tickets",
        help: "Tickets the shard's slice can sell now (0 in ticket mode, which holds no stock).",
        kind: Kind::Gauge,
        value: |s| Some(s.stock.available),
        summed: true,
    },
    Family {
        name: "ticketd_stock_bound_tickets",
        help: "At most this many tickets are left anywhere, known once a gather failed.",
        kind: Kind::Gauge,
        value: |s| s.stock.bound,
        summed: false,
    },
    Family {
        name: "ticketd_connections_open",
        help: "Connections open (accepted and not yet closed).",
        kind: Kind::Gauge,
        value: |s| {
            let c = &s.counters;
            Some(c.connections_accepted.saturating_sub(c.connections_closed))
        },
        summed: true,
    },
    Family {
        name: "ticketd_halted",
        help:
            "1 once a journal failed (here or on a peer): the shard sells nothing until a restart.",
        kind: Kind::Gauge,
        value: |s| Some(u64::from(s.halted)),
        summed: false,
    },
    Family {
        name: "ticketd_journal_healthy",
        help: "1 while the shard's journal works, 0 once it failed (until a restart).",
        kind: Kind::Gauge,
        value: |s| s.journal.map(|j| u64::from(!j.failed)),
        summed: false,
    },
    Family {
        name: "ticketd_journal_durable_seq",
        help: "The shard journal's last durable sequence number.",
        kind: Kind::Gauge,
        value: |s| s.journal.map(|j| j.durable),
        summed: false,
    },
    Family {
        name: "ticketd_journal_appended_seq",
        help: "The shard journal's last appended sequence number.",
        kind: Kind::Gauge,
        value: |s| s.journal.map(|j| j.appended),
        summed: false,
    },
    Family {
        name: "ticketd_journal_commits_total",
        help: "Group commits of the shard's journal.",
        kind: Kind::Counter,
        value: |s| s.journal.map(|j| j.commits),
        summed: true,
    },
    Family {
        name: "ticketd_journal_changes_total",
        help: "Changes the shard journal's commits made durable.",
        kind: Kind::Counter,
        value: |s| s.journal.map(|j| j.changes),
        summed: true,
    },
];

/// What a scrape renders: the slots as read, and when.
#[derive(Clone, Copy, Debug)]
pub struct Scrape<'a> {
    /// Every shard's slot, in shard order.
    pub slots: &'a [Published],
    /// Now, for the snapshots' ages.
    pub now: Instant,
    /// The process's mode (for `ticketd_build_info`).
    pub mode: Mode,
}

/// Appends the exposition of `scrape` to `out`.
pub fn render(out: &mut Vec<u8>, scrape: Scrape<'_>) {
    let shards: Vec<(usize, &Snapshot)> = scrape
        .slots
        .iter()
        .enumerate()
        .filter(|(_, p)| p.at.is_some())
        .map(|(i, p)| (i, &p.snapshot))
        .collect();
    info(out, scrape);
    for family in FAMILIES {
        one_value(out, family, &shards);
    }
    http_errors(out, &shards);
    in_transit(out, &shards);
    histogram(
        out,
        "ticketd_journal_commit_seconds",
        "Time from handing a group commit to the writer to its being durable.",
        &shards,
        |s| s.journal.as_ref().map(|j| &j.commit_time),
    );
    histogram(
        out,
        "ticketd_service_seconds",
        "With --latency-dump: time from receiving an input (one request, or a pipelined batch) to \
         its responses being ready to send.",
        &shards,
        |s| s.service_time.as_ref(),
    );
}

/// `# HELP` (with the staleness note) and `# TYPE`.
fn head(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    let _ = writeln!(
        out,
        "# HELP {name} {help} Per shard, as it last published: at most {} s old, plus a busy \
         shard's timer delay.\n# TYPE {name} {kind}",
        PUBLISH_PERIOD.as_secs_f64()
    );
}

/// Build info, the shard count, and each snapshot's age.
fn info(out: &mut Vec<u8>, scrape: Scrape<'_>) {
    let _ = writeln!(
        out,
        "# HELP ticketd_build_info The running ticketd: its version and mode.\n\
         # TYPE ticketd_build_info gauge\n\
         ticketd_build_info{{version=\"{}\",mode=\"{}\"}} 1\n\
         # HELP ticketd_shards Shards (executors) the process runs.\n\
         # TYPE ticketd_shards gauge\n\
         ticketd_shards {}\n\
         # HELP ticketd_metrics_snapshot_age_seconds How old each shard's published numbers are: \
         every other series of the shard is this old. Each shard publishes every {} s.\n\
         # TYPE ticketd_metrics_snapshot_age_seconds gauge",
        env!("CARGO_PKG_VERSION"),
        scrape.mode.as_str(),
        scrape.slots.len(),
        PUBLISH_PERIOD.as_secs_f64(),
    );
    for (shard, slot) in scrape.slots.iter().enumerate() {
        if let Some(at) = slot.at {
            let age = scrape.now.saturating_duration_since(at).as_secs_f64();
            let _ = writeln!(
                out,
                "ticketd_metrics_snapshot_age_seconds{{shard=\"{shard}\"}} {age}"
            );
        }
    }
}

/// A family of one value per shard, and the sum.
fn one_value(out: &mut Vec<u8>, family: &Family, shards: &[(usize, &Snapshot)]) {
    let mut values = shards
        .iter()
        .filter_map(|&(i, s)| (family.value)(s).map(|v| (i, v)))
        .peekable();
    if values.peek().is_none() {
        return;
    }
    head(out, family.name, family.help, family.kind.as_str());
    let mut sum = 0u64;
    for (shard, value) in values {
        sum = sum.saturating_add(value);
        let _ = writeln!(out, "{}{{shard=\"{shard}\"}} {value}", family.name);
    }
    if family.summed {
        let _ = writeln!(out, "{}{{shard=\"all\"}} {sum}", family.name);
    }
}

/// Parser errors by kind (`proto_http::Error::as_str`), per shard and summed.
fn http_errors(out: &mut Vec<u8>, shards: &[(usize, &Snapshot)]) {
    const NAME: &str = "ticketd_http_errors_total";
    if shards.is_empty() {
        return;
    }
    head(
        out,
        NAME,
        "Requests the HTTP parser rejected, by kind.",
        "counter",
    );
    let mut sums = [0u64; proto_http::Error::ALL.len()];
    for &(shard, s) in shards {
        for (i, (kind, n)) in s.counters.http_errors_by_kind().enumerate() {
            sums[i] += n;
            let _ = writeln!(out, "{NAME}{{shard=\"{shard}\",kind=\"{kind}\"}} {n}");
        }
    }
    for (error, sum) in proto_http::Error::ALL.iter().zip(sums) {
        let kind = error.as_str();
        let _ = writeln!(out, "{NAME}{{shard=\"all\",kind=\"{kind}\"}} {sum}");
    }
}

/// Tickets given by one slice and not yet received by another: the moves out minus the moves in,
/// over all shards. The snapshots are not from one instant, so while tickets move it may be off
/// by what moved within one publish period (never below 0).
fn in_transit(out: &mut Vec<u8>, shards: &[(usize, &Snapshot)]) {
    const NAME: &str = "ticketd_stock_in_transit_tickets";
    if shards.is_empty() {
        return;
    }
    let (sent, received) = shards.iter().fold((0u64, 0u64), |(o, i), (_, s)| {
        (o + s.moves.tickets_out, i + s.moves.tickets_in)
    });
    head(
        out,
        NAME,
        "Tickets on their way between shards' slices (all shards only; the shards' snapshots \
         are not from one instant, so it may be off while tickets move).",
        "gauge",
    );
    let _ = writeln!(
        out,
        "{NAME}{{shard=\"all\"}} {}",
        sent.saturating_sub(received)
    );
}

/// A histogram family: per shard that has one, and summed.
fn histogram(
    out: &mut Vec<u8>,
    name: &str,
    help: &str,
    shards: &[(usize, &Snapshot)],
    get: fn(&Snapshot) -> Option<&Buckets>,
) {
    let mut all = Buckets::default();
    let mut any = false;
    for &(shard, s) in shards {
        let Some(buckets) = get(s) else {
            continue;
        };
        if !any {
            head(out, name, help, "histogram");
            any = true;
        }
        all.add(buckets);
        histogram_series(out, name, &shard.to_string(), buckets);
    }
    if any {
        histogram_series(out, name, "all", &all);
    }
}

/// One histogram's `_bucket`, `_sum` and `_count` lines for `shard`.
fn histogram_series(out: &mut Vec<u8>, name: &str, shard: &str, buckets: &Buckets) {
    for (le, n) in buckets.cumulative() {
        let _ = writeln!(out, "{name}_bucket{{shard=\"{shard}\",le=\"{le}\"}} {n}");
    }
    let count = buckets.count();
    let _ = writeln!(
        out,
        "{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {count}\n\
         {name}_sum{{shard=\"{shard}\"}} {}\n\
         {name}_count{{shard=\"{shard}\"}} {count}",
        buckets.sum_seconds()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::board::JournalState;

    fn text(slots: &[Published]) -> String {
        let mut out = Vec::new();
        let now = Instant::now();
        render(
            &mut out,
            Scrape {
                slots,
                now,
                mode: Mode::Monolith,
            },
        );
        String::from_utf8(out).unwrap()
    }

    fn published(f: impl FnOnce(&mut Snapshot)) -> Published {
        let mut snapshot = Snapshot::default();
        f(&mut snapshot);
        Published {
            at: Some(Instant::now()),
            snapshot,
        }
    }

    #[test]
    fn counters_per_shard_and_summed() {
        let slots = [
            published(|s| s.counters.orders_sold = 3),
            published(|s| s.counters.orders_sold = 4),
            Published::default(), // not published yet: left out
        ];
        let text = text(&slots);
        for line in [
            "# TYPE ticketd_orders_sold_total counter",
            "ticketd_orders_sold_total{shard=\"0\"} 3",
            "ticketd_orders_sold_total{shard=\"1\"} 4",
            "ticketd_orders_sold_total{shard=\"all\"} 7",
            "ticketd_shards 3",
            "ticketd_stock_in_transit_tickets{shard=\"all\"} 0",
            "ticketd_http_errors_total{shard=\"all\",kind=\"bad_host\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(!text.contains("shard=\"2\""), "{text}");
        assert!(text.contains("ticketd_build_info{version=\""));
        // No journal and no service times anywhere: those families are left out whole.
        assert!(!text.contains("ticketd_journal"), "{text}");
        assert!(!text.contains("ticketd_service_seconds"), "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn journal_and_histograms() {
        let mut commit_time = Buckets::default();
        commit_time.record_ns(30_000);
        let journal = JournalState {
            failed: false,
            durable: 5,
            appended: 6,
            commits: 2,
            changes: 5,
            commit_time,
            durable_bytes: 4096,
        };
        let slots = [
            published(|s| s.journal = Some(journal)),
            published(|s| {
                s.journal = Some(JournalState {
                    failed: true,
                    ..journal
                })
            }),
        ];
        let text = text(&slots);
        for line in [
            "ticketd_journal_healthy{shard=\"0\"} 1",
            "ticketd_journal_healthy{shard=\"1\"} 0",
            "ticketd_journal_appended_seq{shard=\"1\"} 6",
            "ticketd_journal_commits_total{shard=\"all\"} 4",
            "ticketd_journal_commit_seconds_bucket{shard=\"0\",le=\"0.000025\"} 0",
            "ticketd_journal_commit_seconds_bucket{shard=\"0\",le=\"0.00005\"} 1",
            "ticketd_journal_commit_seconds_bucket{shard=\"all\",le=\"+Inf\"} 2",
            "ticketd_journal_commit_seconds_count{shard=\"all\"} 2",
            "ticketd_journal_commit_seconds_sum{shard=\"all\"} 0.00006",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(!text.contains("ticketd_journal_durable_seq{shard=\"all\"}"));
    }

    #[test]
    fn tickets_in_transit_are_out_minus_in() {
        let slots = [
            published(|s| s.moves.tickets_out = 10),
            published(|s| s.moves.tickets_in = 7),
        ];
        assert!(text(&slots).contains("ticketd_stock_in_transit_tickets{shard=\"all\"} 3\n"));
    }
}

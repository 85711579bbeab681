//! The flash-sale analysis: from every answer of a `--scenario flash` run, the sell-out, the two
//! phases around it, and the late successes.
//!
//! Workers record one [`Answer`] per response (warm-up included) in a buffer reserved at start-up;
//! the split is made afterwards, so it is exact however many threads ran:
//!
//! - **Sell-out**: the arrival of the first "sold out" answer (`"success": false`) to an order of
//!   the smallest quantity ordered: the moment the first client learns that nothing is left.
//!   Time to sell out counts from the start of the load (the sale's opening).
//! - **Phases**: measured answers that arrived before the sell-out, and at or after it; each with
//!   its req/s (answers over the phase's length), outcomes and latency.
//! - **Late successes**: successful orders of qty q *sent* at or after the arrival of a "sold out"
//!   answer to an order of qty q or less. Stock only goes down during a run, so a server with no
//!   false "sold out" has none: the refused order's tickets were not there, and fewer are there
//!   later. Send and arrival times come from one strictly increasing clock per thread (and
//!   `CLOCK_MONOTONIC` across threads), so a request written in the turn that read a refusal
//!   counts as sent after it. A request queued before a refusal arrived is never late, even if
//!   the kernel sent its bytes later: the count only holds certain violations.
//!
//! This module knows nothing of sockets; it reads answers and writes figures.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::record::latency_histogram;
use crate::summary::{ms, thousands, Latency};

/// Answers recorded per run, over all threads: 16 M answers of 24 bytes (384 MiB) hold 80 s at
/// 200k req/s, past what a flash sale on one box takes. Answers beyond it are counted but not
/// analysed, and the report says so.
pub const ANSWERS_MAX: usize = 1 << 24;
/// Answers per second a buffer is reserved for when the run is closed loop: above what one
/// client core drives on loopback (~200k), so the buffer never grows on the request path.
pub const CLOSED_LOOP_RATE_GUESS: f64 = 300_000.0;

/// What an answer said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `"success": true`: the tickets were taken.
    Sold,
    /// `"success": false`: not enough tickets.
    SoldOut,
    /// A status other than 200.
    NotOk,
    /// 200 with no readable `"success"`.
    Unreadable,
}

/// One response of a flash run. Times are nanoseconds since the start of the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// When the request was queued for writing.
    pub sent_ns: u64,
    /// When its response was read.
    pub arrival_ns: u64,
    /// Latency from the intended send time, µs (as the histograms record it).
    pub latency_us: u32,
    /// The stream, which fixes the quantity.
    pub stream: u16,
    /// What it said.
    pub outcome: Outcome,
    /// Intended after the warm-up.
    pub measured: bool,
}

/// The answers' buffer of one thread.
#[derive(Clone, Debug, Default)]
pub struct Answers {
    /// The answers, in arrival order.
    pub list: Vec<Answer>,
    /// Its capacity, fixed at start-up.
    pub max: usize,
    /// Answers that did not fit.
    pub dropped: u64,
}

impl Answers {
    /// A buffer for `expected` answers (at most `max`), reserved now.
    pub fn reserve(expected: usize, max: usize) -> Answers {
        let max = max.max(1);
        Answers {
            list: Vec::with_capacity(expected.clamp(1, max)),
            max,
            dropped: 0,
        }
    }

    /// Records an answer, or counts it as dropped when the buffer is full.
    pub fn push(&mut self, answer: Answer) {
        if self.list.len() < self.max {
            self.list.push(answer);
        } else {
            self.dropped += 1;
        }
    }
}

/// One side of the sell-out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Its length, seconds.
    pub seconds: f64,
    /// Measured answers that arrived in it.
    pub requests: u64,
    /// `requests / seconds`.
    pub rps: f64,
    /// Answers `"success": true`.
    pub sold: u64,
    /// Answers `"success": false`.
    pub sold_out: u64,
    /// Answers with a status other than 200.
    pub non_200: u64,
    /// Latency of its answers.
    pub latency_ms: Latency,
}

/// The flash-sale figures in `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlashReport {
    /// The smallest quantity ordered: the sell-out is the first refusal of such an order.
    pub qty_min: u64,
    /// Seconds from the start of the load to the sell-out; `None`: not sold out in the run.
    pub sold_out_after_s: Option<f64>,
    /// Seconds from the start of the load to the arrival of the last success.
    pub last_success_after_s: Option<f64>,
    /// Measured answers before the sell-out (all of them when it did not sell out).
    pub before: Phase,
    /// Measured answers from the sell-out on.
    pub after: Option<Phase>,
    /// Successes over the whole run, warm-up included.
    pub successes: u64,
    /// Tickets those successes took.
    pub tickets: u64,
    /// `/api/v1/available` before the load, when read.
    pub stock: Option<u64>,
    /// Whether the successes took exactly the stock (every sellable ticket sold, none twice):
    /// `tickets == stock` with nothing left that the smallest order could buy. `None` without
    /// a stock reading.
    pub successes_equal_stock: Option<bool>,
    /// Successes sent at or after a refusal of the same or a smaller quantity had arrived.
    pub late_successes: u64,
    /// The same, by quantity.
    pub late_by_qty: BTreeMap<u64, u64>,
    /// Answers with a status other than 200, whole run.
    pub non_200: u64,
    /// Requests that timed out, whole run.
    pub timeouts: u64,
    /// Connections closed and reopened after --reconnect-after requests.
    pub reconnects: u64,
    /// Answers not analysed because the buffer was full ([`ANSWERS_MAX`]).
    pub dropped: u64,
    /// True when nothing above is wrong: no late success, no answer other than 200, no timeout,
    /// and, if it sold out, the successes equal the stock.
    pub ok: bool,
}

/// What the analysis needs besides the answers.
#[derive(Clone, Debug)]
pub struct Context {
    /// Tickets per order, by stream.
    pub qty: Vec<u64>,
    /// From the start of the load to the end of the warm-up.
    pub measure_start: Duration,
    /// From the start of the load to the end of the measured window.
    pub measure_end: Duration,
    /// `/api/v1/available` before and after, when read.
    pub stock: Option<(u64, u64)>,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Planned reconnections.
    pub reconnects: u64,
}

/// The report and the latency histograms of the two phases (µs).
#[derive(Debug)]
pub struct Analysis {
    /// The figures.
    pub report: FlashReport,
    /// Latencies before the sell-out.
    pub before: Histogram<u64>,
    /// Latencies from the sell-out on (empty when it did not sell out).
    pub after: Histogram<u64>,
}

/// Splits the run at the sell-out and counts late successes.
pub fn analyse(threads: &[&Answers], ctx: &Context) -> Analysis {
    let answers = || threads.iter().flat_map(|t| t.list.iter());
    let qty_of = |a: &Answer| ctx.qty[usize::from(a.stream)];
    let qty_min = ctx.qty.iter().copied().min().unwrap_or(1);

    // The first refusal of each quantity, then the bar for each: the first refusal of that
    // quantity or a smaller one.
    let mut first_refusal: BTreeMap<u64, u64> = BTreeMap::new();
    for a in answers().filter(|a| a.outcome == Outcome::SoldOut) {
        let first = first_refusal.entry(qty_of(a)).or_insert(u64::MAX);
        *first = (*first).min(a.arrival_ns);
    }
    let mut bar: BTreeMap<u64, u64> = BTreeMap::new();
    let mut lowest = None::<u64>;
    for &q in ctx.qty.iter().collect::<std::collections::BTreeSet<_>>() {
        lowest = match (lowest, first_refusal.get(&q)) {
            (Some(l), Some(&f)) => Some(l.min(f)),
            (l, f) => l.or(f.copied()),
        };
        if let Some(l) = lowest {
            bar.insert(q, l);
        }
    }
    let sell_out_ns = first_refusal.get(&qty_min).copied();

    let mut late_by_qty = BTreeMap::new();
    let (mut successes, mut tickets, mut non_200) = (0, 0, 0);
    let mut last_success_ns = None::<u64>;
    let mut before = PhaseCount::default();
    let mut after = PhaseCount::default();
    for a in answers() {
        let q = qty_of(a);
        match a.outcome {
            Outcome::Sold => {
                successes += 1;
                tickets += q;
                last_success_ns = last_success_ns.max(Some(a.arrival_ns));
                if bar.get(&q).is_some_and(|&b| a.sent_ns >= b) {
                    *late_by_qty.entry(q).or_insert(0) += 1;
                }
            }
            Outcome::NotOk => non_200 += 1,
            Outcome::SoldOut | Outcome::Unreadable => {}
        }
        if a.measured {
            let after_sell_out = sell_out_ns.is_some_and(|s| a.arrival_ns >= s);
            match after_sell_out {
                true => after.count(a),
                false => before.count(a),
            }
        }
    }

    let start_ns = ctx.measure_start.as_nanos() as u64;
    let end_ns = (ctx.measure_end.as_nanos() as u64).max(start_ns);
    let split_ns = sell_out_ns.map_or(end_ns, |s| s.clamp(start_ns, end_ns));
    let late_successes = late_by_qty.values().sum();
    let successes_equal_stock = ctx
        .stock
        .map(|(before, after)| tickets == before && after < qty_min || tickets == 0 && before == 0);
    let dropped = threads.iter().map(|t| t.dropped).sum();
    let ok = late_successes == 0
        && non_200 == 0
        && ctx.timeouts == 0
        && (sell_out_ns.is_none() || successes_equal_stock != Some(false));
    let seconds = |ns: u64| ns as f64 / 1e9;
    let report = FlashReport {
        qty_min,
        sold_out_after_s: sell_out_ns.map(seconds),
        last_success_after_s: last_success_ns.map(seconds),
        before: before.phase(seconds(split_ns - start_ns)),
        after: sell_out_ns.map(|_| after.phase(seconds(end_ns - split_ns))),
        successes,
        tickets,
        stock: ctx.stock.map(|(before, _)| before),
        successes_equal_stock,
        late_successes,
        late_by_qty,
        non_200,
        timeouts: ctx.timeouts,
        reconnects: ctx.reconnects,
        dropped,
        ok,
    };
    Analysis {
        report,
        before: before.latency,
        after: after.latency,
    }
}

/// Counts of one phase while the answers are walked.
#[derive(Debug)]
struct PhaseCount {
    /// Answers.
    requests: u64,
    /// Successes.
    sold: u64,
    /// Refusals.
    sold_out: u64,
    /// Statuses other than 200.
    non_200: u64,
    /// Latencies, µs.
    latency: Histogram<u64>,
}

impl Default for PhaseCount {
    fn default() -> Self {
        PhaseCount {
            requests: 0,
            sold: 0,
            sold_out: 0,
            non_200: 0,
            latency: latency_histogram(),
        }
    }
}

impl PhaseCount {
    fn count(&mut self, a: &Answer) {
        self.requests += 1;
        match a.outcome {
            Outcome::Sold => self.sold += 1,
            Outcome::SoldOut => self.sold_out += 1,
            Outcome::NotOk => self.non_200 += 1,
            Outcome::Unreadable => {}
        }
        self.latency.saturating_record(u64::from(a.latency_us));
    }

    fn phase(&self, seconds: f64) -> Phase {
        Phase {
            seconds,
            requests: self.requests,
            rps: if seconds > 0.0 {
                self.requests as f64 / seconds
            } else {
                0.0
            },
            sold: self.sold,
            sold_out: self.sold_out,
            non_200: self.non_200,
            latency_ms: Latency::of(&self.latency),
        }
    }
}

impl FlashReport {
    /// The `## Flash sale` section of `summary.md`.
    pub fn markdown(&self, out: &mut String) {
        let _ = writeln!(out, "\n## Flash sale\n");
        let sold_out = match self.sold_out_after_s {
            Some(s) => format!("sold out after **{s:.3} s** (first \"sold out\" answer to qty {}, from the start of the load)", self.qty_min),
            None => "**not sold out** during the run".into(),
        };
        let _ = writeln!(out, "{sold_out}.\n");
        let _ = writeln!(
            out,
            "| phase | seconds | requests | req/s | sold | sold out | non-200 | p50 | p99 | p99.9 | max |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let phases = [
            ("before sell-out", Some(&self.before)),
            ("after sell-out", self.after.as_ref()),
        ];
        for (name, phase) in phases {
            let Some(p) = phase else { continue };
            let l = &p.latency_ms;
            let _ = writeln!(
                out,
                "| {name} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.seconds,
                thousands(p.requests as f64),
                thousands(p.rps),
                p.sold,
                p.sold_out,
                p.non_200,
                ms(l.p50),
                ms(l.p99),
                ms(l.p99_9),
                ms(l.max)
            );
        }
        let stock = match (self.stock, self.successes_equal_stock) {
            (Some(s), Some(true)) => format!("ok: the successes took the whole stock ({s})"),
            (Some(s), _) => format!("**MISMATCH**: stock {s}, successes took {}", self.tickets),
            (None, _) => "stock not read (--no-stock-check)".into(),
        };
        let _ = writeln!(
            out,
            "\n- successes: {} ({} tickets); {stock}",
            self.successes, self.tickets
        );
        let _ = writeln!(
            out,
            "- late successes (sent after a \"sold out\" answer to the same or a smaller qty had \
             arrived; must be 0): **{}**{}",
            self.late_successes,
            if self.late_by_qty.is_empty() {
                String::new()
            } else {
                format!(" (by qty: {:?})", self.late_by_qty)
            }
        );
        let _ = writeln!(
            out,
            "- non-200 answers: {}, timeouts: {}, reconnections: {}",
            self.non_200, self.timeouts, self.reconnects
        );
        if self.dropped > 0 {
            let _ = writeln!(
                out,
                "- {} answers past the first {ANSWERS_MAX} were not analysed",
                self.dropped
            );
        }
        let _ = writeln!(
            out,
            "- verdict: {}",
            if self.ok { "ok" } else { "**FAILED**" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(sent_ms: u64, arrival_ms: u64, stream: u16, outcome: Outcome) -> Answer {
        Answer {
            sent_ns: sent_ms * 1_000_000,
            arrival_ns: arrival_ms * 1_000_000,
            latency_us: ((arrival_ms - sent_ms) * 1000) as u32,
            stream,
            outcome,
            measured: true,
        }
    }

    fn context(qty: &[u64], stock: Option<(u64, u64)>) -> Context {
        Context {
            qty: qty.to_vec(),
            measure_start: Duration::ZERO,
            measure_end: Duration::from_millis(100),
            stock,
            timeouts: 0,
            reconnects: 0,
        }
    }

    fn of(list: Vec<Answer>) -> Answers {
        Answers {
            list,
            max: ANSWERS_MAX,
            dropped: 0,
        }
    }

    #[test]
    fn phases_split_at_the_first_refusal_of_the_smallest_qty() {
        use Outcome::*;
        let answers = of(vec![
            answer(0, 10, 0, Sold),
            answer(5, 20, 1, SoldOut), // qty 2 refused: legitimate while 1 ticket is left
            answer(10, 30, 0, Sold),
            answer(30, 40, 0, SoldOut), // qty 1 refused: the sell-out
            answer(35, 45, 0, Sold),    // queued before 40: not late
            answer(40, 50, 0, SoldOut),
            answer(60, 70, 1, SoldOut),
        ]);
        let a = analyse(&[&answers], &context(&[1, 2], Some((3, 0))));
        let r = &a.report;
        assert_eq!(r.sold_out_after_s, Some(0.04));
        assert_eq!(r.before.requests, 3);
        assert_eq!(r.after.as_ref().unwrap().requests, 4);
        assert_eq!(r.after.as_ref().unwrap().sold_out, 3);
        assert!((r.before.rps - 75.0).abs() < 1e-9, "{}", r.before.rps);
        assert_eq!((r.successes, r.tickets, r.late_successes), (3, 3, 0));
        assert_eq!(r.successes_equal_stock, Some(true));
        assert!(r.ok);
        assert_eq!(a.before.len() + a.after.len(), 7);
    }

    #[test]
    fn late_successes() {
        use Outcome::*;
        // qty 1 succeeding after qty 2 was refused is fine; qty 2 after qty 1 refused is not;
        // a success queued at the very instant a refusal was read counts as after it.
        let table: &[(&[Answer], u64)] = &[
            (&[answer(0, 5, 1, SoldOut), answer(6, 9, 0, Sold)], 0),
            (&[answer(0, 5, 0, SoldOut), answer(6, 9, 1, Sold)], 1),
            (&[answer(0, 5, 0, SoldOut), answer(5, 9, 0, Sold)], 1),
            (&[answer(0, 5, 0, SoldOut), answer(4, 9, 0, Sold)], 0),
            (&[answer(0, 5, 0, Sold), answer(1, 9, 0, SoldOut)], 0),
        ];
        for (list, late) in table {
            let r = analyse(&[&of(list.to_vec())], &context(&[1, 2], None)).report;
            assert_eq!(r.late_successes, *late, "{list:?}");
            assert_eq!(r.ok, *late == 0, "{list:?}");
        }
    }

    #[test]
    fn not_sold_out_and_mismatches() {
        use Outcome::*;
        let r = analyse(
            &[&of(vec![answer(0, 5, 0, Sold)])],
            &context(&[1], Some((10, 9))),
        )
        .report;
        assert_eq!(r.sold_out_after_s, None);
        assert!(r.after.is_none() && r.ok);
        assert_eq!(r.before.seconds, 0.1);
        let r = analyse(
            &[&of(vec![answer(0, 5, 0, Sold), answer(5, 9, 0, SoldOut)])],
            &context(&[1], Some((2, 0))),
        )
        .report;
        assert_eq!(r.successes_equal_stock, Some(false));
        assert!(!r.ok);
        let r = analyse(&[&of(vec![answer(0, 5, 0, NotOk)])], &context(&[1], None)).report;
        assert_eq!(r.non_200, 1);
        assert!(!r.ok);
    }

    #[test]
    fn a_full_buffer_drops() {
        let mut b = Answers::reserve(10, 2);
        for _ in 0..3 {
            b.push(answer(0, 1, 0, Outcome::Sold));
        }
        assert_eq!((b.list.len(), b.dropped), (2, 1));
    }
}

//! A run's summary: the figures, the setup that produced them, and their two renderings,
//! `summary.json` (read back by `compare`) and `summary.md` (for people).

use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::flash::FlashReport;
use crate::hgrm::{self, US_PER_MS};
use crate::provenance::Provenance;
use crate::record::Errors;
use crate::stock::StockCheck;

/// Everything `summary.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `ticket-bench <version>`.
    pub tool: String,
    /// The run's name.
    pub label: String,
    /// The scenario.
    pub scenario: String,
    /// The server's base URL.
    pub url: String,
    /// The exact command line, shell-quoted.
    pub command: String,
    /// When the load started, RFC 3339 UTC.
    pub started_at: String,
    /// Machine and source tree.
    pub provenance: Provenance,
    /// The server's setup, as given by --server-options.
    pub server_options: Option<String>,
    /// How the load was shaped.
    pub setup: Setup,
    /// Measured responses (any status).
    pub requests: u64,
    /// Seconds from the end of the warm-up to the last measured response (at least the
    /// duration, unless the run stopped early).
    pub elapsed_s: f64,
    /// `requests / elapsed_s`.
    pub rps: f64,
    /// Measured errors by kind.
    pub errors: Errors,
    /// Warm-up responses, left out of every other figure.
    pub warmup_requests: u64,
    /// Warm-up errors, left out of every other figure.
    pub warmup_errors: Errors,
    /// Latency over all streams.
    pub latency_ms: Latency,
    /// Per series: all streams first, then each stream when there are several.
    pub series: Vec<Series>,
    /// The stock check of selling scenarios.
    pub stock_check: Option<StockCheck>,
    /// The flash-sale analysis of `flash` runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flash: Option<FlashReport>,
    /// Anything unusual about the run, one sentence each.
    pub notes: Vec<String>,
}

/// How the load was shaped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// `closed-loop` or `open-loop`.
    pub mode: String,
    /// Open loop: requests per second asked for.
    pub rate: Option<f64>,
    /// Connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Event-loop threads.
    pub threads: usize,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Measured seconds asked for, if bounded by time.
    pub duration_s: Option<f64>,
    /// Measured requests asked for, if bounded by count.
    pub requests: Option<u64>,
    /// Response timeout, seconds.
    pub timeout_s: f64,
    /// Tickets per purchase or reserve.
    pub qty: u64,
    /// The --qty-mix, when one was given (then `qty` is not used).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qty_mix: Vec<u64>,
    /// Requests per connection before it is reopened (--reconnect-after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_after: Option<u64>,
}

/// Latency figures in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Values recorded.
    pub count: u64,
    /// Mean (Java HdrHistogram's method).
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// 99.99th percentile.
    pub p99_99: f64,
    /// Largest value.
    pub max: f64,
}

impl Latency {
    /// The figures of a µs histogram.
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / US_PER_MS;
        Latency {
            count: h.len(),
            mean: hgrm::mean(h) / US_PER_MS,
            stdev: hgrm::std_deviation(h) / US_PER_MS,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            p99_99: ms(h.value_at_quantile(0.9999)),
            max: ms(h.max()),
        }
    }
}

/// One series: a stream, or all streams together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// `available`, `purchase`..., or the scenario's name for all streams.
    pub name: String,
    /// Measured responses.
    pub requests: u64,
    /// Responses per second.
    pub rps: f64,
    /// Measured errors by kind.
    pub errors: Errors,
    /// Latency.
    pub latency_ms: Latency,
    /// Its percentile distribution file, relative to the run folder.
    pub hgrm: String,
    /// Its interval log file, relative to the run folder.
    pub hlog: String,
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in ms with a sensible number of digits.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

impl Summary {
    /// `summary.md`.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let l = &self.latency_ms;
        let _ = writeln!(out, "# ticket-bench run: {}\n", self.label);
        let _ = writeln!(
            out,
            "`{}` against {}: **{} req/s**, p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms, errors {}.\n",
            self.scenario,
            self.url,
            thousands(self.rps),
            ms(l.p50),
            ms(l.p99),
            ms(l.p99_9),
            ms(l.max),
            self.errors.total
        );
        let _ = writeln!(
            out,
            "| series | requests | req/s | p50 | p90 | p99 | p99.9 | p99.99 | max | mean | errors |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in &self.series {
            let l = &s.latency_ms;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                thousands(s.requests as f64),
                thousands(s.rps),
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p99_9),
                ms(l.p99_99),
                ms(l.max),
                ms(l.mean),
                s.errors.total
            );
        }
        let from = if self.setup.mode == "open-loop" {
            "its intended send time (open loop: coordinated omission corrected)"
        } else {
            "its send time (closed loop)"
        };
        let _ = writeln!(out, "\nLatencies in ms, each request's from {from}.\n");
        let _ = writeln!(out, "## Errors\n");
        let _ = writeln!(out, "- measured: {}", self.errors.describe());
        let _ = writeln!(
            out,
            "- warm-up (not counted above): {} responses, errors: {}",
            self.warmup_requests,
            self.warmup_errors.describe()
        );
        if let Some(check) = &self.stock_check {
            let _ = writeln!(out, "\n## Stock check\n\n{}", check.describe());
        }
        if let Some(flash) = &self.flash {
            flash.markdown(&mut out);
        }
        for note in &self.notes {
            let _ = writeln!(out, "\nNote: {note}");
        }
        self.setup_markdown(&mut out);
        let _ = writeln!(out, "\n## Files\n");
        for s in &self.series {
            let _ = writeln!(
                out,
                "- `{}`: percentile distribution in ms (HdrHistogram plotter format); `{}`: 1 s \
                 interval log (HdrHistogram log 1.3, values in µs)",
                s.hgrm, s.hlog
            );
        }
        let _ = writeln!(
            out,
            "- `summary.json`: everything above, for `ticket-bench compare`"
        );
        out
    }

    fn setup_markdown(&self, out: &mut String) {
        let s = &self.setup;
        let p = &self.provenance;
        let _ = writeln!(out, "\n## Setup\n");
        let _ = writeln!(out, "```\n{}\n```\n", self.command);
        let bound = match (s.duration_s, s.requests) {
            (Some(d), Some(n)) => format!("{d} s or {n} requests"),
            (Some(d), None) => format!("{d} s"),
            (None, Some(n)) => format!("{n} requests"),
            (None, None) => "unbounded".into(),
        };
        let rate = s
            .rate
            .map_or(String::new(), |r| format!(" at {} req/s", thousands(r)));
        let qty = match s.qty_mix.is_empty() {
            true => format!("qty {}", s.qty),
            false => format!("qty mix {:?}", s.qty_mix),
        };
        let reconnect = s
            .reconnect_after
            .map_or(String::new(), |n| format!(", reopened every {n} requests"));
        let _ = writeln!(
            out,
            "- load: {}{rate}, {} connections{reconnect}, pipeline {}, {} thread(s), warm-up {} s, \
             measured {} (took {:.3} s), timeout {} s, {qty}",
            s.mode, s.connections, s.pipeline, s.threads, s.warmup_s, bound, self.elapsed_s, s.timeout_s
        );
        let commit = match (&p.git_commit, p.git_dirty) {
            (Some(c), Some(true)) => format!("{c} (with uncommitted changes)"),
            (Some(c), _) => c.clone(),
            (None, _) => "unknown (not a git checkout)".into(),
        };
        let _ = writeln!(
            out,
            "- host: {}, {} CPUs online ({} allowed to ticket-bench), kernel {}",
            p.host, p.cpus_online, p.cpus_allowed, p.kernel
        );
        let _ = writeln!(out, "- git commit: {commit}");
        let _ = writeln!(
            out,
            "- server: {}",
            self.server_options
                .as_deref()
                .unwrap_or("not given (--server-options)")
        );
        let _ = writeln!(out, "- started: {} ({})", self.started_at, self.tool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(212_441.4), "212,441");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(ms(0.1404), "0.140");
        assert_eq!(ms(1234.56), "1234.6");
    }
}

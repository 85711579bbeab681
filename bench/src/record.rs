//! What a run counts: responses, tickets sold, errors by kind, and latency histograms.
//!
//! Each worker thread owns its [`StreamRecord`]s (one per stream) and hands them back when it
//! ends; nothing here is shared while the load runs.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram tracks, in µs: 60 s. A longer one is recorded as 60 s; no request
/// waits that long, as the --timeout ends it first.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Significant decimal digits of every histogram: 0.1 % value resolution, HdrHistogram's usual.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty latency histogram: 1 µs to [`LATENCY_US_MAX`], [`SIGNIFICANT_DIGITS`].
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Why a request failed, or a connection could not carry one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// The connection was reset or closed with this request in flight.
    Closed,
    /// No response within --timeout.
    Timeout,
    /// A response we could not parse (HTTP framing, or no `"success"` in a purchase reply).
    Parse,
    /// A purchase or reserve answered `"success": false`.
    SuccessFalse,
    /// A status other than 200.
    Status(u16),
}

/// Errors counted by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// Every error below, added up.
    pub total: u64,
    /// Connections that could not be opened.
    pub connect: u64,
    /// Requests lost to a reset or closed connection.
    pub closed: u64,
    /// Requests with no response within --timeout.
    pub timeout: u64,
    /// Responses that did not parse.
    pub parse: u64,
    /// Purchases or reserves answered `"success": false`.
    pub success_false: u64,
    /// Responses by status, for every status other than 200.
    pub status: BTreeMap<u16, u64>,
}

impl Errors {
    /// Counts `n` errors of `kind`.
    pub fn add(&mut self, kind: ErrorKind, n: u64) {
        self.total += n;
        match kind {
            ErrorKind::Connect => self.connect += n,
            ErrorKind::Closed => self.closed += n,
            ErrorKind::Timeout => self.timeout += n,
            ErrorKind::Parse => self.parse += n,
            ErrorKind::SuccessFalse => self.success_false += n,
            ErrorKind::Status(s) => *self.status.entry(s).or_default() += n,
        }
    }

    /// Adds another tally's counts to these.
    pub fn merge(&mut self, other: &Errors) {
        self.total += other.total;
        self.connect += other.connect;
        self.closed += other.closed;
        self.timeout += other.timeout;
        self.parse += other.parse;
        self.success_false += other.success_false;
        for (&s, &n) in &other.status {
            *self.status.entry(s).or_default() += n;
        }
    }

    /// "connect 2, status 503: 7" style text; "none" when there are none.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, n) in [
            ("connect", self.connect),
            ("closed", self.closed),
            ("timeout", self.timeout),
            ("parse", self.parse),
            ("success:false", self.success_false),
        ] {
            if n > 0 {
                parts.push(format!("{name} {n}"));
            }
        }
        for (s, n) in &self.status {
            parts.push(format!("status {s} {n}"));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Counts of one phase (warm-up or measured) of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Complete responses, whatever their status.
    pub responses: u64,
    /// Responses that said `"success": true`.
    pub sold: u64,
    /// Requests whose outcome we never learned (timed out, or lost with their connection): the
    /// server may or may not have sold their tickets.
    pub unknown: u64,
    /// Errors by kind.
    pub errors: Errors,
}

impl Tally {
    /// Adds another tally's counts to these.
    pub fn merge(&mut self, other: &Tally) {
        self.responses += other.responses;
        self.sold += other.sold;
        self.unknown += other.unknown;
        self.errors.merge(&other.errors);
    }
}

/// Everything one thread recorded for one stream.
#[derive(Clone, Debug)]
pub struct StreamRecord {
    /// Requests intended (closed loop: sent) before the warm-up ended.
    pub warmup: Tally,
    /// Requests intended at or after the end of the warm-up.
    pub measured: Tally,
    /// Latency of every measured response, µs from the intended send time.
    pub latency: Histogram<u64>,
    /// The same, since the last interval report; reset at every report.
    pub interval: Histogram<u64>,
}

impl Default for StreamRecord {
    fn default() -> Self {
        StreamRecord {
            warmup: Tally::default(),
            measured: Tally::default(),
            latency: latency_histogram(),
            interval: latency_histogram(),
        }
    }
}

impl StreamRecord {
    /// Records one measured latency in both histograms.
    pub fn record_latency(&mut self, latency_us: u64) {
        self.latency.saturating_record(latency_us);
        self.interval.saturating_record(latency_us);
    }

    /// The tally of the phase a request intended at `measured` (true: after the warm-up) is in.
    pub fn tally(&mut self, measured: bool) -> &mut Tally {
        if measured {
            &mut self.measured
        } else {
            &mut self.warmup
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_add_and_merge() {
        let mut a = Errors::default();
        for kind in [
            ErrorKind::Connect,
            ErrorKind::Closed,
            ErrorKind::Timeout,
            ErrorKind::Parse,
            ErrorKind::SuccessFalse,
            ErrorKind::Status(503),
        ] {
            a.add(kind, 2);
        }
        assert_eq!(a.total, 12);
        let mut b = a.clone();
        b.merge(&a);
        assert_eq!(b.total, 24);
        assert_eq!(b.status[&503], 4);
        assert_eq!(
            a.describe(),
            "connect 2, closed 2, timeout 2, parse 2, success:false 2, status 503 2"
        );
        assert_eq!(Errors::default().describe(), "none");
    }

    #[test]
    fn histogram_bounds() {
        let mut r = StreamRecord::default();
        r.record_latency(0);
        r.record_latency(LATENCY_US_MAX * 10);
        assert_eq!(r.latency.len(), 2);
        assert!(r.latency.max() >= LATENCY_US_MAX);
    }
}

//! `--slow-log`: every measured response slower than a threshold, stamped on `CLOCK_MONOTONIC`,
//! so a client-side stall can be matched against a kernel trace of the same run (`perf record
//! --clockid monotonic`, ftrace's `mono` clock) and blamed on what ran, or did not, meanwhile:
//! `bench/stalls.py` does that for `bench/tail.sh --attribute`.
//!
//! Rust's [`Instant`] is `CLOCK_MONOTONIC` on Linux, but opaque: each thread reads the clock once
//! beside an `Instant` and converts by offset (an error of the two reads' distance, well under a
//! microsecond). Entries are kept in memory (at most [`SLOW_LOG_MAX`] per thread, the rest
//! counted) and written after the run as `slow.csv`, so the log costs the request path nothing
//! but a comparison.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Slow responses one thread keeps: 24 bytes each, 24 MB at most. A run whose responses are
/// mostly slow has a threshold below its median, and the first million show that.
pub const SLOW_LOG_MAX: usize = 1_000_000;

/// One slow response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slow {
    /// When it was due (closed loop: sent), ns on `CLOCK_MONOTONIC`.
    pub intended_ns: u64,
    /// When its response was read, ns on `CLOCK_MONOTONIC`.
    pub arrival_ns: u64,
    /// The connection's run-wide id.
    pub connection: u32,
    /// The thread that drove it.
    pub thread: u16,
    /// The response's status (0 if it never came: not logged today).
    pub status: u16,
}

/// One thread's slow responses.
#[derive(Clone, Debug)]
pub struct SlowLog {
    /// Responses at least this slow are logged.
    pub threshold: Duration,
    /// The log, in arrival order.
    pub list: Vec<Slow>,
    /// Slow responses past [`SLOW_LOG_MAX`].
    pub dropped: u64,
    /// An `Instant` and the `CLOCK_MONOTONIC` reading taken beside it.
    base: (Instant, u64),
    thread: u16,
}

impl SlowLog {
    /// An empty log for `thread`, anchored to the monotonic clock now.
    pub fn new(threshold: Duration, thread: usize) -> SlowLog {
        SlowLog {
            threshold,
            list: Vec::new(),
            dropped: 0,
            base: (Instant::now(), monotonic_ns()),
            thread: thread as u16,
        }
    }

    /// `t` in ns on `CLOCK_MONOTONIC`.
    pub fn mono_ns(&self, t: Instant) -> u64 {
        let (at, ns) = self.base;
        if t >= at {
            ns + (t - at).as_nanos() as u64
        } else {
            ns.saturating_sub((at - t).as_nanos() as u64)
        }
    }

    /// Logs a response due at `intended` and read at `arrival` if it is slow.
    pub fn offer(&mut self, intended: Instant, arrival: Instant, connection: usize, status: u16) {
        if arrival.saturating_duration_since(intended) < self.threshold {
            return;
        }
        if self.list.len() >= SLOW_LOG_MAX {
            self.dropped += 1;
            return;
        }
        self.list.push(Slow {
            intended_ns: self.mono_ns(intended),
            arrival_ns: self.mono_ns(arrival),
            connection: connection as u32,
            thread: self.thread,
            status,
        });
    }
}

/// `CLOCK_MONOTONIC` now, in ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The header of `slow.csv`.
pub const CSV_HEADER: &str = "intended_mono_ns,arrival_mono_ns,latency_us,connection,thread,status";

/// Every thread's log as `slow.csv`, sorted by arrival.
pub fn csv<'a>(logs: impl IntoIterator<Item = &'a SlowLog>) -> String {
    let mut all: Vec<Slow> = logs
        .into_iter()
        .flat_map(|l| l.list.iter().copied())
        .collect();
    all.sort_by_key(|s| (s.arrival_ns, s.connection));
    let mut out = String::with_capacity(64 * (all.len() + 1));
    out.push_str(CSV_HEADER);
    out.push('\n');
    for s in all {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            s.intended_ns,
            s.arrival_ns,
            (s.arrival_ns - s.intended_ns) / 1000,
            s.connection,
            s.thread,
            s.status
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_only_what_reaches_the_threshold_on_the_monotonic_clock() {
        let mut log = SlowLog::new(Duration::from_millis(2), 3);
        let t0 = Instant::now();
        let before = monotonic_ns();
        log.offer(t0, t0 + Duration::from_micros(1999), 7, 200);
        log.offer(t0, t0 + Duration::from_millis(2), 8, 200);
        log.offer(t0, t0 + Duration::from_millis(9), 9, 503);
        assert_eq!(log.list.len(), 2);
        let s = log.list[1];
        assert_eq!((s.connection, s.thread, s.status), (9, 3, 503));
        assert_eq!(s.arrival_ns - s.intended_ns, 9_000_000);
        // t0 was taken after the log's anchor and before `before`: its stamp lies between the
        // anchor's reading and `before` (plus the anchor pair's own spread, well under 1 ms).
        assert!(s.intended_ns <= before + 1_000_000 && s.intended_ns + 1_000_000 >= before);
        let text = csv([&log]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines.len(), 3);
        assert!(lines[2].ends_with(",9000,9,3,503"), "{}", lines[2]);
    }

    #[test]
    fn a_full_log_counts_what_it_drops_and_csv_sorts_threads_by_arrival() {
        let mut a = SlowLog::new(Duration::ZERO, 0);
        let mut b = SlowLog::new(Duration::ZERO, 1);
        let t0 = Instant::now();
        a.offer(t0, t0 + Duration::from_millis(5), 1, 200);
        b.offer(t0, t0 + Duration::from_millis(3), 2, 200);
        let text = csv([&a, &b]);
        let conns: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(3).unwrap())
            .collect();
        assert_eq!(conns, ["2", "1"]);
        a.list.resize(SLOW_LOG_MAX, a.list[0]);
        a.offer(t0, t0, 1, 200);
        assert_eq!((a.list.len(), a.dropped), (SLOW_LOG_MAX, 1));
    }
}

//! Merges the threads' one-second interval reports into whole intervals, in order, as soon as
//! every thread has closed them, so the `.hlog` is written while the run goes and memory holds
//! only the intervals some thread is still recording.
//!
//! Invariant: each thread reports indexes 0, 1, 2... without gaps and marks its last report, so
//! interval `k` is complete once every thread has reported `k` or has ended.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::record::latency_histogram;
use crate::worker::{IntervalReport, INTERVAL};

/// One complete interval.
#[derive(Debug)]
pub struct Interval {
    /// It starts `index` intervals after the end of the warm-up.
    pub index: u64,
    /// Its length: [`INTERVAL`], or less for the run's last.
    pub length: Duration,
    /// Latencies recorded in it, per stream, over all threads.
    pub histograms: Vec<Histogram<u64>>,
}

/// An interval some thread has not closed yet.
#[derive(Debug)]
struct Pending {
    /// Per stream, the sum of the reports so far.
    histograms: Vec<Histogram<u64>>,
    /// The latest close time among them, from the end of the warm-up.
    ended_at: Duration,
}

/// The merger.
#[derive(Debug)]
pub struct IntervalMerger {
    /// Streams per report.
    streams: usize,
    /// Per thread, the last index it reported.
    reported: Vec<Option<u64>>,
    /// Per thread, whether its last report came.
    finished: Vec<bool>,
    /// Intervals with reports from some but not all threads.
    pending: BTreeMap<u64, Pending>,
    /// The next interval to hand out.
    next: u64,
}

impl IntervalMerger {
    /// A merger for `threads` threads of `streams` streams.
    pub fn new(threads: usize, streams: usize) -> IntervalMerger {
        IntervalMerger {
            streams,
            reported: vec![None; threads],
            finished: vec![false; threads],
            pending: BTreeMap::new(),
            next: 0,
        }
    }

    /// Takes one report; returns the intervals it completed, in order.
    pub fn accept(&mut self, report: IntervalReport) -> Vec<Interval> {
        assert_eq!(report.histograms.len(), self.streams);
        assert!(
            self.reported[report.thread].map_or(report.index == 0, |i| report.index == i + 1),
            "thread {} skipped an interval",
            report.thread
        );
        let streams = self.streams;
        let pending = self.pending.entry(report.index).or_insert_with(|| Pending {
            histograms: (0..streams).map(|_| latency_histogram()).collect(),
            ended_at: Duration::ZERO,
        });
        for (sum, h) in pending.histograms.iter_mut().zip(&report.histograms) {
            sum.add(h).expect("all histograms share their bounds");
        }
        pending.ended_at = pending.ended_at.max(report.ended_at);
        self.reported[report.thread] = Some(report.index);
        if report.last {
            self.finished[report.thread] = true;
        }
        let mut out = Vec::new();
        while self.complete(self.next) {
            let Some(p) = self.pending.remove(&self.next) else {
                break;
            };
            let start = INTERVAL * self.next as u32;
            out.push(Interval {
                index: self.next,
                length: p.ended_at.saturating_sub(start).min(INTERVAL),
                histograms: p.histograms,
            });
            self.next += 1;
        }
        out
    }

    /// Whether every thread has closed interval `k` (or ended).
    fn complete(&self, k: u64) -> bool {
        self.finished
            .iter()
            .zip(&self.reported)
            .all(|(&finished, &reported)| finished || reported.is_some_and(|r| r >= k))
    }

    /// True once every thread has sent its last report.
    pub fn done(&self) -> bool {
        self.finished.iter().all(|&f| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(thread: usize, index: u64, ended_ms: u64, last: bool, value: u64) -> IntervalReport {
        let mut h = latency_histogram();
        h.record(value).unwrap();
        IntervalReport {
            thread,
            index,
            ended_at: Duration::from_millis(ended_ms),
            last,
            histograms: vec![h],
        }
    }

    #[test]
    fn waits_for_every_thread_and_keeps_order() {
        let mut m = IntervalMerger::new(2, 1);
        assert!(m.accept(report(0, 0, 1000, false, 5)).is_empty());
        assert!(m.accept(report(0, 1, 2000, false, 5)).is_empty());
        let got = m.accept(report(1, 0, 1000, false, 7));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].histograms[0].len(), 2);
        // Thread 1 ends inside interval 1; thread 0 ends inside interval 2.
        let got = m.accept(report(1, 1, 1400, true, 7));
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].index, got[0].length), (1, INTERVAL));
        assert!(!m.done());
        let got = m.accept(report(0, 2, 2300, true, 5));
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].index, got[0].length),
            (2, Duration::from_millis(300))
        );
        assert_eq!(got[0].histograms[0].len(), 1);
        assert!(m.done());
    }
}

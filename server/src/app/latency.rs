//! Per-shard service-time histograms (`--latency-dump DIR`), written in HdrHistogram's two file
//! formats so that the tools load-testing people already use read them.
//!
//! # What is measured
//! For each input a shard processes, the time from the moment the shard reaped the receive (the
//! uring transport: the clock of the turn that reaped the completion; the glommio transport: right
//! after `read` returned) to the moment the responses that input produced are ready to send (right
//! after `Connection::on_input`, or the `resume` that ends an order's wait, returned). So one value
//! is one request when clients wait for each response, and one pipelined batch when they pipeline.
//! An input that completes no request (a head still arriving) records nothing: the request is timed
//! from the input that completes it. An input that ends waiting for the coordinator records when the
//! wait ends, from its own reap, so cross-shard orders show their whole wait.
//!
//! It excludes the time the bytes spent in the kernel before the reap and the send after: it is the
//! server's own share of a client's latency, in nanoseconds.
//!
//! # Cost
//! Off (the default), the request path pays one `Option` test per input. On, one clock read and one
//! counter increment in a histogram sized at start-up (`saturating_record`, which never allocates
//! or fails): the hot path records only into the interval histogram, which each dump adds into the
//! cumulative one and resets. Two histograms of 1 ns..60 s at 3 digits hold about 0.4 MiB per shard.
//!
//! # Files, per shard N (the mesh's shard number, as `GET /` reports it)
//! - `shard-N.hgrm`: the cumulative distribution since start, in exactly the text of Java's
//!   `outputPercentileDistribution(out, 5, 1e6)` (values in ms), rewritten at every dump through a
//!   temporary file and a rename, so a reader never sees half of one.
//! - `shard-N.hlog`: the interval log (format 1.3, V2 + deflate + base64), one line per dump
//!   holding the values since the previous dump; values in ns, which `HistogramLogProcessor`
//!   assumes; the `Interval_Max` column in ms. Created (truncated) with its header at start-up, so
//!   all shards' logs share one StartTime/BaseTime; each line is appended with one `write`.
//!
//! Dumps happen at shutdown, after the drain, and every `--latency-dump-interval-seconds` when
//! that is above 0 (a timer task per shard). A dump runs on the shard's thread and holds it for
//! about a millisecond, mostly deflating the interval for the `.hlog` (0.5 to 0.7 ms measured for
//! 1.5 million values); the files it writes are a few kilobytes.
//!
//! The file writers are `hdr_files::{hgrm, hlog}`, shared with the load generator rather than
//! duplicated.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, LineWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use glommio::channels::local_channel::LocalReceiver;
use hdr_files::{hgrm, hlog};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::buckets::Buckets;

/// The smallest value told apart from the next: 1 ns, the unit recorded (and `Instant`'s grain).
pub const LOWEST_DISCERNIBLE_NS: u64 = 1;

/// The largest value tracked: 60 s, as the load generator's histograms. A service time is
/// microseconds; one this long is an order stuck behind a stalled coordinator, and still shows as
/// 60 s (values above saturate) rather than being dropped.
pub const HIGHEST_TRACKABLE_NS: u64 = 60 * 1_000_000_000;

/// Three significant digits: values are exact to 0.1 % (a 2.345 µs time is told from 2.346 µs),
/// the precision every HdrHistogram tool and wrk2 default to, at 2048 counters per power of two.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Recorded nanoseconds per printed millisecond: the `.hgrm` values and the `.hlog` max column are
/// in ms, the unit the HdrHistogram plotter and `HistogramLogProcessor` print.
pub const NS_PER_MS: f64 = 1_000_000.0;

/// The `.hlog` line buffer: a line is written with one `write` once it ends, so a reader polling
/// the log sees whole lines. A V2-deflated histogram of service times is a few KiB of base64;
/// a longer line is still written whole, in more than one `write`.
const HLOG_LINE_BYTES: usize = 64 * 1024;

/// An empty histogram of service times in nanoseconds, with the bounds above.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(
        LOWEST_DISCERNIBLE_NS,
        HIGHEST_TRACKABLE_NS,
        SIGNIFICANT_DIGITS,
    )
    .expect("constant histogram bounds are valid")
}

/// One shard's histograms. It lives in the shard (`Shard::latency`) only when recording is on.
#[derive(Debug)]
pub struct Recorder {
    /// Values since the last dump: the only histogram the request path touches.
    interval: Histogram<u64>,
    /// Every value up to the last dump.
    total: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            interval: histogram(),
            total: histogram(),
        }
    }
}

impl Recorder {
    /// Records the time from `since` to now: one clock read, no allocation, no failure.
    #[inline]
    pub fn record_since(&mut self, since: Instant) {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.interval.saturating_record(ns);
    }

    /// Values recorded so far, dumped or not.
    pub fn len(&self) -> u64 {
        self.interval.len() + self.total.len()
    }

    /// Nothing recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every value recorded so far, dumped or not, in `/metrics`' fixed buckets (each counted at
    /// the highest value its HdrHistogram counter stands for, so within 0.1 % of its bucket's
    /// bound it may land one bucket up). Visits each histogram's counters once: tens of
    /// microseconds, run by the shard's publisher, never by a request.
    pub fn buckets(&self) -> Buckets {
        let mut buckets = Buckets::default();
        for histogram in [&self.interval, &self.total] {
            for v in histogram.iter_recorded() {
                buckets.record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        buckets
    }

    /// Ends the interval: its histogram is added into the cumulative one and emptied.
    fn roll(&mut self) {
        self.total
            .add(&self.interval)
            .expect("both histograms have the same bounds");
        self.interval.reset();
    }
}

/// The time every shard's `.hlog` counts from, taken once at start-up.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// As written in the log header (StartTime, BaseTime).
    wall: SystemTime,
    /// The same moment on the monotonic clock, from which interval starts are measured.
    clock: Instant,
}

impl Origin {
    fn now() -> Origin {
        Origin {
            wall: SystemTime::now(),
            clock: Instant::now(),
        }
    }
}

/// A file in the dump directory could not be created or written at start-up.
#[derive(Debug)]
pub struct DumpError {
    /// The directory or file.
    pub path: PathBuf,
    /// What the system said.
    pub error: io::Error,
}

/// `DIR/shard-N.hgrm`.
pub fn hgrm_path(dir: &Path, shard: usize) -> PathBuf {
    dir.join(format!("shard-{shard}.hgrm"))
}

/// `DIR/shard-N.hlog`.
pub fn hlog_path(dir: &Path, shard: usize) -> PathBuf {
    dir.join(format!("shard-{shard}.hlog"))
}

/// The first comment of a shard's `.hlog`: what the values are, and in which unit.
fn hlog_comment(shard: usize) -> String {
    format!(
        "ticketd shard {shard}: service time in nanoseconds, from receiving an input to its \
         responses being ready to send; Interval_Max in milliseconds"
    )
}

/// Start-up, before any shard runs: creates `dir` if missing and every shard's `.hlog` with its
/// header (replacing a previous run's), so an unwritable directory fails the start.
pub fn prepare(dir: &Path, shards: usize) -> Result<Origin, DumpError> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |error| DumpError { path, error }
    };
    std::fs::create_dir_all(dir).map_err(fail(dir))?;
    let origin = Origin::now();
    for shard in 0..shards {
        let path = hlog_path(dir, shard);
        let mut header = Vec::new();
        hlog::write_header(&mut header, &hlog_comment(shard), origin.wall)
            .expect("writing to a Vec cannot fail");
        File::create(&path)
            .and_then(|mut file| file.write_all(&header))
            .map_err(fail(&path))?;
    }
    Ok(origin)
}

/// One shard's dump files, opened on its thread.
pub(crate) struct Dump {
    /// This shard's number.
    shard: usize,
    /// `shard-N.hgrm`, replaced at each dump.
    hgrm: PathBuf,
    /// The temporary file renamed over `hgrm`.
    hgrm_tmp: PathBuf,
    /// `shard-N.hlog`, appended to (its header was written by [`prepare`]).
    hlog: LineWriter<File>,
    /// When the log's time starts.
    origin: Origin,
}

impl Dump {
    /// Opens shard `shard`'s `.hlog`, which [`prepare`] created.
    pub(crate) fn open(dir: &Path, shard: usize, origin: Origin) -> io::Result<Dump> {
        let path = hlog_path(dir, shard);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Dump {
            shard,
            hgrm: hgrm_path(dir, shard),
            hgrm_tmp: dir.join(format!(".shard-{shard}.hgrm.tmp")),
            hlog: LineWriter::with_capacity(HLOG_LINE_BYTES, file),
            origin,
        })
    }

    /// The shard's dump task: dumps every `period` (never when it is zero), and once more when
    /// `stop` is signalled (or its sender dropped), then returns.
    pub(crate) async fn run(
        self,
        recorder: &RefCell<Recorder>,
        period: Duration,
        stop: LocalReceiver<()>,
    ) {
        let Dump {
            shard,
            hgrm,
            hgrm_tmp,
            mut hlog,
            origin,
        } = self;
        let mut serializer = V2DeflateSerializer::new();
        let mut log = match hlog::begin(&mut hlog, &mut serializer, NS_PER_MS) {
            Ok(log) => Some(log),
            Err(error) => {
                tracing::warn!(shard, %error, "cannot write the latency log; .hgrm only");
                None
            }
        };
        let mut interval_start = origin.clock;
        loop {
            let stopping = if period.is_zero() {
                stop.recv().await;
                true
            } else {
                futures_lite::future::or(
                    async {
                        glommio::timer::sleep(period).await;
                        false
                    },
                    async {
                        stop.recv().await;
                        true
                    },
                )
                .await
            };
            let now = Instant::now();
            let mut recorder = recorder.borrow_mut();
            if let Some(log) = log.as_mut() {
                let start = interval_start.saturating_duration_since(origin.clock);
                let length = now.saturating_duration_since(interval_start);
                if let Err(error) = hlog::write_interval(log, &recorder.interval, start, length) {
                    tracing::warn!(shard, %error, "cannot append to the latency log");
                }
            }
            recorder.roll();
            interval_start = now;
            let text = hgrm::format(&recorder.total, hgrm::TICKS_PER_HALF_DISTANCE, NS_PER_MS);
            drop(recorder);
            let written =
                std::fs::write(&hgrm_tmp, text).and_then(|()| std::fs::rename(&hgrm_tmp, &hgrm));
            if let Err(error) = written {
                tracing::warn!(shard, %error, path = %hgrm.display(), "cannot write the latency histogram");
            }
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_saturate_and_roll_into_the_total() {
        let mut r = Recorder::default();
        assert!(r.is_empty());
        r.interval.saturating_record(0);
        r.interval.saturating_record(1_500);
        r.interval.saturating_record(u64::MAX);
        r.record_since(Instant::now());
        assert_eq!((r.interval.len(), r.total.len()), (4, 0));
        assert_eq!(
            r.interval.max(),
            r.interval.highest_equivalent(HIGHEST_TRACKABLE_NS)
        );
        r.roll();
        assert_eq!((r.interval.len(), r.total.len(), r.len()), (0, 4, 4));
        r.interval.saturating_record(2_000);
        r.roll();
        assert_eq!(r.total.len(), 5);
        r.interval.saturating_record(40_000);
        let b = r.buckets();
        assert_eq!(b.count(), 6, "the interval and the total");
        let at_50us = b.cumulative().find(|&(le, _)| le == "0.00005").unwrap().1;
        assert_eq!(
            at_50us, 5,
            "0, 1.5 µs, the probe, 2 µs and 40 µs; not the saturated one"
        );
    }

    #[test]
    fn the_histogram_is_exact_to_three_digits() {
        let h = histogram();
        assert_eq!(h.sigfig(), SIGNIFICANT_DIGITS);
        assert!(h.high() >= HIGHEST_TRACKABLE_NS);
        // 2,345 ns and 2,346 ns land in different counters; 1,000,000 ns keeps 0.1 %.
        assert!(!h.equivalent(2_345, 2_346));
        assert!(h.highest_equivalent(1_000_000) - h.lowest_equivalent(1_000_000) <= 1_000);
    }

    #[test]
    fn prepare_writes_one_header_per_shard_and_fails_on_a_file_in_the_way() {
        let dir = std::env::temp_dir().join(format!("ticketd-latency-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nested = dir.join("a/b");
        prepare(&nested, 2).expect("creates the directory");
        for shard in 0..2 {
            let text = std::fs::read_to_string(hlog_path(&nested, shard)).unwrap();
            assert!(
                text.starts_with(&format!(
                    "#[ticketd shard {shard}: service time in nanoseconds"
                )),
                "{text}"
            );
            assert!(text.contains("#[Histogram log format version 1.3]\n"));
        }
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        let error = prepare(&file.join("sub"), 1).expect_err("a file is not a directory");
        assert_eq!(error.path, file.join("sub"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

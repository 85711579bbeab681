//! The `.hlog` interval log: HdrHistogram log format 1.3, as Java's `HistogramLogWriter` writes it
//! and `HistogramLogReader`, `HistogramLogProcessor` and the Rust crate's `IntervalLogIterator`
//! read it.
//!
//! ```text
//! #[ticket-bench run "nginx", series available: latency in microseconds from the intended send time]
//! #[Histogram log format version 1.3]
//! #[StartTime: 1795248870.123 (seconds since epoch), Sat Nov 21 08:14:30 UTC 2026]
//! #[BaseTime: 1795248870.123 (seconds since epoch)]
//! "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
//! #[MaxValueDivisor: 1000.000]
//! 0.000,1.000,0.639,HISTFAAAAEV42pJpmSzMwMDAwQABzFCaEUzOmNZg...
//! ```
//!
//! Each line is one interval: its start in seconds after BaseTime (the end of the warm-up), its
//! length, its largest value in ms, and the histogram V2-encoded, deflated and base64'd by the
//! hdrhistogram crate (`V2DeflateSerializer` through `IntervalLogWriter`). That writer adds the
//! `MaxValueDivisor` comment to say the max column is ms (of µs values here); readers skip comments.
//! Java's `HistogramLogProcessor` assumes nanoseconds unless told `-outputValueUnitRatio 1000`.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogWriter, IntervalLogWriterBuilder};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::utc::Utc;

/// The log format version we write (HdrHistogram's current one).
pub const LOG_FORMAT_VERSION: &str = "1.3";

/// An interval log writer over `W`.
pub type LogWriter<'a, W> = IntervalLogWriter<'a, 'a, W, V2DeflateSerializer>;

/// Writes the header lines: a comment naming what is logged, the version, StartTime and
/// BaseTime (both `base`, the end of the warm-up), and the column legend.
pub fn write_header(out: &mut impl Write, comment: &str, base: SystemTime) -> io::Result<()> {
    let secs = base
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    writeln!(out, "#[{comment}]")?;
    writeln!(out, "#[Histogram log format version {LOG_FORMAT_VERSION}]")?;
    writeln!(
        out,
        "#[StartTime: {secs:.3} (seconds since epoch), {}]",
        Utc::of(base).java()
    )?;
    writeln!(out, "#[BaseTime: {secs:.3} (seconds since epoch)]")?;
    writeln!(
        out,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )
}

/// Starts writing interval lines after the header. `unit_ratio` is the recorded values per
/// millisecond (1000 for µs, 1e6 for ns): the `Interval_Max` column is in ms, and the writer adds
/// the `MaxValueDivisor` comment that says so.
pub fn begin<'a, W: Write>(
    out: &'a mut W,
    serializer: &'a mut V2DeflateSerializer,
    unit_ratio: f64,
) -> io::Result<LogWriter<'a, W>> {
    IntervalLogWriterBuilder::new()
        .with_max_value_divisor(unit_ratio)
        .begin_log_with(out, serializer)
}

/// Writes one interval: `start` after BaseTime, `length` long.
pub fn write_interval<W: Write>(
    log: &mut LogWriter<'_, W>,
    h: &Histogram<u64>,
    start: Duration,
    length: Duration,
) -> io::Result<()> {
    log.write_histogram(h, start, length, None)
        .map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    /// The load generator's latency histogram: 1 µs to 60 s, 3 significant digits.
    fn latency_histogram() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
    }

    #[test]
    fn round_trip() {
        let base = UNIX_EPOCH + Duration::from_millis(1_795_248_870_123);
        let mut out = Vec::new();
        write_header(&mut out, "test", base).unwrap();
        let mut serializer = V2DeflateSerializer::new();
        let mut h = latency_histogram();
        {
            let mut log = begin(&mut out, &mut serializer, crate::hgrm::US_PER_MS).unwrap();
            for i in 0..3u64 {
                h.reset();
                for v in 0..=i * 100 {
                    h.record(100 + v).unwrap();
                }
                write_interval(&mut log, &h, Duration::from_secs(i), Duration::from_secs(1))
                    .unwrap();
            }
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "#[test]\n#[Histogram log format version 1.3]\n\
             #[StartTime: 1795248870.123 (seconds since epoch), Sat Nov 21 08:14:30 UTC 2026]\n\
             #[BaseTime: 1795248870.123 (seconds since epoch)]\n\
             \"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n"
        ));
        let mut counts = Vec::new();
        let mut times = Vec::new();
        for entry in IntervalLogIterator::new(text.as_bytes()) {
            match entry.unwrap() {
                LogEntry::StartTime(t) | LogEntry::BaseTime(t) => {
                    assert_eq!(t, Duration::from_millis(1_795_248_870_123))
                }
                LogEntry::Interval(i) => {
                    let bytes = STANDARD.decode(i.encoded_histogram()).unwrap();
                    let h: Histogram<u64> = Deserializer::new()
                        .deserialize(&mut bytes.as_slice())
                        .unwrap();
                    counts.push(h.len());
                    times.push(i.start_timestamp().as_secs());
                    assert_eq!(i.max(), h.max() as f64 / 1000.0);
                }
            }
        }
        assert_eq!(counts, vec![1, 101, 201]);
        assert_eq!(times, vec![0, 1, 2]);
    }
}

//! The `.hgrm` writer against HdrHistogram's reference implementation, and read back.

mod support;

use hdrhistogram::Histogram;
use ticket_bench::hgrm::{format, TICKS_PER_HALF_DISTANCE, US_PER_MS};
use ticket_bench::record::latency_histogram;

/// The values `fixtures/JavaHgrm.java` records (keep the two in step).
fn values(kind: &str) -> Vec<u64> {
    if kind == "small" {
        return vec![1, 140, 140, 141, 2500, 59_000_000];
    }
    let mut x: u64 = 1;
    (0..100_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) % 1_000_000;
            let mut v = 20 + r % 2000;
            if r.is_multiple_of(997) {
                v += r * 50;
            }
            v
        })
        .collect()
}

fn histogram(kind: &str) -> Histogram<u64> {
    let mut h = latency_histogram();
    for v in values(kind) {
        h.record(v).unwrap();
    }
    h
}

/// Our `.hgrm` is byte for byte what Java's `outputPercentileDistribution(out, 5, 1000.0)` prints
/// for the same values (fixtures made by `fixtures/JavaHgrm.java` with HdrHistogram 2.1.11).
#[test]
fn matches_java_byte_for_byte() {
    for (kind, golden) in [
        ("lcg", include_str!("fixtures/java-lcg.hgrm")),
        ("small", include_str!("fixtures/java-small.hgrm")),
    ] {
        let ours = format(&histogram(kind), TICKS_PER_HALF_DISTANCE, US_PER_MS);
        // The first differing line, for a readable failure...
        for (n, (a, b)) in ours.lines().zip(golden.lines()).enumerate() {
            assert_eq!(a, b, "{kind}: line {}", n + 1);
        }
        // ...then the whole text, which `lines()` does not see: line endings, a final newline,
        // lines beyond the shorter text.
        assert_eq!(ours, golden, "{kind}: the texts differ beyond their lines");
    }
}

/// Parsed back, every row names the histogram's value at that percentile and the count at or
/// below it, and the footer its mean, max and count.
#[test]
fn parses_back_to_the_same_percentiles() {
    for kind in ["lcg", "small"] {
        let h = histogram(kind);
        let parsed = support::parse_hgrm(&format(&h, TICKS_PER_HALF_DISTANCE, US_PER_MS));
        assert!(parsed.rows.len() > 10, "{kind}");
        let total = h.len() as f64;
        for row in &parsed.rows {
            // Values are whole µs, so three decimals of ms are exact.
            let value_us = (row.value_ms * 1000.0).round() as u64;
            let level = row.percentile;
            // The row's value is the first bucket whose cumulative count reaches the level.
            let at_or_below = h.count_between(0, value_us);
            let below = at_or_below - h.count_at(value_us);
            assert_eq!(row.total_count, at_or_below, "{kind}: count at {level}");
            assert_eq!(value_us, h.highest_equivalent(value_us), "{kind}: {level}");
            assert!(
                at_or_below as f64 / total >= level - 1e-12,
                "{kind}: {level}"
            );
            assert!(
                below as f64 / total < level + 1e-12 || below == 0,
                "{kind}: {level}"
            );
            if let Some(inverse) = row.inverse {
                assert!((inverse - 1.0 / (1.0 - level)).abs() <= 0.005 + 1e-9 * inverse);
            }
        }
        let last = parsed.rows.last().unwrap();
        assert_eq!((last.percentile, last.inverse), (1.0, None));
        assert_eq!(parsed.total_count, h.len());
        assert_eq!(parsed.max_ms, h.max() as f64 / 1000.0);
        assert!((parsed.mean_ms - h.mean() / 1000.0).abs() < 0.001);
        // The levels rise, the counts never fall.
        for w in parsed.rows.windows(2) {
            assert!(w[0].percentile < w[1].percentile && w[0].total_count <= w[1].total_count);
        }
        // The summary's percentiles lie between the rows around them.
        for q in [0.5, 0.9, 0.99, 0.999, 0.9999] {
            let v = h.value_at_quantile(q) as f64 / 1000.0;
            let above = parsed.rows.iter().find(|r| r.percentile >= q).unwrap();
            let below = parsed
                .rows
                .iter()
                .rev()
                .find(|r| r.percentile <= q)
                .unwrap();
            assert!(below.value_ms <= v && v <= above.value_ms, "{kind}: {q}");
        }
    }
}

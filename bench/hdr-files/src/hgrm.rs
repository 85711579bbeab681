//! The `.hgrm` percentile distribution: byte for byte the text that Java HdrHistogram's
//! `histogram.outputPercentileDistribution(out, 5, 1000.0)` prints, which the HdrHistogram
//! plotter (`plotFiles.html`) and wrk2 users read.
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        0.143 0.000000000000          1           1.00
//!        ...
//!        4.803 1.000000000000      10000
//! #[Mean    =        0.190, StdDeviation   =        0.121]
//! #[Max     =        4.803, Total count    =        10000]
//! #[Buckets =           16, SubBuckets     =         2048]
//! ```
//!
//! The rows follow Java's `PercentileIterator`: percentile levels step by `100 / ticks` where
//! `ticks = 5 * 2^(floor(log2(100 / (100 - level))) + 1)`, so there are ten rows per halving of the
//! distance to 100 %; each row names the highest value equivalent to the first bucket that reaches
//! the level. Mean and standard deviation use each bucket's median-equivalent value, summed then
//! divided, as Java does (the Rust crate divides term by term, which differs in the last digits).
//! Values are divided by the unit ratio (1000: µs recorded, ms printed).

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Rows per halving of the distance to 100 %: the value every HdrHistogram tool and wrk2 use.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Recorded microseconds per printed millisecond.
pub const US_PER_MS: f64 = 1000.0;

/// One row of the distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// The highest value equivalent to the bucket that reached the level (recorded units).
    pub value: u64,
    /// The percentile level iterated to, 0..=100.
    pub percentile: f64,
    /// Values at or below `value`.
    pub total_count: u64,
}

/// The rows Java's percentile iterator yields: the last one is at exactly 100.
pub fn rows(h: &Histogram<u64>, ticks_per_half_distance: u32) -> Vec<Row> {
    let total = h.len();
    let mut out = Vec::new();
    if total == 0 {
        return out;
    }
    let mut level = 0.0f64;
    let mut count = 0u64;
    for v in h.iter_recorded() {
        count += v.count_at_value();
        let value = h.highest_equivalent(v.value_iterated_to());
        if count == total {
            // The last bucket: one row at the current level, then Java's extra step to 100 %.
            out.push(Row {
                value,
                percentile: level,
                total_count: count,
            });
            out.push(Row {
                value,
                percentile: 100.0,
                total_count: count,
            });
            break;
        }
        while (100.0 * count as f64) / total as f64 >= level {
            out.push(Row {
                value,
                percentile: level,
                total_count: count,
            });
            level += 100.0 / reporting_ticks(level, ticks_per_half_distance);
        }
    }
    out
}

/// Java's `percentileTicksPerHalfDistance * 2^((long)(log(100/(100-level))/log(2)) + 1)`.
fn reporting_ticks(level: f64, ticks_per_half_distance: u32) -> f64 {
    let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as i64 + 1;
    let power = u32::try_from(halvings)
        .ok()
        .and_then(|h| 1i64.checked_shl(h))
        .filter(|&p| p > 0)
        .unwrap_or(i64::MAX);
    (i64::from(ticks_per_half_distance).saturating_mul(power)) as f64
}

/// Java's `getMean()`: bucket medians times counts, summed, divided by the count.
pub fn mean(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    let total: f64 = h
        .iter_recorded()
        .map(|v| h.median_equivalent(v.value_iterated_to()) as f64 * v.count_at_value() as f64)
        .sum();
    total / h.len() as f64
}

/// Java's `getStdDeviation()`.
pub fn std_deviation(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    let mean = mean(h);
    let total: f64 = h
        .iter_recorded()
        .map(|v| {
            let deviation = h.median_equivalent(v.value_iterated_to()) as f64 - mean;
            deviation * deviation * v.count_since_last_iteration() as f64
        })
        .sum();
    (total / h.len() as f64).sqrt()
}

/// Java's `subBucketCount`: `2^ceil(log2(2 * 10^digits))`.
pub fn sub_bucket_count(significant_digits: u8) -> u32 {
    (2 * 10u32.pow(u32::from(significant_digits))).next_power_of_two()
}

/// The whole `.hgrm` text of `h`, values divided by `unit_ratio`.
pub fn format(h: &Histogram<u64>, ticks_per_half_distance: u32, unit_ratio: f64) -> String {
    let d = usize::from(h.sigfig());
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for row in rows(h, ticks_per_half_distance) {
        let value = java_fixed(row.value as f64 / unit_ratio, d);
        let fraction = row.percentile / 100.0;
        let _ = write!(
            out,
            "{value:>12} {:>2} {:10}",
            java_fixed(fraction, 12),
            row.total_count
        );
        if row.percentile != 100.0 {
            let _ = write!(out, " {:>14}", java_fixed(1.0 / (1.0 - fraction), 2));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12}, StdDeviation   = {:>12}]",
        java_fixed(mean(h) / unit_ratio, d),
        java_fixed(std_deviation(h) / unit_ratio, d)
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12}, Total count    = {:12}]",
        java_fixed(h.max() as f64 / unit_ratio, d),
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    );
    out
}

/// Java's `String.format("%.{places}f", v)`: Java rounds the shortest decimal that reads back as
/// `v` half up, where Rust rounds the exact binary value half to even. They differ on ties such
/// as 0.9997802734375 (a percentile level) at 12 places: Java prints ...438, Rust ...437.
pub fn java_fixed(v: f64, places: usize) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's Display of an f64 is the shortest round-trip decimal, never in exponent form.
    let shortest = format!("{}", v.abs());
    let (int, frac) = shortest.split_once('.').unwrap_or((&shortest, ""));
    let mut digits: Vec<u8> = int.bytes().collect();
    digits.extend(frac.bytes().chain(std::iter::repeat(b'0')).take(places));
    if frac.len() > places && frac.as_bytes()[places] >= b'5' {
        // Round up, carrying through nines.
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - places;
    let mut out = String::with_capacity(digits.len() + 2);
    if v.is_sign_negative() && digits.iter().any(|&d| d != b'0') {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&digits[..split]).expect("ASCII digits"));
    if places > 0 {
        out.push('.');
        out.push_str(std::str::from_utf8(&digits[split..]).expect("ASCII digits"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The load generator's latency histogram: 1 µs to 60 s, 3 significant digits.
    fn latency_histogram() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()
    }

    #[test]
    fn java_rounding() {
        let table: &[(f64, usize, &str)] = &[
            (0.9997802734375, 12, "0.999780273438"),
            (0.999926757812500, 12, "0.999926757813"),
            (0.5, 12, "0.500000000000"),
            (1.125, 2, "1.13"),
            (1.0 / 0.9, 2, "1.11"),
            (25.455, 3, "25.455"),
            (0.0005, 3, "0.001"),
            (1.0005, 3, "1.001"),
            (9.9996, 3, "10.000"),
            (999.9999, 3, "1000.000"),
            (0.0, 3, "0.000"),
            (123456789.0, 0, "123456789"),
            (1e-7, 3, "0.000"),
            (f64::INFINITY, 2, "Infinity"),
        ];
        for &(v, places, want) in table {
            assert_eq!(java_fixed(v, places), want, "{v} to {places}");
        }
    }

    #[test]
    fn empty() {
        let h = latency_histogram();
        assert_eq!(
            format(&h, 5, 1000.0),
            "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
             #[Mean    =        0.000, StdDeviation   =        0.000]\n\
             #[Max     =        0.000, Total count    =            0]\n\
             #[Buckets =           16, SubBuckets     =         2048]\n"
        );
    }

    #[test]
    fn one_value() {
        let mut h = latency_histogram();
        h.record(1500).unwrap();
        let text = format(&h, 5, 1000.0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2],
            "       1.500 0.000000000000          1           1.00"
        );
        assert_eq!(lines[3], "       1.500 1.000000000000          1");
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn levels_step_like_java() {
        // With every value distinct the levels are 0, 10, ..., 50, 55, ..., 75, 77.5, ...
        let mut h = latency_histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let levels: Vec<f64> = rows(&h, 5).iter().map(|r| r.percentile).collect();
        assert_eq!(
            &levels[..8],
            &[0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 55.0, 60.0]
        );
        assert_eq!(levels[11], 77.5);
        assert_eq!(*levels.last().unwrap(), 100.0);
        assert_eq!(sub_bucket_count(3), 2048);
        assert_eq!(sub_bucket_count(2), 256);
    }
}

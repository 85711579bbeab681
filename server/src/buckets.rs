//! A histogram with fixed Prometheus buckets (`le` in seconds), recorded in nanoseconds: the
//! shape `/metrics` exposes for journal commit times and service times. A leaf: it imports
//! nothing, so the journal's pure side ([`crate::durability::commits`]) and the routes share it
//! without depending on each other.
//!
//! Recording costs a search over [`BOUNDS_NS`] (17 bounds) and two additions; nothing allocates.

/// The upper bounds of the buckets, in nanoseconds: 10 µs to 2.5 s, in the 1-2.5-5 steps
/// Prometheus' own defaults use. A service time is microseconds and an O_DSYNC group commit tens
/// of microseconds to milliseconds; values above the last bound land in `+Inf` only.
pub const BOUNDS_NS: [u64; 17] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
];

/// [`BOUNDS_NS`] as the `le` label values, in seconds (written once here rather than formatted
/// per scrape, so the text is exactly what a reader expects: no `1e-05`).
pub const BOUNDS_LE: [&str; 17] = [
    "0.00001", "0.000025", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
    "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
];

/// Counts per bucket (not cumulative; the last is above every bound) and the sum of the values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    /// `counts[i]`: values in `(BOUNDS_NS[i-1], BOUNDS_NS[i]]`; the last: above the last bound.
    counts: [u64; BOUNDS_NS.len() + 1],
    /// The sum of every value recorded, in nanoseconds (saturating: 584 years of them).
    sum_ns: u64,
}

impl Buckets {
    /// Records one value.
    pub fn record_ns(&mut self, ns: u64) {
        self.record_n(ns, 1);
    }

    /// Records `n` values equal to `ns`.
    pub fn record_n(&mut self, ns: u64, n: u64) {
        let index = BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.counts[index] += n;
        self.sum_ns = self.sum_ns.saturating_add(ns.saturating_mul(n));
    }

    /// Adds `other`'s values into these.
    pub fn add(&mut self, other: &Buckets) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the values, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }

    /// Each bound's `le` label with the number of values at or below it (cumulative, as
    /// Prometheus' `_bucket` series are), without `+Inf` (which is [`Buckets::count`]).
    pub fn cumulative(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        BOUNDS_LE
            .iter()
            .zip(&self.counts)
            .scan(0, |sum, (&le, &n)| {
                *sum += n;
                Some((le, *sum))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labels_are_the_bounds() {
        for (&ns, le) in BOUNDS_NS.iter().zip(BOUNDS_LE) {
            let seconds: f64 = le.parse().unwrap();
            assert_eq!((seconds * 1e9).round() as u64, ns, "{le}");
        }
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn values_land_at_or_below_their_bound() {
        // (value in ns, the first `le` whose cumulative count includes it)
        let table: &[(u64, Option<&str>)] = &[
            (0, Some("0.00001")),
            (10_000, Some("0.00001")),
            (10_001, Some("0.000025")),
            (999_999, Some("0.001")),
            (2_500_000_000, Some("2.5")),
            (2_500_000_001, None),
            (u64::MAX, None),
        ];
        for &(ns, first) in table {
            let mut b = Buckets::default();
            b.record_ns(ns);
            assert_eq!(b.count(), 1);
            let found = b.cumulative().find(|&(_, n)| n == 1).map(|(le, _)| le);
            assert_eq!(found, first, "{ns} ns");
        }
    }

    #[test]
    fn adding_and_summing() {
        let mut a = Buckets::default();
        a.record_n(50_000, 3);
        let mut b = Buckets::default();
        b.record_ns(1_000_000_000);
        a.add(&b);
        assert_eq!(a.count(), 4);
        assert!((a.sum_seconds() - 1.00015).abs() < 1e-12);
        let cumulative: Vec<_> = a.cumulative().collect();
        assert_eq!(cumulative.len(), BOUNDS_NS.len());
        assert_eq!(cumulative[2], ("0.00005", 3));
        assert_eq!(cumulative.last(), Some(&("2.5", 4)));
    }
}

//! UTC calendar dates, computed from `SystemTime` without a time-zone database: the `.hlog`
//! header's StartTime in Java's `Date.toString()` form, and the dates of the load generator's
//! run folders and summaries.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    /// Year.
    pub year: i64,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of the month, 1..=31.
    pub day: u32,
    /// Hour, minute, second.
    pub hms: (u32, u32, u32),
    /// Milliseconds.
    pub millis: u32,
    /// Day of the week, 0 = Sunday.
    pub weekday: u32,
}

impl Utc {
    /// The UTC calendar time of `t` (times before 1970 read as 1970).
    pub fn of(t: SystemTime) -> Utc {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs() as i64;
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Utc {
            year,
            month,
            day,
            hms: (rem / 3600, rem / 60 % 60, rem % 60),
            millis: since.subsec_millis(),
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }

    /// `2026-11-21`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `2026-11-21T08:14:30.123Z`.
    pub fn rfc3339(&self) -> String {
        let (h, m, s) = self.hms;
        format!("{}T{h:02}:{m:02}:{s:02}.{:03}Z", self.date(), self.millis)
    }

    /// Java's `Date.toString()` in UTC, as HdrHistogram logs write it: `Sat Nov 21 08:14:30 UTC 2026`.
    pub fn java(&self) -> String {
        const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (h, m, s) = self.hms;
        format!(
            "{} {} {:02} {h:02}:{m:02}:{s:02} UTC {}",
            DAYS[self.weekday as usize],
            MONTHS[self.month as usize - 1],
            self.day,
            self.year
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn calendar() {
        let table: &[(u64, &str, &str)] = &[
            (
                0,
                "1970-01-01T00:00:00.000Z",
                "Thu Jan 01 00:00:00 UTC 1970",
            ),
            (
                951_782_400,
                "2000-02-29T00:00:00.000Z",
                "Tue Feb 29 00:00:00 UTC 2000",
            ),
            (
                1_795_248_870,
                "2026-11-21T08:14:30.000Z",
                "Sat Nov 21 08:14:30 UTC 2026",
            ),
            (
                4_102_444_799,
                "2099-12-31T23:59:59.000Z",
                "Thu Dec 31 23:59:59 UTC 2099",
            ),
        ];
        for &(secs, rfc, java) in table {
            let u = Utc::of(UNIX_EPOCH + Duration::from_secs(secs));
            assert_eq!(u.rfc3339(), rfc);
            assert_eq!(u.java(), java);
        }
        let u = Utc::of(UNIX_EPOCH + Duration::from_millis(1_500));
        assert_eq!(u.rfc3339(), "1970-01-01T00:00:01.500Z");
    }
}

//! The `Date` header value (RFC 9110 §5.6.7, IMF-fixdate), formatted without allocation.
//!
//! Servers format it once a second and pass it to every response, as hyper and nginx do: a
//! clock read and a format per response would cost more than the rest of the head.

use std::time::{SystemTime, UNIX_EPOCH};

/// An IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`: always 29 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpDate([u8; 29]);

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

impl HttpDate {
    /// The date for a point in time, truncated to the second. Times before 1970 read as 1970.
    pub fn from_system_time(t: SystemTime) -> Self {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self::from_unix_seconds(secs)
    }

    /// The date for seconds since the Unix epoch.
    pub fn from_unix_seconds(secs: u64) -> Self {
        let days = secs / 86_400;
        let day_secs = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        let mut out = [0u8; 29];
        out[0..3].copy_from_slice(DAYS[(days % 7) as usize]);
        out[3..5].copy_from_slice(b", ");
        two_digits(&mut out[5..7], day);
        out[7] = b' ';
        out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
        out[11] = b' ';
        let year = year.min(9999);
        two_digits(&mut out[12..14], year / 100);
        two_digits(&mut out[14..16], year % 100);
        out[16] = b' ';
        two_digits(&mut out[17..19], day_secs / 3600);
        out[19] = b':';
        two_digits(&mut out[20..22], day_secs / 60 % 60);
        out[22] = b':';
        two_digits(&mut out[23..25], day_secs % 60);
        out[25..29].copy_from_slice(b" GMT");
        HttpDate(out)
    }

    /// The date for now.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// The 29 bytes of the header value.
    pub fn as_bytes(&self) -> &[u8; 29] {
        &self.0
    }
}

fn two_digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31): Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html>), for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let table: &[(u64, &str)] = &[
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_795_219_199, "Fri, 20 Nov 2026 23:59:59 GMT"),
            (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 GMT"),
        ];
        for &(secs, want) in table {
            assert_eq!(
                std::str::from_utf8(HttpDate::from_unix_seconds(secs).as_bytes()).unwrap(),
                want
            );
        }
    }
}

//! Where and when a run happened: host name, CPUs, kernel, git commit, the exact command line, and
//! UTC dates in the forms our files use. A figure without its setup cannot be reproduced.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The machine and source tree a run was made on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Host name (`/proc/sys/kernel/hostname`).
    pub host: String,
    /// CPUs online on the machine.
    pub cpus_online: usize,
    /// CPUs this process may run on (its affinity mask, e.g. 1 under `taskset -c 0`).
    pub cpus_allowed: usize,
    /// Kernel release, as `uname -r` prints it.
    pub kernel: String,
    /// `git rev-parse HEAD` in the current directory, if it is a git checkout.
    pub git_commit: Option<String>,
    /// Whether that checkout had uncommitted changes to tracked files.
    pub git_dirty: Option<bool>,
}

impl Provenance {
    /// Reads the facts of this machine and the current directory's checkout.
    pub fn collect() -> Provenance {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into())
        };
        let git_commit = git(&["rev-parse", "HEAD"]);
        let git_dirty = git_commit
            .as_ref()
            .and_then(|_| git(&["status", "--porcelain", "--untracked-files=no"]))
            .map(|s| !s.is_empty())
            .or(git_commit.as_ref().map(|_| false));
        Provenance {
            host: read("/proc/sys/kernel/hostname"),
            cpus_online: cpus_online(),
            cpus_allowed: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease"),
            git_commit,
            git_dirty,
        }
    }
}

/// A git command's trimmed stdout, if git ran and succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cpus_online() -> usize {
    // SAFETY: sysconf takes no pointers and only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// The command line, each argument shell-quoted when it needs to be, so it can be pasted back.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A name made safe for a folder: anything but `[A-Za-z0-9._-]` becomes `-`.
pub fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `base`, or `base-2`, `base-3`... whichever does not exist yet.
pub fn fresh_dir(base: &Path) -> std::path::PathBuf {
    if !base.exists() {
        return base.to_path_buf();
    }
    (2..)
        .map(|n| {
            let mut name = base.as_os_str().to_owned();
            name.push(format!("-{n}"));
            std::path::PathBuf::from(name)
        })
        .find(|p| !p.exists())
        .expect("some suffix is free")
}

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

    #[test]
    fn quoting() {
        let args = [
            "ticket-bench",
            "run",
            "--server-options",
            "ticketd --shards 1",
            "it's",
        ];
        assert_eq!(
            command_line(args.map(String::from)),
            r"ticket-bench run --server-options 'ticketd --shards 1' 'it'\''s'"
        );
        assert_eq!(file_safe("my host/label 1"), "my-host-label-1");
    }

    #[test]
    fn facts() {
        let p = Provenance::collect();
        assert!(p.cpus_online >= 1 && p.cpus_allowed >= 1);
        assert!(!p.kernel.is_empty());
    }
}

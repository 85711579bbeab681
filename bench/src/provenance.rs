//! Where and when a run happened: host name, CPUs, kernel, git commit, the exact command line, and
//! UTC dates in the forms our files use. A figure without its setup cannot be reproduced.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;

/// UTC dates live with the `.hlog` writer, whose header needs them; re-exported for the run's
/// folder names and summaries.
pub use hdr_files::utc::Utc;

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

#[cfg(test)]
mod tests {
    use super::*;

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

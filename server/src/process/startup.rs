//! Start-up: which CPUs the shards run on, and the checks that turn a doomed start into one line
//! that names the cause and the fix (never a panic trace).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};

use crate::config::Config;

/// The RLIMIT_MEMLOCK one glommio executor needs: glommio 0.9 refuses to start an executor below
/// 512 KiB (`MemLockLimit(have/524288)`), because it locks its io_uring rings and I/O buffers.
pub const GLOMMIO_MEMLOCK_BYTES: u64 = 512 * 1024;

/// Why the server did not start. `Display` is one line: the cause, then the fix.
#[derive(Debug)]
pub enum StartError {
    /// Another process holds the address.
    PortInUse(SocketAddr),
    /// Binding failed for another reason (address not local, permission for a low port...).
    Bind(SocketAddr, io::Error),
    /// io_uring cannot be used by this process.
    IoUringUnavailable(String),
    /// RLIMIT_MEMLOCK is below what glommio needs and could not be raised.
    MemLockTooLow {
        /// The soft limit in bytes.
        have: u64,
        /// The hard limit in bytes.
        hard: u64,
    },
    /// `--cpus` names a CPU this process may not run on.
    CpuNotAllowed {
        /// The CPU asked for.
        cpu: usize,
        /// The CPUs the process may use, as a list.
        allowed: String,
    },
    /// The `--latency-dump` directory or a file in it cannot be created or written.
    LatencyDump(crate::app::latency::DumpError),
    /// An executor failed to start or stopped with an error.
    Executor(String),
    /// The data directory cannot be created, or another ticketd holds it.
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },
    /// The journal cannot be read or started (corruption names its file and offset).
    Journal(crate::durability::journal::JournalError),
    /// `--admin-token-file` cannot be read, or does not hold a usable token.
    AdminToken {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },
    /// A cluster node cannot reach its etcd cluster (`--cluster-etcd`), or its etcd thread
    /// cannot start.
    Cluster(String),
    /// Ticket mode: `VACANCY_URL`'s host does not resolve to an address.
    VacancyAddress {
        /// The URL as configured.
        url: String,
        /// Why it does not resolve.
        why: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Cluster(why) => write!(
                f,
                "cannot run as a cluster node: {why}"
            ),
            StartError::PortInUse(addr) => write!(
                f,
                "cannot listen on {addr}: the address is in use by another process; stop it or choose another --port (PORT)"
            ),
            StartError::Bind(addr, e) => write!(
                f,
                "cannot listen on {addr}: {e}; check --host (HOST) is an address of this machine, and ports below 1024 need CAP_NET_BIND_SERVICE"
            ),
            StartError::IoUringUnavailable(why) => write!(
                f,
                "io_uring is unavailable: {why}; ticketd needs Linux 5.10+ with io_uring enabled (sysctl kernel.io_uring_disabled=0, and a seccomp profile that allows io_uring_setup)"
            ),
            StartError::MemLockTooLow { have, hard } => write!(
                f,
                "RLIMIT_MEMLOCK is {have} bytes (hard limit {hard}), glommio needs at least {GLOMMIO_MEMLOCK_BYTES} per shard; raise it with `ulimit -l unlimited` or LimitMEMLOCK=infinity in the systemd unit"
            ),
            StartError::CpuNotAllowed { cpu, allowed } => write!(
                f,
                "--cpus (CPUS) names CPU {cpu}, but this process may only run on {allowed}; pick CPUs from that list"
            ),
            StartError::LatencyDump(e) => write!(
                f,
                "cannot write latency histograms to {}: {}; point --latency-dump (LATENCY_DUMP) at a directory ticketd may create and write",
                e.path.display(),
                e.error
            ),
            StartError::Executor(why) => write!(f, "a shard failed: {why}"),
            StartError::DataDir { path, why } => write!(
                f,
                "cannot use the data directory {}: {why}; point --data-dir (DATA_DIR) at a directory ticketd may create and write, used by no other ticketd",
                path.display()
            ),
            StartError::Journal(e) => write!(
                f,
                "the journal cannot be recovered: {e}; nothing was changed on disk — `ticketd journal inspect` lists the damage; restore the data directory from a backup, or start a new sale with `ticketd journal reset` (every sale in it would be forgotten)"
            ),
            StartError::AdminToken { path, why } => write!(
                f,
                "cannot use the admin token file {}: {why}; point --admin-token-file (ADMIN_TOKEN_FILE) at a file ticketd may read holding one token of 16 to 4096 visible ASCII characters",
                path.display()
            ),
            StartError::VacancyAddress { url, why } => write!(
                f,
                "--vacancy-url (VACANCY_URL) {url} does not resolve: {why}; give the vacancy service's address as http://host:port with a host this machine can resolve"
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// Ticket mode: the vacancy service's address, resolved once at start-up (the first address the
/// host resolves to). A name that does not resolve is a start-up error, not a 503 per purchase;
/// a vacancy service that is down is not (it may come up later).
pub fn vacancy_address(config: &Config) -> Result<Option<SocketAddr>, StartError> {
    use std::net::ToSocketAddrs;
    if config.mode != crate::config::Mode::Ticket {
        return Ok(None);
    }
    let fail = |why: String| StartError::VacancyAddress {
        url: config.vacancy_url.clone(),
        why,
    };
    (config.vacancy_host.as_str(), config.vacancy_port)
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .next()
        .map(Some)
        .ok_or_else(|| fail("no address".into()))
}

/// The admin listener's state, with `--admin-listen`: its token read from `--admin-token-file`
/// (made once and kept for the process), and what the journal said at start (`stock` in all,
/// `sold` before this run).
pub fn admin(
    config: &Config,
    stock: u64,
    sold: u64,
) -> Result<Option<crate::app::admin::Admin>, StartError> {
    let (Some(_), Some(path)) = (config.admin_listen, &config.admin_token_file) else {
        return Ok(None);
    };
    let fail = |why: String| StartError::AdminToken {
        path: path.clone(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    crate::app::admin::Admin::new(&bytes, stock, sold)
        .map(Some)
        .map_err(|e| fail(format!("the token is {e}")))
}

/// The data directory's lock file.
pub const LOCK_FILE: &str = "LOCK";

/// The size of the data directory's `LOCK` file: one O_DIRECT block, so that reading it is real
/// device I/O.
pub const LOCK_FILE_BYTES: u64 = 4096;

/// The data directory, created if missing and locked for this process's life (an exclusive
/// `flock` on `LOCK` inside it): two ticketd processes journaling into one directory would each
/// take the other's files for their own.
///
/// Returns the lock and the directory's absolute path (glommio opens directories by absolute path
/// only: a relative one fails with EBADF).
pub fn lock_data_dir(
    dir: &std::path::Path,
) -> Result<(std::fs::File, std::path::PathBuf), StartError> {
    let fail = |why: String| StartError::DataDir {
        path: dir.to_path_buf(),
        why,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| fail(e.to_string()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(fail(if e.kind() == io::ErrorKind::WouldBlock {
            "another ticketd process uses it".to_string()
        } else {
            e.to_string()
        }));
    }
    let mut lock = lock;
    if lock.metadata().map_err(|e| fail(e.to_string()))?.len() < LOCK_FILE_BYTES {
        use std::io::Write as _;
        // Real blocks, not a hole: the file is also what glommio's device probe reads (see
        // `crate::durability::journal::probe_device`).
        let mut text =
            b"ticketd data directory: this file is locked (flock) by the ticketd using it\n"
                .to_vec();
        text.resize(LOCK_FILE_BYTES as usize, b'\n');
        lock.write_all(&text)
            .and_then(|()| lock.sync_all())
            .map_err(|e| fail(e.to_string()))?;
    }
    let absolute = dir.canonicalize().map_err(|e| fail(e.to_string()))?;
    Ok((lock, absolute))
}

/// Whether a process holds the lock of [`lock_data_dir`] on `dir` now, tested without taking it
/// for more than a moment and without creating anything (for `ticketd journal inspect`, which
/// reads beside a running server). A directory without a lock file is not in use.
pub fn data_dir_in_use(dir: &std::path::Path) -> bool {
    let Ok(lock) = std::fs::File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor we own; closing it (at the end of this function)
    // releases the shared lock if it was granted.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    rc != 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// Where each shard runs: `Some(cpu)` pinned, `None` unpinned.
pub fn placement(config: &Config) -> Result<Vec<Option<usize>>, StartError> {
    let allowed = allowed_cpus();
    let cpus = match &config.cpus {
        Some(list) => {
            if let Some(&cpu) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(StartError::CpuNotAllowed {
                    cpu,
                    allowed: crate::config::format_cpu_list(&allowed),
                });
            }
            list.clone()
        }
        None => allowed,
    };
    let shards = config.shards.unwrap_or(cpus.len()).max(1);
    if shards > cpus.len() {
        tracing::warn!(
            shards,
            cpus = cpus.len(),
            "more shards than CPUs: shards run unpinned and share CPUs (fine for tests, slower in production)"
        );
        return Ok(vec![None; shards]);
    }
    Ok(cpus[..shards].iter().map(|&c| Some(c)).collect())
}

/// The CPUs in this process's affinity mask (so `taskset` is respected).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bitmask owned by this frame, sized as the call is told.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the size of `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Raises RLIMIT_MEMLOCK's soft limit to what `shards` executors need when the hard limit allows.
pub fn ensure_memlock(shards: usize) -> Result<(), StartError> {
    let need = GLOMMIO_MEMLOCK_BYTES;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `limit`, a local of the right type.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Ok(()); // Cannot tell; glommio will report it if it matters.
    }
    let want = need.saturating_mul(shards as u64).max(need);
    if limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= want {
        return Ok(());
    }
    let raised = libc::rlimit {
        rlim_cur: want.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads `raised`, a local of the right type.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) };
    if raised.rlim_cur < need {
        return Err(StartError::MemLockTooLow {
            have: limit.rlim_cur,
            hard: limit.rlim_max,
        });
    }
    Ok(())
}

/// Creates and drops one io_uring, so that a disabled io_uring is reported before any thread
/// starts.
pub fn check_io_uring() -> Result<(), StartError> {
    if let Ok(value) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if value.trim() == "2" {
            return Err(StartError::IoUringUnavailable(
                "kernel.io_uring_disabled is 2".into(),
            ));
        }
    }
    // SAFETY: io_uring_params is plain data; the kernel fills it. A returned fd is closed at once.
    let mut params: [u32; 30] = [0; 30]; // struct io_uring_params is 120 bytes
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(StartError::IoUringUnavailable(format!(
            "io_uring_setup failed: {e}"
        )));
    }
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// Checks that nobody else listens on `addr` and resolves port 0 to one free port.
///
/// Shards bind with SO_REUSEPORT, which would silently share a port with another process of the
/// same user; this probe binds *without* it first, so a second ticketd fails loudly instead.
pub fn probe_address(addr: SocketAddr) -> Result<SocketAddr, StartError> {
    match StdListener::bind(addr) {
        Ok(listener) => listener.local_addr().map_err(|e| StartError::Bind(addr, e)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(StartError::PortInUse(addr)),
        Err(e) => Err(StartError::Bind(addr, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_affinity_mask_is_not_empty() {
        assert!(!allowed_cpus().is_empty());
    }
}

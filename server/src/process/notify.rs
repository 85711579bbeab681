//! The sd_notify protocol, spoken directly: systemd's `Type=notify` readiness, status, stop and
//! watchdog messages.
//!
//! # Protocol
//! systemd passes `NOTIFY_SOCKET`, the address of a datagram socket: a filesystem path, or an
//! abstract name written with a leading `@`. Each message is one datagram of newline-separated
//! `KEY=VALUE` assignments, sent from an unbound `AF_UNIX` datagram socket. Without
//! `NOTIFY_SOCKET` (not started by systemd, or `Type=` is not `notify`) every call here is a
//! no-op. Nothing here is fatal: a failed send is logged (a warning the first time, at debug after
//! that) and the server goes on serving.
//!
//! What ticketd sends:
//! - `READY=1` and `STATUS=serving on ADDR, N shards, S tickets` once every shard is listening
//!   ([`crate::shard::run`]);
//! - `STOPPING=1` and a draining `STATUS=` when the first stop signal arrives
//!   ([`crate::process::signals`]);
//! - `WATCHDOG=1` every half of `WATCHDOG_USEC`, from the [`Watchdog`] thread, but only while
//!   every shard still answers.
//!
//! # Watchdog design
//! A ping must mean "every shard is making progress", not "some thread of the process is alive".
//! So each shard gets one slot in [`Heartbeats`] (an `Arc<[AtomicU64]>`), and only that shard's
//! own heartbeat task ([`Heartbeats::beat`], a glommio timer task on the shard's executor) writes
//! it, every [`Watchdog::heartbeat_period`]. No other shard and no request path touches it; the
//! write is a `Relaxed` store of a counter, which is all a watchdog needs (it compares values, it
//! orders nothing else by them). The watchdog thread wakes every half `WATCHDOG_USEC`, reads every
//! slot, and pings only if each slot advanced since its previous look. A shard whose executor is
//! stuck (a task that never yields, a blocked syscall) runs no timers, its slot stops moving, the
//! pings stop, and systemd restarts the service after `WatchdogSec`.
//!
//! The heartbeat runs several times per ping interval ([`BEATS_PER_PING`]), so a shard that is
//! merely late by a timer tick still advances between two looks. The uring driver gives way to
//! its shard's other tasks at least every few milliseconds under load, so a busy shard beats too.
//! Once a stop has begun the watchdog thread ends, and no ping follows `STOPPING=1` (both are sent
//! under one lock, [`Notifier::watchdog`]): the stop has its own bound (`TimeoutStopSec=` in the
//! unit, and the forced exit in [`crate::process::signals`]).

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The environment variable that names the notification socket.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// The environment variable with the watchdog period in microseconds.
pub const WATCHDOG_USEC_ENV: &str = "WATCHDOG_USEC";

/// The environment variable naming the process the watchdog is meant for (absent: us).
pub const WATCHDOG_PID_ENV: &str = "WATCHDOG_PID";

/// Heartbeats per ping interval. Four means a shard can be up to three timer ticks late and still
/// show progress at the next look, so an ordinary scheduling hiccup never skips a ping.
const BEATS_PER_PING: u32 = 4;

/// The heartbeat is never more frequent than this: shorter periods only cost wake-ups, and a
/// watchdog this tight (`WatchdogSec` of 20 ms) would not be a sensible setting.
const HEARTBEAT_PERIOD_MIN: Duration = Duration::from_millis(5);

/// Nor less frequent than this, so a shard's heartbeat stays cheap to reason about with long
/// watchdog periods too (a 30 s `WatchdogSec` still beats every 100 ms, as documented).
const HEARTBEAT_PERIOD_MAX: Duration = Duration::from_millis(100);

/// The shortest ping interval honoured; a smaller `WATCHDOG_USEC` is raised to this (a ping
/// thread spinning faster would steal a CPU from the shards it watches).
const PING_INTERVAL_MIN: Duration = Duration::from_millis(10);

/// Where notifications go: nowhere (no `NOTIFY_SOCKET`), or a socket and the address it names.
#[derive(Clone, Default)]
pub struct Notifier {
    /// `None` when `NOTIFY_SOCKET` is absent or unusable: every send is a no-op.
    target: Option<Arc<Target>>,
}

struct Target {
    /// Our unbound sending socket.
    socket: UnixDatagram,
    /// The address from `NOTIFY_SOCKET`.
    addr: std::os::unix::net::SocketAddr,
    /// Set after the first failed send, so failures after it are logged at debug only.
    warned: AtomicBool,
    /// Set when `STOPPING=1` is sent. `STOPPING=1` is sent, and `WATCHDOG=1` checked and sent,
    /// under this lock, so no ping can follow `STOPPING=1` (a watchdog thread that read the stop
    /// flag just before it was set would otherwise ping once more). Only the watchdog thread (once
    /// per ping) and the signal thread (once) take it: it is not on any request path.
    stopped: Mutex<bool>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`. An absent or empty variable gives a no-op notifier; an unusable
    /// one is logged and gives a no-op notifier too.
    pub fn from_env() -> Notifier {
        match std::env::var_os(NOTIFY_SOCKET_ENV) {
            Some(value) if !value.is_empty() => Self::to(&value.to_string_lossy()),
            _ => Notifier::default(),
        }
    }

    /// A notifier sending to `address`: a path, or an abstract name after a leading `@`.
    pub fn to(address: &str) -> Notifier {
        match open(address) {
            Ok(target) => Notifier {
                target: Some(Arc::new(target)),
            },
            Err(error) => {
                tracing::warn!(%error, address, "NOTIFY_SOCKET unusable; not notifying systemd");
                Notifier::default()
            }
        }
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one message (newline-separated `KEY=VALUE` lines). Never fails: errors are logged.
    pub fn send(&self, message: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(error) = target.socket.send_to_addr(message.as_bytes(), &target.addr) {
            if target.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(%error, "sd_notify send failed");
            } else {
                tracing::warn!(%error, "sd_notify send failed; later failures are logged at debug");
            }
        }
    }

    /// Every shard is listening.
    pub fn ready(&self, addr: std::net::SocketAddr, shards: usize, tickets: u64) {
        self.send(&format!(
            "READY=1\nSTATUS=serving on {addr}, {shards} shards, {tickets} tickets"
        ));
    }

    /// A stop has begun: `STOPPING=1`, and no `WATCHDOG=1` after it.
    pub fn stopping(&self) {
        let Some(target) = &self.target else {
            return;
        };
        let mut stopped = target
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *stopped = true;
        self.send("STOPPING=1\nSTATUS=stopping: draining connections");
    }

    /// `WATCHDOG=1`, unless `STOPPING=1` was sent.
    pub fn watchdog(&self) {
        let Some(target) = &self.target else {
            return;
        };
        let stopped = target
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !*stopped {
            self.send("WATCHDOG=1");
        }
    }
}

fn open(address: &str) -> std::io::Result<Target> {
    let addr = match address.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => std::os::unix::net::SocketAddr::from_pathname(address)?,
    };
    Ok(Target {
        socket: UnixDatagram::unbound()?,
        addr,
        warned: AtomicBool::new(false),
        stopped: Mutex::new(false),
    })
}

/// One progress counter per shard, each written only by its own shard.
#[derive(Clone)]
pub struct Heartbeats {
    slots: Arc<[AtomicU64]>,
}

impl Heartbeats {
    /// Slots for `shards` shards, all at zero.
    pub fn new(shards: usize) -> Heartbeats {
        Heartbeats {
            slots: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Runs on shard `me`'s executor forever: advances its slot every `period`. Only this task
    /// writes the slot, so a load and a store (no read-modify-write) suffice.
    pub async fn beat(self, me: usize, period: Duration) {
        let slot = &self.slots[me];
        loop {
            glommio::timer::sleep(period).await;
            slot.store(
                slot.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
    }

    /// The current value of every slot.
    fn read(&self) -> Vec<u64> {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect()
    }
}

/// True when every shard's counter moved since `before` (and there is at least one shard).
fn all_advanced(before: &[u64], now: &[u64]) -> bool {
    assert_eq!(before.len(), now.len(), "heartbeat slots do not change");
    !now.is_empty() && before.iter().zip(now).all(|(b, n)| b != n)
}

/// The systemd watchdog, when it is asked for: how often to ping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchdog {
    /// Half of `WATCHDOG_USEC`, as systemd recommends, so one late ping is not a miss.
    pub ping_interval: Duration,
}

impl Watchdog {
    /// The watchdog asked for by the environment: `WATCHDOG_USEC` set and positive, and
    /// `WATCHDOG_PID` absent or ours. `None` without a notify socket too.
    pub fn from_env(notifier: &Notifier) -> Option<Watchdog> {
        if !notifier.is_enabled() {
            return None;
        }
        let usec = std::env::var(WATCHDOG_USEC_ENV).ok()?;
        let pid = std::env::var(WATCHDOG_PID_ENV).ok();
        Self::parse(&usec, pid.as_deref(), std::process::id())
    }

    fn parse(usec: &str, pid: Option<&str>, me: u32) -> Option<Watchdog> {
        if let Some(pid) = pid {
            if pid.trim().parse::<u32>().ok() != Some(me) {
                return None;
            }
        }
        let usec: u64 = match usec.trim().parse() {
            Ok(usec) if usec > 0 => usec,
            _ => {
                tracing::warn!(
                    value = usec,
                    "WATCHDOG_USEC is not a positive number; ignored"
                );
                return None;
            }
        };
        Some(Watchdog {
            ping_interval: (Duration::from_micros(usec) / 2).max(PING_INTERVAL_MIN),
        })
    }

    /// How often each shard beats: several times per ping, within fixed bounds.
    pub fn heartbeat_period(self) -> Duration {
        (self.ping_interval / BEATS_PER_PING).clamp(HEARTBEAT_PERIOD_MIN, HEARTBEAT_PERIOD_MAX)
    }

    /// Starts the ping thread; it ends once `stop` is set. A thread that cannot be spawned is
    /// logged and there are no pings (systemd will then restart us, which says why loudly).
    pub fn spawn(self, notifier: Notifier, heartbeats: Heartbeats, stop: Arc<AtomicBool>) {
        let spawned = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut before = heartbeats.read();
                let mut stalled_logged = false;
                loop {
                    std::thread::sleep(self.ping_interval);
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let now = heartbeats.read();
                    if all_advanced(&before, &now) {
                        notifier.watchdog();
                        stalled_logged = false;
                    } else if !stalled_logged {
                        let stuck: Vec<usize> =
                            (0..now.len()).filter(|&i| before[i] == now[i]).collect();
                        tracing::warn!(?stuck, "a shard did not answer; withholding WATCHDOG=1");
                        stalled_logged = true;
                    }
                    before = now;
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the watchdog thread; no WATCHDOG=1 pings");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_advanced_needs_every_slot_to_move() {
        let cases: &[(&[u64], &[u64], bool)] = &[
            (&[0, 0], &[1, 1], true),
            (&[5, 7], &[9, 8], true),
            (&[0, 0], &[1, 0], false),
            (&[3, 3], &[3, 3], false),
            (&[u64::MAX], &[0], true), // wrapped
            (&[], &[], false),
        ];
        for &(before, now, expected) in cases {
            assert_eq!(all_advanced(before, now), expected, "{before:?} -> {now:?}");
        }
    }

    #[test]
    fn watchdog_parse() {
        let ms = Duration::from_millis;
        let cases: &[(&str, Option<&str>, Option<Duration>)] = &[
            ("200000", None, Some(ms(100))),
            ("200000", Some("42"), Some(ms(100))),
            ("200000", Some("43"), None),
            ("200000", Some("x"), None),
            ("0", None, None),
            ("junk", None, None),
            ("1000", None, Some(PING_INTERVAL_MIN)),
            ("30000000", None, Some(ms(15_000))),
        ];
        for &(usec, pid, expected) in cases {
            let got = Watchdog::parse(usec, pid, 42).map(|w| w.ping_interval);
            assert_eq!(got, expected, "{usec} {pid:?}");
        }
    }

    #[test]
    fn heartbeat_period_is_a_fraction_of_the_ping_within_bounds() {
        let ms = Duration::from_millis;
        let cases = [
            (ms(100), ms(25)),
            (ms(10), HEARTBEAT_PERIOD_MIN),
            (ms(15_000), HEARTBEAT_PERIOD_MAX),
        ];
        for (ping_interval, expected) in cases {
            assert_eq!(Watchdog { ping_interval }.heartbeat_period(), expected);
        }
    }

    #[test]
    fn sends_to_a_path_and_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("ticketd-notify-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let by_path = UnixDatagram::bind(&path).unwrap();
        let name = format!("@ticketd-notify-unit-{}", std::process::id());
        let by_name = {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name[1..]).unwrap();
            UnixDatagram::bind_addr(&addr).unwrap()
        };
        for (socket, address) in [(&by_path, path.to_str().unwrap()), (&by_name, &name)] {
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Notifier::to(address).stopping();
            let mut buf = [0u8; 256];
            let n = socket.recv(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"STOPPING=1\n"), "{address}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_watchdog_ping_after_stopping() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ticketd-notify-stop-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket.set_nonblocking(true).unwrap();
        let notifier = Notifier::to(&format!("@{name}"));
        notifier.watchdog();
        notifier.stopping();
        notifier.watchdog();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        while let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], "WATCHDOG=1");
        assert!(got[1].starts_with("STOPPING=1\n"), "{got:?}");
    }

    #[test]
    fn absent_or_unreachable_socket_is_a_no_op() {
        Notifier::default().ready(([127, 0, 0, 1], 1).into(), 1, 1);
        let gone = Notifier::to("/nonexistent/ticketd/notify.sock");
        gone.send("READY=1");
        gone.send("READY=1"); // the second failure is quiet
    }
}

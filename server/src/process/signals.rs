//! SIGTERM and SIGINT: the first starts a graceful stop, a second one (or a stop that overruns its
//! grace) ends the process at once. SIGXFSZ is ignored (see `install`).
//!
//! The signals are blocked in every thread (the mask is inherited by the shards' threads, which
//! are spawned after this) and taken synchronously by one thread with `sigwait`, so no handler
//! runs in async-signal context and no shard is ever interrupted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::process::notify::Notifier;

/// Extra time beyond the configured grace before a stop is forced: the shards' drain loops poll
/// every few milliseconds, so this only matters if one is stuck.
const FORCE_AFTER_GRACE: Duration = Duration::from_secs(2);

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread spawned later), and starts
/// the thread that waits for them. Call before any other thread starts. The first signal also
/// tells systemd (`STOPPING=1`) through `notifier`.
pub fn install(stop: Arc<AtomicBool>, grace: Duration, notifier: Notifier) {
    // A journal write past RLIMIT_FSIZE must fail with EFBIG, which the journal reports (the
    // shard stops selling), rather than kill the process with SIGXFSZ's default action, which
    // would answer nothing to the clients whose sales were durable.
    // SAFETY: setting a signal's disposition to "ignore" before other threads start.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    // SAFETY: plain libc calls on a sigset_t owned by this frame.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let first = wait(&set);
            tracing::info!(signal = first, "stopping: draining connections");
            stop.store(true, Ordering::SeqCst);
            notifier.stopping();
            std::thread::spawn(move || {
                std::thread::sleep(grace + FORCE_AFTER_GRACE);
                tracing::error!("stop overran its grace period; exiting");
                std::process::exit(1);
            });
            let second = wait(&set);
            tracing::warn!(signal = second, "second signal: exiting at once");
            std::process::exit(1);
        })
        .expect("spawning the signal thread");
}

fn wait(set: &libc::sigset_t) -> &'static str {
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` is initialised; sigwait writes the signal number into `signal`.
    unsafe { libc::sigwait(set, &mut signal) };
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

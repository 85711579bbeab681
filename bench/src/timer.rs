//! A one-shot timer with nanosecond resolution for the event loop: a Linux `timerfd` registered
//! with mio.
//!
//! epoll's own timeout counts whole milliseconds (mio rounds up), so an open-loop send due in
//! 150 µs would go out up to 1 ms late, and that lateness would count as server latency. The
//! timerfd wakes the loop when the next request is due.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// A timerfd and the deadline it is armed for.
#[derive(Debug)]
pub struct Timer {
    /// The timerfd (nonblocking, close-on-exec).
    fd: OwnedFd,
    /// The deadline it is armed for, until it fires.
    armed: Option<Instant>,
}

impl Timer {
    /// A disarmed timer, registered for readability under `token`.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Timer> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by timerfd_create and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Timer { fd, armed: None })
    }

    /// Arms the timer for `at` (replacing any earlier deadline); nothing to do when it is
    /// already armed for exactly `at`.
    pub fn arm(&mut self, at: Instant, now: Instant) -> io::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        // A zero it_value would disarm the timer; one nanosecond fires at once.
        let wait = at
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value pointer may be null.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed = Some(at);
        Ok(())
    }

    /// Called on the timer's readable event: clears its expiry count and forgets the deadline.
    pub fn fired(&mut self) {
        let mut expirations = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer. A nonblocking read with nothing
        // to read (the timer was re-armed since) fails with EAGAIN, which is fine to ignore.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                expirations.as_mut_ptr().cast(),
                expirations.len(),
            )
        };
        self.armed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_the_deadline() {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut timer = Timer::new(poll.registry(), Token(7)).unwrap();
        let now = Instant::now();
        let at = now + Duration::from_micros(300);
        timer.arm(at, now).unwrap();
        loop {
            poll.poll(&mut events, Some(Duration::from_secs(1)))
                .unwrap();
            if events.iter().any(|e| e.token() == Token(7)) {
                break;
            }
        }
        let late = Instant::now().saturating_duration_since(at);
        assert!(Instant::now() >= at);
        // Generous: a loaded CI box may schedule us late, but never by a whole second.
        assert!(late < Duration::from_millis(500), "{late:?}");
        timer.fired();
        assert_eq!(timer.armed, None);
    }
}

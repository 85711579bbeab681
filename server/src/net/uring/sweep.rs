//! The sweep and the drain: deadlines checked every `SWEEP_PERIOD`, a stop request turned into a
//! drain, busy connections cut once its grace is over.

use std::time::Instant;

use super::connections::State;
use super::slots::{close, Phase};
use super::STOP_RETRY;

impl State {
    /// Checks every connection's deadline, and starts the drain when asked to stop.
    pub(super) fn sweep(&mut self, now: Instant, stop_requested: bool) {
        if stop_requested && !self.draining {
            self.begin_drain(now);
        }
        for index in 0..self.slots.len() as u32 {
            let slot = &mut self.slots[index as usize];
            match slot.phase {
                Phase::Open | Phase::Flushing { .. } if now >= slot.deadline => {
                    self.shard
                        .core
                        .borrow_mut()
                        .app
                        .counters
                        .connections_timed_out += 1;
                    self.stop(index);
                }
                Phase::Lingering if now >= slot.deadline => self.stop(index),
                Phase::Stopping if now >= slot.deadline => {
                    // Not expected: the kernel has not given the requests back. Shutting the
                    // socket ends them whatever they wait for; the cancel is staged again.
                    tracing::warn!(slot = index, "a closing connection's requests are late");
                    // SAFETY: shutdown(2) on the socket this slot owns.
                    unsafe { libc::shutdown(slot.fd, libc::SHUT_RDWR) };
                    slot.recv_cancelled = false;
                    slot.deadline = now + STOP_RETRY;
                    self.touch(index);
                }
                Phase::Open
                    if self.draining
                        && !slot.read_shut
                        && slot.conn.is_idle()
                        && !slot.sending
                        && slot.unsent() == 0 =>
                {
                    // As the glommio transport does: the recv sees end of stream once the peer is
                    // quiet, and a request already on its way is still answered (with close).
                    // SAFETY: shutdown(2) on the socket this slot owns.
                    unsafe { libc::shutdown(slot.fd, libc::SHUT_RD) };
                    slot.read_shut = true;
                }
                _ => {}
            }
        }
        if self.draining && self.aborted_at.is_none() && now >= self.drain_deadline {
            tracing::warn!(
                connections = self.open,
                "shutdown grace over: closing busy connections"
            );
            self.aborted_at = Some(now);
            for index in 0..self.slots.len() as u32 {
                self.stop(index);
            }
        }
    }

    fn begin_drain(&mut self, now: Instant) {
        self.draining = true;
        self.shard.core.borrow_mut().stop();
        self.drain_deadline = now + self.shutdown_timeout;
        for fd in self.waiting.drain(..) {
            close(fd);
        }
    }

    /// The drain is done: no connection, no listener, no accept in flight.
    pub(super) fn finished(&self) -> bool {
        self.draining
            && self.open == 0
            && self.listener.is_none()
            && !self.accept_armed
            && self.journal_write.is_none()
    }
}

//! Per-connection state, apart from the ring loop: where a connection is in its life
//! ([`Phase`]) and what the kernel may hold of it ([`Slot`]: its socket, its output buffers, its
//! armed recv and send).

use std::os::fd::RawFd;
use std::time::Instant;

use crate::net::connection::Connection;
use crate::shard::{ConnKey, Step};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// The slot holds no connection.
    Free,
    /// Serving requests.
    Open,
    /// The last response is produced; once it is sent the connection closes, after a lingering
    /// half-close if `linger` (we chose to close), at once if not (the peer closed).
    Flushing { linger: bool },
    /// Half-closed after the last response; input is read and dropped until end of stream, the
    /// linger deadline or `LINGER_BYTES_MAX`, so the client gets our response, not a reset.
    Lingering,
    /// Being closed: waiting for the kernel to give back the recv and the send, then `close`.
    Stopping,
}

/// One connection slot.
pub(super) struct Slot {
    /// Bumped when the slot is freed, so a stale CQE would be told from a live one.
    pub(super) generation: u32,
    /// The socket (-1 when free).
    pub(super) fd: RawFd,
    /// Where the connection is in its life.
    pub(super) phase: Phase,
    /// The protocol state.
    pub(super) conn: Connection,
    /// Output being sent, or to be sent next turn; not touched while `sending`. Bytes leave in
    /// the order `out[sent..]`, then `next`.
    pub(super) out: Vec<u8>,
    /// Bytes of `out` the kernel has taken (short sends are continued from here).
    pub(super) sent: usize,
    /// Output produced while a send of `out` is in flight (or while `next` already held some).
    pub(super) next: Vec<u8>,
    /// A send is in flight.
    pub(super) sending: bool,
    /// A multishot recv is armed: its final CQE (no `F_MORE`) has not come.
    pub(super) recv_armed: bool,
    /// A cancel of the armed recv was staged.
    pub(super) recv_cancelled: bool,
    /// A recv of this connection has ended since it was admitted: the next arm is a re-arm
    /// (counted in `TransportCounters::recv_rearms`).
    pub(super) recv_ended: bool,
    /// The peer ended its side (recv returned 0): nothing more to read.
    pub(super) peer_closed: bool,
    /// The drain shut our read side (`SHUT_RD`) so that the recv ends once the peer is quiet.
    pub(super) read_shut: bool,
    /// A request is partly received: the head deadline runs, not the idle timeout.
    pub(super) in_request: bool,
    /// When the connection is closed unless something happens (head, idle, send, linger).
    pub(super) deadline: Instant,
    /// Bytes dropped while lingering.
    pub(super) lingered_bytes: usize,
    /// Listed in `State::touched`.
    pub(super) touched: bool,
    /// When the input that ended in the order this connection waits for was reaped: the start of
    /// the service time recorded when the order resumes (with `--latency-dump`).
    pub(super) reaped_at: Instant,
    /// The core holds this connection's output (a response waits for the journal): nothing is
    /// sent until the core releases it.
    pub(super) held: bool,
}

impl Slot {
    pub(super) fn free(now: Instant) -> Slot {
        Slot {
            generation: 0,
            fd: -1,
            phase: Phase::Free,
            conn: Connection::default(),
            out: Vec::new(),
            sent: 0,
            next: Vec::new(),
            sending: false,
            recv_armed: false,
            recv_cancelled: false,
            recv_ended: false,
            peer_closed: false,
            read_shut: false,
            in_request: false,
            deadline: now,
            lingered_bytes: 0,
            touched: false,
            reaped_at: now,
            held: false,
        }
    }

    /// The key the core knows this connection by.
    pub(super) fn key(&self, index: u32) -> ConnKey {
        u64::from(self.generation) << 32 | u64::from(index)
    }

    /// Output produced and not yet taken by the kernel.
    pub(super) fn unsent(&self) -> usize {
        self.out.len() - self.sent + self.next.len()
    }
}

/// Runs `step` (new input, or a decided order) on a connection with the output buffer its bytes
/// must go to: bytes leave in the order `out[sent..]`, then `next`, so `out` may grow only when
/// no send holds it and nothing waits in `next`.
///
/// Output that goes to `next` while a send is in flight adds one to `behind`.
pub(super) fn with_output(
    slot: &mut Slot,
    pool: &mut Vec<Vec<u8>>,
    behind: &mut u64,
    step: impl FnOnce(&mut Connection, &mut Vec<u8>) -> Step,
) -> Step {
    let out = if slot.sending || !slot.next.is_empty() {
        &mut slot.next
    } else {
        &mut slot.out
    };
    if out.capacity() == 0 {
        *out = pool.pop().unwrap_or_default();
    }
    let before = out.len();
    let step = step(&mut slot.conn, out);
    if slot.sending && slot.next.len() > before {
        *behind += 1;
    }
    step
}

pub(super) fn close(fd: RawFd) {
    // SAFETY: `fd` is a socket we own and no request in flight names it.
    unsafe { libc::close(fd) };
}

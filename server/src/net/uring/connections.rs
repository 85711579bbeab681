//! [`State`], everything the driver knows besides the ring, and the handlers that move a
//! connection on: its recv and send completions, the core's news for it (answers, released
//! output), and `advance`, which stages its next requests and closes it once the kernel holds
//! nothing of it. Accepting, the sweep and journal writes are `impl State` blocks of their own
//! (`accept.rs`, `sweep.rs`, `commit.rs`).

use std::collections::VecDeque;
use std::os::fd::{OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types};

use super::buffers::{RecvBuffers, BUFFER_GROUP};
use super::slots::{close, with_output, Phase, Slot};
use super::{token, untoken, Op, GENERATION_MASK, STOP_RETRY};
use crate::app::transport_counters::TransportCounters;
use crate::durability::aligned::AlignedBuf;
use crate::durability::journal::Batch;
use crate::net::connection::{Connection, Next};
use crate::net::{LINGER, LINGER_BYTES_MAX};
use crate::shard::{ConnEvent, Release, Shard, Step};

/// A connection with this much output not yet sent stops being read (its recv is cancelled) until
/// the peer reads: a client that pipelines without reading cannot make us buffer without bound.
/// The kernel's socket buffers then push back on the client. What one turn received is still
/// answered, so the output can overshoot by the answers to at most `RECV_BUFFERS` buffers.
const UNSENT_BYTES_MAX: usize = 64 * 1024;

/// Output buffers up to this capacity go back to the pool when emptied; bigger ones (a large
/// reply) are freed, so the pool does not pin memory after one burst.
const OUT_KEEP_BYTES: usize = 16 * 1024;

/// Emptied output buffers kept for reuse: enough for every connection active in one turn on a
/// loaded shard, so the request path does not allocate.
const OUT_POOL_MAX: usize = 1024;

/// Everything the driver knows besides the ring itself. Handlers change state and stage SQEs; only
/// the driver talks to the ring.
pub(super) struct State {
    /// The shard: app, date, limits, timeouts, draining flag.
    pub(super) shard: Rc<Shard>,
    /// Connection slots; grows up to `connections_max`, never shrinks.
    pub(super) slots: Vec<Slot>,
    /// Indexes of free slots.
    pub(super) free: Vec<u32>,
    /// Slots whose state changed this turn, to `advance` at its end.
    pub(super) touched: Vec<u32>,
    /// Open connections (slots not free).
    pub(super) open: usize,
    /// At most this many open connections.
    pub(super) connections_max: usize,
    /// Accepted sockets waiting for a slot (the accept overshot the limit before its cancel).
    pub(super) waiting: VecDeque<RawFd>,
    /// The receive buffers.
    pub(super) buffers: RecvBuffers,
    /// Emptied output buffers for reuse.
    pub(super) pool: Vec<Vec<u8>>,
    /// Our listening socket, until the drain closes it.
    pub(super) listener: Option<OwnedFd>,
    /// The multishot accept is armed.
    pub(super) accept_armed: bool,
    /// A cancel of the accept was staged.
    pub(super) accept_cancelled: bool,
    /// The accept stays unarmed until then, after an error ended it.
    pub(super) accept_paused_until: Instant,
    /// Whether accepted sockets inherit TCP_NODELAY from the listener (checked once).
    pub(super) nodelay_inherited: Option<bool>,
    /// A stop was requested: accept nothing, close idle connections, finish busy ones.
    pub(super) draining: bool,
    /// When the drain gives up on busy connections.
    pub(super) drain_deadline: Instant,
    /// The grace of a drain.
    pub(super) shutdown_timeout: Duration,
    /// When the drain gave up: the teardown then waits `TEARDOWN_WAIT` for the kernel.
    pub(super) aborted_at: Option<Instant>,
    /// Staged SQEs, submitted at the start of the next turn.
    pub(super) staged: Vec<squeue::Entry>,
    /// Slots whose output the core holds.
    pub(super) held: usize,
    /// The group commit this ring is writing, if any.
    pub(super) journal_write: Option<JournalWrite>,
    /// The aligned buffer of the last journal write, kept for the next.
    pub(super) spare: Option<AlignedBuf>,
}

/// A group commit on its way through the ring: the batch, its bytes in a buffer aligned for
/// O_DIRECT, how many of them the kernel has written, and the file they go to.
pub(super) struct JournalWrite {
    pub(super) batch: Batch,
    pub(super) buf: AlignedBuf,
    pub(super) done: usize,
    pub(super) fd: RawFd,
}

impl State {
    pub(super) fn on_cqe(&mut self, cqe: &cqueue::Entry, now: Instant) {
        let (op, index, generation) = untoken(cqe.user_data());
        match op {
            Op::Cancel => {}
            Op::Journal => self.on_journal_write(cqe.result(), now),
            Op::Accept => self.on_accept(cqe.result(), cqe.flags(), now),
            Op::Recv | Op::Send => {
                let slot = &self.slots[index as usize];
                assert!(
                    slot.phase != Phase::Free && slot.generation & GENERATION_MASK == generation,
                    "a {op:?} CQE for slot {index} generation {generation}, which is gone"
                );
                if op == Op::Recv {
                    self.on_recv(index, cqe.result(), cqe.flags(), now);
                } else {
                    self.on_send(index, cqe.result());
                }
            }
        }
    }

    fn on_recv(&mut self, index: u32, res: i32, flags: u32, now: Instant) {
        self.touch(index);
        let slot = &mut self.slots[index as usize];
        assert!(slot.recv_armed);
        if !cqueue::more(flags) {
            slot.recv_armed = false;
            slot.recv_ended = true;
        }
        // The kernel may name a buffer on an end of stream or an error too; it is ours again.
        let buffer = cqueue::buffer_select(flags);
        if res > 0 {
            let id = buffer.expect("the kernel names the buffer of every recv with data");
            self.on_data(index, id, res as usize, now);
        } else if res == 0 {
            slot.peer_closed = true;
        } else if res == -libc::ENOBUFS {
            // The buffer ring ran dry: the data waits in the socket; `advance` re-arms after the
            // buffers are back (published at the end of this turn).
            self.counters().recv_enobufs += 1;
        } else if res == -libc::ECANCELED {
            // We asked (backpressure or close).
        } else {
            self.stop(index); // ECONNRESET and the like: the connection is gone
        }
        if let Some(id) = buffer {
            self.buffers.recycle(id);
        }
    }

    /// `len` bytes arrived in buffer `id` for slot `index`.
    fn on_data(&mut self, index: u32, id: u16, len: usize, now: Instant) {
        let data = self.buffers.get(id, len);
        let slot = &mut self.slots[index as usize];
        match slot.phase {
            Phase::Open => {
                let shard = &self.shard;
                let key = slot.key(index);
                let mut behind = 0;
                let step = with_output(slot, &mut self.pool, &mut behind, |conn, out| {
                    shard.core.borrow_mut().input(key, conn, data, out, now)
                });
                self.counters().sends_behind += behind;
                self.after_step(index, step, now, Some(now));
            }
            Phase::Lingering => {
                slot.lingered_bytes += len;
                if slot.lingered_bytes >= LINGER_BYTES_MAX {
                    self.stop(index);
                }
            }
            // The response that ends the connection is written; what follows is dropped, as the
            // lingering close would drop it.
            Phase::Flushing { .. } | Phase::Stopping => {}
            Phase::Free => unreachable!("checked in on_cqe"),
        }
    }

    /// Carries out what the core tells connections: answers for waiting orders, and news of
    /// held output. News for a connection that is gone (closed, or its slot reused) is dropped:
    /// an order it waited for was still sold or refused, only its answer is lost, as when a
    /// client disconnects before its response.
    pub(super) fn take_conn_events(&mut self, now: Instant) -> bool {
        let mut any = false;
        loop {
            let Some((key, event)) = self.shard.core.borrow_mut().next_conn_event() else {
                return any;
            };
            any = true;
            let (index, generation) = ((key & u64::from(u32::MAX)) as u32, (key >> 32) as u32);
            let Some(slot) = self.slots.get_mut(index as usize) else {
                continue;
            };
            if slot.generation != generation || slot.phase == Phase::Free {
                continue;
            }
            match event {
                ConnEvent::Recheck => {
                    let release = self.shard.core.borrow_mut().release(key);
                    self.apply_release(index, release);
                }
                ConnEvent::Answer(answer) => {
                    if slot.phase != Phase::Open || slot.conn.waiting_for().is_none() {
                        continue;
                    }
                    let shard = &self.shard;
                    let mut behind = 0;
                    let step = with_output(slot, &mut self.pool, &mut behind, |conn, out| {
                        shard.core.borrow_mut().resume(key, conn, answer, out, now)
                    });
                    self.counters().sends_behind += behind;
                    self.after_step(index, step, now, None);
                }
            }
        }
    }

    /// Sets what follows a step on a connection: whether its output may leave, its deadline,
    /// its service time.
    ///
    /// `reaped` is when the input was reaped (the turn's `now`), or `None` when the step resumes
    /// a decided order: then the service time runs from `Slot::reaped_at`, the input that
    /// carried it.
    fn after_step(&mut self, index: u32, step: Step, now: Instant, reaped: Option<Instant>) {
        self.apply_release(index, step.release);
        let (head_timeout, idle_timeout) = (self.shard.head_timeout, self.shard.idle_timeout);
        let slot = &mut self.slots[index as usize];
        // One value per input that produced responses, once none of them waits (see `latency`).
        // Input queued behind a waiting order answers nothing here; its resume answers it.
        match (step.next, reaped) {
            (Next::Wait(_), Some(reaped)) => slot.reaped_at = reaped,
            (Next::Wait(_), None) => {}
            (_, Some(reaped)) if step.answered => self.shard.record_since(reaped),
            (_, Some(_)) => {}
            (_, None) => self.shard.record_since(slot.reaped_at),
        }
        if slot.phase != Phase::Open {
            return; // dropped: the connection is stopping
        }
        if step.next == Next::Close {
            // The last response must leave within an idle timeout, or the peer is dead.
            slot.phase = Phase::Flushing { linger: true };
            slot.deadline = now + idle_timeout;
        } else if slot.conn.is_idle() {
            slot.in_request = false;
            slot.deadline = now + idle_timeout;
        } else if !slot.in_request || step.answered {
            // A request is partly here (or an order waits). If this step also answered one, the
            // partial one began in it: each request gets its own head deadline.
            slot.in_request = true;
            slot.deadline = now + head_timeout;
        }
    }

    /// What the core said of a connection's output: send it, keep it, or close without it.
    fn apply_release(&mut self, index: u32, release: Release) {
        self.touch(index);
        let slot = &mut self.slots[index as usize];
        let held = release == Release::Held;
        if slot.held != held {
            slot.held = held;
            if held {
                self.held += 1;
            } else {
                self.held -= 1;
            }
        }
        if release == Release::Drop {
            // The response answers a sale that may not be durable: the client gets no answer
            // rather than a success that a crash could take back. Stopping sends nothing more (a
            // send already in flight carries only output that was released).
            self.stop(index);
        }
    }

    fn on_send(&mut self, index: u32, res: i32) {
        self.touch(index);
        let slot = &mut self.slots[index as usize];
        assert!(slot.sending && slot.sent < slot.out.len());
        slot.sending = false;
        if res > 0 {
            slot.sent += res as usize;
            assert!(slot.sent <= slot.out.len());
            if slot.sent == slot.out.len() {
                slot.sent = 0;
                let out = std::mem::take(&mut slot.out);
                self.give_back(out);
            }
        } else {
            // EPIPE, ECONNRESET, ECANCELED (or 0, which would never progress): nobody reads.
            self.stop(index);
        }
    }

    /// Starts closing a connection at once (error, timeout, end of drain).
    pub(super) fn stop(&mut self, index: u32) {
        self.touch(index);
        let slot = &mut self.slots[index as usize];
        if matches!(slot.phase, Phase::Stopping | Phase::Free) {
            return;
        }
        slot.phase = Phase::Stopping;
        slot.deadline = Instant::now() + STOP_RETRY;
        if slot.sending {
            // A send waiting for the peer to read fails now instead of whenever the peer reads.
            // SAFETY: shutdown(2) on the socket this slot owns.
            unsafe { libc::shutdown(slot.fd, libc::SHUT_RDWR) };
        }
    }

    /// The shard's transport counters (`GET /`, `/metrics`).
    pub(super) fn counters(&self) -> std::cell::RefMut<'_, TransportCounters> {
        std::cell::RefMut::map(self.shard.core.borrow_mut(), |core| {
            &mut core.app.counters.transport
        })
    }

    pub(super) fn touch(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if !slot.touched {
            slot.touched = true;
            self.touched.push(index);
        }
    }

    fn give_back(&mut self, mut buffer: Vec<u8>) {
        if buffer.capacity() > 0
            && buffer.capacity() <= OUT_KEEP_BYTES
            && self.pool.len() < OUT_POOL_MAX
        {
            buffer.clear();
            self.pool.push(buffer);
        }
    }

    /// After a batch of CQEs (or a sweep): hand buffers back, then move every touched connection
    /// on and admit waiting ones.
    pub(super) fn after_batch(&mut self, now: Instant) {
        self.buffers.publish();
        self.advance_touched(now);
        self.control_accept(now);
        self.advance_touched(now);
    }

    fn advance_touched(&mut self, now: Instant) {
        let mut touched = std::mem::take(&mut self.touched);
        for &index in &touched {
            self.advance(index, now);
        }
        touched.clear();
        if self.touched.is_empty() {
            self.touched = touched; // keep the allocation
        }
    }

    /// Moves one connection on: send what is ready, change phase, arm or cancel its recv, close
    /// it once the kernel holds nothing of it.
    fn advance(&mut self, index: u32, now: Instant) {
        let slot = &mut self.slots[index as usize];
        slot.touched = false;
        if slot.phase == Phase::Free {
            return;
        }
        let released = !slot.held;
        if !slot.sending && slot.phase != Phase::Stopping && released {
            if slot.out.is_empty() {
                std::mem::swap(&mut slot.out, &mut slot.next);
            }
            if slot.sent < slot.out.len() {
                let rest = &slot.out[slot.sent..];
                let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
                let send = opcode::Send::new(types::Fd(slot.fd), rest.as_ptr(), len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(token(Op::Send, index, slot.generation));
                self.staged.push(send);
                slot.sending = true;
            }
        }
        let unsent = slot.unsent();
        if slot.phase == Phase::Open && slot.peer_closed {
            slot.phase = Phase::Flushing { linger: false };
        }
        if let Phase::Flushing { linger } = slot.phase {
            if !slot.sending && unsent == 0 {
                slot.phase = Phase::Stopping;
                // SAFETY: shutdown(2) on the socket this slot owns.
                if linger
                    && !slot.peer_closed
                    && unsafe { libc::shutdown(slot.fd, libc::SHUT_WR) } == 0
                {
                    slot.phase = Phase::Lingering;
                    slot.deadline = now + LINGER;
                    slot.lingered_bytes = 0;
                }
            }
        }
        if slot.phase == Phase::Lingering && slot.peer_closed {
            slot.phase = Phase::Stopping;
        }
        let want_recv = !slot.peer_closed
            && match slot.phase {
                Phase::Open => unsent < UNSENT_BYTES_MAX,
                Phase::Flushing { .. } | Phase::Lingering => true,
                Phase::Stopping | Phase::Free => false,
            };
        let recv = token(Op::Recv, index, slot.generation);
        if want_recv && !slot.recv_armed {
            if slot.recv_ended {
                self.shard
                    .core
                    .borrow_mut()
                    .app
                    .counters
                    .transport
                    .recv_rearms += 1;
            }
            let arm = opcode::RecvMulti::new(types::Fd(slot.fd), BUFFER_GROUP)
                .build()
                .user_data(recv);
            self.staged.push(arm);
            slot.recv_armed = true;
            slot.recv_cancelled = false;
        } else if !want_recv && slot.recv_armed && !slot.recv_cancelled {
            let cancel = opcode::AsyncCancel::new(recv).build().user_data(token(
                Op::Cancel,
                index,
                slot.generation,
            ));
            self.staged.push(cancel);
            slot.recv_cancelled = true;
        }
        if slot.phase == Phase::Stopping && !slot.recv_armed && !slot.sending {
            self.release(index);
        }
    }

    /// Closes a stopped connection and frees its slot.
    fn release(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        assert!(slot.phase == Phase::Stopping && !slot.recv_armed && !slot.sending);
        close(slot.fd);
        let out = std::mem::take(&mut slot.out);
        let next = std::mem::take(&mut slot.next);
        slot.conn = Connection::default();
        slot.generation = slot.generation.wrapping_add(1);
        let key = slot.key(index);
        slot.fd = -1;
        if slot.held {
            slot.held = false;
            self.held -= 1;
        }
        slot.phase = Phase::Free;
        slot.sent = 0;
        self.give_back(out);
        self.give_back(next);
        self.free.push(index);
        self.open -= 1;
        self.shard.core.borrow_mut().closed(key);
    }
}

//! The io_uring transport: each shard drives its own sockets through its own io_uring, inside its
//! pinned glommio executor.
//!
//! # Why
//! glommio 0.9's `TcpStream` calls `recv`/`send` itself and waits for readiness through rings made
//! without `IORING_SETUP_COOP_TASKRUN`, so every completion that lands while the shard runs costs a
//! rescheduling IPI. This ring is made with `COOP_TASKRUN | TASKRUN_FLAG | SINGLE_ISSUER |
//! SUBMIT_ALL`: completions are posted when the shard next enters the kernel, which it does once per
//! turn anyway. glommio keeps everything else: placement, timers, the channel mesh, files.
//!
//! # Design
//! - One [`Driver`] per shard, one glommio task. A *turn* is: submit what was staged (one
//!   `io_uring_enter`), reap every completion, feed received bytes to each [`Connection`], then
//!   stage at most one send per connection with everything that connection produced.
//! - Multishot accept on the shard's own SO_REUSEPORT listener; multishot recv per connection, the
//!   kernel picking a buffer from one provided-buffer ring per shard. A buffer is held only from its
//!   CQE to the end of the turn that reaps it, so an idle connection holds no receive buffer, and
//!   idle connections hold no output buffer either (output buffers come from a per-shard pool).
//! - While busy, the driver gives way to glommio every [`YIELD_PERIOD`]: it writes the eventfd
//!   itself and awaits the READ, so glommio runs its reactor and other tasks before resuming it;
//!   timers and mesh receivers keep running under load.
//!   With nothing to do it parks inside glommio on a READ of an eventfd registered with our ring:
//!   enable the eventfd, submit (which posts pending completions), re-check the CQ, then await the
//!   READ or the next sweep, whichever comes first.
//! - With a journal (`--durability sync`), the shard's group commits go through this ring too: an
//!   O_DSYNC write of the batch (the file was opened by glommio's `DmaFile`, O_DIRECT), staged
//!   when the shard has nothing else to do or the oldest waiting change is overdue, reaped in the
//!   same loop as the sockets. A connection whose output answers a sale (`Slot::hold`) sends
//!   nothing until that sale is durable. Through glommio's own file I/O instead, a commit's
//!   completion waited for glommio's reactor, which runs only when this driver gives way: under
//!   load that tripled a commit's latency (measured: 415 µs against 130 µs).
//! - Deadlines (head, idle, linger, drain) are checked by a sweep of all connections every
//!   [`SWEEP_PERIOD`], not by one timeout request per read: a deadline fires up to one period late.
//!   The same sweep notices a stop request.
//!
//! # Invariants
//! - A slot is closed and reused only when the kernel holds no request that names it: its
//!   multishot recv has posted its final CQE (no `F_MORE`) and its send has completed. User data
//!   carries the slot's generation, and every recv or send CQE is asserted to match.
//!   (`close(fd)` alone would not end an armed multishot recv; it is cancelled first.)
//! - At most one send per connection is in flight, and its buffer (`out`) is not touched until its
//!   CQE; output produced meanwhile goes to `next`. Responses leave in the order they were made.
//! - Every buffer a CQE names is returned to the buffer ring in the turn that reaped it.
//! - At most `connections_max` connections are served per shard; the accept is cancelled at the
//!   limit, and the few it accepted meanwhile wait, unread, until a slot frees.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use glommio::io::BufferedFile;
use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

use crate::durability::aligned::AlignedBuf;
use crate::durability::journal::{self, Batch, BatchKind};
use crate::net::connection::{Connection, Next};
use crate::net::{LINGER, LINGER_BYTES_MAX};
use crate::shard::{ConnEvent, ConnKey, Release, Shard, Step};

/// While it has work, the driver gives way to the shard's other tasks (clock, reporter, mesh
/// receivers) at least this often. It cannot rely on `yield_if_needed` alone: glommio runs its
/// reactor (due timers, cross-shard channels) only once no task is runnable or its preempt timer
/// fires, 100 ms by default, and a shorter preempt timer (`preempt_timer(2 ms)` on the builder)
/// made one start in four of four unpinned shards on two CPUs hang in the mesh join, with either
/// transport. So the driver rings its own eventfd and awaits the READ (see `run`). 2 ms costs one
/// `write` and one glommio ring entry per period.
const YIELD_PERIOD: Duration = Duration::from_millis(2);

/// Submission queue entries. A turn stages about one recv re-arm and one send per active
/// connection; when the queue fills it is submitted and refilled, so this bounds the work per
/// `io_uring_enter`, not the connections.
const SQ_ENTRIES: u32 = 1024;

/// Completion queue entries. Multishot requests post many CQEs per SQE; the kernel keeps any
/// overflow (`FEAT_NODROP`, checked at start), so this only sizes what one turn reaps.
const CQ_ENTRIES: u32 = 8192;

/// Receive buffers in the shard's provided-buffer ring (a power of two, as the kernel requires).
/// A buffer is held only from its CQE to the end of that turn, so the ring covers the receives that
/// complete between two turns: a few hundred clients sending at once. Beyond that a recv ends with
/// ENOBUFS, its data waits in the socket, and it is re-armed once this turn's buffers are back.
const RECV_BUFFERS: u16 = 256;

/// Bytes per receive buffer: 4 KiB holds sixteen pipelined wrk requests, as the glommio
/// transport's read buffer did. 256 × 4 KiB is 1 MiB per shard, whatever the connection count.
const RECV_BUFFER_BYTES: usize = 4 * 1024;

/// All receive buffers together.
const RECV_BUFFERS_BYTES: usize = RECV_BUFFERS as usize * RECV_BUFFER_BYTES;

/// The buffer group of our one provided-buffer ring (any id; the ring is ours alone).
const BUFFER_GROUP: u16 = 0;

/// How often deadlines and the stop flag are checked: the lateness of a timeout and of a stop.
const SWEEP_PERIOD: Duration = Duration::from_millis(50);

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

/// After the shutdown grace, connections are cut; their requests get this long to come back from
/// the kernel before the shard exits anyway (leaking them, as the process is ending).
const TEARDOWN_WAIT: Duration = Duration::from_millis(200);

/// A closing connection whose requests have not come back from the kernel after this long gets
/// its socket shut down and its cancel sent again. Cancels normally complete within the turn;
/// this only guards against a request the cancel missed holding a slot for ever.
const STOP_RETRY: Duration = Duration::from_millis(500);

/// After an accept error that ended the multishot accept (EMFILE, ENFILE, ENOMEM), accepting
/// resumes after this long, so a full descriptor table does not spin the shard.
const ACCEPT_PAUSE: Duration = SWEEP_PERIOD;

/// Completions one turn handles while a journal write is in flight (see `Driver::turn`): small
/// enough that a turn lasts a few tens of microseconds (16 requests at ~3 µs each), against the
/// ~100 µs of the disk write it waits for; the rest wait in the completion queue for the next
/// turn, one `io_uring_enter` later.
const JOURNAL_TURN_CQES: usize = 16;

/// Bits of user data that carry a slot's generation (the op takes 8, the slot index 32).
const GENERATION_BITS: u32 = 24;
const GENERATION_MASK: u32 = (1 << GENERATION_BITS) - 1;

/// What a request was, encoded in its user data with the slot and generation it concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// The multishot accept (no slot).
    Accept = 1,
    /// A connection's multishot recv.
    Recv = 2,
    /// A connection's send.
    Send = 3,
    /// A cancel; its outcome shows in the cancelled request's own final CQE, so it is ignored.
    Cancel = 4,
    /// A write of the shard's journal (no slot): one group commit.
    Journal = 5,
}

/// User data for a request.
fn token(op: Op, slot: u32, generation: u32) -> u64 {
    (op as u64) << 56 | u64::from(generation & GENERATION_MASK) << 32 | u64::from(slot)
}

/// The op, slot and generation of user data we wrote.
fn untoken(user_data: u64) -> (Op, u32, u32) {
    let op = match user_data >> 56 {
        1 => Op::Accept,
        2 => Op::Recv,
        3 => Op::Send,
        4 => Op::Cancel,
        5 => Op::Journal,
        other => panic!("a CQE with user data we never wrote (op {other})"),
    };
    (
        op,
        user_data as u32,
        (user_data >> 32) as u32 & GENERATION_MASK,
    )
}

/// The io_uring setup every shard ring uses.
fn builder() -> io_uring::Builder {
    let mut builder = IoUring::builder();
    builder
        .setup_coop_taskrun() // 5.19: no IPI when a completion is queued while the shard runs
        .setup_taskrun_flag() // 5.19: tells `submit` to fetch queued completions (GETEVENTS)
        .setup_single_issuer() // 6.0: only the shard's thread submits; lets the kernel skip locks
        .setup_submit_all() // 5.18: one bad SQE does not hold back the rest of the batch
        .setup_cqsize(CQ_ENTRIES);
    builder
}

/// Checks, before any shard starts, that this kernel and process can run the transport: the ring
/// flags, the ops, a provided-buffer ring and an eventfd. `Err` says what is missing.
pub fn probe() -> Result<(), String> {
    let flags = "COOP_TASKRUN|TASKRUN_FLAG|SINGLE_ISSUER|SUBMIT_ALL";
    let ring = builder()
        .build(SQ_ENTRIES)
        .map_err(|e| format!("io_uring_setup with {flags}: {e} (needs Linux 6.0+)"))?;
    if !ring.params().is_feature_nodrop() {
        return Err("the kernel lacks IORING_FEAT_NODROP".into());
    }
    let mut ops = Probe::new();
    ring.submitter()
        .register_probe(&mut ops)
        .map_err(|e| format!("io_uring probe: {e}"))?;
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "accept"),
        (opcode::RecvMulti::CODE, "recv"),
        (opcode::Send::CODE, "send"),
        (opcode::AsyncCancel::CODE, "async cancel"),
    ] {
        if !ops.is_supported(code) {
            return Err(format!("io_uring lacks the {name} op"));
        }
    }
    let buffers =
        RecvBuffers::new(&ring).map_err(|e| format!("registering a provided-buffer ring: {e}"))?;
    let eventfd = new_eventfd().map_err(|e| format!("eventfd: {e}"))?;
    ring.submitter()
        .register_eventfd(eventfd.as_raw_fd())
        .map_err(|e| format!("registering an eventfd with io_uring: {e}"))?;
    drop(ring); // before the buffers it names
    drop(buffers);
    Ok(())
}

/// A blocking eventfd, as glommio makes its own: an io_uring READ of it then waits (poll-armed,
/// never an io-wq thread) instead of failing with EAGAIN.
fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new descriptor that we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The shard's provided-buffer ring: `RECV_BUFFERS` buffers of `RECV_BUFFER_BYTES`, which the
/// kernel hands to multishot recvs.
struct RecvBuffers {
    /// The ring of buffer descriptors the kernel reads (one page, mmap'd for alignment).
    entries: *mut types::BufRingEntry,
    /// The buffers themselves, back to back (`RECV_BUFFERS × RECV_BUFFER_BYTES`, from a boxed
    /// slice freed in `drop`). A raw pointer, because the kernel writes through it.
    memory: *mut u8,
    /// Our producer index: descriptors written so far (published to the kernel by `publish`).
    tail: u16,
}

impl RecvBuffers {
    /// Allocates the buffers and registers them with `ring`, all available.
    fn new(ring: &IoUring) -> io::Result<RecvBuffers> {
        let bytes = usize::from(RECV_BUFFERS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; the result is checked before use.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if entries == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut buffers = RecvBuffers {
            entries: entries.cast(),
            memory: Box::into_raw(vec![0u8; RECV_BUFFERS_BYTES].into_boxed_slice()).cast(),
            tail: 0,
        };
        // SAFETY: the descriptor ring and the buffers live as long as `buffers`, which the
        // driver drops after the ring (field order), so the kernel never sees them freed.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                buffers.entries as u64,
                RECV_BUFFERS,
                BUFFER_GROUP,
                0,
            )?
        };
        for id in 0..RECV_BUFFERS {
            buffers.recycle(id);
        }
        buffers.publish();
        Ok(buffers)
    }

    /// The first `len` bytes of buffer `id`, which a CQE just filled.
    fn get(&self, id: u16, len: usize) -> &[u8] {
        assert!(id < RECV_BUFFERS && len <= RECV_BUFFER_BYTES);
        // SAFETY: in bounds (asserted); the kernel is done with buffer `id` (its CQE came) and
        // gets it back only after this borrow ends (`recycle` takes `&mut self`).
        unsafe {
            std::slice::from_raw_parts(self.memory.add(usize::from(id) * RECV_BUFFER_BYTES), len)
        }
    }

    /// Gives buffer `id` back to the kernel (seen at the next `publish`).
    fn recycle(&mut self, id: u16) {
        assert!(id < RECV_BUFFERS);
        let index = usize::from(self.tail & (RECV_BUFFERS - 1));
        // SAFETY: `index` < RECV_BUFFERS, the number of descriptors mapped; the kernel does not
        // read descriptors past the published tail.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(self.memory as u64 + u64::from(id) * RECV_BUFFER_BYTES as u64);
        entry.set_len(RECV_BUFFER_BYTES as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every recycled buffer visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail lives inside the mapped descriptor ring; the kernel reads it atomically.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.entries) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for RecvBuffers {
    fn drop(&mut self) {
        let bytes = usize::from(RECV_BUFFERS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: unmaps what `new` mapped and frees what it boxed; the ring that used them is
        // gone (dropped first).
        unsafe {
            libc::munmap(self.entries.cast(), bytes);
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.memory,
                RECV_BUFFERS_BYTES,
            )));
        }
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
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
struct Slot {
    /// Bumped when the slot is freed, so a stale CQE would be told from a live one.
    generation: u32,
    /// The socket (-1 when free).
    fd: RawFd,
    /// Where the connection is in its life.
    phase: Phase,
    /// The protocol state.
    conn: Connection,
    /// Output being sent, or to be sent next turn; not touched while `sending`. Bytes leave in
    /// the order `out[sent..]`, then `next`.
    out: Vec<u8>,
    /// Bytes of `out` the kernel has taken (short sends are continued from here).
    sent: usize,
    /// Output produced while a send of `out` is in flight (or while `next` already held some).
    next: Vec<u8>,
    /// A send is in flight.
    sending: bool,
    /// A multishot recv is armed: its final CQE (no `F_MORE`) has not come.
    recv_armed: bool,
    /// A cancel of the armed recv was staged.
    recv_cancelled: bool,
    /// The peer ended its side (recv returned 0): nothing more to read.
    peer_closed: bool,
    /// The drain shut our read side (`SHUT_RD`) so that the recv ends once the peer is quiet.
    read_shut: bool,
    /// A request is partly received: the head deadline runs, not the idle timeout.
    in_request: bool,
    /// When the connection is closed unless something happens (head, idle, send, linger).
    deadline: Instant,
    /// Bytes dropped while lingering.
    lingered_bytes: usize,
    /// Listed in `State::touched`.
    touched: bool,
    /// When the input that ended in the order this connection waits for was reaped: the start of
    /// the service time recorded when the order resumes (with `--latency-dump`).
    reaped_at: Instant,
    /// The core holds this connection's output (a response waits for the journal): nothing is
    /// sent until the core releases it.
    held: bool,
}

impl Slot {
    fn free(now: Instant) -> Slot {
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
    fn key(&self, index: u32) -> ConnKey {
        u64::from(self.generation) << 32 | u64::from(index)
    }

    /// Output produced and not yet taken by the kernel.
    fn unsent(&self) -> usize {
        self.out.len() - self.sent + self.next.len()
    }
}

/// Everything the driver knows besides the ring itself. Handlers change state and stage SQEs; only
/// the driver talks to the ring.
struct State {
    /// The shard: app, date, limits, timeouts, draining flag.
    shard: Rc<Shard>,
    /// Connection slots; grows up to `connections_max`, never shrinks.
    slots: Vec<Slot>,
    /// Indexes of free slots.
    free: Vec<u32>,
    /// Slots whose state changed this turn, to `advance` at its end.
    touched: Vec<u32>,
    /// Open connections (slots not free).
    open: usize,
    /// At most this many open connections.
    connections_max: usize,
    /// Accepted sockets waiting for a slot (the accept overshot the limit before its cancel).
    waiting: VecDeque<RawFd>,
    /// The receive buffers.
    buffers: RecvBuffers,
    /// Emptied output buffers for reuse.
    pool: Vec<Vec<u8>>,
    /// Our listening socket, until the drain closes it.
    listener: Option<OwnedFd>,
    /// The multishot accept is armed.
    accept_armed: bool,
    /// A cancel of the accept was staged.
    accept_cancelled: bool,
    /// The accept stays unarmed until then, after an error ended it.
    accept_paused_until: Instant,
    /// Whether accepted sockets inherit TCP_NODELAY from the listener (checked once).
    nodelay_inherited: Option<bool>,
    /// A stop was requested: accept nothing, close idle connections, finish busy ones.
    draining: bool,
    /// When the drain gives up on busy connections.
    drain_deadline: Instant,
    /// The grace of a drain.
    shutdown_timeout: Duration,
    /// When the drain gave up: the teardown then waits `TEARDOWN_WAIT` for the kernel.
    aborted_at: Option<Instant>,
    /// Staged SQEs, submitted at the start of the next turn.
    staged: Vec<squeue::Entry>,
    /// Slots whose output the core holds.
    held: usize,
    /// The group commit this ring is writing, if any.
    journal_write: Option<JournalWrite>,
    /// The aligned buffer of the last journal write, kept for the next.
    spare: Option<AlignedBuf>,
}

/// A group commit on its way through the ring: the batch, its bytes in a buffer aligned for
/// O_DIRECT, how many of them the kernel has written, and the file they go to.
struct JournalWrite {
    batch: Batch,
    buf: AlignedBuf,
    done: usize,
    fd: RawFd,
}

impl State {
    fn on_cqe(&mut self, cqe: &cqueue::Entry, now: Instant) {
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

    fn on_accept(&mut self, res: i32, flags: u32, now: Instant) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        if res >= 0 {
            if self.draining {
                close(res); // as a connection still in the backlog when the listener closes
            } else {
                self.waiting.push_back(res);
            }
        } else if res != -libc::ECANCELED {
            tracing::debug!(error = %io::Error::from_raw_os_error(-res), "accept failed");
            if !cqueue::more(flags) {
                self.accept_paused_until = now + ACCEPT_PAUSE;
            }
        }
    }

    fn on_recv(&mut self, index: u32, res: i32, flags: u32, now: Instant) {
        self.touch(index);
        let slot = &mut self.slots[index as usize];
        assert!(slot.recv_armed);
        if !cqueue::more(flags) {
            slot.recv_armed = false;
        }
        // The kernel may name a buffer on an end of stream or an error too; it is ours again.
        let buffer = cqueue::buffer_select(flags);
        if res > 0 {
            let id = buffer.expect("the kernel names the buffer of every recv with data");
            self.on_data(index, id, res as usize, now);
        } else if res == 0 {
            slot.peer_closed = true;
        } else if res == -libc::ENOBUFS || res == -libc::ECANCELED {
            // ENOBUFS: the data waits in the socket; `advance` re-arms after the buffers are back.
            // ECANCELED: we asked (backpressure or close).
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
                let step = with_output(slot, &mut self.pool, |conn, out| {
                    shard.core.borrow_mut().input(key, conn, data, out, now)
                });
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
    fn take_conn_events(&mut self, now: Instant) -> bool {
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
                    let step = with_output(slot, &mut self.pool, |conn, out| {
                        shard.core.borrow_mut().resume(key, conn, answer, out, now)
                    });
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
    fn stop(&mut self, index: u32) {
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

    fn touch(&mut self, index: u32) {
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
    fn after_batch(&mut self, now: Instant) {
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

    /// Admits waiting sockets up to the limit, and arms or cancels the accept so that open plus
    /// waiting stays at most `connections_max`; closes the listener once draining.
    fn control_accept(&mut self, now: Instant) {
        while self.open < self.connections_max {
            let Some(fd) = self.waiting.pop_front() else {
                break;
            };
            self.admit(fd, now);
        }
        let Some(listener) = &self.listener else {
            return;
        };
        let want = !self.draining
            && self.open + self.waiting.len() < self.connections_max
            && now >= self.accept_paused_until;
        if want && !self.accept_armed {
            let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(token(Op::Accept, 0, 0));
            self.staged.push(accept);
            self.accept_armed = true;
            self.accept_cancelled = false;
        } else if !want && self.accept_armed && !self.accept_cancelled {
            let cancel = opcode::AsyncCancel::new(token(Op::Accept, 0, 0))
                .build()
                .user_data(token(Op::Cancel, 0, 0));
            self.staged.push(cancel);
            self.accept_cancelled = true;
        }
        if self.draining && !self.accept_armed {
            self.listener = None; // closes it: the backlog is reset, as the glommio transport does
        }
    }

    /// Gives an accepted socket a slot.
    fn admit(&mut self, fd: RawFd, now: Instant) {
        self.shard
            .core
            .borrow_mut()
            .app
            .counters
            .connections_accepted += 1;
        self.set_nodelay(fd);
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::free(now));
                u32::try_from(self.slots.len() - 1).expect("connections_max fits in u32")
            }
        };
        let slot = &mut self.slots[index as usize];
        assert!(slot.phase == Phase::Free && !slot.recv_armed && !slot.sending && !slot.touched);
        slot.fd = fd;
        slot.phase = Phase::Open;
        slot.peer_closed = false;
        slot.read_shut = false;
        slot.in_request = false;
        slot.deadline = now + self.shard.idle_timeout;
        self.open += 1;
        assert!(self.open <= self.connections_max);
        self.touch(index);
    }

    /// TCP_NODELAY: replies are whole, so Nagle would only delay them. Linux copies the option
    /// from the listener to accepted sockets; that is checked on the first one, and if not, every
    /// socket gets its own setsockopt.
    fn set_nodelay(&mut self, fd: RawFd) {
        let inherited = *self.nodelay_inherited.get_or_insert_with(|| {
            let mut on: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt writes an int into `on`, of the size given.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&mut on as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            rc == 0 && on != 0
        });
        if !inherited {
            let on: libc::c_int = 1;
            // SAFETY: setsockopt reads an int from `on`, of the size given.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
    }

    /// Checks every connection's deadline, and starts the drain when asked to stop.
    fn sweep(&mut self, now: Instant, stop_requested: bool) {
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

    /// Starts the next group commit through this ring, when the core hands one out (`idle`: the
    /// shard has nothing else to do; else only an overdue one): the disk write's completion then
    /// comes in the same loop as the sockets', with no wait for glommio's scheduler (which,
    /// measured under load, tripled a commit's latency). A compaction goes to the journal task
    /// (it renames and syncs files through glommio).
    fn start_journal_write(&mut self, now: Instant, idle: bool) {
        if !self.shard.driver_writes.get() || self.journal_write.is_some() {
            return;
        }
        let Some(batch) = self.shard.core.borrow_mut().next_batch(now, idle) else {
            return;
        };
        if batch.kind == BatchKind::Compact {
            *self.shard.compaction.borrow_mut() = Some(batch);
            self.shard.kick_journal();
            return;
        }
        let file = self
            .shard
            .journal_file
            .as_ref()
            .expect("a batch needs a file");
        let fd = file
            .fd
            .get()
            .expect("the driver writes only to a disk file");
        let buf = AlignedBuf::copy_of(&batch.bytes, self.spare.take());
        self.journal_write = Some(JournalWrite {
            batch,
            buf,
            done: 0,
            fd,
        });
        self.stage_journal();
    }

    /// Stages the rest of the journal write in flight.
    fn stage_journal(&mut self) {
        let write = self.journal_write.as_ref().expect("a journal write");
        let rest = &write.buf.bytes()[write.done..];
        let len = u32::try_from(rest.len()).expect("a batch is at most 64 KiB");
        let sqe = opcode::Write::new(types::Fd(write.fd), rest.as_ptr(), len)
            .offset(write.batch.offset + write.done as u64)
            .build()
            .user_data(token(Op::Journal, 0, 0));
        self.staged.push(sqe);
    }

    /// The journal write completed with `res` (bytes written, or -errno): continue a short
    /// write, or tell the core the batch is durable (O_DSYNC) or the journal failed.
    fn on_journal_write(&mut self, res: i32, now: Instant) {
        let write = self
            .journal_write
            .as_mut()
            .expect("a journal write was in flight");
        let at = write.batch.offset + write.done as u64;
        let written = if res < 0 {
            Err(io::Error::from_raw_os_error(-res))
        } else {
            Ok(res as usize)
        };
        let path = self
            .shard
            .journal_file
            .as_ref()
            .expect("a file")
            .path
            .borrow()
            .clone();
        match journal::continue_write(&path, at, write.done, written) {
            Err(error) => {
                self.journal_write = None;
                self.shard.core.borrow_mut().write_failed(error);
            }
            Ok(done) if done < write.buf.bytes().len() => {
                write.done = done;
                self.stage_journal();
            }
            Ok(_) => {
                let write = self.journal_write.take().expect("checked above");
                self.shard.core.borrow_mut().write_done(&write.batch, now);
                self.spare = Some(write.buf);
            }
        }
    }

    /// Group commits complete through glommio's reactor (a compaction in the journal task, or
    /// every commit once the journal task writes them): held responses then need the driver to
    /// give way often.
    fn commits_via_glommio(&self) -> bool {
        self.journal_write.is_none() && self.shard.core.borrow().write_out()
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
    fn finished(&self) -> bool {
        self.draining
            && self.open == 0
            && self.listener.is_none()
            && !self.accept_armed
            && self.journal_write.is_none()
    }
}

/// Runs `step` (new input, or a decided order) on a connection with the output buffer its bytes
/// must go to: bytes leave in the order `out[sent..]`, then `next`, so `out` may grow only when
/// no send holds it and nothing waits in `next`.
fn with_output(
    slot: &mut Slot,
    pool: &mut Vec<Vec<u8>>,
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
    step(&mut slot.conn, out)
}

fn close(fd: RawFd) {
    // SAFETY: `fd` is a socket we own and no request in flight names it.
    unsafe { libc::close(fd) };
}

/// A shard's transport: its ring, the eventfd that wakes it through glommio, its connections.
pub(crate) struct Driver {
    /// Our ring. Declared before `state` so it is dropped before the buffers it uses.
    ring: IoUring,
    /// CQEs reaped in one turn (reused).
    cqes: Vec<cqueue::Entry>,
    /// The connections and everything they use.
    state: State,
    /// The eventfd registered with `ring`, owned by glommio, which READs it to wake us.
    eventfd: Rc<BufferedFile>,
}

/// A pending READ of the eventfd; `true` if it completed without error.
type Wake = Pin<Box<dyn Future<Output = bool>>>;

/// The pending READ of `eventfd`, started if there is none. The READ is kept across waits (a READ
/// dropped in flight would make glommio submit a cancel) and reset once it completes.
fn wake_read<'a>(eventfd: &Rc<BufferedFile>, wake: &'a mut Option<Wake>) -> &'a mut Wake {
    wake.get_or_insert_with(|| {
        let eventfd = eventfd.clone();
        Box::pin(async move { eventfd.read_at(0, 8).await.is_ok() })
    })
}

/// Makes the eventfd readable, so a READ of it completes at once.
fn ring_bell(eventfd: &BufferedFile) {
    // SAFETY: writes 8 bytes to an eventfd we own.
    unsafe { libc::eventfd_write(eventfd.as_raw_fd(), 1) };
}

impl Driver {
    /// Creates the shard's ring on the calling (shard) thread, which alone may use it.
    pub(crate) fn new(
        shard: Rc<Shard>,
        listener: OwnedFd,
        connections_max: usize,
        shutdown_timeout: Duration,
    ) -> io::Result<Driver> {
        assert!(connections_max >= 1 && u32::try_from(connections_max).is_ok());
        let mut ring = builder().build(SQ_ENTRIES)?;
        let buffers = RecvBuffers::new(&ring)?;
        let eventfd = new_eventfd()?;
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        // Off while we run: we reap at every turn anyway; it is enabled only to park.
        ring.completion().disable_eventfd();
        let now = Instant::now();
        // The driver writes the journal's append batches itself when the file is on a disk.
        let disk = shard
            .journal_file
            .as_ref()
            .is_some_and(|f| f.fd.get().is_some());
        shard.driver_writes.set(disk);
        // SAFETY: the descriptor moves into glommio's file, which closes it when dropped.
        let eventfd = Rc::new(unsafe { BufferedFile::from_raw_fd(eventfd.into_raw_fd()) });
        Ok(Driver {
            ring,
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            state: State {
                shard,
                slots: Vec::new(),
                free: Vec::new(),
                touched: Vec::new(),
                open: 0,
                connections_max,
                waiting: VecDeque::new(),
                buffers,
                pool: Vec::new(),
                listener: Some(listener),
                accept_armed: false,
                accept_cancelled: false,
                accept_paused_until: now,
                nodelay_inherited: None,
                draining: false,
                drain_deadline: now,
                shutdown_timeout,
                aborted_at: None,
                staged: Vec::new(),
                held: 0,
                journal_write: None,
                spare: None,
            },
            eventfd,
        })
    }

    /// Serves until `stop` is set and the drain is over.
    pub(crate) async fn run(mut self, stop: &AtomicBool) -> Result<(), String> {
        self.state.shard.driver.set(Some(self.eventfd.as_raw_fd()));
        self.state.control_accept(Instant::now());
        let mut next_sweep = Instant::now() + SWEEP_PERIOD;
        let mut next_yield = Instant::now() + YIELD_PERIOD;
        let mut wake: Option<Wake> = None;
        let result = loop {
            let now = Instant::now();
            let reaped = match self.turn(now) {
                Ok(reaped) => reaped,
                Err(e) => break Err(format!("io_uring: {e}")),
            };
            if now >= next_sweep {
                self.state.sweep(now, stop.load(Ordering::Relaxed));
                self.state.after_batch(now);
                next_sweep = now + SWEEP_PERIOD;
            }
            if self.state.finished() {
                break Ok(());
            }
            if self
                .state
                .aborted_at
                .is_some_and(|at| now >= at + TEARDOWN_WAIT)
            {
                tracing::warn!(
                    connections = self.state.open,
                    "requests still in the kernel at exit"
                );
                break Ok(());
            }
            if reaped > 0 || !self.state.staged.is_empty() {
                // Responses held for the journal wait for the committer task, whose disk I/O
                // completes only when glommio runs its reactor: give way at once, or group
                // commits would complete once per `YIELD_PERIOD` under load.
                if now >= next_yield || (self.state.held > 0 && self.state.commits_via_glommio()) {
                    // The READ completes as glommio submits it, after glommio ran its reactor
                    // and every other runnable task: our task is not runnable meanwhile.
                    ring_bell(&self.eventfd);
                    let ok = wake_read(&self.eventfd, &mut wake).await;
                    wake = None;
                    if !ok {
                        tracing::warn!("reading the io_uring eventfd failed");
                    }
                    next_yield = Instant::now() + YIELD_PERIOD;
                } else {
                    glommio::yield_if_needed().await;
                }
                continue;
            }
            // Nothing else to do: the changes of every request that arrived go to the disk in one
            // group commit (see `COMMIT_DELAY_MAX` for the busy case).
            if self.state.shard.driver_writes.get() && self.state.shard.core.borrow().wants_write()
            {
                self.state.start_journal_write(now, true);
                continue;
            }
            // Nothing to do: arm the eventfd, then submit, which posts completions queued since
            // the last entry (and signals the eventfd for them); only an empty CQ after that
            // makes sleeping safe. A wake with nothing to reap is harmless.
            self.ring.completion().enable_eventfd();
            if let Err(e) = self.submit() {
                break Err(format!("io_uring: {e}"));
            }
            if !self.ring.completion().is_empty() {
                self.ring.completion().disable_eventfd();
                continue;
            }
            let read = wake_read(&self.eventfd, &mut wake);
            let timeout = next_sweep.saturating_duration_since(Instant::now());
            self.state.shard.driver.park(true);
            let woke = futures_lite::future::or(async { Some(read.await) }, async {
                glommio::timer::sleep(timeout).await;
                None
            })
            .await;
            self.state.shard.driver.park(false);
            self.ring.completion().disable_eventfd();
            next_yield = Instant::now() + YIELD_PERIOD; // glommio just ran everything else
            if let Some(ok) = woke {
                wake = None;
                if !ok {
                    tracing::warn!("reading the io_uring eventfd failed; waking by the sweep only");
                }
            }
        };
        self.state.shard.driver.set(None); // the eventfd closes with the driver
                                           // The shard still journals while it leaves (a peer's last messages): its journal task
                                           // takes over the writes (none while a write of ours is still out: the core hands out
                                           // no second batch).
        self.state.shard.driver_writes.set(false);
        self.state.shard.kick_journal();
        if let Some(read) = wake {
            // Complete our READ so that glommio holds no request on the eventfd when it closes it.
            ring_bell(&self.eventfd);
            read.await;
        }
        if self.state.open > 0 {
            // Requests still name our buffers: leak them all rather than free memory the kernel
            // may yet write. The process is exiting.
            std::mem::forget(self);
        }
        result
    }

    /// One turn: submit what was staged, reap what completed, act on it. Returns CQEs reaped.
    fn turn(&mut self, now: Instant) -> io::Result<usize> {
        self.submit()?;
        self.cqes.clear();
        // While a group commit is on its way to the disk, short turns: its completion is posted
        // and reaped at the next entry into the kernel, and the responses it holds leave at the
        // end of the turn that reaps it, so a long turn would add its length to every commit.
        let limit = if self.state.journal_write.is_some() {
            JOURNAL_TURN_CQES
        } else {
            usize::MAX
        };
        self.cqes.extend(self.ring.completion().take(limit));
        for cqe in &self.cqes {
            self.state.on_cqe(cqe, now);
        }
        // What the core told connections meanwhile (answers, released output) is carried out;
        // its other effects (mail, forwarded requests) go to their tasks.
        let news = self.state.take_conn_events(now);
        self.state.shard.after();
        if !self.cqes.is_empty() || news {
            self.state.after_batch(now);
        }
        self.state.start_journal_write(now, false);
        Ok(self.cqes.len() + usize::from(news))
    }

    /// Moves staged SQEs into the ring and enters the kernel once (more when the SQ fills). Under
    /// COOP_TASKRUN the entry is also what posts completions queued for us.
    fn submit(&mut self) -> io::Result<()> {
        let mut moved = 0;
        let result = loop {
            {
                let mut sq = self.ring.submission();
                let room = sq.capacity() - sq.len();
                let batch =
                    &self.state.staged[moved..][..room.min(self.state.staged.len() - moved)];
                // SAFETY: every staged entry points at memory kept until its CQE: send buffers
                // are not touched while `sending`, receive buffers are registered, fds are open.
                unsafe { sq.push_multiple(batch).expect("room was checked") };
                moved += batch.len();
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // The CQ overflowed and the kernel wants it reaped first: what is in the SQ
                // stays there for the next turn.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {
                    break Ok(())
                }
                Err(e) => break Err(e),
            }
            if moved == self.state.staged.len() {
                break Ok(());
            }
        };
        self.state.staged.drain(..moved);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let max_slot = u32::try_from(crate::config::CONNECTIONS_MAX_RANGE.end() - 1).unwrap();
        for (op, slot, generation) in [
            (Op::Accept, 0, 0),
            (Op::Recv, 0, 1),
            (Op::Send, 7, GENERATION_MASK),
            (Op::Cancel, max_slot, 12_345),
            (Op::Recv, u32::MAX, 3),
        ] {
            assert_eq!(untoken(token(op, slot, generation)), (op, slot, generation));
        }
    }

    #[test]
    fn generations_wrap_within_their_bits() {
        // A slot reused 2^24 times gets generation 0 again: user data stays well formed.
        let wrapped = GENERATION_MASK.wrapping_add(1);
        assert_eq!(untoken(token(Op::Send, 1, wrapped)), (Op::Send, 1, 0));
    }

    #[test]
    fn the_buffer_ring_is_a_power_of_two_of_whole_buffers() {
        assert!(RECV_BUFFERS.is_power_of_two() && RECV_BUFFERS <= 32_768);
        assert_eq!(RECV_BUFFERS_BYTES % 4096, 0);
    }

    #[test]
    fn the_probe_explains_a_refusal() {
        // This kernel (6.0+ in CI) runs the transport; an older one must say why, not panic.
        if let Err(why) = probe() {
            assert!(!why.is_empty());
        }
    }
}

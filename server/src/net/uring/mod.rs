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
//!   `io_uring_enter`), reap every completion, feed received bytes to each [`Connection`](crate::net::connection::Connection), then
//!   stage at most one send per connection with everything that connection produced.
//! - Multishot accept on the shard's own SO_REUSEPORT listener; multishot recv per connection, the
//!   kernel picking a buffer from one provided-buffer ring per shard. A buffer is held only from its
//!   CQE to the end of the turn that reaps it, so an idle connection holds no receive buffer, and
//!   idle connections hold no output buffer either (output buffers come from a per-shard pool).
//! - While busy, the driver gives way to glommio every [`YIELD_PERIOD`](driver::YIELD_PERIOD): it writes the eventfd
//!   itself and awaits the READ, so glommio runs its reactor and other tasks before resuming it;
//!   timers and mesh receivers keep running under load. It also gives way at once while mesh
//!   mail waits ([`crate::shard::MailCounts`]: a peer's message not yet applied here, or this
//!   shard's ready to leave), so a cross-shard hop does not wait for the period.
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
//!
//! # Layout
//! - `mod.rs`: the limits several files share, the user data of a request (`token`), the ring's
//!   setup (`builder`) and [`probe`].
//! - `driver.rs`: the [`Driver`], the ring loop: turns, submission, giving way to glommio, parking.
//! - `connections.rs`: `State`, everything the driver knows besides the ring, and the handlers
//!   of a connection's completions; `accept.rs`, `sweep.rs` and `commit.rs` add the handlers of
//!   the accept, of deadlines and the drain, and of journal writes.
//! - `slots.rs`: one connection's state (`Slot`, `Phase`); `buffers.rs`: the provided-buffer ring.

mod accept;
mod buffers;
mod commit;
mod connections;
mod driver;
mod slots;
mod sweep;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use io_uring::{opcode, IoUring, Probe};

use buffers::RecvBuffers;
pub(crate) use driver::Driver;

/// Submission queue entries. A turn stages about one recv re-arm and one send per active
/// connection; when the queue fills it is submitted and refilled, so this bounds the work per
/// `io_uring_enter`, not the connections.
const SQ_ENTRIES: u32 = 1024;

/// Completion queue entries. Multishot requests post many CQEs per SQE; the kernel keeps any
/// overflow (`FEAT_NODROP`, checked at start), so this only sizes what one turn reaps.
const CQ_ENTRIES: u32 = 8192;

/// How often deadlines and the stop flag are checked: the lateness of a timeout and of a stop.
const SWEEP_PERIOD: Duration = Duration::from_millis(50);

/// A closing connection whose requests have not come back from the kernel after this long gets
/// its socket shut down and its cancel sent again. Cancels normally complete within the turn;
/// this only guards against a request the cancel missed holding a slot for ever.
const STOP_RETRY: Duration = Duration::from_millis(500);

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
    fn the_probe_explains_a_refusal() {
        // This kernel (6.0+ in CI) runs the transport; an older one, or a sandbox that forbids
        // io_uring, must say why in one line, not panic.
        match probe() {
            Ok(()) => {
                // What the probe accepted is what `Driver::new` builds: the same setup, sized
                // as the driver sizes it, with every op the driver stages (the journal's
                // write too), and a provided-buffer ring.
                let ring = builder()
                    .build(SQ_ENTRIES)
                    .expect("the probe built this ring");
                assert!(ring.params().is_setup_single_issuer());
                assert!(ring.params().is_feature_nodrop());
                assert!(ring.params().sq_entries() >= SQ_ENTRIES);
                assert_eq!(ring.params().cq_entries(), CQ_ENTRIES);
                let mut ops = Probe::new();
                ring.submitter().register_probe(&mut ops).unwrap();
                for code in [
                    opcode::AcceptMulti::CODE,
                    opcode::RecvMulti::CODE,
                    opcode::Send::CODE,
                    opcode::AsyncCancel::CODE,
                    opcode::Write::CODE,
                ] {
                    assert!(ops.is_supported(code), "op {code} is not supported");
                }
                let buffers = RecvBuffers::new(&ring).expect("the probe registered one");
                drop(ring); // before the buffers it names
                drop(buffers);
            }
            Err(why) => {
                assert!(!why.is_empty() && !why.contains('\n'), "{why:?}");
                assert!(
                    ["io_uring", "IORING", "eventfd", "provided-buffer"]
                        .iter()
                        .any(|part| why.contains(part)),
                    "the refusal names what is missing: {why:?}"
                );
            }
        }
    }
}

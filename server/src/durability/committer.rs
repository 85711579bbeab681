//! A shard's side of its journal at run time: the changes the stock protocol makes are appended
//! to the shard's [`Tail`] right after the step that made them, and one committer task writes and
//! syncs them in groups ([`crate::durability::journal::commit`]), so that everything appended while one batch
//! was on its way to the disk shares the next flush.
//!
//! What waits for durability:
//! - responses of requests that sold: the transport holds them until [`Committer::durable`]
//!   reaches the sequence number of the step that produced them (uring: the slot's `hold`;
//!   glommio: [`Committer::wait`]);
//! - protocol messages that carry tickets: the flusher sends one only once the `Give` it follows
//!   is durable, so a crash can never keep the receiver's `Receive` and lose the sender's `Give`.
//!
//! # Invariants
//! - A sale is acknowledged only after the record covering it is durable.
//! - After a write or sync error nothing more is appended or acknowledged: the shard stops
//!   selling for good (until restart), held responses are dropped with their connections, and
//!   the error is logged once with its cause.

use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::durability::journal::{self, Batch, BatchKind, Change, JournalError, Seq, Tail, Writer};
use crate::shard::Shard;

/// The uring transport starts a group commit when the shard has nothing else to do (every request
/// that arrived is answered or waits for the disk), or once the oldest change waiting for one has
/// waited this long. Starting one at the end of every turn instead makes more, smaller commits,
/// and the disk write's helper thread (io_uring's io-wq: a DSYNC write on a device without FUA
/// blocks on a cache flush) then competes with the shard for its CPU: measured on the 2-core VM at
/// 64 connections, 32 sales per commit and 300 µs per commit that way, against about 50 and
/// 160 µs this way. 250 µs (a couple of the disk's own write latencies) bounds the wait behind a
/// shard that never idles; 200 to 500 µs measured the same within noise.
const COMMIT_DELAY_MAX: Duration = Duration::from_micros(250);

/// A shard's journal: the tail on the request path, the writer in the committer task.
pub(crate) struct Committer {
    /// Records appended and not yet durable, and what is.
    tail: RefCell<Tail>,
    /// The file half, taken by the committer task when it starts.
    writer: RefCell<Option<Writer>>,
    /// The sequence number of the last change appended.
    appended: Cell<Seq>,
    /// Wakes the committer task when it waits for work; holds one wake at most.
    kick: LocalSender<()>,
    /// The committer task's end of `kick`, until it starts.
    kicked: RefCell<Option<LocalReceiver<()>>>,
    /// Tasks waiting for a sequence number to become durable, in order of their numbers.
    waiters: RefCell<VecDeque<(Seq, LocalSender<bool>)>>,
    /// Group commits done, changes they made durable, and the time spent in them (for the log
    /// line at exit).
    pub(crate) stats: Cell<CommitStats>,
    /// The uring transport writes append batches through its own ring ([`Committer::next_write`]);
    /// the committer task then only runs compactions. Set once, when the driver starts.
    driver_writes: Cell<bool>,
    /// The shard file's descriptor (it changes when a compaction replaces the file), or -1.
    fd: Cell<RawFd>,
    /// The shard file's path, for error messages.
    path: RefCell<PathBuf>,
    /// The append batch the driver is writing.
    writing: RefCell<Option<DriverWrite>>,
    /// When the oldest change not yet in a write was appended (`None`: all are in one).
    waiting_since: Cell<Option<Instant>>,
    /// The aligned buffer of the last write, kept for the next.
    spare: RefCell<Option<AlignedBuf>>,
    /// A compaction batch for the committer task, and whether one is running.
    compaction: RefCell<Option<Batch>>,
    compacting: Cell<bool>,
}

/// An append batch on its way through the driver's ring: the batch, its bytes in a buffer
/// aligned for O_DIRECT, and how many of them the kernel has written.
struct DriverWrite {
    batch: Batch,
    buf: AlignedBuf,
    done: usize,
    began: Instant,
}

/// What the driver stages: `pwrite(fd, ptr, len, offset)`. The buffer lives in the committer
/// (`Committer::writing`) until the write's completion is handed back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteOp {
    /// The shard file.
    pub fd: RawFd,
    /// Where in it.
    pub offset: u64,
    /// The bytes (block aligned, as O_DIRECT wants).
    pub ptr: *const u8,
    /// How many.
    pub len: u32,
}

/// The alignment O_DIRECT needs of a buffer's address: one block (4 KiB covers 512-byte and
/// 4-KiB-sector devices alike).
const DIRECT_ALIGN: usize = journal::BLOCK_BYTES;

/// A heap buffer aligned to [`DIRECT_ALIGN`], reused from batch to batch.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    capacity: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer holding a copy of `bytes` (whose length is a whole number of blocks).
    fn copy_of(bytes: &[u8], reuse: Option<AlignedBuf>) -> AlignedBuf {
        let mut buf = match reuse {
            Some(buf) if buf.capacity >= bytes.len() => buf,
            _ => {
                let capacity = bytes.len().max(DIRECT_ALIGN);
                let layout = Layout::from_size_align(capacity, DIRECT_ALIGN).expect("layout");
                // SAFETY: a non-zero size with a power-of-two alignment.
                let ptr = unsafe { std::alloc::alloc(layout) };
                let ptr = std::ptr::NonNull::new(ptr)
                    .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
                AlignedBuf {
                    ptr,
                    capacity,
                    len: 0,
                }
            }
        };
        // SAFETY: `capacity >= bytes.len()`, and the regions are distinct allocations.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.ptr.as_ptr(), bytes.len()) };
        buf.len = bytes.len();
        buf
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.capacity, DIRECT_ALIGN).expect("layout");
        // SAFETY: allocated in `copy_of` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

/// What a shard's committer did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CommitStats {
    /// Group commits (one O_DSYNC write each, or a compaction).
    pub commits: u64,
    /// Changes they made durable.
    pub changes: u64,
    /// Microseconds from taking a batch to its being durable, summed.
    pub busy_us: u64,
}

impl Committer {
    /// A committer over an opened journal.
    pub(crate) fn new(writer: Writer, tail: Tail) -> Committer {
        let (kick, kicked) = local_channel::new_bounded(1);
        let durable = tail.durable();
        let fd = writer.raw_fd().unwrap_or(-1);
        let path = writer.path();
        Committer {
            driver_writes: Cell::new(false),
            fd: Cell::new(fd),
            path: RefCell::new(path),
            writing: RefCell::new(None),
            waiting_since: Cell::new(None),
            spare: RefCell::new(None),
            compaction: RefCell::new(None),
            compacting: Cell::new(false),
            tail: RefCell::new(tail),
            writer: RefCell::new(Some(writer)),
            appended: Cell::new(durable),
            kick,
            kicked: RefCell::new(Some(kicked)),
            waiters: RefCell::new(VecDeque::new()),
            stats: Cell::new(CommitStats::default()),
        }
    }

    /// Starts the committer task on the calling shard.
    pub(crate) fn start(shard: &Rc<Shard>) {
        if shard.committer.is_some() {
            glommio::spawn_local(run(shard.clone())).detach();
        }
    }

    /// Appends `changes` (drained) to the tail; returns the sequence number of the last one, or
    /// `None` when there was none. After a failure the changes are dropped: the shard no longer
    /// acknowledges anything, and recovery reconciles what was in flight.
    pub(crate) fn append(&self, changes: &mut Vec<Change>) -> Option<Seq> {
        if changes.is_empty() {
            return None;
        }
        let mut tail = self.tail.borrow_mut();
        for change in changes.drain(..) {
            if let Ok(seq) = tail.append(change) {
                self.appended.set(seq);
            } else {
                // The journal failed (the committer reports it): these changes will never be
                // durable, so what waits for them waits for ever, and is dropped (the rest of the
                // drained changes go with the iterator).
                return Some(Seq::MAX);
            }
        }
        drop(tail);
        if !self.driver_writes.get() {
            let _ = self.kick.try_send(());
        } else if self.waiting_since.get().is_none() {
            self.waiting_since.set(Some(Instant::now()));
        }
        Some(self.appended.get())
    }

    /// The uring driver will write append batches itself from now on.
    pub(crate) fn take_over_writes(&self) {
        self.driver_writes.set(self.fd.get() >= 0);
    }

    /// The driver stopped: the committer task writes from now on (what is pending at once).
    pub(crate) fn hand_back_writes(&self) {
        self.driver_writes.set(false);
        let _ = self.kick.try_send(());
    }

    /// The driver writes append batches (see [`Committer::next_write`]).
    pub(crate) fn driver_writes(&self) -> bool {
        self.driver_writes.get()
    }

    /// A group commit could start now: changes wait and no write is in flight.
    pub(crate) fn can_start_write(&self) -> bool {
        self.driver_writes.get() && self.tail.borrow().can_take()
    }

    /// A group commit could start and the oldest change waiting for one has waited
    /// [`COMMIT_DELAY_MAX`]: under load that never lets the shard idle, commits still start.
    pub(crate) fn overdue(&self, now: Instant) -> bool {
        self.waiting_since
            .get()
            .is_some_and(|since| now.saturating_duration_since(since) >= COMMIT_DELAY_MAX)
            && self.can_start_write()
    }

    /// The driver has a journal write in flight.
    pub(crate) fn driver_write_in_flight(&self) -> bool {
        self.writing.borrow().is_some()
    }

    /// A compaction runs in the committer task: its completion comes through glommio.
    pub(crate) fn compacting(&self) -> bool {
        self.compacting.get()
    }

    /// The driver's next journal write, if one may start: the next group commit, when none is in
    /// flight. A compaction batch goes to the committer task instead (it renames and syncs files
    /// through glommio).
    pub(crate) fn next_write(&self) -> Option<WriteOp> {
        // The tail gives no batch while one is in flight (the driver's or a compaction) or after
        // a failure.
        if !self.driver_writes.get() {
            return None;
        }
        let since = self.waiting_since.get();
        let batch = self.tail.borrow_mut().take_batch()?;
        // Changes appended from now on wait for the next commit; ones beyond this batch (it is
        // capped at 64 KiB) keep waiting since they did.
        self.waiting_since
            .set(since.filter(|_| batch.last_seq < self.appended.get()));
        if batch.kind == BatchKind::Compact {
            *self.compaction.borrow_mut() = Some(batch);
            self.compacting.set(true);
            let _ = self.kick.try_send(());
            return None;
        }
        let buf = AlignedBuf::copy_of(&batch.bytes, self.spare.borrow_mut().take());
        let write = DriverWrite {
            batch,
            buf,
            done: 0,
            began: Instant::now(),
        };
        let op = self.op(&write);
        *self.writing.borrow_mut() = Some(write);
        Some(op)
    }

    fn op(&self, write: &DriverWrite) -> WriteOp {
        let rest = write.buf.len - write.done;
        WriteOp {
            fd: self.fd.get(),
            offset: write.batch.offset + write.done as u64,
            // SAFETY: `done <= len <= capacity`.
            ptr: unsafe { write.buf.ptr.as_ptr().add(write.done) },
            len: u32::try_from(rest).expect("a batch is at most 64 KiB"),
        }
    }

    /// The driver's write completed with `res` (bytes written, or -errno). Returns the rest to
    /// write after a short write; otherwise the batch is durable (O_DSYNC) and its waiters are
    /// woken, or the journal failed for good.
    pub(crate) fn write_done(&self, shard: &Rc<Shard>, res: i32) -> Option<WriteOp> {
        let mut slot = self.writing.borrow_mut();
        let write = slot.as_mut().expect("a journal write was in flight");
        let at = write.batch.offset + write.done as u64;
        let written = if res < 0 {
            Err(std::io::Error::from_raw_os_error(-res))
        } else {
            Ok(res as usize)
        };
        match journal::continue_write(&self.path.borrow(), at, write.done, written) {
            Err(error) => {
                *slot = None;
                drop(slot);
                fail(shard, self, &error);
                return None;
            }
            Ok(done) => write.done = done,
        }
        if write.done < write.buf.len {
            return Some(self.op(write));
        }
        let write = slot.take().expect("checked above");
        drop(slot);
        let before = self.durable();
        self.tail.borrow_mut().done(&write.batch);
        self.record_commit(before, write.began);
        *self.spare.borrow_mut() = Some(write.buf);
        None
    }

    /// A group commit made `before + 1 ..= durable()` durable: count it, wake what waited.
    fn record_commit(&self, before: Seq, began: Instant) {
        let durable = self.durable();
        let mut stats = self.stats.get();
        stats.commits += 1;
        stats.changes += durable - before;
        stats.busy_us += began.elapsed().as_micros() as u64;
        self.stats.set(stats);
        self.wake(Some(durable));
    }

    /// The sequence number of the last change appended.
    pub(crate) fn appended(&self) -> Seq {
        self.appended.get()
    }

    /// The last durable sequence number.
    pub(crate) fn durable(&self) -> Seq {
        self.tail.borrow().durable()
    }

    /// True once the journal failed for good.
    pub(crate) fn failed(&self) -> bool {
        self.tail.borrow().failed().is_some()
    }

    /// Waits until `seq` is durable: `true`, or `false` if the journal failed first.
    pub(crate) async fn wait(&self, seq: Seq) -> bool {
        if self.failed() {
            return false;
        }
        if self.durable() >= seq {
            return true;
        }
        let (tx, rx) = local_channel::new_bounded(1);
        self.waiters.borrow_mut().push_back((seq, tx));
        rx.recv().await.unwrap_or(false)
    }

    /// Wakes the waiters whose number is durable now (all of them, with `false`, on failure).
    fn wake(&self, durable: Option<Seq>) {
        let mut waiters = self.waiters.borrow_mut();
        // Numbers arrive in order per task but tasks interleave: scan all (few wait at once).
        waiters.retain(|(seq, tx)| match durable {
            Some(d) if *seq > d => true,
            Some(_) => {
                let _ = tx.try_send(true);
                false
            }
            None => {
                let _ = tx.try_send(false);
                false
            }
        });
    }
}

/// The committer task: one group commit at a time, for the shard's whole life. When the uring
/// driver writes the append batches, this task only runs the compactions it is handed.
async fn run(shard: Rc<Shard>) {
    let committer = shard.committer.as_ref().expect("started with a journal");
    let kicked = committer.kicked.borrow_mut().take().expect("started once");
    let mut writer = committer.writer.borrow_mut().take().expect("started once");
    loop {
        if committer.driver_writes.get() {
            let Some(batch) = committer.compaction.borrow_mut().take() else {
                if kicked.recv().await.is_none() {
                    return;
                }
                continue;
            };
            let (before, began) = (committer.durable(), Instant::now());
            let result = writer.write(&batch).await;
            committer.compacting.set(false);
            match result {
                Ok(()) => {
                    committer.fd.set(writer.raw_fd().unwrap_or(-1));
                    *committer.path.borrow_mut() = writer.path();
                    committer.tail.borrow_mut().done(&batch);
                    committer.record_commit(before, began);
                    shard.durable_advanced();
                }
                Err(e) => {
                    fail(&shard, committer, &e);
                    return;
                }
            }
            continue;
        }
        if !committer.tail.borrow().pending() {
            if kicked.recv().await.is_none() {
                return;
            }
            continue;
        }
        let (before, began) = (committer.durable(), Instant::now());
        match journal::commit(&committer.tail, &mut writer).await {
            Ok(Some(_)) => {
                committer.record_commit(before, began);
                shard.durable_advanced();
            }
            Ok(None) => {}
            Err(e) => {
                fail(&shard, committer, &e);
                return;
            }
        }
    }
}

/// The journal failed: stop selling on this shard and tell the peers, wake every waiter with the
/// failure, and let the transport drop the held responses.
fn fail(shard: &Rc<Shard>, committer: &Committer, error: &JournalError) {
    tracing::error!(
        shard = shard.app.borrow().shard,
        %error,
        "the journal failed: this shard stops selling; /ready answers 503 until a restart \
         (the kernel may have dropped the data, so the write is not retried)"
    );
    // The first error stays the tail's (journal::commit already recorded it); nothing more is
    // appended or acknowledged.
    committer.tail.borrow_mut().fail(error.clone());
    committer.wake(None);
    shard.halt();
    shard.durable_advanced();
}

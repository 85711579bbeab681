//! A shard's journal as its core sees it, without I/O: the [`Tail`] the node's changes are
//! appended to, the last sequence number appended, the group-commit policy (when a batch may be
//! handed out), and what the commits did. Whoever writes (the uring driver through its ring, or a
//! glommio task through `DmaFile`) takes a [`Batch`] from [`Commits::next_batch`] and reports it
//! back with [`Commits::done`] or [`Commits::fail`].
//!
//! # Invariants
//! - A sequence number counts as durable only once the batch holding it was reported done.
//! - After a failure nothing is appended, handed out or acknowledged, ever (until a restart).
//! - At most one batch is out at a time (the tail's own rule): a writer that never reports back
//!   gets no second batch, so nothing can spin on a batch that will not come.

use std::time::{Duration, Instant};

use super::journal::{Batch, Change, JournalError, KeyRecord, Seq, Tail};
use crate::buckets::Buckets;

/// A writer that does not run on every idle moment (the uring driver while the shard is busy)
/// starts a group commit once the oldest change waiting for one has waited this long. Starting
/// one at the end of every turn instead makes more, smaller commits, and the disk write's helper
/// thread (io_uring's io-wq: a DSYNC write on a device without FUA blocks on a cache flush) then
/// competes with the shard for its CPU: measured on the 2-core VM at 64 connections, 32 sales per
/// commit and 300 µs per commit that way, against about 50 and 160 µs this way. 250 µs (a couple
/// of the disk's own write latencies) bounds the wait behind a shard that never idles; 200 to
/// 500 µs measured the same within noise.
pub const COMMIT_DELAY_MAX: Duration = Duration::from_micros(250);

/// What a shard's commits did (for the log line at exit and `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Group commits (one write each, or a compaction).
    pub commits: u64,
    /// Changes they made durable.
    pub changes: u64,
    /// Microseconds from handing a batch out to its being durable, summed.
    pub busy_us: u64,
    /// The same times, one per commit, in fixed buckets (`/metrics`' commit-time histogram).
    pub commit_time: Buckets,
}

/// One shard's journal, the pure side (see the module doc).
#[derive(Debug)]
pub struct Commits {
    /// Records appended and not yet durable, and what is.
    tail: Tail,
    /// The sequence number of the last change appended.
    appended: Seq,
    /// When the oldest change not yet in a batch was appended (`None`: every change is in one).
    waiting_since: Option<Instant>,
    /// When the batch out was handed out.
    out_since: Option<Instant>,
    /// What the commits did.
    stats: CommitStats,
}

impl Commits {
    /// The journal of a shard whose tail was just opened (everything in it durable).
    pub fn new(tail: Tail) -> Commits {
        let appended = tail.durable();
        Commits {
            tail,
            appended,
            waiting_since: None,
            out_since: None,
            stats: CommitStats::default(),
        }
    }

    /// Appends `changes` (drained); returns the sequence number of the last one, `None` when
    /// there was none. After a failure the changes are dropped and the last number appended
    /// before it is returned: what waits for it is never acknowledged (see [`Commits::failed`]).
    pub fn append(&mut self, changes: &mut Vec<Change>, now: Instant) -> Option<Seq> {
        if changes.is_empty() {
            return None;
        }
        // On failure the rest of the drained changes go with the iterator.
        for change in changes.drain(..) {
            match self.tail.append(change) {
                Ok(seq) => self.appended = seq,
                Err(_) => return Some(self.appended),
            }
        }
        self.waiting_since.get_or_insert(now);
        Some(self.appended)
    }

    /// The sequence number of the last change appended.
    pub fn appended(&self) -> Seq {
        self.appended
    }

    /// The last durable sequence number.
    pub fn durable(&self) -> Seq {
        self.tail.durable()
    }

    /// The journal's permanent failure, if it failed.
    pub fn failed(&self) -> Option<&JournalError> {
        self.tail.failed()
    }

    /// A batch could be handed out now: something waits and no batch is out.
    pub fn can_start(&self) -> bool {
        self.tail.can_take()
    }

    /// A batch is out and not yet reported.
    pub fn batch_out(&self) -> bool {
        self.out_since.is_some()
    }

    /// Everything appended is durable (or the journal failed, and nothing more ever will be).
    pub fn settled(&self) -> bool {
        self.failed().is_some() || (self.durable() >= self.appended && !self.batch_out())
    }

    /// The next group commit, if one may start: the writer is `idle` (it has nothing else to do
    /// this moment) or the oldest waiting change is overdue ([`COMMIT_DELAY_MAX`]).
    pub fn next_batch(&mut self, now: Instant, idle: bool) -> Option<Batch> {
        self.next_batch_keeping(now, idle, Vec::new)
    }

    /// [`Commits::next_batch`], where a compaction keeps the idempotency keys `live` returns
    /// ([`Tail::take_batch_keeping`]); their copies take sequence numbers of their own.
    pub fn next_batch_keeping(
        &mut self,
        now: Instant,
        idle: bool,
        live: impl FnOnce() -> Vec<KeyRecord>,
    ) -> Option<Batch> {
        if !self.tail.can_take() {
            return None;
        }
        let overdue = self
            .waiting_since
            .is_some_and(|since| now.saturating_duration_since(since) >= COMMIT_DELAY_MAX);
        if !idle && !overdue {
            return None;
        }
        let batch = self.tail.take_batch_keeping(live)?;
        // A compaction's copies of the live keys are appended by the tail itself.
        self.appended = self.appended.max(batch.last_seq);
        // Changes beyond this batch (it is capped at 64 KiB) keep waiting since they did.
        if batch.last_seq >= self.appended {
            self.waiting_since = None;
        }
        self.out_since = Some(now);
        Some(batch)
    }

    /// `batch` is durable.
    pub fn done(&mut self, batch: &Batch, now: Instant) {
        let before = self.durable();
        self.tail.done(batch);
        let since = self.out_since.take().unwrap_or(now);
        self.stats.commits += 1;
        self.stats.changes += self.durable() - before;
        let took = now.saturating_duration_since(since);
        self.stats.busy_us += took.as_micros() as u64;
        self.stats.commit_time.record_ns(took.as_nanos() as u64);
    }

    /// The batch out (or an operation on the file) failed: the journal stops for good.
    pub fn fail(&mut self, error: JournalError) {
        self.out_since = None;
        self.waiting_since = None;
        self.tail.fail(error);
    }

    /// What the commits did.
    pub fn stats(&self) -> CommitStats {
        self.stats
    }

    /// The tail, for checks of its ledger.
    pub fn tail(&self) -> &Tail {
        &self.tail
    }
}

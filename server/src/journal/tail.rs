//! The write side of one shard's journal, without I/O: records are encoded into a buffer that
//! mirrors the end of the file, and handed out as block-aligned batches for the committer to
//! write and sync (group commit): one at a time, or up to [`IN_FLIGHT_MAX`] at once for a
//! committer that overlaps its writes ([`Tail::set_in_flight_max`]).
//!
//! Invariants:
//! - `buf` holds the file's bytes from `buf_start` (a block boundary) to `end`; everything before
//!   `flushed` is durable, the bytes from `flushed` to `taken` are in outstanding batches, and
//!   the rest waits for a batch.
//! - At most `in_flight_max` batches are outstanding: taken, and not yet counted durable (a batch
//!   whose write completes before an earlier one's stays outstanding until that one completes).
//!   They lie in file order and never share a block; the first starts at the block holding
//!   `flushed`. So every byte they write lies within `IN_FLIGHT_MAX * BATCH_BYTES_MAX` bytes of
//!   that block, which replay relies on to tell a torn tail from corruption (see `recover`).
//! - `durable` and `flushed` advance only over a prefix of the outstanding batches.
//! - After a failure nothing more is handed out or made durable, and every append returns the
//!   failure.

use std::collections::VecDeque;

use super::ledger::Ledger;
use super::record::{encode, pad_bytes, snapshot_bytes, Record, Seq, BLOCK_BYTES, HEADER_BYTES};
use super::{Change, JournalError};

/// The most bytes one batch writes. A torn write can only damage the batches in flight, so
/// replay treats a bad record as a torn tail only when no valid record follows it beyond
/// [`IN_FLIGHT_MAX`] times this distance from its block (see `recover`); keeping batches small
/// keeps that window small. 64 KiB holds some 2,000 records, far more than one turn of a shard's
/// event loop produces at full load.
pub const BATCH_BYTES_MAX: usize = 64 * 1024;

/// The most batches outstanding at once. Two let the next group commit start while the previous
/// one is still on its way to the disk (a 4 KiB O_DSYNC write takes some 160 µs on a device
/// without FUA: a write and a cache flush), so changes that arrive meanwhile need not wait for it
/// to finish before their own commit starts. More would overlap little more on a device that
/// flushes its cache one request at a time, and each one widens the end of the log in which
/// replay cannot tell damage from a torn write by one [`BATCH_BYTES_MAX`].
pub const IN_FLIGHT_MAX: usize = 2;

/// A shard file grows to this before the journal compacts it into one snapshot: big enough that
/// a snapshot (at most 33 KiB) per 64 MiB of records costs nothing, small enough that replay at
/// start-up reads each shard's file in well under a second.
pub const COMPACT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Which file a batch goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchKind {
    /// The shard's current file, at `offset`.
    Append,
    /// A new file that replaces the current one: a snapshot of everything appended so far, at
    /// offset 0 (written to a temporary name, synced, renamed over the current file).
    Compact,
}

/// Bytes to write and sync, whole blocks at a block-aligned offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Where the bytes go.
    pub kind: BatchKind,
    /// The file offset of `bytes[0]` (a multiple of [`BLOCK_BYTES`]).
    pub offset: u64,
    /// The bytes, zero-padded to a whole number of blocks.
    pub bytes: Vec<u8>,
    /// The file offset where the records in it end, its pad record included (the zeros start
    /// there; a batch sealed with a pad ends on a block boundary).
    pub end: u64,
    /// The last sequence number it makes durable.
    pub last_seq: Seq,
}

/// A batch handed out and not yet counted durable, as far as the tail needs to remember it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outstanding {
    /// Which file it goes to.
    kind: BatchKind,
    /// Its first block's offset.
    offset: u64,
    /// The offset of the first block after it (`offset + bytes.len()`).
    blocks_end: u64,
    /// Where its records end.
    end: u64,
    /// Its last sequence number.
    last_seq: Seq,
    /// Its write completed, but an earlier batch's has not yet.
    completed: bool,
}

/// One shard's journal buffer (see the module doc for its invariants).
#[derive(Debug)]
pub struct Tail {
    /// The ledger after every record appended so far.
    ledger: Ledger,
    /// The sequence number of the next record.
    next_seq: Seq,
    /// The last sequence number known durable.
    durable: Seq,
    /// The file's bytes from `buf_start` to `end`.
    buf: Vec<u8>,
    /// The file offset of `buf[0]`, a block boundary.
    buf_start: u64,
    /// The file offset up to which the file is durable.
    flushed: u64,
    /// The file offset up to which records were handed out in batches.
    taken: u64,
    /// The last sequence number handed out in a batch.
    taken_seq: Seq,
    /// The batches handed out and not yet counted durable, oldest (lowest offset) first.
    outstanding: VecDeque<Outstanding>,
    /// How many batches may be outstanding: 1, or up to [`IN_FLIGHT_MAX`] (then every append
    /// batch is sealed with a pad).
    in_flight_max: usize,
    /// Compact when the durable file reaches this many bytes.
    compact_bytes: u64,
    /// The first write or sync error; permanent.
    failed: Option<JournalError>,
}

fn block_floor(offset: u64) -> u64 {
    offset - offset % BLOCK_BYTES as u64
}

impl Tail {
    /// The tail of a file that holds exactly the snapshot of `ledger` at `seq`, durably (as
    /// [`super::open`] leaves every shard file). It hands out one batch at a time until
    /// [`Tail::set_in_flight_max`] says otherwise.
    pub fn new(ledger: Ledger, seq: Seq, compact_bytes: u64) -> Self {
        let mut buf = Vec::with_capacity(BATCH_BYTES_MAX);
        encode(
            &mut buf,
            seq,
            ledger.shard(),
            &Record::Snapshot(ledger.clone()),
        );
        let end = buf.len() as u64;
        Tail {
            ledger,
            next_seq: seq + 1,
            durable: seq,
            buf,
            buf_start: 0,
            flushed: end,
            taken: end,
            taken_seq: seq,
            outstanding: VecDeque::with_capacity(IN_FLIGHT_MAX),
            in_flight_max: 1,
            compact_bytes,
            failed: None,
        }
    }

    /// How many batches may be outstanding from now on, 1 to [`IN_FLIGHT_MAX`].
    ///
    /// With 1 (the default, and what [`super::commit`] needs), a batch starts at the block
    /// holding the first byte not yet durable and rewrites that block's durable prefix, so a
    /// busy log fills its blocks. With more, every append batch taken from now on is sealed: a
    /// pad record ends it on a block boundary, so the next batch starts on a fresh block and
    /// may be written while this one is in flight (two writes to one block would land in either
    /// order). Sealing costs file space (each batch takes whole blocks; compaction comes
    /// sooner), not device writes: a batch writes whole blocks either way. But every sealed
    /// batch extends the file, and a filesystem may commit metadata for each O_DSYNC write that
    /// does (measure before relying on the overlap). Lowering the limit affects only batches
    /// taken later.
    pub fn set_in_flight_max(&mut self, batches: usize) {
        assert!(
            (1..=IN_FLIGHT_MAX).contains(&batches),
            "{batches} batches in flight"
        );
        self.in_flight_max = batches;
    }

    /// The ledger after every record appended so far (durable or not).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The last sequence number that is durable: acknowledge a change once this reaches the
    /// sequence number its `append` returned.
    pub fn durable(&self) -> Seq {
        self.durable
    }

    /// The first write or sync error, after which the journal takes nothing more.
    pub fn failed(&self) -> Option<&JournalError> {
        self.failed.as_ref()
    }

    /// Whether there is something to write that no batch holds yet (a batch could be taken now,
    /// or once the ones in flight are done), or a compaction is due.
    pub fn pending(&self) -> bool {
        self.failed.is_none() && (self.end() > self.taken || self.wants_compaction())
    }

    /// Batches handed out by [`Tail::take_batch`] and not yet counted in [`Tail::durable`]: in
    /// flight, or done before an earlier one (0 to [`IN_FLIGHT_MAX`]).
    pub fn in_flight(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether [`Tail::take_batch`] would hand out a batch now.
    pub fn can_take(&self) -> bool {
        if self.failed.is_some() || self.outstanding.len() >= self.in_flight_max {
            return false;
        }
        let Some(last) = self.outstanding.back() else {
            return self.end() > self.taken || self.wants_compaction();
        };
        // A compaction replaces the file: appends wait for its rename; and it waits for every
        // outstanding batch. A batch that would share a block with the last one waits for it.
        last.kind == BatchKind::Append
            && !self.wants_compaction()
            && self.end() > self.taken
            && block_floor(self.taken) >= last.blocks_end
    }

    fn end(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }

    /// Records one change of the slice and returns its sequence number; it is durable once
    /// [`Tail::durable`] reaches it. Moves are numbered here, per peer. Panics if the change is
    /// impossible for the ledger (the shard journaled something its slice did not do).
    pub fn append(&mut self, change: Change) -> Result<Seq, JournalError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let record = match change {
            Change::Sale { qty } => Record::Sale { qty },
            Change::Give { to, qty } => Record::Give {
                to,
                move_id: self.ledger.sent(to).last_move + 1,
                qty,
            },
            Change::Receive { from, qty } => Record::Receive {
                from,
                move_id: self.ledger.received(from).last_move + 1,
                qty,
            },
        };
        if let Err(e) = self.ledger.apply(&record) {
            panic!("journal append of {change:?} to {:?}: {e}", self.ledger);
        }
        let seq = self.next_seq;
        encode(&mut self.buf, seq, self.ledger.shard(), &record);
        self.next_seq += 1;
        Ok(seq)
    }

    fn wants_compaction(&self) -> bool {
        // Twice the snapshot's size at least, so a tiny threshold cannot make every batch a
        // compaction of a file that holds little more than its snapshot.
        let snapshot = snapshot_bytes(self.ledger.shards()) as u64;
        self.flushed >= self.compact_bytes.max(2 * snapshot)
    }

    /// The next batch to write, or `None` when nothing is to be written, no batch may start now
    /// (see [`Tail::can_take`]) or the journal failed. Call [`Tail::done`] once it is durable, or
    /// [`Tail::fail`]. While batches are outstanding, another is handed out only under a limit
    /// above 1 ([`Tail::set_in_flight_max`]), only if it starts on a block after theirs, and
    /// never a compaction.
    ///
    /// An append batch starts at the block holding the first byte no batch holds yet. With no
    /// batch outstanding, that block may hold a durable prefix, which the batch rewrites with the
    /// same bytes. That is safe for records already acknowledged: whether the write completes,
    /// tears or fails, every byte of that prefix is either the old byte or the new one, and they
    /// are equal (a device writes a sector as old or new content, never a third thing). Only the
    /// records after `flushed`, not yet acknowledged, can be damaged, and replay cuts them off
    /// as a torn tail. With batches outstanding, the block is a fresh one (the last outstanding
    /// batch was sealed, or happened to end on a boundary): it holds nothing to rewrite, and no
    /// other write in flight touches it.
    pub fn take_batch(&mut self) -> Option<Batch> {
        if !self.can_take() {
            return None;
        }
        let batch = if self.wants_compaction() {
            self.compaction()
        } else {
            self.append_batch()
        };
        if let Some(last) = self.outstanding.back() {
            assert!(
                last.blocks_end <= batch.offset,
                "batch at {} overlaps the one in flight up to {}",
                batch.offset,
                last.blocks_end
            );
        }
        self.outstanding.push_back(Outstanding {
            kind: batch.kind,
            offset: batch.offset,
            blocks_end: batch.offset + batch.bytes.len() as u64,
            end: batch.end,
            last_seq: batch.last_seq,
            completed: false,
        });
        self.check_outstanding();
        Some(batch)
    }

    /// Whole records from `taken` on, as many as fit in one batch, sealed with a pad when
    /// batches may overlap.
    fn append_batch(&mut self) -> Batch {
        let seal = self.in_flight_max > 1;
        let start = block_floor(self.taken);
        let first = self.taken;
        let mut end = first;
        let mut last_seq = self.taken_seq;
        while end < self.end() {
            let at = (end - self.buf_start) as usize;
            let len = u32::from_le_bytes(self.buf[at..at + 4].try_into().expect("4 bytes"));
            let next = end + (HEADER_BYTES as u64) + u64::from(len);
            let reach = if seal {
                next + pad_bytes(next) as u64
            } else {
                next
            };
            if reach - start > BATCH_BYTES_MAX as u64 && end > first {
                break;
            }
            last_seq = u64::from_le_bytes(self.buf[at + 8..at + 16].try_into().expect("8 bytes"));
            end = next;
        }
        debug_assert_eq!(last_seq, self.taken_seq + count_between(self, first, end));
        if seal {
            end += self.insert_pad(end, last_seq);
        }
        let padded = end.div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64;
        assert!(
            padded - start <= BATCH_BYTES_MAX as u64,
            "batch of {start}..{padded}"
        );
        let mut bytes =
            self.buf[(start - self.buf_start) as usize..(end - self.buf_start) as usize].to_vec();
        bytes.resize((padded - start) as usize, 0);
        self.taken = end;
        self.taken_seq = last_seq;
        Batch {
            kind: BatchKind::Append,
            offset: start,
            bytes,
            end,
            last_seq,
        }
    }

    /// Inserts at file offset `at` (a record boundary) the pad that ends there on a block
    /// boundary, with the sequence number `seq` of the record before it; the records after it
    /// move up unchanged (a pad takes no sequence number, so theirs stay right). Returns its
    /// length (0: `at` is a boundary, no pad).
    fn insert_pad(&mut self, at: u64, seq: Seq) -> u64 {
        let bytes = pad_bytes(at);
        if bytes > 0 {
            let pad = Record::Pad {
                filler: bytes - HEADER_BYTES,
            };
            encode(&mut self.buf, seq, self.ledger.shard(), &pad);
            // Rotating in place keeps the allocation: the pad, just encoded at the end, moves to
            // `at`, and what follows `at` moves up.
            self.buf[(at - self.buf_start) as usize..].rotate_right(bytes);
        }
        bytes as u64
    }

    /// Replaces the buffer by a snapshot of everything appended so far: records not yet durable
    /// are folded into it, and later ones follow it in the new file.
    fn compaction(&mut self) -> Batch {
        assert!(
            self.outstanding.is_empty(),
            "compaction with batches in flight"
        );
        let last_seq = self.next_seq - 1;
        self.buf.clear();
        encode(
            &mut self.buf,
            last_seq,
            self.ledger.shard(),
            &Record::Snapshot(self.ledger.clone()),
        );
        self.buf_start = 0;
        self.flushed = 0;
        let end = self.buf.len() as u64;
        self.taken = end;
        self.taken_seq = last_seq;
        let mut bytes = self.buf.clone();
        bytes.resize(bytes.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES, 0);
        Batch {
            kind: BatchKind::Compact,
            offset: 0,
            bytes,
            end,
            last_seq,
        }
    }

    /// The batch is durable: its records may be acknowledged once every batch taken before it
    /// is durable too. Batches may complete in any order; [`Tail::durable`] advances over the
    /// ones that complete the oldest outstanding batches. After [`Tail::fail`] this changes
    /// nothing: the journal failed, and nothing after [`Tail::durable`] is acknowledged, ever.
    pub fn done(&mut self, batch: &Batch) {
        if self.failed.is_some() {
            return;
        }
        let outstanding = self
            .outstanding
            .iter_mut()
            .find(|o| (o.offset, o.end, o.last_seq) == (batch.offset, batch.end, batch.last_seq))
            .expect("done with a batch that is not in flight");
        assert!(!outstanding.completed, "done twice with one batch");
        outstanding.completed = true;
        while let Some(o) = self.outstanding.front().filter(|o| o.completed).copied() {
            self.outstanding.pop_front();
            assert!(o.last_seq >= self.durable && o.end >= self.flushed);
            self.durable = o.last_seq;
            self.flushed = o.end;
        }
        let keep_from = block_floor(self.flushed);
        self.buf.drain(..(keep_from - self.buf_start) as usize);
        self.buf_start = keep_from;
        self.check_outstanding();
    }

    /// A batch in flight (or an operation on the file) failed: the journal stops for good.
    /// Nothing after [`Tail::durable`] may be acknowledged, ever, whatever becomes of the other
    /// batches in flight.
    pub fn fail(&mut self, error: JournalError) {
        self.outstanding.clear();
        if self.failed.is_none() {
            self.failed = Some(error);
        }
    }

    /// The invariants of the outstanding batches (see the module doc), checked after every
    /// change of them: the window replay relies on holds only if they do.
    fn check_outstanding(&self) {
        assert!(self.outstanding.len() <= IN_FLIGHT_MAX);
        assert!(self.durable <= self.taken_seq && self.taken_seq < self.next_seq);
        assert!(self.flushed <= self.taken && self.taken <= self.end());
        let window_start = block_floor(self.flushed);
        let mut from = window_start;
        for (i, o) in self.outstanding.iter().enumerate() {
            assert!(
                if i == 0 {
                    o.offset == window_start && !o.completed
                } else {
                    o.offset >= from
                },
                "outstanding batches out of place: {:?} (flushed {})",
                self.outstanding,
                self.flushed
            );
            from = o.blocks_end;
        }
        assert!(from - window_start <= (IN_FLIGHT_MAX * BATCH_BYTES_MAX) as u64);
        if self.outstanding.is_empty() {
            assert!((self.taken, self.taken_seq) == (self.flushed, self.durable));
        }
    }
}

/// Records whose headers start in `[from, to)` of the tail's buffer.
fn count_between(tail: &Tail, from: u64, to: u64) -> u64 {
    let mut n = 0;
    let mut at = from;
    while at < to {
        let i = (at - tail.buf_start) as usize;
        let len = u32::from_le_bytes(tail.buf[i..i + 4].try_into().expect("4 bytes"));
        at += HEADER_BYTES as u64 + u64::from(len);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::decode;

    fn tail(compact_bytes: u64) -> Tail {
        Tail::new(Ledger::new(0, 2, 1, 1_000_000), 0, compact_bytes)
    }

    /// Appends `n` sales of 1 and returns the last seq.
    fn sell(t: &mut Tail, n: usize) -> Seq {
        (0..n)
            .map(|_| t.append(Change::Sale { qty: 1 }).unwrap())
            .last()
            .unwrap_or(t.durable())
    }

    #[test]
    fn batches_cover_blocks_and_rewrite_the_partial_one() {
        // (sales before the batch, expected offset, expected blocks): each sale is 27 bytes and
        // the snapshot of 2 shards 109, so the log ends at 109 + 27 k.
        let cases = [
            (1, 0, 1),
            (100, 0, 1),
            (200, 0, 3),
            (1, 8192, 1),
            (2000, 8192, 14),
        ];
        let mut t = tail(u64::MAX);
        let mut file = vec![0u8; 0];
        let mut sales = 0;
        for (n, offset, blocks) in cases {
            let last = sell(&mut t, n);
            sales += n;
            assert!(t.pending());
            let b = t.take_batch().unwrap();
            assert_eq!(
                (b.kind, b.offset, b.bytes.len()),
                (BatchKind::Append, offset, blocks * 4096),
                "{n}"
            );
            assert_eq!(b.end, 109 + 27 * sales as u64);
            assert_eq!(b.last_seq, last);
            // The durable prefix of the first block is rewritten with the same bytes.
            let keep = file.len().min(b.end as usize).min(t.flushed as usize);
            let start = b.offset as usize;
            assert_eq!(&file[start..keep], &b.bytes[..keep - start]);
            file.resize(start + b.bytes.len(), 0);
            file[start..].copy_from_slice(&b.bytes);
            t.done(&b);
            assert_eq!(t.durable(), last);
            assert!(!t.pending());
            assert_eq!(t.take_batch(), None);
        }
        // The file reads back as the snapshot and every sale, in order.
        let mut at = 0;
        let mut seqs = Vec::new();
        while let Some(frame) = decode(&file[at..]).unwrap() {
            seqs.push(frame.seq);
            at += frame.bytes;
        }
        assert_eq!(seqs, (0..=sales as u64).collect::<Vec<_>>());
    }

    #[test]
    fn one_batch_in_flight_and_at_most_batch_bytes_max() {
        let mut t = tail(u64::MAX);
        sell(&mut t, 5000); // 135,000 bytes: three batches
        let first = t.take_batch().unwrap();
        assert!(first.bytes.len() <= BATCH_BYTES_MAX);
        assert_eq!(t.take_batch(), None, "one batch in flight");
        let late = t.append(Change::Sale { qty: 1 }).unwrap();
        t.done(&first);
        let mut batches = 1;
        while let Some(b) = t.take_batch() {
            assert!(b.bytes.len() <= BATCH_BYTES_MAX);
            assert_eq!(b.offset % BLOCK_BYTES as u64, 0);
            t.done(&b);
            batches += 1;
        }
        assert_eq!((batches, t.durable()), (3, late));
    }

    #[test]
    fn moves_are_numbered_per_peer() {
        let mut t = Tail::new(Ledger::new(1, 3, 1, 100), 0, u64::MAX);
        for change in [
            Change::Give { to: 0, qty: 5 },
            Change::Give { to: 2, qty: 5 },
            Change::Give { to: 0, qty: 5 },
            Change::Receive { from: 2, qty: 1 },
            Change::Receive { from: 2, qty: 1 },
        ] {
            t.append(change).unwrap();
        }
        let l = t.ledger();
        assert_eq!((l.sent(0).last_move, l.sent(0).tickets), (2, 10));
        assert_eq!((l.sent(2).last_move, l.received(2).last_move), (1, 2));
        assert_eq!(l.available(), 87);
    }

    #[test]
    fn a_failure_is_permanent() {
        for batches in 1..=IN_FLIGHT_MAX {
            let mut t = tail(u64::MAX);
            t.set_in_flight_max(batches);
            let mut taken = Vec::new();
            for _ in 0..batches {
                sell(&mut t, 3);
                taken.push(t.take_batch().unwrap());
            }
            t.fail(JournalError::WriteZero {
                path: "x".into(),
                offset: 0,
            });
            // A write that completes after the failure makes nothing durable.
            t.done(taken.last().unwrap());
            assert_eq!(t.take_batch(), None);
            assert!(!t.pending());
            assert!(t.append(Change::Sale { qty: 1 }).is_err());
            assert_eq!((t.durable(), t.in_flight()), (0, 0));
            assert!(taken[0].last_seq > t.durable());
        }
    }

    #[test]
    fn compaction_folds_everything_appended_into_one_snapshot() {
        let mut t = tail(8192);
        sell(&mut t, 400); // 10,909 bytes
        let b = t.take_batch().unwrap();
        t.done(&b);
        let last = sell(&mut t, 2);
        let c = t.take_batch().unwrap();
        assert_eq!(
            (c.kind, c.offset, c.last_seq),
            (BatchKind::Compact, 0, last)
        );
        let frame = decode(&c.bytes).unwrap().unwrap();
        assert_eq!(frame.seq, last);
        assert_eq!(frame.record, Record::Snapshot(t.ledger().clone()));
        let after = sell(&mut t, 1);
        assert_eq!(t.take_batch(), None, "the compaction is in flight");
        t.done(&c);
        assert_eq!(t.durable(), last);
        let next = t.take_batch().unwrap();
        assert_eq!(
            (next.kind, next.offset, next.last_seq),
            (BatchKind::Append, 0, after)
        );
        assert_eq!(&next.bytes[..frame.bytes], &c.bytes[..frame.bytes]);
    }

    /// A tail whose batches may overlap.
    fn overlapping() -> Tail {
        let mut t = tail(u64::MAX);
        t.set_in_flight_max(IN_FLIGHT_MAX);
        t
    }

    /// Writes `b` into the file image `file`.
    fn write(file: &mut Vec<u8>, b: &Batch) {
        let start = b.offset as usize;
        if file.len() < start + b.bytes.len() {
            file.resize(start + b.bytes.len(), 0);
        }
        file[start..start + b.bytes.len()].copy_from_slice(&b.bytes);
    }

    /// The file image read back: every record's seq and whether it is a pad, checking that each
    /// pad ends on a block boundary.
    fn read_back(file: &[u8]) -> Vec<(Seq, bool)> {
        let mut at = 0;
        let mut records = Vec::new();
        while let Some(frame) = decode(&file[at..]).unwrap() {
            at += frame.bytes;
            let pad = matches!(frame.record, Record::Pad { .. });
            assert!(!pad || at % BLOCK_BYTES == 0, "pad ending at {at}");
            records.push((frame.seq, pad));
        }
        records
    }

    /// Seqs as replay wants them: each record's is the previous one's plus one, a pad's the
    /// previous one's.
    fn assert_numbered(records: &[(Seq, bool)], last: Seq) {
        let mut seq = records[0].0;
        for &(s, pad) in &records[1..] {
            seq += u64::from(!pad);
            assert_eq!(s, seq, "{records:?}");
        }
        assert_eq!(seq, last);
    }

    #[test]
    fn two_batches_in_flight_complete_in_either_order() {
        // (order of completion, durable after each: the last seq of batch i, or None for 0;
        // batches outstanding after each)
        let cases = [
            ([0, 1], [Some(0), Some(1)], [1, 0]),
            ([1, 0], [None, Some(1)], [2, 0]),
        ];
        for (order, durable, outstanding) in cases {
            let mut t = overlapping();
            sell(&mut t, 10);
            let a = t.take_batch().unwrap();
            sell(&mut t, 10);
            let b = t.take_batch().unwrap();
            // A was sealed with a pad; B starts on the block after it.
            assert_eq!((a.offset, a.end, a.bytes.len()), (0, 4096, 4096));
            assert_eq!((b.offset, b.end), (4096, 8192));
            assert_eq!((a.last_seq, b.last_seq, t.in_flight()), (10, 20, 2));
            sell(&mut t, 1);
            assert!(!t.can_take() && t.take_batch().is_none(), "two in flight");
            let batches = [&a, &b];
            let mut file = Vec::new();
            for (step, i) in order.into_iter().enumerate() {
                write(&mut file, batches[i]);
                t.done(batches[i]);
                let want = durable[step].map_or(0, |j| batches[j].last_seq);
                assert_eq!(t.durable(), want, "{order:?} step {step}");
                // A batch done before an earlier one keeps its place until that one is done.
                assert_eq!(t.in_flight(), outstanding[step]);
                assert_eq!(t.can_take(), outstanding[step] < IN_FLIGHT_MAX);
            }
            let c = t.take_batch().unwrap();
            assert_eq!((c.offset, c.last_seq), (8192, 21));
            write(&mut file, &c);
            t.done(&c);
            let records = read_back(&file);
            assert_eq!(records.iter().filter(|r| r.1).count(), 3);
            assert_numbered(&records, 21);
        }
    }

    #[test]
    fn pads_of_every_size_class() {
        // (sales, gives of 37 bytes, bytes of the pad): the log ends at 109 + 27 sales + 37 gives.
        let cases = [
            (146, 0, 45),   // ends at 4051: the pad fits in the gap
            (125, 16, 20),  // 4076: the smallest pad, one byte of filler
            (136, 8, 4115), // 4077: 19 bytes left, too few; the pad runs to 8192
            (147, 0, 4114), // 4078
            (123, 18, 0),   // 4096: on the boundary, no pad
            (149, 0, 4060), // 4132: past the boundary
        ];
        for (sales, gives, pad) in cases {
            let mut t = overlapping();
            sell(&mut t, sales);
            let mut last = sales as Seq;
            for _ in 0..gives {
                last = t.append(Change::Give { to: 1, qty: 1 }).unwrap();
            }
            let end = 109 + 27 * sales as u64 + 37 * gives as u64;
            let a = t.take_batch().unwrap();
            assert_eq!(a.end, end + pad, "{sales} {gives}");
            assert_eq!(a.end % BLOCK_BYTES as u64, 0);
            assert_eq!(a.bytes.len() as u64, a.end);
            assert_eq!(a.last_seq, last);
            if pad > 0 {
                let frame = decode(&a.bytes[end as usize..]).unwrap().unwrap();
                let filler = pad - HEADER_BYTES as u64;
                assert_eq!(
                    frame.record,
                    Record::Pad {
                        filler: filler as usize
                    }
                );
                assert_eq!((frame.seq, frame.bytes as u64), (last, pad));
            }
            // The next batch starts where A ends, while A is in flight.
            let next = sell(&mut t, 1);
            let b = t.take_batch().unwrap();
            assert_eq!((b.offset, b.last_seq), (a.end, next));
        }
    }

    #[test]
    fn a_batch_never_shares_a_block_with_one_in_flight() {
        // An unsealed batch in flight (taken one at a time, then the limit raised): the next
        // waits for it unless it ended on a boundary.
        // (sales and gives in the first batch, whether a second may start while it is in flight)
        for (sales, gives, overlaps) in [(10, 0, false), (147, 0, false), (123, 18, true)] {
            let mut t = tail(u64::MAX);
            sell(&mut t, sales);
            for _ in 0..gives {
                t.append(Change::Give { to: 1, qty: 1 }).unwrap();
            }
            let a = t.take_batch().unwrap();
            t.set_in_flight_max(IN_FLIGHT_MAX);
            sell(&mut t, 1);
            assert!(t.pending());
            assert_eq!(t.can_take(), overlaps, "{sales}");
            let b = t.take_batch();
            assert_eq!(b.is_some(), overlaps);
            if let Some(b) = b {
                assert!(b.offset >= a.offset + a.bytes.len() as u64);
            }
        }
    }

    /// A small deterministic generator (xorshift64*), so a failing seed replays exactly.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    #[test]
    fn random_interleavings_keep_batches_apart_and_the_log_whole() {
        for seed in 1..=60u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut t = tail(u64::MAX);
            // Batches in flight (completed or not), and a model of what is durable.
            let mut in_flight: Vec<(Batch, bool)> = Vec::new();
            let mut durable = 0;
            // The file as `open` leaves it: the snapshot, durable.
            let mut file = t.buf.clone();
            for _ in 0..300 {
                match rng.below(10) {
                    0..=3 => {
                        // Now and then more than a batch holds.
                        let most = if rng.below(8) == 0 { 1500 } else { 60 };
                        sell(&mut t, 1 + rng.below(most) as usize);
                    }
                    4 => t.set_in_flight_max(1 + rng.below(IN_FLIGHT_MAX as u64) as usize),
                    5..=6 => {
                        let flushed = t.flushed;
                        if let Some(b) = t.take_batch() {
                            assert!(b.bytes.len() <= BATCH_BYTES_MAX);
                            for (other, _) in &in_flight {
                                assert!(other.offset + other.bytes.len() as u64 <= b.offset);
                            }
                            // Only the durable prefix of its first block is rewritten, with the
                            // same bytes.
                            let start = b.offset as usize;
                            let rewritten = (flushed as usize).saturating_sub(start);
                            if rewritten > 0 {
                                assert!(in_flight.is_empty());
                                assert_eq!(&file[start..start + rewritten], &b.bytes[..rewritten]);
                            }
                            in_flight.push((b, false));
                        }
                    }
                    _ if !in_flight.is_empty() => {
                        let i = rng.below(in_flight.len() as u64) as usize;
                        if !in_flight[i].1 {
                            in_flight[i].1 = true;
                            write(&mut file, &in_flight[i].0);
                            t.done(&in_flight[i].0);
                        }
                        while in_flight.first().is_some_and(|b| b.1) {
                            durable = in_flight.remove(0).0.last_seq;
                        }
                        assert_eq!(t.durable(), durable, "seed {seed}");
                    }
                    _ => {}
                }
                assert_eq!(t.in_flight(), in_flight.len());
            }
            // Everything written, the file reads back whole.
            for (b, completed) in std::mem::take(&mut in_flight) {
                if !completed {
                    write(&mut file, &b);
                    t.done(&b);
                }
            }
            t.set_in_flight_max(1 + rng.below(IN_FLIGHT_MAX as u64) as usize);
            while let Some(b) = t.take_batch() {
                write(&mut file, &b);
                t.done(&b);
            }
            assert_eq!(t.durable(), t.next_seq - 1);
            assert_numbered(&read_back(&file), t.durable());
        }
    }
}

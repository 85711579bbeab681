//! The write side of one shard's journal, without I/O: records are encoded into a buffer that
//! mirrors the end of the file, and handed out as block-aligned batches for the writer to
//! write and sync (group commit).
//!
//! Invariants:
//! - `buf` holds the file's bytes from `buf_start` (a block boundary) to `end`; everything before
//!   `flushed` is durable, everything from `flushed` on is not (yet).
//! - At most one batch is in flight; records appended meanwhile wait for the next one.
//! - After a failure nothing more is handed out, and every append returns the failure.

use super::keyed::KeyRecord;
use super::ledger::Ledger;
use super::record::{encode, snapshot_bytes, Record, Seq, BLOCK_BYTES, HEADER_BYTES};
use super::{Change, JournalError};

/// The most bytes one batch writes. A torn write can only damage the batch in flight, so replay
/// treats a bad record as a torn tail only when no valid record follows it beyond this distance
/// from its block (see `recover`); keeping batches small keeps that window small. 64 KiB holds
/// some 2,000 records, far more than one turn of a shard's event loop produces at full load.
pub const BATCH_BYTES_MAX: usize = 64 * 1024;

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
    /// The file offset where the records in it end (the padding starts there).
    pub end: u64,
    /// The last sequence number it makes durable.
    pub last_seq: Seq,
}

/// The batch in flight, as far as the tail needs to remember it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    /// Where the batch's records end.
    end: u64,
    /// Its last sequence number.
    last_seq: Seq,
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
    /// The batch being written, if any.
    in_flight: Option<InFlight>,
    /// Compact when the durable file reaches this many bytes.
    compact_bytes: u64,
    /// The first write or sync error; permanent.
    failed: Option<JournalError>,
    /// Bytes the file held right after its last rewrite (its snapshot and the idempotency keys
    /// copied behind it): compaction waits for twice this, so live keys cannot make it loop.
    base_bytes: u64,
}

fn block_floor(offset: u64) -> u64 {
    offset - offset % BLOCK_BYTES as u64
}

impl Tail {
    /// The tail of a file that holds exactly the snapshot of `ledger` at `seq`, durably (as
    /// [`super::open`] leaves every shard file).
    pub fn new(ledger: Ledger, seq: Seq, compact_bytes: u64) -> Self {
        Tail::with_keys(ledger, seq, &[], compact_bytes)
    }

    /// The tail of a file that holds the snapshot of `ledger` at `seq` followed by `keys` as
    /// keyed records (selling nothing) at `seq + 1 ..`, durably (as [`super::open`] writes a
    /// new epoch's files).
    pub fn with_keys(ledger: Ledger, seq: Seq, keys: &[KeyRecord], compact_bytes: u64) -> Self {
        let mut buf = Vec::with_capacity(BATCH_BYTES_MAX);
        let last = encode_file_start(&mut buf, &ledger, seq, keys);
        let end = buf.len() as u64;
        Tail {
            ledger,
            next_seq: last + 1,
            durable: last,
            buf,
            buf_start: 0,
            flushed: end,
            in_flight: None,
            compact_bytes,
            failed: None,
            base_bytes: end,
        }
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

    /// Whether there is something to write (a batch could be taken now or after the one in
    /// flight).
    pub fn pending(&self) -> bool {
        self.failed.is_none() && (self.end() > self.flushed || self.wants_compaction())
    }

    /// Whether [`Tail::take_batch`] would give a batch now: something to write, no batch in
    /// flight, no failure.
    pub fn can_take(&self) -> bool {
        self.in_flight.is_none() && self.pending()
    }

    /// Bytes of the file that are durable.
    pub fn durable_bytes(&self) -> u64 {
        self.flushed
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
            Change::Keyed { sale, entry } => Record::Keyed { sale, entry },
            Change::Lease(state) => Record::Lease(state),
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
            Change::Restock { qty } => Record::Restock { qty },
            Change::Sales { closed } => Record::Sales { closed },
        };
        if let Err(e) = record.apply_to(&mut self.ledger) {
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
        self.flushed >= self.compact_bytes.max(2 * snapshot.max(self.base_bytes))
    }

    /// The next batch to write, or `None` when nothing is to be written, a batch is in flight or
    /// the journal failed. Call [`Tail::done`] once it is durable, or [`Tail::fail`].
    ///
    /// An append batch starts at the block holding the first byte not yet durable, so it
    /// rewrites that block's durable prefix with the same bytes. That is safe for records
    /// already acknowledged: whether the write completes, tears or fails, every byte of that
    /// prefix is either the old byte or the new one, and they are equal (a device writes a
    /// sector as old or new content, never a third thing). Only the records after `flushed`,
    /// not yet acknowledged, can be damaged, and replay cuts them off as a torn tail.
    pub fn take_batch(&mut self) -> Option<Batch> {
        self.take_batch_keeping(Vec::new)
    }

    /// [`Tail::take_batch`], where a compaction copies the keys `live` returns behind its
    /// snapshot (the idempotency keys still in their window: dropping them would let a retry
    /// sell again after a restart). `live` is called only for a compaction.
    pub fn take_batch_keeping(&mut self, live: impl FnOnce() -> Vec<KeyRecord>) -> Option<Batch> {
        if self.failed.is_some() || self.in_flight.is_some() {
            return None;
        }
        if self.wants_compaction() {
            return Some(self.compaction(&live()));
        }
        if self.end() == self.flushed {
            return None;
        }
        let start = block_floor(self.flushed);
        // Whole records from `flushed` on, as many as fit in one batch.
        let mut end = self.flushed;
        let mut last_seq = self.durable;
        while end < self.end() {
            let at = (end - self.buf_start) as usize;
            let len = u32::from_le_bytes(self.buf[at..at + 4].try_into().expect("4 bytes"));
            let next = end + (HEADER_BYTES as u64) + u64::from(len);
            if next - start > BATCH_BYTES_MAX as u64 && end > self.flushed {
                break;
            }
            last_seq = u64::from_le_bytes(self.buf[at + 8..at + 16].try_into().expect("8 bytes"));
            end = next;
        }
        debug_assert_eq!(
            last_seq,
            self.durable + count_between(self, self.flushed, end)
        );
        let padded = end.div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64;
        let mut bytes =
            self.buf[(start - self.buf_start) as usize..(end - self.buf_start) as usize].to_vec();
        bytes.resize((padded - start) as usize, 0);
        self.in_flight = Some(InFlight { end, last_seq });
        Some(Batch {
            kind: BatchKind::Append,
            offset: start,
            bytes,
            end,
            last_seq,
        })
    }

    /// Replaces the buffer by a snapshot of everything appended so far: records not yet durable
    /// are folded into it, and later ones follow it in the new file.
    /// The live idempotency keys follow the snapshot as keyed records that sell nothing, each
    /// with a new sequence number.
    fn compaction(&mut self, keys: &[KeyRecord]) -> Batch {
        self.buf.clear();
        let last_seq = encode_file_start(&mut self.buf, &self.ledger, self.next_seq - 1, keys);
        self.next_seq = last_seq + 1;
        self.buf_start = 0;
        self.flushed = 0;
        let end = self.buf.len() as u64;
        self.base_bytes = end;
        let mut bytes = self.buf.clone();
        bytes.resize(bytes.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES, 0);
        self.in_flight = Some(InFlight { end, last_seq });
        Batch {
            kind: BatchKind::Compact,
            offset: 0,
            bytes,
            end,
            last_seq,
        }
    }

    /// The batch is durable: its records may be acknowledged.
    pub fn done(&mut self, batch: &Batch) {
        let in_flight = self.in_flight.take();
        assert_eq!(
            in_flight,
            Some(InFlight {
                end: batch.end,
                last_seq: batch.last_seq
            }),
            "done with a batch that is not in flight"
        );
        assert!(batch.last_seq >= self.durable && batch.end >= self.flushed);
        self.durable = batch.last_seq;
        self.flushed = batch.end;
        let keep_from = block_floor(self.flushed);
        self.buf.drain(..(keep_from - self.buf_start) as usize);
        self.buf_start = keep_from;
    }

    /// The batch in flight (or an operation on the file) failed: the journal stops for good.
    /// Nothing after [`Tail::durable`] may be acknowledged, ever.
    pub fn fail(&mut self, error: JournalError) {
        self.in_flight = None;
        if self.failed.is_none() {
            self.failed = Some(error);
        }
    }
}

/// Encodes a file's first records: the snapshot of `ledger` at `seq`, then `keys` as keyed
/// records selling nothing. Returns the last sequence number written.
pub(crate) fn encode_file_start(
    out: &mut Vec<u8>,
    ledger: &Ledger,
    seq: Seq,
    keys: &[KeyRecord],
) -> Seq {
    encode(out, seq, ledger.shard(), &Record::Snapshot(ledger.clone()));
    let mut last = seq;
    for &entry in keys {
        last += 1;
        encode(out, last, ledger.shard(), &Record::Keyed { sale: 0, entry });
    }
    last
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
    use crate::durability::journal::record::decode;

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
        let mut t = tail(u64::MAX);
        sell(&mut t, 3);
        let b = t.take_batch().unwrap();
        t.fail(JournalError::WriteZero {
            path: "x".into(),
            offset: 0,
        });
        assert_eq!(t.take_batch(), None);
        assert!(!t.pending());
        assert!(t.append(Change::Sale { qty: 1 }).is_err());
        assert_eq!(t.durable(), 0);
        assert!(b.last_seq > t.durable());
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
}

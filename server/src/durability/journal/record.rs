//! The record format: encoding into a caller's buffer, and a decoder that borrows the file's bytes
//! and never panics on them.
//!
//! ```text
//! offset size field
//!      0    4 len    payload bytes (after the 19-byte header); 0 at a record boundary = end of log
//!      4    4 crc    CRC32C of bytes 8 .. 19 + len (seq, shard, kind, payload)
//!      8    8 seq    per shard, contiguous; a file's first record (a snapshot) holds the last seq
//!                    it covers, the next record has seq + 1
//!     16    2 shard  the writing shard
//!     18    1 kind   1 sale, 2 give, 3 receive, 4 snapshot, 6 restock, 7 sales, 8 keyed,
//!                    9 lease (0 is never a kind: zeros are no record; 5 was never used)
//!     19  len payload
//!   sale:     qty u64
//!   give:     to u16, move u64, qty u64
//!   receive:  from u16, move u64, qty u64
//!   restock:  qty u64 (tickets an operator added to the slice; the coordinator's file only)
//!   sales:    closed u8 (1: an operator closed sales, 0: opened them again; coordinator only)
//!   snapshot: epoch u64, shards u16, base u64, sold u64, then per shard p < shards:
//!             sent[p].last_move u64, sent[p].tickets u64, received[p].last_move u64,
//!             received[p].tickets u64; then, only when added > 0 or sales are closed (files
//!             without either are byte for byte what earlier versions wrote):
//!             added u64, closed u8; then, only in a cluster node's coordinator file once its
//!             lease began (the stock tail is then always written): the lease payload
//!   keyed:    an idempotency key and its answer, with the tickets it sold here (`keyed.rs`)
//!   lease:    a cluster node's lease, placed and collected tickets (`lease.rs`)
//! ```
//! The snapshot's three forms differ in length by 9 and 9 + 130 bytes; the shard count read
//! first says which length is which.
//! All integers are little endian. Records are not aligned; files are padded with zeros to whole
//! [`BLOCK_BYTES`] blocks (O_DIRECT writes whole blocks).

use std::fmt;

use super::keyed::{KeyRecord, KEYED_PAYLOAD_BYTES};
use super::lease::{LeaseState, LEASE_PAYLOAD_BYTES};
use super::ledger::{Ledger, LedgerError, Moved};
use crate::config::SHARDS_MAX;

/// O_DIRECT transfers whole, aligned blocks; 4096 bytes is the logical block of every disk and
/// filesystem we run on (512-byte disks accept it too). Batches start and end on this boundary.
pub const BLOCK_BYTES: usize = 4096;

/// len (4) + crc (4) + seq (8) + shard (2) + kind (1).
pub const HEADER_BYTES: usize = 19;

/// The snapshot's fixed part: epoch (8) + shards (2) + base (8) + sold (8).
const SNAPSHOT_FIXED_BYTES: usize = 26;

/// A snapshot's bytes per shard: sent and received, last move and tickets each.
const SNAPSHOT_PEER_BYTES: usize = 32;

/// The snapshot's optional tail: added (8) + closed (1), written only when either is set.
const SNAPSHOT_STOCK_BYTES: usize = 9;

/// The largest legal payload: a snapshot of a server with the most shards the configuration
/// allows (1024 → 32,794 bytes). A `len` above it is corruption, not a reason to read further.
pub const PAYLOAD_BYTES_MAX: usize = SNAPSHOT_FIXED_BYTES
    + SHARDS_MAX * SNAPSHOT_PEER_BYTES
    + SNAPSHOT_STOCK_BYTES
    + LEASE_PAYLOAD_BYTES;

/// The largest legal record.
pub const RECORD_BYTES_MAX: usize = HEADER_BYTES + PAYLOAD_BYTES_MAX;

/// A record's sequence number, per shard.
pub type Seq = u64;

const KIND_SALE: u8 = 1;
const KIND_GIVE: u8 = 2;
const KIND_RECEIVE: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;
const KIND_RESTOCK: u8 = 6;
const KIND_SALES: u8 = 7;
/// 8: 5 was left unused while restock (6, 7) and the keys were built side by side.
const KIND_KEYED: u8 = 8;
const KIND_LEASE: u8 = 9;

/// Whether `kind` names a record kind (for the scan that looks for a record past damage).
pub fn is_kind(kind: u8) -> bool {
    matches!(
        kind,
        KIND_SALE
            | KIND_GIVE
            | KIND_RECEIVE
            | KIND_SNAPSHOT
            | KIND_RESTOCK
            | KIND_SALES
            | KIND_KEYED
            | KIND_LEASE
    )
}

/// One journal record's content (the header's seq and shard travel beside it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Tickets sold from the slice.
    Sale {
        /// Tickets sold.
        qty: u64,
    },
    /// Tickets sent to another shard: move (this shard, `to`, `move_id`).
    Give {
        /// The receiving shard.
        to: usize,
        /// The move's number among this shard's moves to `to`, from 1.
        move_id: u64,
        /// Tickets carried (at least 1).
        qty: u64,
    },
    /// Tickets received from another shard: move (`from`, this shard, `move_id`).
    Receive {
        /// The giving shard.
        from: usize,
        /// The move's number among `from`'s moves to this shard, from 1.
        move_id: u64,
        /// Tickets carried (at least 1).
        qty: u64,
    },
    /// The whole ledger; always and only the first record of a file.
    Snapshot(Ledger),
    /// Tickets an operator added to the slice (a restock, at the coordinator).
    Restock {
        /// Tickets added (at least 1).
        qty: u64,
    },
    /// An operator closed sales (`closed`) or opened them again (at the coordinator).
    Sales {
        /// Sales are closed from now on.
        closed: bool,
    },
    /// An idempotency key's answer; sells `sale` tickets from the slice (0: sold elsewhere, or
    /// a copy kept by a compaction or a new epoch).
    Keyed {
        /// Tickets this record sells here.
        sale: u64,
        /// The key and its answer.
        entry: KeyRecord,
    },
    /// A cluster node's lease (the coordinator's file only): replaces the last one, and moves
    /// the tickets its `placed` and `collected` grew by into or out of the slice.
    Lease(LeaseState),
}

impl Record {
    /// Applies this change record to `ledger`, or says why it cannot be applied (and changes
    /// nothing). A snapshot is never a change: it only starts a file.
    pub(crate) fn apply_to(&self, ledger: &mut Ledger) -> Result<(), LedgerError> {
        match *self {
            Record::Sale { qty } => ledger.sell(qty),
            Record::Keyed { sale: 0, .. } => Ok(()),
            Record::Keyed { sale, .. } => ledger.sell(sale),
            Record::Give { to, move_id, qty } => ledger.give(to, move_id, qty),
            Record::Receive { from, move_id, qty } => ledger.receive(from, move_id, qty),
            Record::Restock { qty } => ledger.restock(qty),
            Record::Sales { closed } => {
                ledger.set_sales_closed(closed);
                Ok(())
            }
            Record::Lease(state) => ledger.set_lease(state),
            Record::Snapshot(_) => Err(LedgerError::SnapshotNotFirst),
        }
    }
}

/// What is wrong with the bytes at a record boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The file ends inside the header or the payload.
    Truncated,
    /// `len` is above [`PAYLOAD_BYTES_MAX`].
    Length {
        /// The length found.
        len: u32,
    },
    /// An intact record whose length does not fit its kind.
    Payload {
        /// The kind found.
        kind: u8,
        /// The length found.
        len: u32,
    },
    /// The checksum does not match.
    Checksum,
    /// An unknown kind byte.
    Kind {
        /// The kind found.
        kind: u8,
    },
    /// The record was written by another shard.
    Shard {
        /// The shard this file belongs to.
        expected: usize,
        /// The shard found.
        found: usize,
    },
    /// The sequence number is not the previous one plus one.
    Sequence {
        /// The number that was due.
        expected: Seq,
        /// The number found.
        found: Seq,
    },
    /// The file does not start with a snapshot, or its snapshot is of another epoch or shard count.
    Snapshot,
    /// `len` is 0 where a record was due: the log ends before the snapshot.
    Empty,
    /// Zeros where a record was due, with intact records after them.
    Hole {
        /// The offset of the next intact record.
        next: u64,
    },
    /// The record cannot be applied to the ledger.
    Ledger(LedgerError),
}

impl Corruption {
    /// Whether a torn write can produce this: the bytes do not form an intact record. An intact
    /// record (its checksum matches) that breaks a rule was written that way, and is never torn.
    pub fn may_be_torn(self) -> bool {
        matches!(
            self,
            Corruption::Truncated
                | Corruption::Length { .. }
                | Corruption::Checksum
                | Corruption::Empty
        )
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Truncated => write!(f, "the file ends inside a record"),
            Corruption::Length { len } => write!(f, "impossible record length {len}"),
            Corruption::Payload { kind, len } => {
                write!(f, "record of kind {kind} with a payload of {len} bytes")
            }
            Corruption::Checksum => write!(f, "checksum mismatch"),
            Corruption::Kind { kind } => write!(f, "unknown record kind {kind}"),
            Corruption::Shard { expected, found } => {
                write!(f, "record of shard {found} in the file of shard {expected}")
            }
            Corruption::Sequence { expected, found } => {
                write!(f, "sequence number {found} where {expected} was due")
            }
            Corruption::Snapshot => write!(f, "no snapshot of this epoch and shard count first"),
            Corruption::Empty => write!(f, "the log is empty"),
            Corruption::Hole { next } => {
                write!(
                    f,
                    "the log stops here, yet an intact record starts at {next}"
                )
            }
            Corruption::Ledger(e) => write!(f, "{e}"),
        }
    }
}

/// A decoded record and where it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The record's sequence number.
    pub seq: Seq,
    /// The shard that wrote it.
    pub shard: usize,
    /// The content.
    pub record: Record,
    /// Bytes the record takes, header included.
    pub bytes: usize,
}

/// Appends one record to `out`.
pub fn encode(out: &mut Vec<u8>, seq: Seq, shard: usize, record: &Record) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]); // len and crc, filled in below
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&shard_id(shard).to_le_bytes());
    match record {
        Record::Sale { qty } => {
            out.push(KIND_SALE);
            out.extend_from_slice(&qty.to_le_bytes());
        }
        Record::Give { to, move_id, qty } => {
            out.push(KIND_GIVE);
            put_move(out, *to, *move_id, *qty);
        }
        Record::Receive { from, move_id, qty } => {
            out.push(KIND_RECEIVE);
            put_move(out, *from, *move_id, *qty);
        }
        Record::Keyed { sale, entry } => {
            out.push(KIND_KEYED);
            entry.encode(*sale, out);
        }
        Record::Snapshot(ledger) => {
            out.push(KIND_SNAPSHOT);
            out.extend_from_slice(&ledger.epoch().to_le_bytes());
            out.extend_from_slice(&shard_id(ledger.shards()).to_le_bytes());
            out.extend_from_slice(&ledger.base().to_le_bytes());
            out.extend_from_slice(&ledger.sold().to_le_bytes());
            for p in 0..ledger.shards() {
                for m in [ledger.sent(p), ledger.received(p)] {
                    out.extend_from_slice(&m.last_move.to_le_bytes());
                    out.extend_from_slice(&m.tickets.to_le_bytes());
                }
            }
            if has_stock_tail(ledger) {
                out.extend_from_slice(&ledger.added().to_le_bytes());
                out.push(u8::from(ledger.sales_closed()));
            }
            if let Some(lease) = ledger.lease() {
                lease.encode(out);
            }
        }
        Record::Restock { qty } => {
            out.push(KIND_RESTOCK);
            out.extend_from_slice(&qty.to_le_bytes());
        }
        Record::Sales { closed } => {
            out.push(KIND_SALES);
            out.push(u8::from(*closed));
        }
        Record::Lease(state) => {
            out.push(KIND_LEASE);
            state.encode(out);
        }
    }
    let len = out.len() - start - HEADER_BYTES;
    assert!(len <= PAYLOAD_BYTES_MAX, "record of {len} bytes");
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The bytes `encode` would append for `record`.
#[cfg(test)]
pub fn encoded_bytes(record: &Record) -> usize {
    match record {
        Record::Sale { .. } => HEADER_BYTES + 8,
        Record::Give { .. } | Record::Receive { .. } => HEADER_BYTES + 18,
        Record::Snapshot(l) => {
            snapshot_bytes(l.shards())
                + usize::from(has_stock_tail(l)) * SNAPSHOT_STOCK_BYTES
                + usize::from(l.lease().is_some()) * LEASE_PAYLOAD_BYTES
        }
        Record::Lease(_) => HEADER_BYTES + LEASE_PAYLOAD_BYTES,
        Record::Restock { .. } => HEADER_BYTES + 8,
        Record::Sales { .. } => HEADER_BYTES + 1,
        Record::Keyed { .. } => HEADER_BYTES + KEYED_PAYLOAD_BYTES,
    }
}

/// Whether a snapshot of `ledger` carries the restock tail (added, closed): always before a
/// lease.
fn has_stock_tail(ledger: &Ledger) -> bool {
    ledger.added() > 0 || ledger.sales_closed() || ledger.lease().is_some()
}

/// The bytes of a snapshot record for `shards` shards, without the restock tail (the most a
/// snapshot takes is [`SNAPSHOT_STOCK_BYTES`] more).
pub fn snapshot_bytes(shards: usize) -> usize {
    HEADER_BYTES + SNAPSHOT_FIXED_BYTES + shards * SNAPSHOT_PEER_BYTES
}

fn shard_id(shard: usize) -> u16 {
    assert!(shard <= SHARDS_MAX, "shard {shard}");
    shard as u16
}

fn put_move(out: &mut Vec<u8>, peer: usize, move_id: u64, qty: u64) {
    out.extend_from_slice(&shard_id(peer).to_le_bytes());
    out.extend_from_slice(&move_id.to_le_bytes());
    out.extend_from_slice(&qty.to_le_bytes());
}

/// Reads the record at the start of `bytes`: `Ok(None)` when `len` is 0 (the end of the log),
/// `Err` when the bytes are not a whole, intact record. Checks the frame only (length, checksum,
/// kind, payload shape); sequence, shard and ledger rules are the replayer's.
pub fn decode(bytes: &[u8]) -> Result<Option<Frame>, Corruption> {
    let Some(len_bytes) = bytes.get(..4) else {
        return if bytes.iter().all(|&b| b == 0) {
            Ok(None)
        } else {
            Err(Corruption::Truncated)
        };
    };
    let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes"));
    if len == 0 {
        return Ok(None);
    }
    if len as usize > PAYLOAD_BYTES_MAX {
        return Err(Corruption::Length { len });
    }
    let end = HEADER_BYTES + len as usize;
    let Some(record_bytes) = bytes.get(..end) else {
        return Err(Corruption::Truncated);
    };
    let mut r = Reader(&record_bytes[4..HEADER_BYTES]);
    let crc = r.u32();
    if crc32c::crc32c(&record_bytes[8..]) != crc {
        return Err(Corruption::Checksum);
    }
    let seq = r.u64();
    let shard = r.u16() as usize;
    let kind = r.u8();
    let mut p = Reader(&record_bytes[HEADER_BYTES..]);
    let fits = |want: usize| {
        if len as usize == want {
            Ok(())
        } else {
            Err(Corruption::Payload { kind, len })
        }
    };
    let record = match kind {
        KIND_SALE => {
            fits(8)?;
            Record::Sale { qty: p.u64() }
        }
        KIND_GIVE => {
            fits(18)?;
            Record::Give {
                to: p.u16() as usize,
                move_id: p.u64(),
                qty: p.u64(),
            }
        }
        KIND_RECEIVE => {
            fits(18)?;
            Record::Receive {
                from: p.u16() as usize,
                move_id: p.u64(),
                qty: p.u64(),
            }
        }
        KIND_SNAPSHOT => {
            if (len as usize) < SNAPSHOT_FIXED_BYTES {
                return Err(Corruption::Payload { kind, len });
            }
            let epoch = p.u64();
            let shards = p.u16() as usize;
            let short = SNAPSHOT_FIXED_BYTES + shards * SNAPSHOT_PEER_BYTES;
            let with_lease = short + SNAPSHOT_STOCK_BYTES + LEASE_PAYLOAD_BYTES;
            let lease_tail = len as usize == with_lease;
            let stock_tail = lease_tail || len as usize == short + SNAPSHOT_STOCK_BYTES;
            if !stock_tail {
                fits(short)?;
            }
            if shards == 0 || shards > SHARDS_MAX {
                return Err(Corruption::Snapshot);
            }
            let base = p.u64();
            let sold = p.u64();
            let mut sent = Vec::with_capacity(shards);
            let mut received = Vec::with_capacity(shards);
            for _ in 0..shards {
                sent.push(Moved {
                    last_move: p.u64(),
                    tickets: p.u64(),
                });
                received.push(Moved {
                    last_move: p.u64(),
                    tickets: p.u64(),
                });
            }
            let stock = if stock_tail {
                let added = p.u64();
                let closed = match p.u8() {
                    0 => false,
                    1 => true,
                    _ => return Err(Corruption::Payload { kind, len }),
                };
                (added, closed)
            } else {
                (0, false)
            };
            let lease = if lease_tail {
                let payload = p.take::<LEASE_PAYLOAD_BYTES>();
                Some(LeaseState::decode(&payload).ok_or(Corruption::Payload { kind, len })?)
            } else {
                None
            };
            let (added, closed) = stock;
            let stock = (added, closed, lease);
            let ledger = Ledger::from_parts(shard, epoch, base, sold, stock, sent, received)
                .map_err(Corruption::Ledger)?;
            Record::Snapshot(ledger)
        }
        KIND_RESTOCK => {
            fits(8)?;
            Record::Restock { qty: p.u64() }
        }
        KIND_SALES => {
            fits(1)?;
            match p.u8() {
                0 => Record::Sales { closed: false },
                1 => Record::Sales { closed: true },
                _ => return Err(Corruption::Payload { kind, len }),
            }
        }
        KIND_KEYED => {
            fits(KEYED_PAYLOAD_BYTES)?;
            let payload = p.take::<KEYED_PAYLOAD_BYTES>();
            let (sale, entry) =
                KeyRecord::decode(&payload).ok_or(Corruption::Payload { kind, len })?;
            Record::Keyed { sale, entry }
        }
        KIND_LEASE => {
            fits(LEASE_PAYLOAD_BYTES)?;
            let payload = p.take::<LEASE_PAYLOAD_BYTES>();
            Record::Lease(LeaseState::decode(&payload).ok_or(Corruption::Payload { kind, len })?)
        }
        kind => return Err(Corruption::Kind { kind }),
    };
    Ok(Some(Frame {
        seq,
        shard,
        record,
        bytes: end,
    }))
}

/// Little-endian reads from a slice whose length the caller checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split_at gives N bytes")
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(shards: usize) -> Record {
        let mut l = Ledger::new(1, shards, 3, 100);
        Record::Give {
            to: 0,
            move_id: 1,
            qty: 7,
        }
        .apply_to(&mut l)
        .unwrap();
        Record::Snapshot(l)
    }

    #[test]
    fn a_record_applies_as_its_change() {
        // (record applied to a ledger of shard 1 of 3 with base 10, outcome, available after)
        let cases = [
            (Record::Sale { qty: 4 }, Ok(()), 6),
            (
                Record::Give {
                    to: 0,
                    move_id: 1,
                    qty: 3,
                },
                Ok(()),
                7,
            ),
            (
                Record::Receive {
                    from: 2,
                    move_id: 1,
                    qty: 5,
                },
                Ok(()),
                15,
            ),
            (Record::Sale { qty: 11 }, Err(LedgerError::Overdrawn), 10),
            (
                Record::Snapshot(Ledger::new(1, 3, 0, 0)),
                Err(LedgerError::SnapshotNotFirst),
                10,
            ),
        ];
        for (record, outcome, available) in cases {
            let mut ledger = Ledger::new(1, 3, 7, 10);
            assert_eq!(record.apply_to(&mut ledger), outcome, "{record:?}");
            assert_eq!(ledger.available(), available, "{record:?}");
        }
    }

    /// A snapshot of shard 1 of `shards` with the restock tail: `added` tickets restocked (the
    /// tail is written when they are more than 0 or sales are closed).
    fn restocked_snapshot(shards: usize, added: u64, closed: bool) -> Record {
        let mut l = Ledger::new(1, shards, 3, 100).with_sales_closed(closed);
        if added > 0 {
            Record::Restock { qty: added }.apply_to(&mut l).unwrap();
        }
        Record::Snapshot(l)
    }

    #[test]
    fn a_snapshot_without_restocks_is_the_earlier_format_and_one_with_them_is_longer() {
        let plain = snapshot(4);
        let mut out = Vec::new();
        encode(&mut out, 0, 1, &plain);
        assert_eq!(
            out.len(),
            snapshot_bytes(4),
            "byte for byte the earlier format"
        );
        let restocked = restocked_snapshot(4, 5, false);
        let mut out = Vec::new();
        encode(&mut out, 0, 1, &restocked);
        assert_eq!(out.len(), snapshot_bytes(4) + SNAPSHOT_STOCK_BYTES);
        let Ok(Some(Frame {
            record: Record::Snapshot(l),
            ..
        })) = decode(&out)
        else {
            panic!("decodes");
        };
        assert_eq!(
            (l.added(), l.available(), l.sales_closed()),
            (5, 105, false)
        );
    }

    /// A lease with an order in flight, `placed` and `collected` tickets moved.
    fn leased(placed: u64, collected: u64) -> LeaseState {
        let mut state = LeaseState {
            placed,
            collected,
            fed: 3,
            ..LeaseState::default()
        };
        state.journal.lease = 50;
        state.journal.intent = Some(crate::cluster::ledger::Request {
            op: crate::cluster::ledger::Op::Answer {
                round: 2,
                tickets: 9,
                waiting: 4,
            },
            seq: 8,
            epoch: 1,
            window: 100,
        });
        state
    }

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C (iSCSI): CRC of the ASCII digits 1 to 9.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn round_trip_every_kind_at_every_split() {
        let records = [
            Record::Sale { qty: 1 },
            Record::Sale { qty: u64::MAX },
            Record::Give {
                to: 1023,
                move_id: 9,
                qty: 2,
            },
            Record::Receive {
                from: 4,
                move_id: 1,
                qty: 1,
            },
            snapshot(2),
            snapshot(SHARDS_MAX),
            Record::Restock { qty: 7 },
            Record::Sales { closed: true },
            Record::Sales { closed: false },
            restocked_snapshot(3, 0, true),
            restocked_snapshot(SHARDS_MAX, u64::MAX / 4, false),
            Record::Lease(leased(0, 0)),
            Record::Lease(leased(7, 3)),
            Record::Snapshot(
                Ledger::new(1, 3, 3, 100)
                    .with_lease(Some(leased(7, 3)))
                    .unwrap(),
            ),
            Record::Snapshot(
                Ledger::new(1, SHARDS_MAX, 3, 100)
                    .with_lease(Some(leased(0, 100)))
                    .unwrap(),
            ),
            // A compaction's snapshot: sales of placed tickets beyond the epoch's base.
            Record::Snapshot({
                let mut l = Ledger::new(1, 2, 3, 0);
                l.set_lease(leased(50, 0)).unwrap();
                l.sell(40).unwrap();
                l
            }),
        ];
        for (i, record) in records.iter().enumerate() {
            let mut out = vec![0xAA];
            encode(&mut out, 40 + i as u64, 1, record);
            let bytes = &out[1..];
            assert_eq!(bytes.len(), encoded_bytes(record));
            assert!(bytes.len() <= RECORD_BYTES_MAX);
            let frame = decode(bytes).unwrap().unwrap();
            assert_eq!(
                frame,
                Frame {
                    seq: 40 + i as u64,
                    shard: 1,
                    record: record.clone(),
                    bytes: bytes.len()
                }
            );
            // Every proper, non-empty prefix is truncated (the first byte, len's low byte, is
            // not zero for any of these records).
            for cut in 1..bytes.len() {
                assert_eq!(
                    decode(&bytes[..cut]),
                    Err(Corruption::Truncated),
                    "cut {cut}"
                );
            }
        }
    }

    /// (bytes, what decoding them gives)
    type DecodeCase = (Vec<u8>, Result<Option<Frame>, Corruption>);

    #[test]
    fn decode_errors_table() {
        let mut sale = Vec::new();
        encode(&mut sale, 5, 0, &Record::Sale { qty: 3 });
        let patch = |at: usize, bytes: &[u8], fix_crc: bool| {
            let mut b = sale.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            if fix_crc {
                let crc = crc32c::crc32c(&b[8..]);
                b[4..8].copy_from_slice(&crc.to_le_bytes());
            }
            b
        };
        let too_long = (PAYLOAD_BYTES_MAX as u32 + 1).to_le_bytes();
        let cases: Vec<DecodeCase> = vec![
            (vec![], Ok(None)),
            (vec![0; 30], Ok(None)),
            (vec![0, 0, 0, 0, 1], Ok(None)),
            (vec![1, 0, 0], Err(Corruption::Truncated)),
            (
                patch(0, &too_long, false),
                Err(Corruption::Length {
                    len: PAYLOAD_BYTES_MAX as u32 + 1,
                }),
            ),
            (patch(0, &[9], false), Err(Corruption::Truncated)),
            (patch(20, &[1], false), Err(Corruption::Checksum)),
            (patch(18, &[10], true), Err(Corruption::Kind { kind: 10 })),
            (
                patch(18, &[KIND_GIVE], true),
                Err(Corruption::Payload {
                    kind: KIND_GIVE,
                    len: 8,
                }),
            ),
            (
                patch(18, &[KIND_SNAPSHOT], true),
                Err(Corruption::Payload {
                    kind: KIND_SNAPSHOT,
                    len: 8,
                }),
            ),
        ];
        for (bytes, outcome) in cases {
            assert_eq!(decode(&bytes), outcome, "{bytes:?}");
        }
    }

    #[test]
    fn snapshot_with_bad_ledger_is_corrupt() {
        let mut out = Vec::new();
        encode(&mut out, 0, 1, &snapshot(2));
        // base (at header + epoch + shards) from 100 to 1: the give of 7 overdraws it.
        let at = HEADER_BYTES + 10;
        out[at..at + 8].copy_from_slice(&1u64.to_le_bytes());
        let crc = crc32c::crc32c(&out[8..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&out),
            Err(Corruption::Ledger(LedgerError::Overdrawn))
        );
    }
}

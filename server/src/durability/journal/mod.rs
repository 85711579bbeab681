//! The durable journal: every change of every shard's slice, appended to that shard's own file
//! with O_DIRECT and made durable before the change is acknowledged.
//!
//! # Layout
//! - [`record`]: the record format (length, CRC32C, sequence number, shard, kind, payload).
//! - [`ledger`]: a shard's slice as cumulative counters; applying a record checks it.
//! - [`tail`]: the write buffer without I/O: `append` a change, `take_batch` the bytes of one group
//!   commit, `done` once durable, `durable` to know what may be acknowledged.
//! - [`file`]: the files beneath: glommio `DmaFile`s in a directory, or a memory disk that injects
//!   faults and crashes (for tests).
//! - [`recover`]: start-up (replay, reconcile moves, start a new epoch), and the per-shard
//!   [`Writer`] (driven at run time by the shard's journal task, or by [`commit`] in tests).
//! - [`inspect`]: a read-only look at a data directory (`ticketd journal inspect`), replayed by
//!   `recover`'s own code, damage named torn tail or corruption with file and offset.
//! - [`reset`]: a new sale in a data directory (`ticketd journal reset`), by the same epoch
//!   switch as a start, so a crash leaves the old sale or the new one.
//!
//! # How a shard uses it
//! ```text
//! start-up (once, any executor):  let r = journal::open(&store, shards, stock).await?;  log r.warnings
//! on shard i's executor:          let (mut writer, tail) = Writer::open(&store, r.shards[i], COMPACT_BYTES_DEFAULT).await?;
//!                                 let tail = RefCell::new(tail);   // slice starts at tail.ledger().available()
//! request path:                   let seq = tail.borrow_mut().append(Change::Sale { qty })?;
//!                                 ... answer once tail.borrow().durable() >= seq
//! writer, one batch at a time:    commit(&tail, &mut writer).await  (Err: the journal failed for good)
//! ```
//! At run time a shard's core holds the tail (`durability::commits`) and hands batches to whoever
//! writes them (the uring driver through its ring, or the journal task through `Writer::write`).
//! A Give's tickets must not be sent to the peer before the Give is durable: otherwise a crash
//! could keep the peer's Receive and lose the Give, and the tickets would exist twice (replay
//! reports that as corruption rather than guess).
//!
//! # Files
//! The data directory holds `MANIFEST` (magic, version, epoch E, shard count N, stock S, tickets
//! sold before E; CRC32C; one block) and `shard-{i}.e{E}.log` for i < N. Each shard file starts
//! with a Snapshot record (the shard's whole ledger) followed by its changes, padded with zeros
//! to a 4096-byte block. Move (a, b, n) is the n-th Give from a to b, and, as channels are FIFO
//! per pair, the n-th Receive at b from a; each side numbers its own records.
//!
//! # Invariants
//! - A change is acknowledged only after the batch holding it was written and fdatasync'ed.
//! - After a write or sync error the journal takes nothing more: no error is retried as if the
//!   bytes might still be there.
//! - Stock is conserved across restarts: `S == sold + Σ slices + in transit`, checked at every
//!   start; a start that finds otherwise stops with an error.
//! - Corruption is never skipped: only a torn last batch is cut off (see `recover::replay`).
//!
//! # Why a crash at any point is safe
//! **Start-up** (every start is a new epoch E+1): the epoch-E files are only read. The new shard
//! files are written, each fdatasync'ed, and the directory synced; then `MANIFEST.tmp` is written
//! and synced, renamed over `MANIFEST`, and the directory synced; only then are the epoch-E files
//! deleted. A crash before the rename leaves `MANIFEST` naming epoch E, whose files are intact
//! (the half-made E+1 files and the temporary manifest are deleted at the next start). After the
//! rename, the manifest names E+1, whose files are complete and named durably. Without any
//! manifest, nothing was ever acknowledged (the manifest exists before any shard runs), so stray
//! shard files are deleted and the configured stock is used.
//!
//! **Appends**: a batch rewrites the block holding the first byte not yet durable, with the same
//! bytes for the durable prefix (see [`Tail::take_batch`]); a crash mid-write can damage only
//! records not yet acknowledged, and replay cuts them.
//!
//! **Compaction** (when a shard file passes the threshold, at a batch boundary): a snapshot of
//! everything appended so far is written to `shard-{i}.e{E}.log.tmp`, synced, renamed over the
//! shard file, and the directory synced; only then are its records acknowledged. Records appended
//! meanwhile are written after it. A crash before the rename leaves the old file, complete; after
//! it, the new file, complete; `*.tmp` files are deleted at the next start.

pub mod file;
pub mod inspect;
pub mod keyed;
pub mod lease;
pub mod ledger;
pub mod record;
pub mod recover;
pub mod reset;
pub mod tail;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub use file::{Crash, Fault, JournalFile, MemDisk, Store};
pub use inspect::{inspect, Damage, DamageKind, Inspection};
pub use keyed::{KeepKeys, KeyRecord};
pub use lease::LeaseState;
pub use ledger::{Ledger, LedgerError, Moved};
pub use record::{Corruption, Seq, BLOCK_BYTES};
pub use recover::{commit, continue_write, open, open_keeping, Recovered, ShardStart, Writer};
pub use reset::reset;
pub use tail::{Batch, BatchKind, Tail, BATCH_BYTES_MAX, COMPACT_BYTES_DEFAULT};

/// One change of a shard's slice, as the shard protocol makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Tickets sold from the slice.
    Sale {
        /// Tickets sold.
        qty: u64,
    },
    /// Tickets sent to another shard (at least 1).
    Give {
        /// The receiving shard.
        to: usize,
        /// Tickets sent.
        qty: u64,
    },
    /// Tickets received from another shard (at least 1).
    Receive {
        /// The giving shard.
        from: usize,
        /// Tickets received.
        qty: u64,
    },
    /// Tickets an operator added (a restock; the coordinator only, at least 1).
    Restock {
        /// Tickets added.
        qty: u64,
    },
    /// An operator closed sales, or opened them again (the coordinator only).
    Sales {
        /// Sales are closed from now on.
        closed: bool,
    },
    /// An idempotency key's answer, with the tickets it sold from the slice (0: none here).
    Keyed {
        /// Tickets sold from the slice by this change.
        sale: u64,
        /// The key and its answer.
        entry: KeyRecord,
    },
    /// A cluster node's lease as it is now (the coordinator only; replaces the last one), with
    /// the tickets it placed into or collected from the slice this epoch.
    Lease(LeaseState),
}

/// Why the journal cannot start or cannot go on.
#[derive(Clone, Debug)]
pub enum JournalError {
    /// A file operation failed.
    Io {
        /// The file (or the directory).
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// Where in the file, for reads and writes.
        offset: Option<u64>,
        /// The operating system's error (shared so the permanent failure can be reported to
        /// every later caller).
        source: Arc<io::Error>,
    },
    /// A write returned 0 bytes: the device takes nothing more.
    WriteZero {
        /// The file.
        path: PathBuf,
        /// Where the write was to go.
        offset: u64,
    },
    /// A shard file is corrupt before its last batch.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The offset of the first bad record.
        offset: u64,
        /// What is wrong there.
        what: Corruption,
    },
    /// The manifest is unreadable.
    Manifest {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A shard file the manifest names is missing.
    MissingFile {
        /// The missing file.
        path: PathBuf,
    },
    /// The two sides of a pair's moves disagree: the receiver has more than the sender sent.
    MoveMismatch {
        /// The giving shard.
        from: usize,
        /// The receiving shard.
        to: usize,
        /// What the giver's journal says it sent.
        sent: Moved,
        /// What the receiver's journal says it received.
        received: Moved,
    },
    /// Sold plus available is not the stock.
    Unbalanced {
        /// The stock in the manifest.
        stock: u64,
        /// Tickets sold, by the journal (`u64::MAX` on overflow).
        sold: u64,
        /// Tickets available, by the journal (`u64::MAX` on overflow).
        available: u64,
    },
    /// A cluster node's sales this epoch are fewer than its lease had counted, or more than the
    /// lease could have held.
    LeaseUnbalanced {
        /// Sales of every shard this epoch.
        sold: u64,
        /// Sales the lease had counted.
        fed: u64,
        /// Unsold tickets the lease held.
        lease: u64,
    },
}

impl JournalError {
    /// An I/O error on `path`.
    pub fn io(path: PathBuf, op: &'static str, source: io::Error) -> Self {
        JournalError::Io {
            path,
            op,
            offset: None,
            source: Arc::new(source),
        }
    }

    /// The same error, at a file offset.
    pub(crate) fn at(mut self, at: u64) -> Self {
        if let JournalError::Io { offset, .. } = &mut self {
            *offset = Some(at);
        }
        self
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io {
                path,
                op,
                offset,
                source,
            } => {
                write!(f, "journal {op} of {}", path.display())?;
                if let Some(offset) = offset {
                    write!(f, " at offset {offset}")?;
                }
                write!(f, " failed: {source}")
            }
            JournalError::WriteZero { path, offset } => write!(
                f,
                "journal write of {} at offset {offset} wrote nothing",
                path.display()
            ),
            JournalError::Corrupt { path, offset, what } => write!(
                f,
                "journal {} is corrupt at offset {offset}: {what}",
                path.display()
            ),
            JournalError::Manifest { path, what } => {
                write!(
                    f,
                    "journal manifest {} is unreadable: {what}",
                    path.display()
                )
            }
            JournalError::MissingFile { path } => {
                write!(f, "journal file {} is missing", path.display())
            }
            JournalError::LeaseUnbalanced { sold, fed, lease } => write!(
                f,
                "the journal's {sold} sales this epoch do not fit the cluster lease: it had \
                 counted {fed} and held {lease} unsold tickets"
            ),
            JournalError::MoveMismatch {
                from,
                to,
                sent,
                received,
            } => write!(
                f,
                "journal moves from shard {from} to shard {to} disagree: sent {} tickets in {} \
                 moves, received {} in {}",
                sent.tickets, sent.last_move, received.tickets, received.last_move
            ),
            JournalError::Unbalanced {
                stock,
                sold,
                available,
            } => write!(
                f,
                "journal does not balance: stock {stock}, sold {sold}, available {available}"
            ),
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::{HashMap, VecDeque};

    use futures_lite::future::block_on;

    use super::record::Record;
    use super::recover::{shard_file, MANIFEST};
    use super::*;
    use crate::stock::slice::allotment;

    /// One running shard of a test: its writer and its tail.
    struct Node {
        /// The I/O half.
        writer: Writer,
        /// The buffer half, borrowed around (never across) the I/O, as the shard will.
        tail: RefCell<Tail>,
    }

    fn start(
        disk: &MemDisk,
        shards: usize,
        stock: u64,
        compact_bytes: u64,
    ) -> Result<(Recovered, Vec<Node>), JournalError> {
        let store = Store::Mem(disk.clone());
        block_on(async {
            let r = open(&store, shards, stock).await?;
            let mut nodes = Vec::new();
            for s in &r.shards {
                let (writer, tail) = Writer::open(&store, s.clone(), compact_bytes).await?;
                nodes.push(Node {
                    writer,
                    tail: RefCell::new(tail),
                });
            }
            check_balance(&r);
            Ok((r, nodes))
        })
    }

    /// What every successful start must show: the stock balances, and is cut by `allotment`.
    fn check_balance(r: &Recovered) {
        assert_eq!(r.sold + r.available, r.stock, "{r:?}");
        for (i, s) in r.shards.iter().enumerate() {
            assert_eq!(s.ledger.base(), allotment(r.available, r.shards.len(), i));
            assert_eq!(s.ledger.available(), s.ledger.base());
            assert_eq!((s.ledger.epoch(), s.seq), (r.epoch, 0));
        }
    }

    /// Commits until nothing is left, or the first error.
    fn commit_all(node: &mut Node) -> Result<(), JournalError> {
        block_on(async {
            while commit(&node.tail, &mut node.writer).await?.is_some() {}
            Ok(())
        })
    }

    fn append(node: &Node, change: Change) -> Result<Seq, JournalError> {
        node.tail.borrow_mut().append(change)
    }

    fn durable(node: &Node) -> Seq {
        node.tail.borrow().durable()
    }

    /// 1 + 2 + … + k: shard 0 sells k sales of 1, 2, … so the sold total tells which prefix of
    /// its records survived.
    fn triangle(k: u64) -> u64 {
        k * (k + 1) / 2
    }

    /// The k such that `sold` is the sum of the first k sales, within `lo..=hi`.
    fn prefix(sold: u64, lo: u64, hi: u64) -> u64 {
        (lo..=hi)
            .find(|&k| triangle(k) == sold)
            .unwrap_or_else(|| panic!("sold {sold} is no prefix of sales {lo}..={hi}"))
    }

    const STOCK: u64 = 1 << 40;

    /// Bytes of a one-shard snapshot (19 + 26 + 32); every sale after it takes 27.
    const SNAPSHOT_1: usize = 77;

    #[test]
    fn every_fault_keeps_exactly_the_acknowledged_prefix() {
        // (fault injected before the fourth batch, whether it fails the journal)
        let faults = [
            (None, false),
            (Some(Fault::ShortWrite(1)), false),
            (Some(Fault::ShortWrite(4096)), false),
            (Some(Fault::ShortWrite(5000)), false),
            (Some(Fault::WriteZero), true),
            (Some(Fault::WriteError), true),
            (Some(Fault::SyncError), true),
        ];
        for (fault, fails) in faults {
            for torn_bytes in [0, 1, 27, 4096, usize::MAX] {
                let disk = MemDisk::new();
                let (_, mut nodes) = start(&disk, 1, STOCK, u64::MAX).unwrap();
                let node = &mut nodes[0];
                let mut appended = 0;
                for round in 0..6 {
                    if round == 3 {
                        if let Some(f) = fault {
                            disk.inject(f);
                        }
                    }
                    for _ in 0..50 {
                        if append(node, Change::Sale { qty: appended + 1 }).is_ok() {
                            appended += 1;
                        }
                    }
                    let outcome = commit_all(node);
                    assert_eq!(outcome.is_err(), fails && round >= 3, "{fault:?}");
                }
                let acked = durable(node);
                assert_eq!(acked, if fails { 150 } else { 300 }, "{fault:?}");
                assert_eq!(appended, if fails { 200 } else { 300 });
                let after = disk.crash(Crash {
                    dir_ops_kept: 0,
                    torn_bytes,
                    sectors_seed: None,
                });
                let (r, _) = start(&after, 1, STOCK, u64::MAX).unwrap();
                prefix(r.sold, acked, appended);
            }
        }
    }

    #[test]
    fn a_torn_last_batch_is_cut_at_every_byte() {
        let build = || {
            let disk = MemDisk::new();
            let (_, mut nodes) = start(&disk, 1, STOCK, u64::MAX).unwrap();
            for k in 1..=100 {
                append(&nodes[0], Change::Sale { qty: k }).unwrap();
            }
            commit_all(&mut nodes[0]).unwrap();
            // 150 more: the last batch rewrites block 0 and fills block 1 (the log ends at 6827).
            for k in 101..=250 {
                append(&nodes[0], Change::Sale { qty: k }).unwrap();
            }
            disk.inject(Fault::SyncError);
            assert!(commit_all(&mut nodes[0]).is_err());
            disk
        };
        let disk = build();
        for torn_bytes in 0..=8192 {
            let (r, _) = start(
                &disk.crash(Crash {
                    dir_ops_kept: 0,
                    torn_bytes,
                    sectors_seed: None,
                }),
                1,
                STOCK,
                u64::MAX,
            )
            .unwrap();
            // Sale k ends at 77 + 27 k with its quantity's seven zero high bytes, which a torn
            // write need not reach to leave the record whole, if the file is that long (the
            // synced file is one block; the torn write makes it longer).
            let readable = (torn_bytes + 7).min(torn_bytes.max(4096));
            let whole = (readable.saturating_sub(SNAPSHOT_1) / 27).clamp(100, 250);
            assert_eq!(r.sold, triangle(whole as u64), "torn at {torn_bytes}");
            // A warning when the cut drops bytes: the next record's first bytes were written.
            let mid_record = whole < 250 && torn_bytes > SNAPSHOT_1 + 27 * whole;
            let warned = r.warnings.iter().any(|w| w.contains("torn tail"));
            assert_eq!(warned, mid_record, "torn at {torn_bytes}: {:?}", r.warnings);
        }
        // Blocks may land out of order: a hole in the last batch with records after it is
        // still a torn tail (the batch was never acknowledged).
        for hole in [2777..2900, 4073..4200, 6000..6827] {
            let whole = ((hole.start - SNAPSHOT_1) / 27).max(100) as u64;
            let after = disk.crash(Crash {
                dir_ops_kept: 0,
                torn_bytes: usize::MAX,
                sectors_seed: None,
            });
            let name = shard_file(0, 1);
            let mut bytes = after.bytes(&name).unwrap();
            bytes[hole.clone()].fill(0);
            after.set_bytes(&name, &bytes);
            let (r, _) = start(&after, 1, STOCK, u64::MAX).unwrap();
            assert_eq!(r.sold, triangle(whole), "hole {hole:?}");
        }
    }

    #[test]
    fn corruption_before_the_last_batch_names_file_and_offset() {
        // 4000 sales: 108,077 bytes, more than a batch can span.
        let disk = MemDisk::new();
        let (_, mut nodes) = start(&disk, 1, STOCK, u64::MAX).unwrap();
        for k in 1..=4000 {
            append(&nodes[0], Change::Sale { qty: k }).unwrap();
            if k % 100 == 0 {
                commit_all(&mut nodes[0]).unwrap();
            }
        }
        let name = shard_file(0, 1);
        let clean = disk.bytes(&name).unwrap();
        // (byte flipped, offset of the record reported)
        let record = |i: usize| SNAPSHOT_1 + 27 * (i - 1);
        let cases = [
            (0, 0),                          // the snapshot's length
            (30, 0),                         // inside the snapshot
            (record(10), record(10)),        // a length
            (record(10) + 4, record(10)),    // a checksum
            (record(10) + 9, record(10)),    // a sequence number
            (record(10) + 16, record(10)),   // the shard
            (record(10) + 18, record(10)),   // the kind
            (record(500) + 20, record(500)), // a quantity
        ];
        for (flip, offset) in cases {
            let mut bytes = clean.clone();
            bytes[flip] ^= 0x5A;
            disk.set_bytes(&name, &bytes);
            let err = start(&disk, 1, STOCK, u64::MAX)
                .err()
                .expect("corruption is an error");
            match &err {
                JournalError::Corrupt {
                    path, offset: at, ..
                } => {
                    assert_eq!(
                        (path.to_str().unwrap(), *at),
                        ("mem:/shard-0.e1.log", offset as u64)
                    );
                }
                other => panic!("flip at {flip}: {other}"),
            }
            let line = err.to_string();
            assert!(line.contains("shard-0.e1.log") && line.contains(&format!("offset {offset}")));
        }
        // Zeros where a record was due, with intact records far after them: a hole, not an end.
        let mut bytes = clean.clone();
        bytes[record(10)..record(11)].fill(0);
        disk.set_bytes(&name, &bytes);
        match start(&disk, 1, STOCK, u64::MAX).err() {
            Some(JournalError::Corrupt { offset, what, .. }) => {
                assert_eq!(offset, record(10) as u64);
                assert!(matches!(what, Corruption::Hole { .. }), "{what}");
            }
            other => panic!("{other:?}"),
        }
        // Within the reach of the last batch, a bad record cannot be told from a torn write: it
        // is cut, with a warning (the limit of detection without a commit marker).
        let mut bytes = clean.clone();
        bytes[record(3990) + 20] ^= 0x5A;
        disk.set_bytes(&name, &bytes);
        let (r, _) = start(&disk, 1, STOCK, u64::MAX).unwrap();
        assert_eq!(r.sold, triangle(3989));
        assert!(r.warnings.iter().any(|w| w.contains("torn tail at offset")));
    }

    #[test]
    fn after_a_write_or_sync_error_the_journal_refuses_everything() {
        for fault in [Fault::WriteZero, Fault::WriteError, Fault::SyncError] {
            let disk = MemDisk::new();
            let (_, mut nodes) = start(&disk, 1, STOCK, u64::MAX).unwrap();
            append(&nodes[0], Change::Sale { qty: 1 }).unwrap();
            disk.inject(fault);
            let err = commit_all(&mut nodes[0]).unwrap_err();
            assert!(err.to_string().contains("mem:/shard-0.e1.log"), "{err}");
            // No retry: later commits and appends report the same failure, nothing is durable.
            assert_eq!(
                commit_all(&mut nodes[0]).unwrap_err().to_string(),
                err.to_string()
            );
            assert!(append(&nodes[0], Change::Sale { qty: 1 }).is_err());
            assert!(nodes[0].tail.borrow_mut().take_batch().is_none());
            assert_eq!(durable(&nodes[0]), 0);
        }
    }

    /// Shard `from` gives `qty` to `to`; `receive` says whether `to` journals the receipt and
    /// `receive_durable` whether it commits it before the crash.
    fn move_then_crash(receive: bool, receive_durable: bool, give_durable: bool) -> MemDisk {
        let disk = MemDisk::new();
        let (_, mut nodes) = start(&disk, 2, 100, u64::MAX).unwrap();
        for qty in [3, 4, 5] {
            append(&nodes[0], Change::Give { to: 1, qty }).unwrap();
            append(&nodes[0], Change::Sale { qty: 1 }).unwrap();
            if give_durable {
                commit_all(&mut nodes[0]).unwrap();
            }
            if receive {
                append(&nodes[1], Change::Receive { from: 0, qty }).unwrap();
                if receive_durable {
                    commit_all(&mut nodes[1]).unwrap();
                }
            }
        }
        disk.crash(Crash::default())
    }

    #[test]
    fn moves_in_transit_are_restored_exactly_once() {
        // (receive journaled, receive durable, tickets restored from transit)
        for (receive, receive_durable, in_transit) in
            [(false, false, 12), (true, false, 12), (true, true, 0)]
        {
            let disk = move_then_crash(receive, receive_durable, true);
            let (r, _) = start(&disk, 2, 100, u64::MAX).unwrap();
            assert_eq!((r.sold, r.available), (3, 97));
            let warned = r
                .warnings
                .iter()
                .any(|w| w.contains("restored 12 tickets in transit"));
            assert_eq!(warned, in_transit > 0, "{:?}", r.warnings);
        }
        // A receipt durable without its give breaks the protocol's rule (send only what is
        // durable); replay reports it rather than count the tickets twice.
        let disk = move_then_crash(true, true, false);
        let err = start(&disk, 2, 100, u64::MAX).err().unwrap();
        assert!(
            matches!(err, JournalError::MoveMismatch { from: 0, to: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn shard_count_changes_conserve_the_stock() {
        let mut disk = MemDisk::new();
        let mut sold = 0;
        for (run, shards) in [4, 3, 5, 1, 2].into_iter().enumerate() {
            let (r, mut nodes) = start(&disk, shards, 1000, u64::MAX).unwrap();
            assert_eq!((r.stock, r.sold, r.available), (1000, sold, 1000 - sold));
            assert_eq!(
                r.warnings.iter().any(|w| w.contains("shard count changed")),
                run > 0
            );
            for (i, node) in nodes.iter_mut().enumerate() {
                append(node, Change::Sale { qty: i as u64 + 1 }).unwrap();
                sold += i as u64 + 1;
                commit_all(node).unwrap();
            }
            if shards > 1 {
                // A move received, and one left in transit by the crash.
                append(&nodes[0], Change::Give { to: 1, qty: 7 }).unwrap();
                append(&nodes[0], Change::Give { to: 1, qty: 2 }).unwrap();
                commit_all(&mut nodes[0]).unwrap();
                append(&nodes[1], Change::Receive { from: 0, qty: 7 }).unwrap();
                commit_all(&mut nodes[1]).unwrap();
            }
            disk = disk.crash(Crash::default());
        }
    }

    #[test]
    fn configured_stock_disagreeing_warns_and_keeps_the_journal() {
        let disk = MemDisk::new();
        let (_, mut nodes) = start(&disk, 2, 100, u64::MAX).unwrap();
        append(&nodes[0], Change::Sale { qty: 10 }).unwrap();
        commit_all(&mut nodes[0]).unwrap();
        let (r, _) = start(&disk, 2, 500, u64::MAX).unwrap();
        assert_eq!((r.stock, r.sold, r.available), (100, 10, 90));
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("configured stock 500 differs from the journal's stock 100"));
    }

    #[test]
    fn compaction_survives_a_crash_at_every_step() {
        // A compaction is five operations: create, write, fdatasync, rename, directory sync.
        for ops in 0..=6 {
            for dir_ops_kept in 0..=2 {
                for torn_bytes in [0, usize::MAX] {
                    let disk = MemDisk::new();
                    let (_, mut nodes) = start(&disk, 2, STOCK, 8192).unwrap();
                    let node = &mut nodes[0];
                    for k in 1..=300 {
                        append(node, Change::Sale { qty: k }).unwrap();
                        if k % 50 == 0 && k < 300 {
                            commit_all(node).unwrap();
                        }
                    }
                    // One batch only: the file passes 8 KiB (8209 bytes), and the next batch,
                    // whatever is appended by then, is the compaction.
                    block_on(commit(&node.tail, &mut node.writer)).unwrap();
                    append(node, Change::Give { to: 1, qty: 1 }).unwrap();
                    disk.cut_power_after(ops);
                    let _ = commit_all(node);
                    let acked = durable(node);
                    assert_eq!(acked > 300, ops >= 5, "ops {ops}");
                    let after = disk.crash(Crash {
                        dir_ops_kept,
                        torn_bytes,
                        sectors_seed: None,
                    });
                    let (r, _) = start(&after, 2, STOCK, 8192).unwrap();
                    // The give is in transit whenever it survived: available never changes.
                    prefix(r.sold, 300, 300);
                    if acked > 300 {
                        assert!(r.warnings.iter().any(|w| w.contains("restored 1 tickets")));
                    }
                }
            }
        }
        // Without a crash, the file shrank to the snapshot plus what followed it.
        let disk = MemDisk::new();
        let (_, mut nodes) = start(&disk, 1, STOCK, 8192).unwrap();
        for k in 1..=1000 {
            append(&nodes[0], Change::Sale { qty: k }).unwrap();
            commit_all(&mut nodes[0]).unwrap();
        }
        assert!(disk.bytes(&shard_file(0, 1)).unwrap().len() <= 12288);
        assert!(!disk.names().iter().any(|n| n.ends_with(".tmp")));
        let (r, _) = start(&disk, 1, STOCK, 8192).unwrap();
        assert_eq!(r.sold, triangle(1000));
    }

    #[test]
    fn start_up_survives_a_crash_at_every_step() {
        // Epoch 1 with sales and a move in transit, then a start with 3 shards cut at every
        // operation, rebooted with every prefix of its unsynced name changes.
        let disk = MemDisk::new();
        let (_, mut nodes) = start(&disk, 2, 1000, u64::MAX).unwrap();
        append(&nodes[0], Change::Sale { qty: 5 }).unwrap();
        append(&nodes[0], Change::Give { to: 1, qty: 100 }).unwrap();
        commit_all(&mut nodes[0]).unwrap();
        let disk = disk.crash(Crash::default());
        // Start-up with 3 shards is 17 operations: 3 × (create, write, fdatasync), directory
        // sync, the manifest's create, write, fdatasync, rename, directory sync, then 2 removals
        // (whose failure is only a warning).
        for ops in 0..=18 {
            for dir_ops_kept in 0..=8 {
                let attempt = disk.crash(Crash::default());
                attempt.cut_power_after(ops);
                let outcome = start(&attempt, 3, 1000, u64::MAX);
                assert_eq!(outcome.is_ok(), ops >= 15, "ops {ops}");
                let after = attempt.crash(Crash {
                    dir_ops_kept,
                    torn_bytes: usize::MAX,
                    sectors_seed: None,
                });
                let (r, _) = start(&after, 3, 1000, u64::MAX).unwrap();
                assert_eq!((r.stock, r.sold, r.available), (1000, 5, 995));
                let epoch = r.epoch;
                let mut expected = vec![MANIFEST.to_string()];
                expected.extend((0..3).map(|i| shard_file(i, epoch)));
                expected.sort();
                assert_eq!(after.names(), expected, "ops {ops} kept {dir_ops_kept}");
            }
        }
    }

    /// Writes an intact record after the snapshot of shard 1 of 2 (which ends at 109).
    fn append_record(disk: &MemDisk, seq: Seq, record: Record) {
        let name = shard_file(1, 1);
        let mut b = disk.bytes(&name).unwrap();
        let mut r = Vec::new();
        record::encode(&mut r, seq, 1, &record);
        b[109..109 + r.len()].copy_from_slice(&r);
        disk.set_bytes(&name, &b);
    }

    /// Something done to a healthy data directory.
    type Damage = Box<dyn Fn(&MemDisk)>;

    #[test]
    fn start_up_errors_table() {
        let healthy = || {
            let disk = MemDisk::new();
            start(&disk, 2, 100, u64::MAX).unwrap();
            disk
        };
        // (damage, expected error's line contains)
        let cases: Vec<(Damage, &str)> = vec![
            (
                Box::new(|d| {
                    d.set_bytes(MANIFEST, b"TKDJ garbage");
                }),
                "journal manifest mem:/MANIFEST is unreadable: too short",
            ),
            (
                Box::new(|d| {
                    let mut b = d.bytes(MANIFEST).unwrap();
                    b[9] ^= 1;
                    d.set_bytes(MANIFEST, &b);
                }),
                "unreadable: checksum mismatch",
            ),
            (
                Box::new(|d| {
                    block_on(Store::Mem(d.clone()).remove(&shard_file(1, 1))).unwrap();
                }),
                "journal file mem:/shard-1.e1.log is missing",
            ),
            (
                Box::new(|d| {
                    d.set_bytes(&shard_file(1, 1), &[0; 4096]);
                }),
                "journal mem:/shard-1.e1.log is corrupt at offset 0: the log is empty",
            ),
            (
                Box::new(|d| {
                    let b = d.bytes(&shard_file(0, 1)).unwrap();
                    d.set_bytes(&shard_file(1, 1), &b);
                }),
                "record of shard 0 in the file of shard 1",
            ),
            (
                Box::new(|d| {
                    // The manifest claims 1 more ticket than the shards account for.
                    let mut b = d.bytes(MANIFEST).unwrap();
                    b[20..28].copy_from_slice(&101u64.to_le_bytes());
                    let crc = crc32c::crc32c(&b[..36]);
                    b[36..40].copy_from_slice(&crc.to_le_bytes());
                    d.set_bytes(MANIFEST, &b);
                }),
                "journal does not balance: stock 101, sold 0, available 100",
            ),
            (
                Box::new(|d| append_record(d, 5, Record::Sale { qty: 1 })),
                "corrupt at offset 109: sequence number 5 where 1 was due",
            ),
            (
                Box::new(|d| append_record(d, 1, Record::Sale { qty: 51 })),
                "corrupt at offset 109: more tickets leave the slice than it holds",
            ),
            (
                Box::new(|d| {
                    let mut b = Vec::new();
                    let stale = Ledger::new(1, 2, 9, 50);
                    record::encode(&mut b, 0, 1, &Record::Snapshot(stale));
                    b.resize(4096, 0);
                    d.set_bytes(&shard_file(1, 1), &b);
                }),
                "corrupt at offset 0: no snapshot of this epoch and shard count first",
            ),
        ];
        for (damage, line) in cases {
            let disk = healthy();
            damage(&disk);
            let err = start(&disk, 2, 100, u64::MAX).err().expect(line);
            assert!(err.to_string().contains(line), "{err}");
        }
        // Shard files without a manifest were never acknowledged: a fresh start.
        let disk = healthy();
        block_on(Store::Mem(disk.clone()).remove(MANIFEST)).unwrap();
        let (r, _) = start(&disk, 1, 7, u64::MAX).unwrap();
        assert_eq!((r.epoch, r.stock, r.sold), (1, 7, 0));
        assert_eq!(disk.names(), vec![MANIFEST.to_string(), shard_file(0, 1)]);
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
    fn random_runs_with_crashes_conserve_the_stock() {
        for seed in 1..=60u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut disk = MemDisk::new();
            let mut shards = 1 + rng.below(4) as usize;
            let (mut acked, mut appended) = (0u64, 0u64);
            for _run in 0..4 {
                let (r, mut nodes) = start(&disk, shards, 10_000, 2048 + rng.below(8192))
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                assert_eq!(r.stock, 10_000, "seed {seed}");
                assert!(
                    acked <= r.sold && r.sold <= appended,
                    "seed {seed}: {acked} {r:?}"
                );
                (acked, appended) = (r.sold, r.sold);
                // Sales not yet acknowledged, per shard: (seq, qty). Gives not yet durable, per
                // shard: (seq, to, qty). Gives durable and sent, per ordered pair, FIFO.
                let mut sales: Vec<Vec<(Seq, u64)>> = vec![Vec::new(); shards];
                let mut gives: Vec<Vec<(Seq, usize, u64)>> = vec![Vec::new(); shards];
                let mut channels: HashMap<(usize, usize), VecDeque<u64>> = HashMap::new();
                if rng.below(3) == 0 {
                    disk.cut_power_after(rng.below(400));
                }
                for _step in 0..rng.below(400) {
                    let i = rng.below(shards as u64) as usize;
                    let available = nodes[i].tail.borrow().ledger().available();
                    match rng.below(10) {
                        0..=3 if available > 0 => {
                            let qty = 1 + rng.below(available.min(20));
                            if let Ok(seq) = append(&nodes[i], Change::Sale { qty }) {
                                appended += qty;
                                sales[i].push((seq, qty));
                            }
                        }
                        4 if available > 0 && shards > 1 => {
                            let to = (i + 1 + rng.below(shards as u64 - 1) as usize) % shards;
                            let qty = 1 + rng.below(available);
                            if let Ok(seq) = append(&nodes[i], Change::Give { to, qty }) {
                                gives[i].push((seq, to, qty));
                            }
                        }
                        5..=7 => {
                            let _ = commit_all(&mut nodes[i]);
                            let d = durable(&nodes[i]);
                            acked += sales[i]
                                .iter()
                                .filter(|s| s.0 <= d)
                                .map(|s| s.1)
                                .sum::<u64>();
                            sales[i].retain(|s| s.0 > d);
                            for &(_, to, qty) in gives[i].iter().filter(|g| g.0 <= d) {
                                channels.entry((i, to)).or_default().push_back(qty);
                            }
                            gives[i].retain(|g| g.0 > d);
                        }
                        _ => {
                            // Deliver the oldest move on some channel into this shard.
                            let from = rng.below(shards as u64) as usize;
                            if let Some(queue) = channels.get_mut(&(from, i)) {
                                if let Some(&qty) = queue.front() {
                                    if append(&nodes[i], Change::Receive { from, qty }).is_ok() {
                                        queue.pop_front();
                                    }
                                }
                            }
                        }
                    }
                }
                disk = disk.crash(Crash {
                    dir_ops_kept: rng.below(4) as usize,
                    torn_bytes: rng.below(9000) as usize,
                    sectors_seed: None,
                });
                shards = 1 + rng.below(5) as usize;
            }
        }
    }

    /// The real file layer: O_DIRECT files under the test binary's directory (the target dir,
    /// on a disk filesystem; tmpfs has no O_DIRECT), written, compacted, replayed. Prints the
    /// time of one batch write + fdatasync (run with `--nocapture` to see it).
    #[test]
    fn dma_files_round_trip_on_disk() {
        use glommio::{LocalExecutorBuilder, Placement};
        use std::time::{Duration, Instant};

        let exe = std::env::current_exe().unwrap();
        let dir = exe
            .parent()
            .unwrap()
            .join(format!("journal-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ex = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .unwrap();
        let store = Store::Disk(dir.clone());
        ex.run(async {
            let r = open(&store, 2, 1000).await.unwrap();
            let (mut writer, tail) = Writer::open(&store, r.shards[0].clone(), 4096)
                .await
                .unwrap();
            let tail = RefCell::new(tail);
            let mut times: Vec<Duration> = Vec::new();
            for _ in 0..200 {
                let seq = tail.borrow_mut().append(Change::Sale { qty: 1 }).unwrap();
                let began = Instant::now();
                commit(&tail, &mut writer).await.unwrap();
                times.push(began.elapsed());
                assert_eq!(tail.borrow().durable(), seq);
            }
            times.sort();
            eprintln!(
                "journal batch write + fdatasync through DmaFile, {} batches: p50 {:?}, p99 {:?}",
                times.len(),
                times[times.len() / 2],
                times[times.len() * 99 / 100]
            );
            // Compaction kept the file small; a restart with another shard count finds it all.
            let size = std::fs::metadata(dir.join(shard_file(0, 1))).unwrap().len();
            assert!(size <= 8192, "{size}");
            let r = open(&store, 3, 1000).await.unwrap();
            assert_eq!((r.epoch, r.sold, r.available), (2, 200, 800));
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(
                names,
                [
                    "MANIFEST",
                    "shard-0.e2.log",
                    "shard-1.e2.log",
                    "shard-2.e2.log"
                ]
            );
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
    /// A cluster node's lease: `lease` unsold tickets held, `placed` of them put into the slice,
    /// `collected` taken back, `fed` sales counted.
    fn lease(lease: u64, unreported: u64, (placed, collected, fed): (u64, u64, u64)) -> Change {
        let journal = crate::cluster::lease::Journal {
            epoch: 1,
            seq: 4,
            window: 50,
            lease,
            unreported,
            ..Default::default()
        };
        Change::Lease(LeaseState {
            journal,
            placed,
            collected,
            fed,
        })
    }

    #[test]
    fn a_cluster_lease_survives_restarts_and_counts_every_sale() {
        let disk = MemDisk::new();
        let (r, mut nodes) = start(&disk, 2, 0, u64::MAX).unwrap();
        assert_eq!((r.stock, r.lease), (0, None));
        // 40 of a lease of 100 placed; 10 move to shard 1; sales on both shards, 5 of them
        // counted in the lease; 2 collected back.
        append(&nodes[0], lease(100, 0, (40, 0, 0))).unwrap();
        append(&nodes[0], Change::Give { to: 1, qty: 10 }).unwrap();
        append(&nodes[1], Change::Receive { from: 0, qty: 10 }).unwrap();
        append(&nodes[0], Change::Sale { qty: 5 }).unwrap();
        append(&nodes[1], Change::Sale { qty: 3 }).unwrap();
        append(&nodes[0], lease(95, 5, (40, 2, 5))).unwrap();
        for node in &mut nodes {
            commit_all(node).unwrap();
        }
        // The restart counts shard 1's 3 sales into the lease; the stock is what was placed
        // less what was collected.
        let (r, _) = start(&disk, 2, 0, u64::MAX).unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!((r.stock, r.sold, r.available), (38, 8, 30));
        let carried = r.lease.expect("the lease is carried");
        assert_eq!(
            (
                carried.journal.lease,
                carried.journal.unreported,
                carried.journal.window
            ),
            (92, 8, 50)
        );
        assert_eq!((carried.placed, carried.collected, carried.fed), (0, 0, 0));
        assert_eq!(r.shards[0].ledger.lease(), Some(&carried));
        assert_eq!(r.shards[1].ledger.lease(), None);
        // The new epoch's snapshot holds it: another restart finds it unchanged.
        let (again, _) = start(&disk, 3, 0, u64::MAX).unwrap();
        assert_eq!(again.lease, Some(carried));
        assert_eq!((again.stock, again.sold, again.available), (38, 8, 30));
    }

    #[test]
    fn a_lease_that_counted_more_sales_than_were_made_is_refused() {
        let disk = MemDisk::new();
        let (_, mut nodes) = start(&disk, 1, 0, u64::MAX).unwrap();
        append(&nodes[0], lease(10, 0, (10, 0, 0))).unwrap();
        append(&nodes[0], Change::Sale { qty: 2 }).unwrap();
        append(&nodes[0], lease(7, 3, (10, 0, 3))).unwrap();
        commit_all(&mut nodes[0]).unwrap();
        let Err(err) = start(&disk, 1, 0, u64::MAX) else {
            panic!("a start despite the impossible lease");
        };
        assert!(
            matches!(
                err,
                JournalError::LeaseUnbalanced {
                    sold: 2,
                    fed: 3,
                    lease: 7
                }
            ),
            "{err}"
        );
    }
}

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
//!   [`Writer`] that the committer drives with [`commit`].
//!
//! # How a shard uses it
//! ```text
//! start-up (once, any executor):  let r = journal::open(&store, shards, stock).await?;  log r.warnings
//! on shard i's executor:          let (mut writer, tail) = Writer::open(&store, r.shards[i], COMPACT_BYTES_DEFAULT).await?;
//!                                 let tail = RefCell::new(tail);   // slice starts at tail.ledger().available()
//! request path:                   let seq = tail.borrow_mut().append(Change::Sale { qty })?;
//!                                 ... answer once tail.borrow().durable() >= seq
//! committer task, every turn:     commit(&tail, &mut writer).await  (Err: the journal failed for good)
//! ```
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
pub mod ledger;
pub mod record;
pub mod recover;
pub mod tail;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub use file::{Crash, Fault, JournalFile, MemDisk, Store};
pub use ledger::{Ledger, LedgerError, Moved};
pub use record::{Corruption, Seq};
pub use recover::{commit, open, Recovered, ShardStart, Writer};
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
    fn at(mut self, at: u64) -> Self {
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

//! Start-up: read the manifest, replay every shard file of the last epoch, reconcile moves, check
//! that the stock balances, and start the next epoch (see the module doc of `journal` for why
//! every step is crash-safe). Also the per-shard writer that writes the tail's batches.

use std::cell::RefCell;

use super::file::{JournalFile, Store};
use super::keyed::{KeepKeys, KeyRecord};
use super::lease::LeaseState;
use super::ledger::Ledger;
use super::record::PAYLOAD_BYTES_MAX;
use super::record::{decode, Corruption, Record, Seq, BLOCK_BYTES, HEADER_BYTES};
use super::tail::{encode_file_start, Batch, BatchKind, Tail, BATCH_BYTES_MAX};
use super::JournalError;
use crate::config::SHARDS_MAX;
use crate::stock::slice::allotment;

/// The manifest's name in the data directory.
pub const MANIFEST: &str = "MANIFEST";
/// The manifest being replaced; never read, deleted at start.
pub(super) const MANIFEST_TMP: &str = "MANIFEST.tmp";
/// The manifest's first bytes.
const MANIFEST_MAGIC: &[u8; 4] = b"TKDJ";
/// The manifest format this code writes and reads.
const MANIFEST_VERSION: u32 = 1;
/// magic (4) + version (4) + epoch (8) + shards (4) + stock (8) + sold (8) + crc (4).
const MANIFEST_BYTES: usize = 40;
/// Files written by a compaction that did not reach its rename end with this.
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// The name of shard `shard`'s file in epoch `epoch`.
pub fn shard_file(shard: usize, epoch: u64) -> String {
    format!("shard-{shard}.e{epoch}.log")
}

/// The epoch of a shard file's name (`shard-{i}.e{E}.log`, or a compaction's `.log.tmp`).
pub(super) fn epoch_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("shard-")?;
    let (_, rest) = rest.split_once(".e")?;
    let (epoch, _) = rest.split_once(".log")?;
    epoch.parse().ok()
}

/// What the manifest says: the epoch whose shard files hold the truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Manifest {
    /// The current epoch.
    pub(super) epoch: u64,
    /// Shard files in that epoch.
    pub(super) shards: usize,
    /// The total stock, sold or not, when the epoch started: the configured stock plus every
    /// restock of earlier epochs (those of this epoch are in the coordinator's file); `journal
    /// reset` starts a new sale.
    pub(super) stock: u64,
    /// Tickets sold before the epoch started.
    pub(super) sold: u64,
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BLOCK_BYTES);
        out.extend_from_slice(MANIFEST_MAGIC);
        out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&(self.shards as u32).to_le_bytes());
        out.extend_from_slice(&self.stock.to_le_bytes());
        out.extend_from_slice(&self.sold.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(out.len(), MANIFEST_BYTES);
        out.resize(BLOCK_BYTES, 0);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Manifest, &'static str> {
        let b = bytes.get(..MANIFEST_BYTES).ok_or("too short")?;
        if &b[..4] != MANIFEST_MAGIC {
            return Err("not a ticketd journal manifest");
        }
        let crc = u32::from_le_bytes(b[36..40].try_into().expect("4 bytes"));
        if crc32c::crc32c(&b[..36]) != crc {
            return Err("checksum mismatch");
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if u32_at(4) != MANIFEST_VERSION {
            return Err("unknown format version");
        }
        let m = Manifest {
            epoch: u64_at(8),
            shards: u32_at(16) as usize,
            stock: u64_at(20),
            sold: u64_at(28),
        };
        if m.shards == 0 || m.shards > SHARDS_MAX || m.sold > m.stock {
            return Err("impossible values");
        }
        Ok(m)
    }
}

/// Where one shard's journal starts in the new epoch: hand it to [`Writer::open`] on the shard's
/// own executor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStart {
    /// The shard's file name in the data directory.
    pub file: String,
    /// The shard's ledger at the start of the epoch (its slice holds `ledger.available()`).
    pub ledger: Ledger,
    /// The sequence number of the file's snapshot; its idempotency keys follow it, and the
    /// first change gets `seq + keys.len() + 1`.
    pub seq: Seq,
    /// The idempotency keys this shard owns, oldest first, written behind the snapshot.
    pub keys: Vec<KeyRecord>,
}

/// What start-up found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The epoch this run writes.
    pub epoch: u64,
    /// The total stock (sold or not), from the journal once there is one: the configured stock
    /// plus every restock.
    pub stock: u64,
    /// Sales were closed by an operator (and stay closed until one opens them).
    pub sales_closed: bool,
    /// A cluster node's lease, as the coordinator's snapshot of this epoch holds it (every sale
    /// of the journals counted in it).
    pub lease: Option<LeaseState>,
    /// Tickets sold before this run.
    pub sold: u64,
    /// Tickets left to sell, cut among the shards: `stock == sold + available`.
    pub available: u64,
    /// One per shard, in shard order.
    pub shards: Vec<ShardStart>,
    /// Things the operator should know, one line each (log them at WARN).
    pub warnings: Vec<String>,
}

/// One shard file, replayed.
#[derive(Debug)]
pub(super) struct Replayed {
    /// The ledger after the last valid record.
    pub(super) ledger: Ledger,
    /// The idempotency keys of its keyed records.
    pub(super) keys: Vec<KeyRecord>,
    /// Where the last valid record ends.
    pub(super) end: u64,
}

/// Whether bytes other than the zero padding follow the last valid record, which ends at `end`:
/// a torn last batch, which replay cuts off.
pub(super) fn torn_after(bytes: &[u8], end: u64) -> bool {
    bytes[end as usize..].iter().any(|&b| b != 0)
}

/// Opens the journal in `dir` at start-up, before the shards start (on one glommio executor):
/// replays the last epoch, reconciles moves, and writes the first snapshot of a new epoch for
/// `shards` shards. `configured_stock` is used only for a data directory without a manifest;
/// otherwise the journal's stock wins and a disagreement is a warning.
pub async fn open(
    store: &Store,
    shards: usize,
    configured_stock: u64,
) -> Result<Recovered, JournalError> {
    open_keeping(store, shards, configured_stock, KeepKeys::ALL).await
}

/// [`open`], carrying the idempotency keys `keep` keeps into the new epoch, each in the file of
/// the shard that owns it under the new shard count.
pub async fn open_keeping(
    store: &Store,
    shards: usize,
    configured_stock: u64,
    keep: KeepKeys,
) -> Result<Recovered, JournalError> {
    assert!((1..=SHARDS_MAX).contains(&shards), "{shards} shards");
    let mut warnings = Vec::new();
    let names = store.list()?;
    let ours = |n: &&String| *n == MANIFEST_TMP || (is_shard_file(n) && n.ends_with(TMP_SUFFIX));
    for name in names.iter().filter(ours) {
        // A manifest or compaction that never reached its rename: the file it would have
        // replaced is complete, this one is not needed.
        store.remove(name).await?;
    }
    let mut keys = Vec::new();
    let mut lease = None;
    let (old, stock, sold, available, sales_closed) = match read_manifest(store).await? {
        None => {
            // Nothing was acknowledged before the first manifest existed (open writes it before
            // any shard runs), so shard files without one are a first start that crashed.
            for name in names.iter().filter(|n| is_shard_file(n)) {
                store.remove(name).await?;
            }
            (None, configured_stock, 0, configured_stock, false)
        }
        Some(m) => {
            let end = replay_epoch(store, &m, &mut warnings, &mut keys).await?;
            lease = end.lease;
            // A cluster node's stock is what its lease placed: no configured stock to compare.
            if end.stock != configured_stock && lease.is_none() {
                warnings.push(format!(
                    "configured stock {configured_stock} differs from the journal's stock {}; \
                     keeping the journal's (to start a new sale of {configured_stock} tickets, \
                     stop ticketd and run `ticketd journal reset --initial-stock \
                     {configured_stock}`)",
                    end.stock
                ));
            }
            if m.shards != shards {
                warnings.push(format!(
                    "shard count changed from {} to {shards}; {} available tickets \
                     cut anew",
                    m.shards, end.available
                ));
            }
            (
                Some(m),
                end.stock,
                end.sold,
                end.available,
                end.sales_closed,
            )
        }
    };
    let manifest = Manifest {
        epoch: old.map_or(0, |m| m.epoch) + 1,
        shards,
        stock,
        sold,
    };
    let owned = keep.sort(keys, shards);
    let starts = begin_epoch(
        store,
        &manifest,
        available,
        (sales_closed, lease),
        owned,
        &mut warnings,
    )
    .await?;
    let epoch = manifest.epoch;
    Ok(Recovered {
        epoch,
        stock,
        sales_closed,
        lease,
        sold,
        available,
        shards: starts,
        warnings,
    })
}

/// Reads and checks the manifest; `None` when there is none (a data directory never started).
pub(super) async fn read_manifest(store: &Store) -> Result<Option<Manifest>, JournalError> {
    let Some(bytes) = store.read(MANIFEST).await? else {
        return Ok(None);
    };
    Manifest::decode(&bytes)
        .map(Some)
        .map_err(|what| JournalError::Manifest {
            path: store.path(MANIFEST),
            what,
        })
}

/// Starts epoch `m.epoch` with `available` tickets cut among `m.shards` shards, crash-safely:
/// every shard file is written and synced, the directory synced, then the manifest replaced
/// (written beside, synced, renamed, directory synced); only then are the shard files of other
/// epochs removed (a failure there is a warning: the next start removes them). The new epoch's
/// file names must not be the current manifest's: those files are the truth until the rename.
pub(super) async fn begin_epoch(
    store: &Store,
    m: &Manifest,
    available: u64,
    (sales_closed, lease): (bool, Option<LeaseState>),
    keys: Vec<Vec<KeyRecord>>,
    warnings: &mut Vec<String>,
) -> Result<Vec<ShardStart>, JournalError> {
    assert_eq!(
        keys.len(),
        m.shards,
        "one list of idempotency keys per shard"
    );
    let mut starts = Vec::with_capacity(m.shards);
    for (shard, keys) in keys.into_iter().enumerate() {
        let ledger = Ledger::new(
            shard,
            m.shards,
            m.epoch,
            allotment(available, m.shards, shard),
        )
        .with_sales_closed(sales_closed)
        .with_lease(lease.filter(|_| shard == 0))
        .expect("a carried lease has placed nothing yet");
        let start = ShardStart {
            file: shard_file(shard, m.epoch),
            ledger,
            seq: 0,
            keys,
        };
        let mut bytes = Vec::new();
        encode_file_start(&mut bytes, &start.ledger, start.seq, &start.keys);
        write_file(store, &start.file, bytes).await?;
        starts.push(start);
    }
    store.sync_dir().await?;
    write_file(store, MANIFEST_TMP, m.encode()).await?;
    store.rename(MANIFEST_TMP, MANIFEST).await?;
    store.sync_dir().await?;
    // The new epoch is the truth now; the old files are garbage (removed again next start if
    // this fails).
    for name in store.list()? {
        if is_shard_file(&name) && !starts.iter().any(|s| s.file == name) {
            if let Err(e) = store.remove(&name).await {
                warnings.push(format!("could not remove an old journal file: {e}"));
            }
        }
    }
    Ok(starts)
}

pub(super) fn is_shard_file(name: &str) -> bool {
    name.starts_with("shard-") && name.contains(".log")
}

/// Writes a whole new file and makes its bytes durable (its name is made durable by the
/// caller's directory sync).
async fn write_file(store: &Store, name: &str, mut bytes: Vec<u8>) -> Result<(), JournalError> {
    bytes.resize(bytes.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES, 0);
    let file = store.create(name).await?;
    let outcome = write_all(store, name, &file, 0, &bytes).await;
    let outcome = match outcome {
        Ok(()) => file
            .fdatasync()
            .await
            .map_err(|e| JournalError::io(store.path(name), "fdatasync", e)),
        Err(e) => Err(e),
    };
    file.close().await;
    outcome
}

/// Writes `bytes` at `offset`, continuing after short writes; a write that makes no progress is
/// an error, never a retry.
async fn write_all(
    store: &Store,
    name: &str,
    file: &JournalFile,
    offset: u64,
    bytes: &[u8],
) -> Result<(), JournalError> {
    let mut done = 0usize;
    while done < bytes.len() {
        let at = offset + done as u64;
        let written = file.write_at(at, &bytes[done..]).await;
        done = continue_write(&store.path(name), at, done, written)?;
    }
    Ok(())
}

/// One step of writing whole blocks: `written` is what the write at file offset `at` (having
/// written `done` bytes of the batch so far) returned. Returns how much of the batch is written
/// now, continuing after a short write from the last whole block (O_DIRECT needs aligned offsets;
/// a few bytes are rewritten with the same values). An error, or a write that makes no progress,
/// is the journal's failure, never a retry. Shared by [`Writer`] and a transport that writes
/// batches through its own ring.
pub fn continue_write(
    path: &std::path::Path,
    at: u64,
    done: usize,
    written: std::io::Result<usize>,
) -> Result<usize, JournalError> {
    let n = written.map_err(|e| JournalError::io(path.to_path_buf(), "write", e).at(at))?;
    if n == 0 {
        return Err(JournalError::WriteZero {
            path: path.to_path_buf(),
            offset: at,
        });
    }
    let aligned = (done + n) / BLOCK_BYTES * BLOCK_BYTES;
    Ok(if aligned > done { aligned } else { done + n })
}

/// What the replay of an epoch found.
#[derive(Clone, Copy, Debug)]
pub(super) struct EpochEnd {
    /// Tickets sold in all, before and during the epoch.
    pub(super) sold: u64,
    /// Tickets available, in slices and in transit.
    pub(super) available: u64,
    /// The total stock at the end of the epoch: the manifest's plus the epoch's restocks.
    pub(super) stock: u64,
    /// Whether sales were closed at the end of the epoch (the coordinator's ledger says).
    pub(super) sales_closed: bool,
    /// A cluster node's lease for the next epoch: the coordinator's, with the epoch's sales it
    /// had not counted yet counted, and nothing placed or collected.
    pub(super) lease: Option<LeaseState>,
}

/// Replays every shard file of the manifest's epoch and checks that the stock balances.
async fn replay_epoch(
    store: &Store,
    m: &Manifest,
    warnings: &mut Vec<String>,
    keys: &mut Vec<KeyRecord>,
) -> Result<EpochEnd, JournalError> {
    let mut ledgers = Vec::with_capacity(m.shards);
    for shard in 0..m.shards {
        let replayed = replay_shard(store, m, shard).await?;
        if replayed.torn {
            warnings.push(format!(
                "cut a torn tail at offset {} of {} (unacknowledged records)",
                replayed.end,
                store.path(&shard_file(shard, m.epoch)).display()
            ));
        }
        ledgers.push(replayed.ledger);
        keys.extend(replayed.keys);
    }
    balance(m, &ledgers, warnings)
}

/// One shard file of an epoch, replayed.
#[derive(Debug)]
pub(super) struct ShardReplay {
    /// The ledger after the last valid record.
    pub(super) ledger: Ledger,
    /// The idempotency keys of its keyed records, in file order.
    pub(super) keys: Vec<KeyRecord>,
    /// Where the last valid record ends.
    pub(super) end: u64,
    /// Whether bytes other than the zero padding follow `end`: a torn last batch, cut off.
    pub(super) torn: bool,
}

/// Reads and replays shard `shard`'s file of the manifest's epoch.
pub(super) async fn replay_shard(
    store: &Store,
    m: &Manifest,
    shard: usize,
) -> Result<ShardReplay, JournalError> {
    let name = shard_file(shard, m.epoch);
    let path = store.path(&name);
    let bytes = store
        .read(&name)
        .await?
        .ok_or_else(|| JournalError::MissingFile { path: path.clone() })?;
    let replayed = replay(&bytes, shard, m).map_err(|(offset, what)| JournalError::Corrupt {
        path: path.clone(),
        offset,
        what,
    })?;
    Ok(ShardReplay {
        torn: torn_after(&bytes, replayed.end),
        ledger: replayed.ledger,
        keys: replayed.keys,
        end: replayed.end,
    })
}

/// Reconciles the moves between the epoch's ledgers (one per shard, in shard order) and checks
/// that the stock balances (the manifest's stock plus the epoch's restocks): returns what the
/// epoch ends with; warns of tickets restored from transit.
pub(super) fn balance(
    m: &Manifest,
    ledgers: &[Ledger],
    warnings: &mut Vec<String>,
) -> Result<EpochEnd, JournalError> {
    let overflow = || JournalError::Unbalanced {
        stock: m.stock,
        sold: u64::MAX,
        available: u64::MAX,
    };
    let mut sold = m.sold;
    let mut available = 0u64;
    let mut stock = i128::from(m.stock);
    let mut epoch_sold = 0u64;
    for l in ledgers {
        sold = sold.checked_add(l.sold()).ok_or_else(overflow)?;
        epoch_sold = epoch_sold.checked_add(l.sold()).ok_or_else(overflow)?;
        available = available.checked_add(l.available()).ok_or_else(overflow)?;
        // A cluster node's stock grows by what its lease placed and shrinks by what it collected.
        stock += i128::from(l.added()) + l.lease_net();
    }
    let stock = u64::try_from(stock).map_err(|_| overflow())?;
    let lease = super::lease::carry(ledgers[0].lease(), epoch_sold)?;
    for from in 0..m.shards {
        for to in (0..m.shards).filter(|&to| to != from) {
            let sent = ledgers[from].sent(to);
            let received = ledgers[to].received(from);
            let consistent = received.last_move <= sent.last_move
                && received.tickets <= sent.tickets
                && (received.last_move < sent.last_move || received.tickets == sent.tickets);
            if !consistent {
                return Err(JournalError::MoveMismatch {
                    from,
                    to,
                    sent,
                    received,
                });
            }
            let in_transit = sent.tickets - received.tickets;
            if in_transit > 0 {
                warnings.push(format!(
                    "restored {in_transit} tickets in transit from shard {from} to shard {to} \
                     (moves {} to {})",
                    received.last_move + 1,
                    sent.last_move
                ));
            }
            available = available.checked_add(in_transit).ok_or_else(overflow)?;
        }
    }
    if sold.checked_add(available) != Some(stock) {
        return Err(JournalError::Unbalanced {
            stock,
            sold,
            available,
        });
    }
    Ok(EpochEnd {
        sold,
        available,
        stock,
        sales_closed: ledgers[0].sales_closed(),
        lease,
    })
}

/// Replays one shard file: the ledger after the last valid record, or the offset and nature of
/// corruption. A bad record is a torn tail (cut off) when no valid record of this shard starts
/// further than [`BATCH_BYTES_MAX`] past its block: only the last batch can be torn, and no
/// batch is longer. Anything else is corruption, reported, never skipped.
pub(super) fn replay(
    bytes: &[u8],
    shard: usize,
    m: &Manifest,
) -> Result<Replayed, (u64, Corruption)> {
    let mut ledger: Option<Ledger> = None;
    let mut keys = Vec::new();
    let mut seq = 0;
    let mut at = 0usize;
    loop {
        let failure = match next_record(&bytes[at..], shard, m, &mut ledger, &mut keys, seq) {
            Ok(Some((record_seq, len))) => {
                seq = record_seq;
                at += len;
                continue;
            }
            Ok(None) => Corruption::Empty,
            Err(c) => c,
        };
        if !failure.may_be_torn() {
            return Err((at as u64, failure));
        }
        let Some(ledger) = ledger else {
            // The first record (the snapshot) was synced before the file was named in the
            // manifest or renamed into place: it cannot be torn.
            return Err((0, failure));
        };
        let window_end = at - at % BLOCK_BYTES + BATCH_BYTES_MAX;
        if let Some(found) = find_record(bytes, window_end.max(at + 1), shard) {
            // A valid record beyond the reach of the last batch: the bad bytes are not a torn
            // tail. Name the first bad record (or the hole where one was due).
            let failure = if failure == Corruption::Empty {
                Corruption::Hole { next: found as u64 }
            } else {
                failure
            };
            return Err((at as u64, failure));
        }
        return Ok(Replayed {
            ledger,
            keys,
            end: at as u64,
        });
    }
}

/// Decodes and checks the record at the start of `bytes` against the replay so far: its shard,
/// its sequence number, and the ledger (which it updates). `Ok(None)` at the end of the log.
fn next_record(
    bytes: &[u8],
    shard: usize,
    m: &Manifest,
    ledger: &mut Option<Ledger>,
    keys: &mut Vec<KeyRecord>,
    seq: Seq,
) -> Result<Option<(Seq, usize)>, Corruption> {
    let Some(frame) = decode(bytes)? else {
        return Ok(None);
    };
    if frame.shard != shard {
        return Err(Corruption::Shard {
            expected: shard,
            found: frame.shard,
        });
    }
    match (ledger.as_mut(), frame.record) {
        (None, Record::Snapshot(l)) => {
            if l.epoch() != m.epoch || l.shards() != m.shards {
                return Err(Corruption::Snapshot);
            }
            *ledger = Some(l);
        }
        (None, _) => return Err(Corruption::Snapshot),
        (Some(l), record) => {
            if frame.seq != seq + 1 {
                return Err(Corruption::Sequence {
                    expected: seq + 1,
                    found: frame.seq,
                });
            }
            record.apply_to(l).map_err(Corruption::Ledger)?;
            if let Record::Keyed { entry, .. } = record {
                keys.push(entry);
            }
        }
    }
    Ok(Some((frame.seq, frame.bytes)))
}

/// The offset of the first intact record of `shard` starting at or after `from`, if any. Checks
/// the cheap header fields before the checksum, so scanning zeros or garbage costs a few
/// comparisons a byte.
fn find_record(bytes: &[u8], from: usize, shard: usize) -> Option<usize> {
    let last = bytes.len().checked_sub(HEADER_BYTES)?;
    (from..=last).find(|&at| {
        let h = &bytes[at..at + HEADER_BYTES];
        let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize;
        let kind = h[18];
        len > 0
            && len <= PAYLOAD_BYTES_MAX
            && super::record::is_kind(kind)
            && usize::from(u16::from_le_bytes([h[16], h[17]])) == shard
            && matches!(decode(&bytes[at..]), Ok(Some(_)))
    })
}

/// The I/O half of one shard's journal: writes and syncs the batches its [`Tail`] hands out.
/// Lives on the shard's executor; drive it with [`commit`].
#[derive(Debug)]
pub struct Writer {
    /// Where the files are.
    store: Store,
    /// The shard file's name.
    file_name: String,
    /// The open shard file.
    file: JournalFile,
}

impl Writer {
    /// Opens the shard's file for appending, on the calling executor, and the tail that feeds
    /// it. `compact_bytes`: see [`super::COMPACT_BYTES_DEFAULT`].
    pub async fn open(
        store: &Store,
        start: ShardStart,
        compact_bytes: u64,
    ) -> Result<(Writer, Tail), JournalError> {
        let file = store.open_write(&start.file).await?;
        let writer = Writer {
            store: store.clone(),
            file_name: start.file,
            file,
        };
        let tail = Tail::with_keys(start.ledger, start.seq, &start.keys, compact_bytes);
        Ok((writer, tail))
    }

    /// The shard file's descriptor, for a transport that writes append batches through its own
    /// io_uring (`None` on the memory disk). It changes when a compaction replaces the file.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        match &self.file {
            JournalFile::Dma(file) => Some(std::os::fd::AsRawFd::as_raw_fd(file)),
            JournalFile::Mem { .. } => None,
        }
    }

    /// The shard file's path, for error messages.
    pub fn path(&self) -> std::path::PathBuf {
        self.store.path(&self.file_name)
    }

    /// Writes one batch and makes it durable. A compaction batch goes to a new file that is
    /// synced, renamed over the shard's file, and whose name is synced, before it counts.
    pub async fn write(&mut self, batch: &Batch) -> Result<(), JournalError> {
        match batch.kind {
            BatchKind::Append => {
                let name = &self.file_name;
                write_all(&self.store, name, &self.file, batch.offset, &batch.bytes).await?;
                if self.store.writes_are_durable() {
                    return Ok(());
                }
                self.file
                    .fdatasync()
                    .await
                    .map_err(|e| JournalError::io(self.store.path(name), "fdatasync", e))
            }
            BatchKind::Compact => {
                let tmp = format!("{}{TMP_SUFFIX}", self.file_name);
                let file = self.store.create(&tmp).await?;
                let synced = match write_all(&self.store, &tmp, &file, 0, &batch.bytes).await {
                    Ok(()) => file
                        .fdatasync()
                        .await
                        .map_err(|e| JournalError::io(self.store.path(&tmp), "fdatasync", e)),
                    Err(e) => Err(e),
                };
                if let Err(e) = synced {
                    file.close().await;
                    return Err(e);
                }
                if let Err(e) = self.store.rename(&tmp, &self.file_name).await {
                    file.close().await;
                    return Err(e);
                }
                // From the rename on, appends go to the new file, even if the directory sync
                // fails (then the journal fails, and the new file is the one to keep).
                let old = std::mem::replace(&mut self.file, file);
                old.close().await;
                self.store.sync_dir().await
            }
        }
    }
}

/// Takes the tail's next batch, writes it, and marks it done (or the journal failed), without
/// holding the borrow across the I/O, so the shard keeps appending meanwhile. Call it from one
/// writer per shard, again whenever [`Tail::pending`]; compaction happens inside it when
/// the file passed its threshold. An error is permanent: the shard must stop acknowledging. Returns the last
/// durable sequence number it made durable, `None` when there was nothing to do, or the
/// journal's permanent failure.
pub async fn commit(
    tail: &RefCell<Tail>,
    writer: &mut Writer,
) -> Result<Option<Seq>, JournalError> {
    let batch = tail.borrow_mut().take_batch();
    let Some(batch) = batch else {
        return match tail.borrow().failed() {
            Some(e) => Err(e.clone()),
            None => Ok(None),
        };
    };
    match writer.write(&batch).await {
        Ok(()) => {
            tail.borrow_mut().done(&batch);
            Ok(Some(batch.last_seq))
        }
        Err(e) => {
            tail.borrow_mut().fail(e.clone());
            Err(e)
        }
    }
}

//! A read-only look at a data directory, for `ticketd journal inspect` (offline, like
//! `pg_waldump`): the manifest, every shard file of its epoch replayed by the same code start-up
//! uses ([`super::recover`]), records counted per kind, each shard's slice, and every damage found
//! with its file and offset, sorted into what start-up repairs (a torn tail) and what stops it.
//!
//! Nothing here writes: an inspection changes no file, and may run beside a server (its figures
//! are then those of the moment each file was read).

use serde::Serialize;

use super::file::Store;
use super::ledger::Ledger;
use super::record::{decode, Record, Seq};
use super::recover::{
    balance, epoch_of, is_shard_file, read_manifest, replay, shard_file, torn_after, Manifest,
    MANIFEST, MANIFEST_TMP, TMP_SUFFIX,
};
use super::JournalError;

/// What a data directory holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// The manifest; `None` when there is none (the next start is a first start, with the
    /// configured stock) or it is unreadable (see `damage`).
    pub manifest: Option<ManifestView>,
    /// The journal's files (manifest, shard files, leftovers), by name.
    pub files: Vec<FileView>,
    /// One per shard file the manifest names, in shard order.
    pub shards: Vec<ShardView>,
    /// Tickets sold in all, before and during the epoch; `None` unless every shard replayed and
    /// the moves reconcile.
    pub sold: Option<u64>,
    /// Tickets left to sell, in slices and in transit; `None` as for `sold`.
    pub available: Option<u64>,
    /// Of `available`, the tickets given by one shard and not yet received by another.
    pub in_transit: Option<u64>,
    /// The whole stock at the end of the epoch: the manifest's plus the epoch's restocks;
    /// `None` as for `sold`.
    pub stock: Option<u64>,
    /// Whether an operator closed sales (the coordinator's ledger); `None` as for `sold`.
    pub sales_closed: Option<bool>,
    /// What start-up would log besides damage (tickets restored from transit), one line each.
    pub notes: Vec<String>,
    /// Everything found wrong, in the order found.
    pub damage: Vec<Damage>,
}

/// The manifest's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestView {
    /// The epoch whose shard files hold the truth (each start begins a new one).
    pub epoch: u64,
    /// Shard files in that epoch.
    pub shards: usize,
    /// The sale's whole stock, sold or not, when the epoch began (restocks of earlier epochs
    /// included; this epoch's are in the coordinator's file).
    pub stock: u64,
    /// Tickets sold before the epoch began.
    pub sold_before_epoch: u64,
}

/// What one file of the journal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRole {
    /// The manifest.
    Manifest,
    /// A shard file of the manifest's epoch.
    Shard,
    /// A file the next start removes: a manifest or compaction that never reached its rename,
    /// a shard file of another epoch, or any shard file without a manifest.
    Leftover,
    /// A shard file beside an unreadable manifest: which epoch holds the truth cannot be told.
    Unknown,
}

/// One file of the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileView {
    /// Its name in the data directory.
    pub name: String,
    /// Its length.
    pub bytes: u64,
    /// The epoch in its name (shard files only).
    pub epoch: Option<u64>,
    /// What it is.
    pub role: FileRole,
}

/// Records of a shard file, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecordCounts {
    /// Snapshots (one per file: its first record).
    pub snapshot: u64,
    /// Sales.
    pub sale: u64,
    /// Tickets given to another shard.
    pub give: u64,
    /// Tickets received from another shard.
    pub receive: u64,
    /// Restocks an operator made (at the coordinator).
    pub restock: u64,
    /// Sales closed or opened by an operator (at the coordinator).
    pub sales: u64,
    /// Idempotency keys with their answers (a keyed sale, or a key kept by a compaction or a new
    /// epoch).
    pub keyed: u64,
    /// A cluster node's lease (at the coordinator).
    pub lease: u64,
}

/// One shard file of the manifest's epoch, replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardView {
    /// The shard.
    pub shard: usize,
    /// The file's name.
    pub file: String,
    /// The file's length (`None` when it is missing).
    pub bytes: Option<u64>,
    /// The intact records before `end`, by kind.
    pub records: RecordCounts,
    /// The snapshot's sequence number (the first change has the next).
    pub first_seq: Option<Seq>,
    /// The last intact record's sequence number.
    pub last_seq: Option<Seq>,
    /// Where the intact records end: the file's valid length (zero padding follows).
    pub end: u64,
    /// The slice the epoch began with; `None` when the file is missing or corrupt.
    pub base: Option<u64>,
    /// Tickets this shard sold during the epoch.
    pub sold: Option<u64>,
    /// Tickets in this shard's slice now.
    pub available: Option<u64>,
    /// Tickets this shard gave to others during the epoch.
    pub given: Option<u64>,
    /// Tickets this shard received from others during the epoch.
    pub received: Option<u64>,
}

/// What kind of damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageKind {
    /// Bytes after the last intact record of a file that do not form one, within the reach of
    /// the last batch: a write torn by a crash, never acknowledged. Start-up cuts it off.
    TornTail,
    /// A bad record with intact records after it, or an intact record that breaks a rule:
    /// start-up stops with an error.
    Corruption,
    /// A shard file the manifest names is missing: start-up stops.
    MissingFile,
    /// The manifest is unreadable: start-up stops.
    Manifest,
    /// The files are intact but do not agree (moves, or the stock's balance): start-up stops.
    Inconsistent,
}

impl DamageKind {
    /// Whether the next start repairs it by itself (losing only unacknowledged records).
    pub fn repaired_at_start(self) -> bool {
        self == DamageKind::TornTail
    }
}

/// One damage found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// Its kind.
    pub kind: DamageKind,
    /// The file, by name in the data directory (`None` for damage across files).
    pub file: Option<String>,
    /// Where in the file: the first bad byte of a torn tail, the first bad record otherwise.
    pub offset: Option<u64>,
    /// What is wrong, in words.
    pub what: String,
}

/// Inspects the journal in `store`, changing nothing. Errors are I/O failures only; whatever is
/// wrong with the content is reported in [`Inspection::damage`]. For a [`Store::Disk`], check
/// first that the directory exists: listing a store creates its directory.
pub async fn inspect(store: &Store) -> Result<Inspection, JournalError> {
    let names = store.list()?;
    let mut out = Inspection {
        manifest: None,
        files: Vec::new(),
        shards: Vec::new(),
        sold: None,
        available: None,
        in_transit: None,
        stock: None,
        sales_closed: None,
        notes: Vec::new(),
        damage: Vec::new(),
    };
    let manifest = match read_manifest(store).await {
        Ok(m) => Ok(m),
        Err(JournalError::Manifest { what, .. }) => {
            out.damage.push(Damage {
                kind: DamageKind::Manifest,
                file: Some(MANIFEST.to_string()),
                offset: None,
                what: format!("the manifest is unreadable: {what}"),
            });
            Err(())
        }
        Err(e) => return Err(e),
    };
    out.manifest = manifest.ok().flatten().map(|m| ManifestView {
        epoch: m.epoch,
        shards: m.shards,
        stock: m.stock,
        sold_before_epoch: m.sold,
    });
    for name in names.iter().filter(|n| is_journal_file(n)) {
        let Some(bytes) = store.read(name).await? else {
            continue; // removed since the listing (a server is running)
        };
        out.files.push(FileView {
            name: name.clone(),
            bytes: bytes.len() as u64,
            epoch: epoch_of(name),
            role: role(name, manifest.as_ref().map(Option::as_ref)),
        });
    }
    if let Ok(Some(m)) = manifest {
        inspect_epoch(store, &m, &mut out).await?;
    }
    Ok(out)
}

/// The journal's own files: the lock file and anything else an operator put there are not.
fn is_journal_file(name: &str) -> bool {
    name == MANIFEST || name == MANIFEST_TMP || is_shard_file(name)
}

/// What `name` is, beside `manifest` (`Err`: an unreadable one).
fn role(name: &str, manifest: Result<Option<&Manifest>, &()>) -> FileRole {
    if name == MANIFEST {
        return FileRole::Manifest;
    }
    let Ok(manifest) = manifest else {
        return FileRole::Unknown;
    };
    let current = manifest.is_some_and(|m| {
        !name.ends_with(TMP_SUFFIX) && (0..m.shards).any(|shard| shard_file(shard, m.epoch) == name)
    });
    if current {
        FileRole::Shard
    } else {
        FileRole::Leftover
    }
}

/// Replays every shard file of the manifest's epoch into `out`, then reconciles them.
async fn inspect_epoch(
    store: &Store,
    m: &Manifest,
    out: &mut Inspection,
) -> Result<(), JournalError> {
    let mut ledgers: Vec<Ledger> = Vec::with_capacity(m.shards);
    for shard in 0..m.shards {
        let file = shard_file(shard, m.epoch);
        let (view, ledger) = match store.read(&file).await? {
            None => {
                out.damage.push(Damage {
                    kind: DamageKind::MissingFile,
                    file: Some(file.clone()),
                    offset: None,
                    what: "the manifest names this shard file, which is missing".to_string(),
                });
                (missing(shard, file), None)
            }
            Some(bytes) => inspect_shard(&bytes, shard, file, m, &mut out.damage),
        };
        out.shards.push(view);
        if let Some(ledger) = ledger {
            ledgers.push(ledger);
        }
    }
    if ledgers.len() < m.shards {
        return Ok(()); // without every ledger, no total can be trusted
    }
    match balance(m, &ledgers, &mut out.notes) {
        Ok(end) => {
            let in_slices: u64 = ledgers.iter().map(Ledger::available).sum();
            out.sold = Some(end.sold);
            out.available = Some(end.available);
            out.in_transit = Some(end.available - in_slices);
            out.stock = Some(end.stock);
            out.sales_closed = Some(end.sales_closed);
        }
        Err(e) => out.damage.push(Damage {
            kind: DamageKind::Inconsistent,
            file: None,
            offset: None,
            what: e.to_string(),
        }),
    }
    Ok(())
}

fn missing(shard: usize, file: String) -> ShardView {
    ShardView {
        shard,
        file,
        bytes: None,
        records: RecordCounts::default(),
        first_seq: None,
        last_seq: None,
        end: 0,
        base: None,
        sold: None,
        available: None,
        given: None,
        received: None,
    }
}

/// One shard file: its view, and its ledger when it replayed (a torn tail does not stop it).
fn inspect_shard(
    bytes: &[u8],
    shard: usize,
    file: String,
    m: &Manifest,
    damage: &mut Vec<Damage>,
) -> (ShardView, Option<Ledger>) {
    let (end, ledger) = match replay(bytes, shard, m) {
        Ok(r) => {
            if torn_after(bytes, r.end) {
                damage.push(Damage {
                    kind: DamageKind::TornTail,
                    file: Some(file.clone()),
                    offset: Some(r.end),
                    what: "no intact record, within the last batch's reach: a write torn by a \
                           crash, never acknowledged; the next start cuts it off"
                        .to_string(),
                });
            }
            (r.end, Some(r.ledger))
        }
        Err((offset, what)) => {
            damage.push(Damage {
                kind: DamageKind::Corruption,
                file: Some(file.clone()),
                offset: Some(offset),
                what: what.to_string(),
            });
            (offset, None)
        }
    };
    let mut view = missing(shard, file);
    view.bytes = Some(bytes.len() as u64);
    view.end = end;
    count_records(&bytes[..end as usize], &mut view);
    if let Some(l) = &ledger {
        let peers = 0..l.shards();
        view.base = Some(l.base());
        view.sold = Some(l.sold());
        view.available = Some(l.available());
        view.given = Some(peers.clone().map(|p| l.sent(p).tickets).sum());
        view.received = Some(peers.map(|p| l.received(p).tickets).sum());
    }
    (view, ledger)
}

/// Counts the records of `valid` (bytes replay found intact) by kind, and their sequence numbers.
fn count_records(valid: &[u8], view: &mut ShardView) {
    let mut at = 0;
    while let Ok(Some(frame)) = decode(&valid[at..]) {
        let counts = &mut view.records;
        match frame.record {
            Record::Snapshot(_) => counts.snapshot += 1,
            Record::Sale { .. } => counts.sale += 1,
            Record::Give { .. } => counts.give += 1,
            Record::Receive { .. } => counts.receive += 1,
            Record::Restock { .. } => counts.restock += 1,
            Record::Sales { .. } => counts.sales += 1,
            Record::Keyed { .. } => counts.keyed += 1,
            Record::Lease(_) => counts.lease += 1,
        }
        view.first_seq.get_or_insert(frame.seq);
        view.last_seq = Some(frame.seq);
        at += frame.bytes;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use futures_lite::future::block_on;

    use super::super::record::BLOCK_BYTES;
    use super::super::tail::BATCH_BYTES_MAX;
    use super::super::{commit, open, Change, MemDisk, Writer};
    use super::*;

    /// A two-shard sale of 200: shard 0 sells 1, 2, ..., 10 (55 tickets) in batches of 5 and
    /// gives 20 to shard 1, which has not received them.
    fn sale() -> MemDisk {
        let disk = MemDisk::new();
        let store = Store::Mem(disk.clone());
        block_on(async {
            let r = open(&store, 2, 200).await.unwrap();
            let (mut writer, tail) = Writer::open(&store, r.shards[0].clone(), u64::MAX)
                .await
                .unwrap();
            let tail = RefCell::new(tail);
            for qty in 1..=10 {
                tail.borrow_mut().append(Change::Sale { qty }).unwrap();
                if qty % 5 == 0 {
                    while commit(&tail, &mut writer).await.unwrap().is_some() {}
                }
            }
            let give = Change::Give { to: 1, qty: 20 };
            tail.borrow_mut().append(give).unwrap();
            while commit(&tail, &mut writer).await.unwrap().is_some() {}
        });
        disk
    }

    /// Bytes of a two-shard snapshot (19 + 26 + 2 × 32); each sale takes 27, a give 37.
    const SNAPSHOT_2: u64 = 109;

    fn look(disk: &MemDisk) -> Inspection {
        block_on(inspect(&Store::Mem(disk.clone()))).unwrap()
    }

    #[test]
    fn a_healthy_directory_is_counted_per_kind_and_shard() {
        let disk = sale();
        let before = disk.names();
        let i = look(&disk);
        assert_eq!(disk.names(), before, "inspect changed the directory");
        assert_eq!(
            i.manifest,
            Some(ManifestView {
                epoch: 1,
                shards: 2,
                stock: 200,
                sold_before_epoch: 0
            })
        );
        assert!(i.damage.is_empty(), "{i:?}");
        assert_eq!(
            (i.sold, i.available, i.in_transit),
            (Some(55), Some(145), Some(20))
        );
        let s0 = &i.shards[0];
        let counts = RecordCounts {
            snapshot: 1,
            sale: 10,
            give: 1,
            receive: 0,
            restock: 0,
            sales: 0,
            keyed: 0,
            lease: 0,
        };
        assert_eq!(
            (s0.records, s0.first_seq, s0.last_seq),
            (counts, Some(0), Some(11))
        );
        assert_eq!(s0.end, SNAPSHOT_2 + 10 * 27 + 37);
        assert_eq!(
            (s0.base, s0.sold, s0.given),
            (Some(100), Some(55), Some(20))
        );
        assert_eq!((s0.received, s0.available), (Some(0), Some(25)));
        let s1 = &i.shards[1];
        assert_eq!(
            (s1.sold, s1.available, s1.records.sale),
            (Some(0), Some(100), 0)
        );
        assert!(i.notes[0].contains("restored 20 tickets in transit"));
        let roles: Vec<_> = i.files.iter().map(|f| (f.name.as_str(), f.role)).collect();
        assert_eq!(
            roles,
            [
                ("MANIFEST", FileRole::Manifest),
                ("shard-0.e1.log", FileRole::Shard),
                ("shard-1.e1.log", FileRole::Shard)
            ]
        );
    }

    /// Each damage is named with its kind, file and offset; a torn tail leaves the totals.
    #[test]
    fn damage_is_named_with_file_and_offset() {
        let file = shard_file(0, 1);
        let sale_at = |k: u64| SNAPSHOT_2 + 27 * k;
        // (damage, kind, file, offset)
        type Case = (
            Box<dyn Fn(&MemDisk)>,
            DamageKind,
            Option<&'static str>,
            Option<u64>,
        );
        let cases: Vec<Case> = vec![
            (
                // The last record (the give) cut in the middle: a torn tail where it starts.
                Box::new(|d| {
                    let b = d.bytes(&shard_file(0, 1)).unwrap();
                    d.set_bytes(&shard_file(0, 1), &b[..(SNAPSHOT_2 + 270 + 10) as usize]);
                }),
                DamageKind::TornTail,
                Some("shard-0.e1.log"),
                Some(sale_at(10)),
            ),
            (
                // A flipped byte in the snapshot: nothing after it can be trusted.
                Box::new(|d| flip(d, &shard_file(0, 1), 30)),
                DamageKind::Corruption,
                Some("shard-0.e1.log"),
                Some(0),
            ),
            (
                Box::new(|d| flip(d, MANIFEST, 9)),
                DamageKind::Manifest,
                Some("MANIFEST"),
                None,
            ),
            // (the files beside it: see `files_the_next_start_removes_are_leftovers`)
            (
                Box::new(|d| {
                    block_on(Store::Mem(d.clone()).remove(&shard_file(1, 1))).unwrap();
                }),
                DamageKind::MissingFile,
                Some("shard-1.e1.log"),
                None,
            ),
        ];
        for (damage, kind, file_named, offset) in cases {
            let disk = sale();
            damage(&disk);
            let i = look(&disk);
            assert_eq!(i.damage.len(), 1, "{kind:?}: {i:?}");
            let d = &i.damage[0];
            assert_eq!(
                (d.kind, d.file.as_deref(), d.offset),
                (kind, file_named, offset)
            );
            let repaired = kind == DamageKind::TornTail;
            assert_eq!(kind.repaired_at_start(), repaired);
            // Start-up agrees: it repairs a torn tail and refuses the rest.
            let started = block_on(open(&Store::Mem(disk.clone()), 2, 200));
            assert_eq!(started.is_ok(), repaired, "{kind:?}");
            if repaired {
                // The give was cut: shard 0 sold its 55, and nothing is in transit.
                assert_eq!(
                    (i.sold, i.available, i.in_transit),
                    (Some(55), Some(145), Some(0))
                );
                assert_eq!(i.shards[0].records.give, 0);
            }
        }
        // Corruption in the middle: a bad record with intact records beyond the last batch's
        // reach is corruption, not a torn tail.
        let disk = sale();
        let mut b = disk.bytes(&file).unwrap();
        let valid = b.len();
        b.resize(valid + 2 * BATCH_BYTES_MAX, 0);
        let tail_record = b[sale_at(9) as usize..sale_at(10) as usize].to_vec();
        let far = valid + BATCH_BYTES_MAX + 100;
        b[far..far + tail_record.len()].copy_from_slice(&tail_record);
        b[sale_at(3) as usize + 12] ^= 1;
        disk.set_bytes(&file, &b);
        let i = look(&disk);
        let d = &i.damage[0];
        assert_eq!(
            (d.kind, d.offset),
            (DamageKind::Corruption, Some(sale_at(3)))
        );
        assert_eq!(d.what, "checksum mismatch");
        assert_eq!(i.shards[0].records.sale, 3);
        assert_eq!(i.sold, None);
    }

    /// Without a manifest, shard files are leftovers of a first start that crashed.
    #[test]
    fn files_the_next_start_removes_are_leftovers() {
        let disk = sale();
        let mut b = disk.bytes(MANIFEST).unwrap();
        block_on(Store::Mem(disk.clone()).remove(MANIFEST)).unwrap();
        let i = look(&disk);
        assert!(i.manifest.is_none() && i.damage.is_empty() && i.shards.is_empty());
        assert!(i.files.iter().all(|f| f.role == FileRole::Leftover));
        // A compaction's temporary file and a stale epoch's file beside a manifest.
        b.truncate(BLOCK_BYTES);
        let store = Store::Mem(disk.clone());
        block_on(async {
            for name in [MANIFEST, "shard-0.e1.log.tmp", "shard-0.e0.log"] {
                let f = store.create(name).await.unwrap();
                f.write_at(0, &b).await.unwrap();
            }
        });
        let i = look(&disk);
        let leftovers: Vec<_> = i
            .files
            .iter()
            .filter(|f| f.role == FileRole::Leftover)
            .map(|f| (f.name.as_str(), f.epoch))
            .collect();
        assert_eq!(
            leftovers,
            [("shard-0.e0.log", Some(0)), ("shard-0.e1.log.tmp", Some(1))]
        );
    }

    fn flip(disk: &MemDisk, name: &str, at: usize) {
        let mut b = disk.bytes(name).unwrap();
        b[at] ^= 0x40;
        disk.set_bytes(name, &b);
    }
}

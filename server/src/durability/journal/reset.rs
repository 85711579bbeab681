//! `ticketd journal reset`: start a new sale in a data directory, with the journal's own epoch
//! mechanism, so that a crash at any point leaves a directory that recovers to the old sale or to
//! the new one, never to anything else.
//!
//! The new sale is a new epoch whose number no file in the directory has yet: its shard files
//! (each a snapshot of a full slice, nothing sold) are written and synced, the directory synced,
//! then the manifest (stock N, nothing sold) is written beside, synced, renamed over `MANIFEST`,
//! and the directory synced ([`super::recover::begin_epoch`], the same steps as every start).
//! Before the rename, `MANIFEST` names the old epoch, whose files were never touched; after it,
//! the new one, whose files are complete. The old sale's files are removed last.
//!
//! The caller holds the data directory's lock: a reset beside a running server would pull the
//! files from under it.

use super::file::Store;
use super::recover::{begin_epoch, epoch_of, read_manifest, Manifest};
use super::JournalError;
use crate::config::SHARDS_MAX;

/// What a reset did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reset {
    /// The new sale's epoch.
    pub epoch: u64,
    /// Things the operator should know (old files that could not be removed), one line each.
    pub warnings: Vec<String>,
}

/// Replaces the sale in `store` with a new one of `stock` tickets cut among `shards` shards,
/// nothing sold. Works on any directory: empty, healthy, torn, corrupt, or with an unreadable
/// manifest (a reset is also the way out of a journal that cannot be repaired).
pub async fn reset(store: &Store, shards: usize, stock: u64) -> Result<Reset, JournalError> {
    assert!((1..=SHARDS_MAX).contains(&shards), "{shards} shards");
    let current = match read_manifest(store).await {
        Ok(m) => m.map(|m| m.epoch),
        Err(JournalError::Manifest { .. }) => None,
        Err(e) => return Err(e),
    };
    // Past every epoch named anywhere, so that no file the old sale may need is overwritten.
    let newest = store.list()?.iter().filter_map(|n| epoch_of(n)).max();
    let epoch = current.max(newest).unwrap_or(0) + 1;
    let manifest = Manifest {
        epoch,
        shards,
        stock,
        sold: 0,
    };
    let mut warnings = Vec::new();
    // A new sale opens: a close belonged to the old one.
    // Its idempotency keys too: a key names a request of the old sale.
    let keys = vec![Vec::new(); manifest.shards];
    begin_epoch(store, &manifest, stock, (false, None), keys, &mut warnings).await?;
    Ok(Reset { epoch, warnings })
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;

    use super::super::inspect::{inspect, DamageKind};
    use super::super::recover::{shard_file, MANIFEST};
    use super::super::{commit, open, Change, Crash, MemDisk, Writer};
    use super::*;
    use std::cell::RefCell;

    /// The old sale: 1000 tickets over 2 shards, 5 sold and 100 in transit from shard 0 to 1.
    fn old_sale() -> MemDisk {
        let disk = MemDisk::new();
        let store = Store::Mem(disk.clone());
        block_on(async {
            let r = open(&store, 2, 1000).await.unwrap();
            let (mut writer, tail) = Writer::open(&store, r.shards[0].clone(), u64::MAX)
                .await
                .unwrap();
            let tail = RefCell::new(tail);
            tail.borrow_mut().append(Change::Sale { qty: 5 }).unwrap();
            let give = Change::Give { to: 1, qty: 100 };
            tail.borrow_mut().append(give).unwrap();
            while commit(&tail, &mut writer).await.unwrap().is_some() {}
        });
        disk.crash(Crash::default())
    }

    /// (stock, sold, available) after a start with 3 shards (and a configured stock that is
    /// neither sale's, so it cannot be what the start found).
    fn recovered(disk: &MemDisk) -> (u64, u64, u64) {
        let r = block_on(open(&Store::Mem(disk.clone()), 3, 777)).unwrap();
        (r.stock, r.sold, r.available)
    }

    const OLD: (u64, u64, u64) = (1000, 5, 995);
    const NEW: (u64, u64, u64) = (50, 0, 50);

    #[test]
    fn a_reset_starts_a_new_sale_and_removes_the_old_files() {
        let disk = old_sale();
        let store = Store::Mem(disk.clone());
        let done = block_on(reset(&store, 3, 50)).unwrap();
        assert_eq!(
            done,
            Reset {
                epoch: 2,
                warnings: vec![]
            }
        );
        let mut expected = vec![MANIFEST.to_string()];
        expected.extend((0..3).map(|i| shard_file(i, 2)));
        assert_eq!(disk.names(), expected);
        let seen = block_on(inspect(&store)).unwrap();
        assert_eq!((seen.sold, seen.available), (Some(0), Some(50)));
        assert_eq!(seen.shards.len(), 3);
        assert!(seen.damage.is_empty(), "{seen:?}");
        let r = block_on(open(&store, 3, 50)).unwrap();
        assert_eq!((r.stock, r.sold, r.available), NEW);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    /// A reset cut by a power loss after every number of operations, rebooted with every prefix
    /// of its unsynced name changes, recovers to the old sale or the new one: the new one
    /// whenever the reset returned, the old one whenever it stopped before the manifest's rename.
    #[test]
    fn a_reset_survives_a_crash_at_every_step() {
        let disk = old_sale();
        // 3 × (create, write, fdatasync), directory sync, the manifest's create, write,
        // fdatasync: the rename is operation 14, then a directory sync and 2 removals.
        const RENAME_OP: u64 = 14;
        let mut seen_new = false;
        for ops in 0..=18 {
            for dir_ops_kept in 0..=8 {
                let attempt = disk.crash(Crash::default());
                attempt.cut_power_after(ops);
                let outcome = block_on(reset(&Store::Mem(attempt.clone()), 3, 50));
                let after = attempt.crash(Crash {
                    dir_ops_kept,
                    torn_bytes: usize::MAX,
                    sectors_seed: None,
                });
                let found = recovered(&after);
                assert!(found == OLD || found == NEW, "ops {ops}: {found:?}");
                if outcome.is_ok() {
                    assert_eq!(found, NEW, "ops {ops} kept {dir_ops_kept}");
                }
                if ops < RENAME_OP {
                    assert_eq!(found, OLD, "ops {ops} kept {dir_ops_kept}");
                }
                seen_new |= found == NEW;
                // The start after it left only its own epoch.
                let names = after.names();
                assert_eq!(names.len(), 4, "ops {ops}: {names:?}");
            }
        }
        assert!(seen_new);
    }

    /// A reset is the way out of a damaged directory: an unreadable manifest, or a corrupt shard
    /// file, is replaced by the new sale.
    #[test]
    fn a_reset_replaces_a_damaged_journal() {
        for damage in ["manifest", "shard"] {
            let disk = old_sale();
            let store = Store::Mem(disk.clone());
            let (name, at) = match damage {
                "manifest" => (MANIFEST.to_string(), 9),
                _ => (shard_file(1, 1), 30),
            };
            let mut bytes = disk.bytes(&name).unwrap();
            bytes[at] ^= 0x40;
            disk.set_bytes(&name, &bytes);
            let seen = block_on(inspect(&store)).unwrap();
            assert!(
                seen.damage.iter().any(|d| d.kind != DamageKind::TornTail),
                "{damage}: {seen:?}"
            );
            assert!(block_on(open(&store, 2, 1000)).is_err(), "{damage}");
            let done = block_on(reset(&store, 2, 50)).unwrap();
            assert_eq!(done.epoch, 2, "{damage}");
            assert_eq!(recovered(&disk), NEW, "{damage}");
            let seen = block_on(inspect(&store)).unwrap();
            assert!(seen.damage.is_empty(), "{damage}: {seen:?}");
        }
        // An empty directory gets a first sale.
        let disk = MemDisk::new();
        block_on(reset(&Store::Mem(disk.clone()), 1, 50)).unwrap();
        assert_eq!(recovered(&disk), NEW);
    }
}

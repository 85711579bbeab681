//! What `GET /metrics` reads: one slot per shard, each holding the last [`Snapshot`] of that
//! shard's numbers. Made once at start-up and shared by every shard for the life of the process.
//!
//! # Why snapshots, and how stale they are
//! A scrape lands on one shard and must report all of them. Each shard's numbers live in its own
//! core, which no other thread may touch, so each shard *publishes* them: its publisher task
//! copies them into its slot every [`PUBLISH_PERIOD`] (and once when it starts), and the shard
//! that answers a scrape copies every slot out and renders the copies. So
//! - the purchase path writes nothing shared: the only writer of a slot is its own shard's timer
//!   task, never a request, and the only reader is a `/metrics` request;
//! - a scrape never waits on another shard's executor (a mesh question would wait for every peer
//!   to be scheduled and would need a deferred reply like an order's);
//! - a series is at most [`PUBLISH_PERIOD`] old, plus however late a busy shard runs its timer
//!   (`ticketd_metrics_snapshot_age_seconds` shows each slot's real age), and different shards'
//!   series are not from the same instant.
//!
//! A slot is a `Mutex`: held for one copy of a [`Snapshot`] (under a kilobyte, no allocation)
//! by the publisher or a scrape, so a shard's timer can wait at most that long for a scrape on
//! another core.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::app::metrics::Counters;
use crate::buckets::Buckets;
use crate::stock::rebalance::Moves;

/// How often each shard publishes its snapshot: the staleness bound of `/metrics` (a tenth of the
/// shortest scrape interval anyone configures, 1 s; a publish costs a microsecond or two).
pub const PUBLISH_PERIOD: Duration = Duration::from_millis(100);

/// One shard's numbers at one moment: everything `/metrics` shows about it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// The shard's counters (`GET /`'s).
    pub counters: Counters,
    /// The stock protocol's counters.
    pub moves: Moves,
    /// The slice's stock.
    pub stock: Stock,
    /// A journal failed (here or on a peer): the shard sells nothing until a restart.
    pub halted: bool,
    /// The journal, with `--durability sync` (monolith and vacancy).
    pub journal: Option<JournalState>,
    /// Service times, with `--latency-dump`.
    pub service_time: Option<Buckets>,
}

/// A slice's tickets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stock {
    /// Tickets this slice can sell now.
    pub available: u64,
    /// Tickets sold from this slice (tickets moved in and out are in [`Moves`]).
    pub sold: u64,
    /// The known bound of tickets left anywhere, once a gather failed.
    pub bound: Option<u64>,
}

/// A shard's journal as `/metrics` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalState {
    /// It failed for good (until a restart).
    pub failed: bool,
    /// The last durable sequence number.
    pub durable: u64,
    /// The last sequence number appended.
    pub appended: u64,
    /// Group commits done.
    pub commits: u64,
    /// Changes they made durable.
    pub changes: u64,
    /// How long each took.
    pub commit_time: Buckets,
    /// Bytes of the shard's file that are durable (its snapshot and the records after it).
    pub durable_bytes: u64,
}

/// A slot's content: the snapshot, and when it was published (`None`: not yet).
#[derive(Clone, Copy, Debug, Default)]
pub struct Published {
    /// When the shard published it.
    pub at: Option<Instant>,
    /// Its numbers.
    pub snapshot: Snapshot,
}

/// The slots, one per shard (see the module doc).
#[derive(Debug)]
pub struct Board {
    /// Shard `i`'s last snapshot, written only by shard `i`'s publisher.
    slots: Box<[Mutex<Published>]>,
}

impl Board {
    /// A board for `shards` shards that lives as long as the process: made once by start-up (and
    /// by tests), like the CORS policy, so every core can hold it without reference counting.
    pub fn leak(shards: usize) -> &'static Board {
        let slots = (0..shards)
            .map(|_| Mutex::new(Published::default()))
            .collect();
        Box::leak(Box::new(Board { slots }))
    }

    /// How many shards it has slots for.
    pub fn shards(&self) -> usize {
        self.slots.len()
    }

    /// Shard `shard`'s publisher stores its numbers as of `at`.
    pub fn publish(&self, shard: usize, snapshot: &Snapshot, at: Instant) {
        // A panic elsewhere cannot leave a half-copied `Copy` value: poisoning is ignored.
        let mut slot = self.slots[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Published {
            at: Some(at),
            snapshot: *snapshot,
        };
    }

    /// Copies every slot into `into` (one per shard, in shard order), each under its own lock.
    pub fn read(&self, into: &mut Vec<Published>) {
        into.clear();
        for slot in self.slots.iter() {
            into.push(*slot.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_holds_what_its_shard_published_last() {
        let board = Board::leak(2);
        let mut read = Vec::new();
        board.read(&mut read);
        assert_eq!(read.len(), 2);
        assert!(read.iter().all(|p| p.at.is_none()));
        let mut snapshot = Snapshot::default();
        snapshot.counters.requests = 7;
        let now = Instant::now();
        board.publish(1, &snapshot, now);
        snapshot.counters.requests = 9;
        board.publish(1, &snapshot, now);
        board.read(&mut read);
        assert_eq!(read[0].at, None);
        assert_eq!(read[1].at, Some(now));
        assert_eq!(read[1].snapshot.counters.requests, 9);
    }
}

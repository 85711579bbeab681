//! A shard's ledger: what its journal says about its slice, as cumulative counters.
//!
//! Invariant: `available == base + added + placed + Σ received.tickets − Σ sent.tickets − sold
//! − collected`, never negative (`placed`, `collected`: a cluster node's lease, see `lease.rs`),
//! with every sum checked (a ledger that would go negative or overflow is corruption, not a
//! wrap-around). Move numbers per peer are contiguous: the next Give to `b` is move
//! `sent[b].last_move + 1`, the next Receive from `a` is `received[a].last_move + 1`.

use std::fmt;

use super::lease::LeaseState;

/// Tickets moved to or from one peer since the start of the epoch, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// The number of the last move (1 for the first move of the epoch, 0 for none).
    pub last_move: u64,
    /// Tickets carried by moves 1 to `last_move`.
    pub tickets: u64,
}

/// Why a record cannot be applied to a ledger. On replay it means the journal is corrupt; on the
/// write path it means the shard journaled something its slice did not do (a bug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerError {
    /// More tickets leave the slice than it holds.
    Overdrawn,
    /// A counter would pass `u64::MAX`.
    Overflow,
    /// A move names this shard itself, or a shard beyond the shard count.
    BadPeer {
        /// The peer named.
        peer: usize,
    },
    /// A move's number is not the peer's last move number plus one.
    MoveOutOfOrder {
        /// The number that was due.
        expected: u64,
        /// The number found.
        found: u64,
    },
    /// A move of zero tickets (the protocol never sends one).
    EmptyMove,
    /// A snapshot after the first record of a file.
    SnapshotNotFirst,
    /// A lease record whose placed or collected tickets are fewer than the last one's.
    LeaseBackwards,
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerError::Overdrawn => write!(f, "more tickets leave the slice than it holds"),
            LedgerError::Overflow => write!(f, "a ticket counter overflows"),
            LedgerError::BadPeer { peer } => write!(f, "a move names shard {peer}"),
            LedgerError::MoveOutOfOrder { expected, found } => {
                write!(f, "move number {found} where {expected} was due")
            }
            LedgerError::EmptyMove => write!(f, "a move of zero tickets"),
            LedgerError::SnapshotNotFirst => write!(f, "a snapshot after the first record"),
            LedgerError::LeaseBackwards => {
                write!(
                    f,
                    "a lease record counts fewer tickets moved than the last one"
                )
            }
        }
    }
}

/// One shard's slice as its journal records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger {
    /// The shard this ledger belongs to.
    shard: usize,
    /// The shard count of the epoch (the length of `sent` and `received`).
    shards: usize,
    /// The epoch (one per start of the server) this ledger counts from.
    epoch: u64,
    /// Tickets the slice started the epoch with.
    base: u64,
    /// Tickets sold from this slice during the epoch.
    sold: u64,
    /// Tickets an operator added to this slice during the epoch (restocks; the coordinator's
    /// ledger only).
    added: u64,
    /// Sales were closed by an operator. The coordinator's ledger holds the truth; the others
    /// carry what their epoch started with (recovery copies the coordinator's into every new
    /// snapshot).
    sales_closed: bool,
    /// Per peer: tickets given to it this epoch (the entry for `shard` stays zero).
    sent: Vec<Moved>,
    /// Per peer: tickets received from it this epoch (the entry for `shard` stays zero).
    received: Vec<Moved>,
    /// A cluster node's lease (the coordinator's ledger only), as its last lease record left it.
    lease: Option<LeaseState>,
    /// `base + added + placed + Σ received − Σ sent − sold − collected`, kept up to date so
    /// reading it is O(1).
    available: u64,
}

impl Ledger {
    /// A fresh ledger at the start of an epoch: `base` tickets, no sale, no move.
    pub fn new(shard: usize, shards: usize, epoch: u64, base: u64) -> Self {
        assert!(shard < shards, "shard {shard} of {shards}");
        Ledger {
            shard,
            shards,
            epoch,
            base,
            sold: 0,
            added: 0,
            sales_closed: false,
            sent: vec![Moved::default(); shards],
            received: vec![Moved::default(); shards],
            lease: None,
            available: base,
        }
    }

    /// A ledger read from a snapshot, checked: own entries zero, nothing negative or overflowing.
    pub(crate) fn from_parts(
        shard: usize,
        epoch: u64,
        base: u64,
        sold: u64,
        (added, sales_closed, lease): (u64, bool, Option<LeaseState>),
        sent: Vec<Moved>,
        received: Vec<Moved>,
    ) -> Result<Self, LedgerError> {
        let shards = sent.len();
        assert_eq!(shards, received.len(), "decoder gives both lists");
        if shard >= shards {
            return Err(LedgerError::BadPeer { peer: shard });
        }
        if sent[shard] != Moved::default() || received[shard] != Moved::default() {
            return Err(LedgerError::BadPeer { peer: shard });
        }
        for m in sent.iter().chain(&received) {
            // A move carries at least one ticket, so n moves carry at least n tickets.
            if m.tickets < m.last_move {
                return Err(LedgerError::EmptyMove);
            }
        }
        let sum = |list: &[Moved]| {
            list.iter()
                .try_fold(0u64, |acc, m| acc.checked_add(m.tickets))
                .ok_or(LedgerError::Overflow)
        };
        let (placed, collected) = lease.map_or((0, 0), |l| (l.placed, l.collected));
        let inflow = base
            .checked_add(added)
            .and_then(|n| n.checked_add(placed))
            .ok_or(LedgerError::Overflow)?
            .checked_add(sum(&received)?)
            .ok_or(LedgerError::Overflow)?;
        let outflow = sum(&sent)?
            .checked_add(sold)
            .and_then(|n| n.checked_add(collected))
            .ok_or(LedgerError::Overflow)?;
        let available = inflow.checked_sub(outflow).ok_or(LedgerError::Overdrawn)?;
        Ok(Ledger {
            shard,
            shards,
            epoch,
            base,
            sold,
            added,
            sales_closed,
            sent,
            received,
            lease,
            available,
        })
    }

    /// The same ledger with `lease` (read from a snapshot): its placed and collected tickets
    /// count in the slice.
    pub(crate) fn with_lease(mut self, lease: Option<LeaseState>) -> Result<Self, LedgerError> {
        if let Some(state) = lease {
            self.available = self
                .available
                .checked_add(state.placed)
                .ok_or(LedgerError::Overflow)?
                .checked_sub(state.collected)
                .ok_or(LedgerError::Overdrawn)?;
        }
        self.lease = lease;
        self.debug_check();
        Ok(self)
    }

    /// A cluster node's lease as the last lease record left it.
    pub fn lease(&self) -> Option<&LeaseState> {
        self.lease.as_ref()
    }

    /// Records the lease `state`: the tickets its placed and collected counts grew by enter or
    /// leave the slice. Says why it cannot be (and changes nothing).
    pub(crate) fn set_lease(&mut self, state: LeaseState) -> Result<(), LedgerError> {
        let (placed, collected) = self.lease.map_or((0, 0), |l| (l.placed, l.collected));
        let (Some(more), Some(fewer)) = (
            state.placed.checked_sub(placed),
            state.collected.checked_sub(collected),
        ) else {
            return Err(LedgerError::LeaseBackwards);
        };
        self.available = self
            .available
            .checked_add(more)
            .ok_or(LedgerError::Overflow)?
            .checked_sub(fewer)
            .ok_or(LedgerError::Overdrawn)?;
        self.lease = Some(state);
        self.debug_check();
        Ok(())
    }

    /// The tickets the lease placed into this slice, less those it collected, this epoch (as a
    /// signed difference: either may be the larger).
    pub fn lease_net(&self) -> i128 {
        self.lease
            .map_or(0, |l| i128::from(l.placed) - i128::from(l.collected))
    }

    /// The shard this ledger belongs to.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The shard count of the epoch.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The epoch this ledger counts from.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Tickets the slice started the epoch with.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Tickets sold from this slice during the epoch.
    pub fn sold(&self) -> u64 {
        self.sold
    }

    /// Tickets an operator added to this slice during the epoch.
    pub fn added(&self) -> u64 {
        self.added
    }

    /// Whether sales are closed (see the field's doc for whose ledger holds the truth).
    pub fn sales_closed(&self) -> bool {
        self.sales_closed
    }

    /// The same ledger, with sales closed or open: how recovery carries the coordinator's state
    /// into every snapshot of a new epoch.
    pub fn with_sales_closed(mut self, closed: bool) -> Self {
        self.sales_closed = closed;
        self
    }

    /// Tickets this slice holds: `base + added + Σ received − Σ sent − sold`.
    pub fn available(&self) -> u64 {
        self.available
    }

    /// Moves to `peer` this epoch (none for a shard beyond the count).
    pub fn sent(&self, peer: usize) -> Moved {
        self.sent.get(peer).copied().unwrap_or_default()
    }

    /// Moves from `peer` this epoch (none for a shard beyond the count).
    pub fn received(&self, peer: usize) -> Moved {
        self.received.get(peer).copied().unwrap_or_default()
    }

    /// Records a sale of `qty` tickets, or says why it cannot be (and changes nothing).
    pub(crate) fn sell(&mut self, qty: u64) -> Result<(), LedgerError> {
        self.available = self
            .available
            .checked_sub(qty)
            .ok_or(LedgerError::Overdrawn)?;
        // Cannot overflow: sold + available never exceeds what entered the slice.
        self.sold += qty;
        self.debug_check();
        Ok(())
    }

    /// Records a restock of `qty` tickets added to this slice, or says why it cannot be (and
    /// changes nothing).
    pub(crate) fn restock(&mut self, qty: u64) -> Result<(), LedgerError> {
        if qty == 0 {
            return Err(LedgerError::EmptyMove);
        }
        let added = self.added.checked_add(qty).ok_or(LedgerError::Overflow)?;
        self.available = self
            .available
            .checked_add(qty)
            .ok_or(LedgerError::Overflow)?;
        self.added = added;
        self.debug_check();
        Ok(())
    }

    /// Records that sales were closed (`closed`) or opened again.
    pub(crate) fn set_sales_closed(&mut self, closed: bool) {
        self.sales_closed = closed;
    }

    /// Records move `move_id` of `qty` tickets to shard `to`, or says why it cannot be (and
    /// changes nothing).
    pub(crate) fn give(&mut self, to: usize, move_id: u64, qty: u64) -> Result<(), LedgerError> {
        let next = self.check_move(to, self.sent.get(to), move_id, qty)?;
        self.available = self
            .available
            .checked_sub(qty)
            .ok_or(LedgerError::Overdrawn)?;
        self.sent[to] = next;
        self.debug_check();
        Ok(())
    }

    /// Records move `move_id` of `qty` tickets from shard `from`, or says why it cannot be (and
    /// changes nothing).
    pub(crate) fn receive(
        &mut self,
        from: usize,
        move_id: u64,
        qty: u64,
    ) -> Result<(), LedgerError> {
        let next = self.check_move(from, self.received.get(from), move_id, qty)?;
        self.available = self
            .available
            .checked_add(qty)
            .ok_or(LedgerError::Overflow)?;
        self.received[from] = next;
        self.debug_check();
        Ok(())
    }

    /// Asserts (in debug builds) that `available` still equals what the counters add up to:
    /// `base + received == available + sold + sent` (without allocating: it runs on the request
    /// path's journal append).
    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            let total = |list: &[Moved]| list.iter().map(|m| u128::from(m.tickets)).sum::<u128>();
            let (placed, collected) = self.lease.map_or((0, 0), |l| (l.placed, l.collected));
            let wide = u128::from;
            assert_eq!(
                wide(self.base) + wide(self.added) + wide(placed) + total(&self.received),
                wide(self.available) + wide(self.sold) + wide(collected) + total(&self.sent),
                "ledger conservation broken"
            );
        }
    }

    /// The peer's counters after a move numbered `move_id` of `qty` tickets, if it is legal.
    fn check_move(
        &self,
        peer: usize,
        moved: Option<&Moved>,
        move_id: u64,
        qty: u64,
    ) -> Result<Moved, LedgerError> {
        let moved = match moved {
            Some(m) if peer != self.shard => *m,
            _ => return Err(LedgerError::BadPeer { peer }),
        };
        if qty == 0 {
            return Err(LedgerError::EmptyMove);
        }
        let expected = moved.last_move + 1;
        if move_id != expected {
            return Err(LedgerError::MoveOutOfOrder {
                expected,
                found: move_id,
            });
        }
        Ok(Moved {
            last_move: move_id,
            tickets: moved
                .tickets
                .checked_add(qty)
                .ok_or(LedgerError::Overflow)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One change, as the table below applies it (the journal's records, less the snapshot,
    /// whose refusal after the first record is `record.rs`'s to test).
    #[derive(Debug)]
    enum Change {
        Sale(u64),
        Give(usize, u64, u64),
        Receive(usize, u64, u64),
    }

    fn sale(qty: u64) -> Change {
        Change::Sale(qty)
    }

    fn give(to: usize, move_id: u64, qty: u64) -> Change {
        Change::Give(to, move_id, qty)
    }

    fn receive(from: usize, move_id: u64, qty: u64) -> Change {
        Change::Receive(from, move_id, qty)
    }

    fn apply(ledger: &mut Ledger, change: &Change) -> Result<(), LedgerError> {
        match *change {
            Change::Sale(qty) => ledger.sell(qty),
            Change::Give(to, move_id, qty) => ledger.give(to, move_id, qty),
            Change::Receive(from, move_id, qty) => ledger.receive(from, move_id, qty),
        }
    }

    #[test]
    fn apply_table() {
        // (changes applied in order to a ledger of shard 1 of 3 with base 10, the outcome of the
        // last one, available after)
        let cases: Vec<(Vec<Change>, Result<(), LedgerError>, u64)> = vec![
            (vec![sale(4)], Ok(()), 6),
            (vec![sale(11)], Err(LedgerError::Overdrawn), 10),
            (vec![give(0, 1, 10)], Ok(()), 0),
            (vec![give(0, 1, 11)], Err(LedgerError::Overdrawn), 10),
            (
                vec![give(1, 1, 1)],
                Err(LedgerError::BadPeer { peer: 1 }),
                10,
            ),
            (
                vec![give(3, 1, 1)],
                Err(LedgerError::BadPeer { peer: 3 }),
                10,
            ),
            (vec![give(0, 1, 0)], Err(LedgerError::EmptyMove), 10),
            (
                vec![give(0, 2, 1)],
                Err(LedgerError::MoveOutOfOrder {
                    expected: 1,
                    found: 2,
                }),
                10,
            ),
            (vec![give(0, 1, 1), give(2, 1, 1), give(0, 2, 1)], Ok(()), 7),
            (
                vec![give(0, 1, 1), give(0, 1, 1)],
                Err(LedgerError::MoveOutOfOrder {
                    expected: 2,
                    found: 1,
                }),
                9,
            ),
            (vec![receive(2, 1, 5), sale(15)], Ok(()), 0),
            (
                vec![receive(2, 1, u64::MAX)],
                Err(LedgerError::Overflow),
                10,
            ),
        ];
        for (changes, outcome, available) in cases {
            let mut ledger = Ledger::new(1, 3, 7, 10);
            let mut last = Ok(());
            for change in &changes {
                last = apply(&mut ledger, change);
            }
            assert_eq!(last, outcome, "{changes:?}");
            assert_eq!(ledger.available(), available, "{changes:?}");
        }
    }

    /// (shard, base, sold, sent, received, available or error)
    type SnapshotCase = (
        usize,
        u64,
        u64,
        Vec<Moved>,
        Vec<Moved>,
        Result<u64, LedgerError>,
    );

    #[test]
    fn from_parts_table() {
        let m = |last_move, tickets| Moved { last_move, tickets };
        let z = Moved::default();
        // (shard, base, sold, sent, received, outcome: available or error)
        let cases: Vec<SnapshotCase> = vec![
            (0, 10, 3, vec![z, m(1, 2)], vec![z, m(2, 4)], Ok(9)),
            (
                0,
                10,
                9,
                vec![z, m(1, 2)],
                vec![z, z],
                Err(LedgerError::Overdrawn),
            ),
            (
                0,
                1,
                0,
                vec![m(1, 1), z],
                vec![z, z],
                Err(LedgerError::BadPeer { peer: 0 }),
            ),
            (
                2,
                1,
                0,
                vec![z, z],
                vec![z, z],
                Err(LedgerError::BadPeer { peer: 2 }),
            ),
            (
                0,
                10,
                0,
                vec![z, m(3, 2)],
                vec![z, z],
                Err(LedgerError::EmptyMove),
            ),
            (
                0,
                u64::MAX,
                0,
                vec![z, z],
                vec![z, m(1, 1)],
                Err(LedgerError::Overflow),
            ),
        ];
        for (shard, base, sold, sent, received, outcome) in cases {
            let got = Ledger::from_parts(
                shard,
                1,
                base,
                sold,
                (0, false, None),
                sent.clone(),
                received.clone(),
            )
            .map(|l| l.available());
            assert_eq!(got, outcome, "{sent:?} {received:?}");
        }
    }

    #[test]
    fn a_lease_moves_what_its_counts_grew_by_and_never_goes_back() {
        let mut l = Ledger::new(0, 2, 1, 5);
        let state = |placed, collected| LeaseState {
            placed,
            collected,
            ..LeaseState::default()
        };
        l.set_lease(state(10, 0)).unwrap();
        assert_eq!(l.available(), 15);
        l.set_lease(state(12, 4)).unwrap();
        assert_eq!((l.available(), l.lease_net()), (13, 8));
        let before = l.clone();
        for (bad, error) in [
            (state(11, 4), LedgerError::LeaseBackwards),
            (state(12, 3), LedgerError::LeaseBackwards),
            (state(12, 18), LedgerError::Overdrawn),
        ] {
            assert_eq!(l.set_lease(bad), Err(error));
            assert_eq!(l, before, "a refused lease record changes nothing");
        }
        // A snapshot carries it: the counts are in its available tickets.
        let snapshot = Ledger::new(0, 2, 1, 5)
            .with_lease(Some(state(12, 4)))
            .unwrap();
        assert_eq!(snapshot.available(), 13);
    }
}

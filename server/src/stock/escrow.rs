//! A cluster node's lease inside its coordinator (issue 18, `--cluster-etcd`): the node's stock
//! is what its lease placed into its slices, the sales its shards make are counted into the lease,
//! and an order the node's stock cannot cover waits for the lease (acquire, gather round, or a
//! cluster-wide sold out). Pure like the rest of the protocol: the calls the lease wants made go
//! out in `Outbox::calls`, their replies come back through `Node::escrow_reply`
//! (`stock/leased.rs`, the `impl Node` side), and the lease is journaled as `Change::Lease`
//! records, so the shard simulation runs every decision. This file holds the state.
//!
//! # How the lease and the slices meet
//! - **Placing.** The lease may sell [`Lease::sellable`] tickets (its unsold tickets, within the
//!   room its window leaves); `out` of them are in the node's slices (or in transit between
//!   them) and not known sold. Whenever `out` is below `sellable` the difference is placed into
//!   the coordinator's slice: straight in while no shard knows a bound this stock epoch, or else
//!   by an operation like a restock (`Epoch` to every shard first, so that no shard refuses by a
//!   bound while the new tickets exist). Refills spread them as usual.
//! - **Counting.** Every `Taken` carries the sales its shard made since its last one, and leaves
//!   only once they are durable; the coordinator counts its own. A census (a `Take` of nothing
//!   to every shard) runs when the reports suggest sales it has not counted, or every
//!   [`CENSUS_EVERY`]. Counted sales leave `out` and enter the lease ([`Lease::count`]), which
//!   reports them to etcd.
//! - **Giving back.** Before a call that gives tickets back (a round's answer, a return) or
//!   rejoins, every ticket of the node is collected into the coordinator's slice and taken out of
//!   it (an operation like a gather that takes everything), so what goes back is unsold and the
//!   rejoin's count is final.
//! - **Waiting orders.** An order a gather could not cover with every slice drained waits for the
//!   lease, one at a time in arrival order ([`Lease::order`]): sold (its tickets are placed and
//!   it is gathered again), sold out (the round's close or the bound says so; the bound, true for
//!   the whole cluster, is told to every shard), or still waiting.
//!
//! # Why the window holds
//! `out <= sellable` at every step: placing adds at most the difference; a counted sale lowers
//! both by the same amount; a report, an acquire or a round's close only raise `sellable`; a
//! call that gives tickets back is made only with `out == 0`. Every sale of the node is of a
//! ticket in `out`, so its unreported sales never pass the window: a fence's doubt covers them,
//! also those made before the node learns of the fence (counted then with [`Lease::count`]).
//!
//! # Journal
//! A lease record is appended after every change: in the step that placed or collected tickets
//! (its `placed` and `collected` move them into or out of the slice, so replay balances), after
//! every count and every reply, and with every request before the call leaves (the core lets a
//! call out only once everything journaled before it is durable). Recovery counts the sales the
//! journals hold beyond `fed` into the lease (`durability::journal::recover`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::messages::OrderId;
use crate::cluster::lease::Lease;
pub use crate::cluster::lease::Reply;
use crate::durability::journal::LeaseState;

/// The longest the coordinator goes without counting its shards' sales while tickets are out:
/// a tenth of the lease's report period, so a report carries what was sold up to a moment ago.
pub const CENSUS_EVERY: Duration = Duration::from_millis(20);

/// The longest an order waits for the lease before it is answered 503 (nothing taken): longer
/// than a silent node takes to be fenced (`cluster::liveness::FENCE_AFTER`, 3 s, plus a call),
/// so an order a round blocks is served once the fence lets the round close; shorter than the
/// timeouts of the clients that drive ticketd (wrk and k6 wait 10 s and more).
pub const ORDER_WAIT_MAX: Duration = Duration::from_secs(5);

/// The longest a stopping node waits for its lease to drain (every placed ticket collected, the
/// sales reported, the rest given back to the pool) before it exits anyway, keeping in its
/// journal what is left (the next start resumes it; a node that never comes back is fenced).
/// Two calls through an etcd election (1 s by default) fit; it must stay well within the stop's
/// grace (`--shutdown-timeout-ms`, 5 s by default), which bounds it anyway.
pub const DRAIN_WAIT_MAX: Duration = Duration::from_secs(2);

/// The 503 `cluster_unavailable` an order answered by [`ORDER_WAIT_MAX`] gets.
pub const UNSETTLED: &str = "the cluster's ledger did not settle this order in time (etcd \
                             unreachable, or a node silent): nothing was sold; try again";

/// Steps one tick takes at most: each starts an operation, makes a call, places tickets or
/// answers a waiting order; a tick that would take more is a bug (a loop), stopped here.
pub(super) const TICK_STEPS_MAX: usize = 64;

/// An order waiting for the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Waiting {
    /// The shard whose client waits.
    pub(super) from: usize,
    /// Its order.
    pub(super) order: OrderId,
    /// Tickets asked for.
    pub(super) qty: u64,
    /// The lease's name for it ([`Lease::order`]'s id).
    pub(super) id: u64,
    /// When it began to wait (the lease's clock).
    pub(super) since: Duration,
}

/// The coordinator's side of a cluster node's lease.
#[derive(Debug)]
pub struct Escrow {
    /// The lease's policy and journal.
    pub(super) lease: Lease,
    /// The instant the lease's clock counts from.
    pub(super) origin: Instant,
    /// The lease's clock at the last event.
    pub(super) now: Duration,
    /// Tickets placed into the slice this journal epoch.
    pub(super) placed: u64,
    /// Tickets collected from the slice this journal epoch.
    pub(super) collected: u64,
    /// Sales of the node this journal epoch counted into the lease.
    pub(super) fed: u64,
    /// Tickets placed and neither known sold nor collected (see the module doc).
    pub(super) out: u64,
    /// Sales the peers told (in `Taken`s) not yet counted.
    pub(super) pending: u64,
    /// Orders waiting for the lease, in arrival order.
    pub(super) waiting: VecDeque<Waiting>,
    /// The next [`Waiting::id`].
    pub(super) next_id: u64,
    /// One of the lease's operations (place, collect, census) is queued or running.
    pub(super) busy: bool,
    /// A call was handed out and its reply has not come.
    pub(super) in_flight: bool,
    /// When sales were last counted by a census.
    pub(super) census_at: Duration,
    /// The lease as last journaled (a record is appended only when it changed).
    pub(super) journaled: Option<LeaseState>,
    /// Ticks cut short by [`TICK_STEPS_MAX`] (a bug: the simulation asserts none).
    pub(super) ticks_cut: u64,
    /// Orders the lease sold and sent to be gathered again, by (shard, order): if the gather
    /// falls short (other sales took the tickets first) the order waits again with its lease
    /// name and its wait so far, not afresh.
    pub(super) regathered: HashMap<(usize, OrderId), (u64, Duration)>,
    /// The coordinator stopped serving: orders are answered 503 rather than wait, and nothing
    /// is placed any more.
    pub(super) leaving: bool,
    /// Every shard stopped: the lease drains, until this time at most (the lease's clock).
    pub(super) drain_until: Option<Duration>,
}

impl Escrow {
    /// The lease as recovered, with `out` tickets (all the node's slices hold at start) placed
    /// by it, its clock counting from `origin`.
    pub(super) fn new(lease: Lease, out: u64, origin: Instant) -> Escrow {
        Escrow {
            lease,
            origin,
            now: Duration::ZERO,
            placed: 0,
            collected: 0,
            fed: 0,
            out,
            pending: 0,
            waiting: VecDeque::new(),
            next_id: 0,
            busy: false,
            in_flight: false,
            census_at: Duration::ZERO,
            journaled: None,
            ticks_cut: 0,
            regathered: HashMap::new(),
            leaving: false,
            drain_until: None,
        }
    }

    /// Sales a peer told in a `Taken`: counted at the next tick.
    pub(super) fn peer_sales(&mut self, sold: u64) {
        self.pending += sold;
    }

    /// The lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Tickets placed and not known sold (in the node's slices or between them).
    pub fn out(&self) -> u64 {
        self.out
    }

    /// Ticks cut short by [`TICK_STEPS_MAX`]: a loop, which is a bug.
    pub fn ticks_cut(&self) -> u64 {
        self.ticks_cut
    }

    /// Orders waiting for the lease.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// What the journal holds of the lease now.
    pub fn state(&self) -> LeaseState {
        LeaseState {
            journal: self.lease.journal(),
            placed: self.placed,
            collected: self.collected,
            fed: self.fed,
        }
    }
}

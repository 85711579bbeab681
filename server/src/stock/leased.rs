//! A cluster node's lease as its coordinator runs it: the `impl Node` side of
//! [`super::escrow`] (whose module doc says how the lease and the slices meet, and why the window
//! holds): placing, counting, collecting, the calls, and the orders that wait for the lease.

use std::time::Instant;

use super::escrow::{
    Escrow, Reply, Waiting, CENSUS_EVERY, DRAIN_WAIT_MAX, ORDER_WAIT_MAX, TICK_STEPS_MAX,
};
use super::rebalance::{Node, Op, OrderId, Outbox, COORDINATOR};
use super::slice::Sale;
use crate::cluster::lease::{Lease, OrderAnswer};
use crate::durability::journal::Change;
use crate::stock::messages::{Msg, TakeKind};

impl Node {
    /// Makes this coordinator a cluster node's: `lease` as recovered, `out` tickets (all the
    /// node's slices hold at start) placed by it.
    pub fn start_escrow(&mut self, lease: Lease, out: u64, origin: Instant) {
        assert_eq!(self.id, COORDINATOR, "the coordinator holds the lease");
        self.escrow = Some(Box::new(Escrow::new(lease, out, origin)));
    }

    /// The lease's side, on a cluster node's coordinator.
    pub fn escrow(&self) -> Option<&Escrow> {
        self.escrow.as_deref()
    }

    /// A reply to the lease's call (or a view of the round) came.
    pub fn escrow_reply(&mut self, reply: Reply, now: Instant, out: &mut Outbox) {
        let Some(e) = self.escrow.as_deref_mut() else {
            return;
        };
        e.now = now.saturating_duration_since(e.origin);
        if !matches!(reply, Reply::Observed(_)) {
            e.in_flight = false; // the call in flight is answered
        }
        e.lease.take(reply, e.now);
        self.journal_lease(out);
        self.escrow_tick(now, out);
    }

    /// Does what the lease needs now: count sales, collect, make a call, place tickets, answer
    /// waiting orders. Cheap when there is nothing to do; call it after every event.
    pub fn escrow_tick(&mut self, now: Instant, out: &mut Outbox) {
        let Some(e) = self.escrow.as_deref_mut() else {
            return;
        };
        e.now = now.saturating_duration_since(e.origin);
        self.expire_waiting(out);
        for _ in 0..TICK_STEPS_MAX {
            if !self.escrow_step(out) {
                return;
            }
        }
        if let Some(e) = self.escrow.as_deref_mut() {
            e.ticks_cut += 1;
        }
        tracing::error!("the cluster lease took {TICK_STEPS_MAX} steps in one tick");
    }

    /// One step of [`Node::escrow_tick`]; `false` when there is nothing more to do now.
    fn escrow_step(&mut self, out: &mut Outbox) -> bool {
        let Some(e) = self.escrow.as_deref() else {
            return false;
        };
        if e.busy {
            return false; // its operation's end steps again
        }
        if e.leaving && e.drain_until.is_none() {
            return false; // stopping: the drain waits for every shard to stop
        }
        self.count_sales(out);
        let e = self.escrow.as_deref_mut().expect("checked");
        let now = e.now;
        e.lease.set_placed(e.out);
        let gives_back = e.lease.gives_back(now);
        if gives_back && e.out > 0 {
            // Everything comes back from the shards first (once no call is in flight: its
            // reply may change what the lease gives).
            if e.in_flight {
                return false;
            }
            e.busy = true;
            self.enqueue(Op::Collect, out);
            return true;
        }
        let room = e.lease.sellable().saturating_sub(e.out);
        if room > 0 && !gives_back && !e.leaving {
            e.out += room;
            // A shard's refill batch is a quarter of its share of what was placed: one that
            // would grow it is placed in a new stock epoch, which rescales every shard.
            let share = room / self.shards as u64;
            if self.bound.is_none() && (share / 4).max(1) <= self.batch {
                // No shard refuses by a bound this stock epoch: straight into the slice.
                self.slice.add(room);
                let e = self.escrow.as_deref_mut().expect("checked");
                e.placed += room;
                self.journal_lease(out);
            } else {
                e.busy = true;
                self.enqueue(Op::Place { add: room }, out);
            }
            return true;
        }
        // A waiting order, with everything the lease may sell placed (what it acquired for the
        // order is the order's: a return leaves placed tickets be).
        if !gives_back && self.serve_waiting(out) {
            return true;
        }
        let e = self.escrow.as_deref_mut().expect("checked");
        // Sales the reports show and the lease has not counted (a hint: reports are late).
        let unseen = e
            .out
            .saturating_sub(self.slice.available() + self.reported_others);
        let window = e.lease.journal().window.max(1);
        let due = now.saturating_sub(e.census_at) >= CENSUS_EVERY;
        if e.out > 0 && self.shards > 1 && (unseen * 4 >= window || (unseen > 0 && due)) {
            e.busy = true;
            e.census_at = now;
            self.enqueue(Op::Census, out);
            return true;
        }
        if !e.in_flight {
            if let Some(call) = e.lease.next(now) {
                e.in_flight = true;
                out.calls.push(call);
                self.journal_lease(out);
                return true;
            }
        }
        false
    }

    /// Counts the coordinator's own sales and those its peers told into the lease.
    fn count_sales(&mut self, out: &mut Outbox) {
        let own = self.slice.sold() - self.sold_told;
        self.sold_told = self.slice.sold();
        let e = self.escrow.as_deref_mut().expect("a cluster node");
        let sold = own + std::mem::take(&mut e.pending);
        if sold == 0 {
            return;
        }
        e.lease.count(sold, e.now);
        e.out = e
            .out
            .checked_sub(sold)
            .expect("every sale is of a placed ticket");
        e.fed += sold;
        self.journal_lease(out);
    }

    /// Answers the waiting orders the lease can answer now, in arrival order, each at most
    /// once (one sold here may come back to wait if its gather falls short); `false` when it
    /// answered none.
    fn serve_waiting(&mut self, out: &mut Outbox) -> bool {
        let Some(e) = self.escrow.as_deref() else {
            return false;
        };
        if !e.regathered.is_empty() {
            // Orders sold in the last pass are being gathered: the next pass counts on what
            // they leave.
            return false;
        }
        let waiting = e.waiting.len();
        let mut served = false;
        // Tickets promised to orders sold in this pass: each later one must fit beside them.
        let mut promised = 0;
        for _ in 0..waiting {
            let e = self.escrow.as_deref().expect("a cluster node");
            let Some(w) = e.waiting.front() else { break };
            if promised > 0 && e.lease.sellable() < promised + w.qty {
                break;
            }
            let qty = w.qty;
            match self.serve_first(out) {
                None => break,
                Some(sold) => promised += if sold { qty } else { 0 },
            }
            served = true;
        }
        served
    }

    /// Answers the first waiting order, if the lease can: `Some(true)` sold (gathered again),
    /// `Some(false)` sold out; `None` when it cannot yet.
    fn serve_first(&mut self, out: &mut Outbox) -> Option<bool> {
        let e = self.escrow.as_deref_mut().expect("a cluster node");
        let &w = e.waiting.front()?;
        match e.lease.order(w.id, w.qty) {
            OrderAnswer::Wait => {
                // The lease may have started on it: its journal changed.
                self.journal_lease(out);
                None
            }
            OrderAnswer::Sell => {
                // Its tickets are placed (above): gathered again, it finds them.
                e.waiting.pop_front();
                e.regathered.insert((w.from, w.order), (w.id, w.since));
                let (from, order, qty) = (w.from, w.order, w.qty);
                self.enqueue(Op::Order { from, order, qty }, out);
                Some(true)
            }
            OrderAnswer::SoldOut => {
                e.waiting.pop_front();
                let at_most = e.lease.gather().at_most;
                self.journal_lease(out);
                self.moves.gathers_failed += 1;
                out.denied.push(w.qty);
                if let Some(at_most) = at_most {
                    // At most this many unsold tickets are left in the whole cluster.
                    self.tell_bound(at_most, out);
                }
                self.lease_decided(w.from, w.order, Sale::Insufficient, out);
                Some(false)
            }
        }
    }

    /// An order the lease sold was decided by its gather.
    pub(super) fn regathered_decided(&mut self, from: usize, order: OrderId) {
        if let Some(e) = self.escrow.as_deref_mut() {
            e.regathered.remove(&(from, order));
        }
    }

    /// Every shard stopped (none sells or serves): the lease gives everything back, once its
    /// shards' tickets are collected and its sales reported, for [`DRAIN_WAIT_MAX`] from `now`
    /// but not past `until` (the shards must leave by then). See [`Node::escrow_draining`].
    pub fn escrow_drain(&mut self, now: Instant, until: Instant, out: &mut Outbox) {
        let Some(e) = self.escrow.as_deref_mut() else {
            return;
        };
        if e.drain_until.is_some() {
            return;
        }
        e.now = now.saturating_duration_since(e.origin);
        let until = until.saturating_duration_since(e.origin);
        e.leaving = true;
        e.drain_until = Some((e.now + DRAIN_WAIT_MAX).min(until));
        e.lease.drain();
        self.journal_lease(out);
    }

    /// The lease's drain has not started yet.
    pub fn escrow_drain_pending(&self) -> bool {
        self.escrow
            .as_deref()
            .is_some_and(|e| e.drain_until.is_none())
    }

    /// The lease drains and may still settle: neither settled nor past its drain's end (the
    /// clock is the last event's; the lease's timers tick every few milliseconds).
    pub fn escrow_draining(&self) -> bool {
        self.escrow.as_deref().is_some_and(|e| {
            e.drain_until
                .is_some_and(|until| !e.lease.settled() && e.now < until)
        })
    }

    /// The lease drained: nothing held, unreported or in flight.
    pub fn escrow_drained(&self) -> bool {
        self.escrow
            .as_deref()
            .is_some_and(|e| e.drain_until.is_some() && e.lease.settled())
    }

    /// Answers 503 every order that waited [`ORDER_WAIT_MAX`] (the lease drops it if it was
    /// working on it): nothing was taken for it.
    fn expire_waiting(&mut self, out: &mut Outbox) {
        let e = self.escrow.as_deref_mut().expect("a cluster node");
        let now = e.now;
        if e.waiting
            .front()
            .is_none_or(|w| now.saturating_sub(w.since) < ORDER_WAIT_MAX)
        {
            return;
        }
        let mut expired = Vec::new();
        e.waiting.retain(|w| {
            let old = now.saturating_sub(w.since) >= ORDER_WAIT_MAX;
            if old {
                expired.push(*w);
            }
            !old
        });
        e.lease.cancel();
        // An order sold by the lease is decided by its gather (or waits again) within a round
        // trip to every shard: an entry this old is of an order long decided.
        e.regathered
            .retain(|_, &mut (_, since)| now.saturating_sub(since) < 2 * ORDER_WAIT_MAX);
        for w in expired {
            self.unavailable(w.from, w.order, out);
        }
        self.journal_lease(out);
    }

    /// An order every slice together could not cover waits for the lease (with its lease name
    /// and wait so far if the lease sold it once and its gather fell short); once the
    /// coordinator stopped serving, it is answered 503 instead.
    pub(super) fn wait_for_lease(
        &mut self,
        from: usize,
        order: OrderId,
        qty: u64,
        out: &mut Outbox,
    ) {
        let e = self.escrow.as_deref_mut().expect("a cluster node");
        if e.leaving {
            self.unavailable(from, order, out);
            return;
        }
        let (id, since) = match e.regathered.remove(&(from, order)) {
            Some(named) => named,
            None => {
                e.next_id += 1;
                (e.next_id - 1, e.now)
            }
        };
        e.waiting.push_back(Waiting {
            from,
            order,
            qty,
            id,
            since,
        });
    }

    /// The coordinator stopped serving: every waiting order is answered 503 (nothing was taken
    /// for it), and so is every order that comes to wait from now on.
    pub fn escrow_leaving(&mut self, out: &mut Outbox) {
        let Some(e) = self.escrow.as_deref_mut() else {
            return;
        };
        e.leaving = true;
        e.lease.cancel();
        let waiting: Vec<Waiting> = e.waiting.drain(..).collect();
        for w in waiting {
            self.unavailable(w.from, w.order, out);
        }
        self.journal_lease(out);
    }

    /// Answers order `order` of shard `from` 503: the ledger did not settle it.
    fn unavailable(&mut self, from: usize, order: OrderId, out: &mut Outbox) {
        self.lease_decided(from, order, Sale::Unavailable, out);
    }

    /// Order `order` of shard `from` is decided by the lease (no sale: sold out, or not settled):
    /// recorded for the keyed machinery and told to its shard, with no tickets (this may be in
    /// the middle of another operation).
    fn lease_decided(&mut self, from: usize, order: OrderId, sale: Sale, out: &mut Outbox) {
        let change = None;
        out.decisions.push(super::messages::Decision {
            from,
            order,
            sale,
            change,
        });
        self.tell_decided_with(from, order, sale, 0, out);
    }

    /// Journals the lease as it is now.
    fn journal_lease(&mut self, out: &mut Outbox) {
        if let Some(e) = self.escrow.as_deref_mut() {
            let state = e.state();
            if e.journaled != Some(state) {
                e.journaled = Some(state);
                out.changes.push(Change::Lease(state));
            }
        }
    }

    /// Starts placing `add` tickets in a new stock epoch: every shard enters it (and forgets
    /// its bound) before the tickets exist.
    pub(super) fn start_place(&mut self, id: u64, add: u64, out: &mut Outbox) -> (usize, u64) {
        let epoch = self.epoch + 1;
        for peer in (0..self.shards).filter(|&p| p != self.id) {
            out.messages.push((peer, Msg::Epoch { op: id, epoch, add }));
        }
        self.start_epoch(epoch, add);
        (self.shards - 1, 0)
    }

    /// Every shard entered the epoch: the tickets are placed.
    pub(super) fn finish_place(&mut self, add: u64, out: &mut Outbox) {
        let e = self.escrow.as_deref_mut().expect("a cluster node");
        // What the lease still allows (a fence or a return may have come meanwhile).
        let before = e.out - add;
        let add = add.min(e.lease.sellable().saturating_sub(before));
        e.out = before + add;
        e.placed += add;
        e.busy = false;
        if add > 0 {
            self.slice.add(add);
        }
        self.epoch_visible = self.epoch;
        self.journal_lease(out);
    }

    /// Asks every other shard for `want` tickets (all of them, or none for a census); their
    /// `Taken`s carry their sales.
    pub(super) fn start_takes(&mut self, id: u64, want: u64, out: &mut Outbox) -> (usize, u64) {
        for peer in (0..self.shards).filter(|&p| p != self.id) {
            let kind = TakeKind::Order;
            out.messages.push((peer, Msg::Take { op: id, want, kind }));
        }
        (self.shards - 1, want)
    }

    /// Every ticket of the node is in the coordinator's slice: it leaves the slice for the
    /// lease (or, fenced, for nobody: the fence gave it to the pool).
    pub(super) fn finish_collect(&mut self, out: &mut Outbox) {
        self.count_sales(out);
        let n = self.slice.available();
        self.slice.give(n);
        let e = self.escrow.as_deref_mut().expect("a cluster node");
        debug_assert_eq!(e.out, n, "a collect finds every placed ticket");
        e.out = e.out.saturating_sub(n);
        e.collected += n;
        e.busy = false;
        self.journal_lease(out);
    }

    /// Every shard told its sales.
    pub(super) fn finish_census(&mut self, out: &mut Outbox) {
        self.count_sales(out);
        self.escrow.as_deref_mut().expect("a cluster node").busy = false;
    }
}

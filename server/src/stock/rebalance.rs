//! The shard protocol that moves tickets between slices: a pure state machine (orders and
//! messages in, messages and outcomes out), so the same code runs in the server and in the seeded
//! simulation of `tests` below.
//!
//! # Roles
//! Every shard sells from its own [`Slice`]. Shard 0 is also the **coordinator**: the only place
//! where tickets move between slices, and the only place that may answer "sold out".
//!
//! # Messages
//! | message | from → to | carries tickets |
//! |---|---|---|
//! | `Escalate { order, qty, tickets }` | shard → coordinator: an order my slice cannot cover, with my whole slice | yes |
//! | `RefillAsk { want }` | shard → coordinator: my slice fell below its low-water mark | no |
//! | `Take { op, want, kind }` | coordinator → shard: give me up to `want` | no |
//! | `Taken { op, tickets, sold }` | shard → coordinator: the answer to `Take`, with the sales made since the last | yes |
//! | `Decided { order, sale, tickets }` | coordinator → shard: the escalated order's outcome (sold, insufficient, or closed), and tickets for the slice | yes |
//! | `Refill { tickets }` | coordinator → shard: the answer to `RefillAsk` (maybe 0) | yes |
//! | `Bound { at_most, epoch }` | coordinator → every shard: at most this many tickets are left anywhere | no |
//! | `Epoch { op, epoch, add }` | coordinator → every shard: a restock starts stock epoch `epoch`; forget any bound | no |
//! | `Sales { op, closed }` | coordinator → every shard: an operator closed (or opened) sales | no |
//! | `Ack { op }` | shard → coordinator: the answer to `Epoch` and `Sales` | no |
//!
//! # How it works
//! - **Fast path**: an order its slice covers is sold on the spot: no message.
//! - **Refill**, off the request path: after a sale leaves the slice below `low_water`, the shard
//!   asks the coordinator for `batch` tickets (one ask outstanding at a time). The coordinator gives
//!   half of its own slice if that is above its low-water mark, or else takes half of the richest
//!   peer's slice (by the last reports) and forwards it. A donor at or below its low-water mark gives
//!   nothing, and no donor gives so much that it falls below its mark (it would then ask for a
//!   refill itself), so scarce stock stops moving instead of bouncing between shards.
//! - **Gather**: an order the slice cannot cover is escalated with the whole slice. The coordinator
//!   runs operations one at a time, in arrival order. For an order it asks every other shard at once
//!   for what is still missing; each answers at once with `min(want, available)`. When all have
//!   answered, it sells from its own slice if it now holds enough, and otherwise answers sold out.
//!   Over-collected tickets stay in the coordinator's slice (half of it travels back with the
//!   outcome), so a failed gather leaves the total unchanged.
//!
//! - **Bound**: when a gather fails, every ticket left is in the coordinator's slice (see below),
//!   so that slice's size bounds what remains anywhere; within a stock epoch stock only goes down,
//!   so the bound stays true. The coordinator keeps it and tells every shard (`Bound`); from then
//!   on an order for more than the bound is refused by the shard that received it, with no
//!   message (`Placed::Refused`), and `total_available` never says more. After a sell-out the
//!   bound is 0 and every refusal is local: the coordinator's work no longer grows with the
//!   orders. A restock (a later issue) must start a new epoch and lift every shard's bound before
//!   the new tickets can be sold: the coordinator, which alone would add stock, sends the new
//!   epoch to every shard and puts the tickets in its slice only once each has answered, so no
//!   shard refuses by an old bound while the new tickets exist. A bound from an older epoch is
//!   ignored. This is how a restock runs (see `stock/restock.rs`): an operation in the
//!   coordinator's queue like a gather, so none is in progress meanwhile.
//!
//! # Why it cannot oversell or lose a ticket
//! Tickets only ever change place through [`Slice::give`] on one side and [`Slice::receive`] on the
//! other, with the tickets in a message in between; a sale is [`Slice::take`] on one slice. So
//! `sum(slices) + in transit + sold == initial` at every step (the simulation checks it at every step).
//!
//! # Why a sold-out answer is never premature
//! Channels are FIFO per pair of shards (glommio's are). The coordinator answers "insufficient"
//! only when every other shard answered a `Take` with *less* than it was asked, so each of them
//! held nothing right after answering; if one gave all it was asked (and so may hold more) while
//! the coordinator's own sales used what it had counted on, the order is gathered again instead.
//! Nothing flows into a shard while the coordinator is busy with an operation (only the coordinator
//! sends tickets to shards, and it sends none mid-operation); every message it sent earlier
//! travelled ahead of its `Take` on the same channel and was applied before the answer; every
//! ticket a shard sent to the coordinator before answering travelled ahead of its `Taken`. Sales
//! only lower the total. So at the moment of the decision every ticket in the system is in the
//! coordinator's slice, and it holds fewer than asked. The simulation checks exactly this. A local
//! refusal by the bound is as safe: the bound was every ticket left at a consistent point, and
//! only fell since; across a crash too, since `Bound` (like `Taken` and `Decided`) leaves only once
//! what it rests on is durable.
//!
//! # Why it cannot deadlock or starve
//! Shards answer `Take` at once and never wait for anything; the coordinator waits only for those
//! answers and serves its queue in order. Every operation therefore ends after one round trip to
//! each shard, and every escalated order is answered.
//!
//! # Cost
//! Plentiful stock: one refill (four messages) per `batch` orders of a shard, off the request path.
//! Scarce stock: an order the slice cannot cover waits for one round trip to every shard, and
//! orders escalated at once wait their turn at the coordinator.

use std::collections::VecDeque;

pub use super::messages::{
    Decision, Moves, Msg, Operated, OrderId, Outbox, Placed, TakeKind, COORDINATOR,
};
use crate::durability::journal::Change;
use crate::stock::slice::{allotment, Sale, Slice};

/// An operation queued at the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// Sell `qty` for shard `from`'s order.
    Order {
        from: usize,
        order: OrderId,
        qty: u64,
    },
    /// Top up shard `from` by up to `want`.
    Refill { from: usize, want: u64 },
    /// An operator's restock of `add` tickets, or sales closed or opened (`stock/restock.rs`);
    /// `order` is the number the operator's request waits on.
    Operator { order: OrderId, op: Operated },
    /// A cluster node's lease puts `add` tickets into the coordinator's slice, in a new stock
    /// epoch (`stock/escrow.rs`).
    Place { add: u64 },
    /// A cluster node's lease takes every ticket of the node back (`stock/escrow.rs`).
    Collect,
    /// A cluster node's lease counts the node's sales (`stock/escrow.rs`).
    Census,
}

/// Escalated orders one gather serves at most: the orders queued at the coordinator when a
/// gather starts share its one round of `Take`s (near a sell-out they queue by the hundred), and
/// a bound keeps the work of one decision, and the outbox it fills, small.
const GATHER_ORDERS_MAX: usize = 1024;

/// The operation in progress at the coordinator (its operations are in `Coordinator::batch`).
#[derive(Clone, Copy, Debug)]
struct Current {
    /// Its number, carried by its `Take`s and `Taken`s.
    id: u64,
    /// Answers still awaited.
    awaited: usize,
    /// Tickets each `Take` asked for.
    want: u64,
    /// Tickets the answers brought so far.
    gathered: u64,
    /// Every answer so far gave less than asked, so each of those donors was left empty.
    all_drained: bool,
}

/// The coordinator's state: a queue of operations, one in progress.
#[derive(Debug, Default)]
struct Coordinator {
    queue: VecDeque<Op>,
    current: Option<Current>,
    /// The operations of the one in progress: a refill, or the escalated orders one gather
    /// serves, in arrival order.
    batch: Vec<Op>,
    /// Orders decided by the gather that just ended, before their shards are told (kept for
    /// its allocation).
    decided: Vec<(usize, OrderId, Sale)>,
    next_op: u64,
}

/// One shard's side of the protocol.
#[derive(Debug)]
pub struct Node {
    /// This shard.
    pub(super) id: usize,
    /// All shards.
    pub(super) shards: usize,
    /// This shard's tickets.
    pub(super) slice: Slice,
    /// The last reported size of every slice (this shard's own entry unused).
    reported: Vec<u64>,
    /// The sum of `reported` over the other shards, kept as reports arrive, so the total needs no
    /// loop on the request path.
    pub(super) reported_others: u64,
    /// Below this, ask for a refill (and, as a donor, give nothing for refills).
    pub(super) low_water: u64,
    /// How many tickets a refill asks for.
    pub(super) batch: u64,
    /// A refill was asked and not yet answered.
    refill_outstanding: bool,
    /// The last refill came back empty: ask again only after a new report, or stale reports
    /// would have the shard ask in a loop.
    pub(super) refill_futile: bool,
    /// The next order number.
    next_order: OrderId,
    /// At most this many tickets remain anywhere, as learnt from the coordinator (`None`: no
    /// bound known). Lowered only; true until a restock starts a new stock epoch.
    pub(super) bound: Option<u64>,
    /// The stock epoch (0 at start, one more per restock): a bound from an older epoch is
    /// ignored.
    pub(super) epoch: u64,
    /// An operator closed sales: orders are refused until one opens them.
    pub(super) sales_closed: bool,
    /// The coordinator: the stock epoch of the last restock whose tickets exist (visible): every
    /// shard entered it before they came into being.
    pub(super) epoch_visible: u64,
    /// Shard 0 only.
    coordinator: Option<Coordinator>,
    /// The slice's sales already told to the coordinator in a `Taken` (the coordinator's own:
    /// already counted into a cluster node's lease).
    pub(super) sold_told: u64,
    /// A cluster node's lease (the coordinator only, `--cluster-etcd`).
    pub(super) escrow: Option<Box<super::escrow::Escrow>>,
    /// What moved.
    pub(super) moves: Moves,
}

impl Node {
    /// Shard `id` of `shards` when the initial stock is `stock`; it starts with its allotment.
    /// The low-water mark and the refill batch scale with the allotment: an eighth and a quarter
    /// of it (at least 1), so a shard asks for a refill about once per `allotted / 4` orders while
    /// stock is plentiful.
    pub fn new(id: usize, shards: usize, stock: u64) -> Self {
        assert!(id < shards);
        let allotted = allotment(stock, shards, id);
        Node {
            id,
            shards,
            slice: Slice::new(allotted),
            reported: (0..shards).map(|s| allotment(stock, shards, s)).collect(),
            reported_others: stock - allotted,
            low_water: (allotted / 8).max(1),
            batch: (allotted / 4).max(1),
            refill_outstanding: false,
            refill_futile: false,
            next_order: 0,
            bound: None,
            epoch: 0,
            sales_closed: false,
            epoch_visible: 0,
            coordinator: (id == COORDINATOR).then(Coordinator::default),
            sold_told: 0,
            escrow: None,
            moves: Moves::default(),
        }
    }

    /// This shard's slice.
    pub fn slice(&self) -> &Slice {
        &self.slice
    }

    /// What moved through this shard.
    pub fn moves(&self) -> &Moves {
        &self.moves
    }

    /// The low-water mark.
    pub fn low_water(&self) -> u64 {
        self.low_water
    }

    /// The coordinator has an operation in progress or queued (it still needs its peers).
    pub fn coordinating(&self) -> bool {
        self.coordinator
            .as_ref()
            .is_some_and(|c| c.current.is_some() || !c.queue.is_empty())
    }

    /// Records a peer's report of its slice size.
    pub fn report(&mut self, peer: usize, available: u64) {
        if peer == self.id {
            return;
        }
        if let Some(slot) = self.reported.get_mut(peer) {
            self.reported_others = self.reported_others - *slot + available;
            *slot = available;
            self.refill_futile = false;
        }
    }

    /// Tickets in the whole system as this shard sees them: its own slice exactly, the others as
    /// last reported. Exact at rest once reports have arrived.
    pub fn total_available(&self) -> u64 {
        debug_assert_eq!(
            self.reported_others,
            self.reported
                .iter()
                .enumerate()
                .filter(|&(p, _)| p != self.id)
                .map(|(_, &a)| a)
                .sum::<u64>()
        );
        let seen = self.reported_others + self.slice.available();
        self.bound.map_or(seen, |bound| seen.min(bound))
    }

    /// The known bound of tickets left anywhere, if any.
    pub fn bound(&self) -> Option<u64> {
        self.bound
    }

    /// The peer with the largest last-reported slice, other than `except`.
    fn richest_peer(&self, except: usize) -> Option<(usize, u64)> {
        (0..self.shards)
            .filter(|&p| p != self.id && p != except)
            .map(|p| (p, self.reported[p]))
            .max_by_key(|&(_, a)| a)
    }

    /// Places an order for `qty` tickets.
    pub fn order(&mut self, qty: u64, out: &mut Outbox) -> Placed {
        assert!(qty > 0, "orders are validated before they reach the stock");
        if self.sales_closed {
            return Placed::Closed;
        }
        if self.slice.take(qty) == Sale::Sold {
            let change = out.changes.len();
            out.changes.push(Change::Sale { qty });
            self.moves.orders_local += 1;
            return Placed::Sold { change };
        }
        if self.bound.is_some_and(|bound| qty > bound) {
            // Fewer than `qty` exist anywhere: no gather could find them.
            self.moves.orders_refused_locally += 1;
            out.denied.push(qty);
            return Placed::Refused;
        }
        self.moves.orders_escalated += 1;
        let order = self.next_order;
        self.next_order += 1;
        let tickets = self.slice.available();
        if self.id == COORDINATOR {
            self.enqueue(
                Op::Order {
                    from: self.id,
                    order,
                    qty,
                },
                out,
            );
        } else {
            self.send_tickets(COORDINATOR, tickets, out);
            out.messages.push((
                COORDINATOR,
                Msg::Escalate {
                    order,
                    qty,
                    tickets,
                },
            ));
        }
        Placed::Waiting(order)
    }

    /// Asks for a refill when the slice is below its low-water mark, no ask is outstanding, and
    /// some other shard last reported tickets to spare. Cheap enough to call after every sale.
    pub fn maybe_refill(&mut self, out: &mut Outbox) {
        if self.shards == 1
            || self.refill_outstanding
            || self.refill_futile
            || self.slice.available() >= self.low_water
        {
            return;
        }
        let richest = self.richest_peer(self.id).map_or(0, |(_, a)| a);
        if richest <= self.low_water {
            return; // nobody has tickets to spare: scarce stock stays where it is
        }
        self.refill_outstanding = true;
        self.moves.refills_asked += 1;
        if self.id == COORDINATOR {
            self.enqueue(
                Op::Refill {
                    from: self.id,
                    want: self.batch,
                },
                out,
            );
        } else {
            out.messages
                .push((COORDINATOR, Msg::RefillAsk { want: self.batch }));
        }
    }

    /// Applies a message from shard `from`.
    pub fn on_message(&mut self, from: usize, msg: Msg, out: &mut Outbox) {
        self.receive_tickets(from, msg.tickets(), out);
        match msg {
            Msg::Escalate { order, qty, .. } => self.enqueue(Op::Order { from, order, qty }, out),
            Msg::RefillAsk { want } => self.enqueue(Op::Refill { from, want }, out),
            Msg::Take { op, want, kind } => {
                let give = match kind {
                    TakeKind::Order => want.min(self.slice.available()),
                    TakeKind::Refill => self.refill_share(want),
                };
                self.send_tickets(from, give, out);
                self.moves.takes_answered += 1;
                let sold = self.slice.sold() - self.sold_told;
                self.sold_told = self.slice.sold();
                let taken = Msg::Taken {
                    op,
                    tickets: give,
                    sold,
                };
                out.messages.push((from, taken));
            }
            Msg::Taken { op, tickets, sold } => {
                if let Some(escrow) = &mut self.escrow {
                    escrow.peer_sales(sold);
                }
                self.on_taken(op, tickets, out)
            }
            Msg::Decided { order, sale, .. } => out.outcomes.push((order, sale)),
            Msg::Refill { tickets } => {
                self.refill_outstanding = false;
                self.refill_futile = tickets == 0;
            }
            Msg::Bound { at_most, epoch } => self.lower_bound(at_most, epoch),
            Msg::Epoch { op, epoch, add } => {
                self.start_epoch(epoch, add);
                out.messages.push((from, Msg::Ack { op }));
            }
            Msg::Sales { op, closed } => {
                self.sales_closed = closed;
                out.messages.push((from, Msg::Ack { op }));
            }
            Msg::Ack { op } => self.on_ack(op, out),
        }
        if self.coordinator.is_some() {
            self.pump(out);
        }
    }

    /// What a slice gives for a refill: half of it, at most `want`, and never so much that it
    /// falls below its own low-water mark (nothing at or below the mark). Giving more would make the giver ask for a
    /// refill in turn, and scarce stock would bounce between shards for ever (the simulation's
    /// crash steps found it: stock 70 on 2 shards, 2 tickets moving back and forth with no order).
    fn refill_share(&self, want: u64) -> u64 {
        let available = self.slice.available();
        want.min(available / 2)
            .min(available.saturating_sub(self.low_water))
    }

    /// The coordinator, holding every ticket left: lowers its bound to its slice and tells the
    /// other shards when that is news.
    fn learn_bound(&mut self, out: &mut Outbox) {
        let at_most = self.slice.available();
        self.tell_bound(at_most, out);
    }

    /// Lowers the coordinator's bound to `at_most` and tells the other shards when that is news.
    pub(super) fn tell_bound(&mut self, at_most: u64, out: &mut Outbox) {
        if self.bound.is_some_and(|bound| bound <= at_most) {
            return;
        }
        self.bound = Some(at_most);
        let epoch = self.epoch;
        for peer in (0..self.shards).filter(|&p| p != self.id) {
            out.messages.push((peer, Msg::Bound { at_most, epoch }));
        }
    }

    /// Queues an operator's operation at the coordinator (a restock, or sales closed or
    /// opened); returns the number its request waits on. It runs in turn with gathers and
    /// refills, and is done (in [`Outbox::operated`]) once every shard applied it.
    pub fn operate(&mut self, op: Operated, out: &mut Outbox) -> OrderId {
        assert_eq!(
            self.id, COORDINATOR,
            "only the coordinator runs operator operations"
        );
        let order = self.next_order;
        self.next_order += 1;
        self.enqueue(Op::Operator { order, op }, out);
        order
    }

    /// Tickets of restocks queued or in progress at the coordinator, not yet in its slice: the
    /// operator's bound on the total stock (`STOCK_MAX`) counts them, or restocks queued
    /// together could pass it.
    pub fn restocks_pending(&self) -> u64 {
        let Some(c) = &self.coordinator else {
            return 0;
        };
        c.queue
            .iter()
            .chain(&c.batch)
            .map(|op| match op {
                Op::Operator {
                    op: Operated::Restocked { add, .. },
                    ..
                } => *add,
                _ => 0,
            })
            .sum()
    }

    /// A shard applied the operation in progress.
    fn on_ack(&mut self, id: u64, out: &mut Outbox) {
        let coordinator = self
            .coordinator
            .as_mut()
            .expect("Ack goes to the coordinator");
        let current = coordinator
            .current
            .as_mut()
            .expect("Ack with no operation in progress");
        assert_eq!(
            current.id, id,
            "answers belong to the operation in progress"
        );
        current.awaited -= 1;
        if current.awaited == 0 {
            coordinator.current = None;
            self.finish(None, false, out);
        }
    }

    /// A bound learnt from the coordinator.
    fn lower_bound(&mut self, at_most: u64, epoch: u64) {
        if epoch == self.epoch {
            self.bound = Some(self.bound.map_or(at_most, |bound| bound.min(at_most)));
        }
    }

    pub(super) fn send_tickets(&mut self, to: usize, n: u64, out: &mut Outbox) {
        let given = self.slice.give(n);
        assert_eq!(given, n, "a shard only sends tickets it holds");
        if n > 0 {
            out.changes.push(Change::Give { to, qty: n });
        }
        self.moves.tickets_out += n;
    }

    fn receive_tickets(&mut self, from: usize, n: u64, out: &mut Outbox) {
        if n > 0 {
            out.changes.push(Change::Receive { from, qty: n });
            self.slice.receive(n);
            self.moves.tickets_in += n;
        }
    }

    pub(super) fn enqueue(&mut self, op: Op, out: &mut Outbox) {
        let coordinator = self
            .coordinator
            .as_mut()
            .expect("only the coordinator queues operations");
        coordinator.queue.push_back(op);
        self.pump(out);
    }

    /// Starts queued operations while none is in progress. Escalated orders queued together are
    /// served by one gather.
    fn pump(&mut self, out: &mut Outbox) {
        loop {
            let coordinator = self.coordinator.as_mut().expect("coordinator");
            if coordinator.current.is_some() {
                return;
            }
            let Some(op) = coordinator.queue.pop_front() else {
                return;
            };
            coordinator.batch.clear();
            coordinator.batch.push(op);
            if matches!(op, Op::Order { .. }) {
                while coordinator.batch.len() < GATHER_ORDERS_MAX
                    && matches!(coordinator.queue.front(), Some(Op::Order { .. }))
                {
                    let next = coordinator.queue.pop_front().expect("checked");
                    coordinator.batch.push(next);
                }
            }
            let id = coordinator.next_op;
            coordinator.next_op += 1;
            let (awaited, want) = self.start(id, out);
            if awaited > 0 {
                let current = Current {
                    id,
                    awaited,
                    want,
                    gathered: 0,
                    all_drained: true,
                };
                self.coordinator.as_mut().expect("coordinator").current = Some(current);
                return;
            }
            self.finish(None, false, out);
        }
    }

    /// Sends the `Take`s an operation needs; returns how many answers to wait for (0: it can
    /// finish at once) and what each `Take` asked for.
    fn start(&mut self, id: u64, out: &mut Outbox) -> (usize, u64) {
        let batch = &self.coordinator.as_ref().expect("coordinator").batch;
        match batch[0] {
            Op::Order { .. } => {
                let asked = batch.iter().fold(0u64, |sum, op| match *op {
                    Op::Order { qty, .. } => sum.saturating_add(qty),
                    _ => unreachable!("a gather serves orders only"),
                });
                let have = self.slice.available();
                if have >= asked || self.shards == 1 {
                    return (0, 0);
                }
                let want = asked - have;
                for peer in (0..self.shards).filter(|&p| p != self.id) {
                    out.messages.push((
                        peer,
                        Msg::Take {
                            op: id,
                            want,
                            kind: TakeKind::Order,
                        },
                    ));
                }
                (self.shards - 1, want)
            }
            Op::Operator { op, .. } => self.start_operator(id, op, out),
            Op::Place { add } => self.start_place(id, add, out),
            Op::Collect => self.start_takes(id, u64::MAX, out),
            Op::Census => self.start_takes(id, 0, out),
            Op::Refill { from, want } => {
                if from != self.id && self.slice.available() > self.low_water {
                    return (0, 0); // served from the coordinator's own slice
                }
                match self.richest_peer(from) {
                    Some((donor, reported)) if reported > self.low_water => {
                        out.messages.push((
                            donor,
                            Msg::Take {
                                op: id,
                                want,
                                kind: TakeKind::Refill,
                            },
                        ));
                        (1, want)
                    }
                    _ => (0, 0),
                }
            }
        }
    }

    fn on_taken(&mut self, id: u64, tickets: u64, out: &mut Outbox) {
        let coordinator = self
            .coordinator
            .as_mut()
            .expect("Taken goes to the coordinator");
        let current = coordinator
            .current
            .as_mut()
            .expect("Taken with no operation in progress");
        assert_eq!(
            current.id, id,
            "answers belong to the operation in progress"
        );
        current.gathered += tickets;
        current.all_drained &= tickets < current.want;
        current.awaited -= 1;
        if current.awaited == 0 {
            let Current {
                gathered,
                all_drained,
                ..
            } = *current;
            coordinator.current = None;
            self.finish(Some(gathered), all_drained, out);
        }
    }

    /// Ends the operation in progress. `gathered` is what its `Take`s brought (`None` if none
    /// were sent); `all_drained`: every donor gave less than asked, so every ticket left is in
    /// this slice. Orders are decided in arrival order while every ticket they saw is still here;
    /// one the slice cannot cover is refused only when that proves scarcity (one shard, or every
    /// slice drained), and otherwise gathered again (a donor that gave all it was asked may hold
    /// more). Only then does each order's shard hear its outcome, with a share of what is left.
    fn finish(&mut self, gathered: Option<u64>, all_drained: bool, out: &mut Outbox) {
        let coordinator = self.coordinator.as_mut().expect("coordinator");
        let batch = std::mem::take(&mut coordinator.batch);
        let mut decided = std::mem::take(&mut coordinator.decided);
        let scarce = self.shards == 1 || all_drained;
        let mut again = 0;
        let mut refused = false;
        for &op in &batch {
            match op {
                Op::Order { from, order, qty } => {
                    if self.sales_closed {
                        // Escalated before its shard heard of the operator's close, decided
                        // after it: refused as closed, whatever stock there is.
                        self.regathered_decided(from, order);
                        decided.push((from, order, Sale::Closed));
                        out.decisions.push(Decision {
                            from,
                            order,
                            sale: Sale::Closed,
                            change: None,
                        });
                        continue;
                    }
                    if scarce && self.slice.available() < qty && self.escrow.is_some() {
                        // Every ticket of the node is here and too few: the lease decides.
                        self.wait_for_lease(from, order, qty, out);
                        continue;
                    }
                    if !scarce && self.slice.available() < qty {
                        // In arrival order, ahead of what queued meanwhile.
                        let queue = &mut self.coordinator.as_mut().expect("coordinator").queue;
                        queue.insert(again, op);
                        again += 1;
                        continue;
                    }
                    let sale = self.slice.take(qty);
                    self.regathered_decided(from, order);
                    let mut change = None;
                    if sale == Sale::Sold {
                        change = Some(out.changes.len());
                        out.changes.push(Change::Sale { qty });
                    } else {
                        self.moves.gathers_failed += 1;
                        out.denied.push(qty);
                        refused = true;
                    }
                    decided.push((from, order, sale));
                    out.decisions.push(Decision {
                        from,
                        order,
                        sale,
                        change,
                    });
                }
                Op::Refill { .. } => self.finish_refill(op, gathered, out),
                Op::Operator { order, op } => self.finish_operator(order, op, out),
                Op::Place { add } => self.finish_place(add, out),
                Op::Collect => self.finish_collect(out),
                Op::Census => self.finish_census(out),
            }
        }
        if refused {
            // Every ticket left is in this slice now (one shard, or a gather that drained every
            // other slice): that is a bound every shard may refuse by.
            self.learn_bound(out);
        }
        for (from, order, sale) in decided.drain(..) {
            self.tell_decided(from, order, sale, out);
        }
        let coordinator = self.coordinator.as_mut().expect("coordinator");
        coordinator.decided = decided; // keep the allocations
        if coordinator.batch.is_empty() {
            coordinator.batch = batch;
        }
    }

    /// Tells shard `from` the outcome of its escalated order: the coordinator's own order at
    /// once; another shard by `Decided`, with half of what is left (up to a batch), so that it
    /// can sell locally again.
    pub(super) fn tell_decided(
        &mut self,
        from: usize,
        order: OrderId,
        sale: Sale,
        out: &mut Outbox,
    ) {
        let share = (self.slice.available() / 2).min(self.batch);
        self.tell_decided_with(from, order, sale, share, out);
    }

    /// Tells shard `from` the outcome of its escalated order, with `share` tickets (0 when told
    /// in the middle of another operation: only an operation's end may move tickets).
    pub(super) fn tell_decided_with(
        &mut self,
        from: usize,
        order: OrderId,
        sale: Sale,
        share: u64,
        out: &mut Outbox,
    ) {
        if from == self.id {
            out.outcomes.push((order, sale));
            return;
        }
        self.send_tickets(from, share, out);
        out.messages.push((
            from,
            Msg::Decided {
                order,
                sale,
                tickets: share,
            },
        ));
    }

    /// Ends a refill.
    fn finish_refill(&mut self, op: Op, gathered: Option<u64>, out: &mut Outbox) {
        let Op::Refill { from, want } = op else {
            unreachable!("a refill");
        };
        if from == self.id {
            // The donor's tickets are already in our slice.
            self.refill_outstanding = false;
            self.refill_futile = gathered.unwrap_or(0) == 0;
            return;
        }
        let give = match gathered {
            Some(forward) => forward,
            None => self.refill_share(want),
        };
        self.send_tickets(from, give, out);
        out.messages.push((from, Msg::Refill { tickets: give }));
    }
}

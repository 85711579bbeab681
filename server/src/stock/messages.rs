//! The shard protocol's vocabulary: its messages ([`Msg`]), what a call of [`super::rebalance`]
//! produces ([`Outbox`]), how an order was placed, and the protocol's counters. The state
//! machine that speaks it is in [`super::rebalance`] (whose module doc has the message table),
//! which re-exports all of it.

use crate::durability::journal::Change;
use crate::stock::slice::Sale;

/// The shard that coordinates moves.
pub const COORDINATOR: usize = 0;

/// An order's number, unique per shard.
pub type OrderId = u64;

/// Why the coordinator takes tickets from a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeKind {
    /// For an escalated order: give everything needed, down to zero.
    Order,
    /// For a refill: give half the slice, and only above the low-water mark.
    Refill,
}

/// A message between shards (see the module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// An order the sender's slice cannot cover, with every ticket of that slice.
    Escalate {
        /// The order, numbered by the sender.
        order: OrderId,
        /// Tickets asked for.
        qty: u64,
        /// Tickets carried (the sender's whole slice).
        tickets: u64,
    },
    /// The sender's slice fell below its low-water mark.
    RefillAsk {
        /// Tickets wanted.
        want: u64,
    },
    /// Give the coordinator up to `want` tickets.
    Take {
        /// The coordinator's operation number.
        op: u64,
        /// Tickets wanted.
        want: u64,
        /// Order (give all needed) or refill (give half, above low water).
        kind: TakeKind,
    },
    /// The answer to `Take`.
    Taken {
        /// The operation it answers.
        op: u64,
        /// Tickets carried.
        tickets: u64,
        /// Tickets the shard sold since its last `Taken` (durable when this leaves): how a
        /// cluster node's coordinator counts the node's sales into its lease.
        sold: u64,
    },
    /// An escalated order's outcome.
    Decided {
        /// The order, as numbered by its shard.
        order: OrderId,
        /// Its outcome: sold, insufficient, or closed (sales closed before it was decided).
        sale: Sale,
        /// Tickets carried for the receiver's slice.
        tickets: u64,
    },
    /// The answer to `RefillAsk`.
    Refill {
        /// Tickets carried (maybe 0).
        tickets: u64,
    },
    /// Coordinator → every shard: at most `at_most` tickets remain anywhere (learnt when a
    /// gather drained every slice into the coordinator's and still fell short). Stock only goes
    /// down within a stock `epoch`, so the bound stays true until a restock starts a new one.
    Bound {
        /// Tickets left, everywhere, at most.
        at_most: u64,
        /// The stock epoch it holds for.
        epoch: u64,
    },
    /// Coordinator → every shard: a restock of `add` tickets starts stock `epoch`; forget any
    /// bound, and answer (`Ack`). The tickets reach the coordinator's slice once all answered.
    Epoch {
        /// The coordinator's operation number.
        op: u64,
        /// The new stock epoch.
        epoch: u64,
        /// Tickets the restock adds (to scale the refill batch).
        add: u64,
    },
    /// Coordinator → every shard: an operator closed sales (`closed`) or opened them; answer
    /// (`Ack`).
    Sales {
        /// The coordinator's operation number.
        op: u64,
        /// Sales are closed from now on.
        closed: bool,
    },
    /// The answer to `Epoch` and `Sales`: the change is applied here.
    Ack {
        /// The operation it answers.
        op: u64,
    },
}

impl Msg {
    /// Whether the receiver acts on this message in a way that presumes the sender's changes are
    /// durable: it carries tickets (the receiver journals a `Receive`, which must never outlive
    /// the sender's `Give`), or it states a fact the receiver may tell a client: `Decided` (its
    /// client hears "success" or "sold out") and `Taken` (a donor that gave less than asked is
    /// empty, and the coordinator may answer "sold out" on it). A "sold out" that rested on sales
    /// not yet durable could be contradicted after a crash, with no restock in between. And
    /// `Sales` to open: sales made once it is applied must not outlive a crash that forgets it.
    pub fn must_be_durable(&self) -> bool {
        self.tickets() > 0
            || matches!(
                self,
                Msg::Decided { .. }
                    | Msg::Taken { .. }
                    | Msg::Bound { .. }
                    | Msg::Sales { closed: false, .. }
            )
    }

    /// Tickets this message carries while in transit.
    pub fn tickets(&self) -> u64 {
        match *self {
            Msg::Escalate { tickets, .. }
            | Msg::Taken { tickets, .. }
            | Msg::Decided { tickets, .. }
            | Msg::Refill { tickets } => tickets,
            Msg::RefillAsk { .. }
            | Msg::Take { .. }
            | Msg::Bound { .. }
            | Msg::Epoch { .. }
            | Msg::Sales { .. }
            | Msg::Ack { .. } => 0,
        }
    }
}

/// An operator's operation on the stock, and (once done) what it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operated {
    /// `add` tickets restocked; `epoch` is the stock epoch they start (0 until done).
    Restocked {
        /// Tickets added.
        add: u64,
        /// The new stock epoch.
        epoch: u64,
    },
    /// Sales closed (`closed`) or opened.
    Sales {
        /// Sales are closed from now on.
        closed: bool,
    },
}

/// What one call produced: messages to send, and outcomes of orders that were waiting.
#[derive(Debug, Default)]
pub struct Outbox {
    /// `(destination shard, message)`, in sending order.
    pub messages: Vec<(usize, Msg)>,
    /// Escalated orders of this shard that are now decided.
    pub outcomes: Vec<(OrderId, Sale)>,
    /// Quantities the coordinator answered "insufficient" for in this call (for the simulation's
    /// premature-sold-out check).
    pub denied: Vec<u64>,
    /// Every change of this shard's slice, in order, for its journal: sales, and tickets given to
    /// and received from each peer. The shard journals them before the messages above leave.
    pub changes: Vec<Change>,
    /// Operator operations of this shard (the coordinator) that are now done: restocks, sales
    /// closed or opened.
    pub operated: Vec<(OrderId, Operated)>,
    /// Escalated orders the coordinator decided in this call, its own and other shards', in
    /// order. The caller clears it.
    pub decisions: Vec<Decision>,
    /// Calls a cluster node's lease wants made on etcd, in order (`stock/escrow.rs`): each
    /// leaves once what was journaled with it is durable.
    pub calls: Vec<crate::cluster::lease::Call>,
}

/// An escalated order the coordinator decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The shard the order came from.
    pub from: usize,
    /// Its number there.
    pub order: OrderId,
    /// Its outcome.
    pub sale: Sale,
    /// When it sold: where its [`Change::Sale`] is in [`Outbox::changes`], so that the record
    /// of an order carrying an idempotency key can take its place (the key and the sale are then
    /// one journal record, which no crash can split).
    pub change: Option<usize>,
}

/// How an order was answered by the shard that received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// Sold from the local slice: answer now. `change` is where its [`Change::Sale`] is in
    /// [`Outbox::changes`] (a keyed order's record takes its place).
    Sold {
        /// The sale's index in the outbox's changes.
        change: usize,
    },
    /// Escalated: the answer comes later as an outcome with this id.
    Waiting(OrderId),
    /// Refused by this shard with no message: more than the known bound of tickets left anywhere
    /// was asked for.
    Refused,
    /// Refused because an operator closed sales (`Msg::Sales`): nothing sold, no message.
    Closed,
}

/// Per-shard counters of the protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moves {
    /// Orders sold from the local slice without any message.
    pub orders_local: u64,
    /// Orders escalated to the coordinator.
    pub orders_escalated: u64,
    /// Refills asked.
    pub refills_asked: u64,
    /// `Take`s answered (as a donor).
    pub takes_answered: u64,
    /// Tickets received from other shards.
    pub tickets_in: u64,
    /// Tickets sent to other shards.
    pub tickets_out: u64,
    /// Gathers that ended in "insufficient" (coordinator only).
    pub gathers_failed: u64,
    /// Orders refused on the spot, with no message, because they asked for more than the known
    /// bound of tickets left anywhere.
    pub orders_refused_locally: u64,
}

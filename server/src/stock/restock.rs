//! Operator operations on the stock: a restock (`{"add": n}`), and sales closed or opened. Pure:
//! the values, their limits and the body's parser; the coordinator runs them in
//! [`super::rebalance::Node::operate`].
//!
//! # How a restock reaches the shards (the epoch design of `rebalance`)
//! A restock is an operation in the coordinator's queue, so no gather is in progress while it
//! runs, and it runs in arrival order with them:
//! 1. the coordinator enters stock epoch `e + 1` (forgets its own bound) and sends
//!    `Epoch { op, epoch: e + 1, add }` to every other shard, behind everything it posted before
//!    (a `Bound` of epoch `e` among it: channels are FIFO, so it arrives first);
//! 2. each shard forgets its bound (a later `Bound` of epoch `e` is ignored) and answers `Ack`;
//! 3. once every shard answered, the tickets come into being in the coordinator's slice
//!    ([`super::slice::Slice::add`]) and a `Restock` record is journaled; the operator's answer
//!    leaves once that record is durable.
//!
//! **Visible** means in the coordinator's slice: from then on an order anywhere may get them (its
//! shard escalates, or refills), and no shard holds a bound that would refuse it: every shard
//! acknowledged the new epoch before. A refusal before that point is true, as the tickets did
//! not exist yet. The simulation checks at every refusal that fewer tickets than asked existed,
//! restocked ones included.
//!
//! **Crashes**: the `Restock` record is in the coordinator's journal file; recovery adds every
//! restock of the epoch to the manifest's stock (`stock == sold + available` still balances), so
//! a restock whose answer was sent survives, and one whose record was not durable never
//! happened (its answer was never sent). `Sales` records work alike; recovery copies the
//! coordinator's closed flag into every shard's first snapshot of the new epoch.

use serde::Deserialize;

use super::rebalance::{Msg, Node, Operated, OrderId, Outbox};
use super::slice::allotment;
use crate::durability::journal::Change;

/// The most tickets one restock adds: as many as the largest order may ask for by default
/// (`MAX_ORDER_QTY`), so one typo cannot add a stock no sale could ever sell; a larger batch is
/// several restocks.
pub const RESTOCK_ADD_MAX: u64 = 1_000_000_000;

/// The most tickets the stock may hold in all, sold or not (the largest `INITIAL_STOCK`): every
/// journal counter stays far from overflowing.
pub const STOCK_MAX: u64 = i64::MAX as u64;

/// Why a restock body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// Not one JSON value.
    NotJson,
    /// JSON, but not `{"add": n}` with n a whole number in `1..=RESTOCK_ADD_MAX`, or the stock
    /// would pass [`STOCK_MAX`].
    Invalid,
}

impl AddError {
    /// 400 for a body that is not JSON, 422 for JSON of the wrong shape (as orders answer).
    pub fn status(self) -> u16 {
        match self {
            AddError::NotJson => 400,
            AddError::Invalid => 422,
        }
    }

    /// The error body's `code`.
    pub fn code(self) -> &'static str {
        match self {
            AddError::NotJson => "not_json",
            AddError::Invalid => "invalid_add",
        }
    }

    /// The error body's `detail`.
    pub fn detail(self) -> &'static str {
        match self {
            AddError::NotJson => "The request body is not valid JSON.",
            AddError::Invalid => {
                "The body must be {\"add\": n} with n a JSON integer from 1 to 1000000000, and \
                 the stock must stay within 9223372036854775807 tickets."
            }
        }
    }
}

/// The restock body, strictly: one member, no other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    /// Tickets to add.
    add: u64,
}

/// Parses `{"add": n}` for a stock that holds `capacity` tickets in all now.
pub fn parse_add(body: &[u8], capacity: u64) -> Result<u64, AddError> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
        return Err(AddError::NotJson);
    }
    // serde reads a struct from an array too: only an object is the body we want.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(AddError::Invalid);
    }
    let add = serde_json::from_slice::<AddBody>(body)
        .map_err(|_| AddError::Invalid)?
        .add;
    let fits = capacity.checked_add(add).is_some_and(|s| s <= STOCK_MAX);
    if add == 0 || add > RESTOCK_ADD_MAX || !fits {
        return Err(AddError::Invalid);
    }
    Ok(add)
}

/// The operator operations' side of a shard's [`Node`] (the coordinator's queue runs them: see
/// [`Node::operate`]).
impl Node {
    /// The stock epoch this shard is in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The coordinator: the stock epoch of the last restock whose tickets exist. No shard may be
    /// in an older one (the simulation checks it at every step).
    pub fn epoch_visible(&self) -> u64 {
        self.epoch_visible
    }

    /// Whether an operator closed sales (as this shard knows).
    pub fn sales_closed(&self) -> bool {
        self.sales_closed
    }

    /// Sales start closed: what the journal said at start-up.
    pub fn start_closed(&mut self, closed: bool) {
        self.sales_closed = closed;
    }

    /// A restock of `add` tickets starts stock epoch `epoch`: any bound of the older epoch is
    /// void (stock is about to rise), and the refill batch grows with the new stock.
    pub(super) fn start_epoch(&mut self, epoch: u64, add: u64) {
        self.epoch = epoch;
        self.bound = None;
        self.refill_futile = false;
        let share = allotment(add, self.shards, self.id);
        self.low_water = self.low_water.max((share / 8).max(1));
        self.batch = self.batch.max((share / 4).max(1));
    }

    /// Starts an operator's operation: the coordinator applies it to itself (a restock: the
    /// new epoch, not yet the tickets) and tells every other shard. Returns the answers to wait
    /// for.
    pub(super) fn start_operator(
        &mut self,
        id: u64,
        op: Operated,
        out: &mut Outbox,
    ) -> (usize, u64) {
        for peer in (0..self.shards).filter(|&p| p != self.id) {
            let msg = match op {
                Operated::Restocked { add, .. } => Msg::Epoch {
                    op: id,
                    epoch: self.epoch + 1,
                    add,
                },
                Operated::Sales { closed } => Msg::Sales { op: id, closed },
            };
            out.messages.push((peer, msg));
        }
        match op {
            Operated::Restocked { add, .. } => self.start_epoch(self.epoch + 1, add),
            Operated::Sales { closed: false } => {
                // Opening lets sales happen: its record goes first, and `Msg::Sales` to open
                // leaves only once it is durable (`must_be_durable`), so no sale made while open
                // can outlive a crash that forgets the opening.
                out.changes.push(Change::Sales { closed: false });
                self.sales_closed = false;
            }
            // Closing stops sales at once; its record comes once every shard applied it.
            Operated::Sales { closed: true } => self.sales_closed = true,
        }
        (self.shards - 1, 0)
    }

    /// Every shard applied the operation: a restock's tickets come into being in this slice
    /// now, when no shard can refuse by a bound of an older epoch; the change is journaled, and
    /// the operator's request answered once it is durable.
    pub(super) fn finish_operator(&mut self, order: OrderId, op: Operated, out: &mut Outbox) {
        let done = match op {
            Operated::Restocked { add, .. } => {
                self.slice.add(add);
                self.epoch_visible = self.epoch;
                out.changes.push(Change::Restock { qty: add });
                Operated::Restocked {
                    add,
                    epoch: self.epoch,
                }
            }
            Operated::Sales { closed } => {
                if closed {
                    out.changes.push(Change::Sales { closed });
                }
                op
            }
        };
        out.operated.push((order, done));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restock_bodies_are_parsed_strictly() {
        let cases: [(&[u8], Result<u64, AddError>); 12] = [
            (b"{\"add\":5}", Ok(5)),
            (b" { \"add\" : 1000000000 } ", Ok(RESTOCK_ADD_MAX)),
            (b"{\"add\":1000000001}", Err(AddError::Invalid)),
            (b"{\"add\":0}", Err(AddError::Invalid)),
            (b"{\"add\":-1}", Err(AddError::Invalid)),
            (b"{\"add\":1.0}", Err(AddError::Invalid)),
            (b"{\"add\":\"5\"}", Err(AddError::Invalid)),
            (b"{\"add\":5,\"add\":6}", Err(AddError::Invalid)),
            (b"{\"add\":5,\"qty\":1}", Err(AddError::Invalid)),
            (b"{}", Err(AddError::Invalid)),
            (b"[5]", Err(AddError::Invalid)),
            (b"{\"add\":5", Err(AddError::NotJson)),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_add(body, 0),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            parse_add(b"{\"add\":2}", STOCK_MAX - 1),
            Err(AddError::Invalid)
        );
        assert_eq!(parse_add(b"{\"add\":1}", STOCK_MAX - 1), Ok(1));
        // Restocks queued together count against the bound before they are done.
        let mut node = Node::new(0, 2, 10);
        let mut out = Outbox::default();
        for add in [RESTOCK_ADD_MAX, 7] {
            node.operate(Operated::Restocked { add, epoch: 0 }, &mut out);
        }
        assert_eq!(node.restocks_pending(), RESTOCK_ADD_MAX + 7);
        assert_eq!(Node::new(1, 2, 10).restocks_pending(), 0);
        // The detail names the limits as they are.
        let detail = AddError::Invalid.detail();
        assert!(detail.contains(&RESTOCK_ADD_MAX.to_string()), "{detail}");
        assert!(detail.contains(&STOCK_MAX.to_string()), "{detail}");
    }
}

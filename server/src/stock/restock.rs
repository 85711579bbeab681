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

/// The most tickets one restock adds: as many as the largest order may ask for by default
/// (`MAX_ORDER_QTY`), so one typo cannot add a stock no sale could ever sell; a larger batch is
/// several restocks.
pub const RESTOCK_ADD_MAX: u64 = 1_000_000_000;

/// The most tickets the stock may hold in all, sold or not (the largest `INITIAL_STOCK`): every
/// journal counter stays far from overflowing.
pub const STOCK_MAX: u64 = i64::MAX as u64;

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
    }
}

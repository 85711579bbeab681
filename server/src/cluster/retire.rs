//! Writing a node off (issue 18), without I/O: what an operator does for a node that will not
//! come back with its journal (its disk is gone, the machine replaced). The node cannot say what
//! it sold, so in one transaction it is fenced (its epoch goes up; its lease goes back to the
//! pool but for its window) and everything in doubt, its window and any earlier doubt, is counted
//! sold: it may have sold that many unreported, and counting them sold never sells a ticket
//! twice (at most its window is stranded: the allowance for a fenced node).
//!
//! Its id cannot be used again by a node with an empty journal: its first request (sequence
//! number 1) is refused, either out of turn or, if the record's number is 1, as not the request
//! last applied (`Last::WrittenOff` matches none), and the lease stops. (A node that does come
//! back with its journal learns it was fenced and may rejoin only if it sold nothing
//! unreported, since its doubt was counted sold; if its request in flight was the one the
//! write-off overwrote, it is refused as `Mismatch` and stops. No ticket is sold twice either
//! way.)

use super::ledger::{fencing, Keys, Last, NodeRecord, Plan, View};

/// The result of a write-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrittenOff {
    /// The node has no record (it never held a lease), holds nothing and has nothing in doubt,
    /// or the cluster has no pool: nothing to do.
    Nothing,
    /// The node is in a later epoch than the operator saw: written off (or fenced) already by
    /// that try or another; nothing was done.
    Already {
        /// The record's epoch.
        epoch: u64,
    },
    /// Written off: its epoch is now `epoch`; `sold` tickets in doubt were counted sold and
    /// `returned` went back to the pool.
    Applied {
        /// The new epoch.
        epoch: u64,
        /// Tickets counted sold.
        sold: u64,
        /// Tickets back in the pool.
        returned: u64,
    },
}

/// A write-off's next move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOffStep {
    /// Nothing to send.
    Done(WrittenOff),
    /// Send `plan`; applied, its result is `written_off`. On a failed guard or a lost reply,
    /// read again and call [`write_off`] again with the same `seen_epoch` (as first read): a
    /// record in a later epoch answers `Already`, never a second write-off.
    Commit {
        /// The transaction.
        plan: Plan,
        /// What it does when applied.
        written_off: WrittenOff,
    },
}

/// Writes node `id`, seen in epoch `seen_epoch`, off, as read in `view`.
pub fn write_off(keys: &Keys, id: &str, seen_epoch: u64, view: &View) -> WriteOffStep {
    let (Some(record), Some(_)) = (view.node.value, view.pool.value) else {
        return WriteOffStep::Done(WrittenOff::Nothing);
    };
    if record.epoch != seen_epoch {
        let epoch = record.epoch;
        return WriteOffStep::Done(WrittenOff::Already { epoch });
    }
    if record.granted == 0 && record.in_doubt == 0 {
        // Nothing held and nothing in doubt: nothing to count (already written off, or a node
        // that returned everything).
        return WriteOffStep::Done(WrittenOff::Nothing);
    }
    // A fence, and its doubt (the window kept now, and any earlier) counted sold.
    let Some(fencing) = fencing(&record, view) else {
        return WriteOffStep::Done(WrittenOff::Nothing);
    };
    let sold_now = fencing.next.in_doubt;
    let Some(sold) = record.sold.checked_add(sold_now) else {
        return WriteOffStep::Done(WrittenOff::Nothing);
    };
    let next = NodeRecord {
        in_doubt: 0,
        sold,
        last: Last::WrittenOff,
        ..fencing.next
    };
    let plan = fencing.plan_with(keys, id, view, &next);
    let written_off = WrittenOff::Applied {
        epoch: next.epoch,
        sold: sold_now,
        returned: fencing.returned,
    };
    WriteOffStep::Commit { plan, written_off }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ledger::{check, decode_record, Ledger, Read};

    #[test]
    fn a_written_off_node_counts_its_window_and_doubt_sold_and_returns_the_rest() {
        let keys = Keys::new("sale").unwrap();
        let record = NodeRecord {
            granted: 10,
            in_doubt: 2,
            sold: 5,
            window: 4,
            seq: 9,
            ..NodeRecord::default()
        };
        let view = View {
            pool: Read {
                value: Some(83),
                mod_revision: 3,
            },
            node: Read {
                value: Some(record),
                mod_revision: 4,
            },
            gather: Read::default(),
        };
        let WriteOffStep::Commit { plan, written_off } = write_off(&keys, "n1", 0, &view) else {
            panic!("a node holding tickets is written off")
        };
        let applied = WrittenOff::Applied {
            epoch: 1,
            sold: 6,
            returned: 6,
        };
        assert_eq!(written_off, applied);
        let after = decode_record("k", plan.puts[0].1.as_bytes()).unwrap();
        assert_eq!(
            (after.granted, after.in_doubt, after.sold, after.seq),
            (0, 0, 11, 9)
        );
        assert_eq!(plan.puts[1], (keys.pool(), "89".into()));
        let ledger = Ledger {
            capacity: Some(100),
            pool: Some(89),
            nodes: vec![("n1".into(), after)],
            gather: None,
        };
        assert_eq!(check(&ledger), Ok(()), "the sum is kept");
        // Again, on what it left: nothing to do.
        let again = View {
            node: Read {
                value: Some(after),
                mod_revision: 5,
            },
            ..view
        };
        let already = WrittenOff::Already { epoch: 1 };
        assert_eq!(
            write_off(&keys, "n1", 0, &again),
            WriteOffStep::Done(already)
        );
        assert_eq!(
            write_off(&keys, "n1", 1, &again),
            WriteOffStep::Done(WrittenOff::Nothing)
        );
    }
}

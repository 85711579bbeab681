//! The cluster-wide sold out (issue 18), without I/O: a node may answer "sold out" for an order
//! of `q` only when the tickets do not exist anywhere, and tickets sit in other nodes' leases
//! where it cannot see them. So it gathers them first, in rounds kept in the ledger's `gather`
//! key ([`Gather`]):
//!
//! 1. **Open** ([`open`]): a node that cannot find `q` tickets (its lease and an acquire fell
//!    short) opens round r + 1, or joins the round already open. From then on the ledger refuses
//!    every acquire (`Outcome::Gathering`): no ticket leaves the pool while the round is open.
//! 2. **Answer** (`Op::Answer`, a node's sequenced transaction): every node that sees the open
//!    round gives its whole unsold lease back and its record says it answered r. A fenced node
//!    counts as answered (the fence returned its lease but for the doubt).
//! 3. **Close** ([`close`]): any node waiting on the round (the opener, or a node that joined)
//!    closes it once every node's record answered r, in one transaction guarded by the pool, the
//!    round and every node record as read: the pool then holds every unsold ticket outside
//!    doubt, and the close records it (`pool_at_close`) with the bound `at_most = pool +
//!    Σ in_doubt`. A node that stays silent is fenced by its peers (a timeout decides when; it
//!    never decides a sold out), or the order gets a 503.
//!
//! After a close: an order that arrived before it and asks for more than `pool_at_close` is truly
//! sold out (every unsold ticket was in the pool at the close's revision, but for at most the
//! doubt of fenced nodes, which the issue allows as stranded: W per fenced node). An order for
//! more than `at_most` is refused by any node at once, with no message at all: at the close,
//! every ticket not yet sold was in the pool or in doubt (an answered node's grant is only its
//! unreported sales), so `capacity - sold <= at_most`, and sales only grow (until a restock, not
//! built, raises the bound in a new round). (`pool + Σ in_doubt` itself may exceed `at_most`
//! later: a fence moves a node's unreported sales into doubt.) Anything else acquires again (and
//! may open a new round).
//!
//! A close guards every node record, so a ledger with more records than etcd's `--max-txn-ops`
//! (128 by default) less two cannot close a round: raise it for clusters past about 120 nodes.
//!
//! Invariant: no sold-out answer but from a close at a revision after the order arrived, or from
//! a bound learnt from such a close. This module decides the rounds; `cluster::lease` decides
//! when a node opens, answers and closes them.

use super::ledger::{encode_gather, Gather, Keys, NodeRecord, Plan, Read};

/// What opening or closing a round reads: the pool, the round, and every node's record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatherView {
    /// The pool.
    pub pool: Read<u64>,
    /// The round.
    pub gather: Read<Gather>,
    /// Every node record, by id (a node that never transacted holds nothing and has none).
    pub nodes: Vec<(String, Read<NodeRecord>)>,
}

/// The result of [`open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// This call opened `round`.
    Started {
        /// The round.
        round: u64,
    },
    /// `round` was open already: wait for it with the others.
    Joined {
        /// The round.
        round: u64,
    },
}

/// The next move of an open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenStep {
    /// Nothing to send.
    Done(Opened),
    /// Send `plan`; applied: `opened`. On a failed guard or a lost reply, read and call again
    /// (a lost reply that opened the round then reads as `Joined`, which waits the same way).
    Commit {
        /// The transaction.
        plan: Plan,
        /// What it does when applied.
        opened: Opened,
    },
}

/// Opens the next round, or joins the open one.
pub fn open(keys: &Keys, view: &GatherView) -> OpenStep {
    let gather = view.gather.value.unwrap_or_default();
    if gather.open {
        let round = gather.round;
        return OpenStep::Done(Opened::Joined { round });
    }
    let next = Gather {
        round: gather.round + 1,
        open: true,
        ..gather
    };
    let plan = Plan {
        compares: vec![(keys.gather(), view.gather.mod_revision)],
        puts: vec![(keys.gather(), encode_gather(&next))],
    };
    let round = next.round;
    OpenStep::Commit {
        plan,
        opened: Opened::Started { round },
    }
}

/// The result of [`close`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The round is closed (by this call or another): the gather as closed. (A later round may
    /// be open or closed already: `gather.round` says which this is.)
    Done(Gather),
    /// These nodes have not answered the round yet (fence them after a while, or answer 503).
    Waiting {
        /// Their ids.
        silent: Vec<String>,
    },
}

/// The next move of a close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseStep {
    /// Nothing to send.
    Done(Closed),
    /// Send `plan`; applied: `closed`. On a failed guard or a lost reply, read and call again.
    Commit {
        /// The transaction.
        plan: Plan,
        /// What it does when applied.
        closed: Closed,
    },
}

/// Closes `round` once every node answered it.
pub fn close(keys: &Keys, round: u64, view: &GatherView) -> CloseStep {
    let gather = view.gather.value.unwrap_or_default();
    if !gather.open || gather.round != round {
        // Closed by another (the caller compares `gather.round` with its own).
        return CloseStep::Done(Closed::Done(gather));
    }
    let silent: Vec<String> = view
        .nodes
        .iter()
        // A node that holds nothing (no lease, no unreported sale) has nothing to give back,
        // and cannot acquire while the round is open: it need not answer (a dead or retired
        // node's record must not hold every later round open).
        .filter(|(_, node)| {
            node.value
                .is_some_and(|r| r.answered < round && r.granted > 0)
        })
        .map(|(id, _)| id.clone())
        .collect();
    if !silent.is_empty() {
        return CloseStep::Done(Closed::Waiting { silent });
    }
    let pool = view.pool.value.unwrap_or(0);
    let doubt = view
        .nodes
        .iter()
        .filter_map(|(_, node)| node.value)
        .try_fold(0u64, |sum, r| sum.checked_add(r.in_doubt));
    let bound = doubt.and_then(|doubt| doubt.checked_add(pool));
    let next = Gather {
        round,
        open: false,
        pool_at_close: pool,
        // Both are bounds on what can still be sold (capacity less sold): keep the tighter.
        at_most: match (bound, gather.at_most) {
            (Some(new), Some(old)) => Some(new.min(old)),
            (new, old) => new.or(old),
        },
    };
    let mut compares = vec![
        (keys.gather(), view.gather.mod_revision),
        (keys.pool(), view.pool.mod_revision),
    ];
    for (id, node) in &view.nodes {
        compares.push((keys.node(id), node.mod_revision));
    }
    let plan = Plan {
        compares,
        puts: vec![(keys.gather(), encode_gather(&next))],
    };
    CloseStep::Commit {
        plan,
        closed: Closed::Done(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new("sale").unwrap()
    }

    /// A record holding one ticket (unless `answered`), with some doubt.
    fn node(answered: u64, in_doubt: u64, rev: i64) -> Read<NodeRecord> {
        Read {
            value: Some(NodeRecord {
                answered,
                in_doubt,
                granted: 1,
                ..NodeRecord::default()
            }),
            mod_revision: rev,
        }
    }

    fn view(gather: Gather, nodes: Vec<(&str, Read<NodeRecord>)>) -> GatherView {
        GatherView {
            pool: Read {
                value: Some(3),
                mod_revision: 5,
            },
            gather: Read {
                value: Some(gather),
                mod_revision: 6,
            },
            nodes: nodes.into_iter().map(|(id, n)| (id.into(), n)).collect(),
        }
    }

    #[test]
    fn a_round_opens_once_and_others_join_it() {
        let closed = Gather {
            round: 2,
            ..Gather::default()
        };
        let OpenStep::Commit { plan, opened } = open(&keys(), &view(closed, vec![])) else {
            panic!("a closed round opens the next")
        };
        assert_eq!(opened, Opened::Started { round: 3 });
        assert_eq!(plan.compares, vec![(keys().gather(), 6)]);
        let open_now = Gather {
            round: 3,
            open: true,
            ..closed
        };
        let step = open(&keys(), &view(open_now, vec![]));
        assert_eq!(step, OpenStep::Done(Opened::Joined { round: 3 }));
    }

    #[test]
    fn a_round_closes_only_when_every_node_answered_and_records_the_bound() {
        let gather = Gather {
            round: 3,
            open: true,
            ..Gather::default()
        };
        let waiting = view(gather, vec![("a", node(3, 0, 7)), ("b", node(2, 0, 8))]);
        let silent = Closed::Waiting {
            silent: vec!["b".into()],
        };
        assert_eq!(close(&keys(), 3, &waiting), CloseStep::Done(silent));
        // A node holding nothing need not answer (a dead node's record holds no round open).
        let mut empty = node(2, 0, 8);
        empty.value.as_mut().unwrap().granted = 0;
        let idle = view(gather, vec![("a", node(3, 0, 7)), ("b", empty)]);
        assert!(matches!(close(&keys(), 3, &idle), CloseStep::Commit { .. }));
        let answered = view(gather, vec![("a", node(3, 0, 7)), ("b", node(3, 2, 8))]);
        let CloseStep::Commit { plan, closed } = close(&keys(), 3, &answered) else {
            panic!("every node answered")
        };
        let done = Gather {
            round: 3,
            open: false,
            pool_at_close: 3,
            at_most: Some(5),
        };
        assert_eq!(closed, Closed::Done(done));
        assert_eq!(
            plan.compares.len(),
            4,
            "the round, the pool and both records"
        );
        // Another closer, after it, is told how it closed.
        let after = view(done, vec![]);
        assert_eq!(
            close(&keys(), 3, &after),
            CloseStep::Done(Closed::Done(done))
        );
    }
}

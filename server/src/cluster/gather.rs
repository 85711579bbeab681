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
//! 3. **Close** ([`close`], `Op::Close`, a node's sequenced transaction): a node whose order
//!    waits on the round closes it (a node without one, which answered, leaves it to such a node
//!    for a while, then insists: a round open for nobody blocks every refill) once every node
//!    holding tickets answered r, in
//!    one transaction guarded by the pool, the round and every node record as read: the pool
//!    then holds every unsold ticket outside doubt, and the close records it (`pool_at_close`)
//!    with the bound `at_most = pool + Σ in_doubt`, and gives the closer the tickets its order
//!    lacks if the pool holds them, so that no other node's acquire comes between (without it,
//!    idle nodes refilling ahead took a scarce pool after every close, and an order waited
//!    through hundreds of rounds: the simulation's fault-free phase found it). A node that stays
//!    silent is fenced by its peers (a timeout decides when; it never decides a sold out), or
//!    the order gets a 503.
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

use super::ledger::{admit, encode_gather, encode_record, Gather, Keys, Last, NodeRecord, Op};
use super::ledger::{Outcome, Plan, Read, Refusal, Request, Step};

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

/// Node `id`'s `request` to close round `round` ([`Op::Close`]): once every node holding
/// tickets answered the round, in one transaction guarded by the pool, the round and every node
/// record as read, the round closes with the pool as it is (`pool_at_close`: every unsold ticket
/// outside doubt) and the bound, and the closer takes `want` tickets if the pool holds them.
/// Not applied: `Outcome::Silent` (a node has not answered: ask again later),
/// `Outcome::Deferred` (a closer without an order, while another node's order waits),
/// `Outcome::RoundClosed` (another closed
/// it: its close says what the pool held), or what [`admit`] answers (a retry recognised, a
/// fence).
pub fn close(keys: &Keys, id: &str, request: &Request, view: &GatherView) -> Step {
    let Op::Close {
        round,
        want,
        insist,
    } = request.op
    else {
        return Step::Done(Outcome::Refused(Refusal::Misrouted));
    };
    let own = view.nodes.iter().find(|(node, _)| node == id);
    let own_read = own.map_or(Read::default(), |(_, read)| *read);
    let record = own_read.value.unwrap_or_default();
    if let Err(step) = admit(&record, request) {
        return step;
    }
    let gather = view.gather.value.unwrap_or_default();
    if !gather.open || gather.round != round {
        return Step::Done(Outcome::RoundClosed { gather });
    }
    // A node that holds nothing (no lease, no unreported sale) has nothing to give back, and
    // cannot acquire while the round is open: it need not answer (a dead or retired node's
    // record must not hold every later round open).
    let silent = |r: &NodeRecord| r.answered < round && r.granted > 0;
    if view
        .nodes
        .iter()
        .any(|(_, n)| n.value.as_ref().is_some_and(silent))
    {
        return Step::Done(Outcome::Silent);
    }
    // A closer without an order leaves the close to a node whose order waited in this round
    // (its own record saying so counts: the order may have gone since, and two such nodes must
    // not each wait for the other).
    let waited = |r: &NodeRecord| r.answered == round && r.waiting > 0;
    let others_wait = view
        .nodes
        .iter()
        .any(|(node, read)| node != id && read.value.as_ref().is_some_and(waited));
    if want == 0 && !insist && !waited(&record) && others_wait {
        return Step::Done(Outcome::Deferred);
    }
    let Some(pool) = view.pool.value else {
        return Step::Done(Outcome::Refused(Refusal::NotInitialised));
    };
    let doubt = view
        .nodes
        .iter()
        .filter_map(|(_, node)| node.value)
        .try_fold(0u64, |sum, r| sum.checked_add(r.in_doubt));
    let bound = doubt.and_then(|doubt| doubt.checked_add(pool));
    // Both are bounds on what can still be sold (capacity less sold): keep the tighter.
    let at_most = match (bound, gather.at_most) {
        (Some(new), Some(old)) => Some(new.min(old)),
        (new, old) => new.or(old),
    };
    let took = if pool >= want { want } else { 0 };
    let Some(granted) = record.granted.checked_add(took) else {
        return Step::Done(Outcome::Refused(Refusal::Overflow));
    };
    let last = Last::Closed {
        round,
        took,
        pool_at_close: pool,
        at_most,
    };
    let next_record = NodeRecord {
        seq: request.seq,
        window: record.window.max(request.window),
        granted,
        answered: record.answered.max(round),
        waiting: 0,
        last,
        ..record
    };
    let next = Gather {
        round,
        open: false,
        pool_at_close: pool,
        at_most,
    };
    let mut compares = vec![
        (keys.gather(), view.gather.mod_revision),
        (keys.pool(), view.pool.mod_revision),
    ];
    for (node, read) in &view.nodes {
        compares.push((keys.node(node), read.mod_revision));
    }
    if own.is_none() {
        compares.push((keys.node(id), 0));
    }
    let plan = Plan {
        compares,
        puts: vec![
            (keys.gather(), encode_gather(&next)),
            (keys.pool(), (pool - took).to_string()),
            (keys.node(id), encode_record(&next_record)),
        ],
    };
    Step::Commit { plan, last }
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
        // Node a closes for an order lacking 2 tickets.
        let request = Request {
            op: Op::Close {
                round: 3,
                want: 2,
                insist: false,
            },
            seq: 1,
            epoch: 0,
            window: 4,
        };
        let waiting = view(gather, vec![("a", node(3, 0, 7)), ("b", node(2, 0, 8))]);
        let step = close(&keys(), "a", &request, &waiting);
        assert_eq!(step, Step::Done(Outcome::Silent));
        // A node holding nothing need not answer (a dead node's record holds no round open).
        let mut empty = node(2, 0, 8);
        empty.value.as_mut().unwrap().granted = 0;
        let idle = view(gather, vec![("a", node(3, 0, 7)), ("b", empty)]);
        assert!(matches!(
            close(&keys(), "a", &request, &idle),
            Step::Commit { .. }
        ));
        let answered = view(gather, vec![("a", node(3, 0, 7)), ("b", node(3, 2, 8))]);
        let Step::Commit { plan, last } = close(&keys(), "a", &request, &answered) else {
            panic!("every node answered")
        };
        let closed = Last::Closed {
            round: 3,
            took: 2,
            pool_at_close: 3,
            at_most: Some(5),
        };
        assert_eq!(last, closed);
        assert_eq!(
            plan.compares.len(),
            4,
            "the round, the pool and both records"
        );
        let done = Gather {
            round: 3,
            open: false,
            pool_at_close: 3,
            at_most: Some(5),
        };
        assert_eq!(plan.puts[0], (keys().gather(), encode_gather(&done)));
        assert_eq!(
            plan.puts[1],
            (keys().pool(), "1".into()),
            "the closer took its 2"
        );
        // An order for more than the pool takes nothing: it is sold out.
        let greedy = Request {
            op: Op::Close {
                round: 3,
                want: 4,
                insist: false,
            },
            ..request
        };
        let Step::Commit { last, .. } = close(&keys(), "a", &greedy, &answered) else {
            panic!("every node answered")
        };
        assert!(matches!(last, Last::Closed { took: 0, .. }), "{last:?}");
        // Another closer, after it, is told how it closed.
        let after = view(done, vec![]);
        let step = close(&keys(), "b", &request, &after);
        assert_eq!(step, Step::Done(Outcome::RoundClosed { gather: done }));
    }

    #[test]
    fn a_closer_without_an_order_leaves_the_close_to_one_whose_order_waits() {
        let gather = Gather {
            round: 3,
            open: true,
            ..Gather::default()
        };
        let waiter = |waiting, rev| {
            let mut read = node(3, 0, rev);
            read.value.as_mut().unwrap().waiting = waiting;
            read
        };
        let idle = |seq| Request {
            op: Op::Close {
                round: 3,
                want: 0,
                insist: false,
            },
            seq,
            epoch: 0,
            window: 4,
        };
        let both = view(gather, vec![("a", waiter(0, 7)), ("b", waiter(2, 8))]);
        let step = close(&keys(), "a", &idle(1), &both);
        assert_eq!(
            step,
            Step::Done(Outcome::Deferred),
            "b's order waits: b closes"
        );
        assert!(matches!(
            close(&keys(), "b", &idle(1), &both),
            Step::Commit { .. }
        ));
        let ordered = Request {
            op: Op::Close {
                round: 3,
                want: 1,
                insist: false,
            },
            ..idle(1)
        };
        assert!(matches!(
            close(&keys(), "a", &ordered, &both),
            Step::Commit { .. }
        ));
        // b has not closed for long (gone): a insists.
        let mut insisting = idle(1);
        if let Op::Close { insist, .. } = &mut insisting.op {
            *insist = true;
        }
        assert!(matches!(
            close(&keys(), "a", &insisting, &both),
            Step::Commit { .. }
        ));
    }
}

//! The escrow ledger a cluster keeps in etcd, without I/O: which keys hold what, and for each
//! change of the pool the transaction that makes it, guarded by the revisions it read (issue 18).
//!
//! # The ledger
//! Under the cluster's prefix (`/ticketd/<cluster-name>/`):
//! - `capacity`: the sale's stock, written once by `ticketd cluster init` and never again;
//! - `pool`: the tickets no node holds;
//! - `node/<id>`: one [`NodeRecord`] per node: its lease (`granted`, sold or not, as far as etcd
//!   knows), what it reported sold, what a fence kept in doubt, its fencing epoch, and the
//!   sequence number and result of its last transaction.
//!
//! Invariant at every etcd revision (checked by [`check`]):
//! `pool + Σ (granted + in_doubt + sold) == capacity`. Every transaction here moves tickets
//! between those terms and never changes their sum.
//!
//! # Transactions
//! A node changes the ledger one transaction at a time ([`Request`], with the next sequence
//! number), each built by [`plan`] from a linearizable read ([`View`]) and guarded by the mod
//! revisions of every key it read: if anything changed in between, etcd applies nothing and the
//! caller reads again. A node's record carries the sequence number and result of the last
//! transaction applied for it ([`Last`]), so a transaction whose reply was lost is recognised on
//! the next read ([`Step::Done`] with the result it had) and never applied twice; and a node that
//! crashed between etcd's commit and its own journal learns the result from the same place. A
//! peer fences a node ([`fence`]) in one transaction: its epoch goes up (every transaction the
//! node planned in the old epoch then fails its guard), its lease goes back to the pool but for
//! at most its window of tickets (what it may have sold without reporting) kept in doubt until it
//! rejoins and reports what it did sell ([`Op::Rejoin`]).
//!
//! What this module does not know: etcd's client (`cluster::etcd`), time, heartbeats, or when a
//! node should acquire or report (the node's own policy).

use serde::{Deserialize, Serialize};

/// Longest cluster name and node id, in bytes: they become etcd key segments, and a name that
/// long is already unreadable in `ticketd cluster status`.
pub const NAME_BYTES_MAX: usize = 64;

/// The key prefix of every cluster's ledger: one etcd cluster can hold several sales (one per
/// `--cluster-name`) beside other users' keys.
pub const ROOT: &str = "/ticketd/";

/// The etcd keys of one cluster's ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    /// `/ticketd/<cluster-name>/`.
    prefix: String,
}

/// A cluster name or node id that cannot be a key segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Empty.
    Empty,
    /// Longer than [`NAME_BYTES_MAX`].
    TooLong,
    /// A byte outside `[A-Za-z0-9_.-]` (a `/` would nest keys, others need quoting).
    Character,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameError::Empty => "must not be empty",
            NameError::TooLong => "must be at most 64 bytes",
            NameError::Character => "may hold only letters, digits, '_', '.' and '-'",
        })
    }
}

/// Checks a cluster name or node id.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(NameError::TooLong);
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if !name.bytes().all(allowed) {
        return Err(NameError::Character);
    }
    Ok(())
}

impl Keys {
    /// The keys of the cluster `name` (checked by [`check_name`]).
    pub fn new(name: &str) -> Result<Keys, NameError> {
        check_name(name)?;
        Ok(Keys {
            prefix: format!("{ROOT}{name}/"),
        })
    }

    /// The capacity key.
    pub fn capacity(&self) -> String {
        format!("{}capacity", self.prefix)
    }

    /// The pool key.
    pub fn pool(&self) -> String {
        format!("{}pool", self.prefix)
    }

    /// Node `id`'s heartbeat key (`cluster::liveness`): not part of the ledger's sum.
    pub fn alive(&self, id: &str) -> String {
        format!("{}alive/{id}", self.prefix)
    }

    /// The prefix of every heartbeat key.
    pub fn alives(&self) -> String {
        format!("{}alive/", self.prefix)
    }

    /// The gather key: the cluster-wide sold-out round ([`Gather`]).
    pub fn gather(&self) -> String {
        format!("{}gather", self.prefix)
    }

    /// Node `id`'s record key.
    pub fn node(&self, id: &str) -> String {
        format!("{}{id}", self.nodes())
    }

    /// The prefix of every node record (a range read lists the nodes).
    pub fn nodes(&self) -> String {
        format!("{}node/", self.prefix)
    }

    /// The node id of a record key, if it is one.
    pub fn node_id<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("node/")
    }
}

/// One node's part of the ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// Fencing epoch: raised by a peer's fence; the node's transactions must name it.
    pub epoch: u64,
    /// Tickets leased to the node and not reported sold (some may be sold, unreported).
    pub granted: u64,
    /// Tickets a fence kept out of the pool: at most what the node may have sold unreported.
    pub in_doubt: u64,
    /// Tickets the node reported sold.
    pub sold: u64,
    /// Sequence number of the node's last applied transaction (0: none yet).
    pub seq: u64,
    /// What that transaction did.
    pub last: Last,
    /// The most sales the node may hold unreported, as its transactions declared it: what a
    /// fence keeps in doubt. It only grows, but at a rejoin (nothing is unreported then), so a
    /// node may use a larger window only once a transaction declaring it was applied.
    pub window: u64,
    /// The last gather round the node answered (by giving its whole lease back, or being fenced).
    pub answered: u64,
    /// Tickets an order of the node waits for in the round it answered: while any node waits, a
    /// node without an order leaves the close to one that has (whose close takes its tickets in
    /// the same transaction), so that no round closes for nobody while idle nodes' refills
    /// drain the pool before the waiting order gets to it.
    pub waiting: u64,
}

/// The cluster-wide sold-out round (`cluster::gather`): while `open`, no node may acquire, and
/// every node gives its whole lease back (answers); once all have, a closing transaction reads
/// the pool with every unsold ticket in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gather {
    /// The latest round (0: none yet).
    pub round: u64,
    /// Whether it is open.
    pub open: bool,
    /// The pool when the latest round closed: every unsold ticket outside doubt was in it.
    pub pool_at_close: u64,
    /// Since the first close: at most this many tickets can ever be sold again (the pool at
    /// that close plus the doubt then, which a rejoin may return), until a restock raises it.
    pub at_most: Option<u64>,
}

/// The result of a node's last applied transaction, kept in its record so that a retry after a
/// lost reply, or the node after a crash, learns it from etcd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Last {
    /// No transaction yet.
    #[default]
    None,
    /// A block of this many tickets came from the pool.
    Acquired(u64),
    /// This many sales were reported.
    Reported(u64),
    /// This many unsold tickets went back to the pool.
    Returned(u64),
    /// The node answered a gather round by giving this many tickets (its whole lease) back.
    Answered {
        /// The round.
        round: u64,
        /// Tickets given back.
        tickets: u64,
    },
    /// The node closed a gather round, and took `took` tickets for its order.
    Closed {
        /// The round.
        round: u64,
        /// Tickets taken from the pool into the node's lease.
        took: u64,
        /// The pool at the close, before the take.
        pool_at_close: u64,
        /// The bound the close recorded.
        at_most: Option<u64>,
    },
    /// An operator wrote the node off (`cluster::retire`): no request of a node is this, so
    /// a node starting under the id with an empty journal is refused, never told it was served.
    WrittenOff,
    /// The node rejoined after a fence: `sold` of the doubt were sales, `returned` went back.
    Rejoined {
        /// Sales the node's journal showed in its doubt window.
        sold: u64,
        /// The rest of the doubt, back to the pool.
        returned: u64,
    },
}

/// What a node asks of the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Up to `want` tickets from the pool (fewer when fewer are left).
    Acquire {
        /// Block size asked for.
        want: u64,
    },
    /// `sold` tickets of the lease were sold (and are durable in the node's journal).
    Report {
        /// Sales since the last report.
        sold: u64,
    },
    /// `tickets` unsold tickets of the lease go back (already given up in the node's journal).
    Return {
        /// Tickets given back.
        tickets: u64,
    },
    /// A gather round is open: `tickets`, the node's whole unsold lease (already given up in its
    /// journal), go back, and the record says the node answered `round`.
    Answer {
        /// The round.
        round: u64,
        /// Tickets given back.
        tickets: u64,
        /// Tickets the node's waiting order lacks (0: none waits).
        waiting: u64,
    },
    /// Close gather round `round` once every node answered it (`cluster::gather::close`), and
    /// take `want` tickets for the closer's order if the pool holds them (none if it does not:
    /// the order is sold out), in the same transaction, so that no other node's acquire comes
    /// between the close and the order it was for.
    Close {
        /// The round.
        round: u64,
        /// Tickets the closer's order lacks (0: it has none, it only closes).
        want: u64,
        /// Close even while another node's order waits in the round (that node has not closed
        /// it for long: it is gone).
        insist: bool,
    },
    /// After a fence: `sold` of the tickets in doubt were sold; the rest goes back to the pool.
    Rejoin {
        /// Sales after the last applied report, from the node's journal.
        sold: u64,
    },
}

/// A node's transaction: what, under which sequence number, in which epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub op: Op,
    /// The node's journaled sequence number + 1, written into its journal with the request
    /// before the first send and the same for every retry, never taken from a read: a node that
    /// planned a request anew under a number etcd had applied would be refused
    /// ([`Refusal::Mismatch`]) at best.
    pub seq: u64,
    /// The epoch the node believes it holds.
    pub epoch: u64,
    /// The node's window (see [`NodeRecord::window`]).
    pub window: u64,
}

/// What etcd held under one key at a read: the value, and its mod revision (0: no such key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Read<T> {
    /// The value, if the key exists.
    pub value: Option<T>,
    /// Its mod revision; 0 when absent (etcd compares a missing key's revision as 0).
    pub mod_revision: i64,
}

/// What a node's transaction reads: the pool and the node's record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The pool (`None`: the cluster was never initialised).
    pub pool: Read<u64>,
    /// The node's record (`None`: the node has never transacted).
    pub node: Read<NodeRecord>,
    /// The gather round (`None`: none yet).
    pub gather: Read<Gather>,
}

/// An etcd transaction: if every key's mod revision is as read (0: absent), put every value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `(key, mod revision)` that must still hold.
    pub compares: Vec<(String, i64)>,
    /// `(key, value)` written together if they do.
    pub puts: Vec<(String, String)>,
}

/// The result of a node's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (now, or by an earlier try whose reply was lost): this is what it did.
    Applied(Last),
    /// The pool is empty: nothing to acquire.
    Empty,
    /// The node was fenced: its record is in `epoch` now; it must stop selling and rejoin.
    Fenced {
        /// The record's epoch.
        epoch: u64,
    },
    /// A close found a node that holds tickets and has not answered the round: ask again
    /// later (and fence it if it stays silent). Reusing the sequence number is safe: an earlier
    /// copy of the close, still on its way, guarded every record and the pool as it read them,
    /// and the node that was silent then must answer before any close, which writes both.
    Silent,
    /// A close by a node without an order found another node whose order waits in the round:
    /// that node closes it (taking its tickets in the same transaction); ask again later, and
    /// insist if it has not (`Op::Close::insist`). Reusing the number is safe for the same
    /// reason as after `Silent`: a node's waiting order is written by its answer, which also
    /// writes the pool that every close guards.
    Deferred,
    /// A gather round is open: no acquire until it closes (answer it first, if not yet).
    Gathering {
        /// The open round.
        round: u64,
    },
    /// An answer to a round that is not open (any more): nothing was applied; the tickets the
    /// node gave up for it are still its own (no earlier try can apply: the round's key moved).
    RoundClosed {
        /// The gather as read.
        gather: Gather,
    },
    /// The ledger cannot take this request as it stands.
    Refused(Refusal),
}

/// Why a request cannot be applied: each is a bug or a mismatch between a node's journal and the
/// ledger, never a state a retry resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No pool: `ticketd cluster init` was not run for this cluster name.
    NotInitialised,
    /// The request's sequence number is neither the next one nor the last applied one.
    Sequence {
        /// The record's `seq`.
        applied: u64,
    },
    /// More reported sold, or returned, than the node holds (`granted`).
    MoreThanGranted {
        /// The record's `granted`.
        granted: u64,
    },
    /// A rejoin reporting more sales than were in doubt.
    MoreThanInDoubt {
        /// The record's `in_doubt`.
        in_doubt: u64,
    },
    /// The pool would overflow (a ledger that breaks the invariant).
    Overflow,
    /// The request carries the sequence number of the last applied transaction, but that one
    /// did something else: the node's journal and the ledger disagree (a request planned
    /// anew under a used number, or two processes with one node id).
    Mismatch {
        /// What the applied transaction did.
        applied: Last,
    },
    /// An acquire of nothing (a block-size policy that rounded to 0 must not read as empty).
    Zero,
    /// A close planned by [`plan`] instead of `gather::close` (which reads every record).
    Misrouted,
}

/// The next move of a node's transaction, given what was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to send: this is the outcome.
    Done(Outcome),
    /// Send `plan`; if etcd applies it, the outcome is `Outcome::Applied(last)`. If its guard
    /// fails, or the reply is lost, read again and call [`plan`] again with the same request.
    Commit {
        /// The transaction.
        plan: Plan,
        /// What it does when applied.
        last: Last,
    },
}

/// The transaction for node `id`'s `request`, given `view`, read at one revision.
pub fn plan(keys: &Keys, id: &str, request: &Request, view: &View) -> Step {
    let record = view.node.value.unwrap_or_default();
    if let Err(step) = admit(&record, request) {
        return step;
    }
    if let Op::Close { .. } = request.op {
        // A close reads every record: `gather::close` plans it from a `GatherView`.
        return Step::Done(Outcome::Refused(Refusal::Misrouted));
    }
    plan_admitted(keys, id, request, view, record)
}

/// What every node transaction checks first against the node's record: a retry of the last
/// applied one is told its result (if it is the same request), a sequence number out of turn
/// is refused, and a request from an older epoch learns it was fenced.
pub(super) fn admit(record: &NodeRecord, request: &Request) -> Result<(), Step> {
    if request.seq == record.seq && record.seq != 0 {
        // Applied before (the reply was lost, or the node crashed before journaling it), if it
        // was this request: the number alone would let a different request be told it was done.
        let applied = record.last;
        let same = match (request.op, applied) {
            (Op::Acquire { want }, Last::Acquired(got)) => got <= want,
            (Op::Report { sold }, Last::Reported(done)) => sold == done,
            (Op::Return { tickets }, Last::Returned(done)) => tickets == done,
            (
                Op::Answer { round, tickets, .. },
                Last::Answered {
                    round: r,
                    tickets: t,
                },
            ) => (round, tickets) == (r, t),
            (Op::Rejoin { sold }, Last::Rejoined { sold: done, .. }) => sold == done,
            (Op::Close { round, .. }, Last::Closed { round: r, .. }) => round == r,
            _ => false,
        };
        let outcome = match same {
            true => Outcome::Applied(applied),
            false => Outcome::Refused(Refusal::Mismatch { applied }),
        };
        return Err(Step::Done(outcome));
    }
    if Some(request.seq) != record.seq.checked_add(1) {
        let applied = record.seq;
        return Err(Step::Done(Outcome::Refused(Refusal::Sequence { applied })));
    }
    if record.epoch != request.epoch {
        let epoch = record.epoch;
        return Err(Step::Done(Outcome::Fenced { epoch }));
    }
    Ok(())
}

/// [`plan`] past [`admit`].
fn plan_admitted(
    keys: &Keys,
    id: &str,
    request: &Request,
    view: &View,
    record: NodeRecord,
) -> Step {
    let Some(pool) = view.pool.value else {
        return Step::Done(Outcome::Refused(Refusal::NotInitialised));
    };
    let mut next = NodeRecord {
        seq: request.seq,
        window: match request.op {
            Op::Rejoin { .. } => request.window,
            _ => record.window.max(request.window),
        },
        ..record
    };
    let mut new_pool = None;
    // Whether the plan depends on the gather round as read (acquires and answers do).
    let mut guard_gather = false;
    let refuse = |refusal| Step::Done(Outcome::Refused(refusal));
    next.last = match request.op {
        Op::Acquire { want: 0 } => return refuse(Refusal::Zero),
        Op::Acquire { want } => {
            let gather = view.gather.value.unwrap_or_default();
            if gather.open {
                let round = gather.round;
                return Step::Done(Outcome::Gathering { round });
            }
            guard_gather = true;
            let tickets = want.min(pool);
            if tickets == 0 {
                return Step::Done(Outcome::Empty);
            }
            let Some(granted) = record.granted.checked_add(tickets) else {
                return refuse(Refusal::Overflow);
            };
            next.granted = granted;
            new_pool = Some(pool - tickets);
            Last::Acquired(tickets)
        }
        Op::Report { sold } => {
            if sold > record.granted {
                let granted = record.granted;
                return refuse(Refusal::MoreThanGranted { granted });
            }
            let Some(total) = record.sold.checked_add(sold) else {
                return refuse(Refusal::Overflow);
            };
            next.granted = record.granted - sold;
            next.sold = total;
            Last::Reported(sold)
        }
        Op::Return { tickets } => {
            if tickets > record.granted {
                let granted = record.granted;
                return refuse(Refusal::MoreThanGranted { granted });
            }
            let Some(sum) = pool.checked_add(tickets) else {
                return refuse(Refusal::Overflow);
            };
            next.granted = record.granted - tickets;
            new_pool = Some(sum);
            Last::Returned(tickets)
        }
        Op::Answer {
            round,
            tickets,
            waiting,
        } => {
            let gather = view.gather.value.unwrap_or_default();
            if !gather.open || gather.round != round {
                return Step::Done(Outcome::RoundClosed { gather });
            }
            if tickets > record.granted {
                let granted = record.granted;
                return refuse(Refusal::MoreThanGranted { granted });
            }
            let Some(sum) = pool.checked_add(tickets) else {
                return refuse(Refusal::Overflow);
            };
            guard_gather = true;
            next.granted = record.granted - tickets;
            next.answered = round;
            next.waiting = waiting;
            new_pool = Some(sum);
            Last::Answered { round, tickets }
        }
        Op::Close { .. } => return refuse(Refusal::Misrouted),
        Op::Rejoin { sold } => {
            if sold > record.in_doubt {
                let in_doubt = record.in_doubt;
                return refuse(Refusal::MoreThanInDoubt { in_doubt });
            }
            let returned = record.in_doubt - sold;
            let Some(sum) = pool.checked_add(returned) else {
                return refuse(Refusal::Overflow);
            };
            let Some(total) = record.sold.checked_add(sold) else {
                return refuse(Refusal::Overflow);
            };
            next.in_doubt = 0;
            next.sold = total;
            new_pool = Some(sum);
            Last::Rejoined { sold, returned }
        }
    };
    let mut out = Plan::default();
    out.compares.push((keys.node(id), view.node.mod_revision));
    out.puts.push((keys.node(id), encode_record(&next)));
    if let Some(new_pool) = new_pool {
        out.compares.push((keys.pool(), view.pool.mod_revision));
        out.puts.push((keys.pool(), new_pool.to_string()));
    }
    if guard_gather {
        out.compares.push((keys.gather(), view.gather.mod_revision));
    }
    Step::Commit {
        plan: out,
        last: next.last,
    }
}

/// The result of a fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fenced {
    /// Nothing to fence: the node has no record (it never held a lease), the cluster has no
    /// pool, the fencer names an epoch the record never reached, or the ledger would overflow.
    Nothing,
    /// The node is in a later epoch than the one the fencer saw (fenced already, or rejoined):
    /// nothing was done.
    Already {
        /// The record's epoch.
        epoch: u64,
    },
    /// The fence was applied: the node is in `epoch`, `in_doubt` more tickets are in doubt and
    /// `returned` went back to the pool.
    Applied {
        /// The new epoch.
        epoch: u64,
        /// Tickets added to the doubt.
        in_doubt: u64,
        /// Tickets back in the pool.
        returned: u64,
    },
}

/// A fence's next move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceStep {
    /// Nothing to send.
    Done(Fenced),
    /// Send `plan`; applied, its result is `fenced`; on a failed guard or a lost reply, read
    /// again and call [`fence`] again with the same `seen_epoch`.
    Commit {
        /// The transaction.
        plan: Plan,
        /// What it does when applied.
        fenced: Fenced,
    },
}

/// A peer fences node `id`, which it saw (silent) in epoch `seen_epoch`: the node's lease goes
/// back to the pool but for `min(window, granted)` tickets kept in doubt, the window being the
/// node's own as its record holds it (a node never holds more unreported sales than that, and
/// never uses a larger one before its record says so; a fencer's window would be wrong for a
/// node configured otherwise); and its epoch goes up, so that every transaction it planned
/// before fails.
/// Safety depends on no clock: a fence of a live node costs it a rejoin, never a ticket.
pub fn fence(keys: &Keys, id: &str, seen_epoch: u64, view: &View) -> FenceStep {
    let Some(record) = view.node.value else {
        // A node that never transacted holds nothing: nothing to fence.
        return FenceStep::Done(Fenced::Nothing);
    };
    if record.epoch > seen_epoch {
        let epoch = record.epoch;
        return FenceStep::Done(Fenced::Already { epoch });
    }
    if record.epoch != seen_epoch {
        // An epoch the record never had: the fencer read something else.
        return FenceStep::Done(Fenced::Nothing);
    }
    let Some(fencing) = fencing(&record, view) else {
        return FenceStep::Done(Fenced::Nothing);
    };
    let fenced = Fenced::Applied {
        epoch: fencing.next.epoch,
        in_doubt: fencing.kept,
        returned: fencing.returned,
    };
    let plan = fencing.plan(keys, id, view);
    FenceStep::Commit { plan, fenced }
}

/// What a fence makes of a node's record (as read in `view`), for [`fence`] and the write-off
/// (`cluster::retire`, which counts the doubt sold on top of it).
pub(super) struct Fencing {
    /// The record in its next epoch: nothing granted, `kept` more in doubt, any open round
    /// answered (it holds nothing but its doubt), no order waiting.
    pub next: NodeRecord,
    /// Tickets added to the doubt: `min(window, granted)`.
    pub kept: u64,
    /// Tickets back in the pool.
    pub returned: u64,
    /// The pool after.
    pub pool: u64,
}

/// [`Fencing`] of `record`; `None` without a pool, or on an overflow (a ledger that breaks the
/// invariant).
pub(super) fn fencing(record: &NodeRecord, view: &View) -> Option<Fencing> {
    let pool = view.pool.value?;
    let kept = record.window.min(record.granted);
    let returned = record.granted - kept;
    let gather = view.gather.value.unwrap_or_default();
    let answered = match gather.open {
        true => record.answered.max(gather.round),
        false => record.answered,
    };
    let next = NodeRecord {
        epoch: record.epoch + 1,
        granted: 0,
        in_doubt: record.in_doubt.checked_add(kept)?,
        answered,
        waiting: 0,
        ..*record
    };
    let pool = pool.checked_add(returned)?;
    Some(Fencing {
        next,
        kept,
        returned,
        pool,
    })
}

impl Fencing {
    /// The transaction writing `next` (or a record derived from it) and the pool, guarded by
    /// the record, the pool and the round as read in `view`.
    pub fn plan_with(&self, keys: &Keys, id: &str, view: &View, next: &NodeRecord) -> Plan {
        Plan {
            compares: vec![
                (keys.node(id), view.node.mod_revision),
                (keys.pool(), view.pool.mod_revision),
                (keys.gather(), view.gather.mod_revision),
            ],
            puts: vec![
                (keys.node(id), encode_record(next)),
                (keys.pool(), self.pool.to_string()),
            ],
        }
    }

    /// The transaction writing `next` and the pool.
    pub fn plan(&self, keys: &Keys, id: &str, view: &View) -> Plan {
        self.plan_with(keys, id, view, &self.next)
    }
}

/// `ticketd cluster init`: the capacity and the pool, created together, once.
pub fn init(keys: &Keys, capacity: u64) -> Plan {
    Plan {
        compares: vec![(keys.capacity(), 0), (keys.pool(), 0)],
        puts: vec![
            (keys.capacity(), capacity.to_string()),
            (keys.pool(), capacity.to_string()),
        ],
    }
}

/// A node record as stored: one line of JSON.
pub fn encode_record(record: &NodeRecord) -> String {
    serde_json::to_string(record).expect("a record of integers serializes")
}

/// A value read from etcd that is not what this module wrote: another program's key, or a
/// ledger written by a different version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupt {
    /// The key.
    pub key: String,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "etcd key {} does not hold a ticketd ledger value",
            self.key
        )
    }
}

/// Reads a node record.
pub fn decode_record(key: &str, bytes: &[u8]) -> Result<NodeRecord, Corrupt> {
    serde_json::from_slice(bytes).map_err(|_| Corrupt { key: key.into() })
}

/// Reads the gather record.
pub fn decode_gather(key: &str, bytes: &[u8]) -> Result<Gather, Corrupt> {
    serde_json::from_slice(bytes).map_err(|_| Corrupt { key: key.into() })
}

/// The gather record as stored: one line of JSON.
pub fn encode_gather(gather: &Gather) -> String {
    serde_json::to_string(gather).expect("a gather of integers serializes")
}

/// Reads a count (`capacity`, `pool`): a decimal number.
pub fn decode_count(key: &str, bytes: &[u8]) -> Result<u64, Corrupt> {
    let corrupt = || Corrupt { key: key.into() };
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt())?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(corrupt());
    }
    text.parse().map_err(|_| corrupt())
}

/// A node's [`View`] from raw reads: `(value, mod revision)` of the pool and of its record.
pub fn decode_view(
    keys: &Keys,
    id: &str,
    pool: Option<(&[u8], i64)>,
    node: Option<(&[u8], i64)>,
    gather: Option<(&[u8], i64)>,
) -> Result<View, Corrupt> {
    let mut view = View::default();
    if let Some((bytes, mod_revision)) = gather {
        view.gather = Read {
            value: Some(decode_gather(&keys.gather(), bytes)?),
            mod_revision,
        };
    }
    if let Some((bytes, mod_revision)) = pool {
        view.pool = Read {
            value: Some(decode_count(&keys.pool(), bytes)?),
            mod_revision,
        };
    }
    if let Some((bytes, mod_revision)) = node {
        view.node = Read {
            value: Some(decode_record(&keys.node(id), bytes)?),
            mod_revision,
        };
    }
    Ok(view)
}

/// The whole [`Ledger`] from raw reads at one revision: capacity, pool, and every key under
/// [`Keys::nodes`] with its value.
pub fn decode_ledger<'a>(
    keys: &Keys,
    capacity: Option<&[u8]>,
    pool: Option<&[u8]>,
    gather: Option<&[u8]>,
    nodes: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Ledger, Corrupt> {
    let gather = gather
        .map(|bytes| decode_gather(&keys.gather(), bytes))
        .transpose()?;
    let mut ledger = Ledger {
        gather,
        capacity: capacity
            .map(|bytes| decode_count(&keys.capacity(), bytes))
            .transpose()?,
        pool: pool
            .map(|bytes| decode_count(&keys.pool(), bytes))
            .transpose()?,
        nodes: Vec::new(),
    };
    for (key, bytes) in nodes {
        let id = keys
            .node_id(key)
            .ok_or_else(|| Corrupt { key: key.into() })?;
        ledger.nodes.push((id.into(), decode_record(key, bytes)?));
    }
    Ok(ledger)
}

/// The whole ledger at one revision, as `ticketd cluster status` and the tests read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// `capacity` (`None`: not initialised).
    pub capacity: Option<u64>,
    /// `pool`.
    pub pool: Option<u64>,
    /// Every node's record, by id.
    pub nodes: Vec<(String, NodeRecord)>,
    /// The gather round, if one was ever opened.
    pub gather: Option<Gather>,
}

/// How a ledger breaks the invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broken {
    /// Capacity and pool must both exist or both be absent (with no node records then).
    Partial,
    /// `pool + Σ (granted + in_doubt + sold)` differs from `capacity` (or overflows: `None`).
    Sum {
        /// The capacity.
        capacity: u64,
        /// The sum.
        sum: Option<u64>,
    },
}

/// Checks `pool + Σ (granted + in_doubt + sold) == capacity`.
pub fn check(ledger: &Ledger) -> Result<(), Broken> {
    let (capacity, pool) = match (ledger.capacity, ledger.pool) {
        (Some(capacity), Some(pool)) => (capacity, pool),
        (None, None) if ledger.nodes.is_empty() => return Ok(()),
        _ => return Err(Broken::Partial),
    };
    let sum = ledger.nodes.iter().try_fold(pool, |sum, (_, node)| {
        sum.checked_add(node.granted)?
            .checked_add(node.in_doubt)?
            .checked_add(node.sold)
    });
    if sum == Some(capacity) {
        Ok(())
    } else {
        Err(Broken::Sum { capacity, sum })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new("sale").unwrap()
    }

    fn view(pool: u64, node: Option<NodeRecord>) -> View {
        View {
            pool: Read {
                value: Some(pool),
                mod_revision: 7,
            },
            node: Read {
                value: node,
                mod_revision: if node.is_some() { 9 } else { 0 },
            },
            gather: Read::default(),
        }
    }

    fn request(op: Op, seq: u64) -> Request {
        Request {
            op,
            seq,
            epoch: 0,
            window: 4,
        }
    }

    fn committed(step: Step) -> (Plan, Last) {
        match step {
            Step::Commit { plan, last } => (plan, last),
            other => panic!("expected a commit, got {other:?}"),
        }
    }

    #[test]
    fn names_are_key_segments() {
        assert_eq!(check_name("sale-2026.main_1"), Ok(()));
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name(&"a".repeat(65)), Err(NameError::TooLong));
        for bad in ["a/b", "a b", "ü", "a\0"] {
            assert_eq!(check_name(bad), Err(NameError::Character), "{bad:?}");
        }
        let keys = keys();
        assert_eq!(keys.pool(), "/ticketd/sale/pool");
        assert_eq!(keys.node("n1"), "/ticketd/sale/node/n1");
        assert_eq!(keys.node_id("/ticketd/sale/node/n1"), Some("n1"));
        assert_eq!(keys.node_id("/ticketd/other/node/n1"), None);
    }

    #[test]
    fn a_first_acquire_creates_the_record_guarded_by_its_absence() {
        let (plan, last) = committed(plan_for(Op::Acquire { want: 10 }, 1, view(100, None)));
        assert_eq!(last, Last::Acquired(10));
        let node = keys().node("n1");
        let guards = vec![(node.clone(), 0), (keys().pool(), 7), (keys().gather(), 0)];
        assert_eq!(plan.compares, guards, "no round opened since the read");
        let record = decode_record(&node, plan.puts[0].1.as_bytes()).unwrap();
        assert_eq!((record.granted, record.seq, record.last), (10, 1, last));
        assert_eq!(plan.puts[1], (keys().pool(), "90".into()));
    }

    fn plan_for(op: Op, seq: u64, view: View) -> Step {
        plan(&keys(), "n1", &request(op, seq), &view)
    }

    #[test]
    fn an_acquire_takes_what_is_left_and_an_empty_pool_sends_nothing() {
        let (_, last) = committed(plan_for(Op::Acquire { want: 10 }, 1, view(4, None)));
        assert_eq!(last, Last::Acquired(4));
        let step = plan_for(Op::Acquire { want: 10 }, 1, view(0, None));
        assert_eq!(step, Step::Done(Outcome::Empty));
    }

    #[test]
    fn a_retry_after_a_lost_reply_is_recognised_by_its_sequence_number() {
        let after = NodeRecord {
            granted: 10,
            seq: 1,
            last: Last::Acquired(10),
            ..NodeRecord::default()
        };
        let step = plan_for(Op::Acquire { want: 10 }, 1, view(90, Some(after)));
        assert_eq!(step, Step::Done(Outcome::Applied(Last::Acquired(10))));
        let step = plan_for(Op::Report { sold: 1 }, 5, view(90, Some(after)));
        let refused = Outcome::Refused(Refusal::Sequence { applied: 1 });
        assert_eq!(step, Step::Done(refused));
    }

    #[test]
    fn reports_and_returns_move_tickets_out_of_the_lease() {
        let held = NodeRecord {
            granted: 10,
            seq: 1,
            ..NodeRecord::default()
        };
        let (plan, last) = committed(plan_for(Op::Report { sold: 3 }, 2, view(90, Some(held))));
        assert_eq!(last, Last::Reported(3));
        assert_eq!(plan.compares.len(), 1, "a report does not touch the pool");
        let record = decode_record("k", plan.puts[0].1.as_bytes()).unwrap();
        assert_eq!((record.granted, record.sold), (7, 3));
        assert_eq!(record.window, 4, "the request declared its window");
        let wide = NodeRecord { window: 9, ..held };
        let (plan, _) = committed(plan_for(Op::Report { sold: 3 }, 2, view(90, Some(wide))));
        let record = decode_record("k", plan.puts[0].1.as_bytes()).unwrap();
        assert_eq!(record.window, 9, "only a rejoin lowers a window");
        let (plan, last) = committed(plan_for(Op::Return { tickets: 4 }, 2, view(90, Some(held))));
        assert_eq!(last, Last::Returned(4));
        assert_eq!(plan.puts[1], (keys().pool(), "94".into()));
        for op in [Op::Report { sold: 11 }, Op::Return { tickets: 11 }] {
            let refused = Outcome::Refused(Refusal::MoreThanGranted { granted: 10 });
            assert_eq!(plan_for(op, 2, view(90, Some(held))), Step::Done(refused));
        }
    }

    #[test]
    fn a_fence_keeps_the_window_in_doubt_and_the_old_epoch_is_refused() {
        let held = NodeRecord {
            granted: 10,
            seq: 3,
            window: 4,
            ..NodeRecord::default()
        };
        let step = fence(&keys(), "n1", 0, &view(90, Some(held)));
        let FenceStep::Commit {
            plan: fencing,
            fenced,
        } = step
        else {
            panic!("expected a commit, got {step:?}")
        };
        let applied = Fenced::Applied {
            epoch: 1,
            in_doubt: 4,
            returned: 6,
        };
        assert_eq!(fenced, applied);
        let after = decode_record("k", fencing.puts[0].1.as_bytes()).unwrap();
        assert_eq!((after.epoch, after.granted, after.in_doubt), (1, 0, 4));
        assert_eq!(fencing.puts[1], (keys().pool(), "96".into()));
        // The node, still in epoch 0, learns it was fenced; a second fence does nothing.
        let step = plan_for(Op::Report { sold: 1 }, 4, view(96, Some(after)));
        assert_eq!(step, Step::Done(Outcome::Fenced { epoch: 1 }));
        let again = fence(&keys(), "n1", 0, &view(96, Some(after)));
        assert_eq!(again, FenceStep::Done(Fenced::Already { epoch: 1 }));
        // It rejoins in epoch 1 with what its journal shows sold in the window.
        let rejoin = Request {
            op: Op::Rejoin { sold: 3 },
            seq: 4,
            epoch: 1,
            window: 2,
        };
        let (rejoined, last) = committed(plan(&keys(), "n1", &rejoin, &view(96, Some(after))));
        assert_eq!(
            last,
            Last::Rejoined {
                sold: 3,
                returned: 1
            }
        );
        assert_eq!(rejoined.puts[1], (keys().pool(), "97".into()));
        let over = Request {
            op: Op::Rejoin { sold: 5 },
            ..rejoin
        };
        let refused = Outcome::Refused(Refusal::MoreThanInDoubt { in_doubt: 4 });
        let step = plan(&keys(), "n1", &over, &view(96, Some(after)));
        assert_eq!(step, Step::Done(refused));
    }

    #[test]
    fn a_used_sequence_number_with_another_request_is_refused_not_recognised() {
        let after = NodeRecord {
            granted: 10,
            seq: 1,
            last: Last::Acquired(10),
            ..NodeRecord::default()
        };
        let mismatch = Outcome::Refused(Refusal::Mismatch {
            applied: Last::Acquired(10),
        });
        for op in [Op::Report { sold: 3 }, Op::Acquire { want: 9 }] {
            assert_eq!(plan_for(op, 1, view(90, Some(after))), Step::Done(mismatch));
        }
        let zero = Outcome::Refused(Refusal::Zero);
        assert_eq!(
            plan_for(Op::Acquire { want: 0 }, 2, view(90, Some(after))),
            Step::Done(zero)
        );
        assert_eq!(
            fence(&keys(), "n9", 0, &view(90, None)),
            FenceStep::Done(Fenced::Nothing)
        );
        assert_eq!(
            fence(&keys(), "n1", 3, &view(90, Some(after))),
            FenceStep::Done(Fenced::Nothing)
        );
    }

    #[test]
    fn an_open_round_stops_acquires_and_takes_answers() {
        let held = NodeRecord {
            granted: 10,
            seq: 1,
            ..NodeRecord::default()
        };
        let open = Gather {
            round: 2,
            open: true,
            ..Gather::default()
        };
        let mut during = view(90, Some(held));
        during.gather = Read {
            value: Some(open),
            mod_revision: 11,
        };
        let step = plan_for(Op::Acquire { want: 5 }, 2, during);
        assert_eq!(step, Step::Done(Outcome::Gathering { round: 2 }));
        let answer = Op::Answer {
            round: 2,
            tickets: 10,
            waiting: 0,
        };
        let (plan, last) = committed(plan_for(answer, 2, during));
        assert_eq!(
            last,
            Last::Answered {
                round: 2,
                tickets: 10
            }
        );
        assert!(
            plan.compares.contains(&(keys().gather(), 11)),
            "guarded by the round"
        );
        let record = decode_record("k", plan.puts[0].1.as_bytes()).unwrap();
        assert_eq!((record.granted, record.answered), (0, 2));
        assert_eq!(plan.puts[1], (keys().pool(), "100".into()));
        // An answer to a round that closed meanwhile applies nothing.
        let closed = Gather {
            open: false,
            ..open
        };
        during.gather.value = Some(closed);
        let step = plan_for(answer, 2, during);
        assert_eq!(step, Step::Done(Outcome::RoundClosed { gather: closed }));
        // An acquire outside a round is guarded by the round's key (a round opened between its
        // read and its commit stops it).
        let (plan, _) = committed(plan_for(Op::Acquire { want: 5 }, 2, during));
        assert!(plan.compares.contains(&(keys().gather(), 11)));
    }

    #[test]
    fn an_uninitialised_cluster_is_refused() {
        let view = View::default();
        let step = plan_for(Op::Acquire { want: 1 }, 1, view);
        assert_eq!(step, Step::Done(Outcome::Refused(Refusal::NotInitialised)));
    }

    #[test]
    fn values_from_elsewhere_are_corrupt_not_panics() {
        assert_eq!(decode_count("k", b"12"), Ok(12));
        for bad in [&b""[..], b"-1", b"1e3", b" 1", b"99999999999999999999999"] {
            assert!(decode_count("k", bad).is_err(), "{bad:?}");
        }
        assert!(decode_record("k", b"{\"epoch\":1}").is_err());
        assert!(decode_record("k", b"[]").is_err());
        let record = NodeRecord {
            last: Last::Rejoined {
                sold: 1,
                returned: 2,
            },
            ..NodeRecord::default()
        };
        let text = encode_record(&record);
        assert_eq!(decode_record("k", text.as_bytes()), Ok(record));
    }

    #[test]
    fn the_invariant_sums_every_term() {
        let node = NodeRecord {
            granted: 3,
            in_doubt: 2,
            sold: 5,
            ..NodeRecord::default()
        };
        let mut ledger = Ledger {
            capacity: Some(20),
            pool: Some(10),
            nodes: vec![("a".into(), node)],
            gather: None,
        };
        assert_eq!(check(&ledger), Ok(()));
        ledger.pool = Some(11);
        let broken = Broken::Sum {
            capacity: 20,
            sum: Some(21),
        };
        assert_eq!(check(&ledger), Err(broken));
        ledger.pool = None;
        assert_eq!(check(&ledger), Err(Broken::Partial));
        assert_eq!(check(&Ledger::default()), Ok(()));
    }
}

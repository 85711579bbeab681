//! A node's side of the escrow (issue 18), without I/O: how many tickets it may sell now, and
//! which transaction it sends next (acquire ahead of need, report sales, give back what it does
//! not need, rejoin after a fence), with the journal discipline the ledger's safety rests on.
//!
//! The caller (the node's coordinator, and `tests/escrow.rs`) persists [`Lease::journal`] after
//! every call that changes it and before acting on the result: a request is journaled before
//! its first send (its sequence number with it), an outcome before the next request, a sale
//! before it is counted here, tickets given back before the transaction that returns them. After
//! a crash, [`Lease::recover`] takes the journal back and sends its request again under the
//! same number; the ledger tells whether it had been applied.
//!
//! Orders the lease cannot cover ([`Lease::order`]) go through the cluster-wide sold out of
//! `cluster::gather`: acquire; if the pool falls short, open (or join) a gather round, answer it
//! like every node, close it once all answered; then "sold out" if the round closed with fewer
//! tickets in the pool than the order asks (a round opened or joined after the order arrived,
//! so its close is too), else acquire again. An order for more than the bound a close recorded
//! is refused at once, with no message.
//!
//! Invariants: at most one request in flight; the node never holds more than its window of
//! sales unreported, counting only the window its record is known to hold (a larger configured
//! one counts once a transaction declaring it was applied); after "fenced" it sells nothing
//! until its rejoin was applied.

use std::time::Duration;

use super::gather::Opened;
use super::ledger::{Gather, Last, Op, Outcome, Request};

/// The smallest block a node asks for: below it, transactions cost more than the sales they
/// carry (one etcd transaction is a raft round and an fsync: about 2-4 ms on the test VM).
pub const BLOCK_MIN: u64 = 16;

/// The largest block a node asks for: a node holds at most a few of these, and a fence strands
/// only its window, but a dead node's lease is out of the sale until it is fenced.
pub const BLOCK_MAX: u64 = 65_536;

/// How long a block should last at the node's sales rate: long enough to ride out an etcd
/// leader election (about one election timeout, 1 s by default) without running dry.
pub const BLOCK_LASTS: Duration = Duration::from_secs(2);

/// Unreported sales are reported at least this often, so the pool's view (and a fence's doubt)
/// stays close to the truth even when a node sells slowly.
pub const REPORT_EVERY: Duration = Duration::from_millis(200);

/// After the pool answered "empty", the node asks again only after this long (another node may
/// give tickets back meanwhile); the cluster-wide sold out is the gather's job, not this wait's.
pub const EMPTY_RETRY: Duration = Duration::from_millis(250);

/// How often a node asks whether a round it waits on (or answered) can close: each ask is one
/// etcd read of every node record.
pub const ROUND_POLL: Duration = Duration::from_millis(20);

/// How long a node without an order leaves the close of a round it answered to a node whose
/// order waits in it, before it insists: that node asks every [`ROUND_POLL`], so one that has
/// not closed in this long is gone (crashed or cut off), and an open round blocks every refill.
pub const DEFER_MAX: Duration = Duration::from_millis(250);

/// The period over which the sales rate is measured (then averaged with the previous one).
pub const RATE_PERIOD: Duration = Duration::from_millis(250);

/// What a node's journal holds of its lease: all of it survives a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    /// The epoch the node last knew.
    pub epoch: u64,
    /// The sequence number of the last applied transaction it journaled.
    pub seq: u64,
    /// The window its record is known to hold (see `NodeRecord::window`).
    pub window: u64,
    /// Unsold tickets it holds.
    pub lease: u64,
    /// Sales not yet reported (by an applied report or rejoin).
    pub unreported: u64,
    /// The request in flight, written before its first send.
    pub intent: Option<Request>,
    /// It learnt it was fenced and has not rejoined yet.
    pub fenced: bool,
    /// The last gather round it answered.
    pub answered: u64,
}

impl Journal {
    /// `tickets` of the lease were sold: they leave the lease and wait to be reported. Also how
    /// a node's recovery counts sales its journals hold but its lease had not heard of (made
    /// within what the lease allowed, so never more than it holds); `None` if the lease holds
    /// fewer (a journal that says so is corrupt).
    pub fn count_sales(&mut self, tickets: u64) -> Option<()> {
        if !self.fenced {
            // A fence took the lease (but for the doubt, which holds these sales).
            self.lease = self.lease.checked_sub(tickets)?;
        }
        self.unreported = self.unreported.checked_add(tickets)?;
        Some(())
    }
}

/// What the node sends next: one of its own transactions, or a step of a gather round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// A transaction on its record (journaled as the intent).
    Node(Request),
    /// Open a gather round, or join the open one (`cluster::gather::open`; not a node
    /// transaction: a retry after a lost reply joins the round it opened).
    Open,
}

/// A reply to a [`Call`], or what the node saw of the gather round, as the node's coordinator
/// takes it (`stock/escrow.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The outcome of [`Call::Node`].
    Outcome(Outcome),
    /// The result of [`Call::Open`].
    Opened(Opened),
    /// The gather round as read or watched (not a reply: no call is answered by it).
    Observed(Gather),
}

/// The answer to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderAnswer {
    /// Sell it now ([`Lease::sold`]).
    Sell,
    /// Sold out: fewer tickets than asked exist (the bound or a round's close says so).
    SoldOut,
    /// Not yet: the lease works on it; ask again after the next outcome.
    Wait,
}

/// Where an order the lease cannot cover stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Acquire what is missing.
    Acquire,
    /// The pool fell short: open or join a round.
    Open,
    /// Wait for this round (opened or joined after the order arrived) to close.
    Round(u64),
    /// Answered sold out (until the caller takes it).
    SoldOut,
}

/// An order the lease cannot cover yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Need {
    /// The caller's name for the order: a new order never inherits another's progress.
    id: u64,
    /// Tickets asked for.
    qty: u64,
    /// Where it stands.
    stage: Stage,
}

/// A node's lease.
#[derive(Clone, Debug)]
pub struct Lease {
    /// What the journal holds.
    journal: Journal,
    /// The window this life is configured with.
    configured: u64,
    /// Sales per second, averaged over periods of [`RATE_PERIOD`].
    rate_per_s: f64,
    /// Sales in the current rate period, and when it began.
    period: (u64, Duration),
    /// When sales were last reported (or the lease began).
    reported_at: Duration,
    /// No acquire before this time (the pool was empty).
    quiet_until: Duration,
    /// Give everything back and report everything (shutdown).
    draining: bool,
    /// The gather round as last seen (read, watched, or told by an outcome).
    gather: Gather,
    /// The order it works on.
    need: Option<Need>,
    /// No close is asked before this time (the last ask found a node silent).
    close_after: Duration,
    /// Since when its closes (without an order) were deferred to another node's, in this round.
    deferred_since: Option<(u64, Duration)>,
    /// Tickets of the lease out with the node's shards (`stock/escrow.rs`): a return gives back
    /// only the others; giving these back takes them from the shards first.
    placed: u64,
}

impl Lease {
    /// A node that never held a lease, configured with `window` (at least 1).
    pub fn new(window: u64, now: Duration) -> Lease {
        Lease::recover(Journal::default(), window, now)
    }

    /// The lease as the journal left it, in a life configured with `window`.
    pub fn recover(journal: Journal, window: u64, now: Duration) -> Lease {
        assert!(window >= 1, "a window of 0 could never sell");
        Lease {
            journal,
            configured: window,
            rate_per_s: 0.0,
            period: (0, now),
            reported_at: now,
            quiet_until: now,
            draining: false,
            gather: Gather::default(),
            need: None,
            close_after: now,
            deferred_since: None,
            placed: 0,
        }
    }

    /// What to persist.
    pub fn journal(&self) -> Journal {
        self.journal
    }

    /// The window that counts now: the configured one, but no more than the record holds.
    fn window(&self) -> u64 {
        self.configured.min(self.journal.window)
    }

    /// How many tickets the node may sell now.
    pub fn sellable(&self) -> u64 {
        let journal = &self.journal;
        if journal.fenced {
            return 0;
        }
        let room = self.window().saturating_sub(journal.unreported);
        journal.lease.min(room)
    }

    /// The node sold `tickets` (durably); at most [`Lease::sellable`].
    pub fn sold(&mut self, tickets: u64, now: Duration) {
        assert!(
            tickets <= self.sellable(),
            "sold past the lease or the window"
        );
        self.count(tickets, now);
    }

    /// Counts `tickets` sold into the sales rate.
    fn measure(&mut self, tickets: u64, now: Duration) {
        self.period.0 += tickets;
        let elapsed = now.saturating_sub(self.period.1);
        if elapsed >= RATE_PERIOD {
            let measured = self.period.0 as f64 / elapsed.as_secs_f64();
            self.rate_per_s = (self.rate_per_s + measured) / 2.0;
            self.period = (0, now);
        }
    }

    /// The node's shards sold `tickets` (durably), of tickets the lease had let them hold: within
    /// the window when they got them, though perhaps not within [`Lease::sellable`] now (once
    /// fenced: sales made before the node learnt it, which the fence kept in doubt and the
    /// rejoin reports; or after a restart with a smaller window, which counts only for what is
    /// placed from then on).
    pub fn count(&mut self, tickets: u64, now: Duration) {
        self.journal
            .count_sales(tickets)
            .expect("the shards sell only tickets the lease holds");
        if !self.journal.fenced {
            self.measure(tickets, now);
        }
    }

    /// How many of its tickets the node's shards hold (placed, not known sold): a return
    /// leaves them be.
    pub fn set_placed(&mut self, placed: u64) {
        self.placed = placed;
    }

    /// Whether the next call needs the tickets the shards hold ([`Lease::set_placed`]): an
    /// answer to a round or a drain's return gives back everything, and a rejoin counts every
    /// sale; the node takes them all back from its shards first, so that what it gives back is
    /// unsold and the rejoin's count is final.
    pub fn gives_back(&self, now: Duration) -> bool {
        if self.journal.intent.is_some() {
            return false;
        }
        match self.decide(now) {
            Some(Op::Answer { .. } | Op::Rejoin { .. }) => true,
            Some(Op::Return { tickets }) => {
                tickets > self.journal.lease.saturating_sub(self.placed)
            }
            _ => false,
        }
    }

    /// The block to ask for at the current rate.
    pub fn block(&self) -> u64 {
        let want = (self.rate_per_s * BLOCK_LASTS.as_secs_f64()).ceil() as u64;
        want.clamp(BLOCK_MIN, BLOCK_MAX)
    }

    /// From now on, give everything back and report everything; the order in progress, if any,
    /// is dropped (its client gets a 503 from the node).
    pub fn drain(&mut self) {
        self.draining = true;
        self.need = None;
    }

    /// Whether nothing is held, unreported or in flight.
    pub fn settled(&self) -> bool {
        let journal = &self.journal;
        journal.lease == 0 && journal.unreported == 0 && journal.intent.is_none() && !journal.fenced
    }

    /// The gather round as the node now sees it (its watch on the gather key, or a read).
    /// Rounds only move forward: an older view is ignored.
    pub fn observe(&mut self, gather: Gather) {
        let newer = (gather.round, !gather.open) > (self.gather.round, !self.gather.open);
        if newer {
            self.gather = gather;
        }
    }

    /// The gather round as last seen.
    pub fn gather(&self) -> Gather {
        self.gather
    }

    /// Order `id` for `qty` tickets (at most the configured window: a node configured with a
    /// smaller window than its largest order could never sell it). Ask again with the same id
    /// after each outcome while it says `Wait`; one order at a time: another id starts afresh
    /// (the earlier one was answered elsewhere, or abandoned), never inheriting its progress.
    pub fn order(&mut self, id: u64, qty: u64) -> OrderAnswer {
        assert!(
            qty >= 1 && qty <= self.configured,
            "an order within the window"
        );
        if self.need.is_some_and(|need| need.id != id) {
            self.need = None;
        }
        if self.gather.at_most.is_some_and(|at_most| qty > at_most) {
            self.need = None;
            return OrderAnswer::SoldOut;
        }
        if self.sellable() >= qty {
            self.need = None;
            return OrderAnswer::Sell;
        }
        match self.need {
            Some(Need {
                stage: Stage::SoldOut,
                ..
            }) => {
                self.need = None;
                OrderAnswer::SoldOut
            }
            Some(_) => OrderAnswer::Wait,
            None => {
                let stage = Stage::Acquire;
                self.need = Some(Need { id, qty, stage });
                OrderAnswer::Wait
            }
        }
    }

    /// The order in progress is abandoned (answered 503 by the node, or its client left).
    pub fn cancel(&mut self) {
        self.need = None;
    }

    /// The call to make now: the request in flight (again), a new one (journaled here), or a
    /// step of a gather round.
    pub fn next(&mut self, now: Duration) -> Option<Call> {
        if let Some(request) = self.journal.intent {
            return Some(Call::Node(request));
        }
        if let Some(op) = self.decide(now) {
            return Some(Call::Node(self.send(op)));
        }
        let gather = self.gather;
        let Some(need) = self.need else {
            // A round this node answered closes when any node asks; nobody may be waiting on
            // it any more (the opener's order went away), so every node that answered asks.
            let answered = gather.open && self.journal.answered >= gather.round;
            if !answered || now < self.close_after {
                return None;
            }
            let round = gather.round;
            let insist = self
                .deferred_since
                .is_some_and(|(r, since)| r == round && now.saturating_sub(since) >= DEFER_MAX);
            let close = Op::Close {
                round,
                want: 0,
                insist,
            };
            return Some(Call::Node(self.send(close)));
        };
        match need.stage {
            // Enough held, but the window too small: as the record holds it (a larger
            // configured one is declared by any transaction: a report, of nothing if need be),
            // or full (a report, sent by `decide` once anything is unreported).
            Stage::Acquire if self.journal.lease >= need.qty => {
                if self.window() < need.qty {
                    let sold = self.journal.unreported;
                    return Some(Call::Node(self.send(Op::Report { sold })));
                }
                None
            }
            // The ledger says whether a round is open (a view of one may be stale): it answers
            // "gathering" then, and the order joins the round.
            Stage::Acquire => {
                let missing = need.qty.saturating_sub(self.journal.lease);
                let want = missing.max(self.block());
                Some(Call::Node(self.send(Op::Acquire { want })))
            }
            Stage::Open => Some(Call::Open),
            Stage::Round(round) if now >= self.close_after => {
                let want = need.qty.saturating_sub(self.journal.lease);
                let close = Op::Close {
                    round,
                    want,
                    insist: false,
                };
                Some(Call::Node(self.send(close)))
            }
            Stage::Round(_) | Stage::SoldOut => None,
        }
    }

    /// Journals `op` as the request in flight.
    fn send(&mut self, op: Op) -> Request {
        if let Op::Return { tickets } | Op::Answer { tickets, .. } = op {
            // Given up before the request leaves.
            self.journal.lease -= tickets;
        }
        let request = Request {
            op,
            seq: self.journal.seq + 1,
            epoch: self.journal.epoch,
            window: self.configured,
        };
        self.journal.intent = Some(request);
        request
    }

    fn set_stage(&mut self, stage: Stage) {
        if let Some(need) = &mut self.need {
            need.stage = stage;
        }
    }

    /// Takes `reply` (a call's result, or the round as seen) at `now`.
    pub fn take(&mut self, reply: Reply, now: Duration) {
        match reply {
            Reply::Outcome(outcome) => self.outcome(outcome, now),
            Reply::Opened(opened) => self.opened(opened),
            Reply::Observed(gather) => self.observe(gather),
        }
    }

    /// The result of [`Call::Open`].
    pub fn opened(&mut self, opened: Opened) {
        let (Opened::Started { round } | Opened::Joined { round }) = opened;
        self.observe(Gather {
            round,
            open: true,
            ..self.gather
        });
        if self.need.is_some_and(|n| n.stage == Stage::Open) {
            self.set_stage(Stage::Round(round));
        }
    }

    /// The order's stage after round `round` closed with `pool_at_close` tickets in the pool
    /// (every unsold ticket outside doubt): sold out if it asks for more, else it acquires (or
    /// sells, if the close gave it its tickets). Only for the round it waits on: one opened or
    /// joined after it arrived.
    fn after_close(&mut self, round: u64, pool_at_close: u64) {
        let Some(need) = self.need else { return };
        if need.stage != Stage::Round(round) {
            return;
        }
        if need.qty > pool_at_close {
            self.set_stage(Stage::SoldOut);
        } else {
            self.set_stage(Stage::Acquire);
        }
    }

    /// What an applied transaction did to the lease.
    fn applied(&mut self, last: Last, now: Duration) {
        let journal = &mut self.journal;
        match last {
            Last::Acquired(tickets) => {
                journal.lease += tickets;
                let lease = journal.lease;
                if self.need.is_some_and(|n| n.qty > lease) {
                    self.set_stage(Stage::Open);
                }
            }
            Last::Reported(sold) => {
                journal.unreported -= sold;
                self.reported_at = now;
            }
            Last::Returned(_) => {}
            Last::Answered { round, .. } => journal.answered = round,
            Last::Closed {
                round,
                took,
                pool_at_close,
                at_most,
            } => {
                journal.lease += took;
                journal.answered = journal.answered.max(round);
                let closed = Gather {
                    round,
                    open: false,
                    pool_at_close,
                    at_most,
                };
                self.observe(closed);
                self.after_close(round, pool_at_close);
            }
            Last::Rejoined { sold, .. } => {
                assert_eq!(sold, journal.unreported, "a rejoin reports every sale");
                journal.unreported = 0;
                journal.fenced = false;
                self.reported_at = now;
            }
            Last::None | Last::WrittenOff => panic!("no request of a node has this result"),
        }
    }

    fn decide(&self, now: Duration) -> Option<Op> {
        let journal = &self.journal;
        if journal.fenced {
            let sold = journal.unreported;
            return Some(Op::Rejoin { sold });
        }
        let gather = self.gather;
        if gather.open && journal.answered < gather.round {
            let (round, tickets) = (gather.round, journal.lease);
            // What its waiting order lacks once the lease is given back: all of it (none for an
            // order already answered sold out, which only waits for its caller).
            let waiting = self
                .need
                .filter(|need| need.stage != Stage::SoldOut)
                .map_or(0, |need| need.qty);
            return Some(Op::Answer {
                round,
                tickets,
                waiting,
            });
        }
        let unreported = journal.unreported;
        let window_half_full = unreported * 2 >= self.window();
        let due = now.saturating_sub(self.reported_at) >= REPORT_EVERY;
        // An order waiting only for room in the window.
        let order_blocked = self.need.is_some_and(|n| journal.lease >= n.qty);
        if unreported > 0 && (window_half_full || due || self.draining || order_blocked) {
            return Some(Op::Report { sold: unreported });
        }
        let block = self.block();
        if self.draining {
            return (journal.lease > 0).then_some(Op::Return {
                tickets: journal.lease,
            });
        }
        // Acquire when half a block is left (about a second ahead), or to declare a larger
        // configured window to the record.
        let low = journal.lease < block.div_ceil(2) || self.configured > journal.window;
        if low && now >= self.quiet_until && !gather.open && self.need.is_none() {
            return Some(Op::Acquire { want: block });
        }
        // Hold at most three blocks: the rest sells faster elsewhere (but tickets out with the
        // node's shards, which they may be selling now).
        let high = block.saturating_mul(3);
        if journal.lease > high && !gather.open {
            let unplaced = journal.lease.saturating_sub(self.placed);
            let tickets = (journal.lease - block).min(unplaced);
            if tickets > 0 {
                return Some(Op::Return { tickets });
            }
        }
        None
    }

    /// The outcome of the request in flight (journal it before the next request).
    pub fn outcome(&mut self, outcome: Outcome, now: Duration) {
        let request = self
            .journal
            .intent
            .take()
            .expect("an outcome answers a request");
        let journal = &mut self.journal;
        match outcome {
            Outcome::Applied(last) => {
                self.journal.window = match last {
                    Last::Rejoined { .. } => request.window,
                    _ => self.journal.window.max(request.window),
                };
                self.journal.seq = request.seq;
                self.applied(last, now);
            }
            Outcome::Empty => {
                self.quiet_until = now + EMPTY_RETRY;
                self.set_stage(Stage::Open);
            }
            Outcome::Gathering { round } => {
                self.observe(Gather {
                    round,
                    open: true,
                    ..self.gather
                });
                self.set_stage(Stage::Open);
            }
            Outcome::RoundClosed { gather } => {
                // Not applied, and no earlier try can be: what it gave up is its own again.
                if let Op::Answer { tickets, .. } | Op::Return { tickets } = request.op {
                    journal.lease += tickets;
                }
                self.observe(gather);
                if let Op::Close { round, .. } = request.op {
                    if gather.round == round {
                        // Another node closed the round this order waited on.
                        self.after_close(round, gather.pool_at_close);
                    } else {
                        self.set_stage(Stage::Acquire);
                    }
                }
            }
            Outcome::Silent => self.close_after = now + ROUND_POLL,
            Outcome::Deferred => {
                self.close_after = now + ROUND_POLL;
                if let Op::Close { round, .. } = request.op {
                    let same = self.deferred_since.is_some_and(|(r, _)| r == round);
                    if !same {
                        self.deferred_since = Some((round, now));
                    }
                }
            }
            Outcome::Fenced { epoch } => {
                // The fence took the lease back (but for the doubt): sell nothing until rejoined.
                journal.epoch = epoch;
                journal.lease = 0;
                journal.fenced = true;
            }
            Outcome::Refused(refusal) => {
                // The journal and the ledger disagree: a bug, or two processes with one id.
                panic!("the ledger refused {request:?}: {refusal:?}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::ZERO;

    /// The request of a node call.
    fn node(call: Option<Call>) -> Request {
        match call {
            Some(Call::Node(request)) => request,
            other => panic!("expected a node request, got {other:?}"),
        }
    }

    fn applied(lease: &mut Lease, last: Last, now: Duration) {
        lease.outcome(Outcome::Applied(last), now);
    }

    #[test]
    fn a_new_node_acquires_a_block_and_sells_within_its_window() {
        let mut lease = Lease::new(4, T0);
        assert_eq!(lease.sellable(), 0);
        let request = node(lease.next(T0));
        assert_eq!(request.op, Op::Acquire { want: BLOCK_MIN });
        assert_eq!((request.seq, request.window), (1, 4));
        assert_eq!(
            lease.next(T0),
            Some(Call::Node(request)),
            "the same request until its outcome"
        );
        applied(&mut lease, Last::Acquired(BLOCK_MIN), T0);
        assert_eq!(lease.sellable(), 4, "the window, not the lease, limits");
        lease.sold(2, T0);
        let report = node(lease.next(T0));
        assert_eq!((report.op, report.seq), (Op::Report { sold: 2 }, 2));
        lease.sold(2, T0);
        assert_eq!(lease.sellable(), 0, "four unreported: the window is full");
        applied(&mut lease, Last::Reported(2), T0);
        assert_eq!(lease.sellable(), 2);
    }

    #[test]
    fn a_larger_window_counts_only_once_the_record_holds_it() {
        let journal = Journal {
            window: 2,
            lease: 100,
            seq: 7,
            ..Journal::default()
        };
        let mut lease = Lease::recover(journal, 10, T0);
        assert_eq!(lease.sellable(), 2);
        let request = node(lease.next(T0));
        assert!(matches!(request.op, Op::Acquire { .. }), "{request:?}");
        assert_eq!(request.window, 10);
        applied(&mut lease, Last::Acquired(BLOCK_MIN), T0);
        assert_eq!(lease.sellable(), 10);
    }

    #[test]
    fn a_fenced_node_sells_nothing_until_it_rejoined() {
        let mut lease = Lease::new(4, T0);
        lease.next(T0);
        applied(&mut lease, Last::Acquired(BLOCK_MIN), T0);
        lease.sold(3, T0);
        lease.next(T0);
        lease.outcome(Outcome::Fenced { epoch: 1 }, T0);
        assert_eq!(lease.sellable(), 0);
        let rejoin = node(lease.next(T0));
        assert_eq!((rejoin.op, rejoin.epoch), (Op::Rejoin { sold: 3 }, 1));
        let rejoined = Last::Rejoined {
            sold: 3,
            returned: 1,
        };
        applied(&mut lease, rejoined, T0);
        assert_eq!(lease.journal().lease, 0);
        assert!(!lease.journal().fenced);
        assert!(matches!(node(lease.next(T0)).op, Op::Acquire { .. }));
    }

    #[test]
    fn blocks_follow_the_sales_rate_and_a_surplus_goes_back() {
        let mut lease = Lease::new(1_000, T0);
        lease.next(T0);
        applied(&mut lease, Last::Acquired(12_000), T0);
        // 400 sales in each of four 250 ms periods: 1,600 a second.
        for step in 1..=4u64 {
            let now = RATE_PERIOD * step as u32;
            lease.sold(400, now);
            lease.next(now);
            applied(&mut lease, Last::Reported(400), now);
        }
        let block = lease.block();
        assert!((2_000..=3_200).contains(&block), "{block}");
        let now = RATE_PERIOD * 5;
        let request = node(lease.next(now));
        let held = 12_000 - 1_600;
        let surplus = Op::Return {
            tickets: held - block,
        };
        assert_eq!(request.op, surplus, "more than three blocks held");
        assert_eq!(lease.journal().lease, block, "given up before it leaves");
    }

    #[test]
    fn an_empty_pool_waits_before_asking_again_and_a_drain_gives_everything_back() {
        let mut lease = Lease::new(4, T0);
        lease.next(T0);
        lease.outcome(Outcome::Empty, T0);
        assert_eq!(lease.next(T0), None);
        assert!(lease.next(EMPTY_RETRY).is_some());
        applied(&mut lease, Last::Acquired(5), EMPTY_RETRY);
        lease.sold(1, EMPTY_RETRY);
        lease.drain();
        let report = node(lease.next(EMPTY_RETRY));
        assert_eq!(report.op, Op::Report { sold: 1 });
        applied(&mut lease, Last::Reported(1), EMPTY_RETRY);
        let back = node(lease.next(EMPTY_RETRY));
        assert_eq!(back.op, Op::Return { tickets: 4 });
        applied(&mut lease, Last::Returned(4), EMPTY_RETRY);
        assert!(lease.settled());
        assert_eq!(lease.next(EMPTY_RETRY), None);
    }

    #[test]
    fn an_order_the_pool_cannot_cover_waits_for_a_round_then_is_sold_out() {
        let mut lease = Lease::new(4, T0);
        assert_eq!(lease.order(1, 3), OrderAnswer::Wait);
        let acquire = node(lease.next(T0));
        assert_eq!(acquire.op, Op::Acquire { want: BLOCK_MIN });
        applied(&mut lease, Last::Acquired(2), T0);
        assert_eq!(
            lease.order(1, 3),
            OrderAnswer::Wait,
            "2 of 3: the pool fell short"
        );
        assert_eq!(lease.next(T0), Some(Call::Open));
        lease.opened(Opened::Joined { round: 4 });
        // In the round, the node answers like every node, then asks for the close.
        let answer = node(lease.next(T0));
        let tickets = 2;
        let waiting = 3;
        assert_eq!(
            answer.op,
            Op::Answer {
                round: 4,
                tickets,
                waiting
            }
        );
        assert_eq!(lease.sellable(), 0, "given up before it leaves");
        applied(&mut lease, Last::Answered { round: 4, tickets }, T0);
        let close = node(lease.next(T0));
        let (round, want, insist) = (4, 3, false);
        assert_eq!(
            close.op,
            Op::Close {
                round,
                want,
                insist
            }
        );
        lease.outcome(Outcome::Silent, T0);
        assert_eq!(lease.order(1, 3), OrderAnswer::Wait);
        assert_eq!(lease.next(T0), None, "the next ask waits ROUND_POLL");
        assert_eq!(
            node(lease.next(ROUND_POLL)),
            close,
            "the same number, not used"
        );
        let closed = Gather {
            round: 4,
            open: false,
            pool_at_close: 2,
            at_most: Some(5),
        };
        let mut abandoned = lease.clone();
        let last = Last::Closed {
            round: 4,
            took: 0,
            pool_at_close: 2,
            at_most: Some(5),
        };
        applied(&mut lease, last, ROUND_POLL);
        assert_eq!(lease.gather(), closed);
        assert_eq!(
            lease.order(1, 3),
            OrderAnswer::SoldOut,
            "3 > 2 in the pool at the close"
        );
        // Had order 1 been abandoned, order 2 would not inherit its answer.
        applied(&mut abandoned, last, ROUND_POLL);
        assert_eq!(abandoned.order(2, 3), OrderAnswer::Wait);
        let retry = node(abandoned.next(ROUND_POLL));
        assert_eq!(retry.op, Op::Acquire { want: BLOCK_MIN });
        // Past the bound, any node refuses at once, with no call at all.
        let bound = Gather {
            round: 5,
            at_most: Some(2),
            ..closed
        };
        lease.observe(bound);
        assert_eq!(lease.order(3, 3), OrderAnswer::SoldOut);
    }

    #[test]
    fn a_close_the_order_did_not_wait_on_decides_nothing_and_a_close_serves_its_order() {
        let mut lease = Lease::new(4, T0);
        lease.next(T0);
        applied(&mut lease, Last::Acquired(1), T0);
        assert_eq!(lease.order(1, 3), OrderAnswer::Wait);
        // The order waits to open a round: a close it did not wait on (seen by the watch)
        // does not answer it.
        let stale = Gather {
            round: 1,
            open: false,
            pool_at_close: 0,
            at_most: Some(9),
        };
        lease.observe(stale);
        assert_eq!(lease.order(1, 3), OrderAnswer::Wait);
        let acquire = node(lease.next(T0));
        assert!(matches!(acquire.op, Op::Acquire { .. }), "{acquire:?}");
        lease.outcome(Outcome::Empty, T0);
        assert_eq!(lease.next(T0), Some(Call::Open));
        lease.opened(Opened::Started { round: 2 });
        let answer = node(lease.next(T0));
        let (round, tickets, waiting) = (2, 1, 3);
        assert_eq!(
            answer.op,
            Op::Answer {
                round,
                tickets,
                waiting
            }
        );
        let answered = Last::Answered {
            round: 2,
            tickets: 1,
        };
        applied(&mut lease, answered, T0);
        let close = node(lease.next(T0));
        let (round, want, insist) = (2, 3, false);
        assert_eq!(
            close.op,
            Op::Close {
                round,
                want,
                insist
            }
        );
        let last = Last::Closed {
            round: 2,
            took: 3,
            pool_at_close: 7,
            at_most: Some(7),
        };
        applied(&mut lease, last, T0);
        assert_eq!(
            lease.order(1, 3),
            OrderAnswer::Sell,
            "the close took its tickets"
        );
    }

    #[test]
    fn an_order_past_the_window_the_record_holds_declares_the_configured_one() {
        let journal = Journal {
            window: 3,
            lease: 10,
            seq: 4,
            ..Journal::default()
        };
        let mut lease = Lease::recover(journal, 8, T0);
        assert_eq!(
            lease.order(1, 5),
            OrderAnswer::Wait,
            "3 may be sold until 8 is declared"
        );
        let declare = node(lease.next(T0));
        assert_eq!((declare.op, declare.window), (Op::Report { sold: 0 }, 8));
        applied(&mut lease, Last::Reported(0), T0);
        assert_eq!(lease.order(1, 5), OrderAnswer::Sell);
    }

    #[test]
    fn a_node_without_an_order_insists_on_closing_once_the_waiter_is_gone() {
        let mut lease = Lease::new(4, T0);
        lease.observe(Gather {
            round: 1,
            open: true,
            ..Gather::default()
        });
        let answer = node(lease.next(T0));
        assert!(
            matches!(answer.op, Op::Answer { waiting: 0, .. }),
            "{answer:?}"
        );
        let answered = Last::Answered {
            round: 1,
            tickets: 0,
        };
        applied(&mut lease, answered, T0);
        let close = node(lease.next(T0));
        assert!(
            matches!(
                close.op,
                Op::Close {
                    want: 0,
                    insist: false,
                    ..
                }
            ),
            "{close:?}"
        );
        lease.outcome(Outcome::Deferred, T0);
        let mut now = T0;
        while now < DEFER_MAX {
            now += ROUND_POLL;
            let close = node(lease.next(now));
            let insist = now >= DEFER_MAX;
            assert!(
                matches!(close.op, Op::Close { insist: i, .. } if i == insist),
                "{now:?}"
            );
            if !insist {
                lease.outcome(Outcome::Deferred, now);
            }
        }
    }
}

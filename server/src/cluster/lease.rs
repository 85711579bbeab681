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
//! Invariants: at most one request in flight; the node never holds more than its window of
//! sales unreported, counting only the window its record is known to hold (a larger configured
//! one counts once a transaction declaring it was applied); after "fenced" it sells nothing
//! until its rejoin was applied.

use std::time::Duration;

use super::ledger::{Last, Op, Outcome, Request};

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
    /// Give everything back and report everything (shutdown, or the sold-out gather).
    draining: bool,
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
        self.journal.lease -= tickets;
        self.journal.unreported += tickets;
        self.period.0 += tickets;
        let elapsed = now.saturating_sub(self.period.1);
        if elapsed >= RATE_PERIOD {
            let measured = self.period.0 as f64 / elapsed.as_secs_f64();
            self.rate_per_s = (self.rate_per_s + measured) / 2.0;
            self.period = (0, now);
        }
    }

    /// The block to ask for at the current rate.
    pub fn block(&self) -> u64 {
        let want = (self.rate_per_s * BLOCK_LASTS.as_secs_f64()).ceil() as u64;
        want.clamp(BLOCK_MIN, BLOCK_MAX)
    }

    /// From now on, give everything back and report everything.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Whether nothing is held, unreported or in flight.
    pub fn settled(&self) -> bool {
        let journal = &self.journal;
        journal.lease == 0 && journal.unreported == 0 && journal.intent.is_none() && !journal.fenced
    }

    /// The request to send now: the one in flight (again), or a new one, journaled here.
    pub fn next(&mut self, now: Duration) -> Option<Request> {
        if let Some(request) = self.journal.intent {
            return Some(request);
        }
        let op = self.decide(now)?;
        if let Op::Return { tickets } = op {
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
        Some(request)
    }

    fn decide(&self, now: Duration) -> Option<Op> {
        let journal = &self.journal;
        if journal.fenced {
            let sold = journal.unreported;
            return Some(Op::Rejoin { sold });
        }
        let unreported = journal.unreported;
        let window_half_full = unreported * 2 >= self.window();
        let due = now.saturating_sub(self.reported_at) >= REPORT_EVERY;
        if unreported > 0 && (window_half_full || due || self.draining) {
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
        if low && now >= self.quiet_until {
            return Some(Op::Acquire { want: block });
        }
        // Hold at most three blocks: the rest sells faster elsewhere.
        let high = block.saturating_mul(3);
        if journal.lease > high {
            let tickets = journal.lease - block;
            return Some(Op::Return { tickets });
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
                match last {
                    Last::Acquired(tickets) => journal.lease += tickets,
                    Last::Reported(sold) => {
                        journal.unreported -= sold;
                        self.reported_at = now;
                    }
                    Last::Returned(_) => {}
                    Last::Rejoined { sold, .. } => {
                        assert_eq!(sold, journal.unreported, "a rejoin reports every sale");
                        journal.unreported = 0;
                        journal.fenced = false;
                        self.reported_at = now;
                    }
                    Last::None => panic!("an applied request has a result"),
                }
                journal.window = match last {
                    Last::Rejoined { .. } => request.window,
                    _ => journal.window.max(request.window),
                };
                journal.seq = request.seq;
            }
            Outcome::Empty => self.quiet_until = now + EMPTY_RETRY,
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

    fn applied(lease: &mut Lease, last: Last, now: Duration) {
        lease.outcome(Outcome::Applied(last), now);
    }

    #[test]
    fn a_new_node_acquires_a_block_and_sells_within_its_window() {
        let mut lease = Lease::new(4, T0);
        assert_eq!(lease.sellable(), 0);
        let request = lease.next(T0).unwrap();
        assert_eq!(request.op, Op::Acquire { want: BLOCK_MIN });
        assert_eq!((request.seq, request.window), (1, 4));
        assert_eq!(
            lease.next(T0),
            Some(request),
            "the same request until its outcome"
        );
        applied(&mut lease, Last::Acquired(BLOCK_MIN), T0);
        assert_eq!(lease.sellable(), 4, "the window, not the lease, limits");
        lease.sold(2, T0);
        let report = lease.next(T0).unwrap();
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
        let request = lease.next(T0).unwrap();
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
        let rejoin = lease.next(T0).unwrap();
        assert_eq!((rejoin.op, rejoin.epoch), (Op::Rejoin { sold: 3 }, 1));
        let rejoined = Last::Rejoined {
            sold: 3,
            returned: 1,
        };
        applied(&mut lease, rejoined, T0);
        assert_eq!(lease.journal().lease, 0);
        assert!(!lease.journal().fenced);
        assert!(matches!(lease.next(T0).unwrap().op, Op::Acquire { .. }));
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
        let request = lease.next(now).unwrap();
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
        let report = lease.next(EMPTY_RETRY).unwrap();
        assert_eq!(report.op, Op::Report { sold: 1 });
        applied(&mut lease, Last::Reported(1), EMPTY_RETRY);
        let back = lease.next(EMPTY_RETRY).unwrap();
        assert_eq!(back.op, Op::Return { tickets: 4 });
        applied(&mut lease, Last::Returned(4), EMPTY_RETRY);
        assert!(lease.settled());
        assert_eq!(lease.next(EMPTY_RETRY), None);
    }
}

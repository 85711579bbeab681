//! The shard core: everything a shard decides, sans-IO. The uring driver, the glommio fallback
//! and the deterministic simulation all drive this one type, so they cannot differ in a rule.
//!
//! # Events in
//! - input parsed on a connection ([`ShardCore::input`]), or the answer a waiting connection
//!   was given ([`ShardCore::resume`]); a connection closed ([`ShardCore::closed`]);
//! - a message from a peer ([`ShardCore::on_message`]);
//! - a journal batch written ([`ShardCore::write_done`]) or failed ([`ShardCore::write_failed`]);
//! - a forwarded request answered ([`ShardCore::on_upstream`]);
//! - the clock ([`ShardCore::set_date`]), a stop ([`ShardCore::stop`]), the transport finished
//!   ([`ShardCore::transport_finished`]).
//!
//! # Effects out (each taken by the glue that carries it out)
//! - per connection: whether its output may leave now ([`Release`] in a [`Step`], or asked again
//!   with [`ShardCore::release`]), and [`ConnEvent`]s: an answer for the order it waits for, or a
//!   hint that its held output's fate changed;
//! - mail for peers, each let out only once what its sender journaled before it is durable
//!   ([`ShardCore::next_mail`]);
//! - journal batches to write ([`ShardCore::next_batch`]);
//! - requests for the vacancy service ([`ShardCore::take_forwards`]);
//! - reports of this slice's size ([`ShardCore::report_due`]).
//!
//! # Invariants
//! - A response that reports an order (sold or not) leaves only once everything the shard had
//!   journaled when it was made is durable, and never once the journal failed: a sale is never
//!   acknowledged before it is on disk, and a "sold out" never rests on sales a crash could undo.
//! - A message that carries tickets or states a fact a receiver may tell a client (`Taken`,
//!   `Decided`) leaves only once everything its sender journaled before it is durable; mail leaves
//!   in the order it was posted; after a journal failure such mail is dropped (its tickets stay in
//!   transit until a restart reconciles them from the journals).
//! - Once a journal failed (here or on a peer) every order still waiting is answered at once
//!   (503: its outcome is unknown) and new orders are refused.
//! - A shard leaves only when the coordinator says every shard is done (`Exit`): a peer that
//!   stopped serving still answers the coordinator's `Take`s, so no gather waits on a shard that
//!   is gone.

mod cluster;
mod mail;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use proto_http::HttpDate;

use crate::app::board::{Board, JournalState, Snapshot, Stock};
use crate::app::cors::Cors;
use crate::app::idempotency::{self, KeyAnswer, KeyMail, Keys};
use crate::app::rate_limit::{self, RateLimit};
use crate::app::routes::{Answer, App, Forwarding};
use crate::cluster::lease::{Call, Lease};
use crate::config::Mode;
use crate::durability::commits::{CommitStats, Commits};
use crate::durability::journal::{Batch, JournalError, Seq, Tail};
use crate::forward::upstream::{Outcome, Request, RequestId};
use crate::net::connection::{ConnLimits, Connection, Next};
use crate::request_id::XRequestId;
use crate::stock::rebalance::{Msg, Node, OrderId, Outbox, COORDINATOR};
use crate::stock::slice::Sale;

/// A connection as the core knows it: a number the transport chose, unique while the connection
/// lives (the uring transport packs slot and generation into it).
pub type ConnKey = u64;

/// Keys from here up are the admin listener's connections (`net/admin.rs`), numbered by it: the
/// answers they wait for are kept for it to take ([`ShardCore::take_admin_answer`]) rather than
/// told as [`ConnEvent`]s, which the public transport (the uring driver) takes for its own
/// connections. No public key reaches it (a uring key would need 2^31 reuses of one slot).
pub const ADMIN_KEYS: ConnKey = 1 << 63;

/// A cluster node's drain ends this long before the shards must have left (the stop's grace),
/// so that the coordinator's `Exit` reaches them first: a few of their 20 ms looks at whether
/// they may leave (`shard::tasks::LEAVE_POLL`).
pub const EXIT_MARGIN: Duration = Duration::from_millis(200);

/// Hashes the core's own numbers (connection keys, order ids) with one multiplication: they are
/// ours, not a peer's, so SipHash's flooding resistance buys nothing, and a held response costs a
/// map insert and a lookup on the request path.
#[derive(Clone, Copy, Debug, Default)]
pub struct NumberHasher(u64);

impl Hasher for NumberHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits, which hashbrown uses, depend on every input bit.
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by the core's own numbers.
type NumberMap<V> = HashMap<u64, V, BuildHasherDefault<NumberHasher>>;

/// A message between shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// "My slice now holds this many tickets." Superseded by the next one, so it may be dropped
    /// when the peer's queue is full; the reporter then sends it again.
    Report {
        /// The sender's available tickets.
        available: u64,
    },
    /// A message of the stock protocol: never dropped, and sent in order.
    Stock(Msg),
    /// "I have stopped serving": sent to the coordinator, which lets every shard leave once all
    /// are done.
    Done,
    /// The coordinator to every peer: every shard is done and no operation is left; leave.
    Exit,
    /// "My journal failed": every shard stops selling, so that no order waits on a shard that
    /// can no longer record what it gives.
    Halt,
    /// A keyed request for the key's owner shard, or the owner's answer (`Idempotency-Key`).
    Keyed(KeyMail),
}

impl Message {
    /// Whether the receiver may act on it in a way that presumes the sender's changes so far
    /// are durable (see [`Msg::must_be_durable`]).
    pub fn must_be_durable(&self) -> bool {
        match self {
            Message::Stock(msg) => msg.must_be_durable(),
            // An order's answer (first or replayed): the owner's journal must hold it first.
            // A 409, 422 or 503 reports nothing journaled, and must leave a halted shard too.
            Message::Keyed(KeyMail::Answer {
                answer: KeyAnswer::Done { .. },
                ..
            }) => true,
            _ => false,
        }
    }
}

/// Whether a connection's output may leave now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Send it.
    Now,
    /// Keep it (and anything produced after it): a [`ConnEvent::Recheck`] for this connection
    /// comes once that may have changed.
    Held,
    /// Never send it: the journal failed before what it reports became durable. Close the
    /// connection without the held output.
    Drop,
}

/// What one step on a connection produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// What the connection does next.
    pub next: Next,
    /// Whether its output may leave.
    pub release: Release,
    /// The step answered at least one request (for service times and head deadlines).
    pub answered: bool,
}

/// Something the core tells one connection after the step that made it wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// The order the connection waits for has its answer: call [`ShardCore::resume`].
    Answer(Answer),
    /// Its held output may leave now, or must be dropped: ask [`ShardCore::release`]. Only a
    /// hint (it may come late, or twice); the answer to `release` is what counts.
    Recheck,
}

/// Where the shard is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Serving (possibly draining: responses close their connections).
    Serving,
    /// The transport has no connection left; waiting for the coordinator's `Exit` (the
    /// coordinator: for every peer's `Done` and its last operation).
    Leaving,
    /// May exit once its mail is out and its journal settled.
    Left,
}

/// What the shard is, fixed at start-up.
#[derive(Clone, Copy, Debug)]
pub struct CoreConfig {
    /// Which endpoints the process serves.
    pub mode: Mode,
    /// This shard.
    pub shard: usize,
    /// All shards.
    pub shards: usize,
    /// The stock the shards share at start (this shard takes its allotment).
    pub stock: u64,
    /// The largest `qty` one order may ask for.
    pub max_order_qty: u64,
    /// Ticket mode: `CACHE_TTL_SECONDS` of the vacancy's stock (`None` in the selling modes).
    pub forward_cache_ttl: Option<Duration>,
    /// Connection limits.
    pub limits: ConnLimits,
    /// Which web origins may read responses.
    pub cors: &'static Cors,
    /// Where every shard publishes its numbers for `/metrics` (made once at start-up).
    pub board: &'static Board,
    /// `/openapi.json` and `/docs`, built once at start-up.
    pub docs: &'static crate::app::docs::Docs,
    /// The per-client rate limit (`Settings::OFF` for none).
    pub rate_limit: rate_limit::Settings,
    /// How long and how many `Idempotency-Key` answers the shard keeps.
    pub idempotency: idempotency::Settings,
    /// A cluster node's lease (`--cluster-etcd`): the coordinator holds it (`stock/escrow.rs`),
    /// and `stock` is what the node's journal holds (tickets its lease placed).
    pub cluster: Option<CoreCluster>,
}

/// What a cluster node's coordinator needs for its lease.
#[derive(Clone, Copy, Debug)]
pub struct CoreCluster {
    /// `--cluster-window`: the most sales the node may hold unreported.
    pub window: u64,
    /// The instant the lease's clock counts from.
    pub origin: Instant,
}

/// One shard's decisions (see the module doc).
#[derive(Debug)]
pub struct ShardCore {
    /// The request handler: routes' state, the node and its outbox, counters.
    pub app: App,
    /// The journal's pure side (`None`: `--durability none`, or the ticket tier).
    journal: Option<Commits>,
    /// Connection limits.
    limits: ConnLimits,
    /// The cached `Date`.
    date: HttpDate,
    /// A stop was asked: responses close their connections.
    draining: bool,
    /// Mail in posting order, each with the sequence number that must be durable first.
    mail: VecDeque<(usize, Message, Option<Seq>)>,
    /// Mail taken by the glue and not yet reported delivered.
    mail_sending: usize,
    /// Tickets in mail dropped because the journal failed (in transit until a restart
    /// reconciles them from the journals).
    tickets_dropped: u64,
    /// Orders (or forwarded requests) waiting for their answer: the connection to answer.
    waiting: NumberMap<ConnKey>,
    /// Connections whose output waits for this sequence number to be durable.
    holds: NumberMap<Seq>,
    /// Effects for connections, in order.
    conn_events: VecDeque<(ConnKey, ConnEvent)>,
    /// The last report sent to each peer (`None`: none yet, or it was not delivered).
    reported: Vec<Option<u64>>,
    /// Peers that said `Done` (coordinator).
    peers_done: usize,
    /// Where the shard is in its life.
    life: Life,
    /// Answers for the admin listener's waiting connections (keys from [`ADMIN_KEYS`]).
    admin_answers: Vec<(ConnKey, Answer)>,
    /// Calls of a cluster node's lease, in order, each with the sequence number that must be
    /// durable before it leaves (its request is journaled).
    cluster_calls: VecDeque<(Call, Option<Seq>)>,
    /// When the shard must have left, once its transport finished (the stop's grace).
    leave_by: Option<Instant>,
}

impl ShardCore {
    /// A shard's core; `tail` is its opened journal, if it journals.
    pub fn new(config: CoreConfig, tail: Option<Tail>) -> ShardCore {
        let forwarding = config.forward_cache_ttl.map(Forwarding::new);
        // The ticket tier holds no stock: it asks the vacancy service.
        let stock = if forwarding.is_some() {
            0
        } else {
            config.stock
        };
        let sales_closed = tail.as_ref().is_some_and(|t| t.ledger().sales_closed());
        let mut core = ShardCore {
            app: App {
                mode: config.mode,
                shard: config.shard,
                shards: config.shards,
                node: Node::new(config.shard, config.shards, stock),
                outbox: Outbox::default(),
                max_order_qty: config.max_order_qty,
                counters: Default::default(),
                forwarding,
                halted: false,
                docs: config.docs,
                cors: config.cors,
                board: config.board,
                scraped: Vec::with_capacity(config.board.shards()),
                request_ids: crate::request_id::Generator::new(config.shard),
                rate_limit: RateLimit::new(config.rate_limit),
                keys: Keys::new(config.idempotency),
            },
            journal: tail.map(Commits::new),
            limits: config.limits,
            date: HttpDate::now(),
            draining: false,
            mail: VecDeque::new(),
            mail_sending: 0,
            tickets_dropped: 0,
            waiting: NumberMap::default(),
            holds: NumberMap::default(),
            conn_events: VecDeque::new(),
            reported: vec![None; config.shards],
            peers_done: 0,
            life: Life::Serving,
            admin_answers: Vec::new(),
            cluster_calls: VecDeque::new(),
            leave_by: None,
        };
        core.app.node.start_closed(sales_closed);
        if let Some(cluster) = config.cluster.filter(|_| config.shard == COORDINATOR) {
            let recovered = core.tail().and_then(|t| t.ledger().lease().copied());
            let lease = match recovered {
                Some(state) => Lease::recover(state.journal, cluster.window, Duration::ZERO),
                None => Lease::new(cluster.window, Duration::ZERO),
            };
            core.app.node.start_escrow(lease, stock, cluster.origin);
        }
        core
    }

    /// This shard's index.
    pub fn shard(&self) -> usize {
        self.app.shard
    }

    /// Feeds received bytes to a connection; its responses are appended to `out`.
    pub fn input(
        &mut self,
        key: ConnKey,
        conn: &mut Connection,
        bytes: &[u8],
        out: &mut Vec<u8>,
        now: Instant,
    ) -> Step {
        self.conn_step(key, now, |app, limits, date, draining| {
            conn.on_input(bytes, app, limits, date, draining, out)
        })
    }

    /// Answers the order `conn` waited for with `answer` (from a [`ConnEvent::Answer`]), then
    /// what arrived behind it.
    pub fn resume(
        &mut self,
        key: ConnKey,
        conn: &mut Connection,
        answer: Answer,
        out: &mut Vec<u8>,
        now: Instant,
    ) -> Step {
        self.conn_step(key, now, |app, limits, date, draining| {
            conn.resume(answer, app, limits, date, draining, out)
        })
    }

    /// Runs one step of a connection's state machine (`run`) and what follows it.
    fn conn_step(
        &mut self,
        key: ConnKey,
        now: Instant,
        run: impl FnOnce(&mut App, &ConnLimits, &HttpDate, bool) -> Next,
    ) -> Step {
        self.app.outbox.denied.clear();
        let before = self.progress();
        let next = run(&mut self.app, &self.limits, &self.date, self.draining);
        self.after_conn_step(key, next, before, now)
    }

    /// What follows a step on a connection: journal its changes, note the order it waits for,
    /// decide whether its output may leave.
    fn after_conn_step(
        &mut self,
        key: ConnKey,
        next: Next,
        before: (u64, u64),
        now: Instant,
    ) -> Step {
        let after = self.progress();
        let answered = after.0 != before.0;
        let ordered = after.1 != before.1;
        // Registered first: a single shard decides an escalated order within the same step.
        if let Next::Wait(order) = next {
            self.waiting.insert(order, key);
        }
        let step_seq = self.after_step(now);
        // A response that reports an order waits for everything journaled so far: a sale for
        // its own record, a refusal for the sales that emptied the stock.
        let hold = match (&self.journal, ordered) {
            (Some(journal), true) => Some(journal.appended()),
            _ => step_seq,
        };
        if let Some(seq) = hold {
            self.hold(key, seq);
        }
        Step {
            next,
            release: self.release(key),
            answered,
        }
    }

    /// Requests answered, and orders answered with a sale or a refusal, so far: what a step did
    /// is the difference.
    fn progress(&self) -> (u64, u64) {
        let c = &self.app.counters;
        // A replayed keyed answer reports an order too: it waits for the journal like one.
        let replays = self.app.keys.counters.replays;
        (c.requests, c.orders_sold + c.orders_insufficient + replays)
    }

    /// Holds `key`'s output until `seq` is durable (or longer, if it already waits for more).
    fn hold(&mut self, key: ConnKey, seq: Seq) {
        let Some(journal) = &self.journal else {
            return;
        };
        if journal.failed().is_none() && journal.durable() >= seq {
            return;
        }
        let held = self.holds.entry(key).or_insert(seq);
        *held = (*held).max(seq);
    }

    /// Whether `key`'s output may leave now (and everything it produced before).
    pub fn release(&mut self, key: ConnKey) -> Release {
        if self.holds.is_empty() {
            return Release::Now;
        }
        let Some(&seq) = self.holds.get(&key) else {
            return Release::Now;
        };
        let journal = self.journal.as_ref().expect("holds need a journal");
        if journal.failed().is_some() {
            self.holds.remove(&key);
            Release::Drop
        } else if journal.durable() >= seq {
            self.holds.remove(&key);
            Release::Now
        } else {
            Release::Held
        }
    }

    /// The connection is gone: nothing more is told to it (an order it waited for is still
    /// decided; only its answer is lost, as when a client disconnects before its response).
    pub fn closed(&mut self, key: ConnKey) {
        self.app.counters.connections_closed += 1;
        self.holds.remove(&key);
        if key >= ADMIN_KEYS {
            // Its operation still runs to the end; no answer is kept for a connection that left.
            self.admin_answers.retain(|&(k, _)| k != key);
            self.waiting.retain(|_, &mut k| k != key);
        }
    }

    /// The next thing to tell a connection.
    pub fn next_conn_event(&mut self) -> Option<(ConnKey, ConnEvent)> {
        self.conn_events.pop_front()
    }

    /// Whether connections have something to be told.
    pub fn has_conn_events(&self) -> bool {
        !self.conn_events.is_empty()
    }

    /// Journals what the last step changed, moves its messages to the mail and its decided
    /// orders to their connections. Returns the sequence number of the step's last change.
    fn after_step(&mut self, now: Instant) -> Option<Seq> {
        self.maybe_drain(now);
        if self.lease_runs() {
            self.app.node.escrow_tick(now, &mut self.app.outbox);
        }
        self.app.keyed_outcomes();
        let outbox = &mut self.app.outbox;
        let seq = match &mut self.journal {
            // After a failure what this step answers is never released (`release` drops it).
            Some(journal) => journal.append(&mut outbox.changes, now),
            None => {
                outbox.changes.clear();
                None
            }
        };
        // Key mail first: a keyed order's key goes ahead of its `Escalate`, and the
        // coordinator's answer ahead of its `Decided` (one queue, in posting order).
        if !self.app.keys.mail.is_empty() {
            let mut mail = std::mem::take(&mut self.app.keys.mail);
            for (to, m) in mail.drain(..) {
                self.post(to, Message::Keyed(m));
            }
            self.app.keys.mail = mail;
        }
        if !self.app.outbox.messages.is_empty() {
            let messages = std::mem::take(&mut self.app.outbox.messages);
            for &(to, msg) in &messages {
                self.post(to, Message::Stock(msg));
            }
            self.app.outbox.messages = messages;
            self.app.outbox.messages.clear();
        }
        if !self.app.outbox.calls.is_empty() {
            // Each leaves once its request (journaled in this step) is durable.
            let appended = self.journal.as_ref().map(Commits::appended);
            for call in self.app.outbox.calls.drain(..) {
                self.cluster_calls.push_back((call, appended));
            }
        }
        if !self.app.outbox.operated.is_empty() {
            let appended = self.journal.as_ref().map(Commits::appended);
            for (order, op) in std::mem::take(&mut self.app.outbox.operated) {
                self.answer(order, Answer::Operated(op), appended);
            }
        }
        if !self.app.outbox.outcomes.is_empty() {
            let outcomes = std::mem::take(&mut self.app.outbox.outcomes);
            let appended = self.journal.as_ref().map(Commits::appended);
            for &(order, sale) in &outcomes {
                self.decided(order, sale, appended);
            }
            self.app.outbox.outcomes = outcomes;
            self.app.outbox.outcomes.clear();
        }
        self.maybe_exit();
        seq
    }

    /// An escalated order of this shard is decided: its connection is told, and its response
    /// waits for everything journaled now (the coordinator's own sale is among it).
    fn decided(&mut self, order: OrderId, sale: Sale, appended: Option<Seq>) {
        self.answer(order, Answer::Decided(sale), appended);
    }

    /// A request of this shard waiting on `order` has its answer (an order decided, an
    /// operator's operation done); its response waits for everything journaled now.
    fn answer(&mut self, order: OrderId, answer: Answer, appended: Option<Seq>) {
        let Some(key) = self.waiting.remove(&order) else {
            return; // the connection is gone, or the order was answered "halted" already
        };
        if let Some(seq) = appended {
            self.hold(key, seq);
        }
        let answer = if self.app.halted {
            Answer::Halted
        } else {
            answer
        };
        self.tell(key, answer);
    }

    /// Tells a waiting connection its answer: a public one as a [`ConnEvent`], an admin one
    /// kept for [`ShardCore::take_admin_answer`].
    fn tell(&mut self, key: ConnKey, answer: Answer) {
        if key >= ADMIN_KEYS {
            self.admin_answers.push((key, answer));
        } else {
            self.conn_events.push_back((key, ConnEvent::Answer(answer)));
        }
    }

    /// The answer an admin connection waits for, once it came (then call
    /// [`ShardCore::resume`]); whether its output may leave is [`ShardCore::release`]'s.
    pub fn take_admin_answer(&mut self, key: ConnKey) -> Option<Answer> {
        let at = self.admin_answers.iter().position(|&(k, _)| k == key)?;
        Some(self.admin_answers.swap_remove(at).1)
    }

    /// Applies a message from peer `from`.
    pub fn on_message(&mut self, from: usize, message: Message, now: Instant) {
        // What the coordinator refused in the last event, kept until the next for the
        // simulation's premature-sold-out check.
        self.app.outbox.denied.clear();
        match message {
            Message::Report { available } => self.app.node.report(from, available),
            Message::Stock(msg) => self.app.node.on_message(from, msg, &mut self.app.outbox),
            Message::Done => self.peers_done += 1,
            Message::Exit => self.life = Life::Left,
            Message::Keyed(KeyMail::Ask {
                id,
                key,
                fingerprint,
            }) => self.app.key_ask(from, id, key, fingerprint),
            Message::Keyed(KeyMail::Escalated {
                order,
                key,
                fingerprint,
            }) => self.app.key_escalated(from, order, key, fingerprint),
            Message::Keyed(KeyMail::Decided { order, record }) => {
                self.app.key_decided(order, record);
            }
            Message::Keyed(KeyMail::Answer { id, answer }) => {
                if let Some(conn) = self.waiting.remove(&id) {
                    let answer = ConnEvent::Answer(Answer::Keyed(answer));
                    self.conn_events.push_back((conn, answer));
                }
            }
            Message::Halt => {
                if !self.app.halted {
                    tracing::error!(
                        peer = from,
                        "a peer's journal failed: this shard stops selling too"
                    );
                    self.stop_selling();
                }
            }
        }
        if self.life == Life::Serving {
            self.app.node.maybe_refill(&mut self.app.outbox);
        }
        self.after_step(now);
    }

    /// The vacancy service answered forwarded request `id` (ticket mode).
    pub fn on_upstream(&mut self, id: RequestId, outcome: Outcome) {
        if let Some(key) = self.waiting.remove(&id) {
            self.conn_events
                .push_back((key, ConnEvent::Answer(Answer::Upstream(outcome))));
        }
    }

    /// Moves the requests queued for the vacancy service into `into` (ticket mode).
    pub fn take_forwards(&mut self, into: &mut Vec<(RequestId, Request, XRequestId)>) {
        if let Some(forwarding) = self.app.forwarding.as_mut() {
            into.append(&mut forwarding.requests);
        }
    }

    /// Requests wait for the vacancy service.
    pub fn has_forwards(&self) -> bool {
        self.app
            .forwarding
            .as_ref()
            .is_some_and(|f| !f.requests.is_empty())
    }

    /// A journal failed (this shard's or a peer's): orders answer 503 from now on, and the ones
    /// waiting are answered now (their outcome is unknown), rather than wait for a gather that a
    /// failed shard may never finish.
    fn stop_selling(&mut self) {
        self.app.halted = true;
        self.app.keys.halted();
        let waiting: Vec<_> = self.waiting.drain().collect();
        for (_, key) in waiting {
            self.tell(key, Answer::Halted);
        }
    }

    /// The next journal batch to write: when one may start and the writer is `idle` (it has
    /// nothing else to do now) or the oldest change waited too long.
    pub fn next_batch(&mut self, now: Instant, idle: bool) -> Option<Batch> {
        // A compaction keeps the live idempotency keys behind its snapshot.
        let keys = &self.app.keys;
        self.journal
            .as_mut()?
            .next_batch_keeping(now, idle, || keys.live())
    }

    /// Takes back the idempotency keys this shard's journal kept (oldest first), at start-up.
    pub fn restore_keys(&mut self, keys: &[crate::durability::journal::KeyRecord]) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.app.keys.restore(keys, now_ms);
    }

    /// A batch could be handed out now (the writer may want waking).
    pub fn wants_write(&self) -> bool {
        self.journal.as_ref().is_some_and(Commits::can_start)
    }

    /// A batch was handed out and is not yet reported.
    pub fn write_out(&self) -> bool {
        self.journal.as_ref().is_some_and(Commits::batch_out)
    }

    /// `batch` is durable: held output and mail that waited for it may go.
    pub fn write_done(&mut self, batch: &Batch, now: Instant) {
        let journal = self.journal.as_mut().expect("a batch needs a journal");
        journal.done(batch, now);
        let durable = journal.durable();
        for (&key, &seq) in &self.holds {
            if seq <= durable {
                self.conn_events.push_back((key, ConnEvent::Recheck));
            }
        }
        self.maybe_exit();
    }

    /// The journal failed for good: stop selling here and on every peer, drop every held
    /// output, answer every waiting order.
    pub fn write_failed(&mut self, error: JournalError) {
        tracing::error!(
            shard = self.app.shard,
            %error,
            "the journal failed: this shard stops selling; /ready answers 503 until a restart \
             (the kernel may have dropped the data, so the write is not retried)"
        );
        let journal = self.journal.as_mut().expect("a batch needs a journal");
        journal.fail(error);
        self.stop_selling();
        for &key in self.holds.keys() {
            self.conn_events.push_back((key, ConnEvent::Recheck));
        }
        let (me, shards) = (self.app.shard, self.app.shards);
        for peer in (0..shards).filter(|&p| p != me) {
            self.post(peer, Message::Halt);
        }
        self.maybe_exit();
    }

    /// The journal's permanent failure, if it failed.
    pub fn journal_failed(&self) -> Option<&JournalError> {
        self.journal.as_ref().and_then(Commits::failed)
    }

    /// What the journal's commits did (`None` without a journal).
    pub fn commit_stats(&self) -> Option<CommitStats> {
        self.journal.as_ref().map(Commits::stats)
    }

    /// This shard's numbers for `/metrics` (the glue adds service times), into `into`.
    pub fn snapshot(&self, into: &mut Snapshot) {
        let node = &self.app.node;
        into.counters = self.app.counters;
        into.moves = *node.moves();
        into.stock = Stock {
            available: node.slice().available(),
            sold: node.slice().sold(),
            bound: node.bound(),
        };
        into.halted = self.app.halted;
        into.journal = self.journal.as_ref().map(|journal| {
            let stats = journal.stats();
            JournalState {
                failed: journal.failed().is_some(),
                durable: journal.durable(),
                appended: journal.appended(),
                commits: stats.commits,
                changes: stats.changes,
                commit_time: stats.commit_time,
                durable_bytes: journal.tail().durable_bytes(),
            }
        });
    }

    /// The journal's tail (for checks).
    pub fn tail(&self) -> Option<&Tail> {
        self.journal.as_ref().map(Commits::tail)
    }

    /// The cached `Date` moved on.
    pub fn set_date(&mut self, date: HttpDate) {
        self.date = date;
    }

    /// The cached `Date`.
    pub fn date(&self) -> HttpDate {
        self.date
    }

    /// A stop was asked: every response from now on closes its connection.
    pub fn stop(&mut self) {
        self.draining = true;
    }

    /// A stop was asked.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// The transport has no connection left: tell the coordinator (or, as the coordinator, wait
    /// for the peers), and keep answering peers until the coordinator's `Exit`, which must come
    /// by `leave_by` (the stop's grace: the shard exits then anyway).
    pub fn transport_finished(&mut self, now: Instant, leave_by: Instant) {
        if self.life != Life::Serving {
            return;
        }
        self.leave_by = Some(leave_by);
        self.draining = true;
        self.life = Life::Leaving;
        // A cluster node's orders waiting for its lease are answered now (503): the lease stops
        // with the coordinator's service.
        self.app.outbox.denied.clear();
        self.app.node.escrow_leaving(&mut self.app.outbox);
        self.after_step(now);
        if self.app.shard != COORDINATOR {
            self.post(COORDINATOR, Message::Done);
        }
        self.maybe_exit();
    }

    /// Whether a cluster node's lease acts now: while the coordinator serves, and while it drains
    /// once every shard stopped (see [`ShardCore::maybe_exit`]); never after a journal failure.
    fn lease_runs(&self) -> bool {
        !self.app.halted
            && (self.life == Life::Serving
                || (self.life == Life::Leaving && self.app.node.escrow_draining()))
    }

    /// The coordinator, every shard stopped and no operation left.
    fn all_stopped(&self) -> bool {
        self.app.shard == COORDINATOR
            && self.life == Life::Leaving
            && self.peers_done + 1 >= self.app.shards
            && !self.app.node.coordinating()
    }

    /// Every shard stopped: a cluster node's lease drains (once), driven by its replies and
    /// timers, until [`crate::stock::escrow::DRAIN_WAIT_MAX`] from now, and not past the time
    /// the shards must leave less [`EXIT_MARGIN`].
    fn maybe_drain(&mut self, now: Instant) {
        if self.all_stopped() && !self.app.halted && self.app.node.escrow_drain_pending() {
            let leave_by = self.leave_by.unwrap_or(now);
            let until = leave_by.checked_sub(EXIT_MARGIN).unwrap_or(now).max(now);
            self.app.node.escrow_drain(now, until, &mut self.app.outbox);
        }
    }

    /// Whether a cluster node's lease keeps the shards from leaving: its drain has not started
    /// yet, or runs (neither settled nor past its end). Never after a journal failure.
    fn lease_holds(&self) -> bool {
        !self.app.halted
            && (self.app.node.escrow_drain_pending() || self.app.node.escrow_draining())
    }

    /// The coordinator lets every shard leave once each is done and no operation is left. A
    /// cluster node's lease drains first (its placed tickets collected from the shards, which
    /// still answer, its sales reported, the rest given back; see [`ShardCore::maybe_drain`]):
    /// the shards leave once it settled or its time ran out (what is left stays journaled).
    fn maybe_exit(&mut self) {
        if self.all_stopped() && !self.lease_holds() {
            for peer in 1..self.app.shards {
                self.post(peer, Message::Exit);
            }
            self.life = Life::Left;
        }
    }

    /// The shard may exit: it left, its mail is out and its journal settled.
    pub fn finished(&self) -> bool {
        self.life == Life::Left
            && self.mail.is_empty()
            && self.mail_sending == 0
            && self.journal.as_ref().is_none_or(Commits::settled)
    }

    /// The shard stopped serving and waits to leave (reports and refills stop).
    pub fn leaving(&self) -> bool {
        self.life != Life::Serving
    }

    /// The coordinator let the shards leave (a cluster node's lease drained, or gave up).
    pub fn left(&self) -> bool {
        self.life == Life::Left
    }

    /// This slice's size, if `peer` has not been told it yet. Report a delivered report with
    /// [`ShardCore::report_sent`]; one that was dropped (a full queue) is offered again.
    pub fn report_due(&self, peer: usize) -> Option<u64> {
        let available = self.app.node.slice().available();
        (peer != self.app.shard && self.reported[peer] != Some(available)).then_some(available)
    }

    /// `peer` was told `available`.
    pub fn report_sent(&mut self, peer: usize, available: u64) {
        self.reported[peer] = Some(available);
    }
}

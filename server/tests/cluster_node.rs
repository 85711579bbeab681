//! A cluster node's shards under a seeded simulation (issue 18): the real shard cores, each
//! with its real journal on a memory disk, the coordinator holding the node's lease
//! (`stock/escrow.rs`), its calls carried out on the in-memory etcd store
//! (`cluster::memory::MemoryKv`) with replies lost at will, beside a peer node (a bare lease on
//! the same store) that sells, answers rounds and sometimes fences this node. Messages are
//! delivered, batches written, calls answered and the node crashed or stopped (restarting with
//! another shard count) in a seeded random order. A stop is graceful: no new order, each shard's
//! transport finishes once its clients are answered, the coordinator drains the lease, and the
//! node restarts on its journal once every shard left (a crash may cut the stop short).
//!
//! Checked at every step: the ledger's invariant; the node never holds more sales than its
//! record allows (`sold ≤ record.sold + granted + in_doubt`: unreported sales within the doubt a
//! fence keeps); no ticket is acknowledged that was not taken; and every "sold out" a client
//! reads was true at some moment since its order arrived (fewer tickets unsold, counting a
//! fence's doubt as sold, than it asked). At the end, with faults off, every waiting order is
//! answered and the node's journal and its record agree on every sale. After a stop whose drain
//! settled, the node's record holds nothing granted: every unsold ticket went back to the pool.
//!
//! `CLUSTER_NODE_STEPS` (default below) and `CLUSTER_NODE_SEED` choose the run.

mod support;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use proto_http::Limits;
use support::rng::Rng;
use ticketd::cluster::lease::{Call, Lease, Reply};
use ticketd::cluster::ledger::{self, FenceStep, Keys, NodeRecord};
use ticketd::cluster::memory::MemoryKv;
use ticketd::config::Mode;
use ticketd::durability::journal::{self, Batch, Crash, MemDisk, Store, Writer};
use ticketd::net::connection::{ConnLimits, Connection, Next};
use ticketd::shard::core::{
    ConnEvent, ConnKey, CoreCluster, CoreConfig, Message, Release, ShardCore, Step,
};
use ticketd::stock::rebalance::COORDINATOR;

/// Steps of the whole run in the suite.
/// The stop's grace a shard is given once its transport finished (`--shutdown-timeout-ms`'s
/// default).
const STOP_GRACE: Duration = Duration::from_secs(5);

const DEFAULT_STEPS: u64 = 150_000;

/// Steps per seed (then the settle phase).
const STEPS_PER_SEED: u64 = 1_500;

/// The node's id and its peer's.
const NODE: &str = "node-a";
const PEER: &str = "node-b";

/// Simulated time per step.
const STEP_TIME: Duration = Duration::from_millis(1);

/// Shard counts a life picks from.
const SHARD_COUNTS: [usize; 4] = [1, 2, 3, 4];

/// Steps of the settle phase at most (it ends sooner once every order is answered).
const SETTLE_STEPS_MAX: u64 = 200_000;

/// Steps the settle phase runs on after the last answer: some hundreds of milliseconds of
/// simulated time, for a census and a report.
const SETTLE_QUIET_STEPS: u64 = 400;

/// One shard of the node.
struct Shard {
    core: ShardCore,
    writer: Writer,
    staged: Option<Batch>,
}

/// A client with one order on it.
struct Client {
    shard: usize,
    conn: Connection,
    out: Vec<u8>,
    qty: u64,
    waiting: bool,
    /// The fewest tickets unsold (a fence's doubt counted as sold) since the order arrived.
    min_unsold: u64,
}

/// What the run reached (asserted above zero for the whole run).
#[derive(Debug, Default)]
struct Reach {
    sold: u64,
    sold_out: u64,
    calls: u64,
    replies_lost: u64,
    fences: u64,
    rejoins: u64,
    crashes: u64,
    rounds_closed: u64,
    collects: u64,
    unavailable: u64,
    /// Stops whose lease drained, and stops that left with the lease not settled (the drain's
    /// bound passed, or a fence it had to rejoin first did not clear in time).
    drained: u64,
    drains_cut: u64,
    /// Tickets granted to the node when a stop began that later drained.
    given_back: u64,
}

struct Sim {
    rng: Rng,
    steps: u64,
    origin: Instant,
    disk: MemDisk,
    keys: Keys,
    kv: MemoryKv,
    capacity: u64,
    window: u64,
    shards: Vec<Shard>,
    channels: Vec<Vec<VecDeque<Message>>>,
    clients: HashMap<ConnKey, Client>,
    next_key: ConnKey,
    /// Calls the coordinator handed out, not yet answered.
    calls: VecDeque<Call>,
    /// The node's sales of earlier lives (durable: what its journal recovered).
    sold_before: u64,
    /// Tickets acknowledged to the node's clients, over every life.
    acked: u64,
    /// The peer node: a bare lease, and what it sold.
    peer: Lease,
    peer_sold: u64,
    /// Faults (lost replies, fences, crashes) are off.
    calm: bool,
    /// The settle phase: faults off, every order to be answered by the ledger.
    settling: bool,
    /// The last 503 a client read.
    unavailable: String,
    /// A graceful stop is in progress: when each shard's transport finished (so it must leave
    /// by then plus the grace), if it did.
    stopping: Option<Vec<Option<Instant>>>,
    /// The stop in progress: a shard whose clients are answered finishes its transport with
    /// one chance in this many per step (1: at once; 2,000: about two seconds later, past the
    /// drain's bound, so the coordinator's grace caps it).
    patience: u64,
    /// The stop's grace: 5 s as the server's default, or a minute (the drain's own bound then
    /// always applies).
    grace: Duration,
    /// The stop in progress began with faults off.
    stop_calm: bool,
    /// Tickets granted to the node when the stop in progress began.
    granted_at_stop: u64,
    reach: Reach,
}

fn core_config(shard: usize, shards: usize, stock: u64, cluster: CoreCluster) -> CoreConfig {
    CoreConfig {
        mode: Mode::Monolith,
        shard,
        shards,
        stock,
        max_order_qty: 64,
        forward_cache_ttl: None,
        limits: ConnLimits {
            http: Limits::default(),
            headers_max: 32,
        },
        cors: ticketd::app::cors::Cors::off(),
        board: board(),
        docs: docs(),
        rate_limit: ticketd::app::rate_limit::Settings::OFF,
        idempotency: ticketd::app::idempotency::Settings::DEFAULT,
        cluster: Some(cluster),
    }
}

fn docs() -> &'static ticketd::app::docs::Docs {
    static DOCS: std::sync::OnceLock<&'static ticketd::app::docs::Docs> =
        std::sync::OnceLock::new();
    DOCS.get_or_init(|| ticketd::app::routes::docs(Mode::Monolith, 64))
}

fn board() -> &'static ticketd::app::board::Board {
    static BOARD: std::sync::OnceLock<&'static ticketd::app::board::Board> =
        std::sync::OnceLock::new();
    BOARD.get_or_init(|| ticketd::app::board::Board::leak(16))
}

fn purchase(qty: u64) -> Vec<u8> {
    let body = format!("{{\"qty\":{qty}}}");
    format!(
        "POST /api/v1/purchase HTTP/1.1\r\nHost: sim\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `Some(true)` sold, `Some(false)` sold out, `None` a 503.
fn read_response(bytes: &[u8]) -> Option<bool> {
    let text = String::from_utf8_lossy(bytes);
    match text.get(9..12).unwrap_or("") {
        "200" if text.contains("\"success\":true") => Some(true),
        "200" if text.contains("\"success\":false") => Some(false),
        "503" => None,
        _ => panic!("an order got an unexpected response: {text}"),
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let capacity = match rng.below(3) {
            0 => rng.below(20),
            1 => rng.below(300),
            _ => rng.below(5_000),
        };
        let window = [64, 100, 1_000][rng.below(3) as usize];
        let keys = Keys::new("sim").unwrap();
        let mut kv = MemoryKv::new();
        assert!(kv.txn(&ledger::init(&keys, capacity)));
        let peer_window = [1, 16, 500][rng.below(3) as usize];
        let mut sim = Sim {
            rng,
            steps: 0,
            origin: Instant::now(),
            disk: MemDisk::new(),
            keys,
            kv,
            capacity,
            window,
            shards: Vec::new(),
            channels: Vec::new(),
            clients: HashMap::new(),
            next_key: 0,
            calls: VecDeque::new(),
            sold_before: 0,
            acked: 0,
            peer: Lease::new(peer_window, Duration::ZERO),
            peer_sold: 0,
            calm: false,
            settling: false,
            unavailable: String::new(),
            stopping: None,
            patience: 1,
            grace: STOP_GRACE,
            stop_calm: false,
            granted_at_stop: 0,
            reach: Reach::default(),
        };
        let shards = SHARD_COUNTS[sim.rng.below(4) as usize];
        sim.start(shards);
        sim
    }

    fn now(&self) -> Instant {
        self.origin + STEP_TIME * u32::try_from(self.steps).unwrap_or(u32::MAX)
    }

    fn clock(&self) -> Duration {
        self.now() - self.origin
    }

    fn n(&self) -> usize {
        self.shards.len()
    }

    /// Opens the journal on the disk and starts every shard's core over it.
    fn start(&mut self, shards: usize) {
        let store = Store::Mem(self.disk.clone());
        let cluster = CoreCluster {
            window: self.window,
            origin: self.origin,
        };
        let (recovered, opened) = block_on(async {
            let recovered = journal::open(&store, shards, 0).await.expect("recovery");
            let mut opened = Vec::new();
            for (i, start) in recovered.shards.iter().enumerate() {
                let (writer, tail) = Writer::open(&store, start.clone(), 1 << 14)
                    .await
                    .expect("writer");
                let config = core_config(i, shards, recovered.available, cluster);
                opened.push(Shard {
                    core: ShardCore::new(config, Some(tail)),
                    writer,
                    staged: None,
                });
            }
            (recovered, opened)
        });
        self.sold_before = recovered.sold;
        self.stopping = None;
        self.shards = opened;
        self.channels = vec![vec![VecDeque::new(); shards]; shards];
        self.clients.clear();
        self.calls.clear();
    }

    fn record(&self) -> NodeRecord {
        let view = self.kv.view(&self.keys, NODE);
        view.node.value.unwrap_or_default()
    }

    /// The node's sales over every life (this life's, durable or not).
    fn node_sold(&self) -> u64 {
        self.sold_before
            + self
                .shards
                .iter()
                .map(|s| s.core.app.node.slice().sold())
                .sum::<u64>()
    }

    /// Tickets unsold anywhere, counting every fence's doubt as sold.
    fn unsold(&self) -> u64 {
        let doubt: u64 = self
            .kv
            .ledger(&self.keys)
            .nodes
            .iter()
            .map(|(_, r)| r.in_doubt)
            .sum();
        self.capacity
            .saturating_sub(self.node_sold() + self.peer_sold + doubt)
    }

    fn check(&mut self) {
        let ledger = self.kv.ledger(&self.keys);
        ledger::check(&ledger).expect("the ledger's invariant");
        let record = self.record();
        let sold = self.node_sold();
        assert!(
            sold <= record.sold + record.granted + record.in_doubt,
            "the node sold {sold}, its record allows {record:?}"
        );
        assert!(self.acked <= sold, "acknowledged {} of {sold}", self.acked);
        let escrow = self.shards[COORDINATOR].core.app.node.escrow();
        assert_eq!(escrow.map(|e| e.ticks_cut()), Some(0), "the lease looped");
        let unsold = self.unsold();
        for client in self.clients.values_mut() {
            client.min_unsold = client.min_unsold.min(unsold);
        }
    }

    fn order(&mut self) {
        let at = self.rng.below(self.n() as u64) as usize;
        let qty = if self.rng.below(10) == 0 {
            1 + self.rng.below(64)
        } else {
            1 + self.rng.below(3)
        };
        self.order_with(at, &purchase(qty), qty);
    }

    /// A client sends `request` (an order of `qty`) to shard `at`.
    fn order_with(&mut self, at: usize, request: &[u8], qty: u64) {
        self.next_key += 1;
        let key = self.next_key;
        let mut client = Client {
            shard: at,
            conn: Connection::default(),
            out: Vec::new(),
            qty,
            waiting: false,
            min_unsold: self.unsold(),
        };
        let now = self.now();
        let step = self.shards[at]
            .core
            .input(key, &mut client.conn, request, &mut client.out, now);
        self.clients.insert(key, client);
        self.carry_out(key, step);
    }

    fn carry_out(&mut self, key: ConnKey, step: Step) {
        let client = self.clients.get_mut(&key).expect("a live client");
        client.waiting = matches!(step.next, Next::Wait(_));
        self.apply_release(key, step.release);
    }

    fn apply_release(&mut self, key: ConnKey, release: Release) {
        let client = self.clients.get_mut(&key).expect("a live client");
        let at = client.shard;
        match release {
            Release::Held => return,
            Release::Drop => {}
            Release::Now if client.out.is_empty() => return,
            Release::Now => match read_response(&client.out) {
                Some(true) => {
                    self.acked += client.qty;
                    self.reach.sold += 1;
                }
                Some(false) => {
                    assert!(
                        client.min_unsold < client.qty,
                        "sold out for {} while at least {} were unsold since the order came",
                        client.qty,
                        client.min_unsold
                    );
                    self.reach.sold_out += 1;
                }
                None => {
                    // In the calm phase every order is settled by the ledger, none by the wait
                    // bound (but those a stop in progress answers 503).
                    assert!(
                        !self.settling || self.stopping.is_some(),
                        "an order answered 503 with no fault left"
                    );
                    self.reach.unavailable += 1;
                    self.unavailable = String::from_utf8_lossy(&client.out).into_owned();
                }
            },
        }
        self.clients.remove(&key);
        self.shards[at].core.closed(key);
    }

    /// Shard `at` tells its connections what changed.
    fn turn(&mut self, at: usize) {
        while let Some((key, event)) = self.shards[at].core.next_conn_event() {
            if !self.clients.contains_key(&key) {
                continue;
            }
            match event {
                ConnEvent::Recheck => {
                    let release = self.shards[at].core.release(key);
                    self.apply_release(key, release);
                }
                ConnEvent::Answer(answer) => {
                    let now = self.now();
                    let client = self.clients.get_mut(&key).expect("checked");
                    let step = self.shards[at].core.resume(
                        key,
                        &mut client.conn,
                        answer,
                        &mut client.out,
                        now,
                    );
                    self.carry_out(key, step);
                }
            }
        }
    }

    fn mail(&mut self, from: usize) {
        if let Some((to, message)) = self.shards[from].core.next_mail() {
            self.channels[from][to].push_back(message);
            self.shards[from].core.mail_sent();
        }
    }

    fn deliver(&mut self) {
        let busy: Vec<(usize, usize)> = (0..self.n())
            .flat_map(|f| (0..self.n()).map(move |t| (f, t)))
            .filter(|&(f, t)| !self.channels[f][t].is_empty())
            .collect();
        if busy.is_empty() {
            return;
        }
        let (from, to) = busy[self.rng.below(busy.len() as u64) as usize];
        let message = self.channels[from][to].pop_front().expect("busy");
        let now = self.now();
        self.shards[to].core.on_message(from, message, now);
    }

    fn report(&mut self, from: usize, to: usize) {
        if let Some(available) = self.shards[from].core.report_due(to) {
            self.channels[from][to].push_back(Message::Report { available });
            self.shards[from].core.report_sent(to, available);
        }
    }

    /// Shard `at` writes its next batch, if it has one.
    fn write(&mut self, at: usize) {
        let now = self.now();
        if self.shards[at].staged.is_none() {
            self.shards[at].staged = self.shards[at].core.next_batch(now, true);
        }
        let Some(batch) = self.shards[at].staged.take() else {
            return;
        };
        block_on(self.shards[at].writer.write(&batch)).expect("the memory disk writes");
        self.shards[at].core.write_done(&batch, now);
    }

    /// The coordinator hands out a call its journal holds.
    fn take_call(&mut self) {
        if let Some(call) = self.shards[COORDINATOR].core.next_cluster_call() {
            self.calls.push_back(call);
            self.reach.calls += 1;
        }
    }

    /// The oldest call in flight is carried out, and its reply told.
    fn answer_call(&mut self) {
        let Some(call) = self.calls.pop_front() else {
            return;
        };
        let lose = !self.calm && self.rng.below(5) == 0;
        self.reach.replies_lost += u64::from(lose);
        let reply = self.kv.call(&self.keys, NODE, call, lose);
        if let Reply::Outcome(ledger::Outcome::Applied(last)) = reply {
            match last {
                ledger::Last::Rejoined { .. } => self.reach.rejoins += 1,
                ledger::Last::Closed { .. } => self.reach.rounds_closed += 1,
                ledger::Last::Answered { .. } => self.reach.collects += 1,
                _ => {}
            }
        }
        let now = self.now();
        self.shards[COORDINATOR].core.cluster_reply(reply, now);
    }

    /// The node's watch on the gather key fires.
    fn observe(&mut self) {
        if let Some(gather) = self.kv.gather(&self.keys) {
            let now = self.now();
            self.shards[COORDINATOR]
                .core
                .cluster_reply(Reply::Observed(gather), now);
        }
    }

    /// The peer sells a little of its lease, and makes its next call.
    fn peer_step(&mut self) {
        let now = self.clock();
        if let Some(gather) = self.kv.gather(&self.keys) {
            self.peer.observe(gather);
        }
        let tickets = self.peer.sellable().min(1 + self.rng.below(3));
        if tickets > 0 && self.rng.below(2) == 0 {
            self.peer.sold(tickets, now);
            self.peer_sold += tickets;
        }
        if let Some(call) = self.peer.next(now) {
            let reply = self.kv.call(&self.keys, PEER, call, false);
            self.peer.take(reply, now);
        }
    }

    /// The peer fences this node (its heartbeats, not simulated here, stopped in its eyes).
    fn fence(&mut self) {
        let view = self.kv.view(&self.keys, NODE);
        let Some(record) = view.node.value else {
            return;
        };
        if let FenceStep::Commit { plan, .. } = ledger::fence(&self.keys, NODE, record.epoch, &view)
        {
            if self.kv.txn(&plan) {
                self.reach.fences += 1;
            }
        }
    }

    /// The node crashes (a call in flight may have been applied) and restarts.
    fn crash(&mut self) {
        self.reach.crashes += 1;
        self.exit(true);
    }

    /// The process ends, its disk `torn` (a crash) or not (a stop), and the node restarts on its
    /// journal with another shard count. A call the etcd thread had sent may still be applied
    /// (its intent is journaled: the next start sends it again).
    fn exit(&mut self, torn: bool) {
        if let Some(&call) = self.calls.front() {
            if self.rng.below(2) == 0 {
                self.kv.call(&self.keys, NODE, call, true);
            }
        }
        if torn {
            let crash = Crash {
                dir_ops_kept: self.rng.below(4) as usize,
                torn_bytes: self.rng.below(2 * 4096) as usize,
                sectors_seed: None,
            };
            self.disk = self.disk.crash(crash);
        }
        let shards = SHARD_COUNTS[self.rng.below(4) as usize];
        self.start(shards);
    }

    /// A graceful stop begins: every shard stops taking orders.
    fn stop(&mut self) {
        for shard in &mut self.shards {
            shard.core.stop();
        }
        self.stopping = Some(vec![None; self.n()]);
        self.granted_at_stop = self.record().granted;
        self.patience = [1, 1, 20, 2_000][self.rng.below(4) as usize];
        self.stop_calm = self.calm;
        self.grace = if self.calm || self.rng.below(2) == 0 {
            Duration::from_secs(60)
        } else {
            STOP_GRACE
        };
    }

    /// A stop goes on: a shard whose clients are all answered finishes its transport (now, or
    /// after a while: see `patience`); once every shard left (its journal settled), or a shard's
    /// grace ran out (the process exits then), the node restarts on its journal, untorn.
    fn stop_progress(&mut self) {
        let Some(mut finished) = self.stopping.take() else {
            return;
        };
        let now = self.now();
        for (at, done) in finished.iter_mut().enumerate() {
            if done.is_none()
                && !self.clients.values().any(|c| c.shard == at)
                && self.rng.below(self.patience) == 0
            {
                self.shards[at]
                    .core
                    .transport_finished(now, now + self.grace);
                *done = Some(now);
            }
        }
        let left =
            finished.iter().all(Option::is_some) && self.shards.iter().all(|s| s.core.finished());
        let out_of_time = finished.iter().flatten().any(|&at| now >= at + self.grace);
        self.stopping = Some(finished);
        if !left && !out_of_time {
            return;
        }
        let node = &self.shards[COORDINATOR].core.app.node;
        if self.stop_calm && self.grace > STOP_GRACE {
            // No fault and time enough: the drain settles.
            assert!(
                node.escrow_drained(),
                "a calm stop did not drain: {:?}, record {:?}",
                node.escrow(),
                self.record()
            );
        }
        if node.escrow_drained() {
            let record = self.record();
            assert_eq!(
                (record.granted, record.in_doubt),
                (0, 0),
                "a drained node's record still holds tickets: {record:?}"
            );
            self.reach.drained += 1;
            self.reach.given_back += self.granted_at_stop;
        } else {
            self.reach.drains_cut += 1;
        }
        self.exit(false);
    }

    fn step(&mut self) {
        self.steps += 1;
        let n = self.n() as u64;
        match self.rng.below(100) {
            0..=14 if self.stopping.is_none() => self.order(),
            15..=39 => self.deliver(),
            40..=49 => {
                let at = self.rng.below(n) as usize;
                self.mail(at);
            }
            50..=59 => {
                let at = self.rng.below(n) as usize;
                self.write(at);
            }
            60..=64 => {
                let (from, to) = (self.rng.below(n) as usize, self.rng.below(n) as usize);
                if from != to {
                    self.report(from, to);
                }
            }
            65..=69 => self.take_call(),
            70..=76 => self.answer_call(),
            77..=79 => self.observe(),
            80..=84 => {
                let now = self.now();
                self.shards[COORDINATOR].core.cluster_tick(now);
            }
            85..=91 => self.peer_step(),
            92 if !self.calm && self.rng.below(20) == 0 => self.fence(),
            93 if !self.calm && self.rng.below(40) == 0 => self.crash(),
            94 if self.stopping.is_none() && self.rng.below(40) == 0 => self.stop(),
            _ => {}
        }
        for at in 0..self.n() {
            self.turn(at);
        }
        self.stop_progress();
        self.check();
    }

    /// One step with faults off and every part moving: mail, writes, reports, calls and their
    /// replies, the round, the peer, the lease's timers; and, with `orders`, a new order now and
    /// then (never while a stop is in progress).
    fn step_calm(&mut self, orders: bool) {
        self.steps += 1;
        let now = self.now();
        if orders && self.stopping.is_none() && self.rng.below(4) == 0 {
            self.order();
        }
        for at in 0..self.n() {
            self.mail(at);
            self.write(at);
            for to in 0..self.n() {
                if to != at {
                    self.report(at, to);
                }
            }
        }
        self.deliver();
        self.take_call();
        self.answer_call();
        self.observe();
        self.peer_step();
        self.shards[COORDINATOR].core.cluster_tick(now);
        for at in 0..self.n() {
            self.turn(at);
        }
        self.stop_progress();
        self.check();
    }

    /// Faults off: everything runs until every order is answered.
    fn settle(&mut self) {
        self.calm = true;
        self.settling = true;
        let mut quiet = 0;
        for _ in 0..SETTLE_STEPS_MAX {
            // Past the last answer, long enough for a census and a report; a stop in progress
            // ends first (its lease counts the shards' last sales once its drain starts).
            if self.clients.is_empty() && self.calls.is_empty() && self.stopping.is_none() {
                quiet += 1;
                if quiet > SETTLE_QUIET_STEPS {
                    break;
                }
            }
            self.step_calm(false);
        }
        assert!(
            self.clients.is_empty(),
            "{} orders never answered (escrow {:?}, record {:?}, coordinating {}, slices {:?})",
            self.clients.len(),
            self.shards[COORDINATOR].core.app.node.escrow(),
            self.record(),
            self.shards[COORDINATOR].core.app.node.coordinating(),
            self.shards
                .iter()
                .map(|s| (s.core.app.node.slice().available(), s.core.app.node.bound()))
                .collect::<Vec<_>>()
        );
        // The node's journal and its record agree: every sale reported or still unreported in
        // its lease.
        let lease = self.shards[COORDINATOR]
            .core
            .app
            .node
            .escrow()
            .expect("a cluster node")
            .lease()
            .journal();
        let record = self.record();
        if !lease.fenced && lease.intent.is_none() {
            let sold = self.node_sold();
            let counted = record.sold + lease.unreported;
            assert_eq!(
                sold, counted,
                "sold {sold}, the record and the lease count {counted}"
            );
        }
    }
}

fn run(seed: u64, steps: u64, reach: &mut Reach) {
    let mut sim = Sim::new(seed);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..steps {
            sim.step();
        }
        sim.settle();
    }));
    if let Err(e) = result {
        eprintln!("cluster node simulation failed: CLUSTER_NODE_SEED={seed}");
        std::panic::resume_unwind(e);
    }
    let r = &sim.reach;
    reach.sold += r.sold;
    reach.sold_out += r.sold_out;
    reach.calls += r.calls;
    reach.replies_lost += r.replies_lost;
    reach.fences += r.fences;
    reach.rejoins += r.rejoins;
    reach.crashes += r.crashes;
    reach.rounds_closed += r.rounds_closed;
    reach.collects += r.collects;
    reach.unavailable += r.unavailable;
    reach.drained += r.drained;
    reach.drains_cut += r.drains_cut;
    reach.given_back += r.given_back;
}

#[test]
fn a_cluster_nodes_shards_sell_within_its_lease_through_crashes_fences_and_lost_replies() {
    let steps: u64 = std::env::var("CLUSTER_NODE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_STEPS);
    let mut reach = Reach::default();
    if let Some(seed) = std::env::var("CLUSTER_NODE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run(seed, STEPS_PER_SEED, &mut reach);
        eprintln!("{reach:?}");
        return;
    }
    let seeds = (steps / STEPS_PER_SEED).max(1);
    for seed in 0..seeds {
        run(seed, STEPS_PER_SEED, &mut reach);
    }
    eprintln!("{seeds} seeds: {reach:?}");
    let Reach {
        sold,
        sold_out,
        calls,
        replies_lost,
        fences,
        rejoins,
        crashes,
        rounds_closed,
        collects,
        unavailable: _,
        drained,
        drains_cut: _,
        given_back,
    } = reach;
    for (what, n) in [
        ("orders sold", sold),
        ("sold outs", sold_out),
        ("calls", calls),
        ("replies lost", replies_lost),
        ("fences", fences),
        ("rejoins", rejoins),
        ("crashes", crashes),
        ("rounds closed", rounds_closed),
        ("rounds answered", collects),
        ("stops with the lease drained", drained),
        ("tickets given back by a drain", given_back),
    ] {
        assert!(n > 0, "the run never reached {what}: {reach:?}", reach = ());
    }
}

/// An order waits for the lease at most `ORDER_WAIT_MAX`: with etcd silent (no call answered),
/// it is answered 503 `cluster_unavailable` then, with nothing sold; a keyed one keeps nothing of
/// its key, so the same request with the same key runs again (and waits again), never replayed.
#[test]
fn an_order_the_ledger_does_not_settle_in_time_is_answered_503() {
    let wait = ticketd::stock::escrow::ORDER_WAIT_MAX;
    let steps = wait.as_millis() as u64 / STEP_TIME.as_millis() as u64;
    let mut sim = Sim::new(7);
    sim.calm = true;
    let body = "{\"qty\":2}";
    let keyed = format!(
        "POST /api/v1/purchase HTTP/1.1\r\nHost: sim\r\nIdempotency-Key: k-1\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for attempt in 1..=2 {
        let at = sim.n() - 1;
        sim.order_with(at, keyed.as_bytes(), 2);
        let key = *sim.clients.keys().next().expect("an order waits");
        for step in 0..steps + 10 {
            sim.steps += 1;
            let now = sim.now();
            for at in 0..sim.n() {
                sim.mail(at);
                sim.write(at);
            }
            sim.deliver();
            // Calls are taken but never answered: etcd is silent.
            sim.take_call();
            sim.shards[COORDINATOR].core.cluster_tick(now);
            for at in 0..sim.n() {
                sim.turn(at);
            }
            if step + 5 < steps {
                assert!(sim.clients.contains_key(&key), "answered before the bound");
            }
        }
        assert!(!sim.clients.contains_key(&key), "never answered");
        assert_eq!(sim.reach.unavailable, attempt, "answered 503");
        assert!(
            sim.unavailable.contains("\"code\":\"cluster_unavailable\"")
                && !sim.unavailable.contains("Idempotent-Replayed"),
            "{}",
            sim.unavailable
        );
    }
    assert_eq!((sim.acked, sim.node_sold()), (0, 0));
}

/// A graceful stop drains the lease: with etcd answering and no fault, the node collects its
/// shards' tickets, reports its sales and gives the rest back before its shards leave; its
/// record then holds nothing granted, and the pool has every unsold ticket back. The next start
/// sells again.
#[test]
fn a_stopping_node_gives_its_lease_back() {
    let mut drained = 0;
    for seed in 0..40 {
        let mut sim = Sim::new(seed);
        sim.calm = true;
        // Sell a little, with every call answered, until the node holds a lease.
        for _ in 0..3_000 {
            sim.step_calm(true);
            if sim.record().granted > 0 && sim.clients.is_empty() {
                break;
            }
        }
        let before = sim.record();
        if before.granted == 0 || !sim.clients.is_empty() {
            continue; // a sale too small to lease anything, or orders still waiting
        }
        let lives = sim.sold_before;
        sim.stop();
        // The shards finish their connections at once or up to seconds apart (`patience`); the
        // grace is a minute: the drain's own bound applies.
        let bound = sim.grace.as_millis() as u64 / STEP_TIME.as_millis() as u64;
        for _ in 0..bound {
            sim.step_calm(false);
            if sim.stopping.is_none() {
                break;
            }
        }
        assert!(sim.stopping.is_none(), "seed {seed}: the stop never ended");
        assert!(sim.sold_before >= lives, "restarted on its journal");
        let after = sim.record();
        assert_eq!(
            (after.granted, after.in_doubt),
            (0, 0),
            "seed {seed}: the lease was not given back: {before:?} -> {after:?}"
        );
        let ledger = sim.kv.ledger(&sim.keys);
        ledger::check(&ledger).unwrap();
        assert_eq!(sim.reach.drained, 1, "seed {seed}");
        drained += 1;
    }
    assert!(
        drained >= 10,
        "only {drained} seeds leased anything to give back"
    );
}

//! Deterministic simulation of the shard protocol (`ticketd::rebalance`): a seeded scheduler
//! interleaves orders on every shard, message deliveries on every channel (FIFO per pair of shards,
//! as glommio's channels are, and arbitrarily delayed and interleaved across pairs) and stale
//! availability reports. After every step it checks no oversell and conservation
//! (`slices + in transit + sold == initial`); whenever the coordinator answers "insufficient" it
//! checks that fewer tickets than asked existed anywhere; at the end of each run, that every
//! escalated order was answered and that selling one ticket at a time sells every last ticket.
//!
//! A failing seed prints itself; `SIM_SEED=<seed> cargo test -p ticketd --test simulation` replays
//! exactly that run. `SIM_STEPS=10000000 cargo test --release -p ticketd --test simulation` runs
//! ten million steps (the default is a little over 10^5, for the test suite).

use std::collections::{HashMap, VecDeque};

use ticketd::rebalance::{Msg, Node, OrderId, Outbox, Placed};
use ticketd::stock::Sale;

/// Steps over all seeds when `SIM_STEPS` is not set.
const DEFAULT_STEPS: u64 = 120_000;

/// Steps per seed: long enough to run stock out several times over, short enough for many seeds.
const STEPS_PER_SEED: u64 = 600;

/// splitmix64: a tiny, well-mixed generator, so a seed replays exactly on any machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Sim {
    nodes: Vec<Node>,
    /// `channels[from][to]`: messages in flight, in sending order.
    channels: Vec<Vec<VecDeque<Msg>>>,
    /// Escalated orders per shard, waiting for their outcome: id → qty.
    waiting: Vec<HashMap<OrderId, u64>>,
    stock: u64,
    /// Tickets clients were told they got.
    sold_seen: u64,
    rng: Rng,
    steps: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let shards = [1, 2, 2, 3, 4, 8][rng.below(6) as usize];
        let stock = match rng.below(3) {
            0 => rng.below(8),
            1 => rng.below(100),
            _ => rng.below(1_000),
        };
        Sim {
            nodes: (0..shards).map(|id| Node::new(id, shards, stock)).collect(),
            channels: vec![vec![VecDeque::new(); shards]; shards],
            waiting: vec![HashMap::new(); shards],
            stock,
            sold_seen: 0,
            rng,
            steps: 0,
        }
    }

    fn shards(&self) -> usize {
        self.nodes.len()
    }

    fn in_transit(&self) -> u64 {
        self.channels
            .iter()
            .flatten()
            .flatten()
            .map(Msg::tickets)
            .sum()
    }

    fn available_everywhere(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.slice().available())
            .sum::<u64>()
            + self.in_transit()
    }

    fn check(&self) {
        if std::env::var("SIM_TRACE").is_ok() {
            let slices: Vec<(u64, u64)> = self
                .nodes
                .iter()
                .map(|n| (n.slice().available(), n.slice().sold()))
                .collect();
            eprintln!(
                "step {} seen {} slices {slices:?} transit {}",
                self.steps,
                self.sold_seen,
                self.in_transit()
            );
        }
        let sold: u64 = self.nodes.iter().map(|n| n.slice().sold()).sum();
        // Orders sold by the coordinator whose outcome is still on its way to the client's shard.
        let deciding: u64 = (0..self.shards())
            .flat_map(|to| self.channels.iter().map(move |from| (to, &from[to])))
            .flat_map(|(to, channel)| channel.iter().map(move |msg| (to, *msg)))
            .filter_map(|(to, msg)| match msg {
                Msg::Decided {
                    order, sold: true, ..
                } => Some(self.waiting[to][&order]),
                _ => None,
            })
            .sum();
        assert_eq!(
            sold,
            self.sold_seen + deciding,
            "tickets taken from slices == tickets granted"
        );
        assert!(sold <= self.stock, "oversold: {sold} > {}", self.stock);
        assert_eq!(
            self.available_everywhere() + sold,
            self.stock,
            "conservation"
        );
    }

    /// Applies what shard `at` produced: queue its messages, settle its outcomes, check denials.
    fn apply(&mut self, at: usize, out: Outbox) {
        for qty in out.denied {
            let everywhere = self.available_everywhere();
            assert!(
                everywhere < qty,
                "premature sold-out: {qty} asked, {everywhere} existed"
            );
        }
        for (to, msg) in out.messages {
            assert_ne!(to, at, "no message to oneself");
            self.channels[at][to].push_back(msg);
        }
        for (order, sale) in out.outcomes {
            let qty = self.waiting[at]
                .remove(&order)
                .expect("an outcome for an order that waits");
            if sale == Sale::Sold {
                self.sold_seen += qty;
            }
        }
    }

    fn order(&mut self, at: usize, qty: u64) -> Option<Sale> {
        if std::env::var("SIM_TRACE").is_ok() {
            eprintln!("order at {at} qty {qty}");
        }
        let mut out = Outbox::default();
        let placed = self.nodes[at].order(qty, &mut out);
        self.nodes[at].maybe_refill(&mut out);
        let result = match placed {
            Placed::Sold => {
                self.sold_seen += qty;
                Some(Sale::Sold)
            }
            Placed::Waiting(id) => {
                self.waiting[at].insert(id, qty);
                None
            }
        };
        self.apply(at, out);
        result
    }

    /// Delivers the oldest message of a random non-empty channel; false when none is in flight.
    fn deliver_one(&mut self) -> bool {
        let busy: Vec<(usize, usize)> = (0..self.shards())
            .flat_map(|f| (0..self.shards()).map(move |t| (f, t)))
            .filter(|&(f, t)| !self.channels[f][t].is_empty())
            .collect();
        if busy.is_empty() {
            return false;
        }
        let (from, to) = busy[self.rng.below(busy.len() as u64) as usize];
        let msg = self.channels[from][to].pop_front().unwrap();
        if std::env::var("SIM_TRACE").is_ok() {
            eprintln!("deliver {from}->{to} {msg:?}");
        }
        let mut out = Outbox::default();
        self.nodes[to].on_message(from, msg, &mut out);
        self.nodes[to].maybe_refill(&mut out);
        self.apply(to, out);
        true
    }

    /// Shard `from` tells shard `to` its slice size (reports are stale by design).
    fn report(&mut self, from: usize, to: usize) {
        let available = self.nodes[from].slice().available();
        self.nodes[to].report(from, available);
    }

    fn step(&mut self) {
        self.steps += 1;
        let shards = self.shards() as u64;
        match self.rng.below(100) {
            0..=39 => {
                let at = self.rng.below(shards) as usize;
                let qty = match self.rng.below(20) {
                    0 => 1 + self.rng.below(self.stock + 2), // large: gathers, and failures
                    1..=3 => 1 + self.rng.below(self.stock / 4 + 2), // medium
                    _ => 1 + self.rng.below(3),
                };
                self.order(at, qty);
            }
            40..=89 => {
                self.deliver_one();
            }
            _ => {
                let (from, to) = (
                    self.rng.below(shards) as usize,
                    self.rng.below(shards) as usize,
                );
                if from != to {
                    self.report(from, to);
                }
            }
        }
        self.check();
    }

    /// Delivers everything in flight; every escalated order must then be answered.
    fn quiesce(&mut self) {
        while self.deliver_one() {
            self.check();
        }
        for (shard, waiting) in self.waiting.iter().enumerate() {
            assert!(
                waiting.is_empty(),
                "shard {shard} has unanswered orders {waiting:?}"
            );
        }
    }

    /// Sells one ticket at a time on random shards until an order is refused; that must happen
    /// only once every ticket is sold.
    fn sell_out(&mut self) {
        loop {
            let at = self.rng.below(self.shards() as u64) as usize;
            let answer = match self.order(at, 1) {
                Some(sale) => sale,
                None => {
                    let before = self.sold_seen;
                    self.quiesce();
                    if self.sold_seen > before {
                        Sale::Sold
                    } else {
                        Sale::Insufficient
                    }
                }
            };
            self.check();
            if answer == Sale::Insufficient {
                break;
            }
        }
        self.quiesce();
        assert_eq!(self.sold_seen, self.stock, "every ticket sells");
    }
}

fn run(seed: u64, steps: u64) -> u64 {
    let mut sim = Sim::new(seed);
    for _ in 0..steps {
        sim.step();
    }
    sim.quiesce();
    sim.sell_out();
    sim.steps
}

fn run_reporting(seed: u64, steps: u64) -> u64 {
    match std::panic::catch_unwind(|| run(seed, steps)) {
        Ok(done) => done,
        Err(panic) => {
            eprintln!("simulation failed: seed {seed}; replay with SIM_SEED={seed} cargo test -p ticketd --test simulation");
            std::panic::resume_unwind(panic)
        }
    }
}

/// Many seeded runs of the protocol keep every invariant; `SIM_SEED` replays one run.
#[test]
fn the_protocol_keeps_every_invariant_under_any_interleaving() {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        let seed: u64 = seed.parse().expect("SIM_SEED is a number");
        run_reporting(seed, STEPS_PER_SEED);
        return;
    }
    let total: u64 = std::env::var("SIM_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_STEPS);
    let mut done = 0;
    let mut seed = 1;
    while done < total {
        done += run_reporting(seed, STEPS_PER_SEED);
        seed += 1;
    }
    eprintln!("simulated {done} steps over {} seeds", seed - 1);
}

/// While stock is plentiful and orders are spread over the shards, almost every order is served
/// locally and moves are rare (amortised refills).
#[test]
fn plentiful_stock_is_sold_locally_with_few_moves() {
    let shards = 4;
    let mut sim = Sim {
        nodes: (0..shards)
            .map(|id| Node::new(id, shards, 200_000))
            .collect(),
        channels: vec![vec![VecDeque::new(); shards]; shards],
        waiting: vec![HashMap::new(); shards],
        stock: 200_000,
        sold_seen: 0,
        rng: Rng(7),
        steps: 0,
    };
    // Skewed load: shard 0 gets half of 120k orders but holds 50k tickets, so it must refill.
    for i in 0..120_000u64 {
        let at = if i % 2 == 0 { 0 } else { (1 + i % 3) as usize };
        sim.order(at, 1);
        while sim.deliver_one() {}
        if i % 1000 == 0 {
            for from in 0..shards {
                for to in 0..shards {
                    if from != to {
                        sim.report(from, to);
                    }
                }
            }
        }
    }
    sim.check();
    let escalated: u64 = sim.nodes.iter().map(|n| n.moves().orders_escalated).sum();
    let refills: u64 = sim.nodes.iter().map(|n| n.moves().refills_asked).sum();
    assert_eq!(escalated, 0, "no order waited while stock was plentiful");
    assert!(
        refills > 0 && refills < 100,
        "refills are amortised: {refills} for 120k orders"
    );
}

//! Deterministic simulation of a whole server's shards: the real [`ShardCore`]s (the code both
//! transports run: routes, the stock protocol, the journal's tail, the mail ordered behind the
//! records it depends on, held responses, the leave protocol), over the real durable journal
//! (`journal::Writer` on a `journal::MemDisk`), with disk faults, crashes and restarts. Nothing
//! of the server's rules is mirrored here: the simulation plays the transports, the mesh and the
//! disk, and decides only what a scheduler would (which event comes next).
//!
//! # What is simulated
//! - **Clients**: each order is a real HTTP/1.1 request (`POST /api/v1/purchase`) fed to a
//!   shard's core on a connection of its own; its response counts only once the core releases
//!   it (`Release::Now`, at once or after a `ConnEvent::Recheck`), and is read from the bytes:
//!   `"success":true` acknowledges the sale, `"success":false` is a "sold out" the client saw.
//! - **Transport turns**: the core's news for connections (answers for waiting orders, held
//!   output released or dropped) is carried out in a step of its own, as the uring driver does in
//!   its next turn, so a journal failure, a peer's message or a commit may come in between.
//! - **The mesh**: the core lets mail out (`next_mail`) in a step of its own; channels are FIFO
//!   per pair of shards (glommio's are), arbitrarily delayed and interleaved across pairs.
//!   Reports go through the same channels, and a report is sometimes dropped as a full queue
//!   drops it (`try_send`); the core must offer it again.
//! - **The uring commit path**: a batch is handed out (`next_batch`, as the driver stages an
//!   O_DSYNC write: when idle, or only when overdue on a busy turn, by a simulated clock) in one
//!   step and written in a later one, so the shard keeps working while a write is in flight;
//!   compactions take the same path (the journal task's `Writer::write`).
//! - **Shutdown**: every shard is told to stop, each finishes its transport once it has no
//!   client left, in a seeded order, and all must leave (the coordinator's `Exit`) with every
//!   order answered, however the gathers and peers' departures interleave.
//!
//! # Steps
//! | step | share | what it does |
//! |---|---|---|
//! | crash | 1 in [`CRASH_ONE_IN`] | crash and restart (below) |
//! | order | 28% | an order on a shard: mostly small, sometimes large |
//! | admin | 2% | an operator's request on the coordinator's admin connection: a restock (mostly), sales closed or opened |
//! | turn | 10% | a shard's transport carries out the core's news for its connections |
//! | mail | 12% | a shard lets the next message out into its channel, if the core allows |
//! | deliver | 25% | the oldest message of a channel is applied by its receiver |
//! | stage | 7% | a shard hands out a journal batch (idle, or only if overdue) |
//! | write | 9% | a staged batch is written; one in [`FAULT_ONE_IN`] first injects a disk fault |
//! | report | 7% | a shard offers a peer its slice size; a third of the offers are dropped |
//!
//! An injected fault is a short write (the journal carries on), a write of 0 bytes, a write
//! error or an fdatasync error (the journal fails for good: its core halts, tells its peers
//! (`Message::Halt`) and acknowledges nothing more; the others keep working until the machine
//! crashes within [`CRASH_AFTER_FAILURE_STEPS_MAX`] steps).
//!
//! **Crash and restart**: sometimes the power goes in the middle of a write on every shard with
//! one staged or due; the disk becomes what a reboot finds (`MemDisk::crash`: synced bytes, a
//! seeded number of torn unsynced bytes, or unsynced writes torn by sector in any order, not as
//! a prefix; a seeded prefix of unsynced directory changes); every core, channel and client is
//! gone; the journal is recovered by `journal::open` with a shard count picked anew (sometimes
//! the power goes during that start-up too), and shard `i` of `n` restarts as a new core on its
//! shard file.
//!
//! # What is checked
//! After every step: no oversell; conservation within the life (`slices + in transit + sold ==
//! available at the start of the life`, where in transit counts channels, mail not yet let out
//! and mail dropped after a journal failure); tickets taken from slices >= tickets acknowledged;
//! every healthy journal's ledger equals its slice. When the coordinator refuses an order, that
//! fewer tickets than asked existed anywhere (unless a journal failed in this life).
//!
//! After every restart: the journal kept the stock; `sold + available == stock`; no acknowledged
//! sale is forgotten; none is invented; and no "sold out" a client saw is contradicted: the
//! tickets recovered are fewer than the smallest quantity ever refused (stock never grows, so a
//! refusal that rested on sales a crash undid would show here).
//!
//! **Restocks** (issue 17) race orders, the bound's propagation and crashes: a restock starts a
//! stock epoch on every shard and its tickets come into being in the coordinator's slice only
//! once every shard left the old epoch, so besides the checks above (which count restocked
//! tickets: conservation is `slices + in transit + sold == available at the start of the life +
//! added`), no shard is in an older epoch than the coordinator once no operation is in progress,
//! and a restock the operator was told of survives every crash (the recovered stock lies between
//! the acknowledged restocks and those plus the ones in flight). A "sold out" is contradicted
//! after a crash only when more tickets came back than were asked plus the restocks since.
//! Orders while sales are closed get 409, and sell nothing.
//!
//! At the end of each run: everything settles (a livelock fails the run after
//! [`SETTLE_QUIET_DELIVERIES_MAX`] deliveries) and every order is answered; reports settle,
//! though some are dropped, and every shard's `/available` (`total_available`) is then the
//! truth; one run in three then shuts down; selling one ticket at a time sells every ticket
//! left, and a last crash finds them all sold.
//!
//! A failing seed prints itself; `SIM_SEED=<seed> cargo test -p ticketd --test simulation`
//! replays exactly that run (`SIM_TRACE=1` prints its every step). `SIM_STEPS=10000000 cargo
//! test --release -p ticketd --test simulation` runs ten million steps (the default is a little
//! over 10^5, for the test suite). The run prints what it covered.

mod support;

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use proto_http::Limits;
use support::rng::Rng;
use ticketd::app::admin::Admin;
use ticketd::config::Mode;
use ticketd::durability::journal::record::BLOCK_BYTES;
use ticketd::durability::journal::{
    self, Batch, BatchKind, Crash, Fault, JournalError, MemDisk, Recovered, Store, Writer,
    COMPACT_BYTES_DEFAULT,
};
use ticketd::net::connection::{ConnLimits, Connection, Next};
use ticketd::shard::core::{
    ConnEvent, ConnKey, CoreConfig, Message, Release, ShardCore, Step, ADMIN_KEYS,
};
use ticketd::stock::rebalance::{Msg, TakeKind, COORDINATOR};

/// Steps over all seeds when `SIM_STEPS` is not set.
/// The stop's grace a shard is given once its transport finished (`--shutdown-timeout-ms`'s
/// default); here only a cluster node's drain reads it.
const STOP_GRACE: Duration = Duration::from_secs(5);

const DEFAULT_STEPS: u64 = 120_000;

/// Steps per seed: long enough to run stock out several times over, short enough for many seeds.
const STEPS_PER_SEED: u64 = 600;

/// One step in this many crashes the machine: about five crashes per seed, so every run lives
/// several lives, each long enough to sell and move tickets.
const CRASH_ONE_IN: u64 = 120;

/// One commit in this many injects a disk fault first: a few per seed, so that over the default
/// run every kind of fault fails many journals at every stage of the protocol.
const FAULT_ONE_IN: u64 = 25;

/// After a journal fails, the machine crashes within this many steps: the server runs degraded
/// (that shard halted) until someone restarts it, and the steps meanwhile exercise that.
const CRASH_AFTER_FAILURE_STEPS_MAX: u64 = 30;

/// At a crash in the middle of commits, the power goes after up to this many more disk
/// operations per shard with something to write: an append batch is a write and a sync, a
/// compaction five operations, so the cut mostly falls inside some commit.
const MID_COMMIT_OPS_PER_SHARD: u64 = 3;

/// At a start-up cut by the power, it goes after up to this many disk operations (a start-up with
/// `n` shards is `3n + 6` of them, plus one per old file removed).
const START_UP_OPS_MAX: u64 = 30;

/// Messages that settling may deliver in a row, with no new order, while no escalated order is
/// answered, before the run fails as a livelock. The coordinator serves its queue in order and
/// every operation ends after one round trip to each shard, so an answer comes every few dozen
/// deliveries while orders wait, and the moves end soon after the last one.
const SETTLE_QUIET_DELIVERIES_MAX: u64 = 1_000;

/// Shard counts a run starts with and a restart picks from: the count may change at every
/// restart, as `--shards` may.
const SHARD_COUNTS: [usize; 7] = [1, 2, 2, 3, 4, 5, 8];

/// Compaction thresholds a life picks from: 0 compacts whenever a file holds twice its snapshot
/// (the tail's floor), that is every few batches; 1 KiB every few dozen records; 8 KiB in the
/// longer lives; the default never within a run.
const COMPACT_BYTES: [u64; 4] = [0, 1024, 8192, COMPACT_BYTES_DEFAULT];

/// The torn-byte counts that keep part, but not all, of the new records an unsynced write put
/// in a shard file (`before` and `after` it): the write started at the block holding the first
/// new byte and rewrote that block's durable prefix with the same bytes.
fn tear_within(before: Option<Vec<u8>>, after: Option<Vec<u8>>) -> Option<(u64, u64)> {
    let (before, after) = (before?, after?);
    let differs = |i: &usize| before.get(*i).copied().unwrap_or(0) != after[*i];
    let first = (0..after.len()).find(differs)?;
    let last = (0..after.len()).rev().find(differs)?;
    let start = first - first % BLOCK_BYTES;
    (last > first).then_some(((first - start + 1) as u64, (last - start + 1) as u64))
}

/// Simulated time per step: the commit policy's overdue rule sees a clock that advances.
const STEP_TIME: Duration = Duration::from_micros(10);

/// Steps a shutdown may take before the run fails as a shard that cannot leave.
const SHUTDOWN_STEPS_MAX: u64 = 200_000;

/// What the runs exercised, summed over seeds and printed, so a reader sees the coverage.
#[derive(Debug, Default)]
struct Coverage {
    seeds: u64,
    steps: u64,
    crashes: u64,
    crashes_mid_commit: u64,
    sector_tears: u64,
    start_ups_cut: u64,
    shard_count_changes: u64,
    /// Batches handed out, and of them on a busy turn because overdue.
    staged: u64,
    staged_overdue: u64,
    /// Batches written.
    writes: u64,
    faults: u64,
    journals_failed: u64,
    /// Halt messages applied by shards whose own journal was healthy.
    halts_received: u64,
    /// Tickets of mail dropped after a journal failure.
    tickets_dropped: u64,
    /// Transport turns that carried out news.
    turns: u64,
    /// Reports offered, and dropped as a full queue drops them.
    reports: u64,
    reports_dropped: u64,
    /// Shutdowns run to the end.
    shutdowns: u64,
    torn_tails_cut: u64,
    transit_restored: u64,
    tickets_acked: u64,
    /// "Sold out" answers clients saw.
    refusals_seen: u64,
    /// Orders placed, orders a shard refused on the spot (by the coordinator's bound, with no
    /// message), and protocol messages delivered: the messages per order.
    orders: u64,
    refused_locally: u64,
    stock_messages: u64,
    /// `Take`s for orders delivered: gather rounds times donors.
    takes: u64,
    /// Operator requests sent (restocks, sales closed or opened), and of them acknowledged.
    restocks: u64,
    restocks_acked: u64,
    sales_changes: u64,
    /// Orders answered 409 while sales were closed.
    orders_closed: u64,
    /// Restarts that found a restock whose answer had not been sent.
    restocks_in_flight_at_crash: u64,
    quiet_deliveries_max: u64,
    /// Answers to keyed orders clients read (200), and of them replays.
    keyed_answers: u64,
    keyed_replays: u64,
    /// Seeds that ran with a key on every order.
    all_keyed_seeds: u64,
}

impl Coverage {
    fn summary(&self) -> String {
        format!(
            "simulated {} steps over {} seeds: {} crashes ({} in the middle of writes, {} torn by \
             sector, {} start-ups cut, {} shard count changes); uring commit path: {} batches \
             staged ({} overdue on a busy turn), {} written, {} faults injected ({} journals \
             failed, {} halts received, {} tickets of mail dropped); {} transport turns; {} \
             reports offered, {} dropped; {} shutdowns; recoveries cut {} torn tails and restored \
             tickets in transit {} times; {} tickets acknowledged, {} refusals seen; {} orders \
             ({} refused on the spot by the bound), {:.2} protocol messages per order; settling \
             went at most {} deliveries without an answer; {} restocks ({} acknowledged, {} in \
             flight at a crash), {} sales closed or opened, {} orders refused as closed; {} keyed \
             answers, {} of them replays; {} seeds with a key on every order",
            self.steps,
            self.seeds,
            self.crashes,
            self.crashes_mid_commit,
            self.sector_tears,
            self.start_ups_cut,
            self.shard_count_changes,
            self.staged,
            self.staged_overdue,
            self.writes,
            self.faults,
            self.journals_failed,
            self.halts_received,
            self.tickets_dropped,
            self.turns,
            self.reports,
            self.reports_dropped,
            self.shutdowns,
            self.torn_tails_cut,
            self.transit_restored,
            self.tickets_acked,
            self.refusals_seen,
            self.orders,
            self.refused_locally,
            self.stock_messages as f64 / self.orders.max(1) as f64,
            self.quiet_deliveries_max,
            self.restocks,
            self.restocks_acked,
            self.restocks_in_flight_at_crash,
            self.sales_changes,
            self.orders_closed,
            self.keyed_answers,
            self.keyed_replays,
            self.all_keyed_seeds
        )
    }
}

/// One shard: its real core, the I/O half of its journal, and the batch its driver is writing.
struct SimShard {
    core: ShardCore,
    writer: Writer,
    /// The shard file's name on the disk.
    file: String,
    /// A batch handed out and not yet written.
    staged: Option<Batch>,
}

/// A client connection with one order on it.
struct Client {
    shard: usize,
    conn: Connection,
    out: Vec<u8>,
    qty: u64,
    /// Its order waits for an answer.
    waiting: bool,
    /// An operator's request on the admin connection instead of an order.
    admin: Option<AdminAsk>,
    /// For an operator's sales close or open: its number among them (0 otherwise).
    sales_ask: u64,
    /// The number of its `Idempotency-Key`, if it sent one.
    key: Option<u64>,
}

/// What an operator asked on the coordinator's admin connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AdminAsk {
    Restock(u64),
    Sales { closed: bool },
}

/// The token of the simulated admin connections.
const ADMIN_TOKEN: &str = "simulation-admin-token";

/// The admin state every simulated coordinator's admin connection holds.
fn admin() -> &'static Admin {
    static ADMIN: std::sync::OnceLock<&'static Admin> = std::sync::OnceLock::new();
    ADMIN.get_or_init(|| Box::leak(Box::new(Admin::new(ADMIN_TOKEN.as_bytes(), 0, 0).unwrap())))
}

/// The bytes of an operator's request.
fn admin_request(ask: AdminAsk) -> Vec<u8> {
    let (path, body) = match ask {
        AdminAsk::Restock(add) => ("/admin/restock", format!("{{\"add\":{add}}}")),
        AdminAsk::Sales { closed: true } => ("/admin/sales/close", String::new()),
        AdminAsk::Sales { closed: false } => ("/admin/sales/open", String::new()),
    };
    format!(
        "POST {path} HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The core configuration of shard `shard` of `shards` selling `stock`.
fn core_config(shard: usize, shards: usize, stock: u64) -> CoreConfig {
    CoreConfig {
        mode: Mode::Monolith,
        shard,
        shards,
        stock,
        max_order_qty: u64::MAX / 4,
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
        cluster: None,
    }
}

/// The `/metrics` board every simulated core holds: one for the whole test binary (nothing
/// publishes into it here; the cores only need one), so the thousands of cores a run makes leak
/// nothing each.
/// The documents every simulated core serves, built once (a core per shard per life would
/// otherwise build and compress them anew at every restart).
fn docs() -> &'static ticketd::app::docs::Docs {
    static DOCS: std::sync::OnceLock<&'static ticketd::app::docs::Docs> =
        std::sync::OnceLock::new();
    DOCS.get_or_init(|| ticketd::app::routes::docs(Mode::Monolith, u64::MAX / 4))
}

fn board() -> &'static ticketd::app::board::Board {
    static BOARD: std::sync::OnceLock<&'static ticketd::app::board::Board> =
        std::sync::OnceLock::new();
    BOARD.get_or_init(|| ticketd::app::board::Board::leak(16))
}

/// Opens the journal on `disk` for `shards` shards, and every shard's core over its tail.
fn open_shards(
    disk: &MemDisk,
    shards: usize,
    stock: u64,
    compact_bytes: u64,
) -> Result<(Recovered, Vec<SimShard>), JournalError> {
    let store = Store::Mem(disk.clone());
    // The memory store does no real I/O: its futures complete when first polled, so no glommio
    // executor is needed.
    block_on(async {
        let recovered = journal::open(&store, shards, stock).await?;
        let mut opened = Vec::with_capacity(shards);
        for (i, start) in recovered.shards.iter().enumerate() {
            let (writer, tail) = Writer::open(&store, start.clone(), compact_bytes).await?;
            let mut core = ShardCore::new(core_config(i, shards, recovered.available), Some(tail));
            core.restore_keys(&start.keys);
            opened.push(SimShard {
                core,
                writer,
                file: start.file.clone(),
                staged: None,
            });
        }
        Ok((recovered, opened))
    })
}

/// The bytes of a purchase of `qty`.
fn purchase(qty: u64) -> Vec<u8> {
    let body = format!("{{\"qty\":{qty}}}");
    format!(
        "POST /api/v1/purchase HTTP/1.1\r\nHost: sim\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Idempotency keys a run uses: few, so keys repeat often, within a life and across crashes.
const KEYS: u64 = 12;

/// One in this many orders carries an `Idempotency-Key`.
const KEYED_ONE_IN: u64 = 4;

/// One seed in this many runs with a key on every order (`Sim::all_keyed`).
const ALL_KEYED_ONE_IN: u64 = 5;

/// The `Idempotency-Key` value of key number `k`.
fn key_name(k: u64) -> String {
    format!("sim-key-{k}")
}

/// The quantity key `k` always asks for (a key reused with another body would be a 422): one
/// key in four asks for a third of the stock, so keyed orders gather and fail too.
fn key_qty(k: u64, stock: u64) -> u64 {
    if k.is_multiple_of(4) {
        1 + stock / 3
    } else {
        1 + k % 3
    }
}

/// The bytes of a keyed purchase of `qty`.
fn keyed_purchase(qty: u64, k: u64) -> Vec<u8> {
    let body = format!("{{\"qty\":{qty}}}");
    format!(
        "POST /api/v1/purchase HTTP/1.1\r\nHost: sim\r\nIdempotency-Key: {}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        key_name(k),
        body.len()
    )
    .into_bytes()
}

/// What a client read: `Some(true)` sold, `Some(false)` refused, `None` a 503 (or a 409: sales
/// closed, counted by the caller).
fn read_response(bytes: &[u8]) -> Option<bool> {
    let text = String::from_utf8_lossy(bytes);
    let status = text.get(9..12).unwrap_or("");
    match status {
        "200" if text.contains("\"success\":true") => Some(true),
        "200" if text.contains("\"success\":false") => Some(false),
        "503" => None,
        "409" if text.contains("\"code\":\"sales_closed\"") => None,
        _ => panic!("an order got an unexpected response: {text}"),
    }
}

/// A simulated server: its shards, over lives separated by crashes.
struct Sim<'c> {
    // The run, across lives.
    disk: MemDisk,
    stock: u64,
    /// The stock of the run's first life: keyed orders take their quantity from it, so a key
    /// asks the same quantity across restocks (another would be a 422).
    first_stock: u64,
    rng: Rng,
    steps: u64,
    /// The simulated clock's origin.
    origin: Instant,
    /// Tickets acknowledged to clients, over every life.
    acked_total: u64,
    /// Over every life, the smallest of `qty − stock at the start of its life` of the orders
    /// clients were told are sold out: after a crash, fewer than `qty` plus the restocks since
    /// may come back.
    refused_min: Option<i128>,
    /// The stock the operator was told of: the journal's at the last start plus the restocks
    /// acknowledged since.
    stock_acked: u64,
    /// Tickets of restocks asked for and not yet acknowledged (they may or may not survive a
    /// crash).
    restocks_in_flight: u64,
    /// Tickets sold in all when the operator's last close was acknowledged, until an open is
    /// asked for: no sale may be decided after a close's answer (every shard refuses with 409).
    closed_at_sold: Option<u64>,
    /// Sales closes and opens asked so far.
    sales_asks: u64,
    trace: bool,
    coverage: &'c mut Coverage,

    // This life: since the last start.
    /// The total stock when this life started (the journal's).
    stock_at_start: u64,
    sold_before: u64,
    available: u64,
    shards: Vec<SimShard>,
    /// `channels[from][to]`: messages in flight, in sending order.
    channels: Vec<Vec<VecDeque<Message>>>,
    /// Client connections with an order not yet answered and released.
    clients: HashMap<ConnKey, Client>,
    next_key: ConnKey,
    /// Tickets acknowledged in this life.
    acked: u64,
    /// A journal failed in this life: the step at which the machine crashes.
    crash_due: Option<u64>,
    /// Over every life: the body of the first answer a client was given for each key (a
    /// replay must repeat it; no key acknowledged once is executed again).
    keyed_acks: HashMap<u64, String>,
    /// Keys some client was answered for before this life: none may execute again.
    keyed_before: std::collections::HashSet<u64>,
    /// Keys whose execution a client read in this life (an execution answers once).
    keyed_executed: std::collections::HashSet<u64>,
    /// Every order carries a key (fresh ones, besides the few that repeat): then every sale is
    /// journaled with its key, and each restart checks that the recovered keys account for every
    /// ticket sold, none twice (a sale kept while its key was lost lets a retry sell again).
    all_keyed: bool,
    /// The next fresh key number (above [`KEYS`]) of an all-keyed run.
    next_fresh_key: u64,
}

impl<'c> Sim<'c> {
    fn new(seed: u64, coverage: &'c mut Coverage) -> Sim<'c> {
        let mut rng = Rng(seed);
        let shards = rng.pick(&SHARD_COUNTS);
        let stock = match rng.below(3) {
            0 => rng.below(8),
            1 => rng.below(100),
            _ => rng.below(3_000),
        };
        let compact_bytes = rng.pick(&COMPACT_BYTES);
        let mut sim = Sim::start(rng, shards, stock, compact_bytes, coverage);
        sim.all_keyed = seed % ALL_KEYED_ONE_IN == 1;
        sim.coverage.all_keyed_seeds += u64::from(sim.all_keyed);
        sim
    }

    /// A run whose first life has `shards` shards, on an empty disk.
    fn start(
        rng: Rng,
        shards: usize,
        stock: u64,
        compact_bytes: u64,
        coverage: &'c mut Coverage,
    ) -> Sim<'c> {
        coverage.seeds += 1;
        let mut sim = Sim {
            disk: MemDisk::new(),
            stock,
            first_stock: stock,
            rng,
            steps: 0,
            origin: Instant::now(),
            acked_total: 0,
            refused_min: None,
            stock_acked: stock,
            restocks_in_flight: 0,
            closed_at_sold: None,
            sales_asks: 0,
            stock_at_start: stock,
            trace: std::env::var("SIM_TRACE").is_ok(),
            coverage,
            sold_before: 0,
            available: 0,
            shards: Vec::new(),
            channels: Vec::new(),
            clients: HashMap::new(),
            next_key: 0,
            acked: 0,
            crash_due: None,
            keyed_acks: HashMap::new(),
            keyed_before: Default::default(),
            keyed_executed: Default::default(),
            all_keyed: false,
            next_fresh_key: KEYS,
        };
        sim.restart(shards, compact_bytes, 0);
        sim
    }

    fn now(&self) -> Instant {
        self.origin + STEP_TIME * u32::try_from(self.steps).unwrap_or(u32::MAX)
    }

    fn n(&self) -> usize {
        self.shards.len()
    }

    fn failed(&self, at: usize) -> bool {
        self.shards[at].core.journal_failed().is_some()
    }

    /// Tickets restocked in this life (in the coordinator's slice).
    fn added_in_life(&self) -> u64 {
        self.shards[COORDINATOR].core.app.node.slice().added()
    }

    /// The total stock now: the life's start plus what was restocked since.
    fn stock_now(&self) -> u64 {
        self.stock_at_start + self.added_in_life()
    }

    fn sold_in_life(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.core.app.node.slice().sold())
            .sum()
    }

    fn in_transit(&self) -> u64 {
        let travelling: u64 = self
            .channels
            .iter()
            .flatten()
            .flatten()
            .map(|m| match m {
                Message::Stock(msg) => msg.tickets(),
                _ => 0,
            })
            .sum();
        let mail: u64 = self
            .shards
            .iter()
            .map(|s| s.core.tickets_in_mail() + s.core.tickets_dropped())
            .sum();
        travelling + mail
    }

    fn available_everywhere(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.core.app.node.slice().available())
            .sum::<u64>()
            + self.in_transit()
    }

    fn check(&self) {
        let sold = self.sold_in_life();
        if let Some(at_close) = self.closed_at_sold {
            assert!(
                self.sold_before + sold <= at_close,
                "a sale was decided after the operator's close was acknowledged: {} sold then, {} \
                 now",
                at_close,
                self.sold_before + sold
            );
        }
        if self.trace {
            let slices: Vec<(u64, u64)> = self
                .shards
                .iter()
                .map(|s| {
                    (
                        s.core.app.node.slice().available(),
                        s.core.app.node.slice().sold(),
                    )
                })
                .collect();
            eprintln!(
                "step {} acked {} slices {slices:?} transit {} clients {}",
                self.steps,
                self.acked,
                self.in_transit(),
                self.clients.len()
            );
        }
        assert!(
            self.acked <= sold,
            "acknowledged {} tickets, only {sold} taken from slices",
            self.acked
        );
        assert!(
            self.sold_before + sold <= self.stock_now(),
            "oversold: {} + {sold} > {}",
            self.sold_before,
            self.stock_now()
        );
        assert_eq!(
            self.available_everywhere() + sold,
            self.available + self.added_in_life(),
            "conservation within the life: sold + available == initial + added"
        );
        let coordinator = &self.shards[COORDINATOR].core.app.node;
        for (i, shard) in self.shards.iter().enumerate() {
            // What "visible" means: a restock's tickets exist only once every shard left the
            // epochs whose bound they would contradict.
            assert!(
                shard.core.app.node.epoch() >= coordinator.epoch_visible(),
                "shard {i} is in stock epoch {} while epoch {}'s restocked tickets exist",
                shard.core.app.node.epoch(),
                coordinator.epoch_visible()
            );
        }
        if !coordinator.coordinating() {
            for (i, shard) in self.shards.iter().enumerate() {
                assert_eq!(
                    shard.core.app.node.epoch(),
                    coordinator.epoch(),
                    "shard {i} is in an older stock epoch with no restock in progress"
                );
            }
        }
        for (i, shard) in self.shards.iter().enumerate() {
            let tail = shard.core.tail().expect("every simulated shard journals");
            if tail.failed().is_none() {
                let ledger = tail.ledger();
                let slice = shard.core.app.node.slice();
                assert_eq!(
                    (ledger.available(), ledger.sold()),
                    (slice.available(), slice.sold()),
                    "shard {i}'s journal records its slice"
                );
            }
        }
    }

    /// The coordinator refused an order in the event just run on `at`: fewer tickets than asked
    /// may exist anywhere (unless a journal failed: dropped tickets are unreachable then).
    fn check_refusals(&self, at: usize) {
        if self.crash_due.is_some() {
            return;
        }
        for &qty in &self.shards[at].core.app.outbox.denied {
            let everywhere = self.available_everywhere();
            assert!(
                everywhere < qty,
                "premature sold-out: {qty} asked, {everywhere} existed"
            );
        }
    }

    /// A client asks shard `at` for `qty` tickets.
    fn order(&mut self, at: usize, qty: u64) {
        self.order_keyed(at, qty, None);
    }

    /// A client asks shard `at` for `qty` tickets: with a fresh key in an all-keyed run.
    fn order_any(&mut self, at: usize, qty: u64) {
        if self.all_keyed {
            let k = self.next_fresh_key;
            self.next_fresh_key += 1;
            self.order_keyed(at, qty, Some(k));
        } else {
            self.order(at, qty);
        }
    }

    /// A client asks shard `at` for `qty` tickets, with key number `key` if any.
    fn order_keyed(&mut self, at: usize, qty: u64, idem: Option<u64>) {
        if self.trace {
            eprintln!("order at {at} qty {qty} idempotency key {idem:?}");
        }
        self.next_key += 1;
        self.coverage.orders += 1;
        let key = self.next_key;
        let refused_before = self.shards[at].core.app.node.moves().orders_refused_locally;
        let mut client = Client {
            shard: at,
            conn: Connection::default(),
            out: Vec::new(),
            qty,
            waiting: false,
            admin: None,
            sales_ask: 0,
            key: None,
        };
        let request = match idem {
            Some(k) => {
                client.key = Some(k);
                keyed_purchase(qty, k)
            }
            None => purchase(qty),
        };
        let now = self.now();
        let step =
            self.shards[at]
                .core
                .input(key, &mut client.conn, &request, &mut client.out, now);
        self.check_refusals(at);
        let refused = self.shards[at].core.app.node.moves().orders_refused_locally - refused_before;
        self.coverage.refused_locally += refused;
        self.clients.insert(key, client);
        self.carry_out(key, step);
    }

    /// An operator asks the coordinator, on an admin connection of its own.
    fn admin(&mut self, ask: AdminAsk) {
        if self.trace {
            eprintln!("admin {ask:?}");
        }
        self.next_key += 1;
        let key = ADMIN_KEYS + self.next_key;
        let mut sales_ask = 0;
        match ask {
            AdminAsk::Restock(add) => {
                self.coverage.restocks += 1;
                self.restocks_in_flight += add;
            }
            AdminAsk::Sales { closed } => {
                self.coverage.sales_changes += 1;
                self.sales_asks += 1;
                sales_ask = self.sales_asks;
                if !closed {
                    // Opening takes effect on each shard as it hears of it.
                    self.closed_at_sold = None;
                }
            }
        }
        let mut client = Client {
            shard: COORDINATOR,
            conn: Connection::admin(admin()),
            out: Vec::new(),
            qty: 0,
            waiting: false,
            admin: Some(ask),
            sales_ask,
            key: None,
        };
        let now = self.now();
        let step = self.shards[COORDINATOR].core.input(
            key,
            &mut client.conn,
            &admin_request(ask),
            &mut client.out,
            now,
        );
        self.check_refusals(COORDINATOR);
        self.clients.insert(key, client);
        self.carry_out(key, step);
    }

    /// What an operator read: a restock acknowledged counts in the stock from now on.
    fn read_admin(&mut self, ask: AdminAsk, sales_ask: u64, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        match text.get(9..12).unwrap_or("") {
            "200" => {
                // Operations run in the order asked: a close is in force if none was asked
                // after it.
                if ask == (AdminAsk::Sales { closed: true }) && sales_ask == self.sales_asks {
                    let sold = self.sold_before + self.sold_in_life();
                    self.closed_at_sold.get_or_insert(sold);
                }
                if let AdminAsk::Restock(add) = ask {
                    assert!(text.contains(&format!("\"added\":{add}")), "{text}");
                    self.coverage.restocks_acked += 1;
                    self.stock_acked += add;
                    self.restocks_in_flight -= add;
                }
            }
            "503" => {} // a journal failed: the outcome is unknown until the restart
            _ => panic!("an operator got an unexpected response: {text}"),
        }
    }

    /// Carries out a step on a client connection, as a transport would.
    fn carry_out(&mut self, key: ConnKey, step: Step) {
        let client = self.clients.get_mut(&key).expect("a live client");
        client.waiting = matches!(step.next, Next::Wait(_));
        assert!(
            step.next != Next::Close || self.shards[client.shard].core.draining(),
            "a well-formed order keeps its connection unless the server stops"
        );
        self.apply_release(key, step.release);
    }

    /// What the core said of a client's output.
    fn apply_release(&mut self, key: ConnKey, release: Release) {
        let client = self.clients.get_mut(&key).expect("a live client");
        let at = client.shard;
        match release {
            Release::Held => {}
            Release::Drop => {
                // The journal failed under it: the client gets no answer.
                self.clients.remove(&key);
                self.shards[at].core.closed(key);
            }
            Release::Now => {
                if let (Some(ask), false) = (client.admin, client.out.is_empty()) {
                    let (sales_ask, bytes) = (client.sales_ask, std::mem::take(&mut client.out));
                    self.read_admin(ask, sales_ask, &bytes);
                } else if let (false, Some(k)) = (client.out.is_empty(), client.key) {
                    let (qty, out) = (client.qty, std::mem::take(&mut client.out));
                    self.keyed_answer(k, qty, &out);
                }
                let client = self.clients.get_mut(&key).expect("a live client");
                if !client.out.is_empty() {
                    let qty = client.qty;
                    let closed = client.out.starts_with(b"HTTP/1.1 409");
                    let seen = read_response(&client.out);
                    client.out.clear();
                    self.coverage.orders_closed += u64::from(closed);
                    match seen {
                        Some(true) => {
                            self.acked += qty;
                            self.acked_total += qty;
                            self.coverage.tickets_acked += qty;
                        }
                        Some(false) => {
                            self.coverage.refusals_seen += 1;
                            let slack = i128::from(qty) - i128::from(self.stock_at_start);
                            self.refused_min =
                                Some(self.refused_min.map_or(slack, |m| m.min(slack)));
                        }
                        None => {}
                    }
                }
                if !self.clients[&key].waiting {
                    self.clients.remove(&key);
                    self.shards[at].core.closed(key);
                }
            }
        }
    }

    /// A client with key number `k` read `out` (released): a first answer counts its tickets;
    /// a replay (`Idempotent-Replayed`) repeats the first acknowledged answer's body, and a key
    /// acknowledged once is never executed again.
    fn keyed_answer(&mut self, k: u64, qty: u64, out: &[u8]) {
        let text = String::from_utf8_lossy(out).to_string();
        match text.get(9..12).unwrap_or("") {
            "409" | "503" => return,
            "200" => {}
            _ => panic!("a keyed order got an unexpected response: {text}"),
        }
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        let replayed = text.contains("Idempotent-Replayed: true");
        let sold = body.contains("\"success\":true");
        self.coverage.keyed_answers += 1;
        self.coverage.keyed_replays += u64::from(replayed);
        if !replayed {
            assert!(
                !self.keyed_before.contains(&k),
                "key {k} was executed again after a restart, though acknowledged before it"
            );
            assert!(
                self.keyed_executed.insert(k),
                "key {k} was executed twice in one life"
            );
        }
        match self.keyed_acks.get(&k) {
            Some(first) => {
                assert_eq!(first, &body, "key {k}'s answers differ");
            }
            None => {
                self.keyed_acks.insert(k, body);
                if sold {
                    // Its sale is durable (in this life or one a crash ended).
                    self.acked_total += qty;
                    self.coverage.tickets_acked += qty;
                }
            }
        }
        if sold && !replayed {
            // A first answer comes only from its execution, in this life.
            self.acked += qty;
        }
        if !sold && !replayed {
            // A replayed refusal was counted when it was first given (maybe before a restock).
            self.coverage.refusals_seen += 1;
            let slack = i128::from(qty) - i128::from(self.stock_at_start);
            self.refused_min = Some(self.refused_min.map_or(slack, |m| m.min(slack)));
        }
    }

    /// Every key a client was answered for is in its owner shard's table, with that answer:
    /// recovery kept it, so a retry replays it instead of selling again.
    fn check_keys_recovered(&self) {
        use ticketd::app::idempotency::digest;
        use ticketd::durability::journal::keyed::owner;
        for (&k, body) in &self.keyed_acks {
            let key = digest(key_name(k).as_bytes());
            let shard = &self.shards[owner(key, self.n())];
            let record = shard.core.app.keys.get(key);
            let record = record.unwrap_or_else(|| panic!("key {k} was lost by a restart"));
            let remaining = format!("\"remaining\":{},", record.remaining);
            assert!(
                body.contains(&remaining) && body.contains("\"success\":true") == record.sold,
                "key {k}: recovered {record:?}, answered {body}"
            );
        }
    }

    /// Shard `at`'s transport carries out the core's news for its connections; false if none.
    /// On the coordinator, the admin listener's connections ask for their answers and their
    /// held output, as its tasks do.
    fn turn(&mut self, at: usize) -> bool {
        let mut any = false;
        let admins: Vec<ConnKey> = self
            .clients
            .iter()
            .filter(|(_, c)| c.admin.is_some() && c.shard == at)
            .map(|(&k, _)| k)
            .collect();
        for key in admins {
            let answer = self.shards[at].core.take_admin_answer(key);
            let now = self.now();
            let client = self.clients.get_mut(&key).expect("listed");
            if let Some(answer) = answer {
                any = true;
                let step = self.shards[at].core.resume(
                    key,
                    &mut client.conn,
                    answer,
                    &mut client.out,
                    now,
                );
                self.carry_out(key, step);
            } else if !client.waiting {
                let release = self.shards[at].core.release(key);
                any |= release != Release::Held;
                self.apply_release(key, release);
            }
        }
        while let Some((key, event)) = self.shards[at].core.next_conn_event() {
            any = true;
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
                    self.check_refusals(at);
                    self.carry_out(key, step);
                }
            }
        }
        if any {
            self.coverage.turns += 1;
        }
        any
    }

    /// Shard `from` lets its next message out, if the core allows; false if it does not.
    fn mail(&mut self, from: usize) -> bool {
        let dropped = self.shards[from].core.tickets_dropped();
        let next = self.shards[from].core.next_mail();
        self.coverage.tickets_dropped += self.shards[from].core.tickets_dropped() - dropped;
        let Some((to, message)) = next else {
            return false;
        };
        if self.trace {
            eprintln!("mail {from}->{to} {message:?}");
        }
        assert_ne!(to, from, "no message to oneself");
        self.channels[from][to].push_back(message);
        self.shards[from].core.mail_sent();
        true
    }

    /// Delivers the oldest message of a random non-empty channel; false when none is in flight.
    fn deliver_one(&mut self) -> bool {
        let busy: Vec<(usize, usize)> = (0..self.n())
            .flat_map(|f| (0..self.n()).map(move |t| (f, t)))
            .filter(|&(f, t)| !self.channels[f][t].is_empty())
            .collect();
        if busy.is_empty() {
            return false;
        }
        let (from, to) = self.rng.pick(&busy);
        let message = self.channels[from][to].pop_front().expect("busy");
        if self.trace {
            eprintln!("deliver {from}->{to} {message:?}");
        }
        if self.shards[to].core.finished() {
            // The shard has exited: its mesh receivers are gone. Only a report may still reach
            // it (the peer's reporter had not seen it leave); anything else would be lost.
            assert!(
                matches!(message, Message::Report { .. }),
                "{message:?} sent to shard {to}, which has left"
            );
            return true;
        }
        if message == Message::Halt && !self.failed(to) {
            self.coverage.halts_received += 1;
        }
        if matches!(message, Message::Stock(_)) {
            self.coverage.stock_messages += 1;
        }
        if matches!(
            message,
            Message::Stock(Msg::Take {
                kind: TakeKind::Order,
                ..
            })
        ) {
            self.coverage.takes += 1;
        }
        let now = self.now();
        self.shards[to].core.on_message(from, message, now);
        self.check_refusals(to);
        true
    }

    /// Shard `at` hands out a journal batch, as the driver stages a write: when it is `idle`,
    /// or on a busy turn only if the oldest change is overdue. False if none was handed out.
    fn stage(&mut self, at: usize, idle: bool) -> bool {
        if self.shards[at].staged.is_some() {
            return false;
        }
        let now = self.now();
        let Some(batch) = self.shards[at].core.next_batch(now, idle) else {
            return false;
        };
        self.coverage.staged += 1;
        self.coverage.staged_overdue += u64::from(!idle);
        self.shards[at].staged = Some(batch);
        true
    }

    /// Writes shard `at`'s staged batch and tells its core how it went; `Err` if the journal
    /// failed (or the power went).
    fn write(&mut self, at: usize) -> Result<(), JournalError> {
        let batch = self.shards[at].staged.take().expect("a staged batch");
        self.coverage.writes += 1;
        let result = block_on(self.shards[at].writer.write(&batch));
        if self.trace {
            eprintln!("write {at}: {result:?}");
        }
        let now = self.now();
        match &result {
            Ok(()) => self.shards[at].core.write_done(&batch, now),
            Err(e) => self.shards[at].core.write_failed(e.clone()),
        }
        result
    }

    /// Writes a staged batch of a random shard, sometimes after injecting a disk fault.
    fn write_one(&mut self) {
        let staged: Vec<usize> = (0..self.n())
            .filter(|&i| self.shards[i].staged.is_some())
            .collect();
        if staged.is_empty() {
            return;
        }
        let at = self.rng.pick(&staged);
        if self.rng.below(FAULT_ONE_IN) == 0 {
            let fault = match self.rng.below(4) {
                0 => Fault::ShortWrite(1 + self.rng.below(8191) as usize),
                1 => Fault::WriteZero,
                2 => Fault::WriteError,
                _ => Fault::SyncError,
            };
            if self.trace {
                eprintln!("fault {fault:?} at {at}");
            }
            self.disk.inject(fault);
            self.coverage.faults += 1;
        }
        if self.write(at).is_err() {
            self.coverage.journals_failed += 1;
            let due = self.steps + self.rng.below(CRASH_AFTER_FAILURE_STEPS_MAX);
            self.crash_due.get_or_insert(due);
        }
    }

    /// Shard `from` offers `to` its slice size; a full queue drops one in three.
    fn report(&mut self, from: usize, to: usize) -> bool {
        let Some(available) = self.shards[from].core.report_due(to) else {
            return false;
        };
        self.coverage.reports += 1;
        if self.rng.below(3) == 0 {
            self.coverage.reports_dropped += 1;
            return true;
        }
        self.channels[from][to].push_back(Message::Report { available });
        self.shards[from].core.report_sent(to, available);
        true
    }

    /// What a reboot finds: a seeded number of torn bytes (or a tear by sector), a seeded
    /// prefix of unsynced directory changes.
    fn random_crash(&mut self) -> Crash {
        let sectors_seed = (self.rng.below(4) == 0).then(|| self.rng.next());
        self.coverage.sector_tears += u64::from(sectors_seed.is_some());
        Crash {
            dir_ops_kept: self.rng.below(4) as usize,
            // A batch rewrites the block it starts in, so most tears that cut a record fall
            // within the first block of the write.
            torn_bytes: match self.rng.below(8) {
                0 => 0,
                1..=4 => self.rng.below(BLOCK_BYTES as u64) as usize,
                5 | 6 => self.rng.below(3 * BLOCK_BYTES as u64) as usize,
                _ => usize::MAX,
            },
            sectors_seed,
        }
    }

    /// The power goes (sometimes in the middle of a write on every shard with one due), the
    /// machine reboots, and the journal recovers, with a shard count picked anew.
    fn crash_and_restart(&mut self) {
        let mut tear = None;
        if self.rng.below(2) == 0 {
            self.coverage.crashes_mid_commit += 1;
            let due = (0..self.n())
                .filter(|&i| self.shards[i].staged.is_some() || self.shards[i].core.wants_write())
                .count() as u64;
            let ops = self.rng.below(MID_COMMIT_OPS_PER_SHARD * due + 1);
            self.disk.cut_power_after(ops);
            let first = self.rng.below(self.n() as u64) as usize;
            for i in 0..self.n() {
                let at = (first + i) % self.n();
                if !self.stage(at, true) && self.shards[at].staged.is_none() {
                    continue;
                }
                let before = self.disk.bytes(&self.shards[at].file);
                if self.write(at).is_err() && tear.is_none() {
                    let after = self.disk.bytes(&self.shards[at].file);
                    tear = tear_within(before, after).map(|(lo, hi)| lo + self.rng.below(hi - lo));
                }
            }
        }
        let mut crash = self.random_crash();
        if let Some(torn_bytes) = tear.filter(|_| self.rng.below(4) != 0) {
            crash.torn_bytes = torn_bytes as usize;
        }
        let shards = self.rng.pick(&SHARD_COUNTS);
        self.reboot(crash, shards);
    }

    /// The machine stops now and reboots on what the disk kept (`crash`), with `shards` shards.
    fn reboot(&mut self, crash: Crash, shards: usize) {
        self.coverage.crashes += 1;
        if self.trace {
            eprintln!("crash {crash:?}");
        }
        let taken = self.sold_before + self.sold_in_life();
        self.disk = self.disk.crash(crash);
        if shards != self.n() {
            self.coverage.shard_count_changes += 1;
        }
        let compact_bytes = self.rng.pick(&COMPACT_BYTES);
        self.restart(shards, compact_bytes, taken);
    }

    /// Opens the journal on the current disk; sometimes the power goes during the start-up, and
    /// the next start (after a reboot) must succeed.
    fn recover(&mut self, shards: usize, compact_bytes: u64) -> (Recovered, Vec<SimShard>) {
        let cut = self.rng.below(4) == 0;
        if cut {
            self.disk.cut_power_after(self.rng.below(START_UP_OPS_MAX));
        }
        match open_shards(&self.disk, shards, self.stock, compact_bytes) {
            Ok(opened) => {
                self.disk.cut_power_after(u64::MAX);
                opened
            }
            Err(e) if cut && self.disk.power_is_cut() => {
                self.coverage.start_ups_cut += 1;
                if self.trace {
                    eprintln!("start-up cut: {e}");
                }
                let crash = self.random_crash();
                self.disk = self.disk.crash(crash);
                open_shards(&self.disk, shards, self.stock, compact_bytes)
                    .unwrap_or_else(|e| panic!("recovery after a cut start-up failed: {e}"))
            }
            Err(e) => panic!("recovery failed: {e}"),
        }
    }

    /// Starts a new life with `shards` shards: recovers the journal, checks what it found
    /// against what clients were told (`taken`: every ticket ever taken from a slice), and
    /// starts every core on its shard file.
    fn restart(&mut self, shards: usize, compact_bytes: u64, taken: u64) {
        let (r, opened) = self.recover(shards, compact_bytes);
        if self.trace {
            eprintln!(
                "restart with {shards} shards: sold {} available {} {:?}",
                r.sold, r.available, r.warnings
            );
        }
        assert!(
            self.stock_acked <= r.stock && r.stock <= self.stock_acked + self.restocks_in_flight,
            "the journal keeps the stock and every acknowledged restock: {} recovered, {} \
             acknowledged, {} in flight",
            r.stock,
            self.stock_acked,
            self.restocks_in_flight
        );
        self.coverage.restocks_in_flight_at_crash += u64::from(self.restocks_in_flight > 0);
        assert_eq!(
            r.sold + r.available,
            r.stock,
            "conservation across a restart"
        );
        assert!(
            self.acked_total <= r.sold,
            "an acknowledged sale was forgotten: {} tickets acknowledged, {} recovered as sold",
            self.acked_total,
            r.sold
        );
        assert!(
            self.sold_before <= r.sold,
            "sales recovered at the last start were forgotten: {} then, {} now",
            self.sold_before,
            r.sold
        );
        assert!(
            r.sold <= taken,
            "recovery invented sales: {} recovered as sold, {taken} ever taken from slices",
            r.sold
        );
        if let Some(slack) = self.refused_min {
            assert!(
                i128::from(r.available) < slack + i128::from(r.stock),
                "a \"sold out\" was contradicted: {} tickets came back after the crash, more \
                 than a refused quantity plus the restocks since (slack {slack}, stock {})",
                r.available,
                r.stock
            );
        }
        if self.all_keyed {
            let keyed: u64 = r
                .shards
                .iter()
                .flat_map(|s| &s.keys)
                .filter(|k| k.sold)
                .map(|k| k.qty)
                .sum();
            assert_eq!(
                keyed, r.sold,
                "every order carried a key: the recovered keys' sales must be every ticket sold"
            );
        }
        let warned = |what: &str| r.warnings.iter().any(|w| w.contains(what));
        self.coverage.torn_tails_cut += u64::from(warned("torn tail"));
        self.coverage.transit_restored += u64::from(warned("in transit"));

        self.stock = r.stock;
        self.stock_acked = r.stock;
        self.restocks_in_flight = 0;
        self.stock_at_start = r.stock;
        self.sold_before = r.sold;
        self.available = r.available;
        self.shards = opened;
        self.channels = vec![vec![VecDeque::new(); shards]; shards];
        self.clients.clear();
        self.acked = 0;
        self.crash_due = None;
        self.check_keys_recovered();
        self.keyed_before = self.keyed_acks.keys().copied().collect();
        self.keyed_executed.clear();
        self.check();
    }

    fn step(&mut self) {
        self.steps += 1;
        self.coverage.steps += 1;
        let failed = self.crash_due.is_some_and(|due| self.steps >= due);
        if failed || self.rng.below(CRASH_ONE_IN) == 0 {
            self.crash_and_restart();
            return;
        }
        let shards = self.n() as u64;
        let at = self.rng.below(shards) as usize;
        match self.rng.below(100) {
            28 | 29 => {
                let ask = match self.rng.below(10) {
                    0 => AdminAsk::Sales { closed: true },
                    1 => AdminAsk::Sales { closed: false },
                    _ => AdminAsk::Restock(1 + self.rng.below(self.stock / 4 + 8)),
                };
                self.admin(ask);
            }
            0..=27 if self.rng.below(KEYED_ONE_IN) == 0 => {
                let k = self.rng.below(KEYS);
                self.order_keyed(at, key_qty(k, self.first_stock), Some(k));
            }
            0..=27 => {
                let qty = match self.rng.below(20) {
                    0 => 1 + self.rng.below(self.stock + 2), // large: gathers, and failures
                    1..=3 => 1 + self.rng.below(self.stock / 4 + 2), // medium
                    _ => 1 + self.rng.below(3),
                };
                self.order_any(at, qty);
            }
            30..=39 => {
                self.turn(at);
            }
            40..=51 => {
                self.mail(at);
            }
            52..=76 => {
                self.deliver_one();
            }
            77..=83 => {
                let idle = self.rng.below(2) == 0;
                self.stage(at, idle);
            }
            84..=92 => self.write_one(),
            _ => {
                let to = self.rng.below(shards) as usize;
                if to != at {
                    self.report(at, to);
                }
            }
        }
        self.check();
    }

    /// One pass over every shard: carry out news, write what is due (but `uncommitted`'s), let
    /// mail out. True if anything moved.
    fn progress(&mut self, uncommitted: Option<usize>) -> bool {
        let mut moved = false;
        for at in 0..self.n() {
            moved |= self.turn(at);
            if Some(at) != uncommitted {
                while self.stage(at, true) || self.shards[at].staged.is_some() {
                    self.write(at).expect("no fault while settling");
                    moved = true;
                }
            }
            while self.mail(at) {
                moved = true;
            }
        }
        moved
    }

    /// Runs everything in flight until nothing more moves. Messages that keep moving tickets
    /// while no order is answered fail the run as a livelock.
    fn settle(&mut self, uncommitted: Option<usize>) {
        let mut quiet = 0u64;
        let mut clients = self.clients.len();
        loop {
            let moved = self.progress(uncommitted);
            if !self.deliver_one() && !moved {
                break;
            }
            let now = self.clients.len();
            quiet = if now < clients { 0 } else { quiet + 1 };
            clients = now;
            assert!(
                quiet <= SETTLE_QUIET_DELIVERIES_MAX,
                "the protocol does not settle: {quiet} steps with no order answered; slices {:?}",
                self.shards
                    .iter()
                    .map(|s| s.core.app.node.slice().available())
                    .collect::<Vec<_>>()
            );
            self.check();
        }
        let most = &mut self.coverage.quiet_deliveries_max;
        *most = (*most).max(quiet);
    }

    /// Settles everything; every order must then be answered and released. Only with every
    /// journal healthy.
    fn quiesce(&mut self) {
        assert!(self.crash_due.is_none(), "no journal failed");
        self.settle(None);
        assert!(
            self.clients.is_empty(),
            "orders left unanswered: {}",
            self.clients.len()
        );
    }

    /// Reports settle (some dropped and offered again), then every shard's `/available` is the
    /// truth at rest.
    fn reports_settle(&mut self) {
        loop {
            let mut offered = false;
            for from in 0..self.n() {
                for to in (0..self.n()).filter(|&to| to != from) {
                    offered |= self.report(from, to);
                }
            }
            while self.deliver_one() {}
            if !offered {
                break;
            }
        }
        let truth: u64 = self
            .shards
            .iter()
            .map(|s| s.core.app.node.slice().available())
            .sum();
        for (i, shard) in self.shards.iter().enumerate() {
            assert_eq!(
                shard.core.app.node.total_available(),
                truth,
                "shard {i}'s /available at rest"
            );
        }
    }

    /// Stops the server: every shard drains, finishes its transport once it has no client left
    /// (in a seeded order), and all must leave with every order answered.
    fn shut_down(&mut self) {
        for shard in &mut self.shards {
            shard.core.stop();
        }
        let mut steps = 0;
        while !self.shards.iter().all(|s| s.core.finished()) {
            steps += 1;
            assert!(
                steps <= SHUTDOWN_STEPS_MAX,
                "a shard cannot leave: finished {:?}, clients {}",
                self.shards
                    .iter()
                    .map(|s| s.core.finished())
                    .collect::<Vec<_>>(),
                self.clients.len()
            );
            let at = self.rng.below(self.n() as u64) as usize;
            match self.rng.below(6) {
                0 => {
                    let busy = self.clients.values().any(|c| c.shard == at);
                    if !busy {
                        let now = self.now();
                        self.shards[at]
                            .core
                            .transport_finished(now, now + STOP_GRACE);
                    }
                }
                1 => {
                    self.turn(at);
                }
                2 => {
                    self.mail(at);
                }
                3 => {
                    if self.stage(at, true) || self.shards[at].staged.is_some() {
                        self.write(at).expect("no fault while shutting down");
                    }
                }
                _ => {
                    self.deliver_one();
                }
            }
            self.check();
        }
        assert!(
            self.clients.is_empty(),
            "every order is answered before the shards leave"
        );
        self.coverage.shutdowns += 1;
    }

    /// Sells one ticket at a time on random shards until an order is refused; that must happen
    /// only once every ticket is sold.
    fn sell_out(&mut self) {
        loop {
            let at = self.rng.below(self.n() as u64) as usize;
            let before = self.acked;
            self.order_any(at, 1);
            self.quiesce();
            self.check();
            if self.acked == before {
                break;
            }
        }
        assert_eq!(
            self.sold_before + self.sold_in_life(),
            self.stock_now(),
            "every ticket sells"
        );
        assert_eq!(
            self.acked,
            self.sold_in_life(),
            "every sale is acknowledged"
        );
    }
}

/// One seeded run: random steps, then everything settles, reports settle, sometimes a shutdown,
/// then it sells out and survives a last crash.
fn run(seed: u64, steps: u64, coverage: &mut Coverage) {
    let mut sim = Sim::new(seed, coverage);
    for _ in 0..steps {
        sim.step();
    }
    if sim.crash_due.is_some() {
        sim.crash_and_restart();
    }
    if seed.is_multiple_of(3) {
        // A shutdown with orders and messages still in flight.
        sim.shut_down();
        let shards = sim.n();
        sim.reboot(Crash::default(), shards);
    }
    sim.quiesce();
    if sim.shards[COORDINATOR].core.app.node.sales_closed() {
        sim.admin(AdminAsk::Sales { closed: false });
        sim.quiesce();
    }
    sim.reports_settle();
    sim.sell_out();
    sim.crash_and_restart();
    assert_eq!(
        sim.sold_before, sim.stock,
        "the last crash finds every ticket sold"
    );
}

/// Runs a seed; a failure prints how to replay it.
fn run_reporting(seed: u64, coverage: &mut Coverage) -> bool {
    let outcome =
        std::panic::catch_unwind(AssertUnwindSafe(|| run(seed, STEPS_PER_SEED, coverage)));
    if outcome.is_err() {
        eprintln!(
            "simulation failed: seed {seed}; replay with SIM_SEED={seed} cargo test -p ticketd \
             --test simulation"
        );
    }
    outcome.is_ok()
}

/// Many seeded runs of the shard cores over the journal, with disk faults, crashes and
/// shutdowns, keep every invariant; `SIM_SEED` replays one run, `SIM_STEPS` sets the total.
#[test]
fn the_shard_cores_and_the_journal_keep_every_invariant_under_any_interleaving_and_crash() {
    let mut coverage = Coverage::default();
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let total: u64 = std::env::var("SIM_STEPS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(DEFAULT_STEPS);
            (1..=total.div_ceil(STEPS_PER_SEED)).collect()
        }
    };
    let failed: Vec<u64> = seeds
        .iter()
        .copied()
        .filter(|&seed| !run_reporting(seed, &mut coverage))
        .collect();
    eprintln!("{}", coverage.summary());
    assert!(
        failed.is_empty(),
        "{} of {} seeds failed, the first: {:?}",
        failed.len(),
        seeds.len(),
        &failed[..failed.len().min(20)]
    );
    if std::env::var("SIM_SEED").is_err() {
        // Each kind of step ran: a run that silently stopped exercising one proves less.
        for (what, count) in [
            ("crashes", coverage.crashes),
            ("sector tears", coverage.sector_tears),
            ("overdue stages", coverage.staged_overdue),
            ("failed journals", coverage.journals_failed),
            ("halts received", coverage.halts_received),
            ("dropped reports", coverage.reports_dropped),
            ("shutdowns", coverage.shutdowns),
            ("refusals seen", coverage.refusals_seen),
            ("refusals on the spot", coverage.refused_locally),
            ("restocks acknowledged", coverage.restocks_acked),
            (
                "restocks in flight at a crash",
                coverage.restocks_in_flight_at_crash,
            ),
            ("orders refused as closed", coverage.orders_closed),
        ] {
            assert!(count > 0, "the run never exercised {what}");
        }
    }
}

/// While stock is plentiful and orders are spread over the shards, almost every order is served
/// locally and moves are rare (amortised refills), with every sale journaled and acknowledged.
#[test]
fn plentiful_stock_is_sold_locally_with_few_moves() {
    let shards = 4;
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(7), shards, 200_000, 16 * 1024, &mut coverage);
    // Skewed load: shard 0 gets 60k of 80k orders but holds 50k tickets, so it must refill.
    for i in 0..80_000u64 {
        let at = if i % 4 != 3 {
            0
        } else {
            (1 + (i / 4) % 3) as usize
        };
        sim.order(at, 1);
        sim.quiesce();
        if i % 1000 == 0 {
            sim.reports_settle();
        }
    }
    sim.check();
    assert_eq!(sim.acked, 80_000, "every sale is acknowledged");
    let moves = |f: fn(&ticketd::stock::rebalance::Moves) -> u64| -> u64 {
        sim.shards.iter().map(|s| f(s.core.app.node.moves())).sum()
    };
    assert_eq!(moves(|m| m.orders_escalated), 0, "no order waited");
    let refills = moves(|m| m.refills_asked);
    assert!(
        refills > 0 && refills < 100,
        "refills are amortised: {refills} for 80k orders"
    );
}

/// A sale that the coordinator decides for another shard's escalated order, and answers with a
/// `Decided` that carries no tickets (it kept at most one after the sale), survives a crash that
/// comes before the coordinator's next group commit. Stock 4 on 2 shards (2 each): shard 1 asks
/// for 3, escalates with its 2, the coordinator sells 3 and keeps 1, and `Decided { sold: true,
/// tickets: 0 }` goes to shard 1 only once the coordinator's `Sale` is durable; the power goes
/// before shard 0 commits, so the client has heard nothing.
#[test]
fn a_sale_decided_without_moving_tickets_survives_a_crash() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(1), 2, 4, COMPACT_BYTES_DEFAULT, &mut coverage);
    sim.order(1, 3);
    sim.settle(Some(COORDINATOR));
    assert_eq!(sim.sold_in_life(), 3, "the coordinator sold 3");
    assert_eq!(
        sim.acked, 0,
        "nothing is acknowledged before the sale is durable"
    );
    sim.reboot(Crash::default(), 2);
}

/// A sale of the coordinator's own escalated order survives a crash that comes before the
/// coordinator's next group commit: its response waits for the `Sale`, which the coordinator
/// journaled in another event (the peer's `Taken`) than the order's.
#[test]
fn the_coordinators_own_escalated_sale_survives_a_crash() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(1), 2, 4, COMPACT_BYTES_DEFAULT, &mut coverage);
    sim.order(COORDINATOR, 3);
    sim.settle(Some(COORDINATOR));
    assert_eq!(sim.sold_in_life(), 3, "the coordinator sold 3");
    assert_eq!(
        sim.acked, 0,
        "nothing is acknowledged before the sale is durable"
    );
    sim.reboot(Crash::default(), 2);
}

/// Scarce stock stops moving once no order needs it (stock 70 on 2 shards: shard 1 sells 30 and
/// keeps 5, shard 0 sells 32, keeps 3 and asks for a refill; then no order comes).
#[test]
fn scarce_stock_stops_moving_once_no_order_needs_it() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(1), 2, 70, COMPACT_BYTES_DEFAULT, &mut coverage);
    sim.order(1, 30);
    sim.order(COORDINATOR, 32);
    sim.quiesce();
}

/// Issue 12, finding 2: a "sold out" must not rest on a sale that is not yet durable. Stock 4 on
/// 2 shards: shard 1 sells its 2 (not yet committed); a client of shard 0 asks for 3; the
/// coordinator asks shard 1, which has none left. If its `Taken { tickets: 0 }` left at once,
/// the coordinator would refuse the order, the client would read "sold out", and a crash before
/// shard 1's commit would bring its 2 tickets back: 4 available after a refusal of 3, with no
/// restock. `Taken` waits for shard 1's journal, so the refusal waits too, and the crash finds
/// nothing contradicted.
#[test]
fn a_sold_out_never_rests_on_a_sale_a_crash_could_undo() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(1), 2, 4, COMPACT_BYTES_DEFAULT, &mut coverage);
    sim.order(1, 2);
    sim.order(COORDINATOR, 3);
    sim.settle(Some(1));
    sim.reboot(Crash::default(), 2);
    // After the restart the order is refused only on a durable basis.
    sim.order(1, 4);
    sim.quiesce();
    sim.order(COORDINATOR, 1);
    sim.quiesce();
    // A refusal of 1, in a life that started with a stock of 4 (no restock).
    assert_eq!(sim.refused_min, Some(1 - 4));
    sim.reboot(Crash::default(), 2);
}

/// Issue 12, finding 1: an order waiting for the coordinator when the coordinator's journal
/// fails (here a compaction, with every sale before it durable) is answered 503 at once, and the
/// sale that a peer's late `Taken` then completes in memory (its `Receive` and `Sale` cannot be
/// journaled) is never acknowledged. Acknowledging it, with the response held only for the last
/// sequence number appended before the failure (already durable), would tell the client
/// "success" for tickets that a restart sells again.
#[test]
fn a_sale_completed_after_a_journal_failure_is_never_acknowledged() {
    let mut coverage = Coverage::default();
    // Compaction threshold 0: the journal compacts as soon as its file holds twice a snapshot.
    let mut sim = Sim::start(Rng(1), 2, 100, 0, &mut coverage);
    let mut sold = 0;
    let compaction = loop {
        assert!(sold < 200, "a compaction comes within a few commits");
        sim.order(COORDINATOR, 1);
        sold += 1;
        while sim.stage(COORDINATOR, true) {
            let staged = sim.shards[COORDINATOR].staged.as_ref().expect("staged");
            if staged.kind == BatchKind::Compact {
                break;
            }
            sim.write(COORDINATOR).expect("no fault yet");
        }
        sim.turn(COORDINATOR);
        if let Some(batch) = sim.shards[COORDINATOR].staged.take() {
            break batch;
        }
    };
    assert_eq!(
        sim.acked, sold,
        "the sales before are durable and acknowledged"
    );
    // More than shard 0 holds: it asks shard 1 for the rest, while the compaction is out.
    let left = sim.shards[COORDINATOR].core.app.node.slice().available();
    sim.order(COORDINATOR, left + 2);
    sim.shards[COORDINATOR].staged = Some(compaction);
    sim.disk.inject(Fault::WriteError);
    assert!(sim.write(COORDINATOR).is_err(), "the compaction fails");
    // Shard 1 answers the gather: its `Give` is durable, so its `Taken` leaves and arrives.
    sim.crash_due = Some(u64::MAX);
    sim.settle(None);
    assert_eq!(
        sim.acked, sold,
        "nothing sold after the failure is acknowledged"
    );
    assert!(
        sim.clients.is_empty(),
        "the waiting order was answered (503)"
    );
    sim.reboot(Crash::default(), 2);
}

/// Issue 13: once the stock is sold out, a refusal costs no message. Stock 100 on 4 shards is
/// sold out one ticket at a time; the gather that finds nothing left tells every shard that at
/// most 0 tickets remain (`Bound`, after the coordinator's journal holds what it rests on); from
/// then on every order, on any shard, is refused on the spot: no escalation, no `Take`, nothing
/// in any shard's mail.
#[test]
fn after_the_sell_out_refusals_cost_no_message() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(3), 4, 100, COMPACT_BYTES_DEFAULT, &mut coverage);
    sim.sell_out();
    assert!(
        sim.shards
            .iter()
            .all(|s| s.core.app.node.bound() == Some(0)),
        "every shard learnt the bound"
    );
    let escalated = |sim: &Sim| -> u64 {
        sim.shards
            .iter()
            .map(|s| s.core.app.node.moves().orders_escalated)
            .sum()
    };
    let before = escalated(&sim);
    let refusals = sim.coverage.refusals_seen;
    for i in 0..400u64 {
        sim.order((i % 4) as usize, 1 + i % 3);
        sim.progress(None);
        assert!(sim.clients.is_empty(), "answered at once");
        assert!(
            sim.channels.iter().flatten().all(VecDeque::is_empty),
            "no message for a refusal"
        );
    }
    assert_eq!(
        escalated(&sim),
        before,
        "no order escalated after the sell-out"
    );
    assert_eq!(sim.coverage.refusals_seen - refusals, 400);
    sim.reboot(Crash::default(), 4);
}

/// Issue 13: one gather serves every order queued at the coordinator. Stock 70 on 7 shards (10
/// each): six clients of the coordinator ask for 11 at once. The first order starts a gather
/// (six `Take`s); the five that queue meanwhile share the next one (six more). With one round per
/// order it took eighteen `Take`s (three rounds; orders after a generous round are served from
/// what it brought). Every order is answered, and none refused while its tickets existed (the
/// simulation's check at every refusal).
#[test]
fn one_gather_serves_every_queued_order() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(5), 7, 70, COMPACT_BYTES_DEFAULT, &mut coverage);
    for _ in 0..6 {
        sim.order(COORDINATOR, 11);
    }
    sim.quiesce();
    assert_eq!(sim.coverage.takes, 12, "two gathers, not six");
    assert_eq!(sim.acked, 66, "six orders of 11 sold");
}

/// Issue 17: a restock after the sell-out. Stock 100 on 4 shards is sold out, so every shard
/// refuses on the spot by the bound 0. A restock of 8 starts a new stock epoch on every shard
/// before its tickets exist; then an order of 2 on every shard sells (none is refused by the old
/// bound), the operator's answer came only once the restock was durable, and the stock survives
/// a crash: sold + available == 100 + 8.
#[test]
fn a_restock_lifts_the_bound_before_its_tickets_can_be_sold() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(3), 4, 100, COMPACT_BYTES_DEFAULT, &mut coverage);
    sim.sell_out();
    assert!(sim
        .shards
        .iter()
        .all(|s| s.core.app.node.bound() == Some(0)));
    sim.admin(AdminAsk::Restock(8));
    assert_eq!(
        sim.added_in_life(),
        0,
        "no ticket before every shard left the old epoch"
    );
    sim.quiesce();
    assert_eq!(sim.coverage.restocks_acked, 1, "the operator was answered");
    assert_eq!(sim.added_in_life(), 8);
    assert!(sim.shards.iter().all(|s| s.core.app.node.bound().is_none()));
    let acked = sim.acked;
    for at in 0..4 {
        sim.order(at, 2);
        sim.quiesce();
    }
    assert_eq!(
        sim.acked - acked,
        8,
        "every restocked ticket sold, none refused"
    );
    sim.order(1, 1);
    sim.quiesce();
    assert_eq!(sim.acked - acked, 8, "sold out again");
    sim.reboot(Crash::default(), 4);
    assert_eq!((sim.stock, sim.sold_before), (108, 108));
}

/// Issue 17: the power goes in the middle of a restock, after every shard entered the new epoch
/// and the coordinator journaled the `Restock`, but before its commit: the operator heard
/// nothing, and the restart finds the stock without it (or, in the other crashes the main run
/// makes, with it); either way conservation holds and a refusal seen before is not contradicted.
#[test]
fn a_restock_cut_by_a_crash_before_its_commit_never_happened() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(9), 3, 30, COMPACT_BYTES_DEFAULT, &mut coverage);
    sim.sell_out();
    sim.admin(AdminAsk::Restock(5));
    sim.settle(Some(COORDINATOR));
    assert_eq!(sim.added_in_life(), 5, "in the coordinator's slice");
    assert_eq!(
        sim.coverage.restocks_acked, 0,
        "not answered before it is durable"
    );
    sim.reboot(Crash::default(), 2);
    assert_eq!(sim.stock, 30, "the restock was never durable");
    sim.admin(AdminAsk::Restock(5));
    sim.quiesce();
    sim.reboot(Crash::default(), 3);
    assert_eq!(sim.stock, 35, "an acknowledged restock survives");
}

/// Issue 17: closed sales answer 409 and sell nothing, on every shard, and stay closed across a
/// restart (the coordinator's journal holds it); opened again, orders sell.
#[test]
fn closed_sales_refuse_orders_across_a_restart_until_opened() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(4), 3, 30, COMPACT_BYTES_DEFAULT, &mut coverage);
    sim.admin(AdminAsk::Sales { closed: true });
    sim.quiesce();
    for at in 0..3 {
        sim.order(at, 1);
        sim.quiesce();
    }
    assert_eq!((sim.acked, sim.coverage.orders_closed), (0, 3));
    sim.reboot(Crash::default(), 2);
    sim.order(1, 1);
    sim.quiesce();
    assert_eq!(
        (sim.acked, sim.coverage.orders_closed),
        (0, 4),
        "still closed"
    );
    sim.admin(AdminAsk::Sales { closed: false });
    sim.quiesce();
    sim.order(1, 1);
    sim.quiesce();
    assert_eq!(sim.acked, 1, "open again");
}

/// Issue 17: a restock queued while the bound it must lift is still travelling. Stock 3 on 3
/// shards: an order of 5 on shard 1 is gathered and refused, and the coordinator posts
/// `Bound { at_most: 3 }` to every shard (held until its journal is durable); the operator's
/// restock of 10 is posted behind it. Whatever order the mesh delivers them in, each shard gets
/// the old bound first (FIFO per pair) and then leaves its epoch, so an order of 5 on any shard
/// sells once the restock is answered, and every shard ends with no bound.
#[test]
fn a_restock_racing_the_bound_it_lifts_leaves_no_shard_refusing_by_it() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(11), 3, 3, COMPACT_BYTES_DEFAULT, &mut coverage);
    sim.order(1, 5);
    // Run everything but the delivery of `Bound`s: they stay at the front of their channels.
    for _ in 0..1000 {
        sim.progress(None);
        let next = (0..3)
            .flat_map(|f| (0..3).map(move |t| (f, t)))
            .find(|&(f, t)| {
                sim.channels[f][t]
                    .front()
                    .is_some_and(|m| !matches!(m, Message::Stock(Msg::Bound { .. })))
            });
        let Some((from, to)) = next else { break };
        let message = sim.channels[from][to].pop_front().expect("found");
        let now = sim.now();
        sim.shards[to].core.on_message(from, message, now);
    }
    assert_eq!(sim.shards[COORDINATOR].core.app.node.bound(), Some(3));
    let travelling = |sim: &Sim| {
        sim.channels
            .iter()
            .flatten()
            .flatten()
            .filter(|m| matches!(m, Message::Stock(Msg::Bound { .. })))
            .count()
    };
    assert_eq!(travelling(&sim), 2, "the bound is on its way to both peers");
    sim.admin(AdminAsk::Restock(10));
    sim.quiesce();
    assert_eq!(
        sim.coverage.refusals_seen, 1,
        "the order of 5 was refused before the restock"
    );
    assert_eq!(sim.coverage.restocks_acked, 1);
    assert!(
        sim.shards
            .iter()
            .all(|s| s.core.app.node.bound().is_none() && s.core.app.node.epoch() == 1),
        "every shard left the old epoch and its bound"
    );
    for at in [2, 1] {
        sim.order(at, 5);
        sim.quiesce();
    }
    assert_eq!(sim.acked, 10, "two orders of 5 sold from the 13 tickets");
    sim.reboot(Crash::default(), 3);
    assert_eq!((sim.stock, sim.sold_before), (13, 10));
}

/// Issue 17, the crash gap of an escalated keyed order: the key's owner (shard 1 of 3, stock 9,
/// 3 each) escalates a keyed order for 4; the coordinator sells it and its journal commits the
/// sale; the power goes before the owner's journal commits the key, so the client has heard
/// nothing. The retry after the restart must find the key with its sale (one record on the
/// coordinator holds both) and replay it, not sell 4 more.
#[test]
fn an_escalated_keyed_sale_and_its_key_survive_a_crash_together() {
    use ticketd::app::idempotency::digest;
    use ticketd::durability::journal::keyed::owner;
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(1), 3, 9, COMPACT_BYTES_DEFAULT, &mut coverage);
    let k = (0..)
        .find(|&k| owner(digest(key_name(k).as_bytes()), 3) == 1)
        .expect("some key belongs to shard 1");
    sim.order_keyed(1, 4, Some(k));
    // Shard 1 commits the `Give` of its slice, so its `Escalate` leaves; then nothing more of
    // its journal is committed.
    sim.progress(None);
    sim.settle(Some(1));
    assert_eq!(sim.sold_in_life(), 4, "the coordinator sold 4");
    assert_eq!(sim.acked, 0, "the owner's answer waits for its journal");
    sim.reboot(Crash::default(), 3);
    assert_eq!(sim.sold_before, 4, "the coordinator's sale is durable");
    sim.order_keyed(2, 4, Some(k));
    sim.quiesce();
    assert_eq!(sim.coverage.keyed_replays, 1, "the retry is a replay");
    assert_eq!(sim.sold_in_life(), 0, "nothing sold again");
    sim.reboot(Crash::default(), 2);
    assert_eq!(sim.sold_before, 4, "sold once");
}

/// An order escalated just before its shard heard of the operator's close: the coordinator
/// queues it behind the close, and decides it only after the close was acknowledged. Stock 4 on
/// 2 shards: the close starts; shard 1, not yet closed, escalates an order for 3; once the close
/// is answered, the order must get 409 `sales_closed`, not a sale.
#[test]
fn an_order_queued_behind_a_close_is_refused_as_closed() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(5), 2, 4, COMPACT_BYTES_DEFAULT, &mut coverage);
    sim.admin(AdminAsk::Sales { closed: true });
    sim.order(1, 3);
    sim.quiesce();
    assert!(sim.closed_at_sold.is_some(), "the close was acknowledged");
    assert_eq!((sim.acked, sim.coverage.orders_closed), (0, 1));
    assert_eq!(sim.sold_in_life(), 0);
    sim.reboot(Crash::default(), 2);
    assert_eq!(sim.sold_before, 0);
}

/// Opening sales takes effect nowhere before its record is durable: the coordinator journals it
/// first, and peers hear of it only then. Stock 4 on 2 shards, sales closed; the operator opens
/// them and the coordinator's journal does not commit: shard 1 still refuses as closed, and a
/// crash then finds sales closed with nothing sold (before, shard 1 opened and sold at once, and
/// the restart found sales closed after a sale made while they were open).
#[test]
fn opening_sales_waits_for_its_record() {
    let mut coverage = Coverage::default();
    let mut sim = Sim::start(Rng(6), 2, 4, COMPACT_BYTES_DEFAULT, &mut coverage);
    sim.admin(AdminAsk::Sales { closed: true });
    sim.quiesce();
    sim.admin(AdminAsk::Sales { closed: false });
    sim.settle(Some(COORDINATOR));
    sim.order(1, 1);
    sim.settle(Some(COORDINATOR));
    assert_eq!(
        (sim.sold_in_life(), sim.coverage.orders_closed),
        (0, 1),
        "shard 1 still closed"
    );
    sim.reboot(Crash::default(), 2);
    assert!(sim.shards[COORDINATOR].core.app.node.sales_closed());
    assert_eq!(sim.sold_before, 0);
}

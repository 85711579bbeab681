//! Shards: one glommio executor per selected CPU, each with its own SO_REUSEPORT listener, its
//! own slice of the stock, its own connections and counters. Nothing on the request path is
//! shared between shards; the only cross-shard traffic is explicit messages over a channel mesh.
//!
//! Sockets are driven by one of two transports, picked at start-up ([`Transport`]):
//! - **uring** (the default): the shard's own io_uring, driven by one task, see [`crate::net::uring`];
//! - **glommio**: glommio's `TcpStream`, one task per connection, and the accept loop below. It is
//!   the fallback for kernels without what the uring transport needs (Linux 6.0+).
//!
//! Either way, beyond `connections_max` a shard stops accepting and new connections wait in the
//! kernel's backlog: memory stays bounded.
//!
//! Per shard, these tasks run:
//! - the transport: with glommio, the accept loop and one task per connection driving a
//!   [`Connection`] over a socket; with uring, one driver task for all of them;
//! - the clock, refreshing the cached `Date` once a second;
//! - with a systemd watchdog, the heartbeat, advancing this shard's slot for the watchdog thread
//!   ([`crate::process::notify`]);
//! - the reporter, telling peers this slice's size when it changed, every half freshness period;
//! - one receiver per peer, applying their reports to this shard's view;
//! - the stop watcher (glommio transport; the uring driver checks the flag in its sweep), which
//!   starts the drain when a signal arrived;
//! - with `--latency-dump`, the dumper, which writes the shard's latency histograms every
//!   `--latency-dump-interval-seconds` and once more after the drain ([`crate::app::latency`]).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::channel_mesh::{MeshBuilder, Senders};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use proto_http::{HttpDate, Limits};

use crate::app::latency::{self, Recorder};
use crate::app::routes::{Answer, App, Forwarding};
use crate::config::Config;
use crate::config::{Durability, Mode};
use crate::durability::committer::Committer;
use crate::durability::journal::{self, Recovered, Seq, ShardStart, Store, Writer};
use crate::forward::forwarder::Forwarder;
use crate::forward::upstream::UpstreamConfig;
use crate::net::connection::{ConnLimits, Connection, Next};
use crate::net::uring;
use crate::process::notify::{Heartbeats, Notifier, Watchdog};
use crate::process::startup::{StartError, LOCK_FILE};
use crate::stock::rebalance::{Msg, Node, OrderId, Outbox, COORDINATOR};

/// Bytes read from a socket at once. 4 KiB holds sixteen pipelined wrk requests and keeps an idle
/// connection's buffers at one page.
const READ_BYTES: usize = 4 * 1024;

/// The listen backlog we ask for (the kernel caps it at `net.core.somaxconn`). Connections beyond
/// `connections_max` wait here; 4096 absorbs a burst of a few thousand load-test clients.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Messages a peer channel holds before senders wait: reports are small and superseded by the
/// next one, so a short queue is plenty.
const MESH_CHANNEL_CAPACITY: usize = 64;

/// How often the stop watcher looks at the signal flag: the added latency of a shutdown.
const STOP_POLL: Duration = Duration::from_millis(20);

/// After a response that closes the connection, unread input is drained for at most this long
/// before closing, so that a client still sending does not get a reset that destroys our response
/// in flight (nginx's lingering close does the same).
pub(crate) const LINGER: Duration = Duration::from_millis(500);

/// At most this much unread input is drained during the linger.
pub(crate) const LINGER_BYTES_MAX: usize = 64 * 1024;

/// The environment variable that picks the transport (until it becomes a configuration flag).
pub const TRANSPORT_ENV: &str = "TICKETD_TRANSPORT";

/// How a shard moves bytes between its sockets and its connections. Both run the same
/// [`Connection`] state machine; they differ only in who calls the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The shard's own io_uring with cooperative task running ([`crate::net::uring`]).
    Uring,
    /// glommio's `TcpStream`, one task per connection.
    Glommio,
}

impl Transport {
    /// The transport `TICKETD_TRANSPORT` asks for (uring when unset), or uring's fallback when
    /// this kernel cannot run it.
    pub fn select() -> Result<Transport, StartError> {
        let asked = match std::env::var(TRANSPORT_ENV) {
            Err(std::env::VarError::NotPresent) => Transport::Uring,
            Ok(value) => Transport::parse(&value).ok_or_else(|| {
                StartError::Executor(format!(
                    "{TRANSPORT_ENV}={value:?} is not a transport; use uring or glommio"
                ))
            })?,
            Err(std::env::VarError::NotUnicode(value)) => {
                return Err(StartError::Executor(format!(
                    "{TRANSPORT_ENV}={value:?} is not a transport; use uring or glommio"
                )))
            }
        };
        if asked == Transport::Uring {
            if let Err(missing) = uring::probe() {
                tracing::warn!(
                    reason = %missing,
                    "the uring transport cannot run on this kernel; using the glommio transport"
                );
                return Ok(Transport::Glommio);
            }
        }
        Ok(asked)
    }

    /// `uring` or `glommio`.
    pub fn parse(value: &str) -> Option<Transport> {
        match value.trim() {
            "uring" => Some(Transport::Uring),
            "glommio" => Some(Transport::Glommio),
            _ => None,
        }
    }

    /// The name, as `parse` reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Uring => "uring",
            Transport::Glommio => "glommio",
        }
    }
}

/// A message between shards.
#[derive(Clone, Copy, Debug)]
pub enum Message {
    /// "My slice now holds this many tickets." Superseded by the next one, so it may be dropped
    /// when the peer's queue is full.
    Report {
        /// The sender's available tickets.
        available: u64,
    },
    /// A message of the stock protocol (`rebalance`): never dropped, and sent in order.
    Stock(Msg),
    /// "I have stopped serving and expect nothing more": the coordinator outlives its peers'
    /// drains, so an order they escalated during a stop is still answered.
    Done,
    /// "My journal failed": every shard stops selling, so that no order waits on a shard that
    /// can no longer record what it gives.
    Halt,
}

/// Everything a shard's tasks share. It lives on one executor (`Rc`, `Cell`, `RefCell`).
pub(crate) struct Shard {
    /// The request handler and the stock.
    pub(crate) app: RefCell<App>,
    /// Protocol messages on their way to the mesh, in order, each with the journal sequence
    /// number that must be durable before it leaves (see `flusher`).
    mail: LocalSender<(usize, Message, Seq)>,
    /// Messages in `mail` not yet handed to the mesh.
    mail_pending: Rc<Cell<usize>>,
    /// Peers that sent `Done`.
    peers_done: Cell<usize>,
    /// Glommio transport: connections waiting for an order's outcome or a forwarded answer.
    waiters: RefCell<HashMap<OrderId, LocalSender<(Answer, Seq)>>>,
    /// uring transport: answers for the driver to hand to its waiting connections.
    /// With each answer, the journal sequence number its response must wait for (0: none): the
    /// coordinator's sale of an escalated order is journaled by the task that decides it.
    pub(crate) decided: RefCell<VecDeque<(OrderId, Answer, Seq)>>,
    /// Ticket mode: the connections to the vacancy service (`None` in the other modes).
    pub(crate) forwarder: Option<Forwarder>,
    /// With `--durability sync` (monolith, vacancy): the shard's journal.
    pub(crate) committer: Option<Committer>,
    /// uring transport: the driver's eventfd, rung when `decided` fills from another task.
    pub(crate) bell: Cell<Option<RawFd>>,
    /// uring transport: the driver is parked waiting for its eventfd; otherwise it looks at
    /// `decided` on its next turn anyway, and ringing would be a wasted syscall.
    pub(crate) parked: Cell<bool>,
    /// The cached `Date` value.
    pub(crate) date: Cell<HttpDate>,
    /// A stop was requested: answer with `Connection: close`, accept nothing new.
    pub(crate) draining: Cell<bool>,
    /// Open connections of the glommio transport: their socket and whether they are between
    /// requests (the uring transport keeps its own table).
    connections: RefCell<HashMap<u64, Rc<ConnEntry>>>,
    /// Connection limits.
    pub(crate) limits: ConnLimits,
    /// How long a head may take once started.
    pub(crate) head_timeout: Duration,
    /// How long a connection may idle between requests.
    pub(crate) idle_timeout: Duration,
    /// Service times, when `--latency-dump` asks for them; `None` costs the request path one
    /// test per input and nothing else.
    pub(crate) latency: Option<RefCell<Recorder>>,
}

/// A connection as the shard sees it, for the drain.
struct ConnEntry {
    fd: RawFd,
    idle: Cell<bool>,
}

impl Shard {
    /// Queues a message for the flusher. One that carries tickets, or tells a shard that its
    /// order was sold, leaves only once everything journaled so far (its `Give`, the coordinator's
    /// `Sale`) is durable: the receiver acts on it at once (journals a `Receive`, answers its
    /// client "success").
    fn post(&self, to: usize, message: Message) {
        let seq = match (&self.committer, message) {
            (Some(c), Message::Stock(msg)) if msg.must_be_durable() => c.appended(),
            _ => 0,
        };
        // Unbounded, and the flusher lives as long as the shard: this cannot fail.
        if self.mail.try_send((to, message, seq)).is_ok() {
            self.mail_pending.set(self.mail_pending.get() + 1);
        }
    }

    /// Sends what the stock protocol produced and hands out decided orders: to a waiting glommio
    /// connection directly, or to the uring driver's queue (waking it if it is parked). In ticket
    /// mode, hands queued requests to the forwarder.
    pub(crate) fn flush(self: &Rc<Self>) {
        if let Some(forwarder) = &self.forwarder {
            let mut app = self.app.borrow_mut();
            let forwarding = app.forwarding.as_mut().expect("ticket mode forwards");
            // Submitting touches no app state: the queue is drained in place, keeping its room.
            for (id, request) in forwarding.requests.drain(..) {
                forwarder.submit(self, id, request);
            }
        }
        self.journal_step();
        let (messages, outcomes) = {
            let mut app = self.app.borrow_mut();
            app.outbox.denied.clear();
            if app.outbox.messages.is_empty() && app.outbox.outcomes.is_empty() {
                return;
            }
            (
                std::mem::take(&mut app.outbox.messages),
                std::mem::take(&mut app.outbox.outcomes),
            )
        };
        for (to, msg) in messages {
            self.post(to, Message::Stock(msg));
        }
        let seq = self.committer.as_ref().map_or(0, Committer::appended);
        let mut queued = false;
        for (order, sale) in outcomes {
            queued |= self.hand_out(order, Answer::Decided(sale), seq);
        }
        if queued {
            self.ring_driver();
        }
    }

    /// Gives a forwarded request's answer to the connection waiting for it. Called from the
    /// forwarder's tasks, so the uring driver is woken.
    pub(crate) fn deliver(&self, id: OrderId, answer: Answer) {
        if self.hand_out(id, answer, 0) {
            self.ring_driver();
        }
    }

    /// Hands `answer` to a glommio connection waiting for `id`, or queues it for the uring
    /// driver (returns true then). Without a driver and a waiter, the connection is gone.
    fn hand_out(&self, id: OrderId, answer: Answer, seq: Seq) -> bool {
        match self.waiters.borrow_mut().remove(&id) {
            Some(waiter) => {
                let _ = waiter.try_send((answer, seq));
                false
            }
            None if self.bell.get().is_some() => {
                self.decided.borrow_mut().push_back((id, answer, seq));
                true
            }
            None => false,
        }
    }

    /// Journals the changes the last step made to the slice (or drops them without a journal);
    /// returns the sequence number a response of that step must wait for, if any.
    pub(crate) fn journal_step(&self) -> Option<Seq> {
        let mut app = self.app.borrow_mut();
        let changes = &mut app.outbox.changes;
        match &self.committer {
            Some(committer) => {
                let seq = committer.append(changes);
                drop(app);
                if seq.is_some() && committer.driver_writes() {
                    // Changes made by another task (a peer's message) while the driver is parked:
                    // it starts their group commit, so wake it (a no-op when it is not parked).
                    self.ring_driver();
                }
                seq
            }
            None => {
                changes.clear();
                None
            }
        }
    }

    /// The committer made more durable (or failed): held responses may go.
    pub(crate) fn durable_advanced(&self) {
        self.ring_driver();
    }

    /// This shard's journal failed: stop selling here and on every peer.
    pub(crate) fn halt(&self) {
        self.stop_selling();
        let (me, shards) = {
            let app = self.app.borrow();
            (app.shard, app.shards)
        };
        for peer in (0..shards).filter(|&p| p != me) {
            self.post(peer, Message::Halt);
        }
    }

    /// A journal failed (this shard's or a peer's): orders answer 503 from now on, and the ones
    /// waiting for the coordinator are answered now (their outcome is unknown), rather than wait
    /// for a gather that a failed shard may never finish. The uring driver answers its own (it
    /// alone knows them) when it sees `halted`.
    fn stop_selling(&self) {
        self.app.borrow_mut().halted = true;
        let waiting: Vec<_> = self.waiters.borrow_mut().drain().collect();
        for (_, waiter) in waiting {
            let _ = waiter.try_send((Answer::Halted, 0));
        }
        self.ring_driver();
    }

    fn ring_driver(&self) {
        if !self.parked.get() {
            return;
        }
        if let Some(bell) = self.bell.get() {
            self.parked.set(false); // one ring wakes it; the rest of this batch needs none
            uring::ring(bell);
        }
    }
}

/// Sends protocol messages to their shards, one at a time and in order: the protocol's argument
/// against premature sold-outs needs FIFO per pair of shards, and a full peer queue must make us
/// wait, never drop a message that carries tickets.
async fn flusher(
    shard: Rc<Shard>,
    mail: LocalReceiver<(usize, Message, Seq)>,
    pending: Rc<Cell<usize>>,
    senders: Rc<Senders<Message>>,
) {
    while let Some((to, message, seq)) = mail.recv().await {
        let durable = match &shard.committer {
            Some(committer) if seq > 0 => committer.wait(seq).await,
            _ => true,
        };
        if !durable {
            // Its `Give` may not be on disk: sending it could make the tickets exist twice.
            // They stay in transit until a restart reconciles them from the journals.
            tracing::warn!(
                to,
                ?message,
                "a message with tickets was not sent: the journal failed"
            );
        } else if senders.send_to(to, message).await.is_err() {
            tracing::error!(
                to,
                ?message,
                "a shard message could not be delivered: the peer is gone"
            );
        }
        pending.set(pending.get() - 1);
    }
}

/// After this shard stopped serving: a peer tells the coordinator and waits until its last
/// messages are on their way; the coordinator keeps answering escalated orders until every peer is
/// done. Both are bounded by `grace`.
async fn leave(shard: &Shard, me: usize, shards: usize, grace: Duration) {
    let deadline = Instant::now() + grace;
    if me != COORDINATOR {
        shard.post(COORDINATOR, Message::Done);
    }
    let finished = || {
        if me == COORDINATOR {
            shard.peers_done.get() + 1 >= shards
        } else {
            shard.mail_pending.get() == 0
        }
    };
    while !finished() && Instant::now() < deadline {
        glommio::timer::sleep(STOP_POLL).await;
    }
}

/// Runs the server until a stop signal; returns once every shard has exited. Tells systemd
/// through `notifier` when every shard listens, and pings its watchdog if one is asked for.
pub fn run(config: Config, stop: Arc<AtomicBool>, notifier: Notifier) -> Result<(), StartError> {
    let vacancy = crate::process::startup::vacancy_address(&config)?;
    let placement = crate::process::startup::placement(&config)?;
    let shards = placement.len();
    crate::process::startup::check_io_uring()?;
    crate::process::startup::ensure_memlock(shards)?;
    let transport = Transport::select()?;
    let addr = crate::process::startup::probe_address(config.listen_addr())?;
    // Before any shard starts, so an unwritable directory is a start-up failure, not a shard's.
    let latency_origin = match &config.latency_dump {
        Some(dir) => Some(latency::prepare(dir, shards).map_err(StartError::LatencyDump)?),
        None => None,
    };
    // Last of the checks: the cheap ones fail a doomed start before anything touches the disk.
    let journaled = recover(&config, shards)?;
    let mesh = MeshBuilder::full(shards, MESH_CHANNEL_CAPACITY);
    let (bound_tx, bound_rx) = mpsc::channel::<Result<usize, String>>();
    let config = Arc::new(config);
    let watchdog = Watchdog::from_env(&notifier);
    let heartbeats = Heartbeats::new(shards);

    // What the shards sell: the journal's tickets left, or the configured stock.
    let stock = journaled
        .as_ref()
        .map_or(config.initial_stock, |j| j.recovered.available);
    let mut handles = Vec::with_capacity(shards);
    for (index, cpu) in placement.iter().enumerate() {
        let place = match cpu {
            Some(cpu) => Placement::Fixed(*cpu),
            None => Placement::Unbound,
        };
        let (config, mesh, stop, bound_tx) =
            (config.clone(), mesh.clone(), stop.clone(), bound_tx.clone());
        let heartbeat = watchdog.map(|w| (heartbeats.clone(), w.heartbeat_period()));
        let journal = journaled.as_ref().map(|j| JournalStart {
            dir: j.dir.clone(),
            start: j.recovered.shards[index].clone(),
            compact_bytes: config.journal_compact_bytes,
        });
        let handle = LocalExecutorBuilder::new(place)
            .name(&format!("shard-{index}"))
            .spawn(move || async move {
                // On this shard's own executor, so it beats only while the shard runs tasks.
                if let Some((heartbeats, period)) = heartbeat {
                    glommio::spawn_local(heartbeats.beat(index, period)).detach();
                }
                let prepared = Prepared {
                    addr,
                    transport,
                    latency_origin,
                    vacancy,
                    stock,
                    journal,
                };
                shard_main(config, prepared, mesh, stop, bound_tx).await
            })
            .map_err(|e| executor_error(&e.to_string()))?;
        handles.push(handle);
    }
    drop(bound_tx);

    let mut failure = None;
    for _ in 0..shards {
        match bound_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failure = failure.or(Some(StartError::Executor(e))),
            Err(_) => break, // a shard died before binding; its join below says why
        }
    }
    if failure.is_none() {
        tracing::info!(
            addr = %addr,
            shards,
            cpus = ?placement,
            transport = transport.as_str(),
            config = %config.summary(),
            "ticketd listening"
        );
        // A signal during start-up already sent STOPPING=1; READY=1 after it would confuse systemd.
        if !stop.load(Ordering::SeqCst) {
            notifier.ready(addr, shards, stock);
        }
        if let Some(watchdog) = watchdog {
            watchdog.spawn(notifier, heartbeats, stop.clone());
        }
    } else {
        stop.store(true, Ordering::SeqCst);
    }
    for handle in handles {
        if let Err(e) = handle.join() {
            failure = failure.or(Some(executor_error(&e.to_string())));
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A run with `--durability sync`: the data directory's lock (held until the process exits) and
/// what recovery found.
struct Journaled {
    /// The `flock` on the data directory.
    _lock: std::fs::File,
    /// The data directory.
    dir: std::path::PathBuf,
    /// The stock, the new epoch's shard files.
    recovered: Recovered,
}

/// Recovers the journal before any shard starts (monolith and vacancy with `--durability sync`):
/// on a short-lived executor, replays the last run's journals, reconciles tickets in transit and
/// writes the new epoch for this run's shard count. The ticket tier holds no stock and has none.
fn recover(config: &Config, shards: usize) -> Result<Option<Journaled>, StartError> {
    if config.mode == Mode::Ticket {
        return Ok(None);
    }
    if config.durability == Durability::None {
        tracing::warn!(
            "--durability none: sales are kept in memory only, as the original system did; a \
             restart resets the stock to INITIAL_STOCK and every sale is forgotten"
        );
        return Ok(None);
    }
    let (lock, dir) = crate::process::startup::lock_data_dir(&config.data_dir)?;
    let stock = config.initial_stock;
    let store_dir = dir.clone();
    let recovered = LocalExecutorBuilder::new(Placement::Unbound)
        .name("recovery")
        .spawn(move || async move {
            let store = Store::Disk(store_dir);
            store.probe_device(LOCK_FILE).await;
            journal::open(&store, shards, stock).await
        })
        .map_err(|e| executor_error(&e.to_string()))?
        .join()
        .map_err(|e| executor_error(&e.to_string()))?
        .map_err(StartError::Journal)?;
    for warning in &recovered.warnings {
        tracing::warn!(%warning, "journal");
    }
    tracing::info!(
        dir = %dir.display(),
        epoch = recovered.epoch,
        stock = recovered.stock,
        sold = recovered.sold,
        available = recovered.available,
        "journal recovered"
    );
    Ok(Some(Journaled {
        _lock: lock,
        dir,
        recovered,
    }))
}

/// Turns glommio's start errors into ours, with the fix for the one operators meet.
fn executor_error(text: &str) -> StartError {
    if text.contains("MemLockLimit") {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into a local of the right type.
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
        return StartError::MemLockTooLow {
            have: limit.rlim_cur,
            hard: limit.rlim_max,
        };
    }
    StartError::Executor(text.to_string())
}

/// A listening socket with SO_REUSEPORT and our backlog.
///
/// TCP_NODELAY is set here too: Linux copies it to accepted sockets, which saves the uring
/// transport a syscall per connection (it checks the first one).
fn listen(addr: SocketAddr) -> std::io::Result<OwnedFd> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// What a shard serves with: the glommio listener, or the uring driver that owns the listener.
enum Serving {
    Glommio(TcpListener),
    /// Boxed: the driver is large and made once per shard.
    Uring(Box<uring::Driver>),
}

/// Where a shard's journal starts.
struct JournalStart {
    /// The data directory.
    dir: std::path::PathBuf,
    /// The shard's file and ledger in the new epoch.
    start: ShardStart,
    /// `--journal-compact-bytes`.
    compact_bytes: u64,
}

/// What start-up settled before a shard runs.
struct Prepared {
    /// Where to listen.
    addr: SocketAddr,
    /// How sockets are driven.
    transport: Transport,
    /// The latency histograms' common start, with `--latency-dump`.
    latency_origin: Option<latency::Origin>,
    /// Ticket mode: the vacancy service's address.
    vacancy: Option<SocketAddr>,
    /// Tickets to sell, over all shards (from the journal, or the configured stock).
    stock: u64,
    /// This shard's journal, with `--durability sync`.
    journal: Option<JournalStart>,
}

async fn shard_main(
    config: Arc<Config>,
    prepared: Prepared,
    mesh: MeshBuilder<Message, glommio::channels::channel_mesh::Full>,
    stop: Arc<AtomicBool>,
    bound_tx: mpsc::Sender<Result<usize, String>>,
) -> Result<(), String> {
    let Prepared {
        addr,
        transport,
        latency_origin,
        vacancy,
        stock,
        journal,
    } = prepared;
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|e| format!("joining the shard mesh: {e}"))?;
    let me = senders.peer_id();
    let shards = config_shards(&senders);
    let listener = match listen(addr) {
        Ok(listener) => listener,
        Err(e) => {
            let text = format!("shard {me} cannot listen on {addr}: {e}");
            let _ = bound_tx.send(Err(text.clone()));
            return Err(text);
        }
    };

    let http = Limits {
        head_bytes_max: config.head_bytes_max,
        target_bytes_max: config.target_bytes_max,
        body_bytes_max: config.body_bytes_max as u64,
        ..Limits::default()
    };
    let committer = match journal {
        None => None,
        Some(j) => {
            let slice = j.start.ledger.available();
            let store = Store::Disk(j.dir);
            store.probe_device(LOCK_FILE).await;
            match Writer::open(&store, j.start, j.compact_bytes).await {
                Ok((writer, tail)) => {
                    assert_eq!(
                        slice,
                        crate::stock::slice::allotment(stock, shards, me),
                        "the journal's slice is this shard's allotment of the stock"
                    );
                    Some(Committer::new(writer, tail))
                }
                Err(e) => {
                    let text = format!("shard {me} cannot open its journal: {e}");
                    let _ = bound_tx.send(Err(text.clone()));
                    return Err(text);
                }
            }
        }
    };
    let (mail_tx, mail_rx) = local_channel::new_unbounded::<(usize, Message, Seq)>();
    let mail_pending = Rc::new(Cell::new(0));
    let shard = Rc::new(Shard {
        app: RefCell::new(App {
            mode: config.mode,
            shard: me,
            shards,
            // The ticket tier holds no stock: it asks the vacancy service.
            node: Node::new(me, shards, if vacancy.is_some() { 0 } else { stock }),
            outbox: Outbox::default(),
            max_order_qty: config.max_order_qty,
            counters: Default::default(),
            forwarding: vacancy.map(|_| Forwarding::new(config.cache_ttl)),
            halted: false,
        }),
        mail: mail_tx,
        mail_pending: mail_pending.clone(),
        peers_done: Cell::new(0),
        waiters: RefCell::new(HashMap::new()),
        decided: RefCell::new(VecDeque::new()),
        committer,
        forwarder: vacancy.map(|addr| {
            Forwarder::new(
                addr,
                UpstreamConfig::from_config(&config),
                config.http_max_connections,
                config.http_keepalive_connections,
            )
        }),
        bell: Cell::new(None),
        parked: Cell::new(false),
        date: Cell::new(HttpDate::now()),
        draining: Cell::new(false),
        connections: RefCell::new(HashMap::new()),
        limits: ConnLimits {
            http,
            headers_max: config.headers_max,
        },
        head_timeout: config.head_timeout,
        idle_timeout: config.idle_timeout,
        latency: latency_origin.map(|_| RefCell::new(Recorder::default())),
    });
    let dump = match (&config.latency_dump, latency_origin) {
        (Some(dir), Some(origin)) => match latency::Dump::open(dir, me, origin) {
            Ok(dump) => Some(dump),
            Err(e) => {
                let text = format!("shard {me} cannot open its latency log: {e}");
                let _ = bound_tx.send(Err(text.clone()));
                return Err(text);
            }
        },
        _ => None,
    };
    // The transport is ready before the shard reports itself bound, so a ring that cannot be
    // set up fails the start instead of a shard later.
    let serving = match transport {
        // SAFETY: the fd is a bound, listening TCP socket we own; glommio takes ownership of it.
        Transport::Glommio => {
            Serving::Glommio(unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) })
        }
        Transport::Uring => {
            match uring::Driver::new(
                shard.clone(),
                listener,
                config.connections_max,
                config.shutdown_timeout,
            ) {
                Ok(driver) => Serving::Uring(Box::new(driver)),
                Err(e) => {
                    let text = format!("shard {me} cannot set up its io_uring: {e}");
                    let _ = bound_tx.send(Err(text.clone()));
                    return Err(text);
                }
            }
        }
    };
    let _ = bound_tx.send(Ok(me));

    let dumper = dump.map(|dump| {
        let (stop_tx, stop_rx) = local_channel::new_bounded::<()>(1);
        let shard = shard.clone();
        let period = config.latency_dump_interval;
        let task = glommio::spawn_local(async move {
            let recorder = shard
                .latency
                .as_ref()
                .expect("recording is on when dumping");
            dump.run(recorder, period, stop_rx).await;
        });
        (stop_tx, task)
    });
    glommio::spawn_local(clock(shard.clone())).detach();
    Forwarder::start(&shard);
    Committer::start(&shard);
    let senders = Rc::new(senders);
    glommio::spawn_local(reporter(
        shard.clone(),
        senders.clone(),
        config.cache_ttl / 2,
    ))
    .detach();
    glommio::spawn_local(flusher(
        shard.clone(),
        mail_rx,
        mail_pending,
        senders.clone(),
    ))
    .detach();
    for (peer, stream) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(message) = stream.recv().await {
                let mut halted = false;
                {
                    let mut app = shard.app.borrow_mut();
                    let app = &mut *app;
                    match message {
                        Message::Report { available } => app.node.report(peer, available),
                        Message::Stock(msg) => app.node.on_message(peer, msg, &mut app.outbox),
                        Message::Done => shard.peers_done.set(shard.peers_done.get() + 1),
                        Message::Halt => {
                            if !app.halted {
                                tracing::error!(
                                    peer,
                                    "a peer's journal failed: this shard stops selling too"
                                );
                                halted = true;
                            }
                        }
                    }
                    app.node.maybe_refill(&mut app.outbox);
                }
                if halted {
                    shard.stop_selling();
                }
                shard.flush();
            }
        })
        .detach();
    }

    let served = match serving {
        Serving::Uring(driver) => (*driver).run(&stop).await,
        Serving::Glommio(listener) => {
            let (stopped_tx, stopped_rx) = glommio::channels::local_channel::new_bounded::<()>(1);
            glommio::spawn_local(async move {
                while !stop.load(Ordering::Relaxed) {
                    glommio::timer::sleep(STOP_POLL).await;
                }
                let _ = stopped_tx.send(()).await;
            })
            .detach();
            accept_loop(&shard, &listener, config.connections_max, stopped_rx).await;
            drop(listener);
            drain(&shard, config.shutdown_timeout).await;
            Ok(())
        }
    };
    // The drain is over: no connection is left to record anything, so this dump is the last.
    if let Some((stop_dumper, dumped)) = dumper {
        let _ = stop_dumper.send(()).await;
        dumped.await;
    }
    leave(&shard, me, shards, config.shutdown_timeout).await;
    if let Some(committer) = &shard.committer {
        let stats = committer.stats.get();
        tracing::info!(
            shard = me,
            commits = stats.commits,
            changes = stats.changes,
            changes_per_commit = stats.changes as f64 / stats.commits.max(1) as f64,
            commit_us_mean = stats.busy_us as f64 / stats.commits.max(1) as f64,
            "journal"
        );
    }
    senders.close();
    served
}

/// Shards in the mesh (the mesh counts every peer, this one included).
fn config_shards(senders: &Senders<Message>) -> usize {
    senders.nr_consumers().max(1)
}

/// Accepts connections until stopped, never holding more than `connections_max` open.
async fn accept_loop(
    shard: &Rc<Shard>,
    listener: &TcpListener,
    connections_max: usize,
    stopped: glommio::channels::local_channel::LocalReceiver<()>,
) {
    let slots = Rc::new(Semaphore::new(connections_max as u64));
    let mut next_id: u64 = 0;
    loop {
        let accepted = futures_lite::future::or(
            async {
                let permit = slots.acquire_static_permit(1).await.ok()?;
                Some((permit, listener.accept().await))
            },
            async {
                stopped.recv().await;
                None
            },
        )
        .await;
        let Some((permit, stream)) = accepted else {
            return;
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        shard.app.borrow_mut().counters.connections_accepted += 1;
        next_id += 1;
        let id = next_id;
        let entry = Rc::new(ConnEntry {
            fd: stream.as_raw_fd(),
            idle: Cell::new(true),
        });
        shard.connections.borrow_mut().insert(id, entry.clone());
        let shard = shard.clone();
        glommio::spawn_local(async move {
            serve(&shard, stream, &entry).await;
            shard.connections.borrow_mut().remove(&id);
            drop(permit);
        })
        .detach();
    }
}

/// Stops the shard gracefully: idle connections are closed at once (their blocked read sees end
/// of stream), busy ones finish their request and close, and after `grace` the shard exits anyway.
async fn drain(shard: &Rc<Shard>, grace: Duration) {
    shard.draining.set(true);
    let deadline = Instant::now() + grace;
    loop {
        for entry in shard.connections.borrow().values() {
            if entry.idle.get() {
                // SAFETY: the fd belongs to a live connection (entries are removed when it closes).
                unsafe { libc::shutdown(entry.fd, libc::SHUT_RD) };
            }
        }
        if shard.connections.borrow().is_empty() || Instant::now() >= deadline {
            return;
        }
        glommio::timer::sleep(STOP_POLL).await;
    }
}

/// Drives one connection until it closes.
async fn serve(shard: &Rc<Shard>, mut stream: TcpStream, entry: &ConnEntry) {
    let _ = stream.set_nodelay(true);
    let mut conn = Connection::default();
    let mut buf = vec![0u8; READ_BYTES];
    let mut out = Vec::new();
    let mut head_started: Option<Instant> = None;
    loop {
        let timeout = match head_started {
            None => shard.idle_timeout,
            Some(started) => shard
                .head_timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1)),
        };
        let _ = stream.set_read_timeout(Some(timeout));
        let n = match stream.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    shard.app.borrow_mut().counters.connections_timed_out += 1;
                }
                return;
            }
        };
        // This transport has no turn clock to reuse, so recording costs it a second clock read.
        let received = shard.latency.as_ref().map(|_| Instant::now());
        let (mut next, answered) = {
            let mut app = shard.app.borrow_mut();
            let date = shard.date.get();
            let before = app.counters.requests;
            let next = conn.on_input(
                &buf[..n],
                &mut app,
                &shard.limits,
                &date,
                shard.draining.get(),
                &mut out,
            );
            (next, app.counters.requests != before)
        };
        // Responses that sold wait for the journal.
        let mut hold = shard.journal_step();
        // Orders that wait for the coordinator: answer each when decided, then what came after.
        let mut resumed = false;
        while let Next::Wait(order) = next {
            let (tx, rx) = local_channel::new_bounded(1);
            shard.waiters.borrow_mut().insert(order, tx);
            shard.flush();
            if !out.is_empty() {
                if !durable(shard, hold.take()).await || stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
            let Some((answer, decided_at)) = rx.recv().await else {
                return;
            };
            let mut app = shard.app.borrow_mut();
            let date = shard.date.get();
            next = conn.resume(
                answer,
                &mut app,
                &shard.limits,
                &date,
                shard.draining.get(),
                &mut out,
            );
            drop(app);
            hold = shard
                .journal_step()
                .max(hold)
                .max((decided_at > 0).then_some(decided_at));
            resumed = true;
        }
        // One value per input that produced responses (see `latency`): the last are ready now.
        if let (Some(latency), Some(received)) = (&shard.latency, received) {
            if answered || resumed {
                latency.borrow_mut().record_since(received);
            }
        }
        shard.flush();
        if !out.is_empty() {
            if !durable(shard, hold).await || stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if next == Next::Close {
            linger(&mut stream, &mut buf).await;
            return;
        }
        let idle = conn.is_idle();
        entry.idle.set(idle);
        // A partial request that began in an input which also answered one gets its own head
        // deadline: the deadline belongs to each request, not to a run of them.
        head_started = match (idle, head_started) {
            (true, _) => None,
            (false, None) => Some(Instant::now()),
            (false, _) if answered => Some(Instant::now()),
            (false, started) => started,
        };
    }
}

/// Waits until the journal holds `hold` (a response that sold may leave); `false` when the
/// journal failed, and the connection must close without the response.
async fn durable(shard: &Shard, hold: Option<Seq>) -> bool {
    match (&shard.committer, hold) {
        (Some(committer), Some(seq)) => committer.wait(seq).await,
        _ => true,
    }
}

/// Half-closes and reads what the client still sends, briefly, before the socket is closed.
async fn linger(stream: &mut TcpStream, buf: &mut [u8]) {
    if stream.shutdown(std::net::Shutdown::Write).await.is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(LINGER));
    let mut drained = 0;
    while drained < LINGER_BYTES_MAX {
        match stream.read(buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// Refreshes the cached `Date` at each second boundary.
async fn clock(shard: Rc<Shard>) {
    loop {
        let now = std::time::SystemTime::now();
        let into_second = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        glommio::timer::sleep(Duration::from_nanos(u64::from(1_000_000_000 - into_second))).await;
        shard.date.set(HttpDate::now());
    }
}

/// Tells every peer this slice's size whenever it changed, at most every `period`.
async fn reporter(shard: Rc<Shard>, senders: Rc<Senders<Message>>, period: Duration) {
    let period = period.max(Duration::from_millis(1));
    let mut last = None;
    loop {
        glommio::timer::sleep(period).await;
        let available = shard.app.borrow().node.slice().available();
        if last == Some(available) {
            continue;
        }
        let me = senders.peer_id();
        for peer in (0..senders.nr_consumers()).filter(|&p| p != me) {
            // A full queue means the peer has older reports still to read; it gets the next one.
            let _ = senders.try_send_to(peer, Message::Report { available });
        }
        last = Some(available);
    }
}

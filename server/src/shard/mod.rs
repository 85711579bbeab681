//! Shards: one glommio executor per selected CPU, each with its own SO_REUSEPORT listener, its
//! own slice of the stock, its own connections and counters. Nothing on the request path is
//! shared between shards; the only cross-shard traffic is explicit messages over a channel mesh,
//! besides the `/metrics` board ([`crate::app::board`]), whose slots only each shard's timer
//! writes and only a scrape reads.
//!
//! - [`core`]: the [`ShardCore`], everything a shard decides, sans-IO;
//! - this file: [`Shard`], the glue around one core on its executor: it feeds the core the
//!   events its tasks see and carries out the core's effects ([`Shard::after`]);
//! - [`run`]: start-up, the executors, and each shard's life;
//! - [`tasks`]: the shard's glommio tasks besides the transport: clock, reporter, mail flusher,
//!   mesh receivers, journal writer, leaving.
//!
//! Sockets are driven by one of two transports, picked at start-up ([`crate::net::Transport`]):
//! the shard's own io_uring ([`crate::net::uring`]), or glommio's sockets
//! ([`crate::net::glommio`]). Both run the same core; neither holds a rule of its own.

pub mod core;
mod node;
pub mod run;
mod tasks;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use glommio::channels::local_channel::LocalSender;

pub use self::core::{ConnEvent, ConnKey, Message, Release, ShardCore, Step};
pub use self::run::run;
use crate::app::latency::Recorder;
use crate::durability::journal::Batch;
use crate::forward::forwarder::Forwarder;
use crate::forward::upstream::{Request, RequestId};
use crate::request_id::XRequestId;

/// The listen backlog we ask for (the kernel caps it at `net.core.somaxconn`). Connections beyond
/// `connections_max` wait here; 4096 absorbs a burst of a few thousand load-test clients.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Messages sent to each shard over the mesh, counted by their senders. A busy uring driver
/// gives way to glommio only now and then (`YIELD_PERIOD`), and glommio runs the mesh's receiver
/// and flusher tasks only then: a message to a busy shard, and a busy shard's outgoing mail,
/// waited up to 2 ms at each hop (a keyed request's hop to its owner and back: p99 4-6 ms where
/// an unkeyed one took 1-2). So the driver compares its shard's count with the messages its
/// receivers applied ([`Mailbox`]), and gives way at once while mail waits. One cache line per
/// shard, written only when mail is sent to it; made once per process.
#[derive(Debug)]
pub struct MailCounts(Box<[SentTo]>);

/// One shard's count, alone on its cache line (two lines: the adjacent-line prefetcher).
#[derive(Debug, Default)]
#[repr(align(128))]
struct SentTo(AtomicU64);

impl MailCounts {
    /// Counts for `shards` shards, for the whole process.
    pub fn leak(shards: usize) -> &'static MailCounts {
        let counts = (0..shards).map(|_| SentTo::default()).collect();
        Box::leak(Box::new(MailCounts(counts)))
    }

    /// A message to shard `to` is in its queue.
    pub fn sent(&self, to: usize) {
        // Relaxed: the count publishes no data (the channel does); it only says "look".
        self.0[to].0.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages sent to shard `shard` so far.
    fn to(&self, shard: usize) -> u64 {
        self.0[shard].0.load(Ordering::Relaxed)
    }
}

/// A shard's side of [`MailCounts`]: it counts what it sends, and whether a message sent to it
/// is not yet applied.
#[derive(Debug)]
pub struct Mailbox {
    /// Every shard's count.
    counts: &'static MailCounts,
    /// This shard.
    me: usize,
    /// Messages its receivers applied.
    applied: Cell<u64>,
    /// The flusher is suspended in `send_to` (a full peer queue).
    sending: Cell<bool>,
}

impl Mailbox {
    /// Shard `me`'s inbox.
    pub fn new(counts: &'static MailCounts, me: usize) -> Mailbox {
        Mailbox {
            counts,
            me,
            applied: Cell::new(0),
            sending: Cell::new(false),
        }
    }

    /// A message to shard `to` is in its queue.
    pub fn sent(&self, to: usize) {
        self.counts.sent(to);
    }

    /// A receiver applied a message.
    pub fn applied(&self) {
        self.applied.set(self.applied.get() + 1);
    }

    /// Mail was sent to this shard that its receivers have not applied. (`>`, not `!=`: a
    /// sender counts after the message is in the queue, so a receiver may apply it first.)
    pub fn waiting(&self) -> bool {
        self.counts.to(self.me) > self.applied.get()
    }

    /// The flusher waits in `send_to` for room in a full peer queue (`true`), or not: giving
    /// way to it then does not help.
    pub fn set_sending(&self, sending: bool) {
        self.sending.set(sending);
    }

    /// Whether the flusher waits for room in a peer's queue.
    pub fn sending(&self) -> bool {
        self.sending.get()
    }
}

/// The uring driver's wake-up: its eventfd, rung only while it is parked (otherwise it looks at
/// the core on its next turn anyway, and ringing would be a wasted syscall).
#[derive(Debug, Default)]
pub struct DriverBell {
    /// The driver's eventfd, while it runs.
    fd: Cell<Option<RawFd>>,
    /// The driver is parked waiting for its eventfd.
    parked: Cell<bool>,
}

impl DriverBell {
    /// The driver runs and answers to `fd` (or stopped, with `None`).
    pub fn set(&self, fd: Option<RawFd>) {
        self.fd.set(fd);
    }

    /// The driver parks (`true`) or runs (`false`).
    pub fn park(&self, parked: bool) {
        self.parked.set(parked);
    }

    /// A uring driver serves this shard.
    pub fn active(&self) -> bool {
        self.fd.get().is_some()
    }

    /// Wakes the driver if it is parked.
    pub fn ring(&self) {
        if !self.parked.get() {
            return;
        }
        if let Some(fd) = self.fd.get() {
            // One ring wakes it; the rest of this batch needs none.
            self.parked.set(false);
            // SAFETY: writes 8 bytes to an eventfd the driver owns while it runs.
            unsafe { libc::eventfd_write(fd, 1) };
        }
    }
}

/// The shard's journal file as the writers see it: the descriptor and path of the current shard
/// file (a compaction replaces it), for the uring driver's writes.
#[derive(Debug)]
pub struct JournalFile {
    /// The shard file's descriptor (`None` on the memory disk).
    pub fd: Cell<Option<RawFd>>,
    /// The shard file's path, for error messages.
    pub path: RefCell<PathBuf>,
}

/// Everything a shard's tasks share: its core and the means to carry out its effects. It lives
/// on one executor (`Rc`, `Cell`, `RefCell`); no borrow is held across an `await`.
pub(crate) struct Shard {
    /// Everything the shard decides.
    pub core: RefCell<ShardCore>,
    /// Wakes the mail flusher; holds one wake at most.
    mail_bell: LocalSender<()>,
    /// Wakes the journal task (every write of the glommio transport, the uring driver's
    /// compactions); holds one wake at most.
    journal_bell: LocalSender<()>,
    /// Wakes a cluster node's `cluster` task when a call of its lease may leave (its request is
    /// durable); holds one wake at most (no receiver on other shards).
    cluster_bell: LocalSender<()>,
    /// The uring driver's wake-up.
    pub driver: DriverBell,
    /// The uring driver writes the journal's append batches itself (through its ring).
    pub driver_writes: Cell<bool>,
    /// A compaction batch the uring driver took from the core, for the journal task.
    pub compaction: RefCell<Option<Batch>>,
    /// The journal's current file (with `--durability sync`).
    pub journal_file: Option<JournalFile>,
    /// Glommio transport: each open connection's channel for the core's [`ConnEvent`]s.
    pub conns: RefCell<HashMap<ConnKey, LocalSender<ConnEvent>>>,
    /// Ticket mode: the connections to the vacancy service.
    pub forwarder: Option<Rc<Forwarder>>,
    /// Reused buffer for requests on their way to the forwarder.
    forwards: RefCell<Vec<(RequestId, Request, XRequestId)>>,
    /// Mail sent by and to this shard, counted.
    pub mailbox: Mailbox,
    /// How long a head may take once started.
    pub head_timeout: Duration,
    /// How long a connection may idle between requests.
    pub idle_timeout: Duration,
    /// Service times, when `--latency-dump` asks for them; `None` costs the request path one
    /// test per input and nothing else.
    pub latency: Option<RefCell<Recorder>>,
}

/// What a [`Shard`] is made of (see its fields).
pub(crate) struct ShardParts {
    /// Everything the shard decides.
    pub core: ShardCore,
    /// Wakes the mail flusher.
    pub mail_bell: LocalSender<()>,
    /// Wakes the journal task.
    pub journal_bell: LocalSender<()>,
    /// Wakes a cluster node's `cluster` task.
    pub cluster_bell: LocalSender<()>,
    /// The journal's current file (with `--durability sync`).
    pub journal_file: Option<JournalFile>,
    /// Ticket mode: the connections to the vacancy service.
    pub forwarder: Option<Rc<Forwarder>>,
    /// Mail sent by and to this shard, counted.
    pub mailbox: Mailbox,
    /// How long a head may take once started.
    pub head_timeout: Duration,
    /// How long a connection may idle between requests.
    pub idle_timeout: Duration,
    /// Service times, with `--latency-dump`.
    pub latency: Option<RefCell<Recorder>>,
}

impl Shard {
    /// The glue around `parts.core`.
    pub fn new(parts: ShardParts) -> Shard {
        Shard {
            core: RefCell::new(parts.core),
            mail_bell: parts.mail_bell,
            journal_bell: parts.journal_bell,
            cluster_bell: parts.cluster_bell,
            driver: DriverBell::default(),
            driver_writes: Cell::new(false),
            compaction: RefCell::new(None),
            journal_file: parts.journal_file,
            conns: RefCell::new(HashMap::new()),
            forwarder: parts.forwarder,
            mailbox: parts.mailbox,
            forwards: RefCell::new(Vec::new()),
            head_timeout: parts.head_timeout,
            idle_timeout: parts.idle_timeout,
            latency: parts.latency,
        }
    }

    /// Carries out what the core's last events produced: mail for the flusher, requests for
    /// the forwarder, news for connections, a journal write to start.
    pub fn after(&self) {
        let (mail, forwards, news, write, call) = {
            let core = self.core.borrow();
            (
                core.has_mail(),
                core.has_forwards(),
                core.has_conn_events(),
                core.wants_write(),
                core.cluster_call_ready(),
            )
        };
        if call {
            let _ = self.cluster_bell.try_send(());
        }
        if mail {
            let _ = self.mail_bell.try_send(());
        }
        if forwards {
            self.forward();
        }
        if news {
            self.notify_conns();
        }
        if write {
            if self.driver_writes.get() {
                self.driver.ring();
            } else {
                self.kick_journal();
            }
        }
    }

    /// Wakes the journal task.
    pub fn kick_journal(&self) {
        let _ = self.journal_bell.try_send(());
    }

    /// Hands the requests the core queued to the forwarder.
    fn forward(&self) {
        let Some(forwarder) = &self.forwarder else {
            return;
        };
        let mut forwards = self.forwards.borrow_mut();
        self.core.borrow_mut().take_forwards(&mut forwards);
        for (id, request, request_id) in forwards.drain(..) {
            forwarder.submit(id, request, request_id);
        }
    }

    /// The core has news for connections: the uring driver takes it on its next turn (woken if
    /// parked); with the glommio transport each goes to its connection's task now.
    pub fn notify_conns(&self) {
        if self.driver.active() {
            self.driver.ring();
            return;
        }
        let conns = self.conns.borrow();
        let mut core = self.core.borrow_mut();
        while let Some((key, event)) = core.next_conn_event() {
            if let Some(tx) = conns.get(&key) {
                let _ = tx.try_send(event);
            }
        }
    }

    /// Takes the forwarder's answers into the core (called when the forwarder rings).
    pub fn collect_upstream(&self) {
        let Some(forwarder) = &self.forwarder else {
            return;
        };
        let answers = forwarder.take_answers();
        if answers.is_empty() {
            forwarder.give_back(answers);
            return;
        }
        {
            let mut core = self.core.borrow_mut();
            for &(id, outcome) in &answers {
                core.on_upstream(id, outcome);
            }
        }
        forwarder.give_back(answers);
        self.notify_conns();
    }

    /// Records a service time from `since`, when recording.
    pub fn record_since(&self, since: Instant) {
        if let Some(latency) = &self.latency {
            latency.borrow_mut().record_since(since);
        }
    }
}

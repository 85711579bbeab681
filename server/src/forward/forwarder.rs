//! The ticket tier's forwarder: a shard's own pool of keep-alive HTTP/1.1 connections to the
//! vacancy service, driven by glommio tasks around the sans-IO [`crate::forward::upstream`] state machines.
//!
//! # Layout
//! - [`Forwarder`]: one per ticket shard. `submit` puts a request on a pooled connection (or
//!   opens one); answers are kept as values ([`Forwarder::take_answers`]) and the shard is rung
//!   (the `wake` it gave), so it hands them to its core: the forwarder knows nothing of shards.
//! - Per upstream connection, two tasks on the same socket: the **reader** connects, then reads
//!   responses and feeds them to its [`UpstreamConn`]; the **writer** writes whatever requests
//!   were queued since it last ran, so the requests of one turn of the shard leave in one write,
//!   pipelined. The writer uses a duplicate of the socket's descriptor, so neither task ever
//!   cancels the other's I/O.
//! - The **keeper** task expires requests at their deadline and closes connections beyond
//!   `HTTP_KEEPALIVE_CONNECTIONS` (and broken ones) once idle.
//!
//! # Invariants
//! - Bytes are reported sent ([`UpstreamConn::on_sent`]) when the writer takes them, *before* the
//!   write: a request some byte of which may have reached the vacancy service is never told
//!   "not sent", so it is never retried (nothing is sold twice).
//! - A request is retried at most once, and only when no byte of it left ([`FailKind::NotSent`])
//!   and its time is not up: a connect refused, or a connection that broke before its turn to
//!   write. A keyed reserve ([`Request::KeyedReserve`], every purchase since issue 17) is tried
//!   up to [`KEYED_ATTEMPTS_MAX`] times, also after its bytes left (a broken connection, a
//!   malformed answer, a 5xx, a 409 of its key in flight): the vacancy service executes a
//!   key once; after its bytes left it waits first ([`KEYED_RETRY_BACKOFF`]: the first attempt
//!   may still be running there). A retry keeps the first attempt's deadline, so every answer
//!   still comes within `VACANCY_TIMEOUT`; an attempt that timed out is not retried (no time is left), and only
//!   then, or when the attempts ran out after one that may have sold, is the outcome unknown. Bytes of a connection that broke are never written later: a connection that expired a
//!   request drops its unwritten bytes and closes ([`Forwarder::expire`]).
//! - Every submitted request gets exactly one answer, within `VACANCY_TIMEOUT` (see
//!   [`EXPIRY_SLACK`]): the upstream state machine's invariant, plus the keeper's timer.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;

use crate::forward::upstream::{FailKind, Outcome, Pick, Pool, Request, RequestId, UpstreamConfig};
use crate::request_id::XRequestId;

/// Bytes read from an upstream connection at once: sixteen pipelined answers (the pipelining
/// limit) of about 150 bytes each fit with room to spare.
const READ_BYTES: usize = 4 * 1024;

/// A request's deadline comes this much before `VACANCY_TIMEOUT`, so that the timer's lateness
/// (a millisecond or two under load) and writing the 503 still fit within the timeout the client
/// was promised. Timeouts shorter than twice this use half of themselves.
const EXPIRY_SLACK: Duration = Duration::from_millis(20);

/// Attempts of a keyed reserve at most: a broken connection and a vacancy service restarting
/// under it cost one each; beyond three, the next one is unlikely to fare better within the
/// time left, and each adds load on a vacancy service that may be struggling.
pub const KEYED_ATTEMPTS_MAX: u8 = 3;

/// How long a keyed reserve waits before its second and third attempt when the last one's
/// outcome was unknown or its key still in flight at the vacancy service: the first attempt
/// may still be running there (waiting for stock from other shards, or for its group commit,
/// 0.1-2 ms), and an immediate retry would only meet 409 `idempotency_key_in_flight`. A retry
/// still starts only while half of `VACANCY_TIMEOUT` remains.
const KEYED_RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(2), Duration::from_millis(10)];

/// The keeper wakes at least this often while connections are open, to close idle ones beyond
/// the keep-alive count: an idle excess connection lives at most this long.
const TRIM_PERIOD: Duration = Duration::from_secs(1);

/// One upstream connection's shared state, between the forwarder, its reader and its writer.
struct Link {
    /// Requests queued for the writer, not yet taken (so not yet reported sent).
    out: RefCell<Vec<u8>>,
    /// Rung when `out` gains bytes or the link ends; holds one wake at most.
    doorbell: LocalSender<()>,
    /// The socket once connected (the reader's), -1 while connecting.
    fd: Cell<RawFd>,
    /// The link must end: shut the socket once connected, write nothing more. Set too when the
    /// reader finished, after which the pool slot may belong to another link.
    abort: Cell<bool>,
}

impl Link {
    fn ring(&self) {
        // A full doorbell already holds a wake: the writer will see these bytes too.
        let _ = self.doorbell.try_send(());
    }

    /// Ends the link from outside its tasks: no byte queued now is ever written, and the reader
    /// sees the socket end (at once, or as soon as its connect completes).
    fn cut(&self) {
        self.abort.set(true);
        self.out.borrow_mut().clear();
        let fd = self.fd.get();
        if fd >= 0 {
            // SAFETY: shutdown(2) on the socket the reader owns; it is closed only after the
            // reader ends, which clears `fd` first.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        self.ring();
    }
}

/// A request on its way: what to send again if it is retried, and when it was first submitted.
#[derive(Clone, Copy, Debug)]
struct Pending {
    request: Request,
    /// The client request's `X-Request-Id`, sent along so both tiers log the same name.
    request_id: XRequestId,
    submitted: Instant,
    /// Attempts made after the first.
    retries: u8,
    /// An attempt failed in a way that may have sold (its bytes left, no answer said).
    maybe_sold: bool,
}

/// A ticket shard's connections to the vacancy service.
pub(crate) struct Forwarder {
    /// Where the vacancy service listens (resolved at start-up).
    addr: SocketAddr,
    /// `VACANCY_TIMEOUT`: how long a request may take, connect included.
    timeout: Duration,
    /// The connections' protocol state.
    pool: RefCell<Pool>,
    /// The running link of each pool index.
    links: RefCell<Vec<Option<Rc<Link>>>>,
    /// Requests without an answer yet.
    pending: RefCell<HashMap<RequestId, Pending>>,
    /// Reused buffer for outcomes.
    done: RefCell<Vec<(RequestId, Outcome)>>,
    /// Answers not yet taken by the shard.
    answers: RefCell<Vec<(RequestId, Outcome)>>,
    /// Rings the shard when `answers` gains one.
    wake: Box<dyn Fn()>,
    /// Wakes the keeper when a request is submitted while it sleeps for long.
    keeper_bell: LocalSender<()>,
    /// The keeper's end of `keeper_bell`, until the keeper starts.
    keeper_rx: RefCell<Option<LocalReceiver<()>>>,
}

impl Forwarder {
    /// A forwarder with no connection yet; connections open on demand.
    pub(crate) fn new(
        addr: SocketAddr,
        mut config: UpstreamConfig,
        max_connections: usize,
        keepalive: usize,
        wake: Box<dyn Fn()>,
    ) -> Forwarder {
        let timeout = config.timeout;
        let slack = EXPIRY_SLACK.min(timeout / 2);
        config.timeout = timeout - slack;
        let (keeper_bell, keeper_rx) = local_channel::new_bounded(1);
        Forwarder {
            addr,
            timeout,
            pool: RefCell::new(Pool::new(config, max_connections, keepalive)),
            links: RefCell::new(Vec::new()),
            pending: RefCell::new(HashMap::new()),
            done: RefCell::new(Vec::new()),
            answers: RefCell::new(Vec::new()),
            wake,
            keeper_bell,
            keeper_rx: RefCell::new(Some(keeper_rx)),
        }
    }

    /// Starts the keeper task on the calling shard.
    pub(crate) fn start(self: &Rc<Self>) {
        let rx = self.keeper_rx.borrow_mut().take().expect("started once");
        glommio::spawn_local(keeper(self.clone(), rx)).detach();
    }

    /// The answers that came since the last call (hand the vector back with
    /// [`Forwarder::give_back`], so its room is reused).
    pub(crate) fn take_answers(&self) -> Vec<(RequestId, Outcome)> {
        std::mem::take(&mut *self.answers.borrow_mut())
    }

    /// Returns the vector [`Forwarder::take_answers`] gave, emptied.
    pub(crate) fn give_back(&self, mut answers: Vec<(RequestId, Outcome)>) {
        answers.clear();
        let mut mine = self.answers.borrow_mut();
        if mine.is_empty() && mine.capacity() < answers.capacity() {
            *mine = answers;
        }
    }

    /// Sends `request`; its answer comes back through [`Forwarder::take_answers`].
    pub(crate) fn submit(self: &Rc<Self>, id: RequestId, request: Request, request_id: XRequestId) {
        let pending = Pending {
            request,
            request_id,
            submitted: Instant::now(),
            retries: 0,
            maybe_sold: false,
        };
        self.pending.borrow_mut().insert(id, pending);
        self.place(id, request, &pending.request_id, pending.submitted);
    }

    /// Enqueues a request on a connection, opening one if the pool says so; fails it as Busy
    /// when the pool is full.
    fn place(
        self: &Rc<Self>,
        id: RequestId,
        request: Request,
        request_id: &XRequestId,
        now: Instant,
    ) {
        let mut pool = self.pool.borrow_mut();
        let index = match pool.pick() {
            Pick::Use(index) => index,
            Pick::Open => {
                let index = pool.open();
                self.spawn_link(index);
                index
            }
            Pick::Full => {
                drop(pool);
                self.finish(id, Outcome::Failed(FailKind::Busy));
                return;
            }
        };
        let link = self.links.borrow()[index]
            .clone()
            .expect("an open pool index has a link");
        pool.conn(index).enqueue(
            id,
            request,
            request_id.as_bytes(),
            now,
            &mut link.out.borrow_mut(),
        );
        link.ring();
        // The keeper may be asleep for a trim period: the new deadline needs its clock.
        let _ = self.keeper_bell.try_send(());
    }

    /// Starts the reader and writer of a new connection at pool `index`.
    fn spawn_link(self: &Rc<Self>, index: usize) {
        let (doorbell, rings) = local_channel::new_bounded(1);
        let link = Rc::new(Link {
            out: RefCell::new(Vec::new()),
            doorbell,
            fd: Cell::new(-1),
            abort: Cell::new(false),
        });
        let mut links = self.links.borrow_mut();
        if links.len() <= index {
            links.resize(index + 1, None);
        }
        assert!(links[index].is_none(), "pool index {index} is still linked");
        links[index] = Some(link.clone());
        glommio::spawn_local(reader(self.clone(), index, link, rings)).detach();
    }

    /// Hands outcomes to their clients, retrying what may be retried.
    fn settle(self: &Rc<Self>) {
        let done = std::mem::take(&mut *self.done.borrow_mut());
        for &(id, outcome) in &done {
            self.finish(id, outcome);
        }
        let mut reuse = done;
        reuse.clear();
        *self.done.borrow_mut() = reuse;
    }

    /// One request's outcome: retried once if nothing of it left and time remains, else
    /// delivered.
    fn finish(self: &Rc<Self>, id: RequestId, outcome: Outcome) {
        let Some(mut p) = self.pending.borrow_mut().remove(&id) else {
            return; // answered already (an outcome is reported once; this is defensive)
        };
        let mut outcome = outcome;
        if let Outcome::Failed(kind) = outcome {
            let now = Instant::now();
            let time_left = now.saturating_duration_since(p.submitted) < self.timeout / 2;
            let keyed = matches!(p.request, Request::KeyedReserve { .. });
            p.maybe_sold |= kind.outcome_unknown();
            let retry = if keyed {
                let safe =
                    kind.is_retryable() || kind.outcome_unknown() || kind == FailKind::KeyInFlight;
                safe && p.retries + 1 < KEYED_ATTEMPTS_MAX
            } else {
                kind.is_retryable() && p.retries == 0
            };
            if retry && time_left {
                p.retries += 1;
                self.pending.borrow_mut().insert(id, p);
                let wait = if keyed && kind != FailKind::NotSent {
                    KEYED_RETRY_BACKOFF[usize::from(p.retries - 1).min(1)]
                } else {
                    Duration::ZERO
                };
                // The first attempt's deadline: the client was promised VACANCY_TIMEOUT.
                if wait.is_zero() {
                    self.place(id, p.request, &p.request_id, p.submitted);
                } else {
                    let this = self.clone();
                    glommio::spawn_local(async move {
                        glommio::timer::sleep(wait).await;
                        this.place(id, p.request, &p.request_id, p.submitted);
                    })
                    .detach();
                }
                return;
            }
            if keyed && p.maybe_sold && !kind.outcome_unknown() {
                // An earlier attempt may have sold: what the last one says does not settle it.
                outcome = Outcome::Failed(FailKind::Unknown);
            }
        }
        if p.retries > 0 {
            // A replay that answers our own retry is the answer the client has not heard yet.
            outcome = outcome.first();
        }
        self.answers.borrow_mut().push((id, outcome));
        (self.wake)();
    }

    /// The keeper's work: expire late requests, cut the connections that expired them (their
    /// unwritten bytes must never leave), close idle and broken connections beyond need.
    fn expire(self: &Rc<Self>, now: Instant) {
        let mut cut = Vec::new();
        {
            let mut pool = self.pool.borrow_mut();
            let mut done = self.done.borrow_mut();
            let before = done.len();
            pool.expire(now, &mut done);
            if done.len() > before {
                // Which connections broke: any broken one with bytes still queued loses them.
                for (index, link) in self.links.borrow().iter().enumerate() {
                    if let Some(link) = link {
                        if pool.conn(index).is_broken() && !link.out.borrow().is_empty() {
                            cut.push(link.clone());
                        }
                    }
                }
            }
            let idle: Vec<usize> = pool.idle_excess().collect();
            for index in idle {
                pool.conn(index).retire();
                if let Some(link) = &self.links.borrow()[index] {
                    cut.push(link.clone());
                }
            }
        }
        for link in cut {
            link.cut();
        }
        self.settle();
    }

    /// When the keeper must look next.
    fn next_wake(&self, now: Instant) -> Instant {
        let pool = self.pool.borrow();
        let trim = now + TRIM_PERIOD.min(self.timeout / 2);
        pool.next_deadline().map_or(trim, |d| d.min(trim))
    }
}

/// Expires requests and trims the pool, for the shard's whole life.
async fn keeper(forwarder: Rc<Forwarder>, bell: LocalReceiver<()>) {
    loop {
        let now = Instant::now();
        forwarder.expire(now);
        let wait = forwarder
            .next_wake(now)
            .saturating_duration_since(Instant::now());
        // A new request never has an earlier deadline than the ones in flight (all use the same
        // timeout), and the trim wake is never later than a request's deadline, so the bell only
        // matters to start the clock; either way looking again is harmless.
        futures_lite::future::or(
            async {
                glommio::timer::sleep(wait).await;
            },
            async {
                bell.recv().await;
            },
        )
        .await;
    }
}

/// Connects, starts the writer, then reads answers until the connection ends; then frees the
/// pool slot, failing whatever was still in flight.
async fn reader(forwarder: Rc<Forwarder>, index: usize, link: Rc<Link>, rings: LocalReceiver<()>) {
    let connected = TcpStream::connect_timeout(forwarder.addr, forwarder.timeout).await;
    let failed = match connected {
        Err(e) => {
            tracing::debug!(error = %e, "cannot connect to the vacancy service");
            true
        }
        Ok(mut stream) => {
            let _ = stream.set_nodelay(true);
            // SAFETY: dup(2) of the socket we own; the writer's stream owns and closes the copy.
            let copy = unsafe { libc::dup(stream.as_raw_fd()) };
            if copy < 0 || link.abort.get() {
                if copy >= 0 {
                    // SAFETY: the copy we just made, not handed to anyone.
                    unsafe { libc::close(copy) };
                }
                true
            } else {
                link.fd.set(stream.as_raw_fd());
                // SAFETY: `copy` is a connected TCP socket that the writer's stream now owns.
                let writer_stream = unsafe { TcpStream::from_raw_fd(copy) };
                glommio::spawn_local(writer(
                    forwarder.clone(),
                    index,
                    link.clone(),
                    rings,
                    writer_stream,
                ))
                .detach();
                let failed = read_answers(&forwarder, index, &mut stream).await;
                link.fd.set(-1);
                failed
            }
        }
    };
    link.abort.set(true);
    link.out.borrow_mut().clear();
    link.ring(); // the writer, if any, sees `abort` and stops
    {
        let mut pool = forwarder.pool.borrow_mut();
        let mut done = forwarder.done.borrow_mut();
        if failed {
            pool.conn(index).on_error(&mut done);
        }
        pool.closed(index, &mut done);
        forwarder.links.borrow_mut()[index] = None;
    }
    forwarder.settle();
}

/// Reads and settles answers until end of stream (`false`) or an error (`true`).
async fn read_answers(forwarder: &Rc<Forwarder>, index: usize, stream: &mut TcpStream) -> bool {
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "the vacancy service connection failed");
                return true;
            }
        };
        {
            let mut pool = forwarder.pool.borrow_mut();
            let conn = pool.conn(index);
            conn.on_input(&buf[..n], &mut forwarder.done.borrow_mut());
            if conn.is_broken() && conn.in_flight() == 0 {
                // `Connection: close`, an unsolicited or malformed answer: nothing to wait for.
                return false;
            }
        }
        forwarder.settle();
    }
}

/// Writes queued requests, one write per wake, until the link ends or a write fails.
async fn writer(
    forwarder: Rc<Forwarder>,
    index: usize,
    link: Rc<Link>,
    rings: LocalReceiver<()>,
    mut stream: TcpStream,
) {
    let mut bytes = Vec::new();
    while rings.recv().await.is_some() {
        if link.abort.get() {
            break;
        }
        std::mem::swap(&mut bytes, &mut *link.out.borrow_mut());
        if bytes.is_empty() {
            continue;
        }
        // Counted as sent before the write: see the module's invariants.
        forwarder.pool.borrow_mut().conn(index).on_sent(bytes.len());
        if let Err(e) = stream.write_all(&bytes).await {
            tracing::debug!(error = %e, "writing to the vacancy service failed");
            link.cut();
            break;
        }
        bytes.clear();
    }
}

//! One load thread: an epoll event loop (mio) over its share of the connections.
//!
//! Closed loop (like wrk): each connection keeps `pipeline` requests in flight and sends the next
//! one when a response arrives; latency counts from the send. Open loop (like wrk2): connection
//! `id` of `N` owes its k-th request at `start + id/R + k*N/R`, so the run as a whole sends `R`
//! requests a second evenly spread; a request goes out at its intended time if the connection
//! has a free pipeline slot, else as soon as one frees, and its latency counts from the intended
//! time, so a server that stalls is charged for the requests it kept us from sending
//! (coordinated omission corrected). A timerfd wakes the loop when the next request is due.
//!
//! Per request the loop costs one `read` and one `write` (plus a share of `epoll_wait`): sockets
//! are registered once, edge-triggered, for both directions, and a response's successor is
//! written in the same turn that read it. wrk adds two `epoll_ctl` calls per request.
//!
//! With --reconnect-after N a connection that has had N requests answered is closed and a new
//! one opened in the same turn, as clients that come and go do. In a flash run every answer is
//! also recorded (a [`crate::flash::Answer`]) for the analysis after the run; the loop's clock
//! is strictly increasing, so a request queued in the turn that read a response is stamped no
//! earlier than that response.
//!
//! The thread owns everything it touches; it shares only its [`Progress`] counters (atomics,
//! written once per loop turn) and sends one [`IntervalReport`] a second over a channel.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Poll, Token};

use crate::connection::{Connection, ReadEnd, Reply, State};
use crate::flash::{Answer, Answers, Outcome};
use crate::record::{latency_histogram, ErrorKind, StreamRecord};
use crate::scenario::{judge, Check, Stream, Verdict};
use crate::slow::SlowLog;
use crate::timer::Timer;

/// Readiness events taken per `epoll_wait`: more than the connections one thread usually drives,
/// so one call drains a busy turn.
pub const EVENTS_CAPACITY: usize = 1024;
/// Longest sleep in `epoll_wait`: the loop must notice the end of the run, interval boundaries
/// and reconnect times without a timer for each; 10 ms is 100 idle wake-ups a second.
pub const TICK: Duration = Duration::from_millis(10);
/// Wait before reconnecting after a failed connect, so a server that is down is not hammered
/// (and the loop does not spin) while the run waits for it.
pub const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(100);
/// How often the loop looks for requests past their timeout: the check walks every connection,
/// and a timeout reported 50 ms late is still a timeout.
pub const TIMEOUT_SCAN_EVERY: Duration = Duration::from_millis(50);
/// Length of one interval of the .hlog interval log (HdrHistogram's customary 1 s).
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The event token of the open-loop timer; connection tokens are their indexes.
const TIMER: Token = Token(usize::MAX);

/// The timing of the run, the same for every thread.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// When connections open (and, in open loop, when the first requests are due).
    pub start: Instant,
    /// End of the warm-up: requests intended from here on are measured.
    pub measure_start: Instant,
    /// No request intended at or after this is sent (`None`: the request budget ends the run).
    pub send_end: Option<Instant>,
    /// Open loop: requests per second over all threads.
    pub rate: Option<f64>,
    /// Connections over all threads.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Response (and connect) timeout; also the longest wait for in-flight responses at the end.
    pub timeout: Duration,
}

/// What one thread is asked to do.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The thread's index, in its reports.
    pub thread: usize,
    /// The server's address.
    pub addr: SocketAddr,
    /// The run-wide ids of this thread's connections.
    pub ids: Vec<usize>,
    /// The scenario's streams.
    pub streams: Vec<Stream>,
    /// Connection `id` sends `streams[lanes[id % lanes.len()]]`.
    pub lanes: Vec<usize>,
    /// Requests per connection before it is closed and reopened (`None`: kept open).
    pub reconnect_after: Option<u64>,
    /// Flash runs: the buffer every answer is recorded in.
    pub answers: Option<Answers>,
    /// --slow-log: where measured responses past its threshold go.
    pub slow: Option<SlowLog>,
    /// The run's timing.
    pub schedule: Schedule,
    /// Measured requests this thread may send (`None`: unbounded).
    pub budget: Option<u64>,
}

/// Live counters for the progress line, written by one thread and read by the main thread.
/// Aligned to a cache line so threads' counters never share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Progress {
    /// Responses so far, warm-up included.
    pub responses: AtomicU64,
    /// Errors so far, warm-up included.
    pub errors: AtomicU64,
}

/// One thread's latencies of one interval, per stream.
#[derive(Debug)]
pub struct IntervalReport {
    /// The reporting thread.
    pub thread: usize,
    /// The interval: it starts `index` seconds after the warm-up.
    pub index: u64,
    /// When the thread closed the interval, from the end of the warm-up: `index + 1` seconds,
    /// or earlier for a thread's last (partial) interval.
    pub ended_at: Duration,
    /// True for the thread's last report.
    pub last: bool,
    /// Latencies recorded in the interval, one histogram per stream.
    pub histograms: Vec<Histogram<u64>>,
}

/// What a thread hands back when it ends.
#[derive(Debug)]
pub struct WorkerResult {
    /// Tallies and whole-run histograms, one per stream.
    pub records: Vec<StreamRecord>,
    /// When the thread ended.
    pub finished: Instant,
    /// When the last measured response arrived.
    pub last_completion: Option<Instant>,
    /// True when the thread gave up because no connection could be opened for --timeout.
    pub stalled: bool,
    /// Connections closed and reopened after --reconnect-after requests.
    pub reconnects: u64,
    /// Flash runs: every answer.
    pub answers: Option<Answers>,
    /// --slow-log: the slow responses.
    pub slow: Option<SlowLog>,
}

/// What an event said about a connection's socket.
#[derive(Clone, Copy, Debug)]
struct Readiness {
    /// There is something to read (data, end of stream or an error).
    readable: bool,
    /// The peer closed or reset: read until the end of the stream.
    closed: bool,
    /// The socket takes writes.
    writable: bool,
}

/// The loop's counters and send gate.
#[derive(Debug)]
struct Counters {
    /// Responses, warm-up included (for the progress line).
    responses: u64,
    /// Errors, warm-up included (for the progress line).
    errors: u64,
    /// Requests in flight over all connections.
    inflight: usize,
    /// Measured requests this thread may still send.
    budget: Option<u64>,
    /// When sending stopped (end of the run's time, or budget spent).
    stopped: Option<Instant>,
    /// Last time a connection opened or a response arrived.
    last_progress: Instant,
    /// When the last measured response arrived.
    last_completion: Option<Instant>,
    /// Connections in state Down.
    down: usize,
    /// Connections in state Open.
    open: usize,
    /// Sending stopped because nothing could connect.
    stalled: bool,
    /// Planned reconnections (--reconnect-after).
    reconnects: u64,
}

impl Counters {
    /// Whether a request intended at `intended` may be sent, spending the budget if measured.
    fn admit(&mut self, schedule: &Schedule, intended: Instant) -> bool {
        if self.stopped.is_some() || schedule.send_end.is_some_and(|end| intended >= end) {
            return false;
        }
        if intended < schedule.measure_start {
            return true;
        }
        match &mut self.budget {
            None => true,
            Some(0) => false,
            Some(left) => {
                *left -= 1;
                true
            }
        }
    }
}

/// Runs one thread's share of the load to the end.
pub fn run(
    config: WorkerConfig,
    progress: &Progress,
    reports: Sender<IntervalReport>,
) -> io::Result<WorkerResult> {
    let mut worker = Worker::new(config, progress, reports)?;
    worker.run()?;
    Ok(worker.finish())
}

/// The event loop's state.
struct Worker<'p> {
    /// What to do.
    config: WorkerConfig,
    /// The epoll instance.
    poll: Poll,
    /// This thread's connections; their index is their token.
    conns: Vec<Connection>,
    /// Per stream: tallies and histograms.
    records: Vec<StreamRecord>,
    /// Counters and the send gate.
    counters: Counters,
    /// Open loop: time between two requests of one connection.
    period: Option<Duration>,
    /// Open loop: (due time, connection) for each open connection with a free slot; stale
    /// entries are skipped when popped.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Open loop: whether a connection has an entry in `due`.
    in_due: Vec<bool>,
    /// Open loop: wakes the loop when the next request is due.
    timer: Option<Timer>,
    /// Shared progress counters.
    progress: &'p Progress,
    /// Where interval reports go.
    reports: Sender<IntervalReport>,
    /// The interval being recorded.
    interval_index: u64,
    /// When it ends.
    interval_end: Instant,
    /// Next timeout scan.
    next_scan: Instant,
    /// The last time [`Worker::clock`] returned.
    last_now: Instant,
    /// Flash runs: every answer.
    answers: Option<Answers>,
    /// --slow-log: the slow responses.
    slow: Option<SlowLog>,
}

impl<'p> Worker<'p> {
    fn new(
        config: WorkerConfig,
        progress: &'p Progress,
        reports: Sender<IntervalReport>,
    ) -> io::Result<Worker<'p>> {
        let s = config.schedule;
        let poll = Poll::new()?;
        let period = s
            .rate
            .map(|r| Duration::from_secs_f64(s.connections as f64 / r));
        let streams = config.streams.len();
        let lanes = &config.lanes;
        let conns: Vec<Connection> = config
            .ids
            .iter()
            .map(|&id| {
                let mut c = Connection::new(id, lanes[id % lanes.len()], s.pipeline, s.start);
                if let Some(r) = s.rate {
                    c.next_intended = s.start + Duration::from_secs_f64(id as f64 / r);
                }
                c
            })
            .collect();
        let timer = match period {
            Some(_) => Some(Timer::new(poll.registry(), TIMER)?),
            None => None,
        };
        let counters = Counters {
            responses: 0,
            errors: 0,
            inflight: 0,
            budget: config.budget,
            stopped: None,
            last_progress: s.start,
            last_completion: None,
            down: conns.len(),
            open: 0,
            stalled: false,
            reconnects: 0,
        };
        let mut config = config;
        let answers = config.answers.take();
        let slow = config.slow.take();
        Ok(Worker {
            last_now: s.start,
            answers,
            slow,
            in_due: vec![false; conns.len()],
            records: (0..streams).map(|_| StreamRecord::default()).collect(),
            conns,
            config,
            poll,
            counters,
            period,
            due: BinaryHeap::new(),
            timer,
            progress,
            reports,
            interval_index: 0,
            interval_end: s.measure_start + INTERVAL,
            next_scan: s.start + TIMEOUT_SCAN_EVERY,
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let s = self.config.schedule;
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let now = self.clock();
            if now >= self.interval_end {
                self.report_intervals(now);
            }
            if now >= self.next_scan {
                self.scan_timeouts(now);
                self.next_scan = now + TIMEOUT_SCAN_EVERY;
            }
            self.update_stop(now);
            if let Some(stopped) = self.counters.stopped {
                if self.counters.inflight == 0 {
                    return Ok(());
                }
                if now >= stopped + s.timeout {
                    self.give_up_inflight(now);
                    return Ok(());
                }
            }
            if self.counters.down > 0 {
                self.reopen(now);
            }
            if self.period.is_some() {
                self.send_due(now)?;
            }
            self.progress
                .responses
                .store(self.counters.responses, Ordering::Relaxed);
            self.progress
                .errors
                .store(self.counters.errors, Ordering::Relaxed);
            match self.poll.poll(&mut events, Some(TICK)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                let now = self.clock();
                match event.token() {
                    TIMER => {
                        if let Some(t) = self.timer.as_mut() {
                            t.fired();
                        }
                    }
                    Token(i) => {
                        let closed = event.is_read_closed() || event.is_error();
                        let readiness = Readiness {
                            readable: event.is_readable() || closed,
                            closed,
                            writable: event.is_writable(),
                        };
                        self.on_event(i, readiness, now);
                    }
                }
            }
        }
    }

    /// The time now, strictly after every earlier reading.
    fn clock(&mut self) -> Instant {
        let now = Instant::now().max(self.last_now + Duration::from_nanos(1));
        self.last_now = now;
        now
    }

    /// Stops sending at the end of the run's time, when the budget is spent, or when nothing
    /// could connect for a whole timeout.
    fn update_stop(&mut self, now: Instant) {
        let c = &mut self.counters;
        if c.stopped.is_some() {
            return;
        }
        let s = &self.config.schedule;
        let time_up = s.send_end.is_some_and(|end| now >= end);
        let spent = c.budget == Some(0);
        let stalled = c.open == 0 && c.inflight == 0 && now >= c.last_progress + s.timeout;
        if time_up || spent || stalled {
            c.stopped = Some(now);
            c.stalled = stalled && !time_up && !spent;
        }
    }

    /// Connects every Down connection whose retry time has come.
    fn reopen(&mut self, now: Instant) {
        if self.counters.stopped.is_some() {
            return;
        }
        for i in 0..self.conns.len() {
            let State::Down { retry_at } = self.conns[i].state else {
                continue;
            };
            if retry_at > now {
                continue;
            }
            let registry = self.poll.registry();
            match self.conns[i].connect(self.config.addr, registry, Token(i), now) {
                Ok(()) => self.counters.down -= 1,
                Err(_) => self.connect_failed(i, now),
            }
        }
    }

    fn on_event(&mut self, i: usize, ready: Readiness, now: Instant) {
        match self.conns[i].state {
            State::Down { .. } => {}
            State::Connecting { .. } => match self.conns[i].finish_connect() {
                Ok(true) => {
                    self.counters.open += 1;
                    self.counters.last_progress = now;
                    self.fill(i, now);
                }
                Ok(false) => {}
                Err(_) => self.connect_failed(i, now),
            },
            State::Open => {
                if ready.readable {
                    match self.read(i, ready.closed, now) {
                        ReadEnd::Wait if self.used_up(i) => self.recycle(i, now),
                        ReadEnd::Wait => self.fill(i, now),
                        ReadEnd::Ended => self.fail(i, ErrorKind::Closed, now),
                        ReadEnd::Malformed => self.fail(i, ErrorKind::Parse, now),
                    }
                } else if ready.writable && self.conns[i].flush().is_err() {
                    self.fail(i, ErrorKind::Closed, now);
                }
            }
        }
    }

    /// Reads connection `i` and accounts for every response.
    fn read(&mut self, i: usize, closed: bool, now: Instant) -> ReadEnd {
        let conn = &mut self.conns[i];
        let stream = conn.stream;
        let check = self.config.streams[stream].check;
        let s = &self.config.schedule;
        let record = &mut self.records[stream];
        let counters = &mut self.counters;
        let mut answers = self.answers.as_mut();
        let mut slow = self.slow.as_mut();
        let id = conn.id;
        conn.on_readable(closed, |reply| {
            let outcome = account(record, counters, check, s.measure_start, now, &reply);
            if let Some(slow) = slow.as_deref_mut() {
                if reply.request.intended >= s.measure_start {
                    slow.offer(reply.request.intended, now, id, reply.status);
                }
            }
            if let Some(answers) = answers.as_deref_mut() {
                answers.push(Answer {
                    sent_ns: nanos_since(s.start, reply.request.sent),
                    arrival_ns: nanos_since(s.start, now),
                    latency_us: micros_u32(now.saturating_duration_since(reply.request.intended)),
                    stream: stream as u16,
                    outcome,
                    measured: reply.request.intended >= s.measure_start,
                });
            }
        })
    }

    /// Whether connection `i` has sent its --reconnect-after requests and has all their answers.
    fn used_up(&self, i: usize) -> bool {
        let conn = &self.conns[i];
        self.config
            .reconnect_after
            .is_some_and(|n| conn.requests_on_socket >= n && conn.inflight.is_empty())
    }

    /// Closes connection `i` (all its answers read) and opens a new one at once, as a client
    /// that comes back does.
    fn recycle(&mut self, i: usize, now: Instant) {
        debug_assert!(self.conns[i].inflight.is_empty() && self.conns[i].state == State::Open);
        let c = &mut self.counters;
        c.open -= 1;
        c.reconnects += 1;
        let conn = &mut self.conns[i];
        conn.close(self.poll.registry(), now);
        if self.counters.stopped.is_some() {
            self.counters.down += 1;
            return;
        }
        let registry = self.poll.registry();
        if self.conns[i]
            .connect(self.config.addr, registry, Token(i), now)
            .is_err()
        {
            // Down without being counted yet: connect_failed counts only a change of state.
            self.counters.down += 1;
            self.connect_failed(i, now);
        }
    }

    /// Queues and writes what connection `i` may send now: in closed loop, up to a full
    /// pipeline; in open loop, the requests already due, then re-enters it in the due queue.
    fn fill(&mut self, i: usize, now: Instant) {
        let s = self.config.schedule;
        let conn = &mut self.conns[i];
        if conn.state != State::Open {
            return;
        }
        let request = &self.config.streams[conn.stream].request;
        let key_at = self.config.streams[conn.stream].key_at;
        let c = &mut self.counters;
        let per_socket = self.config.reconnect_after.unwrap_or(u64::MAX);
        match self.period {
            None => {
                while conn.inflight.len() < s.pipeline
                    && conn.requests_on_socket < per_socket
                    && c.admit(&s, now)
                {
                    conn.queue(request, key_at, now, now);
                    c.inflight += 1;
                }
            }
            Some(period) => {
                while conn.inflight.len() < s.pipeline
                    && conn.requests_on_socket < per_socket
                    && conn.next_intended <= now
                    && c.admit(&s, conn.next_intended)
                {
                    conn.queue(request, key_at, conn.next_intended, now);
                    conn.next_intended += period;
                    c.inflight += 1;
                }
                let more = c.stopped.is_none()
                    && c.budget != Some(0)
                    && s.send_end.is_none_or(|end| conn.next_intended < end)
                    && conn.inflight.len() < s.pipeline
                    && conn.requests_on_socket < per_socket;
                if more && !self.in_due[i] {
                    self.due.push(Reverse((conn.next_intended, i)));
                    self.in_due[i] = true;
                }
            }
        }
        if self.conns[i].flush().is_err() {
            self.fail(i, ErrorKind::Closed, now);
        }
    }

    /// Open loop: sends every request that is due, then arms the timer for the next one.
    fn send_due(&mut self, now: Instant) -> io::Result<()> {
        while let Some(&Reverse((at, i))) = self.due.peek() {
            if at > now {
                if let Some(t) = self.timer.as_mut() {
                    t.arm(at, now)?;
                }
                return Ok(());
            }
            self.due.pop();
            self.in_due[i] = false;
            // The entry may be stale (the connection sent or closed since); fill decides anew.
            self.fill(i, now);
        }
        Ok(())
    }

    /// Closes connection `i` after a failure; its requests in flight are lost: the first one as
    /// `kind`, the rest as `Closed` (they were only behind it).
    fn fail(&mut self, i: usize, kind: ErrorKind, now: Instant) {
        let measure_start = self.config.schedule.measure_start;
        let conn = &mut self.conns[i];
        let record = &mut self.records[conn.stream];
        let c = &mut self.counters;
        if conn.inflight.is_empty() && kind == ErrorKind::Parse {
            // A response that answers no request.
            record.tally(now >= measure_start).errors.add(kind, 1);
            c.errors += 1;
        }
        for (n, lost) in conn.inflight.drain(..).enumerate() {
            let kind = if n == 0 { kind } else { ErrorKind::Closed };
            let tally = record.tally(lost.intended >= measure_start);
            tally.errors.add(kind, 1);
            tally.unknown += 1;
            c.errors += 1;
            c.inflight -= 1;
        }
        if conn.state == State::Open {
            c.open -= 1;
        }
        if !matches!(conn.state, State::Down { .. }) {
            c.down += 1;
        }
        conn.close(self.poll.registry(), now);
    }

    /// Counts a failed connect and schedules the retry.
    fn connect_failed(&mut self, i: usize, now: Instant) {
        let measured = now >= self.config.schedule.measure_start;
        let conn = &mut self.conns[i];
        self.records[conn.stream]
            .tally(measured)
            .errors
            .add(ErrorKind::Connect, 1);
        self.counters.errors += 1;
        if !matches!(conn.state, State::Down { .. }) {
            self.counters.down += 1;
        }
        conn.close(self.poll.registry(), now + CONNECT_RETRY_DELAY);
    }

    /// Fails connections whose oldest request (or whose connect) is older than the timeout.
    fn scan_timeouts(&mut self, now: Instant) {
        let timeout = self.config.schedule.timeout;
        for i in 0..self.conns.len() {
            match self.conns[i].state {
                State::Connecting { since } if now >= since + timeout => {
                    self.connect_failed(i, now)
                }
                State::Open => {
                    if let Some(oldest) = self.conns[i].inflight.front() {
                        if now >= oldest.sent + timeout {
                            self.fail(i, ErrorKind::Timeout, now);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The end of the drain: whatever is still in flight timed out.
    fn give_up_inflight(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            if !self.conns[i].inflight.is_empty() {
                self.fail(i, ErrorKind::Timeout, now);
            }
        }
    }

    /// Sends the interval histograms of every interval that has ended.
    fn report_intervals(&mut self, now: Instant) {
        while now >= self.interval_end {
            self.send_report(INTERVAL * (self.interval_index as u32 + 1), false);
            self.interval_index += 1;
            self.interval_end += INTERVAL;
        }
    }

    fn send_report(&mut self, ended_at: Duration, last: bool) {
        let histograms = self
            .records
            .iter_mut()
            .map(|r| std::mem::replace(&mut r.interval, latency_histogram()))
            .collect();
        // The receiver outlives every worker; if it is gone the run is ending anyway.
        let _ = self.reports.send(IntervalReport {
            thread: self.config.thread,
            index: self.interval_index,
            ended_at,
            last,
            histograms,
        });
    }

    fn finish(mut self) -> WorkerResult {
        let finished = Instant::now();
        for i in 0..self.conns.len() {
            self.conns[i].close(self.poll.registry(), finished);
        }
        self.progress
            .responses
            .store(self.counters.responses, Ordering::Relaxed);
        self.progress
            .errors
            .store(self.counters.errors, Ordering::Relaxed);
        let ended_at = finished.saturating_duration_since(self.config.schedule.measure_start);
        self.send_report(ended_at, true);
        WorkerResult {
            records: self.records,
            finished,
            last_completion: self.counters.last_completion,
            stalled: self.counters.stalled,
            reconnects: self.counters.reconnects,
            answers: self.answers,
            slow: self.slow,
        }
    }
}

/// Nanoseconds from `start` to `t`.
fn nanos_since(start: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(start).as_nanos() as u64
}

/// A latency in µs, as the histograms record it (they stop at a minute; so does this).
fn micros_u32(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// Accounts for one response: tallies by phase, latency if measured. Returns what it said.
fn account(
    record: &mut StreamRecord,
    c: &mut Counters,
    check: Check,
    measure_start: Instant,
    now: Instant,
    reply: &Reply<'_>,
) -> Outcome {
    c.responses += 1;
    c.inflight -= 1;
    c.last_progress = now;
    let measured = reply.request.intended >= measure_start;
    if measured {
        let latency = now.saturating_duration_since(reply.request.intended);
        record.record_latency(latency.as_micros() as u64);
        c.last_completion = Some(now);
    }
    let tally = record.tally(measured);
    tally.responses += 1;
    let (error, outcome) = match judge(check, reply.status, reply.body) {
        Verdict::Ok { sold } => {
            tally.sold += u64::from(sold);
            // Only flash runs read the outcome, and their check reads "success" on every answer.
            return if sold {
                Outcome::Sold
            } else {
                Outcome::Unreadable
            };
        }
        Verdict::SoldOut => return Outcome::SoldOut,
        Verdict::Status(s) => (ErrorKind::Status(s), Outcome::NotOk),
        Verdict::SuccessFalse => (ErrorKind::SuccessFalse, Outcome::SoldOut),
        Verdict::Parse => (ErrorKind::Parse, Outcome::Unreadable),
    };
    tally.errors.add(error, 1);
    c.errors += 1;
    outcome
}

//! [`Driver`]: the ring loop. A turn submits what was staged, reaps every completion and hands
//! each to [`State`]; between turns the driver gives way to glommio, or parks on its eventfd.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use glommio::io::BufferedFile;
use io_uring::{cqueue, IoUring};

use super::buffers::RecvBuffers;
use super::connections::State;
use super::{builder, new_eventfd, CQ_ENTRIES, SQ_ENTRIES, SWEEP_PERIOD};
use crate::shard::Shard;

/// While it has work, the driver gives way to the shard's other tasks (clock, reporter, mesh
/// receivers) at least this often. It cannot rely on `yield_if_needed` alone: glommio runs its
/// reactor (due timers, cross-shard channels) only once no task is runnable or its preempt timer
/// fires, 100 ms by default, and a shorter preempt timer (`preempt_timer(2 ms)` on the builder)
/// made one start in four of four unpinned shards on two CPUs hang in the mesh join, with either
/// transport. So the driver rings its own eventfd and awaits the READ (see `run`). 2 ms costs one
/// `write` and one glommio ring entry per period.
const YIELD_PERIOD: Duration = Duration::from_millis(2);

/// A give-way that lasts longer than this is counted as slow (`TransportCounters::slow_yields`):
/// every connection of the shard waited that long. A millisecond is ten times what glommio's
/// reactor and the shard's small tasks take.
const SLOW_YIELD: Duration = Duration::from_millis(1);

/// A park that the sweep timer ended while completions waited counts as a late wake only if it
/// lasted this long: a completion landing within microseconds of a sweep falling due is a race,
/// not a stall (on the VM every one seen was a park of 12-68 µs with a timeout under 30 µs).
const LATE_WAKE: Duration = Duration::from_millis(1);

/// While it has work and shares its CPU with other shards, the driver hands the CPU to the
/// kernel (`sched_yield`) at least this often. Linux checks whether a running thread used up its
/// turn only at a scheduler tick (4 ms at the common HZ=250) and, with the default
/// `PREEMPT_NONE`, a woken shard does not displace a busy one before that: two busy shards on
/// one CPU made the other shard's requests wait 4 or 8 ms (p99 after a sell-out 5-9 ms with two
/// shards on one CPU, 1.2-2.3 ms with one, on a quiet 16-core machine; EEVDF's shorter custom
/// slices did not change it). 250 µs is about one full turn of 64 requests; a yield with no
/// other thread runnable costs one syscall (~1 µs).
const SHARED_CPU_TURN: Duration = Duration::from_micros(250);

/// After the shutdown grace, connections are cut; their requests get this long to come back from
/// the kernel before the shard exits anyway (leaking them, as the process is ending).
const TEARDOWN_WAIT: Duration = Duration::from_millis(200);

/// Completions one turn handles while a journal write is in flight (see `Driver::turn`): small
/// enough that a turn lasts a few tens of microseconds (16 requests at ~3 µs each), against the
/// ~100 µs of the disk write it waits for; the rest wait in the completion queue for the next
/// turn, one `io_uring_enter` later.
const JOURNAL_TURN_CQES: usize = 16;

/// A shard's transport: its ring, the eventfd that wakes it through glommio, its connections.
pub(crate) struct Driver {
    /// Our ring. Declared before `state` so it is dropped before the buffers it uses.
    ring: IoUring,
    /// CQEs reaped in one turn (reused).
    cqes: Vec<cqueue::Entry>,
    /// The connections and everything they use.
    state: State,
    /// The eventfd registered with `ring`, owned by glommio, which READs it to wake us.
    eventfd: Rc<BufferedFile>,
    /// Whether this shard shares its CPU with other shards (more shards than CPUs): then it
    /// yields the CPU every [`SHARED_CPU_TURN`] while busy.
    shares_cpu: bool,
}

/// A pending READ of the eventfd; `true` if it completed without error.
type Wake = Pin<Box<dyn Future<Output = bool>>>;

/// The pending READ of `eventfd`, started if there is none. The READ is kept across waits (a READ
/// dropped in flight would make glommio submit a cancel) and reset once it completes.
fn wake_read<'a>(eventfd: &Rc<BufferedFile>, wake: &'a mut Option<Wake>) -> &'a mut Wake {
    wake.get_or_insert_with(|| {
        let eventfd = eventfd.clone();
        Box::pin(async move { eventfd.read_at(0, 8).await.is_ok() })
    })
}

/// Makes the eventfd readable, so a READ of it completes at once.
fn ring_bell(eventfd: &BufferedFile) {
    // SAFETY: writes 8 bytes to an eventfd we own.
    unsafe { libc::eventfd_write(eventfd.as_raw_fd(), 1) };
}

impl Driver {
    /// Creates the shard's ring on the calling (shard) thread, which alone may use it.
    pub(crate) fn new(
        shard: Rc<Shard>,
        listener: OwnedFd,
        connections_max: usize,
        shutdown_timeout: Duration,
        shares_cpu: bool,
    ) -> io::Result<Driver> {
        assert!(connections_max >= 1 && u32::try_from(connections_max).is_ok());
        let mut ring = builder().build(SQ_ENTRIES)?;
        let buffers = RecvBuffers::new(&ring)?;
        let eventfd = new_eventfd()?;
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        // Off while we run: we reap at every turn anyway; it is enabled only to park.
        ring.completion().disable_eventfd();
        let now = Instant::now();
        // The driver writes the journal's append batches itself when the file is on a disk.
        let disk = shard
            .journal_file
            .as_ref()
            .is_some_and(|f| f.fd.get().is_some());
        shard.driver_writes.set(disk);
        // SAFETY: the descriptor moves into glommio's file, which closes it when dropped.
        let eventfd = Rc::new(unsafe { BufferedFile::from_raw_fd(eventfd.into_raw_fd()) });
        Ok(Driver {
            ring,
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            state: State {
                shard,
                slots: Vec::new(),
                free: Vec::new(),
                touched: Vec::new(),
                open: 0,
                connections_max,
                waiting: VecDeque::new(),
                buffers,
                pool: Vec::new(),
                listener: Some(listener),
                accept_armed: false,
                accept_cancelled: false,
                accept_paused_until: now,
                nodelay_inherited: None,
                draining: false,
                drain_deadline: now,
                shutdown_timeout,
                aborted_at: None,
                staged: Vec::new(),
                held: 0,
                journal_write: None,
                spare: None,
            },
            eventfd,
            shares_cpu,
        })
    }

    /// Serves until `stop` is set and the drain is over.
    pub(crate) async fn run(mut self, stop: &AtomicBool) -> Result<(), String> {
        self.state.shard.driver.set(Some(self.eventfd.as_raw_fd()));
        self.state.control_accept(Instant::now());
        let mut next_sweep = Instant::now() + SWEEP_PERIOD;
        let mut next_yield = Instant::now() + YIELD_PERIOD;
        let mut next_turn = Instant::now() + SHARED_CPU_TURN;
        let mut wake: Option<Wake> = None;
        let result = loop {
            let now = Instant::now();
            let reaped = match self.turn(now) {
                Ok(reaped) => reaped,
                Err(e) => break Err(format!("io_uring: {e}")),
            };
            if now >= next_sweep {
                self.state.sweep(now, stop.load(Ordering::Relaxed));
                self.state.after_batch(now);
                next_sweep = now + SWEEP_PERIOD;
            }
            if self.state.finished() {
                break Ok(());
            }
            if self
                .state
                .aborted_at
                .is_some_and(|at| now >= at + TEARDOWN_WAIT)
            {
                tracing::warn!(
                    connections = self.state.open,
                    "requests still in the kernel at exit"
                );
                break Ok(());
            }
            if reaped > 0 || !self.state.staged.is_empty() {
                if self.shares_cpu && now >= next_turn {
                    // What this turn staged leaves first, then a shard waiting for the CPU runs.
                    if let Err(e) = self.submit() {
                        break Err(format!("io_uring: {e}"));
                    }
                    // SAFETY: sched_yield takes no arguments and cannot fail on Linux.
                    unsafe { libc::sched_yield() };
                    next_turn = Instant::now() + SHARED_CPU_TURN;
                }
                // Responses held for a write of the journal task (a compaction, or every write once
                // the driver handed them back) wait for glommio's reactor: give way at once, or
                // group commits would complete once per `YIELD_PERIOD` under load.
                // Mail for or from a peer also waits for glommio (its mesh tasks): give way
                // at once, or each hop of a keyed request or a gather waits for `YIELD_PERIOD`.
                if now >= next_yield
                    || (self.state.held > 0 && self.state.commits_via_glommio())
                    || self.mail_waiting()
                {
                    // What this turn staged (its responses, re-arms) goes to the kernel first:
                    // it does not wait for glommio's reactor and other tasks.
                    if let Err(e) = self.submit() {
                        break Err(format!("io_uring: {e}"));
                    }
                    self.state.counters().yields += 1;
                    // The READ completes as glommio submits it, after glommio ran its reactor
                    // and every other runnable task: our task is not runnable meanwhile.
                    ring_bell(&self.eventfd);
                    let gave_way = Instant::now();
                    let ok = wake_read(&self.eventfd, &mut wake).await;
                    wake = None;
                    if gave_way.elapsed() > SLOW_YIELD {
                        self.state.counters().slow_yields += 1;
                    }
                    if !ok {
                        tracing::warn!("reading the io_uring eventfd failed");
                    }
                    next_yield = Instant::now() + YIELD_PERIOD;
                } else {
                    glommio::yield_if_needed().await;
                }
                continue;
            }
            // Nothing else to do: the changes of every request that arrived go to the disk in one
            // group commit (see `COMMIT_DELAY_MAX` for the busy case).
            if self.state.shard.driver_writes.get() && self.state.shard.core.borrow().wants_write()
            {
                self.state.start_journal_write(now, true);
                continue;
            }
            match self.park(next_sweep, &mut wake).await {
                // glommio just ran everything else.
                Ok(true) => next_yield = Instant::now() + YIELD_PERIOD,
                Ok(false) => {}
                Err(e) => break Err(format!("io_uring: {e}")),
            }
        };
        self.leave(wake).await;
        if self.state.open > 0 {
            // Requests still name our buffers: leak them all rather than free memory the kernel
            // may yet write. The process is exiting.
            std::mem::forget(self);
        }
        result
    }

    /// Mail waits for glommio's mesh tasks: a peer's not yet applied here, or this shard's
    /// ready to leave (see [`crate::shard::MailCounts`]).
    fn mail_waiting(&self) -> bool {
        let shard = &self.state.shard;
        shard.mailbox.waiting() || (!shard.mailbox.sending() && shard.core.borrow().mail_ready())
    }

    /// Nothing to do: arm the eventfd, then submit, which posts completions queued since the last
    /// entry (and signals the eventfd for them); only an empty CQ after that makes sleeping safe.
    /// Then wait for the eventfd's READ or the next sweep, whichever comes first. A wake with
    /// nothing to reap is harmless. Returns whether it parked.
    async fn park(&mut self, next_sweep: Instant, wake: &mut Option<Wake>) -> io::Result<bool> {
        self.ring.completion().enable_eventfd();
        self.submit()?;
        if !self.ring.completion().is_empty() {
            self.ring.completion().disable_eventfd();
            return Ok(false);
        }
        let read = wake_read(&self.eventfd, wake);
        let timeout = next_sweep.saturating_duration_since(Instant::now());
        self.state.shard.driver.park(true);
        let parked_at = Instant::now();
        let woke = futures_lite::future::or(async { Some(read.await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await;
        self.state.shard.driver.park(false);
        self.ring.completion().disable_eventfd();
        // The timer won although completions wait, and the park lasted long enough for that to
        // be a stall rather than a race with a sweep falling due: their wake did not come. With
        // COOP_TASKRUN a completion may still be queued as task work, posted only when this
        // thread enters the kernel: enter it (a submit) before looking.
        let late = if woke.is_none() && parked_at.elapsed() >= LATE_WAKE {
            self.submit()?;
            !self.ring.completion().is_empty()
        } else {
            false
        };
        let mut counters = self.state.counters();
        counters.parks += 1;
        if woke.is_some() {
            counters.park_wakes += 1;
        } else {
            counters.park_timeouts += 1;
            counters.late_wakes += u64::from(late);
        }
        drop(counters);
        if let Some(ok) = woke {
            *wake = None;
            if !ok {
                tracing::warn!("reading the io_uring eventfd failed; waking by the sweep only");
            }
        }
        Ok(true)
    }

    /// The driver stops: the shard still journals while it leaves (a peer's last messages), so
    /// its journal task takes over the writes (none while a write of ours is still out: the core
    /// hands out no second batch); the eventfd's READ completes, so glommio holds no request on
    /// it when it closes it.
    async fn leave(&mut self, wake: Option<Wake>) {
        self.state.shard.driver.set(None); // the eventfd closes with the driver
        self.state.shard.driver_writes.set(false);
        self.state.shard.kick_journal();
        if let Some(read) = wake {
            ring_bell(&self.eventfd);
            read.await;
        }
    }

    /// One turn: submit what was staged, reap what completed, act on it. Returns CQEs reaped.
    fn turn(&mut self, now: Instant) -> io::Result<usize> {
        self.submit()?;
        self.cqes.clear();
        // While a group commit is on its way to the disk, short turns: its completion is posted
        // and reaped at the next entry into the kernel, and the responses it holds leave at the
        // end of the turn that reaps it, so a long turn would add its length to every commit.
        let limit = if self.state.journal_write.is_some() {
            JOURNAL_TURN_CQES
        } else {
            usize::MAX
        };
        self.cqes.extend(self.ring.completion().take(limit));
        for cqe in &self.cqes {
            self.state.on_cqe(cqe, now);
        }
        // What the core told connections meanwhile (answers, released output) is carried out;
        // its other effects (mail, forwarded requests) go to their tasks.
        let news = self.state.take_conn_events(now);
        self.state.shard.after();
        if !self.cqes.is_empty() || news {
            self.state.after_batch(now);
        }
        self.state.start_journal_write(now, false);
        Ok(self.cqes.len() + usize::from(news))
    }

    /// Moves staged SQEs into the ring and enters the kernel once (more when the SQ fills). Under
    /// COOP_TASKRUN the entry is also what posts completions queued for us.
    fn submit(&mut self) -> io::Result<()> {
        let mut moved = 0;
        let result = loop {
            {
                let mut sq = self.ring.submission();
                let room = sq.capacity() - sq.len();
                let batch =
                    &self.state.staged[moved..][..room.min(self.state.staged.len() - moved)];
                // SAFETY: every staged entry points at memory kept until its CQE: send buffers
                // are not touched while `sending`, receive buffers are registered, fds are open.
                unsafe { sq.push_multiple(batch).expect("room was checked") };
                moved += batch.len();
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // The CQ overflowed and the kernel wants it reaped first: what is in the SQ
                // stays there for the next turn.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {
                    break Ok(())
                }
                Err(e) => break Err(e),
            }
            if moved == self.state.staged.len() {
                break Ok(());
            }
        };
        self.state.staged.drain(..moved);
        result
    }
}

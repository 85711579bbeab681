//! A shard's side of its journal at run time: the changes the stock protocol makes are appended
//! to the shard's [`Tail`] right after the step that made them, and one committer task writes and
//! syncs them in groups ([`crate::journal::commit`]), so that everything appended while one batch
//! was on its way to the disk shares the next flush.
//!
//! What waits for durability:
//! - responses of requests that sold: the transport holds them until [`Committer::durable`]
//!   reaches the sequence number of the step that produced them (uring: the slot's `hold`;
//!   glommio: [`Committer::wait`]);
//! - protocol messages that carry tickets: the flusher sends one only once the `Give` it follows
//!   is durable, so a crash can never keep the receiver's `Receive` and lose the sender's `Give`.
//!
//! # Invariants
//! - A sale is acknowledged only after the record covering it is durable.
//! - After a write or sync error nothing more is appended or acknowledged: the shard stops
//!   selling for good (until restart), held responses are dropped with their connections, and
//!   the error is logged once with its cause.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::journal::{self, Change, JournalError, Seq, Tail, Writer};
use crate::shard::Shard;

/// A shard's journal: the tail on the request path, the writer in the committer task.
pub(crate) struct Committer {
    /// Records appended and not yet durable, and what is.
    tail: RefCell<Tail>,
    /// The file half, taken by the committer task when it starts.
    writer: RefCell<Option<Writer>>,
    /// The sequence number of the last change appended.
    appended: Cell<Seq>,
    /// Wakes the committer task when it waits for work; holds one wake at most.
    kick: LocalSender<()>,
    /// The committer task's end of `kick`, until it starts.
    kicked: RefCell<Option<LocalReceiver<()>>>,
    /// Tasks waiting for a sequence number to become durable, in order of their numbers.
    waiters: RefCell<VecDeque<(Seq, LocalSender<bool>)>>,
    /// The journal failed: nothing more is acknowledged.
    failed: Cell<bool>,
}

impl Committer {
    /// A committer over an opened journal.
    pub(crate) fn new(writer: Writer, tail: Tail) -> Committer {
        let (kick, kicked) = local_channel::new_bounded(1);
        let durable = tail.durable();
        Committer {
            tail: RefCell::new(tail),
            writer: RefCell::new(Some(writer)),
            appended: Cell::new(durable),
            kick,
            kicked: RefCell::new(Some(kicked)),
            waiters: RefCell::new(VecDeque::new()),
            failed: Cell::new(false),
        }
    }

    /// Starts the committer task on the calling shard.
    pub(crate) fn start(shard: &Rc<Shard>) {
        if shard.committer.is_some() {
            glommio::spawn_local(run(shard.clone())).detach();
        }
    }

    /// Appends `changes` (drained) to the tail; returns the sequence number of the last one, or
    /// `None` when there was none. After a failure the changes are dropped: the shard no longer
    /// acknowledges anything, and recovery reconciles what was in flight.
    pub(crate) fn append(&self, changes: &mut Vec<Change>) -> Option<Seq> {
        if changes.is_empty() {
            return None;
        }
        let mut tail = self.tail.borrow_mut();
        for change in changes.drain(..) {
            if let Ok(seq) = tail.append(change) {
                self.appended.set(seq);
            } else {
                // The journal failed (the committer reports it): these changes will never be
                // durable, so what waits for them waits for ever, and is dropped (the rest of the
                // drained changes go with the iterator).
                return Some(Seq::MAX);
            }
        }
        drop(tail);
        let _ = self.kick.try_send(());
        Some(self.appended.get())
    }

    /// The sequence number of the last change appended.
    pub(crate) fn appended(&self) -> Seq {
        self.appended.get()
    }

    /// The last durable sequence number.
    pub(crate) fn durable(&self) -> Seq {
        self.tail.borrow().durable()
    }

    /// True once the journal failed for good.
    pub(crate) fn failed(&self) -> bool {
        self.failed.get()
    }

    /// Waits until `seq` is durable: `true`, or `false` if the journal failed first.
    pub(crate) async fn wait(&self, seq: Seq) -> bool {
        if self.failed.get() {
            return false;
        }
        if self.durable() >= seq {
            return true;
        }
        let (tx, rx) = local_channel::new_bounded(1);
        self.waiters.borrow_mut().push_back((seq, tx));
        rx.recv().await.unwrap_or(false)
    }

    /// Wakes the waiters whose number is durable now (all of them, with `false`, on failure).
    fn wake(&self, durable: Option<Seq>) {
        let mut waiters = self.waiters.borrow_mut();
        // Numbers arrive in order per task but tasks interleave: scan all (few wait at once).
        waiters.retain(|(seq, tx)| match durable {
            Some(d) if *seq > d => true,
            Some(_) => {
                let _ = tx.try_send(true);
                false
            }
            None => {
                let _ = tx.try_send(false);
                false
            }
        });
    }
}

/// The committer task: one group commit at a time, for the shard's whole life.
async fn run(shard: Rc<Shard>) {
    let committer = shard.committer.as_ref().expect("started with a journal");
    let kicked = committer.kicked.borrow_mut().take().expect("started once");
    let mut writer = committer.writer.borrow_mut().take().expect("started once");
    loop {
        if !committer.tail.borrow().pending() {
            if kicked.recv().await.is_none() {
                return;
            }
            continue;
        }
        match journal::commit(&committer.tail, &mut writer).await {
            Ok(Some(durable)) => {
                committer.wake(Some(durable));
                shard.durable_advanced();
            }
            Ok(None) => {}
            Err(e) => {
                fail(&shard, committer, &e);
                return;
            }
        }
    }
}

/// The journal failed: stop selling on this shard and tell the peers, wake every waiter with the
/// failure, and let the transport drop the held responses.
fn fail(shard: &Rc<Shard>, committer: &Committer, error: &JournalError) {
    tracing::error!(
        shard = shard.app.borrow().shard,
        %error,
        "the journal failed: this shard stops selling; /ready answers 503 until a restart \
         (the kernel may have dropped the data, so the write is not retried)"
    );
    committer.failed.set(true);
    committer.wake(None);
    shard.halt();
    shard.durable_advanced();
}

//! A shard's glommio tasks besides its transport. Each feeds the core the events it sees and
//! carries out effects; none decides anything (the core does).
//!
//! - the clock refreshes the cached `Date` once a second;
//! - the reporter offers peers this slice's size every half freshness period (the core says to
//!   whom, and takes back a report a full queue dropped);
//! - the publisher copies the shard's numbers onto the board `/metrics` reads, every
//!   [`PUBLISH_PERIOD`] (the only writer of the shard's slot);
//! - the flusher sends the mail the core lets out, one message at a time and in order (a full
//!   peer queue makes it wait, never drop a message that carries tickets);
//! - one receiver per peer applies its messages;
//! - the journal task writes what the core hands out when the transport does not (every batch
//!   with glommio sockets; compactions under the uring driver);
//! - leaving: after the transport finished, the shard keeps answering peers until the core says
//!   it may exit.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::LocalReceiver;
use proto_http::HttpDate;

use super::{Message, Shard};
use crate::app::board::{Snapshot, PUBLISH_PERIOD};
use crate::durability::journal::{BatchKind, Writer};

/// How often leaving looks at the core: the added latency of a shutdown.
const LEAVE_POLL: Duration = Duration::from_millis(20);

/// Refreshes the cached `Date` at each second boundary.
pub(crate) async fn clock(shard: Rc<Shard>) {
    loop {
        let now = std::time::SystemTime::now();
        let into_second = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        glommio::timer::sleep(Duration::from_nanos(u64::from(1_000_000_000 - into_second))).await;
        shard.core.borrow_mut().set_date(HttpDate::now());
    }
}

/// Offers every peer this slice's size when the core says it has not had it, every `period`,
/// until the shard leaves.
pub(crate) async fn reporter(shard: Rc<Shard>, senders: Rc<Senders<Message>>, period: Duration) {
    let period = period.max(Duration::from_millis(1));
    let me = senders.peer_id();
    loop {
        glommio::timer::sleep(period).await;
        let mut core = shard.core.borrow_mut();
        if core.leaving() {
            return;
        }
        for peer in (0..senders.nr_consumers()).filter(|&p| p != me) {
            if let Some(available) = core.report_due(peer) {
                // A full queue drops it; the core offers it again next period.
                if senders
                    .try_send_to(peer, Message::Report { available })
                    .is_ok()
                {
                    shard.mailbox.sent(peer);
                    core.report_sent(peer, available);
                }
            }
        }
    }
}

/// Publishes the shard's numbers onto the board at once, then every [`PUBLISH_PERIOD`], until
/// the shard leaves (a last time then). Off the request path: a scrape only reads the slots.
pub(crate) async fn publisher(shard: Rc<Shard>) {
    let mut snapshot = Snapshot::default();
    loop {
        let (board, me, leaving) = {
            let core = shard.core.borrow();
            core.snapshot(&mut snapshot);
            (core.app.board, core.shard(), core.leaving())
        };
        if let Some(latency) = &shard.latency {
            snapshot.service_time = Some(latency.borrow().buckets());
        }
        board.publish(me, &snapshot, Instant::now());
        if leaving {
            return;
        }
        glommio::timer::sleep(PUBLISH_PERIOD).await;
    }
}

/// Sends the mail the core lets out, in order, for the shard's whole life.
pub(crate) async fn flusher(
    shard: Rc<Shard>,
    bell: LocalReceiver<()>,
    senders: Rc<Senders<Message>>,
) {
    loop {
        loop {
            let next = shard.core.borrow_mut().next_mail();
            let Some((to, message)) = next else {
                break;
            };
            shard.mailbox.set_sending(true);
            let sent = senders.send_to(to, message).await;
            shard.mailbox.set_sending(false);
            if sent.is_ok() {
                shard.mailbox.sent(to);
            } else {
                tracing::error!(
                    to,
                    ?message,
                    "a shard message could not be delivered: the peer is gone"
                );
            }
            shard.core.borrow_mut().mail_sent();
        }
        if bell.recv().await.is_none() {
            return;
        }
    }
}

/// One task per peer: applies its messages.
pub(crate) fn spawn_receivers(shard: &Rc<Shard>, receivers: &mut Receivers<Message>) {
    for (peer, stream) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(message) = stream.recv().await {
                shard.mailbox.applied();
                shard
                    .core
                    .borrow_mut()
                    .on_message(peer, message, Instant::now());
                shard.after();
            }
        })
        .detach();
    }
}

/// Writes the journal batches no transport writes: every batch while the uring driver does not
/// (glommio sockets, or after the driver stopped), and the compactions it hands over. One write
/// at a time; waits for a kick when there is nothing to write (the core hands out nothing while
/// a batch is out, so a batch that never comes back cannot make this spin).
pub(crate) async fn journal(shard: Rc<Shard>, mut writer: Writer, kicked: LocalReceiver<()>) {
    loop {
        let batch = shard.compaction.borrow_mut().take().or_else(|| {
            if shard.driver_writes.get() {
                None
            } else {
                shard.core.borrow_mut().next_batch(Instant::now(), true)
            }
        });
        let Some(batch) = batch else {
            if kicked.recv().await.is_none() {
                return;
            }
            continue;
        };
        let result = writer.write(&batch).await;
        if let (Some(file), BatchKind::Compact) = (&shard.journal_file, batch.kind) {
            // A compaction replaced the file: the driver's next write goes to the new one.
            file.fd.set(writer.raw_fd());
            *file.path.borrow_mut() = writer.path();
        }
        {
            let mut core = shard.core.borrow_mut();
            match result {
                Ok(()) => core.write_done(&batch, Instant::now()),
                Err(error) => core.write_failed(error),
            }
        }
        shard.after();
    }
}

/// How often a cluster node's coordinator runs its lease's timers when nothing else woke it: half
/// the shortest of them (`cluster::lease::ROUND_POLL`, `stock::escrow::CENSUS_EVERY`: 20 ms).
#[cfg(feature = "cluster")]
const CLUSTER_TICK: Duration = Duration::from_millis(10);

/// A cluster node's coordinator: gives the core the etcd thread's replies (the thread's send
/// wakes this task: glommio queues a waker woken from another thread to its executor), hands the
/// calls its lease lets out to the thread (the shard's bell rings once one may leave), and runs
/// the lease's timers every [`CLUSTER_TICK`], until the shard left: through a stop's drain of
/// the lease too (a call in flight when it exits is journaled: the next start sends it again).
#[cfg(feature = "cluster")]
pub(crate) async fn cluster(
    shard: Rc<Shard>,
    link: crate::cluster::link::Link,
    bell: LocalReceiver<()>,
) {
    use futures_lite::future::or;
    let mut reply = None;
    loop {
        {
            let mut core = shard.core.borrow_mut();
            if core.left() {
                return;
            }
            let now = Instant::now();
            for reply in reply.take().into_iter().chain(link.replies.try_iter()) {
                core.cluster_reply(reply, now);
            }
            core.cluster_tick(now);
            while let Some(call) = core.next_cluster_call() {
                // The lease makes one call at a time: the queue has room, unless the thread died.
                if let Err(e) = link.calls.try_send(call) {
                    tracing::error!(error = %e, "the etcd thread took no call: the lease stops");
                }
            }
        }
        shard.after();
        let woken = or(async { link.replies.recv_async().await.ok() }, async {
            or(async { bell.recv().await }, async {
                glommio::timer::sleep(CLUSTER_TICK).await;
                Some(())
            })
            .await;
            None
        });
        reply = woken.await;
    }
}

/// After the transport finished: tells the core, then keeps the shard's tasks running (answering
/// peers, sending mail, writing the journal) until the core says the shard may exit, at most
/// until `deadline`.
pub(crate) async fn leave(shard: &Shard, deadline: Instant) {
    shard
        .core
        .borrow_mut()
        .transport_finished(Instant::now(), deadline);
    shard.after();
    // A cluster node's coordinator drains its lease meanwhile (the cluster task drives it).
    while !shard.core.borrow().finished() && Instant::now() < deadline {
        glommio::timer::sleep(LEAVE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use glommio::channels::local_channel;
    use glommio::LocalExecutorBuilder;

    use super::*;
    use crate::config::Mode;
    use crate::durability::journal::{self, MemDisk, Store};
    use crate::net::connection::{ConnLimits, Connection};
    use crate::shard::core::{CoreConfig, ShardCore};
    use crate::shard::ShardParts;

    /// Sells `qty` through the core, as a connection would.
    fn sell(shard: &Shard, key: u64, qty: u64) {
        let body = format!("{{\"qty\":{qty}}}");
        let request = format!(
            "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (mut conn, mut out) = (Connection::default(), Vec::new());
        shard
            .core
            .borrow_mut()
            .input(key, &mut conn, request.as_bytes(), &mut out, Instant::now());
    }

    /// Issue 12, finding 5: the journal task must not spin when a batch it did not take is out
    /// (the uring driver staged a write and exited before it completed) while more changes wait
    /// behind it. It used to loop on "something is pending" while the tail, rightly, handed out
    /// nothing, and the shard's thread spun until the forced exit. Now it waits for a kick, and
    /// the core hands out nothing while a batch is out. A spin would never let this test's own
    /// task run again, so the test thread's timeout catches it.
    #[test]
    fn the_journal_task_waits_while_a_batch_it_did_not_take_is_out() {
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let executor = LocalExecutorBuilder::default().spawn(|| async move {
                let store = Store::Mem(MemDisk::new());
                let recovered = journal::open(&store, 1, 10).await.expect("open");
                let start = recovered.shards[0].clone();
                let (writer, tail) = Writer::open(&store, start, u64::MAX).await.expect("writer");
                let (journal_bell, kicked) = local_channel::new_bounded(1);
                let (mail_bell, _mail) = local_channel::new_bounded(1);
                let (cluster_bell, _cluster) = local_channel::new_bounded(1);
                let config = CoreConfig {
                    mode: Mode::Monolith,
                    shard: 0,
                    shards: 1,
                    stock: 10,
                    max_order_qty: 10,
                    forward_cache_ttl: None,
                    limits: ConnLimits {
                        http: proto_http::Limits::default(),
                        headers_max: 16,
                    },
                    cors: crate::app::cors::Cors::off(),
                    board: crate::app::board::Board::leak(1),
                    docs: crate::app::routes::docs(Mode::Monolith, 10),
                    rate_limit: crate::app::rate_limit::Settings::OFF,
                    idempotency: crate::app::idempotency::Settings::DEFAULT,
                    cluster: None,
                };
                let shard = Rc::new(Shard::new(ShardParts {
                    core: ShardCore::new(config, Some(tail)),
                    mail_bell,
                    journal_bell,
                    cluster_bell,
                    journal_file: None,
                    forwarder: None,
                    mailbox: crate::shard::Mailbox::new(crate::shard::MailCounts::leak(1), 0),
                    head_timeout: Duration::from_secs(1),
                    idle_timeout: Duration::from_secs(1),
                    latency: None,
                }));
                sell(&shard, 1, 1);
                // "The driver" takes the batch and never reports it.
                let out = shard.core.borrow_mut().next_batch(Instant::now(), true);
                assert!(out.is_some(), "a batch for the first sale");
                sell(&shard, 2, 2);
                glommio::spawn_local(journal(shard.clone(), writer, kicked)).detach();
                for _ in 0..20 {
                    shard.kick_journal();
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                assert!(shard.core.borrow().write_out(), "the batch is still out");
                assert_eq!(
                    shard
                        .core
                        .borrow()
                        .commit_stats()
                        .expect("a journal")
                        .commits,
                    0
                );
            });
            executor.expect("executor").join().expect("the test task");
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the journal task spun: the executor never ran the test's task again");
    }
}

//! A cluster node's etcd thread (`--features cluster`, `--cluster-etcd`): a current-thread tokio
//! runtime beside the shards that carries out the calls of the lease the coordinator's core holds
//! (`stock/escrow.rs`), watches the gather round, beats the node's heartbeat and fences silent
//! peers ([`Watch`]). It decides nothing about the lease: calls come in, replies go out, through
//! bounded channels (a reply wakes the coordinator's task); nothing of it is on a request's path.
//!
//! A call is retried until etcd settles it (a lost reply is recognised by the ledger: the
//! request keeps its sequence number), so every call gets its reply, unless the ledger refuses
//! it for good (a bug, or two processes with one node id): that is logged, retried slowly, and
//! the node's orders that wait for the lease wait (their clients time out).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::driver::Watch;
use super::etcd::{self, Etcd, EtcdError};
use super::lease::{Call, Reply};
use super::ledger::Keys;
use crate::config::Cluster;

/// Calls the coordinator may have queued for the thread: the lease makes one at a time, so one
/// slot would do; a few absorb a reply and a new call crossing.
pub const CALLS_QUEUED_MAX: usize = 4;

/// Replies the thread may have queued for the coordinator, which takes them every millisecond:
/// one per call (one call at a time) and a view of the round per change; a full queue makes the
/// thread wait, never drop a reply.
pub const REPLIES_QUEUED_MAX: usize = 64;

/// How often the round is read (a poll standing in for a watch: etcd-client's watch stream
/// would save the reads, at the cost of a reconnect state machine of its own).
pub const ROUND_POLL: Duration = crate::cluster::lease::ROUND_POLL;

/// How long the thread waits between tries of a call etcd keeps refusing for good (logged each
/// time): never a busy loop, and a fixed cluster is picked up within this.
const REFUSED_RETRY: Duration = Duration::from_secs(1);

/// The coordinator's end of the link.
pub struct Link {
    /// Calls to carry out.
    pub calls: tokio::sync::mpsc::Sender<Call>,
    /// Replies, and the round as read: awaiting one in a glommio task is woken by the thread's
    /// send (glommio queues a waker woken from another thread to its executor).
    pub replies: flume::Receiver<Reply>,
}

/// Connects to etcd and starts the node's etcd thread; `Err` (for start-up to report) if the
/// thread or its runtime cannot start or no endpoint answers in time.
pub fn start(cluster: &Cluster) -> Result<Link, String> {
    let keys = Keys::new(&cluster.name).map_err(|e| format!("cluster name: {e}"))?;
    let (calls_tx, calls_rx) = tokio::sync::mpsc::channel(CALLS_QUEUED_MAX);
    let (replies_tx, replies_rx) = flume::bounded(REPLIES_QUEUED_MAX);
    let (ready_tx, ready_rx) = mpsc::channel();
    let endpoints = cluster.etcd.clone();
    let id = cluster.node_id.clone();
    std::thread::Builder::new()
        .name("ticketd-etcd".into())
        .spawn(move || {
            let runtime = match etcd::runtime() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("the etcd thread's runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let etcd = match Etcd::connect(&endpoints, keys).await {
                    Ok(etcd) => etcd,
                    Err(e) => {
                        let why = format!(
                            "connecting to etcd: {e}; check --cluster-etcd (CLUSTER_ETCD) names \
                             running etcd members"
                        );
                        let _ = ready_tx.send(Err(why));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                serve(etcd, &id, calls_rx, replies_tx).await;
            });
        })
        .map_err(|e| format!("starting the etcd thread: {e}"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Link {
            calls: calls_tx,
            replies: replies_rx,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the etcd thread stopped while starting".into()),
    }
}

/// The thread's life: calls as they come, the round every [`ROUND_POLL`], the watch on the peers
/// every turn; ends when the coordinator drops its end.
async fn serve(
    mut etcd: Etcd,
    id: &str,
    mut calls: tokio::sync::mpsc::Receiver<Call>,
    replies: flume::Sender<Reply>,
) {
    let mut watch = Watch::new(id);
    let mut poll = tokio::time::interval(ROUND_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    loop {
        tokio::select! {
            call = calls.recv() => {
                let Some(call) = call else { return };
                let reply = carry_out(&mut etcd, id, call).await;
                if replies.send_async(reply).await.is_err() {
                    return;
                }
            }
            _ = poll.tick() => {
                let deadline = Instant::now() + etcd::CALL_TIMEOUT;
                if let Err(e) = watch.look(&mut etcd, deadline).await {
                    tracing::warn!(error = %e, "watching the cluster's peers failed; trying again");
                }
                match etcd.gather_now(deadline).await {
                    Ok(Some(gather)) if seen != Some(gather) => {
                        seen = Some(gather);
                        if replies.send_async(Reply::Observed(gather)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "reading the gather round failed"),
                }
            }
        }
    }
}

/// Carries out one call until etcd settles it.
async fn carry_out(etcd: &mut Etcd, id: &str, call: Call) -> Reply {
    loop {
        let deadline = Instant::now() + etcd::CALL_TIMEOUT;
        let result = etcd.call(id, call, deadline).await;
        match result {
            Ok(reply) => return reply,
            Err(EtcdError::Unavailable(why)) => {
                // Retried from a fresh read under the same sequence number.
                tracing::warn!(%why, ?call, "etcd did not answer a lease call in time; retrying");
            }
            Err(e) => {
                tracing::error!(error = %e, ?call, "etcd refused a lease call; retrying in 1 s");
                tokio::time::sleep(REFUSED_RETRY).await;
            }
        }
    }
}

//! A cluster node's calls (`--cluster-etcd`): the lease's calls leave the core once their
//! journaled request is durable; replies and the lease's timers come back in as events
//! (`stock/escrow.rs` decides; the etcd thread carries out).

use std::time::Instant;

use super::ShardCore;
use crate::cluster::lease::Call;
use crate::stock::escrow::Reply;

impl ShardCore {
    /// The next call of a cluster node's lease that may leave now (its request is durable);
    /// `None` when there is none or it waits for the journal. After a journal failure calls are
    /// dropped: the lease must not act on what may not be on disk.
    pub fn next_cluster_call(&mut self) -> Option<Call> {
        let &(call, after) = self.cluster_calls.front()?;
        if let (Some(seq), Some(journal)) = (after, &self.journal) {
            if journal.failed().is_some() {
                self.cluster_calls.clear();
                return None;
            }
            if journal.durable() < seq {
                return None;
            }
        }
        self.cluster_calls.pop_front();
        Some(call)
    }

    /// A cluster call may leave now (see [`ShardCore::next_cluster_call`]).
    pub fn cluster_call_ready(&self) -> bool {
        match (self.cluster_calls.front(), &self.journal) {
            (None, _) => false,
            (Some(&(_, Some(seq))), Some(journal)) => {
                journal.failed().is_some() || journal.durable() >= seq
            }
            (Some(_), _) => true,
        }
    }

    /// The reply to a call of a cluster node's lease (or the round as the node saw it).
    pub fn cluster_reply(&mut self, reply: Reply, now: Instant) {
        self.app.outbox.denied.clear();
        // Also while the coordinator waits for its peers to stop: a call that left before is
        // answered (the lease makes no new one until its drain starts).
        if !self.app.halted && !self.left() {
            self.app.node.escrow_reply(reply, now, &mut self.app.outbox);
        }
        self.after_step(now);
    }

    /// The clock moved: a cluster node's lease may want to count, report or ask (its timers).
    pub fn cluster_tick(&mut self, now: Instant) {
        self.app.outbox.denied.clear();
        self.after_step(now);
    }
}

//! Which peers to fence (issue 18), without I/O: every node writes its heartbeat key
//! (`alive/<id>`) every [`HEARTBEAT_EVERY`]; a node that sees a peer's key unchanged for
//! [`FENCE_AFTER`] of its own clock, while the peer holds tickets, fences it. Timeouts decide
//! only *when* a node is fenced: a fence of a node that was merely slow costs it a rejoin, never
//! a ticket (`ledger::fence`), so no clock, lease TTL or clock skew bears on safety.

use std::collections::BTreeMap;
use std::time::Duration;

/// How often a node writes its heartbeat: often enough that [`FENCE_AFTER`] spans many beats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(100);

/// How long a peer's heartbeat may stand still before it is fenced: ten beats, and longer than
/// an etcd leader election (about one election timeout, 1 s by default), during which no one's
/// heartbeat moves.
pub const FENCE_AFTER: Duration = Duration::from_secs(2);

/// What a node knows of its peers' heartbeats.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    /// Per peer: the heartbeat's mod revision last seen, and when (this node's clock) it was
    /// first seen at that revision.
    peers: BTreeMap<String, (i64, Duration)>,
}

impl Liveness {
    /// Peer `id`'s heartbeat key read at mod revision `revision` (0: no key) at `now`.
    pub fn observe(&mut self, id: &str, revision: i64, now: Duration) {
        match self.peers.get_mut(id) {
            Some((seen, since)) if *seen != revision => (*seen, *since) = (revision, now),
            Some(_) => {}
            None => {
                self.peers.insert(id.to_string(), (revision, now));
            }
        }
    }

    /// Whether peer `id`'s heartbeat has stood still for [`FENCE_AFTER`] by `now` (a peer never
    /// observed is not silent: it gets its full time from the first look).
    pub fn silent(&self, id: &str, now: Duration) -> bool {
        self.peers
            .get(id)
            .is_some_and(|&(_, since)| now.saturating_sub(since) >= FENCE_AFTER)
    }

    /// Forgets peer `id` (fenced: its next heartbeat starts a new count).
    pub fn forget(&mut self, id: &str) {
        self.peers.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_silent_after_its_heartbeat_stood_still_for_the_fence_time() {
        let mut live = Liveness::default();
        let t = |ms| Duration::from_millis(ms);
        live.observe("b", 5, t(0));
        assert!(!live.silent("b", t(1_999)));
        live.observe("b", 9, t(1_500));
        assert!(!live.silent("b", t(3_000)), "it beat at 1.5 s");
        live.observe("b", 9, t(3_400));
        assert!(live.silent("b", t(3_500)));
        assert!(!live.silent("never-seen", t(10_000)));
        live.forget("b");
        assert!(!live.silent("b", t(9_000)));
    }
}

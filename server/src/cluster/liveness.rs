//! Which peers to fence (issue 18), without I/O: every node writes its heartbeat key
//! (`alive/<id>`) every [`HEARTBEAT_EVERY`], from a task of its own (not between calls: a call
//! retrying through an election must not stop the beats); a node that sees a peer's key
//! unchanged for [`FENCE_AFTER`] of its own clock *and* across [`FENCE_BEATS`] of its own beats
//! that landed, while the peer holds tickets, fences it. Counting its own landed beats is what
//! keeps an etcd outage (no leader: nobody's beat lands) from reading as every peer's silence.
//! Timeouts decide only *when* a node is fenced: a fence of a node that was merely slow costs it
//! a rejoin, never a ticket (`ledger::fence`), so no clock, lease TTL or clock skew bears on
//! safety.

use std::collections::BTreeMap;
use std::time::Duration;

/// How often a node writes its heartbeat: often enough that [`FENCE_AFTER`] spans many beats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(100);

/// How long a peer's heartbeat may stand still before it is fenced: twenty beats, and longer
/// than a call's timeout (`etcd::CALL_TIMEOUT`, 2 s), so that one hung call of the peer's own
/// beat task does not get it fenced.
pub const FENCE_AFTER: Duration = Duration::from_secs(3);

/// How many of the fencer's own beats must land while a peer's stands still: the cluster was
/// writable for that long (an outage stops every beat alike, and fences no one).
pub const FENCE_BEATS: u64 = 15;

/// What a node knows of its peers' heartbeats.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    /// Per peer: the heartbeat's mod revision last seen, and when (this node's clock, and its
    /// own landed beats) it was first seen at that revision.
    peers: BTreeMap<String, (i64, Duration, u64)>,
}

impl Liveness {
    /// Peer `id`'s heartbeat key read at mod revision `revision` (0: no key), the read having
    /// returned at `now`, after `beats` of this node's own beats had landed.
    pub fn observe(&mut self, id: &str, revision: i64, now: Duration, beats: u64) {
        match self.peers.get_mut(id) {
            Some(seen) if seen.0 != revision => *seen = (revision, now, beats),
            Some(_) => {}
            None => {
                self.peers.insert(id.to_string(), (revision, now, beats));
            }
        }
    }

    /// Whether peer `id`'s heartbeat has stood still for [`FENCE_AFTER`] by `now` and across
    /// [`FENCE_BEATS`] of this node's own landed beats (`beats` now). A peer never observed is
    /// not silent: it gets its full time from the first look.
    pub fn silent(&self, id: &str, now: Duration, beats: u64) -> bool {
        self.peers.get(id).is_some_and(|&(_, since, since_beats)| {
            now.saturating_sub(since) >= FENCE_AFTER
                && beats.saturating_sub(since_beats) >= FENCE_BEATS
        })
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
    fn a_peer_is_silent_after_its_heartbeat_stood_still_while_ours_landed() {
        let mut live = Liveness::default();
        let t = |ms| Duration::from_millis(ms);
        live.observe("b", 5, t(0), 0);
        assert!(!live.silent("b", t(2_999), 40));
        live.observe("b", 9, t(1_500), 15);
        assert!(!live.silent("b", t(4_000), 40), "it beat at 1.5 s");
        live.observe("b", 9, t(4_400), 44);
        assert!(live.silent("b", t(4_500), 45));
        // An outage: our own beats did not land either.
        assert!(!live.silent("b", t(4_500), 29));
        assert!(!live.silent("never-seen", t(10_000), 100));
        live.forget("b");
        assert!(!live.silent("b", t(9_000), 90));
    }
}

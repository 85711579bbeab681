//! A node's lease carried out on etcd (`--features cluster`): each turn writes the node's
//! heartbeat and fences silent peers (`cluster::liveness` decides which), reads the gather round
//! (a poll standing in for the watch the node's etcd thread will hold), asks the lease for its
//! next call and makes it, and hands the result back. Every decision is `cluster::lease`'s or
//! `cluster::liveness`'s; this only carries it out, as the node's etcd thread will.
//!
//! The caller persists [`Lease::journal`] after each turn (the lease changed it before the
//! call left, and again with its outcome).

use std::time::Instant;

use std::time::Duration;

use super::etcd::{Etcd, EtcdError};
use super::lease::{Call, Lease};
use super::liveness::{Liveness, HEARTBEAT_EVERY};

/// A node's lease and its connection to the ledger.
pub struct Driver {
    /// The node's id.
    id: String,
    /// Its lease.
    lease: Lease,
    /// The ledger.
    etcd: Etcd,
    /// The lease's clock starts here.
    started: Instant,
    /// The peers' heartbeats as seen.
    liveness: Liveness,
    /// Heartbeats written.
    beats: u64,
    /// When the last heartbeat was written and the peers last looked at.
    beat_at: Option<Duration>,
    /// Peers this driver fenced.
    fenced: u64,
}

impl Driver {
    /// Node `id`'s driver, with a new lease of `window` (see [`Lease::new`]).
    pub fn new(id: &str, etcd: Etcd, window: u64) -> Driver {
        Driver {
            id: id.to_string(),
            lease: Lease::new(window, std::time::Duration::ZERO),
            etcd,
            started: Instant::now(),
            liveness: Liveness::default(),
            beats: 0,
            beat_at: None,
            fenced: 0,
        }
    }

    /// Peers this driver fenced.
    pub fn fenced(&self) -> u64 {
        self.fenced
    }

    /// Every [`HEARTBEAT_EVERY`]: writes this node's heartbeat, and fences every peer that holds
    /// tickets and whose heartbeat stood still for `FENCE_AFTER` (`cluster::liveness`).
    async fn beat(&mut self, deadline: Instant) -> Result<(), EtcdError> {
        let now = self.started.elapsed();
        if self
            .beat_at
            .is_some_and(|at| now.saturating_sub(at) < HEARTBEAT_EVERY)
        {
            return Ok(());
        }
        self.beat_at = Some(now);
        self.beats += 1;
        // A lost beat is the next one's business; the peers allow ten.
        let _ = self.etcd.heartbeat(&self.id, self.beats).await;
        for (peer, revision, record) in self.etcd.peers(deadline).await? {
            if peer == self.id {
                continue;
            }
            self.liveness.observe(&peer, revision, now);
            if record.granted > 0 && self.liveness.silent(&peer, now) {
                // At the epoch read: a retry after a lost reply finds it fenced already.
                self.etcd.fence(&peer, record.epoch, deadline).await?;
                self.liveness.forget(&peer);
                self.fenced += 1;
            }
        }
        Ok(())
    }

    /// The lease: orders and sales go to it directly (no etcd on that path).
    pub fn lease(&mut self) -> &mut Lease {
        &mut self.lease
    }

    /// The node sold `tickets` (durably): [`Lease::sold`] at the driver's clock.
    pub fn sold(&mut self, tickets: u64) {
        self.lease.sold(tickets, self.started.elapsed());
    }

    /// The ledger connection (its counts).
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// One turn: observe the round, make the call the lease wants (if any), give it the
    /// result. Returns whether a call was made. An error leaves the request journaled: the next
    /// turn sends it again under its number.
    pub async fn turn(&mut self, deadline: Instant) -> Result<bool, EtcdError> {
        self.beat(deadline).await?;
        if let Some(gather) = self.etcd.gather_now(deadline).await? {
            self.lease.observe(gather);
        }
        let now = self.started.elapsed();
        let Some(call) = self.lease.next(now) else {
            return Ok(false);
        };
        match call {
            Call::Node(request) => {
                let outcome = self.etcd.transact(&self.id, &request, deadline).await?;
                self.lease.outcome(outcome, self.started.elapsed());
            }
            Call::Open => {
                let opened = self.etcd.open_gather(deadline).await?;
                self.lease.opened(opened);
            }
        }
        Ok(true)
    }
}

//! A node's lease carried out on etcd (`--features cluster`): a task of its own writes the
//! node's heartbeat while the runtime runs; each turn fences silent peers (`cluster::liveness`
//! decides which), reads the gather round (a poll standing in for the watch the node's etcd
//! thread will hold), asks the lease for its next call and makes it, and hands the result back. Every decision is `cluster::lease`'s or
//! `cluster::liveness`'s; this only carries it out, as the node's etcd thread will.
//!
//! The caller persists [`Lease::journal`] after each turn (the lease changed it before the
//! call left, and again with its outcome).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::etcd::{Etcd, EtcdError};
use super::lease::Lease;
use super::liveness::{Liveness, HEARTBEAT_EVERY};

/// A node's watch on its peers: its own heartbeats (a task of their own), and fences of the
/// peers whose heartbeats stood still as `cluster::liveness` counts it. The server's etcd thread
/// and [`Driver`] both run it.
pub struct Watch {
    /// The node's id.
    id: String,
    /// The watch's clock starts here.
    started: Instant,
    /// The peers' heartbeats as seen.
    liveness: Liveness,
    /// This node's beats that landed (its heartbeat task counts them).
    landed: Arc<AtomicU64>,
    /// An error no retry changes, met by the heartbeat task.
    refused: Arc<Mutex<Option<String>>>,
    /// Whether the heartbeat task runs.
    beating: bool,
    /// When the peers were last looked at.
    looked_at: Option<Duration>,
    /// Peers this node fenced.
    fenced: u64,
}

impl Watch {
    /// Node `id`'s watch.
    pub fn new(id: &str) -> Watch {
        Watch {
            id: id.to_string(),
            started: Instant::now(),
            liveness: Liveness::default(),
            landed: Arc::new(AtomicU64::new(0)),
            refused: Arc::new(Mutex::new(None)),
            beating: false,
            looked_at: None,
            fenced: 0,
        }
    }

    /// Peers this node fenced.
    pub fn fenced(&self) -> u64 {
        self.fenced
    }

    /// Every [`HEARTBEAT_EVERY`]: fences every peer that holds tickets and whose heartbeat stood
    /// still as `cluster::liveness` counts it. Starts the heartbeat task (on the current tokio
    /// runtime) on the first call.
    pub async fn look(&mut self, etcd: &mut Etcd, deadline: Instant) -> Result<(), EtcdError> {
        if !self.beating {
            let (landed, refused) = (self.landed.clone(), self.refused.clone());
            tokio::spawn(etcd.heartbeats(&self.id, landed, refused));
            self.beating = true;
        }
        if let Some(why) = self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(EtcdError::Refused(why));
        }
        let now = self.started.elapsed();
        if self
            .looked_at
            .is_some_and(|at| now.saturating_sub(at) < HEARTBEAT_EVERY)
        {
            return Ok(());
        }
        self.looked_at = Some(now);
        let peers = etcd.peers(deadline).await?;
        // Silence counts from when the read returned: a slow read never shortens a peer's time.
        let (now, beats) = (self.started.elapsed(), self.landed.load(Ordering::Relaxed));
        for (peer, revision, record) in peers {
            if peer == self.id {
                continue;
            }
            self.liveness.observe(&peer, revision, now, beats);
            if record.granted > 0 && self.liveness.silent(&peer, now, beats) {
                // At the epoch read: a retry after a lost reply finds it fenced already.
                etcd.fence(&peer, record.epoch, deadline).await?;
                self.liveness.forget(&peer);
                self.fenced += 1;
            }
        }
        Ok(())
    }
}

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
    /// Heartbeats and fences.
    watch: Watch,
}

impl Driver {
    /// Node `id`'s driver, with a new lease of `window` (see [`Lease::new`]).
    pub fn new(id: &str, etcd: Etcd, window: u64) -> Driver {
        Driver {
            id: id.to_string(),
            lease: Lease::new(window, Duration::ZERO),
            etcd,
            started: Instant::now(),
            watch: Watch::new(id),
        }
    }

    /// Peers this driver fenced.
    pub fn fenced(&self) -> u64 {
        self.watch.fenced()
    }

    /// Lets the runtime run (the heartbeat task with it) for `period`.
    pub async fn wait(&self, period: Duration) {
        tokio::time::sleep(period).await;
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
        self.watch.look(&mut self.etcd, deadline).await?;
        if let Some(gather) = self.etcd.gather_now(deadline).await? {
            self.lease.observe(gather);
        }
        let now = self.started.elapsed();
        let Some(call) = self.lease.next(now) else {
            return Ok(false);
        };
        let reply = self.etcd.call(&self.id, call, deadline).await?;
        self.lease.take(reply, self.started.elapsed());
        Ok(true)
    }
}

//! A shard's pool of connections to the vacancy service: which connection takes the next
//! request, when to open one, which idle ones to close.

use std::time::Instant;

use super::{Outcome, RequestId, UpstreamConfig, UpstreamConn, PIPELINE_DEPTH_MAX};

/// What the caller does with a forwarded reserve, from [`Pool::pick`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Enqueue it on the connection at this index.
    Use(usize),
    /// Open a new connection ([`Pool::open`]) and enqueue it there.
    Open,
    /// Every connection is at its pipelining limit and the pool at `max_connections`: queue the
    /// purchase or answer 503.
    Full,
}

/// A shard's connections to the vacancy service. Indices are stable while a connection lives;
/// a closed one's index is reused by the next [`Pool::open`].
#[derive(Debug)]
pub struct Pool {
    /// Given to every connection.
    config: UpstreamConfig,
    /// Connections by index; `None` is a free slot.
    slots: Vec<Option<UpstreamConn>>,
    /// `Some` entries of `slots`.
    open: usize,
    /// At most this many connections (`HTTP_MAX_CONNECTIONS`).
    max_connections: usize,
    /// At most this many idle reusable connections stay open (`HTTP_KEEPALIVE_CONNECTIONS`).
    keepalive: usize,
}

impl Pool {
    /// An empty pool. The configuration already checks `keepalive <= max_connections`; it is
    /// asserted again here because the pool's arithmetic relies on it.
    pub fn new(config: UpstreamConfig, max_connections: usize, keepalive: usize) -> Self {
        assert!(max_connections > 0, "a pool needs at least one connection");
        assert!(
            keepalive <= max_connections,
            "keepalive above max_connections"
        );
        Pool {
            config,
            slots: Vec::with_capacity(max_connections),
            open: 0,
            max_connections,
            keepalive,
        }
    }

    /// Open connections, broken ones still draining included.
    pub fn open_count(&self) -> usize {
        self.open
    }

    /// Where the next request goes: the reusable connection with the fewest requests in flight
    /// below [`PIPELINE_DEPTH_MAX`] (the lowest index among equals), else a new connection while
    /// below `max_connections`, else [`Pick::Full`]. No clock is needed: deadlines are enforced by
    /// [`Pool::expire`], which breaks a late connection so it is no longer picked.
    pub fn pick(&self) -> Pick {
        let best = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.as_ref()?)))
            .filter(|(_, c)| c.can_reuse() && c.in_flight() < PIPELINE_DEPTH_MAX)
            .min_by_key(|(_, c)| c.in_flight());
        match best {
            Some((i, _)) => Pick::Use(i),
            None if self.open < self.max_connections => Pick::Open,
            None => Pick::Full,
        }
    }

    /// Adds a connection (the caller starts connecting it) and returns its index.
    pub fn open(&mut self) -> usize {
        assert!(self.open < self.max_connections, "pool is full");
        let conn = Some(UpstreamConn::new(self.config.clone()));
        self.open += 1;
        match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = conn;
                i
            }
            None => {
                self.slots.push(conn);
                self.slots.len() - 1
            }
        }
    }

    /// The connection at `index`, which must be open.
    pub fn conn(&mut self, index: usize) -> &mut UpstreamConn {
        self.slots[index]
            .as_mut()
            .expect("no upstream connection at this index")
    }

    /// The transport closed the connection at `index` (peer close, error, or trimmed): what was
    /// still in flight fails as by [`UpstreamConn::on_closed`], and the slot is freed. After an
    /// error, call [`UpstreamConn::on_error`] first, so a truncated body is not read as whole.
    pub fn closed(&mut self, index: usize, done: &mut Vec<(RequestId, Outcome)>) {
        let mut conn = self.slots[index]
            .take()
            .expect("no upstream connection at this index");
        conn.on_closed(done);
        self.open -= 1;
    }

    /// Expires late requests on every connection (see [`UpstreamConn::expire`]).
    pub fn expire(&mut self, now: Instant, done: &mut Vec<(RequestId, Outcome)>) {
        for conn in self.slots.iter_mut().flatten() {
            conn.expire(now, done);
        }
    }

    /// The earliest deadline over all connections, for the shard's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .flatten()
            .filter_map(UpstreamConn::next_deadline)
            .min()
    }

    /// Connections the caller should close now: broken ones with nothing in flight, and idle
    /// reusable ones beyond the first `keepalive` (by index, so the survivors are stable).
    pub fn idle_excess(&self) -> impl Iterator<Item = usize> + '_ {
        let mut kept = 0;
        self.slots.iter().enumerate().filter_map(move |(i, s)| {
            let conn = s.as_ref()?;
            if conn.in_flight() > 0 {
                return None;
            }
            if conn.is_broken() {
                return Some(i);
            }
            if kept < self.keepalive {
                kept += 1;
                return None;
            }
            Some(i)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::forward::upstream::tests::{config, RESERVED_5};
    use crate::forward::upstream::{FailKind, Request};

    #[test]
    fn pool_spreads_opens_fills_and_trims() {
        let now = Instant::now();
        let mut pool = Pool::new(config(), 3, 1);
        let mut out = Vec::new();
        let mut done = Vec::new();
        assert_eq!(pool.pick(), Pick::Open);
        assert_eq!(pool.open(), 0);
        // One connection takes requests up to the pipelining limit, then another opens.
        for id in 0..PIPELINE_DEPTH_MAX as u64 {
            assert_eq!(pool.pick(), Pick::Use(0));
            pool.conn(0)
                .enqueue(id, Request::Reserve { qty: 1 }, b"", now, &mut out);
        }
        assert_eq!(pool.pick(), Pick::Open);
        assert_eq!(pool.open(), 1);
        assert_eq!(pool.open(), 2);
        // Load spreads to the least loaded, lowest index first.
        let mut picks = Vec::new();
        for id in 100..104 {
            let Pick::Use(i) = pool.pick() else { panic!() };
            pool.conn(i)
                .enqueue(id, Request::Reserve { qty: 1 }, b"", now, &mut out);
            picks.push(i);
        }
        assert_eq!(picks, [1, 2, 1, 2]);
        // Fill everything: Full at max.
        while let Pick::Use(i) = pool.pick() {
            pool.conn(i)
                .enqueue(0, Request::Reserve { qty: 1 }, b"", now, &mut out);
        }
        assert_eq!(pool.pick(), Pick::Full);
        assert_eq!(pool.open_count(), 3);
        // Connection 1 answers everything; 2 and 0 close. Only 1 is idle: kept (keepalive 1).
        let answers = RESERVED_5.repeat(PIPELINE_DEPTH_MAX);
        pool.conn(1).on_sent(0);
        pool.conn(1).on_input(&answers, &mut done);
        assert_eq!(done.len(), PIPELINE_DEPTH_MAX);
        assert_eq!(pool.pick(), Pick::Use(1));
        assert_eq!(pool.idle_excess().count(), 0);
        done.clear();
        pool.closed(2, &mut done);
        assert_eq!(done.len(), PIPELINE_DEPTH_MAX);
        assert!(done
            .iter()
            .all(|(_, o)| *o == Outcome::Failed(FailKind::NotSent)));
        // A freed slot is reused; two idle connections exceed keepalive 1: the later is trimmed.
        assert_eq!(pool.open(), 2);
        assert_eq!(pool.idle_excess().collect::<Vec<_>>(), [2]);
        // A broken idle connection is always excess, and never picked.
        done.clear();
        pool.conn(0).on_error(&mut done);
        assert_eq!(pool.idle_excess().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(pool.pick(), Pick::Use(1));
        for i in [0, 2] {
            pool.closed(i, &mut done);
        }
        assert_eq!(pool.open_count(), 1);
        assert_eq!(pool.pick(), Pick::Use(1));
    }

    /// Expiry through the pool breaks the late connection, so the next pick avoids it.
    #[test]
    fn pool_expire_avoids_late_connection() {
        let t0 = Instant::now();
        let mut pool = Pool::new(config(), 2, 2);
        let mut out = Vec::new();
        let mut done = Vec::new();
        let a = pool.open();
        pool.conn(a)
            .enqueue(1, Request::Reserve { qty: 1 }, b"", t0, &mut out);
        assert_eq!(pool.next_deadline(), Some(t0 + Duration::from_secs(2)));
        pool.expire(t0 + Duration::from_secs(2), &mut done);
        // No byte was reported written (stuck behind its connect): not sent, the caller drops
        // the bytes.
        assert_eq!(done, vec![(1, Outcome::Failed(FailKind::NotSent))]);
        assert_eq!(pool.pick(), Pick::Open);
        assert_eq!(pool.idle_excess().collect::<Vec<_>>(), [a]);
    }
}

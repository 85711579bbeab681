//! Per-client rate limiting: a token bucket per client address, on one shard.
//!
//! A client's connections land on different shards under SO_REUSEPORT, and shards share no
//! state on the request path, so each shard runs its own buckets with the *full* configured rate
//! and burst. A client on one connection (or whose connections land on one shard) gets exactly
//! the configured limit; one whose connections spread over N shards gets at most N× the rate and
//! N× the burst. Dividing the rate by N instead would hold the spread client to the rate but cut
//! every single-connection client to rate/N, refusing honest clients to bound abusive ones by a
//! known factor; the bound here is documented in the README instead.
//!
//! The table is bounded ([`TRACKED_CLIENTS_MAX`]): when it is full, the least recently seen
//! address is forgotten (its bucket starts full if it comes back: a forgotten client gains at most
//! one burst). Entries live in a slab linked in order of use, so a hit, an insert and an eviction
//! are O(1); memory is allocated only when a new address is added below the maximum. With the
//! limit off, `App` holds no `RateLimit` at all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Client addresses tracked per shard at most. 16,384 entries of about 64 bytes (plus the map's
/// index) is about 1.5 MiB per shard at worst: far more distinct clients than one shard serves
/// within a burst's refill time, and small enough that spoofed or spread addresses cannot grow it.
pub const TRACKED_CLIENTS_MAX: usize = 16 * 1024;

/// No neighbour in the use order.
const NIL: u32 = u32::MAX;

/// The configured limit (`--rate-limit-*`), as each shard applies it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Tokens per second per client address; 0: off.
    pub per_second: f64,
    /// The bucket's size (at least 1 when on).
    pub burst: u32,
    /// Every request counts, not only purchases.
    pub all_routes: bool,
}

impl Settings {
    /// No rate limit (the default).
    pub const OFF: Settings = Settings {
        per_second: 0.0,
        burst: 1,
        all_routes: false,
    };
}

/// What the limit says about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: a token was taken.
    Allow,
    /// Over the limit: try again in this many whole seconds (rounded up, at least 1).
    Limited {
        /// Seconds until a token is there, for `Retry-After`.
        retry_after_s: u64,
    },
}

/// One client's bucket, and its neighbours in the use order.
#[derive(Clone, Copy, Debug)]
struct Entry {
    ip: IpAddr,
    /// Tokens left, at most the burst.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
    /// More recently used neighbour.
    newer: u32,
    /// Less recently used neighbour.
    older: u32,
}

/// A shard's buckets.
#[derive(Debug)]
pub struct RateLimit {
    /// Tokens added per second.
    per_second: f64,
    /// The bucket's size.
    burst: f64,
    /// Every route counts, not only purchases.
    pub all_routes: bool,
    /// Where each address's entry is in `entries`.
    index: HashMap<IpAddr, u32>,
    /// The buckets, linked from most to least recently used.
    entries: Vec<Entry>,
    /// Most recently used entry.
    newest: u32,
    /// Least recently used entry: the next to be forgotten.
    oldest: u32,
    /// The most entries kept.
    max: usize,
}

impl RateLimit {
    /// The limit `settings` describe, or `None` when it is off.
    pub fn new(settings: Settings) -> Option<RateLimit> {
        let Settings {
            per_second,
            burst,
            all_routes,
        } = settings;
        Self::with_max(per_second, burst, all_routes, TRACKED_CLIENTS_MAX)
    }

    fn with_max(per_second: f64, burst: u32, all_routes: bool, max: usize) -> Option<RateLimit> {
        (per_second > 0.0).then(|| {
            assert!(burst >= 1 && max >= 1 && max < NIL as usize);
            RateLimit {
                per_second,
                burst: f64::from(burst),
                all_routes,
                index: HashMap::new(),
                entries: Vec::new(),
                newest: NIL,
                oldest: NIL,
                max,
            }
        })
    }

    /// Takes a token from `ip`'s bucket at `now`, if there is one.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let slot = match self.index.get(&ip) {
            Some(&slot) => {
                self.unlink(slot);
                let e = &mut self.entries[slot as usize];
                let elapsed = now.saturating_duration_since(e.at).as_secs_f64();
                e.tokens = (e.tokens + elapsed * self.per_second).min(self.burst);
                e.at = now;
                slot
            }
            None => self.insert(ip, now),
        };
        self.link_newest(slot);
        let e = &mut self.entries[slot as usize];
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            return Verdict::Allow;
        }
        let retry_after_s = ((1.0 - e.tokens) / self.per_second).ceil().max(1.0);
        Verdict::Limited {
            retry_after_s: retry_after_s as u64,
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.index.len()
    }

    /// A full bucket for `ip`, in a new slot or the least recently used one's; not yet linked.
    fn insert(&mut self, ip: IpAddr, now: Instant) -> u32 {
        let fresh = Entry {
            ip,
            tokens: self.burst,
            at: now,
            newer: NIL,
            older: NIL,
        };
        let slot = if self.entries.len() < self.max {
            self.entries.push(fresh);
            (self.entries.len() - 1) as u32
        } else {
            let slot = self.oldest;
            self.unlink(slot);
            let gone = self.entries[slot as usize].ip;
            self.index.remove(&gone);
            self.entries[slot as usize] = fresh;
            slot
        };
        self.index.insert(ip, slot);
        assert!(self.index.len() == self.entries.len());
        slot
    }

    fn unlink(&mut self, slot: u32) {
        let Entry { newer, older, .. } = self.entries[slot as usize];
        match newer {
            NIL => self.newest = older,
            n => self.entries[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.entries[o as usize].newer = newer,
        }
    }

    fn link_newest(&mut self, slot: u32) {
        let old_newest = self.newest;
        let e = &mut self.entries[slot as usize];
        e.newer = NIL;
        e.older = old_newest;
        match old_newest {
            NIL => self.oldest = slot,
            n => self.entries[n as usize].newer = slot,
        }
        self.newest = slot;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    /// A burst of 3 at 2 per second: three pass, the fourth waits 1 s (0.5 s rounded up); half a
    /// second later one more passes; other addresses have their own buckets.
    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut limit = RateLimit::with_max(2.0, 3, false, 8).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.check(ip(1), t0), Verdict::Allow);
        }
        assert_eq!(
            limit.check(ip(1), t0),
            Verdict::Limited { retry_after_s: 1 }
        );
        assert_eq!(limit.check(ip(2), t0), Verdict::Allow);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limit.check(ip(1), t1), Verdict::Allow);
        assert!(matches!(limit.check(ip(1), t1), Verdict::Limited { .. }));
        // Slow rates round up to whole seconds.
        let mut slow = RateLimit::with_max(0.1, 1, false, 8).unwrap();
        assert_eq!(slow.check(ip(1), t0), Verdict::Allow);
        assert_eq!(
            slow.check(ip(1), t0),
            Verdict::Limited { retry_after_s: 10 }
        );
        assert!(RateLimit::new(Settings::OFF).is_none(), "0 is off");
    }

    /// The table never holds more than its maximum; the least recently seen address goes first,
    /// and a recently seen one stays.
    #[test]
    fn the_least_recently_seen_address_is_forgotten() {
        let mut limit = RateLimit::with_max(1.0, 1, false, 3).unwrap();
        let t = Instant::now();
        for n in 1..=3 {
            assert_eq!(limit.check(ip(n), t), Verdict::Allow);
        }
        assert!(matches!(limit.check(ip(1), t), Verdict::Limited { .. }));
        // 2 is now the least recently seen: 4 takes its place.
        assert_eq!(limit.check(ip(4), t), Verdict::Allow);
        assert_eq!(limit.tracked(), 3);
        assert_eq!(limit.check(ip(2), t), Verdict::Allow, "2 was forgotten");
        // That evicted 3; 1 and 4 are still limited.
        assert!(matches!(limit.check(ip(1), t), Verdict::Limited { .. }));
        assert!(matches!(limit.check(ip(4), t), Verdict::Limited { .. }));
        assert_eq!(limit.check(ip(3), t), Verdict::Allow, "3 was forgotten");
        for n in 0..200 {
            limit.check(ip(n), t);
            assert_eq!(limit.tracked(), 3.min(limit.entries.len()));
        }
        assert_eq!(limit.tracked(), 3);
    }
}

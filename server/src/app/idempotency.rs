//! `Idempotency-Key` (issue 17), the pure parts: the header's grammar, the key's digest and
//! owner shard, and [`Keys`], one shard's table of the keys it owns: their answers, kept for
//! `IDEMPOTENCY_TTL` and at most `IDEMPOTENCY_KEYS_MAX` of them, and the ones still in flight.
//!
//! Decisions (see the README's "Idempotency-Key" section for the client's view):
//! - A key is remembered by a 128-bit FNV-1a digest of its bytes, not the bytes: a fixed-size
//!   `Copy` value that mail between shards and the journal carry without allocating. Two
//!   different keys collide with odds of about n²/2¹²⁹ (n keys alive): never, in practice. The
//!   digest is the same in every run, so the owner shard (`journal::keyed::owner`) is too.
//! - A request's fingerprint is what it means, not its bytes: the route and `qty`. `{"qty":2}`
//!   and `{ "qty": 2 }` are the same request; `qty` 3, or the other route, is not (422).
//! - A duplicate of a request still in flight answers 409 at once instead of waiting: a waiter
//!   would need a deferred answer chained to another connection's and a bound of its own, and
//!   409 tells the client exactly what to do (retry later), as Stripe answers.
//! - Only answers that report an order (sold, or insufficient stock) are kept. A 400 (bad body
//!   or key) is the same on a retry anyway, and a 503 (journal failed) means the outcome is
//!   unknown: nothing is kept, so no retry is told a result nobody knows.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use crate::durability::journal::KeyRecord;
use crate::stock::rebalance::OrderId;

/// The request header, as `RequestHead::header` looks it up (case-insensitively).
pub const HEADER: &[u8] = b"idempotency-key";

/// The longest key accepted, in bytes: Stripe's limit, long enough for a UUID with a prefix or
/// a hash in hex, short enough that a bad client cannot make keys a memory problem.
pub const KEY_BYTES_MAX: usize = 255;

/// How long a key's answer is kept by default: a day, as Stripe keeps keys, longer than any
/// client retries an order.
pub const TTL_DEFAULT: Duration = Duration::from_secs(24 * 60 * 60);

/// The most keys one shard keeps by default; the oldest goes first beyond it. At about 100
/// bytes each (table, order, journal copy) that is some 10 MB per shard, and a day of keys at a
/// thousand keyed orders a minute per shard.
pub const KEYS_PER_SHARD_DEFAULT: usize = 100_000;

/// Mail ids of keyed requests waiting for their owner shard live above this bit, apart from the
/// order ids of the stock protocol and the ticket tier's request ids, which count from 0 in the
/// same map of waiting connections and never get near it.
pub const HOP_ID_BASE: u64 = 1 << 62;

/// Why a header value is not a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// An empty value.
    Empty,
    /// More than [`KEY_BYTES_MAX`] bytes.
    TooLong,
    /// A byte outside visible ASCII (0x21 to 0x7e): spaces, controls, UTF-8.
    NotVisibleAscii,
    /// The header came more than once, with different values.
    Repeated,
}

impl KeyError {
    /// The 400's detail.
    pub fn detail(self) -> &'static str {
        match self {
            KeyError::Empty => "Idempotency-Key is empty",
            KeyError::TooLong => "Idempotency-Key is longer than 255 bytes",
            KeyError::NotVisibleAscii => {
                "Idempotency-Key may hold visible ASCII characters only (no spaces)"
            }
            KeyError::Repeated => "Idempotency-Key was sent more than once, with different values",
        }
    }
}

/// The request's `Idempotency-Key` value, if any: one field, or several with the same value
/// (as a proxy may repeat it). Several with different values are refused: which one the client
/// meant cannot be known, and a proxy that joins them with a comma would send an invalid key.
pub fn header_value<'b>(headers: &[proto_http::Header<'b>]) -> Result<Option<&'b [u8]>, KeyError> {
    let mut found = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(HEADER))
    {
        match found {
            None => found = Some(h.value),
            Some(v) if v == h.value => {}
            Some(_) => return Err(KeyError::Repeated),
        }
    }
    Ok(found)
}

/// The digest of a valid header value, or why it is not one.
pub fn parse(value: &[u8]) -> Result<u128, KeyError> {
    if value.is_empty() {
        return Err(KeyError::Empty);
    }
    if value.len() > KEY_BYTES_MAX {
        return Err(KeyError::TooLong);
    }
    if !value.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(KeyError::NotVisibleAscii);
    }
    Ok(digest(value))
}

/// FNV-1a, 128 bits (offset basis and prime of the FNV specification).
pub fn digest(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

/// What a keyed request asks: its route (1 purchase, 2 reserve, as journaled) and `qty`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// 1 purchase, 2 reserve.
    pub route: u8,
    /// Tickets asked for.
    pub qty: u64,
}

impl Fingerprint {
    /// The fingerprint a recorded answer was made for.
    fn of(r: &KeyRecord) -> Fingerprint {
        Fingerprint {
            route: r.route,
            qty: r.qty,
        }
    }
}

/// What the table says about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Unknown (or expired): execute the request.
    New,
    /// Answered before, for the same request: answer the same again.
    Replay(KeyRecord),
    /// The same request is being executed now: 409.
    InFlight,
    /// Known, for another request: 422.
    Reused,
}

/// The answer to a keyed request, as the owner shard gives it (to its own connection, or in
/// mail to the shard that holds the connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAnswer {
    /// The order's answer; `first`: this request made it (else a replay).
    Done {
        /// The answer.
        record: KeyRecord,
        /// Whether this request executed the order.
        first: bool,
    },
    /// 409: the first request with this key is still in flight.
    InFlight,
    /// 422: the key was used for another request.
    Reused,
    /// 409 `sales_closed`: an operator closed sales; nothing was done or recorded, so the key
    /// runs once sales open again.
    Closed,
    /// 503: the owner's journal failed; nothing was recorded.
    Halted,
    /// 503 `cluster_unavailable`: a cluster node's ledger did not settle the order in time;
    /// nothing was done or recorded, so a retry with the key runs it.
    Unavailable,
}

/// Mail about keyed requests between the shard holding the connection and the key's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMail {
    /// To the owner: execute (or look up) this keyed request; answer with `id`.
    Ask {
        /// The asking shard's id for the waiting connection (above [`HOP_ID_BASE`]).
        id: u64,
        /// The key's digest.
        key: u128,
        /// The request.
        fingerprint: Fingerprint,
    },
    /// To the asking shard: the answer. Leaves only once the owner's journal holds it.
    Answer {
        /// The id the ask carried.
        id: u64,
        /// The answer.
        answer: KeyAnswer,
    },
    /// The owner to the coordinator, posted just ahead of the order's `Escalate`: escalated
    /// order `order` carries this key. When the coordinator sells it, it journals the key with
    /// the sale in one record.
    Escalated {
        /// The owner's order number.
        order: OrderId,
        /// The key's digest.
        key: u128,
        /// The request.
        fingerprint: Fingerprint,
    },
    /// The coordinator to the owner, posted just ahead of the order's `Decided`: the answer
    /// it journaled (or, for a refusal, made) for escalated keyed order `order`. The owner keeps
    /// and answers exactly this record, so the two journals' copies are equal.
    Decided {
        /// The owner's order number.
        order: OrderId,
        /// The answer.
        record: KeyRecord,
    },
}

/// Where a keyed order that waits for the coordinator came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A connection of this shard (it waits on the order id).
    Local,
    /// Shard `from`, whose connection waits on `id`.
    Remote {
        /// The asking shard.
        from: usize,
        /// Its id for the connection.
        id: u64,
    },
}

/// The table's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long an answer is kept (`IDEMPOTENCY_TTL`).
    pub ttl: Duration,
    /// The most answers kept (`IDEMPOTENCY_KEYS_MAX`); the oldest goes first.
    pub max_keys: usize,
}

impl Settings {
    /// The defaults.
    pub const DEFAULT: Settings = Settings {
        ttl: TTL_DEFAULT,
        max_keys: KEYS_PER_SHARD_DEFAULT,
    };

    /// The TTL in milliseconds.
    pub fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

/// What the table has seen, for `GET /`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyCounters {
    /// Requests with an unusable key (400).
    pub invalid: u64,
    /// Answers repeated from the table.
    pub replays: u64,
    /// Keys used for another request (422).
    pub reused: u64,
    /// Duplicates of a request in flight (409).
    pub in_flight: u64,
    /// Keyed requests sent to their owner shard.
    pub hops: u64,
    /// Answers dropped before their TTL because the table was full.
    pub evicted: u64,
}

/// Hashes the shard's own numbers (order ids) with one multiplication: nobody outside chooses
/// them, so SipHash's flooding resistance buys nothing there. Digests, which clients choose,
/// go through [`DigestHashing`] instead.
#[derive(Clone, Copy, Debug, Default)]
pub struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: hashbrown's tag (the top 7 bits) depends on every input bit; the
        // bucket (the low bits) on the low bits, which differ between consecutive numbers.
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// 64 random bits from the kernel (getrandom(2)); if that fails, from std's per-process
/// random hash keys (which std draws from the same source).
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom(2) writes at most `bytes.len()` bytes into the buffer we own.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n == 8 {
        return u64::from_le_bytes(bytes);
    }
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// Hashes key digests with a seed drawn once per process: a client chooses its keys, and could
/// otherwise search for many whose digests share hashbrown's bucket bits (the low bits: a fold
/// and a multiplication keep low bits with low bits) and make every lookup of the shard's table
/// walk one long probe sequence. Seeded and mixed by `fmix64`, every bucket bit depends on every
/// digest bit and on a seed nobody outside knows.
#[derive(Clone, Copy, Debug)]
pub struct DigestHashing(u64);

impl Default for DigestHashing {
    fn default() -> DigestHashing {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        DigestHashing(*SEED.get_or_init(random_u64))
    }
}

impl std::hash::BuildHasher for DigestHashing {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(self.0)
    }
}

/// See [`DigestHashing`].
#[derive(Clone, Copy, Debug)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = crate::durability::journal::keyed::fmix64(self.0 ^ n);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64 ^ (n >> 64) as u64);
    }
}

/// A map keyed by digests.
type DigestMap<V> = HashMap<u128, V, DigestHashing>;

/// One shard's keys (see the module doc).
#[derive(Debug)]
pub struct Keys {
    /// The limits.
    settings: Settings,
    /// Answers by key.
    done: DigestMap<KeyRecord>,
    /// Keys of `done`, oldest first: expiry and eviction pop the front.
    order: VecDeque<u128>,
    /// Keys whose request is being executed, with its fingerprint.
    in_flight: DigestMap<Fingerprint>,
    /// Keyed orders of this shard waiting for the coordinator: their key, request and origin.
    pub orders: HashMap<OrderId, (u128, Fingerprint, Origin), BuildHasherDefault<FoldHasher>>,
    /// The coordinator: keyed orders other shards escalated, by `(shard, order)`, until decided.
    pub escalated: HashMap<(usize, OrderId), (u128, Fingerprint), BuildHasherDefault<FoldHasher>>,
    /// The coordinator's answers to this shard's escalated keyed orders, until their `Decided`.
    pub decided: HashMap<OrderId, KeyRecord, BuildHasherDefault<FoldHasher>>,
    /// The coordinator: the answers it journaled for other shards' keys (with their sales),
    /// oldest first, so that its compactions carry them: never looked up (a lookup goes to the
    /// key's owner, which keeps its own copy), bounded like the table, and apart from it, so
    /// they never evict a key this shard owns.
    copies: VecDeque<KeyRecord>,
    /// Mail to post after this step's journal append: `(shard, mail)`.
    pub mail: Vec<(usize, KeyMail)>,
    /// The next id of a request waiting for its owner (from [`HOP_ID_BASE`]).
    next_hop: u64,
    /// Ticket mode: 64 random bits drawn when this table was made, the high half of the keys
    /// the shard makes, so they differ from every other shard's, run's and ticket node's.
    made_prefix: u64,
    /// Ticket mode: keys made so far.
    made: u64,
    /// What the table has seen.
    pub counters: KeyCounters,
}

impl Keys {
    /// An empty table.
    pub fn new(settings: Settings) -> Keys {
        Keys {
            settings,
            done: DigestMap::default(),
            order: VecDeque::new(),
            in_flight: DigestMap::default(),
            orders: HashMap::default(),
            escalated: HashMap::default(),
            decided: HashMap::default(),
            copies: VecDeque::new(),
            mail: Vec::new(),
            next_hop: HOP_ID_BASE,
            made_prefix: random_u64(),
            made: 0,
            counters: KeyCounters::default(),
        }
    }

    /// Answers kept.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    /// No answer kept.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Keys in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// About how many bytes the table holds (its allocations, by capacity).
    pub fn bytes(&self) -> usize {
        use std::mem::size_of;
        // hashbrown: a control byte per bucket besides the entry.
        let entry = size_of::<(u128, KeyRecord)>() + 1;
        let flight = size_of::<(u128, Fingerprint)>() + 1;
        let order = size_of::<(OrderId, (u128, Fingerprint, Origin))>() + 1;
        let escalated = size_of::<((usize, OrderId), (u128, Fingerprint))>() + 1;
        let decided = size_of::<(OrderId, KeyRecord)>() + 1;
        self.done.capacity() * entry
            + self.copies.capacity() * size_of::<KeyRecord>()
            + self.order.capacity() * size_of::<u128>()
            + self.in_flight.capacity() * flight
            + self.orders.capacity() * order
            + self.escalated.capacity() * escalated
            + self.decided.capacity() * decided
            + self.mail.capacity() * size_of::<(usize, KeyMail)>()
    }

    /// A new id for a request waiting for its owner shard.
    pub fn hop_id(&mut self) -> u64 {
        let id = self.next_hop;
        self.next_hop += 1;
        id
    }

    /// Ticket mode: a new key for a forwarded reserve that came without one: the table's random
    /// prefix and a counter. Keys of one table never repeat; two tables (shards, runs, ticket
    /// nodes started in the same millisecond) share a prefix with probability 2^-64. (It was
    /// the start time, the shard and the counter: two ticket nodes started within one
    /// millisecond made the same keys, and the second node's first reserve replayed the
    /// first's sale: 200 with nothing sold.)
    pub fn made_key(&mut self) -> u128 {
        self.made += 1;
        (u128::from(self.made_prefix) << 64) | u128::from(self.made)
    }

    /// Drops answers older than the TTL (oldest first, so this stops at the first live one).
    fn expire(&mut self, now_ms: u64) {
        let ttl = self.settings.ttl_ms();
        while self
            .copies
            .front()
            .is_some_and(|r| now_ms.saturating_sub(r.at_ms) >= ttl)
        {
            self.copies.pop_front();
        }
        while let Some(&key) = self.order.front() {
            let at = self.done.get(&key).map_or(0, |r| r.at_ms);
            if now_ms.saturating_sub(at) < ttl {
                break;
            }
            self.order.pop_front();
            self.done.remove(&key);
        }
    }

    /// What to do with a request with `key` asking `fingerprint`.
    pub fn lookup(&mut self, key: u128, fingerprint: Fingerprint, now_ms: u64) -> Lookup {
        self.expire(now_ms);
        if let Some(record) = self.done.get(&key) {
            return if Fingerprint::of(record) == fingerprint {
                Lookup::Replay(*record)
            } else {
                Lookup::Reused
            };
        }
        match self.in_flight.get(&key) {
            Some(&f) if f == fingerprint => Lookup::InFlight,
            Some(_) => Lookup::Reused,
            None => Lookup::New,
        }
    }

    /// The request with `key` is being executed (its answer comes later).
    pub fn begin(&mut self, key: u128, fingerprint: Fingerprint) {
        self.in_flight.insert(key, fingerprint);
    }

    /// The request with `key` was answered: keeps the answer (evicting the oldest beyond the
    /// bound) and returns the record to journal.
    pub fn finish(
        &mut self,
        key: u128,
        fingerprint: Fingerprint,
        sold: bool,
        remaining: u64,
        now_ms: u64,
    ) -> KeyRecord {
        self.in_flight.remove(&key);
        let record = KeyRecord {
            key,
            at_ms: now_ms,
            route: fingerprint.route,
            qty: fingerprint.qty,
            sold,
            remaining,
        };
        self.keep(record);
        record
    }

    /// The request with `key` was answered with `record`, made elsewhere (the coordinator's
    /// answer to an escalated order): keeps it as it is.
    pub fn finish_with(&mut self, record: KeyRecord) {
        self.in_flight.remove(&record.key);
        self.keep(record);
    }

    /// The coordinator journaled `record`, the answer to another shard's key, with its sale:
    /// kept (apart from the table) so that its compactions copy it until it expires or
    /// [`Settings::max_keys`] newer copies push it out.
    pub fn keep_copy(&mut self, record: KeyRecord) {
        if self.settings.max_keys == 0 {
            return;
        }
        self.copies.push_back(record);
        if self.copies.len() > self.settings.max_keys {
            self.copies.pop_front();
        }
    }

    /// Keeps `record` as the newest answer.
    fn keep(&mut self, record: KeyRecord) {
        if self.settings.max_keys == 0 {
            return;
        }
        if self.done.insert(record.key, record).is_some() {
            self.order.retain(|&k| k != record.key);
        }
        // In time order, so that expiry may stop at the first live answer: an answer made
        // elsewhere (the coordinator's, kept by `finish_with`) can be a little older than the
        // newest here, so it goes in behind the newer ones (a few steps from the back).
        let newer = self
            .order
            .iter()
            .rev()
            .take_while(|k| self.done.get(k).is_some_and(|r| r.at_ms > record.at_ms))
            .count();
        self.order.insert(self.order.len() - newer, record.key);
        while self.done.len() > self.settings.max_keys {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.done.remove(&oldest);
            self.counters.evicted += 1;
        }
    }

    /// The request with `key` ended without an answer to keep (its outcome is unknown).
    pub fn abandon(&mut self, key: u128) {
        self.in_flight.remove(&key);
    }

    /// The answer kept for `key`, if any.
    pub fn get(&self, key: u128) -> Option<KeyRecord> {
        self.done.get(&key).copied()
    }

    /// Every answer kept, oldest first, and the copies of other shards' answers: what a
    /// compaction copies behind its snapshot.
    pub fn live(&self) -> Vec<KeyRecord> {
        self.order
            .iter()
            .filter_map(|k| self.done.get(k).copied())
            .chain(self.copies.iter().copied())
            .collect()
    }

    /// Copies of other shards' answers kept (the coordinator's; see [`Keys::keep_copy`]).
    pub fn copies(&self) -> usize {
        self.copies.len()
    }

    /// The journal failed and the shard stopped selling: the keyed orders it waited on will not
    /// be answered (their connections were told 503), so nothing of them is kept.
    pub fn halted(&mut self) {
        for (_, (key, _, _)) in self.orders.drain() {
            self.in_flight.remove(&key);
        }
        self.escalated.clear();
        self.decided.clear();
    }

    /// Takes back the answers the journal kept (oldest first), at start-up.
    pub fn restore(&mut self, records: &[KeyRecord], now_ms: u64) {
        for &record in records {
            self.keep(record);
        }
        self.expire(now_ms);
    }

    /// Appends `,"idempotency":{...}` for `GET /`.
    pub fn write_root(&self, o: &mut Vec<u8>) {
        use std::io::Write as _;
        let c = &self.counters;
        let _ = write!(
            o,
            ",\"idempotency\":{{\"keys\":{},\"copies\":{},\"in_flight\":{},\"bytes\":{},\
             \"invalid\":{},\"replays\":{},\"reused\":{},\"in_flight_refused\":{},\"hops\":{},\
             \"evicted\":{}}}",
            self.len(),
            self.copies(),
            self.in_flight(),
            self.bytes(),
            c.invalid,
            c.replays,
            c.reused,
            c.in_flight,
            c.hops,
            c.evicted,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUY_2: Fingerprint = Fingerprint { route: 1, qty: 2 };
    const BUY_3: Fingerprint = Fingerprint { route: 1, qty: 3 };

    fn table(ttl_s: u64, max_keys: usize) -> Keys {
        Keys::new(Settings {
            ttl: Duration::from_secs(ttl_s),
            max_keys,
        })
    }

    #[test]
    fn header_values() {
        assert_eq!(parse(b""), Err(KeyError::Empty));
        assert_eq!(parse(&[b'a'; 256]), Err(KeyError::TooLong));
        assert!(parse(&[b'a'; 255]).is_ok());
        assert_eq!(parse(b"a b"), Err(KeyError::NotVisibleAscii));
        assert_eq!(parse(b"a\tb"), Err(KeyError::NotVisibleAscii));
        assert_eq!(parse("é".as_bytes()), Err(KeyError::NotVisibleAscii));
        assert_eq!(parse(b"order-1"), Ok(digest(b"order-1")));
        assert_ne!(digest(b"order-1"), digest(b"order-2"));
        // FNV-1a 128 of "a" (the published test vector).
        assert_eq!(digest(b"a"), 0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964);
    }

    #[test]
    fn first_executes_then_replays_and_refuses_another_body() {
        let mut t = table(60, 10);
        assert_eq!(t.lookup(7, BUY_2, 0), Lookup::New);
        t.begin(7, BUY_2);
        assert_eq!(t.lookup(7, BUY_2, 1), Lookup::InFlight);
        assert_eq!(t.lookup(7, BUY_3, 1), Lookup::Reused);
        let r = t.finish(7, BUY_2, true, 98, 2);
        assert_eq!((r.key, r.qty, r.sold, r.remaining), (7, 2, true, 98));
        assert_eq!(t.lookup(7, BUY_2, 3), Lookup::Replay(r));
        assert_eq!(t.lookup(7, BUY_3, 3), Lookup::Reused);
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.live(), vec![r]);
    }

    /// The coordinator's copies of other shards' answers never evict a key it owns, are carried
    /// by compactions (`live`), never answer a lookup, and are bounded and expire like answers.
    #[test]
    fn copies_of_other_shards_answers_are_kept_apart() {
        let mut t = table(1, 2);
        let own = t.finish(1, BUY_2, true, 5, 1_000);
        let copy = |key: u128, at_ms: u64| KeyRecord {
            key,
            at_ms,
            route: 1,
            qty: 3,
            sold: true,
            remaining: 4,
        };
        for key in 10..15 {
            t.keep_copy(copy(key, 1_000));
        }
        assert_eq!((t.len(), t.copies(), t.counters.evicted), (1, 2, 0));
        assert_eq!(t.live(), vec![own, copy(13, 1_000), copy(14, 1_000)]);
        assert_eq!(
            t.lookup(14, BUY_3, 1_100),
            Lookup::New,
            "never looked up here"
        );
        t.keep_copy(copy(20, 1_900));
        assert_eq!(
            t.lookup(1, BUY_2, 2_000),
            Lookup::New,
            "the own answer expired"
        );
        assert_eq!(
            t.live(),
            vec![copy(20, 1_900)],
            "and the old copies with it"
        );
    }

    /// An answer made elsewhere a little earlier than the newest here still expires in time.
    #[test]
    fn an_older_answer_from_elsewhere_expires_in_order() {
        let mut t = table(1, 10);
        t.finish(1, BUY_2, true, 0, 1_500);
        t.begin(2, BUY_2);
        let coordinators = KeyRecord {
            key: 2,
            at_ms: 1_000,
            route: 1,
            qty: 2,
            sold: true,
            remaining: 0,
        };
        t.finish_with(coordinators);
        assert_eq!(t.lookup(2, BUY_2, 2_100), Lookup::New, "expired at 2,000");
        let own = t.get(1).expect("kept");
        assert_eq!(t.lookup(1, BUY_2, 2_100), Lookup::Replay(own));
    }

    #[test]
    fn answers_expire_after_the_ttl() {
        let mut t = table(1, 10);
        t.finish(1, BUY_2, true, 0, 1_000);
        t.finish(2, BUY_2, true, 0, 1_500);
        assert!(matches!(t.lookup(1, BUY_2, 1_999), Lookup::Replay(_)));
        assert_eq!(t.lookup(1, BUY_2, 2_000), Lookup::New);
        assert!(matches!(t.lookup(2, BUY_2, 2_000), Lookup::Replay(_)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_oldest_goes_beyond_the_bound() {
        let mut t = table(60, 2);
        for key in 1..=3 {
            t.finish(key, BUY_2, true, 0, key as u64);
        }
        assert_eq!(t.lookup(1, BUY_2, 4), Lookup::New);
        assert!(matches!(t.lookup(3, BUY_2, 4), Lookup::Replay(_)));
        assert_eq!(t.counters.evicted, 1);
        assert_eq!(t.live().iter().map(|r| r.key).collect::<Vec<_>>(), [2, 3]);
        assert!(t.bytes() > 0);
    }

    #[test]
    fn abandoned_keys_may_run_again_and_restore_keeps_order() {
        let mut t = table(60, 10);
        t.begin(5, BUY_2);
        t.abandon(5);
        assert_eq!(t.lookup(5, BUY_2, 0), Lookup::New);
        let mut u = table(60, 10);
        let old = t.finish(8, BUY_3, false, 0, 10);
        u.restore(&[old], 20);
        assert_eq!(u.lookup(8, BUY_3, 20), Lookup::Replay(old));
        let mut expired = table(1, 10);
        expired.restore(&[old], 1_010);
        assert!(expired.is_empty());
    }

    /// Keys made by one table never repeat, and two tables made at once (two ticket nodes
    /// started in the same millisecond) make different keys.
    #[test]
    fn made_keys_differ_by_table_and_count() {
        let (mut t, mut u) = (table(60, 10), table(60, 10));
        let (a, b) = (t.made_key(), t.made_key());
        assert_ne!(a, b);
        assert_eq!(a >> 64, b >> 64);
        assert_ne!(u.made_key() >> 64, a >> 64);
    }

    #[test]
    fn hop_ids_stay_above_order_ids() {
        let mut t = table(60, 10);
        assert_eq!(t.hop_id(), HOP_ID_BASE);
        assert_eq!(t.hop_id(), HOP_ID_BASE + 1);
    }
}

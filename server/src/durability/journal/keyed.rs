//! An idempotency key's journal record (issue 17): the key's digest, when it was recorded, the
//! request it answered (its fingerprint) and the answer. The key record travels in the same
//! group commit as the sale it answers: a local sale *is* the key record (its `sale` field), so no
//! batch boundary can fall between them.
//!
//! ```text
//! keyed (kind 8): sale u64, key u128, at_ms u64, route u8, qty u64, sold u8, remaining u64
//! ```
//! `sale` is the tickets this record sells from the shard's slice: the order's `qty` on the shard
//! that sold it (the key's owner, or the coordinator for an escalated order), 0 in a copy (the
//! owner's copy of the coordinator's answer, a refusal, or what a compaction or a new epoch
//! keeps). The journal knows nothing of what the fields mean beyond their shape.

/// The payload's size: sale (8) + key (16) + at_ms (8) + route (1) + qty (8) + sold (1) +
/// remaining (8).
pub const KEYED_PAYLOAD_BYTES: usize = 50;

/// What a key answered, as journaled and as a shard's key table keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyRecord {
    /// The 128-bit digest of the `Idempotency-Key` value (see `app::idempotency`).
    pub key: u128,
    /// When the answer was made, in milliseconds since the Unix epoch (wall clock, so the TTL
    /// runs on across restarts).
    pub at_ms: u64,
    /// The route of the request: 1 purchase, 2 reserve.
    pub route: u8,
    /// Tickets the request asked for.
    pub qty: u64,
    /// Whether it sold (else: insufficient stock).
    pub sold: bool,
    /// The `remaining` its answer reported.
    pub remaining: u64,
}

impl KeyRecord {
    /// Appends the payload (with the tickets `sale` this record sells here).
    pub(crate) fn encode(&self, sale: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&sale.to_le_bytes());
        out.extend_from_slice(&self.key.to_le_bytes());
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.push(self.route);
        out.extend_from_slice(&self.qty.to_le_bytes());
        out.push(u8::from(self.sold));
        out.extend_from_slice(&self.remaining.to_le_bytes());
    }

    /// Reads a payload of exactly [`KEYED_PAYLOAD_BYTES`]: `(sale, record)`, or `None` when a
    /// byte that has few legal values (route, sold) holds another.
    pub(crate) fn decode(p: &[u8; KEYED_PAYLOAD_BYTES]) -> Option<(u64, KeyRecord)> {
        let u64_at = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().expect("8 bytes"));
        let route = p[32];
        let sold = match p[41] {
            0 => false,
            1 => true,
            _ => return None,
        };
        if !(1..=2).contains(&route) {
            return None;
        }
        let record = KeyRecord {
            key: u128::from_le_bytes(p[8..24].try_into().expect("16 bytes")),
            at_ms: u64_at(24),
            route,
            qty: u64_at(33),
            sold,
            remaining: u64_at(42),
        };
        Some((u64_at(0), record))
    }
}

/// The shard that owns a key: both halves of its digest folded and mixed, then mapped onto the
/// shard count by a multiply-shift (Lemire's "fast range"). The mix is needed: FNV-1a spreads
/// input bytes slowly upwards, so the low bits of the digest's high half hardly vary across
/// keys of one shape (taken modulo 2, every `tb-<hex>-<hex>` key of ticket-bench went to shard
/// 1). The finalizer is MurmurHash3's `fmix64` (Austin Appleby's published constants), a
/// bijection whose output bits each depend on every input bit. The result is the same in every
/// run, so a key finds its shard after a restart; every start (a new epoch) moves each key to its
/// owner under this function and the new shard count.
pub fn owner(key: u128, shards: usize) -> usize {
    let x = fmix64((key as u64) ^ ((key >> 64) as u64));
    ((u128::from(x) * shards as u128) >> 64) as usize
}

/// MurmurHash3's 64-bit finalizer: a bijection whose output bits each depend on every input bit.
pub(crate) fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Which keys start-up carries into the new epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepKeys {
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Keys recorded longer ago than this are dropped (`IDEMPOTENCY_TTL`).
    pub ttl_ms: u64,
    /// The most keys one shard keeps: the newest of each owner's.
    pub per_shard_max: usize,
}

impl KeepKeys {
    /// Keeps every key (tests of the journal that do not care).
    pub const ALL: KeepKeys = KeepKeys {
        now_ms: 0,
        ttl_ms: u64::MAX,
        per_shard_max: usize::MAX,
    };

    /// `found` (the keyed records of every shard file, in any order), without duplicates (the
    /// latest answer of a key wins), expired keys and each owner's oldest beyond the bound, cut
    /// by owner among `shards`, each shard's oldest first.
    pub fn sort(&self, found: Vec<KeyRecord>, shards: usize) -> Vec<Vec<KeyRecord>> {
        let mut latest: std::collections::HashMap<u128, KeyRecord> = Default::default();
        for r in found {
            if self.now_ms.saturating_sub(r.at_ms) >= self.ttl_ms {
                continue;
            }
            let slot = latest.entry(r.key).or_insert(r);
            if r.at_ms >= slot.at_ms {
                *slot = r;
            }
        }
        let mut by_owner = vec![Vec::new(); shards];
        for (_, r) in latest {
            by_owner[owner(r.key, shards)].push(r);
        }
        for keys in &mut by_owner {
            keys.sort_by_key(|r| (r.at_ms, r.key));
            let excess = keys.len().saturating_sub(self.per_shard_max);
            keys.drain(..excess);
        }
        by_owner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_rejects_bad_bytes() {
        let r = KeyRecord {
            key: 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            at_ms: 1_700_000_000_000,
            route: 2,
            qty: 7,
            sold: true,
            remaining: 93,
        };
        let mut out = Vec::new();
        r.encode(5, &mut out);
        assert_eq!(out.len(), KEYED_PAYLOAD_BYTES);
        let bytes: [u8; KEYED_PAYLOAD_BYTES] = out.clone().try_into().unwrap();
        assert_eq!(KeyRecord::decode(&bytes), Some((5, r)));
        let mut bad = bytes;
        bad[32] = 3;
        assert_eq!(KeyRecord::decode(&bad), None);
        let mut bad = bytes;
        bad[41] = 2;
        assert_eq!(KeyRecord::decode(&bad), None);
    }

    #[test]
    fn start_up_keeps_the_latest_live_keys_by_owner() {
        let rec = |key: u128, at_ms: u64| KeyRecord {
            key,
            at_ms,
            route: 1,
            qty: 1,
            sold: true,
            remaining: 0,
        };
        let keep = KeepKeys {
            now_ms: 1_000,
            ttl_ms: 500,
            per_shard_max: 2,
        };
        // Keys a, c, d owned by shard 0, b by shard 1.
        let of = |shard: usize, after: u128| {
            (after + 1..)
                .find(|&k| owner(k, 2) == shard)
                .expect("some key")
        };
        let a = of(0, 0);
        let c = of(0, a);
        let d = of(0, c);
        let b = of(1, 0);
        let found = vec![
            rec(a, 100),
            rec(b, 600),
            rec(b, 700),
            rec(c, 800),
            rec(d, 900),
        ];
        let sorted = keep.sort(found, 2);
        // a expired; b's later answer wins; shard 0 (a, c, d) keeps its newest two.
        assert_eq!(sorted[0], vec![rec(c, 800), rec(d, 900)]);
        assert_eq!(sorted[1], vec![rec(b, 700)]);
    }

    /// Keys spread evenly over the shards, whatever their shape: ticket-bench's fixed-width
    /// `tb-<hex>-<hex>`, short counters, UUID-like values. (The high half of the FNV-1a digest,
    /// taken modulo the shard count, sent every such key to one shard.)
    #[test]
    fn owners_spread_keys_evenly() {
        use crate::app::idempotency::digest;
        const KEYS: usize = 20_000;
        let shapes: [&dyn Fn(usize) -> String; 3] = [
            &|i| format!("tb-{:016x}-{i:016x}", 0x1234_5678_9abc_u64),
            &|i| format!("key-{i}"),
            &|i| format!("{:08x}-0000-4000-8000-{i:012x}", i * 7919),
        ];
        for shards in [2, 3, 4, 8, 16] {
            for (n, shape) in shapes.iter().enumerate() {
                let mut per = vec![0usize; shards];
                for i in 0..KEYS {
                    per[owner(digest(shape(i).as_bytes()), shards)] += 1;
                }
                let fair = KEYS / shards;
                assert!(
                    per.iter()
                        .all(|&c| c * 10 >= fair * 9 && c * 10 <= fair * 11),
                    "shape {n}, {shards} shards: {per:?}"
                );
            }
        }
    }
}

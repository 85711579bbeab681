//! `X-Request-Id`: the name one request carries through logs, its response and the vacancy
//! service. A client's id is kept when it is short visible ASCII; otherwise the shard makes one.
//!
//! Generated ids need no coordination between shards: `{process}-{shard}-{counter}`, where
//! `process` is 8 hex digits drawn once per process (std's per-process random hash keys mixed
//! with the start time and pid, so restarts differ), `shard` the shard's index and `counter` its
//! own count in hex. Two shards never share a `shard` part, and one shard never repeats a
//! `counter`, so ids are unique within a process without any shared write. A leaf: it imports
//! nothing of the crate.

use std::fmt;
use std::hash::BuildHasher as _;
use std::sync::OnceLock;

/// The longest client id kept. 64 holds a UUID (36), a W3C trace id (32) or a ULID (26) with
/// room to spare, and bounds what one id costs: it is copied into a deferred order and written
/// into the response and the forwarded request.
pub const X_REQUEST_ID_BYTES_MAX: usize = 64;

/// The header's name as it is written.
pub const HEADER: &[u8] = b"X-Request-Id";

/// One request's id, stored inline (it is `Copy`, so a deferred order carries it without
/// allocating).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct XRequestId {
    bytes: [u8; X_REQUEST_ID_BYTES_MAX],
    len: u8,
}

impl XRequestId {
    /// No id: written as no header at all (unit tests that do not care, and the forwarder's own
    /// requests).
    pub const NONE: XRequestId = XRequestId {
        bytes: [0; X_REQUEST_ID_BYTES_MAX],
        len: 0,
    };

    /// The client's value, if it is 1 to [`X_REQUEST_ID_BYTES_MAX`] visible ASCII characters
    /// (VCHAR, RFC 5234 B.1: 0x21 to 0x7E). Spaces are refused too, so an id is one word in a
    /// log line.
    pub fn from_client(value: &[u8]) -> Option<XRequestId> {
        let ok = !value.is_empty()
            && value.len() <= X_REQUEST_ID_BYTES_MAX
            && value.iter().all(|b| (0x21..=0x7e).contains(b));
        ok.then(|| {
            let mut id = XRequestId::NONE;
            id.bytes[..value.len()].copy_from_slice(value);
            id.len = value.len() as u8;
            id
        })
    }

    /// The id's bytes (visible ASCII; empty for [`XRequestId::NONE`]).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The id as text (it is ASCII by construction).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    fn push(&mut self, bytes: &[u8]) {
        let at = usize::from(self.len);
        assert!(at + bytes.len() <= X_REQUEST_ID_BYTES_MAX);
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
    }
}

impl fmt::Display for XRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for XRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// A shard's maker of ids: `{process}-{shard}-` fixed at start-up, then a counter.
#[derive(Clone, Debug)]
pub struct Generator {
    /// `{process}-{shard}-`.
    prefix: XRequestId,
    /// The next id's counter.
    next: u64,
}

impl Generator {
    /// The generator of shard `shard` of this process.
    pub fn new(shard: usize) -> Generator {
        let mut prefix = XRequestId::NONE;
        prefix.push(&hex(u64::from(process_tag()), 8)[..8]);
        prefix.push(b"-");
        prefix.push(itoa::Buffer::new().format(shard).as_bytes());
        prefix.push(b"-");
        Generator { prefix, next: 0 }
    }

    /// A fresh id: the prefix and the counter in hex, formatted in place.
    pub fn next_id(&mut self) -> XRequestId {
        let n = self.next;
        self.next = self.next.wrapping_add(1);
        let digits = hex(n, 16);
        let first = digits.iter().position(|&d| d != b'0').unwrap_or(15);
        // (Leading zeros dropped: the counter is as short as it can be.)
        let mut id = self.prefix;
        id.push(&digits[first..]);
        id
    }

    /// The request's own id if it sent a valid one, else a fresh one.
    pub fn pick(&mut self, client: Option<&[u8]>) -> XRequestId {
        client
            .and_then(XRequestId::from_client)
            .unwrap_or_else(|| self.next_id())
    }
}

/// 32 random bits for this process, drawn once: std's `RandomState` is seeded from the OS per
/// process; the pid and start time are mixed in for good measure.
fn process_tag() -> u32 {
    static TAG: OnceLock<u32> = OnceLock::new();
    *TAG.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let h =
            std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()));
        (h ^ (h >> 32)) as u32
    })
}

/// The low `width` hex digits of `n`, zero-padded, in the first `width` bytes (`width` ≤ 16).
fn hex(n: u64, width: usize) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'0'; 16];
    for (i, d) in out[..width].iter_mut().enumerate() {
        *d = DIGITS[((n >> (4 * (width - 1 - i))) & 0xf) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_short_visible_ascii() {
        let long = [b'a'; X_REQUEST_ID_BYTES_MAX + 1];
        let table: &[(&[u8], bool)] = &[
            (b"abc-123", true),
            (&long[..X_REQUEST_ID_BYTES_MAX], true),
            (&long, false),
            (b"", false),
            (b"has space", false),
            (b"tab\t", false),
            ("caf\u{e9}".as_bytes(), false),
            (b"\x7f", false),
        ];
        for &(value, kept) in table {
            let id = XRequestId::from_client(value);
            assert_eq!(id.is_some(), kept, "{value:?}");
            if let Some(id) = id {
                assert_eq!(id.as_bytes(), value);
            }
        }
    }

    #[test]
    fn generated_ids_differ_by_shard_and_counter() {
        let (mut a, mut b) = (Generator::new(0), Generator::new(1));
        let ids = [a.next_id(), a.next_id(), b.next_id(), b.next_id()];
        for (i, x) in ids.iter().enumerate() {
            assert!(XRequestId::from_client(x.as_bytes()).is_some(), "{x}");
            for y in &ids[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert!(ids[0].as_str().ends_with("-0-0"), "{}", ids[0]);
        assert!(ids[3].as_str().ends_with("-1-1"), "{}", ids[3]);
        a.next = u64::MAX;
        assert!(a.next_id().as_str().ends_with("-ffffffffffffffff"));
        assert_eq!(a.pick(Some(b"mine")).as_str(), "mine");
        assert!(
            a.pick(Some(b"")).as_str().ends_with("-0"),
            "wrapped to a fresh counter"
        );
    }
}

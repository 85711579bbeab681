//! An in-memory stand-in for etcd's key-value store, as the ledger uses it: one revision counter
//! for the whole store, a mod revision per key, and transactions that apply every put or none,
//! as their compares decide. The deterministic tests run the real [`ledger`](super::ledger)
//! transactions on it, with replies lost at will; the etcd adapter runs the same plans on etcd.

use std::collections::BTreeMap;

use super::ledger::Plan;

/// The store.
#[derive(Clone, Debug, Default)]
pub struct MemoryKv {
    /// The store's revision: one more per applied transaction that wrote.
    revision: i64,
    /// Each key's value and mod revision.
    keys: BTreeMap<String, (Vec<u8>, i64)>,
}

impl MemoryKv {
    /// An empty store at revision 1, as a new etcd cluster starts.
    pub fn new() -> MemoryKv {
        MemoryKv {
            revision: 1,
            keys: BTreeMap::new(),
        }
    }

    /// The store's revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// `key`'s value and mod revision, if it exists.
    pub fn get(&self, key: &str) -> Option<(&[u8], i64)> {
        self.keys
            .get(key)
            .map(|(value, rev)| (value.as_slice(), *rev))
    }

    /// Every key under `prefix`, in key order, with its value.
    pub fn range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.keys
            .range(prefix.to_string()..)
            .take_while(move |(key, _)| key.starts_with(prefix))
            .map(|(key, (value, _))| (key.as_str(), value.as_slice()))
    }

    /// Applies `plan` if every compared key's mod revision is as stated (0: absent); says
    /// whether it did.
    pub fn txn(&mut self, plan: &Plan) -> bool {
        let holds = plan
            .compares
            .iter()
            .all(|(key, rev)| self.get(key).map_or(0, |(_, now)| now) == *rev);
        if !holds {
            return false;
        }
        if !plan.puts.is_empty() {
            self.revision += 1;
            for (key, value) in &plan.puts {
                let entry = (value.clone().into_bytes(), self.revision);
                self.keys.insert(key.clone(), entry);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_applies_all_or_nothing_by_mod_revision() {
        let mut kv = MemoryKv::new();
        let create = Plan {
            compares: vec![("a".into(), 0)],
            puts: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
        };
        assert!(kv.txn(&create));
        assert_eq!(kv.get("a"), Some((&b"1"[..], 2)));
        assert!(!kv.txn(&create), "a is no longer absent");
        let update = Plan {
            compares: vec![("a".into(), 2), ("b".into(), 1)],
            puts: vec![("a".into(), "3".into())],
        };
        assert!(!kv.txn(&update), "b's revision is 2");
        assert_eq!((kv.get("a"), kv.revision()), (Some((&b"1"[..], 2)), 2));
        let keys: Vec<_> = kv.range("").map(|(key, _)| key).collect();
        assert_eq!(keys, ["a", "b"]);
    }
}

//! An in-memory stand-in for etcd's key-value store, as the ledger uses it: one revision counter
//! for the whole store, a mod revision per key, and transactions that apply every put or none,
//! as their compares decide. The deterministic tests run the real [`ledger`](super::ledger)
//! transactions on it, with replies lost at will; the etcd adapter runs the same plans on etcd.

use std::collections::BTreeMap;

use super::gather::{self, GatherView, OpenStep};
use super::lease::{Call, Reply};
use super::ledger::{self, Keys, Op, Outcome, Plan, Read, Step};

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

impl MemoryKv {
    /// Carries out node `id`'s `call` to its end, as the etcd adapter's retry loop does (a
    /// store in memory has no one else writing between the read and the transaction, so one
    /// read and one transaction settle it). With `lose_reply`, a transaction that applies is
    /// answered as if its reply was lost: the call is read and planned again, and the ledger
    /// must recognise it. Panics on a corrupt value (the tests write only the ledger's).
    pub fn call(&mut self, keys: &Keys, id: &str, call: Call, lose_reply: bool) -> Reply {
        match call {
            Call::Node(request) => {
                let step = match request.op {
                    Op::Close { .. } => gather::close(keys, id, &request, &self.gather_view(keys)),
                    _ => ledger::plan(keys, id, &request, &self.view(keys, id)),
                };
                match step {
                    Step::Done(outcome) => return Reply::Outcome(outcome),
                    Step::Commit { plan, last } => {
                        if self.txn(&plan) && !lose_reply {
                            return Reply::Outcome(Outcome::Applied(last));
                        }
                    }
                }
            }
            Call::Open => match gather::open(keys, &self.gather_view(keys)) {
                OpenStep::Done(opened) => return Reply::Opened(opened),
                OpenStep::Commit { plan, opened } => {
                    if self.txn(&plan) && !lose_reply {
                        return Reply::Opened(opened);
                    }
                }
            },
        }
        // The reply was lost: read and plan again (the read finds it applied).
        self.call(keys, id, call, false)
    }

    /// The round as the store holds it (what a node's watch on the gather key sees).
    pub fn gather(&self, keys: &Keys) -> Option<ledger::Gather> {
        let (bytes, _) = self.get(&keys.gather())?;
        Some(ledger::decode_gather(&keys.gather(), bytes).expect("a ledger value"))
    }

    /// The whole ledger.
    pub fn ledger(&self, keys: &Keys) -> ledger::Ledger {
        let value = |key: String| self.get(&key).map(|(v, _)| v);
        let nodes = keys.nodes();
        ledger::decode_ledger(
            keys,
            value(keys.capacity()),
            value(keys.pool()),
            value(keys.gather()),
            self.range(&nodes),
        )
        .expect("a ledger value")
    }

    /// Node `id`'s view: the pool, its record, the round.
    pub fn view(&self, keys: &Keys, id: &str) -> ledger::View {
        let (pool, node, gather) = (
            self.get(&keys.pool()),
            self.get(&keys.node(id)),
            self.get(&keys.gather()),
        );
        ledger::decode_view(keys, id, pool, node, gather).expect("a ledger value")
    }

    /// What opening or closing a round reads: the pool, the round, every node's record.
    pub fn gather_view(&self, keys: &Keys) -> GatherView {
        let view = self.view(keys, "");
        let mut nodes = Vec::new();
        let prefix = keys.nodes();
        for (key, bytes) in self.range(&prefix) {
            let id = keys.node_id(key).expect("a node key");
            let (_, mod_revision) = self.get(key).expect("listed");
            let value = Some(ledger::decode_record(key, bytes).expect("a ledger value"));
            nodes.push((
                id.to_string(),
                Read {
                    value,
                    mod_revision,
                },
            ));
        }
        GatherView {
            pool: view.pool,
            gather: view.gather,
            nodes,
        }
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

//! Past one machine (issue 18): ticketd nodes lease stock from an etcd cluster, an escrow in
//! the manner of the demarcation protocol. This folder is its ledger:
//! - [`ledger`]: the keys, the records and every transaction on the pool, without I/O;
//! - [`gather`]: the cluster-wide sold out: rounds in which every node gives its lease back, so
//!   that a close reads every unsold ticket in the pool, and the bound a close leaves;
//! - [`lease`]: a node's side, without I/O: what it may sell and which transaction it sends
//!   next, with the journal discipline the ledger's safety rests on;
//! - [`liveness`]: which peers to fence, from their heartbeats (timeouts decide when, never
//!   what);
//! - [`retire`]: writing off a node that will not come back with its journal;
//! - [`memory`]: an in-memory stand-in for etcd's store, on which the deterministic tests run
//!   the ledger's transactions with replies lost at will;
//! - `etcd` (with `--features cluster`): the same transactions on a real etcd cluster, through
//!   the `etcd-client` crate on a tokio runtime, with the retry loop around them;
//! - `driver` (with `--features cluster`): a node's lease carried out on etcd, turn by turn, and
//!   the watch on its peers (heartbeats, fences);
//! - `link` (with `--features cluster`): a server node's etcd thread, carrying out the calls of
//!   the lease its coordinator holds (`stock/escrow.rs`).
//!
//! Invariant: every change of the pool is one transaction that [`ledger`] planned, guarded by
//! the mod revisions it read, and keeps `pool + Σ (granted + in_doubt + sold) == capacity`.

#[cfg(feature = "cluster")]
pub mod driver;
#[cfg(feature = "cluster")]
pub mod etcd;
pub mod gather;
pub mod lease;
pub mod ledger;
#[cfg(feature = "cluster")]
pub mod link;
pub mod liveness;
pub mod memory;
pub mod retire;

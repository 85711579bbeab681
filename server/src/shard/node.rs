//! What start-up does for a cluster node (`--cluster-etcd`): check that the data directory's
//! journal is a node's (or empty), and start the node's etcd thread (`cluster/link.rs`), whose
//! coordinator end `shard/tasks.rs::cluster` drives.

use crate::config::Config;
use crate::durability::journal::Recovered;
use crate::process::startup::StartError;

/// The coordinator's end of a cluster node's etcd thread.
#[cfg(feature = "cluster")]
pub(super) type Link = crate::cluster::link::Link;
/// Without the `cluster` feature no node is a cluster's (the configuration refuses it).
#[cfg(not(feature = "cluster"))]
pub(super) type Link = std::convert::Infallible;

/// Starts a cluster node's etcd thread (`--cluster-etcd`).
#[cfg(feature = "cluster")]
pub(super) fn start_link(config: &Config) -> Result<Option<Link>, StartError> {
    let Some(cluster) = &config.cluster else {
        return Ok(None);
    };
    let link = crate::cluster::link::start(cluster).map_err(StartError::Cluster)?;
    tracing::info!(
        etcd = %cluster.etcd.join(","),
        cluster = %cluster.name,
        node = %cluster.node_id,
        window = cluster.window,
        "cluster node: leasing stock from the sale's ledger"
    );
    Ok(Some(link))
}

/// Without the `cluster` feature there is none to start.
#[cfg(not(feature = "cluster"))]
pub(super) fn start_link(_config: &Config) -> Result<Option<Link>, StartError> {
    Ok(None)
}

/// A cluster node's journal holds its lease, and only a cluster node's does: a data directory
/// of a sale on one machine (stock, no lease) would sell tickets no ledger granted as a node,
/// and a node's directory started without `--cluster-etcd` would sell its lease as stock of its
/// own.
pub(super) fn check_journal(config: &Config, recovered: &Recovered) -> Result<(), StartError> {
    match (&config.cluster, recovered.lease.is_some()) {
        (Some(_), false) if recovered.stock > 0 => Err(StartError::Cluster(format!(
            "{} holds a sale of {} tickets on one machine, not a cluster node's lease; give the \
             node an empty --data-dir (DATA_DIR)",
            config.data_dir.display(),
            recovered.stock
        ))),
        (None, true) => Err(StartError::Cluster(format!(
            "{} holds a cluster node's lease: start it with --cluster-etcd, --cluster-name and \
             --node-id as before (or write the node off with `ticketd cluster write-off` and \
             reset the journal)",
            config.data_dir.display()
        ))),
        _ => Ok(()),
    }
}

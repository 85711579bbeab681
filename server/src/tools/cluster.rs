//! `ticketd cluster init` and `ticketd cluster status`: a sale's escrow ledger in etcd
//! (issue 18). The ledger's rules are `cluster::ledger`'s and the calls `cluster::etcd`'s; this
//! module runs them on a current-thread tokio runtime, prints, and picks the exit status. In a
//! binary built without `--features cluster` it says how to get one (exit 2).

#[cfg(not(feature = "cluster"))]
use crate::config::{ClusterArgs, Config};

/// Exit status: done (init created the ledger, or found it with the same capacity; status found
/// the invariant holding).
pub const EXIT_OK: i32 = 0;
/// Exit status: etcd did not answer in time, or init found the sale with another capacity.
pub const EXIT_FAILED: i32 = 1;
/// Exit status of status: the sale has no ledger (`ticketd cluster init` was not run).
pub const EXIT_NOT_INITIALISED: i32 = 3;
/// Exit status of status: the ledger breaks its invariant, or a key holds something else.
pub const EXIT_BROKEN: i32 = 4;

/// Exit status of a binary built without the etcd client: 2, as a configuration error.
pub const EXIT_NOT_BUILT: i32 = 2;

/// Says how to build a binary that has the cluster tools.
#[cfg(not(feature = "cluster"))]
pub fn run(_config: &Config, _args: &ClusterArgs) -> i32 {
    eprintln!(
        "ticketd cluster: this binary was built without the etcd client; build one with \
         `cargo build --release -p ticketd --features cluster` (its build needs protoc: Debian \
         packages protobuf-compiler and libprotobuf-dev)"
    );
    EXIT_NOT_BUILT
}

#[cfg(feature = "cluster")]
pub use with_etcd::run;

#[cfg(feature = "cluster")]
mod with_etcd {
    use std::time::{Duration, Instant};

    use serde::Serialize;

    use super::{EXIT_BROKEN, EXIT_FAILED, EXIT_NOT_INITIALISED, EXIT_OK};
    use crate::cluster::etcd::{Etcd, EtcdError, Init};
    use crate::cluster::ledger::Fenced;
    use crate::cluster::ledger::{self, Gather, Keys, Ledger, NodeRecord};
    use crate::cluster::retire::WrittenOff;
    use crate::config::{ClusterArgs, ClusterTool, Config};

    /// How long a tool keeps retrying an etcd cluster that does not answer (a leader election
    /// takes about a second; a cluster without quorum for this long is the operator's news).
    pub const TOOL_DEADLINE: Duration = Duration::from_secs(15);

    /// Runs `ticketd cluster <action>`; returns the exit status.
    pub fn run(config: &Config, args: &ClusterArgs) -> i32 {
        let runtime = match crate::cluster::etcd::runtime() {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("ticketd cluster: cannot start the etcd client's runtime: {error}");
                return EXIT_FAILED;
            }
        };
        let keys = Keys::new(&args.cluster_name).expect("the configuration checked the name");
        let deadline = Instant::now() + TOOL_DEADLINE;
        runtime.block_on(async {
            let outcome = match Etcd::connect(&args.cluster_etcd, keys).await {
                Ok(mut etcd) => match &args.action {
                    ClusterTool::Init => init(&mut etcd, config.initial_stock, deadline).await,
                    ClusterTool::Status { json } => status(&mut etcd, *json, deadline).await,
                    ClusterTool::Fence { node_id } => fence(&mut etcd, node_id, deadline).await,
                    ClusterTool::WriteOff { node_id } => {
                        write_off(&mut etcd, node_id, deadline).await
                    }
                },
                Err(error) => Err(error),
            };
            outcome.unwrap_or_else(|error| {
                eprintln!("ticketd cluster: {error}");
                match error {
                    EtcdError::Unavailable(_) | EtcdError::Refused(_) => EXIT_FAILED,
                    EtcdError::Corrupt(_) => EXIT_BROKEN,
                }
            })
        })
    }

    async fn init(etcd: &mut Etcd, capacity: u64, deadline: Instant) -> Result<i32, EtcdError> {
        let pool = etcd.keys().pool();
        Ok(match etcd.init(capacity, deadline).await? {
            Init::Created(capacity) => {
                println!("created the ledger: capacity {capacity}, all in the pool ({pool})");
                EXIT_OK
            }
            Init::Exists(found) if found == capacity => {
                println!("the ledger exists already with capacity {found}; nothing changed");
                EXIT_OK
            }
            Init::Exists(found) => {
                eprintln!(
                    "ticketd cluster init: the ledger exists already with capacity {found}, not \
                     {capacity}; nothing changed (a sale's capacity is set once)"
                );
                EXIT_FAILED
            }
        })
    }

    async fn fence(etcd: &mut Etcd, id: &str, deadline: Instant) -> Result<i32, EtcdError> {
        let Some(record) = etcd.record(id, deadline).await? else {
            println!("node {id} has no record: it never held a lease; nothing to fence");
            return Ok(EXIT_OK);
        };
        // The epoch as first read, so that a retry after a lost reply finds it fenced already.
        Ok(match etcd.fence(id, record.epoch, deadline).await? {
            Fenced::Applied {
                epoch,
                in_doubt,
                returned,
            } => {
                println!(
                    "fenced node {id}: epoch {epoch}, {returned} tickets back in the pool, \
                     {in_doubt} in doubt until it rejoins"
                );
                EXIT_OK
            }
            Fenced::Already { epoch } => {
                println!("node {id} is in epoch {epoch} already; nothing changed");
                EXIT_OK
            }
            Fenced::Nothing => {
                println!("nothing to fence for node {id}");
                EXIT_OK
            }
        })
    }

    async fn write_off(etcd: &mut Etcd, id: &str, deadline: Instant) -> Result<i32, EtcdError> {
        let Some(record) = etcd.record(id, deadline).await? else {
            println!("node {id} has no record: it never held a lease; nothing to write off");
            return Ok(EXIT_OK);
        };
        // At the epoch as first read, so that a retry after a lost reply is not a second one.
        Ok(match etcd.write_off(id, record.epoch, deadline).await? {
            WrittenOff::Applied {
                epoch,
                sold,
                returned,
            } => {
                println!(
                    "wrote node {id} off: epoch {epoch}, {sold} tickets counted sold, {returned} \
                     back in the pool; its id cannot be used again"
                );
                EXIT_OK
            }
            WrittenOff::Nothing => {
                println!("node {id} holds nothing and has nothing in doubt; nothing changed");
                EXIT_OK
            }
            WrittenOff::Already { epoch } => {
                println!("node {id} moved to epoch {epoch} meanwhile; nothing changed");
                EXIT_OK
            }
        })
    }

    /// What `status --json` prints.
    #[derive(Serialize)]
    struct Report<'a> {
        /// The etcd revision the ledger was read at.
        revision: i64,
        /// `capacity`.
        capacity: Option<u64>,
        /// `pool`.
        pool: Option<u64>,
        /// Every node's record.
        nodes: Vec<Node<'a>>,
        /// The gather round, if one was ever opened.
        gather: Option<Gather>,
        /// Whether `pool + Σ (granted + in_doubt + sold) == capacity`.
        invariant_holds: bool,
    }

    /// One node in [`Report`].
    #[derive(Serialize)]
    struct Node<'a> {
        /// Its id.
        id: &'a str,
        /// Its record.
        #[serde(flatten)]
        record: &'a NodeRecord,
    }

    async fn status(etcd: &mut Etcd, json: bool, deadline: Instant) -> Result<i32, EtcdError> {
        let (ledger, revision) = etcd.ledger(None, deadline).await?;
        let holds = ledger::check(&ledger).is_ok();
        if json {
            println!("{}", report(&ledger, revision, holds));
        } else {
            print_text(&ledger, revision, holds);
        }
        Ok(match ledger.capacity {
            None if ledger.pool.is_none() && ledger.nodes.is_empty() => EXIT_NOT_INITIALISED,
            _ if holds => EXIT_OK,
            _ => EXIT_BROKEN,
        })
    }

    fn report(ledger: &Ledger, revision: i64, holds: bool) -> String {
        let nodes = ledger.nodes.iter().map(|(id, record)| Node { id, record });
        let report = Report {
            revision,
            capacity: ledger.capacity,
            pool: ledger.pool,
            nodes: nodes.collect(),
            gather: ledger.gather,
            invariant_holds: holds,
        };
        serde_json::to_string(&report).expect("a report of integers and names serializes")
    }

    fn print_text(ledger: &Ledger, revision: i64, holds: bool) {
        let (Some(capacity), Some(pool)) = (ledger.capacity, ledger.pool) else {
            if ledger.capacity.is_none() && ledger.pool.is_none() && ledger.nodes.is_empty() {
                println!("no ledger at revision {revision}: run `ticketd cluster init` first");
            } else {
                println!("BROKEN ledger at revision {revision}: {ledger:?}");
            }
            return;
        };
        println!("revision {revision}: capacity {capacity}, pool {pool}");
        for (id, r) in &ledger.nodes {
            println!(
                "node {id}: epoch {}, granted {}, in doubt {}, sold {}, seq {}",
                r.epoch, r.granted, r.in_doubt, r.sold, r.seq
            );
        }
        if let Some(g) = ledger.gather {
            let state = if g.open { "open" } else { "closed" };
            let bound = g.at_most.map_or("none yet".into(), |m| m.to_string());
            println!(
                "gather round {} {state}; pool at its close {}; at most {bound} tickets left",
                g.round, g.pool_at_close
            );
        }
        let verdict = if holds { "holds" } else { "BROKEN" };
        println!("pool + granted + in doubt + sold == capacity: {verdict}");
    }
}

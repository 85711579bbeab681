//! ticketd: a thread-per-core ticket-reservation server.
//!
//! Layout (see ARCHITECTURE.md for each module's invariant):
//! - [`config`]: flags > environment > `.env` > defaults, validated into a [`config::Config`].
//! - [`startup`]: CPU placement and the checks that fail a start with one clear line.
//! - [`shard`]: one pinned glommio executor per CPU: listener, connections, timers, mesh.
//! - [`uring`]: the default transport: each shard's own io_uring drives its sockets.
//! - [`connection`]: one connection as a sans-IO state machine over proto-http.
//! - [`routes`]: endpoints and JSON replies, written straight into the output buffer.
//! - [`body`]: the `{"qty":N}` body: a strict fast path, serde_json behind it.
//! - [`stock`]: a shard's slice of the stock and its view of the others.
//! - [`committer`]: a shard's journal at run time: group commits, and what waits for them.
//! - [`journal`]: each shard's append-only O_DIRECT journal: group commit, replay, snapshots.
//! - [`upstream`]: the ticket tier's forwarder, sans-IO: pooled keep-alive connections to the
//!   vacancy service.
//! - [`forward`]: the glommio tasks that drive a ticket shard's pool of upstream connections.
//! - [`metrics`]: per-shard counters.
//! - [`notify`]: systemd's sd_notify: readiness, status, stopping, and the shard-aware watchdog.
//! - [`latency`]: per-shard service-time histograms and their `.hgrm`/`.hlog` dumps.
//! - [`signals`], [`logging`]: process plumbing.

pub mod body;
pub mod committer;
pub mod config;
pub mod connection;
pub mod forward;
pub mod journal;
pub mod latency;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod rebalance;
pub mod routes;
pub mod shard;
pub mod signals;
pub mod startup;
pub mod stock;
pub mod upstream;
pub mod uring;

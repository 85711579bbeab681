//! ticketd: a thread-per-core ticket-reservation server.
//!
//! Layout, by job (see ARCHITECTURE.md for each folder's invariant):
//! - [`process`]: start-up checks, signals, systemd's sd_notify, logging.
//! - [`config`]: flags > environment > `.env` > defaults, validated into a [`config::Config`].
//! - [`shard`]: one pinned glommio executor per CPU: listener, timers, mesh, and the glue that
//!   feeds a shard's core and carries out its effects.
//! - [`net`]: the sans-IO connection state machine and the io_uring transport.
//! - [`app`]: routes and JSON replies, the `{"qty":N}` body, counters, latency histograms.
//! - [`stock`]: a shard's slice of the stock and the pure protocol that moves tickets.
//! - [`durability`]: the journal (group commit, replay, snapshots) and its pure run-time side.
//! - [`forward`]: the ticket tier's pooled connections to the vacancy service.
//! - [`cluster`]: past one machine: the escrow ledger nodes keep in etcd (issue 18).
//! - [`buckets`]: a histogram with fixed Prometheus buckets (journal commit and service times
//!   on `/metrics`; a leaf: it imports nothing).
//! - [`request_id`]: `X-Request-Id`, kept from the client or made per shard without coordination
//!   (a leaf).
//! - [`tools`]: what the binary runs instead of serving (`ticketd journal inspect|reset`).
//! - [`json`]: the one hand-written JSON scanner, shared by [`app`]'s `{"qty":N}` fast path and
//!   [`forward`]'s reading of the vacancy service's replies (a leaf: it imports nothing).

pub mod app;
pub mod buckets;
pub mod cluster;
pub mod config;
pub mod durability;
pub mod forward;
pub mod json;
pub mod net;
pub mod process;
pub mod request_id;
pub mod shard;
pub mod stock;
pub mod tools;

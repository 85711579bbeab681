//! What a shard answers: routes and JSON replies ([`routes`]), the `{"qty":N}` body ([`body`]),
//! CORS ([`cors`]), counters ([`metrics`]), service-time histograms ([`latency`]), the
//! OpenAPI document and its page ([`docs`]), per-client rate limits ([`rate_limit`]), and
//! `/metrics`: the snapshots every shard publishes ([`board`]) rendered in Prometheus' text format
//! ([`exposition`]); `info` (`/`, `/ready`, the documents) and `upstream_failure` (the ticket
//! tier's 503s) are more of `App`'s replies, kept apart so `routes` stays short; [`admin`] is the
//! admin listener's routes (restock, sales closed or opened, stock and journal state); `keyed`
//! runs orders carrying an `Idempotency-Key` against the table of [`idempotency`].

pub mod admin;
pub mod board;
pub mod body;
pub mod cors;
pub mod docs;
pub mod exposition;
mod forwarding;
pub mod idempotency;
mod info;
mod keyed;
pub mod latency;
pub mod metrics;
pub mod rate_limit;
pub mod routes;
pub mod transport_counters;
mod upstream_failure;

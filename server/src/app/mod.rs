//! What a shard answers: routes and JSON replies ([`routes`]), the `{"qty":N}` body ([`body`]),
//! CORS ([`cors`]), counters ([`metrics`]), service-time histograms ([`latency`]), the
//! OpenAPI document and its page ([`docs`]), and `/metrics`: the snapshots every shard publishes
//! ([`board`]) rendered in Prometheus' text format ([`exposition`]).

pub mod board;
pub mod body;
pub mod cors;
pub mod docs;
pub mod exposition;
pub mod latency;
pub mod metrics;
pub mod routes;

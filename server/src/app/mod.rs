//! What a shard answers: routes and JSON replies ([`routes`]), the `{"qty":N}` body ([`body`]),
//! counters ([`metrics`]) and service-time histograms ([`latency`]).

pub mod body;
pub mod latency;
pub mod metrics;
pub mod routes;

//! What a shard answers: routes and JSON replies ([`routes`]), the `{"qty":N}` body ([`body`]),
//! CORS ([`cors`]), counters ([`metrics`]) and service-time histograms ([`latency`]).

pub mod body;
pub mod cors;
pub mod latency;
pub mod metrics;
pub mod routes;

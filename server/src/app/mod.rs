//! What a shard answers: routes and JSON replies ([`routes`]), the `{"qty":N}` body ([`body`]),
//! CORS ([`cors`]), counters ([`metrics`]), service-time histograms ([`latency`]), and the
//! OpenAPI document and its page ([`docs`]).

pub mod body;
pub mod cors;
pub mod docs;
pub mod latency;
pub mod metrics;
pub mod rate_limit;
pub mod routes;

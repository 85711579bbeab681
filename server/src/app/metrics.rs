//! Per-shard counters: plain integers owned by one executor, served by the root info route
//! (`GET /`: every field below but `connections_closed`, parser errors by kind) and, through the
//! snapshots each shard publishes ([`crate::app::board`]), by `GET /metrics`. Bad input is
//! counted here, by kind, instead of being logged per request.
//!
//! There is no "connections refused": a shard at `connections_max` refuses nothing, it stops
//! accepting, and the connections over the limit wait in the listen backlog until a slot frees.

use std::io::Write as _;

use proto_http::Error;

use crate::app::transport_counters::TransportCounters;
use crate::config::Mode;
use crate::stock::rebalance::Node;

/// What one shard has seen. Every field only grows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Connections closed, for whatever reason: `connections_accepted - connections_closed` are
    /// open.
    pub connections_closed: u64,
    /// Connections closed by the head deadline (slowloris) or the idle timeout.
    pub connections_timed_out: u64,
    /// Requests answered, whatever the status.
    pub requests: u64,
    /// Purchases and reserves that took tickets.
    pub orders_sold: u64,
    /// Purchases and reserves answered `success: false`.
    pub orders_insufficient: u64,
    /// Tickets taken by successful orders.
    pub tickets_sold: u64,
    /// Requests rejected by the HTTP parser, by [`Error`] variant (index in `Error::ALL`).
    pub http_errors: [u64; Error::ALL.len()],
    /// Bodies rejected (400 or 422).
    pub body_errors: u64,
    /// Unknown paths (404).
    pub not_found: u64,
    /// Known paths with the wrong method (405).
    pub method_not_allowed: u64,
    /// Requests refused with 429 by the rate limit.
    pub rate_limited: u64,
    /// Orders refused without a sale: 503 because a journal failed, or 409 because an operator
    /// closed sales.
    pub orders_refused: u64,
    /// Ticket mode: requests sent to the vacancy service.
    pub forwarded: u64,
    /// Ticket mode: forwarded requests answered 503 (failure, timeout, pool full).
    pub forward_failed: u64,
    /// Ticket mode: of those, purchases that may have sold (sent, and no answer that says
    /// whether: none in time, a broken one, or a 5xx).
    pub forward_outcome_unknown: u64,
    /// Admin-listener requests refused for a missing or wrong token.
    pub admin_unauthorized: u64,
    /// The io_uring transport's own moves (buffer ring, re-arms, parks, wakes, yields).
    pub transport: TransportCounters,
}

impl Counters {
    /// Counts one parser error.
    pub fn http_error(&mut self, error: Error) {
        let index = Error::ALL.iter().position(|&e| e == error).unwrap_or(0);
        self.http_errors[index] += 1;
    }

    /// Each parser error kind with its count, in the order of `Error::ALL`.
    pub fn http_errors_by_kind(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Error::ALL
            .iter()
            .zip(&self.http_errors)
            .map(|(e, &n)| (e.as_str(), n))
    }
}

/// The body of `GET /`: what this process is (`mode`, `shards`), and shard `shard`'s slice,
/// protocol moves and counters (parser errors by kind).
pub fn write_root(
    o: &mut Vec<u8>,
    mode: Mode,
    shards: usize,
    shard: usize,
    node: &Node,
    c: &Counters,
) {
    let m = node.moves();
    let _ = write!(
        o,
        "{{\"service\":\"ticketd\",\"version\":\"{}\",\"mode\":\"{}\",\"shards\":{},\"shard\":{},\
         \"slice\":{{\"available\":{},\"sold\":{}}},\"moves\":{{\"orders_local\":{},\"orders_escalated\":{},\
         \"refills_asked\":{},\"takes_answered\":{},\"tickets_in\":{},\"tickets_out\":{},\"gathers_failed\":{},\"orders_refused_locally\":{}}},\
         \"counters\":{{\"connections_accepted\":{},\"connections_timed_out\":{},\"requests\":{},\
         \"orders_sold\":{},\"orders_insufficient\":{},\"orders_refused\":{},\"tickets_sold\":{},\
         \"body_errors\":{},\"not_found\":{},\"method_not_allowed\":{},\"rate_limited\":{},\"forwarded\":{},\
         \"forward_failed\":{},\"forward_outcome_unknown\":{},\"admin_unauthorized\":{},\"http_errors\":{{",
        env!("CARGO_PKG_VERSION"),
        mode.as_str(),
        shards,
        shard,
        node.slice().available(),
        node.slice().sold(),
        m.orders_local,
        m.orders_escalated,
        m.refills_asked,
        m.takes_answered,
        m.tickets_in,
        m.tickets_out,
        m.gathers_failed,
        m.orders_refused_locally,
        c.connections_accepted,
        c.connections_timed_out,
        c.requests,
        c.orders_sold,
        c.orders_insufficient,
        c.orders_refused,
        c.tickets_sold,
        c.body_errors,
        c.not_found,
        c.method_not_allowed,
        c.rate_limited,
        c.forwarded,
        c.forward_failed,
        c.forward_outcome_unknown,
        c.admin_unauthorized,
    );
    for (i, (kind, n)) in c.http_errors_by_kind().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(o, "{comma}\"{kind}\":{n}");
    }
    o.extend_from_slice(b"},");
    c.transport.write_json(o);
    o.extend_from_slice(b"}}");
}

//! The ticket tier's side of a shard ([`Forwarding`]): the requests `App` queues for the
//! vacancy service, and its cached copy of the stock (moved out of `routes.rs`; `App`'s methods
//! that use it are in `upstream_failure.rs`).

use std::time::{Duration, Instant};

use crate::forward::upstream::{Request, RequestId};
use crate::request_id::XRequestId;

/// The ticket tier's side of a shard: what it asks the vacancy service, and its copy of the
/// stock. Requests are queued here by `handle` and sent by the shard's forwarder
/// ([`crate::forward`]); answers come back through [`App::finish_order`].
#[derive(Debug)]
pub struct Forwarding {
    /// Requests to send, in order, each with its client request's `X-Request-Id`.
    pub requests: Vec<(RequestId, Request, XRequestId)>,
    /// The next request's id (also the id its connection waits on).
    next_id: RequestId,
    /// The vacancy service's last known stock and when it was learnt: `/available` answers from
    /// it while it is younger than `cache_ttl`, as the original ticket service's cache did.
    pub(super) available: Option<(u64, Instant)>,
    /// `CACHE_TTL_SECONDS`.
    cache_ttl: Duration,
}

impl Forwarding {
    /// Nothing queued, nothing known.
    pub fn new(cache_ttl: Duration) -> Self {
        Forwarding {
            requests: Vec::new(),
            next_id: 0,
            available: None,
            cache_ttl,
        }
    }

    /// Queues `request`; returns its id.
    pub(super) fn forward(&mut self, request: Request, request_id: XRequestId) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.requests.push((id, request, request_id));
        id
    }

    /// The cached stock, if still fresh.
    pub(super) fn fresh_available(&self, now: Instant) -> Option<u64> {
        self.available
            .filter(|&(_, at)| now.saturating_duration_since(at) < self.cache_ttl)
            .map(|(qty, _)| qty)
    }
}

//! The ticket tier's side of `App`: what it forwards to the vacancy service (moved from
//! `routes.rs`), and its answer when the vacancy service failed a forwarded request.

use std::time::Instant;

use crate::app::body::parse_qty;
use crate::app::routes::{available, error, App, Deferred, Exchange, Reply, Route};
use crate::forward::upstream::{FailKind, Request};

impl App {
    /// The vacancy service failed a forwarded request: 503 with the JSON error. A reserve that
    /// may have been made says so: the forwarder retried it with its `Idempotency-Key` while time
    /// was left, and none of the attempts settled it (see README, "Ticket mode").
    pub(super) fn upstream_failed(
        &mut self,
        route: Route,
        kind: FailKind,
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
        if let Some(reply) = self.forwarded_key_refused(kind, x, out) {
            return reply;
        }
        if route == Route::Purchase && matches!(kind, FailKind::Status(409)) {
            // The vacancy service's operator closed sales (its only 409): nothing was sold, and
            // the client gets the same clear answer a monolith gives.
            self.counters.orders_refused += 1;
            let detail = "sales are closed by the operator: nothing was sold; try again later";
            return error(out, x, 409, "sales_closed", detail, None);
        }
        self.counters.forward_failed += 1;
        let unknown = route == Route::Purchase && kind.outcome_unknown();
        if unknown {
            self.counters.forward_outcome_unknown += 1;
        }
        let (code, detail) = match (route, unknown, kind) {
            (Route::Ready, _, _) => (
                "not_ready",
                "the vacancy service does not answer; purchases fail until it does",
            ),
            (_, true, _) => (
                "vacancy_outcome_unknown",
                "the vacancy service took the request but its answer (or the lack of one) does \
                 not say whether it was made: the purchase may or may not have been made, and no \
                 retry could finish within VACANCY_TIMEOUT",
            ),
            (_, _, FailKind::Busy) => (
                "vacancy_busy",
                "too many requests are waiting for the vacancy service; nothing was sold",
            ),
            _ => (
                "vacancy_unavailable",
                "the vacancy service is unavailable; nothing was sold",
            ),
        };
        tracing::debug!(
            ?route,
            failure = kind.as_str(),
            request_id = %x.request_id,
            "forwarded request failed"
        );
        error(out, x, 503, code, detail, None)
    }
}

impl App {
    /// Ticket mode: purchase, a stale `/available` and `/ready` ask the vacancy service; `None`
    /// for what this shard answers itself (health, root, a fresh `/available`). A purchase's body
    /// is checked here first, so bad input never leaves the ticket tier. A purchase's reserve
    /// carries an `Idempotency-Key` (`key`, the client's, or one made here), so the forwarder may
    /// send it again after a broken connection.
    pub(super) fn forward(
        &mut self,
        route: Route,
        key: Option<&[u8]>,
        body: &[u8],
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Reply> {
        let (request, qty) = match route {
            Route::Purchase => match parse_qty(body, self.max_order_qty) {
                Ok(qty) => match self.forward_key(key, x, out) {
                    Some(key) => (Request::KeyedReserve { qty, key }, qty),
                    None => return Some(Reply::Done(400)),
                },
                Err(e) => return Some(self.body_error(e, x, out)),
            },
            Route::Available => {
                let fresh = self.forwarding.as_ref()?.fresh_available(Instant::now());
                if let Some(qty) = fresh {
                    return Some(available(x, out, qty));
                }
                (Request::Available, 0)
            }
            Route::Ready => (Request::Health, 0),
            Route::Reserve | Route::Health | Route::Root => return None,
            Route::Metrics | Route::OpenApi | Route::Docs | Route::Admin => return None,
        };
        self.counters.forwarded += 1;
        let order = self.forwarding.as_mut()?.forward(request, *x.request_id);
        Some(Reply::Deferred(Deferred::new(order, route, qty, x)))
    }

    /// Remembers the vacancy service's stock for `/available`.
    pub(super) fn learn_available(&mut self, qty: u64) {
        if let Some(f) = self.forwarding.as_mut() {
            f.available = Some((qty, Instant::now()));
        }
    }
}

//! The ticket tier's answer when the vacancy service failed a forwarded request.

use crate::app::routes::{error, App, Exchange, Reply, Route};
use crate::forward::upstream::FailKind;

impl App {
    /// The vacancy service failed a forwarded request: 503 with the JSON error. A reserve that
    /// may have been made says so; it is never retried (see README, "Ticket mode").
    pub(super) fn upstream_failed(
        &mut self,
        route: Route,
        kind: FailKind,
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
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
                 not say whether it was made: the purchase may or may not have been made, and it \
                 was not retried",
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

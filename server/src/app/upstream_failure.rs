//! The ticket tier's answer when the vacancy service failed a forwarded request.

use crate::app::routes::{error, App, Exchange, Reply, Route};
use crate::forward::upstream::FailKind;

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

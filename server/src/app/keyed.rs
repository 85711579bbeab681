//! Keyed orders (`Idempotency-Key`, issue 17): the part of [`App`] that runs a purchase or a
//! reserve carrying a key, on the shard that owns the key, and writes its answers. The table
//! and the rules are in [`super::idempotency`]; the core carries the mail between shards.

use std::time::{SystemTime, UNIX_EPOCH};

use super::idempotency::{self, Fingerprint, KeyAnswer, KeyMail, Lookup, Origin};
use super::routes::{error, App, Deferred, Exchange, Reply, Route};
use crate::durability::journal::{keyed, Change, KeyRecord};
use crate::forward::upstream::{FailKind, ForwardKey};
use crate::stock::rebalance::{Decision, OrderId, Placed, COORDINATOR};
use crate::stock::slice::Sale;

/// What running a keyed request on its owner gave.
enum KeyStep {
    /// Its answer, now.
    Answer(KeyAnswer),
    /// It waits for the coordinator under this order id.
    Waiting(OrderId),
}

/// Now, in milliseconds since the Unix epoch: keys' ages survive restarts, so they run on the
/// wall clock.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The route's number in the journal.
fn route_code(route: Route) -> u8 {
    match route {
        Route::Reserve => 2,
        _ => 1,
    }
}

impl App {
    /// A purchase or reserve for `qty` carrying the header value `value`: 400 for a bad key;
    /// on the key's owner shard, the table's answer or the order; elsewhere, one hop to the
    /// owner (the connection waits for its answer).
    pub(super) fn keyed_order(
        &mut self,
        route: Route,
        qty: u64,
        value: &[u8],
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
        let key = match idempotency::parse(value) {
            Ok(key) => key,
            Err(e) => return self.key_invalid(e, x, out),
        };
        let fingerprint = Fingerprint {
            route: route_code(route),
            qty,
        };
        let owner = keyed::owner(key, self.shards);
        if self.halted {
            // No hop: the owner's answer could not leave a halted shard's mail.
            return self.key_reply(route, qty, KeyAnswer::Halted, x, out);
        }
        if owner != self.shard {
            self.keys.counters.hops += 1;
            let id = self.keys.hop_id();
            let ask = KeyMail::Ask {
                id,
                key,
                fingerprint,
            };
            self.keys.mail.push((owner, ask));
            return Reply::Deferred(Deferred::keyed(id, route, qty, key, x));
        }
        match self.run_keyed(key, fingerprint, Origin::Local) {
            KeyStep::Answer(answer) => self.key_reply(route, qty, answer, x, out),
            KeyStep::Waiting(order) => Reply::Deferred(Deferred::keyed(order, route, qty, key, x)),
        }
    }

    /// Ticket mode: the key a forwarded reserve carries: derived from the client's, or made
    /// here; `None` when the client's is not a key (the 400 is written: `Reply::Done(400)`).
    pub(super) fn forward_key(
        &mut self,
        value: Option<&[u8]>,
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Option<ForwardKey> {
        match value.map(idempotency::parse) {
            None => Some(ForwardKey::Made(self.keys.made_key())),
            Some(Ok(key)) => Some(ForwardKey::Client(key)),
            Some(Err(e)) => {
                self.key_invalid(e, x, out);
                None
            }
        }
    }

    /// Ticket mode: the vacancy service refused a keyed reserve for its key (409: in flight
    /// still, after the retries; 422: the client reused its key for another quantity): the
    /// client gets the same answer.
    pub(super) fn forwarded_key_refused(
        &mut self,
        kind: FailKind,
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Reply> {
        let answer = match kind {
            FailKind::KeyInFlight => KeyAnswer::InFlight,
            FailKind::KeyReused => KeyAnswer::Reused,
            _ => return None,
        };
        Some(self.key_reply(Route::Purchase, 0, answer, x, out))
    }

    /// Shard `from` asks this shard, the key's owner, to run a keyed request; the answer goes
    /// back in mail (now, or once the coordinator decided).
    pub fn key_ask(&mut self, from: usize, id: u64, key: u128, fingerprint: Fingerprint) {
        if let KeyStep::Answer(answer) =
            self.run_keyed(key, fingerprint, Origin::Remote { from, id })
        {
            self.keys.mail.push((from, KeyMail::Answer { id, answer }));
        }
    }

    /// Runs a keyed request on its owner: the table's answer, or the order itself, whose answer
    /// is journaled with its sale (one record when the slice sold it).
    fn run_keyed(&mut self, key: u128, fingerprint: Fingerprint, origin: Origin) -> KeyStep {
        if self.halted {
            return KeyStep::Answer(KeyAnswer::Halted);
        }
        let now = now_ms();
        let step = match self.keys.lookup(key, fingerprint, now) {
            Lookup::Replay(record) => {
                self.keys.counters.replays += 1;
                KeyAnswer::Done {
                    record,
                    first: false,
                }
            }
            Lookup::InFlight => {
                self.keys.counters.in_flight += 1;
                KeyAnswer::InFlight
            }
            Lookup::Reused => {
                self.keys.counters.reused += 1;
                KeyAnswer::Reused
            }
            Lookup::New => {
                let placed = self.node.order(fingerprint.qty, &mut self.outbox);
                let (sold, change) = match placed {
                    Placed::Waiting(order) => {
                        self.keys.begin(key, fingerprint);
                        self.keys.orders.insert(order, (key, fingerprint, origin));
                        if self.shard != COORDINATOR {
                            // Ahead of the `Escalate` (the core posts key mail first): the
                            // coordinator journals the key with the sale it decides.
                            let mail = KeyMail::Escalated {
                                order,
                                key,
                                fingerprint,
                            };
                            self.keys.mail.push((COORDINATOR, mail));
                        }
                        self.node.maybe_refill(&mut self.outbox);
                        return KeyStep::Waiting(order);
                    }
                    Placed::Refused => (false, None),
                    // Closed sales refuse a new request (nothing is recorded, so the key runs
                    // once they open), and still replay answers given before the close.
                    Placed::Closed => return KeyStep::Answer(KeyAnswer::Closed),
                    Placed::Sold { change } => (true, Some(change)),
                };
                let remaining = self.node.total_available();
                let record = self.keys.finish(key, fingerprint, sold, remaining, now);
                // The sale becomes the key's record: no batch can split them.
                self.journal_keyed(change, record);
                self.node.maybe_refill(&mut self.outbox);
                KeyAnswer::Done {
                    record,
                    first: true,
                }
            }
        };
        KeyStep::Answer(step)
    }

    /// The coordinator learns that another shard's escalated order `order` carries a key.
    pub fn key_escalated(&mut self, from: usize, order: OrderId, key: u128, fp: Fingerprint) {
        self.keys.escalated.insert((from, order), (key, fp));
    }

    /// The coordinator's answer to this shard's escalated keyed order `order`; kept until its
    /// `Decided` comes (next in the mail).
    pub fn key_decided(&mut self, order: OrderId, record: KeyRecord) {
        self.keys.decided.insert(order, record);
    }

    /// Records the answers of keyed orders decided in this step (call before the step's
    /// changes are journaled). On the coordinator, a keyed order it sold is journaled as one
    /// record, the key with the sale, in place of the plain sale: a crash cannot keep the sale
    /// and lose the key (a retry would sell again). Other shards' keyed orders get their answer
    /// in mail ahead of their `Decided`; on the owner each answer goes into the table and its
    /// journal, and to the asking shard when the request came from another. One branch when no
    /// keyed order waits.
    pub fn keyed_outcomes(&mut self) {
        if self.keys.orders.is_empty() && self.keys.escalated.is_empty() {
            self.outbox.decisions.clear();
            return;
        }
        let decisions = std::mem::take(&mut self.outbox.decisions);
        for d in &decisions {
            self.keyed_decision(d);
        }
        self.outbox.decisions = decisions;
        self.outbox.decisions.clear();
        for i in 0..self.outbox.outcomes.len() {
            let (order, sale) = self.outbox.outcomes[i];
            let Some((key, fingerprint, origin)) = self.keys.orders.remove(&order) else {
                continue;
            };
            if sale == Sale::Closed {
                // Nothing was done or recorded: the key runs once sales open again.
                self.keys.abandon(key);
                self.answer_remote(origin, KeyAnswer::Closed);
                continue;
            }
            if sale == Sale::Unavailable {
                // Nothing was done or recorded: the key runs again on a retry.
                self.keys.abandon(key);
                self.answer_remote(origin, KeyAnswer::Unavailable);
                continue;
            }
            let record = match self.keys.decided.remove(&order) {
                Some(record) => {
                    self.keys.finish_with(record);
                    record
                }
                None => {
                    debug_assert!(false, "the coordinator's answer precedes its Decided");
                    let remaining = self.node.total_available();
                    let sold = sale == Sale::Sold;
                    self.keys
                        .finish(key, fingerprint, sold, remaining, now_ms())
                }
            };
            // A copy: the coordinator's journal holds the sale with the key already (a refusal
            // sold nothing), and this one outlives the coordinator's compactions and evictions.
            self.outbox.changes.push(Change::Keyed {
                sale: 0,
                entry: record,
            });
            self.answer_remote(
                origin,
                KeyAnswer::Done {
                    record,
                    first: true,
                },
            );
        }
    }

    /// The coordinator decided escalated order `d`: when it carries a key, its answer is made
    /// here, and a sale journaled with its key.
    fn keyed_decision(&mut self, d: &Decision) {
        let (key, fingerprint, origin) = if d.from == self.shard {
            match self.keys.orders.remove(&d.order) {
                Some((key, fingerprint, origin)) => (key, fingerprint, Some(origin)),
                None => return,
            }
        } else {
            match self.keys.escalated.remove(&(d.from, d.order)) {
                Some((key, fingerprint)) => (key, fingerprint, None),
                None => return,
            }
        };
        if matches!(d.sale, Sale::Closed | Sale::Unavailable) {
            // Nothing was done or recorded. Another shard's order: its shard hears `Decided`.
            if let Some(origin) = origin {
                self.keys.abandon(key);
                let answer = match d.sale {
                    Sale::Closed => KeyAnswer::Closed,
                    _ => KeyAnswer::Unavailable,
                };
                self.answer_remote(origin, answer);
            }
            return;
        }
        let sold = d.sale == Sale::Sold;
        let remaining = self.node.total_available();
        let record = match origin {
            Some(_) => self
                .keys
                .finish(key, fingerprint, sold, remaining, now_ms()),
            None => KeyRecord {
                key,
                at_ms: now_ms(),
                route: fingerprint.route,
                qty: fingerprint.qty,
                sold,
                remaining,
            },
        };
        if sold {
            self.journal_keyed(d.change, record);
            if origin.is_none() {
                // Kept so this journal's compactions copy it until it expires.
                self.keys.keep_copy(record);
            }
        } else if origin.is_some() {
            self.journal_keyed(None, record);
        }
        match origin {
            Some(origin) => self.answer_remote(
                origin,
                KeyAnswer::Done {
                    record,
                    first: true,
                },
            ),
            None => {
                let mail = KeyMail::Decided {
                    order: d.order,
                    record,
                };
                self.keys.mail.push((d.from, mail));
            }
        }
    }

    /// Journals a keyed answer: in place of its sale (`Some`: the index of this step's
    /// `Change::Sale` for it), so that one record holds both, or as a record selling nothing.
    fn journal_keyed(&mut self, sale: Option<usize>, record: KeyRecord) {
        let keyed = |sale| Change::Keyed {
            sale,
            entry: record,
        };
        let Some(index) = sale else {
            self.outbox.changes.push(keyed(0));
            return;
        };
        match self.outbox.changes.get_mut(index) {
            Some(c) if *c == (Change::Sale { qty: record.qty }) => *c = keyed(record.qty),
            _ => {
                // Never: the index is this step's. The key still reaches the journal.
                debug_assert!(false, "change {index} is not the sale of {record:?}");
                self.outbox.changes.push(keyed(0));
            }
        }
    }

    /// A keyed order's answer for the shard that holds its connection, when that is another
    /// (one of this shard is told by its order's outcome).
    fn answer_remote(&mut self, origin: Origin, answer: KeyAnswer) {
        if let Origin::Remote { from, id } = origin {
            self.keys.mail.push((from, KeyMail::Answer { id, answer }));
        }
    }

    /// The answer of a keyed order the coordinator decided, for the connection that waited on
    /// this shard (the owner): what the table kept, so replays answer the same bytes.
    pub(super) fn decided_key(&self, key: Option<u128>) -> Option<KeyAnswer> {
        let record = self.keys.get(key?)?;
        Some(KeyAnswer::Done {
            record,
            first: true,
        })
    }

    /// Writes a keyed request's answer: the order's (counted when this request made it; a
    /// replay is the same status and body), 409, 422 or 503.
    pub(super) fn key_reply(
        &mut self,
        route: Route,
        qty: u64,
        answer: KeyAnswer,
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
        match answer {
            KeyAnswer::Done { record, first } => {
                let sale = if record.sold {
                    Sale::Sold
                } else {
                    Sale::Insufficient
                };
                if first {
                    self.order_reply(route, qty, sale, record.remaining, x, out)
                } else {
                    self.order_body(route, qty, record.sold, record.remaining, true, x, out)
                }
            }
            KeyAnswer::InFlight => error(
                out,
                x,
                409,
                "idempotency_key_in_flight",
                "a request with this Idempotency-Key is still being processed: retry it shortly",
                None,
            ),
            KeyAnswer::Reused => error(
                out,
                x,
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for another request (a different route or qty)",
                None,
            ),
            KeyAnswer::Closed => self.closed_reply(x, out),
            KeyAnswer::Unavailable => {
                self.counters.orders_refused += 1;
                let detail = crate::stock::escrow::UNSETTLED;
                error(out, x, 503, "cluster_unavailable", detail, None)
            }
            KeyAnswer::Halted => {
                self.counters.orders_refused += 1;
                error(
                    out,
                    x,
                    503,
                    "journal_failed",
                    "the journal cannot record sales: this key's outcome is not known here; \
                     retry with the same Idempotency-Key once the server is restarted (a key \
                     never sells twice)",
                    None,
                )
            }
        }
    }
}

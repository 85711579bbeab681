//! Routing and replies: which route a request names, whether the mode serves it, and the JSON
//! written straight into the connection's output buffer (no `format!` on the hot path).
//!
//! This module knows requests and bytes; the stock decisions are in `stock`, and what a shard
//! holds is in [`App`].

use std::net::IpAddr;
use std::time::Instant;

use proto_http::write::{write_no_content, write_response_with};
use proto_http::{HttpDate, Method, RequestHead, Response, Version};

use crate::app::board::{Board, Published};
use crate::app::body::{parse_qty, BodyError};
use crate::app::cors::{self, Cors, Grant};
use crate::app::docs::{Doc, Docs};
use crate::app::idempotency::{self, KeyAnswer, Keys};
use crate::app::metrics::{self as counters, Counters};
use crate::app::rate_limit::{RateLimit, Verdict};
use crate::config::Mode;
use crate::forward::upstream::{FailKind, Outcome};
use crate::request_id::{self, Generator, XRequestId};
use crate::stock::escrow::UNSETTLED;
use crate::stock::rebalance::{Node, OrderId, Outbox, Placed};
use crate::stock::slice::Sale;

/// The content type of every reply.
const JSON: &[u8] = b"application/json";

/// The methods the server as a whole answers: `Allow` of `OPTIONS *` and of a CONNECT's 405
/// (every mode serves a POST route: purchase or reserve).
const SERVER_ALLOW: &[u8] = b"GET, HEAD, POST, OPTIONS";

/// The endpoints of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/v1/available`
    Available,
    /// `POST /api/v1/purchase`
    Purchase,
    /// `POST /api/v1/reserve`
    Reserve,
    /// `GET /api/v1/health`, `GET /health`
    Health,
    /// `GET /ready`, `GET /api/v1/ready`
    Ready,
    /// `GET /`
    Root,
    /// `GET /metrics`
    Metrics,
    /// `GET /openapi.json`
    OpenApi,
    /// `GET /docs`
    Docs,
    /// An operator's request on the admin listener (`app/admin.rs`); never found by
    /// [`Route::find`], so the public listener answers 404 for every `/admin/...` path.
    Admin,
}

impl Route {
    /// The route a path names in `mode`, if any. A path the mode does not serve is unknown (404),
    /// as it is in the original system's separate services.
    pub fn find(path: &[u8], mode: Mode) -> Option<Route> {
        let route = match path {
            b"/api/v1/available" => Route::Available,
            b"/api/v1/purchase" => Route::Purchase,
            b"/api/v1/reserve" => Route::Reserve,
            b"/api/v1/health" | b"/health" => Route::Health,
            b"/ready" | b"/api/v1/ready" => Route::Ready,
            b"/" => Route::Root,
            b"/metrics" => Route::Metrics,
            b"/openapi.json" => Route::OpenApi,
            b"/docs" => Route::Docs,
            _ => return None,
        };
        let served = match route {
            Route::Purchase => mode != Mode::Vacancy,
            Route::Reserve => mode != Mode::Ticket,
            _ => true,
        };
        served.then_some(route)
    }

    /// Whether the route answers `method` with its own reply, and the `Allow` value of its 405
    /// and its `OPTIONS` (which every route answers, 204). GET routes answer HEAD too (RFC 9110
    /// §9.1); the connection strips the body.
    pub fn allows(self, method: Method<'_>) -> (bool, &'static [u8]) {
        match self {
            Route::Purchase | Route::Reserve => (method == Method::Post, b"POST, OPTIONS"),
            _ => (
                matches!(method, Method::Get | Method::Head),
                b"GET, HEAD, OPTIONS",
            ),
        }
    }
}

/// What a shard holds to answer requests: its side of the stock protocol, its counters.
#[derive(Debug)]
pub struct App {
    /// Which endpoints this process serves.
    pub mode: Mode,
    /// This shard's index.
    pub shard: usize,
    /// How many shards the process runs.
    pub shards: usize,
    /// This shard's slice and its side of the protocol that moves tickets between slices.
    pub node: Node,
    /// What the protocol produced and the shard has yet to send or deliver.
    pub outbox: Outbox,
    /// The largest `qty` one order may ask for.
    pub max_order_qty: u64,
    /// What this shard has seen.
    pub counters: Counters,
    /// Ticket mode only: requests for the vacancy service. The choice between selling from the
    /// slice and forwarding is this one `Option`, set once at start-up.
    pub forwarding: Option<Forwarding>,
    /// A journal failed (this shard's or a peer's): orders answer 503 and `/ready` 503 until a
    /// restart, as no sale could be made durable.
    pub halted: bool,
    /// `/openapi.json` and `/docs`, built at start-up ([`docs`]).
    pub docs: &'static Docs,
    /// Which web origins may read responses (`--cors-allow-origins`).
    pub cors: &'static Cors,
    /// Every shard's published numbers, for `/metrics` (made at start-up, shared by all shards).
    pub board: &'static Board,
    /// The slots a scrape copied out, reused by the next scrape.
    pub scraped: Vec<Published>,
    /// Makes the `X-Request-Id` of requests that bring none (or an unusable one).
    pub request_ids: Generator,
    /// Per-client-address token buckets (`--rate-limit-purchases-per-second`); `None` when off,
    /// so the limit costs one branch then.
    pub rate_limit: Option<RateLimit>,
    /// The `Idempotency-Key`s this shard owns, and keyed requests in flight ([`idempotency`]).
    pub keys: Keys,
}

pub use crate::app::forwarding::Forwarding;

/// What a deferred request waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The coordinator decided an escalated order (monolith, vacancy).
    Decided(Sale),
    /// The vacancy service answered a forwarded request, or it failed (ticket).
    Upstream(Outcome),
    /// A journal failed while the order waited: its outcome is unknown (monolith, vacancy).
    Halted,
    /// An operator's operation is done (`app/admin.rs`).
    Operated(crate::stock::rebalance::Operated),
    /// The owner shard of a keyed request answered it (monolith, vacancy).
    Keyed(KeyAnswer),
}

/// How a request was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The response was written, with this status.
    Done(u16),
    /// The answer comes later (an order waits for the coordinator, or a request for the vacancy
    /// service); nothing was written yet.
    Deferred(Deferred),
}

/// A request whose answer comes later: what its response will need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deferred {
    /// The order's number at this shard, or the forwarded request's id (ticket mode).
    pub order: OrderId,
    /// Purchase or reserve; in ticket mode also available or ready.
    pub route: Route,
    /// Tickets asked for.
    pub qty: u64,
    /// The request's version.
    pub version: Version,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// A HEAD request: the response goes without its body.
    pub head: bool,
    /// The request's CORS answer.
    pub cors: Grant,
    /// The request's `X-Request-Id`, for its response when it comes.
    pub request_id: XRequestId,
    /// The digest of its `Idempotency-Key`, for a keyed order.
    pub key: Option<u128>,
}

impl Deferred {
    /// A request of `route` for `qty` that waits under the number `order`.
    pub(super) fn new(order: OrderId, route: Route, qty: u64, x: Exchange<'_>) -> Deferred {
        Deferred {
            order,
            route,
            qty,
            version: x.version,
            keep_alive: x.keep_alive,
            head: x.head,
            cors: x.cors,
            request_id: *x.request_id,
            key: None,
        }
    }

    /// A keyed order of `route` for `qty` that waits under the number `order`.
    pub(super) fn keyed(
        order: OrderId,
        route: Route,
        qty: u64,
        key: u128,
        x: Exchange<'_>,
    ) -> Deferred {
        Deferred {
            key: Some(key),
            ..Deferred::new(order, route, qty, x)
        }
    }
}

/// The per-request facts a reply needs besides the route.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    /// The request's version, for the `Connection` header.
    pub version: Version,
    /// Whether the connection stays open after this reply.
    pub keep_alive: bool,
    /// A HEAD request: every reply is written without its body (RFC 9110 §9.3.2), whether it is
    /// answered at once or after waiting.
    pub head: bool,
    /// The cached `Date`.
    pub date: &'a HttpDate,
    /// What the response says to a browser about CORS; [`App::handle`] decides it.
    pub cors: Grant,
    /// The request's `X-Request-Id`, echoed on every response to it.
    pub request_id: &'a XRequestId,
    /// The client's address, when the transport knows it (the rate limit's key).
    pub client: Option<IpAddr>,
}

impl App {
    /// Answers one complete request (head and body), appending the response to `out`.
    pub fn handle(
        &mut self,
        req: &RequestHead<'_, '_>,
        body: &[u8],
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
        self.counters.requests += 1;
        let x = Exchange {
            cors: self.cors.grant(req),
            ..x
        };
        let route = Route::find(req.path(), self.mode);
        if self.rate_limit.is_some() {
            if let Some(reply) = self.rate_limited(route, req.method, x, out) {
                return reply;
            }
        }
        let Some(route) = route else {
            return self.no_route(req, x, out);
        };
        let (allowed, allow) = route.allows(req.method);
        if !allowed && req.method == Method::Options {
            return options(req, x, allow, out);
        }
        if !allowed {
            self.counters.method_not_allowed += 1;
            return error(
                out,
                x,
                405,
                "method_not_allowed",
                "method not allowed on this endpoint",
                Some(allow),
            );
        }
        if self.forwarding.is_some() {
            let key = match idempotency::header_value(req.headers) {
                Ok(key) => key,
                Err(e) => return self.key_invalid(e, x, out),
            };
            if let Some(reply) = self.forward(route, key, body, x, out) {
                return reply;
            }
        }
        match route {
            Route::Available => available(x, out, self.node.total_available()),
            Route::Purchase | Route::Reserve => match idempotency::header_value(req.headers) {
                Ok(key) => self.order(route, key, body, x, out),
                Err(e) => self.key_invalid(e, x, out),
            },
            Route::Health => {
                let mode = self.mode.as_str().as_bytes();
                json(out, x, 200, |o| {
                    o.extend_from_slice(b"{\"status\":\"healthy\",\"service\":\"");
                    o.extend_from_slice(mode);
                    o.extend_from_slice(b"\",\"mode\":\"");
                    o.extend_from_slice(mode);
                    o.extend_from_slice(b"\"}");
                })
            }
            Route::Ready if self.halted => error(
                out,
                x,
                503,
                "not_ready",
                "the journal failed: this process sells nothing until it is restarted",
                None,
            ),
            Route::Ready => self.ready(x, out),
            // What this process is, and this shard's counters (parser errors by kind).
            Route::Root => json(out, x, 200, |o| {
                let (mode, shards, shard) = (self.mode, self.shards, self.shard);
                counters::write_root(o, mode, shards, shard, &self.node, &self.counters);
                // One more member in the object: `,"idempotency":{...}}`.
                o.pop();
                self.keys.write_root(o);
                o.push(b'}');
            }),
            Route::Metrics => self.metrics(req, x, out),
            Route::OpenApi => self.document(Doc::OpenApi, req, x, out),
            Route::Docs => self.document(Doc::Page, req, x, out),
            Route::Admin => unreachable!("Route::find never names the admin route"),
        }
    }

    /// 429 with `Retry-After` when the request counts against the client's rate limit (a
    /// purchase, or any request with `--rate-limit-all-routes`) and its bucket is empty.
    fn rate_limited(
        &mut self,
        route: Option<Route>,
        method: Method<'_>,
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Reply> {
        let limit = self.rate_limit.as_mut()?;
        let counts = limit.all_routes || (route == Some(Route::Purchase) && method == Method::Post);
        let client = x.client.filter(|_| counts)?;
        let Verdict::Limited { retry_after_s } = limit.check(client, Instant::now()) else {
            return None;
        };
        self.counters.rate_limited += 1;
        let mut digits = itoa::Buffer::new();
        let retry_after: &[u8] = digits.format(retry_after_s).as_bytes();
        let detail = "too many requests from this address: retry after the seconds in Retry-After";
        Some(error_with(
            out,
            x,
            429,
            "rate_limited",
            detail,
            &[(b"Retry-After", retry_after)],
        ))
    }

    /// A target that names no route: `OPTIONS *` asks about the server as a whole (RFC 9110
    /// §9.3.7) and CONNECT asks for a tunnel, which no resource here offers (405 with the
    /// methods there are, RFC 9110 §15.5.6); anything else is an unknown path.
    fn no_route(&mut self, req: &RequestHead<'_, '_>, x: Exchange<'_>, out: &mut Vec<u8>) -> Reply {
        match req.method {
            Method::Options if req.target == b"*" => options(req, x, SERVER_ALLOW, out),
            Method::Connect => {
                self.counters.method_not_allowed += 1;
                let detail = "this server is not a proxy: CONNECT is not allowed";
                error(
                    out,
                    x,
                    405,
                    "method_not_allowed",
                    detail,
                    Some(SERVER_ALLOW),
                )
            }
            _ => {
                self.counters.not_found += 1;
                error(out, x, 404, "not_found", "no such endpoint", None)
            }
        }
    }

    /// Purchase or reserve: parse `{"qty":n}`, take from the slice, reply; or, when the slice
    /// cannot cover it, escalate it and answer later ([`App::finish_order`]).
    /// With an `Idempotency-Key` (`key`), the owner shard's table answers first
    /// ([`App::keyed_order`]).
    fn order(
        &mut self,
        route: Route,
        key: Option<&[u8]>,
        body: &[u8],
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
        let qty = match parse_qty(body, self.max_order_qty) {
            Ok(qty) => qty,
            Err(e) => return self.body_error(e, x, out),
        };
        if let Some(value) = key {
            return self.keyed_order(route, qty, value, x, out);
        }
        if self.halted {
            self.counters.orders_refused += 1;
            return error(
                out,
                x,
                503,
                "journal_failed",
                "the journal cannot record sales: nothing was sold; the server must be restarted",
                None,
            );
        }
        let sale = match self.node.order(qty, &mut self.outbox) {
            // Closed sales move nothing: no refill either.
            Placed::Closed => return self.closed_reply(x, out),
            Placed::Waiting(order) => {
                self.node.maybe_refill(&mut self.outbox);
                return Reply::Deferred(Deferred::new(order, route, qty, x));
            }
            Placed::Sold { .. } => Sale::Sold,
            Placed::Refused => Sale::Insufficient,
        };
        self.node.maybe_refill(&mut self.outbox);
        let remaining = self.node.total_available();
        self.order_reply(route, qty, sale, remaining, x, out)
    }

    /// 400 `idempotency_key_invalid`: the header is not a key; counted, nothing sold.
    pub(super) fn key_invalid(
        &mut self,
        e: idempotency::KeyError,
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
        self.keys.counters.invalid += 1;
        error(out, x, 400, "idempotency_key_invalid", e.detail(), None)
    }

    /// 409 `sales_closed`: the operator closed sales; nothing was sold.
    pub(super) fn closed_reply(&mut self, x: Exchange<'_>, out: &mut Vec<u8>) -> Reply {
        self.counters.orders_refused += 1;
        let detail = "sales are closed by the operator: nothing was sold; try again later";
        error(out, x, 409, "sales_closed", detail, None)
    }

    /// Writes the response of a request that waited, now that its answer came: an escalated
    /// order the coordinator decided, or a request the vacancy service answered or failed.
    pub fn finish_order(
        &mut self,
        d: &Deferred,
        answer: Answer,
        date: &HttpDate,
        out: &mut Vec<u8>,
    ) -> Reply {
        let x = Exchange {
            version: d.version,
            keep_alive: d.keep_alive,
            head: d.head,
            date,
            cors: d.cors,
            request_id: &d.request_id,
            client: None,
        };
        let outcome = match answer {
            Answer::Decided(sale) => {
                self.node.maybe_refill(&mut self.outbox);
                if let Some(answer) = self.decided_key(d.key) {
                    return self.key_reply(d.route, d.qty, answer, x, out);
                }
                let remaining = self.node.total_available();
                return self.order_reply(d.route, d.qty, sale, remaining, x, out);
            }
            Answer::Upstream(outcome) => outcome,
            Answer::Operated(op) => return self.operated_reply(op, x, out),
            Answer::Keyed(answer) => return self.key_reply(d.route, d.qty, answer, x, out),
            Answer::Halted => {
                self.counters.orders_refused += 1;
                return error(
                    out,
                    x,
                    503,
                    "journal_failed",
                    "the journal failed while this order waited: it may or may not have been \
                     made; the server must be restarted",
                    None,
                );
            }
        };
        match (d.route, outcome) {
            (Route::Purchase, Outcome::Reserved { remaining }) => {
                self.learn_available(remaining);
                self.order_reply(d.route, d.qty, Sale::Sold, remaining, x, out)
            }
            (Route::Purchase, Outcome::Insufficient { remaining }) => {
                self.learn_available(remaining);
                self.order_reply(d.route, d.qty, Sale::Insufficient, remaining, x, out)
            }
            // The client's key was answered before: the same answer, marked, not counted again.
            (Route::Purchase, Outcome::Replayed { sold, remaining }) => {
                self.order_body(d.route, d.qty, sold, remaining, true, x, out)
            }
            (Route::Available, Outcome::Available { qty }) => {
                self.learn_available(qty);
                available(x, out, qty)
            }
            (Route::Ready, Outcome::Healthy) => self.ready(x, out),
            (route, Outcome::Failed(kind)) => self.upstream_failed(route, kind, x, out),
            (route, outcome) => {
                // The upstream module reads each answer by what was asked, so this is our bug;
                // the client still gets a clear answer.
                debug_assert!(false, "{route:?} answered with {outcome:?}");
                tracing::error!(
                    ?route,
                    ?outcome,
                    request_id = %d.request_id,
                    "a forwarded request got another's answer"
                );
                self.upstream_failed(route, FailKind::BadBody, x, out)
            }
        }
    }

    /// Counts an order's answer and writes it ([`App::order_body`]).
    pub(super) fn order_reply(
        &mut self,
        route: Route,
        qty: u64,
        sale: Sale,
        remaining: u64,
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
        match sale {
            Sale::Sold => {
                self.counters.orders_sold += 1;
                self.counters.tickets_sold += qty;
            }
            Sale::Insufficient => self.counters.orders_insufficient += 1,
            Sale::Closed => return self.closed_reply(x, out),
            Sale::Unavailable => {
                self.counters.orders_refused += 1;
                return error(out, x, 503, "cluster_unavailable", UNSETTLED, None);
            }
        }
        self.order_body(route, qty, sale == Sale::Sold, remaining, false, x, out)
    }

    /// Writes an order's 200 answer (`sold`, or insufficient stock) without counting it; a
    /// `replayed` keyed answer (not a sale) says so in `Idempotent-Replayed: true`, as Stripe's
    /// API does; its status and body are the first answer's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn order_body(
        &self,
        route: Route,
        qty: u64,
        sold: bool,
        remaining: u64,
        replayed: bool,
        x: Exchange<'_>,
        out: &mut Vec<u8>,
    ) -> Reply {
        let replayed_header: &[(&[u8], &[u8])] = &[(b"Idempotent-Replayed", b"true")];
        let extra = if replayed { replayed_header } else { &[] };
        json_with(out, x, 200, extra, |o| {
            o.extend_from_slice(if sold {
                b"{\"success\":true,\"remaining\":"
            } else {
                b"{\"success\":false,\"remaining\":"
            });
            decimal(o, remaining);
            match (sold, route) {
                (true, Route::Reserve) => {
                    o.extend_from_slice(b",\"message\":\"Reserved ");
                    decimal(o, qty);
                    o.extend_from_slice(b" tickets\"}");
                }
                (true, _) => o.extend_from_slice(b",\"message\":\"Purchase successful!\"}"),
                (false, _) => o.extend_from_slice(b",\"message\":\"Insufficient inventory\"}"),
            }
        })
    }

    pub(super) fn body_error(&mut self, e: BodyError, x: Exchange<'_>, out: &mut Vec<u8>) -> Reply {
        self.counters.body_errors += 1;
        error(out, x, e.status(), e.code(), e.detail(), None)
    }
}

/// The documents of what `mode` serves, for [`App::docs`]: built once at start-up, and kept for
/// the process's life (they never change; every shard reads them).
pub fn docs(mode: Mode, max_order_qty: u64) -> &'static Docs {
    Docs::leak(max_order_qty, |path, method| {
        Route::find(path.as_bytes(), mode).is_some_and(|route| route.allows(method).0)
    })
}

/// `{"qty":N}`.
pub(super) fn available(x: Exchange<'_>, out: &mut Vec<u8>, qty: u64) -> Reply {
    json(out, x, 200, |o| {
        o.extend_from_slice(b"{\"qty\":");
        decimal(o, qty);
        o.push(b'}');
    })
}

/// Appends `204 No Content` with `Allow`: the answer to `OPTIONS`. A CORS preflight (an
/// `OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed origin also gets
/// the methods and request headers it may use, and how long it may cache that.
fn options(req: &RequestHead<'_, '_>, x: Exchange<'_>, allow: &[u8], out: &mut Vec<u8>) -> Reply {
    let (grant, grant_count) = x.cors.headers();
    let mut headers: [(&[u8], &[u8]); 7] = [(b"", b""); 7];
    headers[0] = (b"Allow", allow);
    headers[1..1 + grant_count].copy_from_slice(&grant[..grant_count]);
    let mut count = 1 + grant_count;
    count += push_request_id(&mut headers[count..], x.request_id);
    if x.cors.allows() && req.header(b"access-control-request-method").is_some() {
        let requested = req.header(b"access-control-request-headers");
        headers[count..count + 3].copy_from_slice(&[
            (b"Access-Control-Allow-Methods", allow),
            (
                b"Access-Control-Allow-Headers",
                cors::allow_headers(requested),
            ),
            (b"Access-Control-Max-Age", cors::PREFLIGHT_MAX_AGE_SECONDS),
        ]);
        count += 3;
    }
    let response = Response {
        status: 204,
        version: x.version,
        keep_alive: x.keep_alive,
        date: x.date,
        content_type: None,
        extra_headers: &headers[..count],
    };
    write_no_content(out, &response);
    Reply::Done(204)
}

/// Appends a JSON response whose body `write_body` writes in place.
pub(super) fn json(
    out: &mut Vec<u8>,
    x: Exchange<'_>,
    status: u16,
    write_body: impl FnOnce(&mut Vec<u8>),
) -> Reply {
    json_with(out, x, status, &[], write_body)
}

/// The most extra header lines a JSON reply carries besides the common ones (`Allow`,
/// `Retry-After` or `Idempotent-Replayed`).
const EXTRA_HEADERS_MAX: usize = 1;

/// Header lines a reply carries besides the extra ones: CORS (2) and `X-Request-Id` (1).
pub(super) const COMMON_HEADERS_MAX: usize = 3;

/// Writes `X-Request-Id: id` into `slot[0]` unless `id` is empty; returns the lines written.
pub(super) fn push_request_id<'a>(slot: &mut [(&'a [u8], &'a [u8])], id: &'a XRequestId) -> usize {
    if id.as_bytes().is_empty() {
        return 0;
    }
    slot[0] = (request_id::HEADER, id.as_bytes());
    1
}

/// [`json`] with extra header lines (at most [`EXTRA_HEADERS_MAX`]), the CORS ones and
/// `X-Request-Id`.
fn json_with(
    out: &mut Vec<u8>,
    x: Exchange<'_>,
    status: u16,
    extra_headers: &[(&[u8], &[u8])],
    write_body: impl FnOnce(&mut Vec<u8>),
) -> Reply {
    assert!(extra_headers.len() <= EXTRA_HEADERS_MAX);
    let (grant, grant_count) = x.cors.headers();
    let mut headers: [(&[u8], &[u8]); EXTRA_HEADERS_MAX + COMMON_HEADERS_MAX] =
        [(b"", b""); EXTRA_HEADERS_MAX + COMMON_HEADERS_MAX];
    let extra_count = extra_headers.len();
    headers[..extra_count].copy_from_slice(extra_headers);
    headers[extra_count..extra_count + grant_count].copy_from_slice(&grant[..grant_count]);
    let count = extra_count
        + grant_count
        + push_request_id(&mut headers[extra_count + grant_count..], x.request_id);
    let response = Response {
        status,
        version: x.version,
        keep_alive: x.keep_alive,
        date: x.date,
        content_type: Some(JSON),
        extra_headers: &headers[..count],
    };
    let start = out.len();
    write_response_with(out, &response, write_body);
    if x.head {
        // The head keeps the `Content-Length` a GET would have; the content goes.
        if let Some(end) = out[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            out.truncate(start + end + 4);
        }
    }
    Reply::Done(status)
}

/// Appends the contract's JSON error `{"error","detail","code"}`: `error` is the status's reason
/// phrase, `detail` a sentence, `code` a stable snake_case name to match on.
pub fn error(
    out: &mut Vec<u8>,
    x: Exchange<'_>,
    status: u16,
    code: &str,
    detail: &str,
    allow: Option<&[u8]>,
) -> Reply {
    let allow_header = [(&b"Allow"[..], allow.unwrap_or_default())];
    let extra: &[(&[u8], &[u8])] = if allow.is_some() { &allow_header } else { &[] };
    error_with(out, x, status, code, detail, extra)
}

/// [`error`] with extra header lines (`Allow`, `Retry-After`).
fn error_with(
    out: &mut Vec<u8>,
    x: Exchange<'_>,
    status: u16,
    code: &str,
    detail: &str,
    extra: &[(&[u8], &[u8])],
) -> Reply {
    json_with(out, x, status, extra, |o| {
        o.extend_from_slice(b"{\"error\":\"");
        o.extend_from_slice(proto_http::reason_phrase(status).as_bytes());
        o.extend_from_slice(b"\",\"detail\":\"");
        json_escaped(o, detail);
        o.extend_from_slice(b"\",\"code\":\"");
        o.extend_from_slice(code.as_bytes());
        o.extend_from_slice(b"\"}");
    })
}

/// Appends `text` as the inside of a JSON string (RFC 8259 §7): quotes, backslashes and control
/// characters escaped.
fn json_escaped(out: &mut Vec<u8>, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
}

fn decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let table: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("the \"qty\" field", "the \\\"qty\\\" field"),
            ("back\\slash", "back\\\\slash"),
            ("line\nbreak\u{1}", "line\\u000abreak\\u0001"),
        ];
        for &(input, want) in table {
            let mut out = Vec::new();
            json_escaped(&mut out, input);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn routes_by_mode() {
        assert_eq!(
            Route::find(b"/api/v1/purchase", Mode::Monolith),
            Some(Route::Purchase)
        );
        assert_eq!(Route::find(b"/api/v1/purchase", Mode::Vacancy), None);
        assert_eq!(Route::find(b"/api/v1/reserve", Mode::Ticket), None);
        assert_eq!(Route::find(b"/health", Mode::Ticket), Some(Route::Health));
        assert_eq!(Route::find(b"/api/v1/nope", Mode::Monolith), None);
    }
}

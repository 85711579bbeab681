//! Once warm, answering requests allocates nothing: the connection state machine, the parser, the
//! routes, the stock and the response writer run on buffers that were sized by earlier requests.
//! A counting global allocator (counting only this test's thread) proves it for the hot routes,
//! a pipelined batch, and a request split across two inputs, with the `--latency-dump` recording
//! of each input's service time; and through the shard's core with its journal (the append of
//! every sale, the held response), as the transports run it. Not covered here: the transports'
//! send paths (the uring driver's output buffers come from a per-shard pool; see net/uring).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proto_http::{HttpDate, Limits};
use ticketd::app::cors::Cors;
use ticketd::app::latency::Recorder;
use ticketd::app::routes::App;
use ticketd::config::{CorsOrigins, Mode};
use ticketd::net::connection::{ConnLimits, Connection, Next};
use ticketd::stock::rebalance::{Node, Outbox};

thread_local! {
    /// Allocations made by this thread while counting.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call forwards to the system allocator unchanged; counting has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// The hot routes (available, purchase, reserve, health, HEAD, 404, 405, a rejected qty), sixteen
/// pipelined requests in one input, a request split over two inputs, and CORS with a list of
/// origins (a preflight, a purchase from a listed origin, one from another origin), a client's
/// `X-Request-Id` kept and an unusable one replaced: after a
/// warm-up round, a thousand more rounds allocate nothing.
#[test]
fn warm_requests_allocate_nothing() {
    let mut app = App {
        mode: Mode::Monolith,
        shard: 0,
        shards: 1,
        node: Node::new(0, 1, 1_000_000_000),
        outbox: Outbox::default(),
        max_order_qty: 1_000_000_000,
        counters: Default::default(),
        forwarding: None,
        halted: false,
        docs: ticketd::app::routes::docs(Mode::Monolith, 1_000_000_000),
        cors: Cors::leak(&CorsOrigins::List(vec![
            "http://a.example".into(),
            "http://b.example".into(),
        ])),
        board: ticketd::app::board::Board::leak(1),
        scraped: Vec::new(),
        request_ids: ticketd::request_id::Generator::new(0),
        rate_limit: None,
        keys: ticketd::app::idempotency::Keys::new(ticketd::app::idempotency::Settings::DEFAULT),
    };
    let limits = ConnLimits {
        http: Limits::default(),
        headers_max: 32,
    };
    let date = HttpDate::now();
    let mut conn = Connection::default();
    let mut out = Vec::new();
    let pipelined = b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n".repeat(16);
    let inputs: Vec<&[u8]> = vec![
        b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"qty\":1}",
        b"POST /api/v1/reserve HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":2}",
        b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n",
        b"HEAD /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /api/v1/purchase HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":0}",
        &pipelined,
        b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Len",
        b"gth: 9\r\n\r\n{\"qty\":1}",
        b"OPTIONS /api/v1/purchase HTTP/1.1\r\nHost: t\r\nOrigin: http://b.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n",
        b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nOrigin: http://b.example\r\nContent-Length: 9\r\n\r\n{\"qty\":1}",
        b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nOrigin: http://c.example\r\nContent-Length: 9\r\n\r\n{\"qty\":1}",
        b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nX-Request-Id: 0f8e2c1a-client-id\r\nContent-Length: 9\r\n\r\n{\"qty\":1}",
        b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\nX-Request-Id: has space\r\n\r\n",
    ];
    let mut latency = Recorder::default();
    let mut round = |out: &mut Vec<u8>| {
        for input in &inputs {
            let received = std::time::Instant::now();
            let next = conn.on_input(input, &mut app, &limits, &date, false, out);
            assert_eq!(next, Next::Read);
            latency.record_since(received);
            // The shard's journal step drains the slice's changes after every input.
            app.outbox.changes.clear();
            out.clear();
        }
    };
    // The counter sees this thread's allocations (so a zero below means something).
    let probe = allocations();
    drop(std::hint::black_box(vec![0u8; 64]));
    assert_eq!(allocations(), probe + 1, "the counting allocator counts");
    for _ in 0..3 {
        round(&mut out);
    }
    let before = allocations();
    for _ in 0..1000 {
        round(&mut out);
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations on the warm request path"
    );
    assert!(conn.is_idle());
    assert_eq!(latency.len(), 1003 * inputs.len() as u64);
}

/// The same through the shard's core with its journal, as the transports run it: each input's
/// changes are appended to the journal's tail and its response is held for the group commit.
/// Only the core's `input` is counted (the request path); the group commit between rounds (take
/// a batch, write it, mark it done, release the held output) is the commit path, once per group.
#[test]
fn warm_requests_through_the_core_and_its_journal_allocate_nothing() {
    use futures_lite::future::block_on;
    use ticketd::durability::journal::{self, MemDisk, Store, Writer};
    use ticketd::shard::core::{CoreConfig, ShardCore};

    let store = Store::Mem(MemDisk::new());
    let (mut writer, tail) = block_on(async {
        let recovered = journal::open(&store, 1, 1_000_000_000).await.expect("open");
        Writer::open(&store, recovered.shards[0].clone(), u64::MAX)
            .await
            .expect("writer")
    });
    let mut core = ShardCore::new(
        CoreConfig {
            mode: Mode::Monolith,
            shard: 0,
            shards: 1,
            stock: 1_000_000_000,
            max_order_qty: 1_000_000_000,
            forward_cache_ttl: None,
            limits: ConnLimits {
                http: Limits::default(),
                headers_max: 32,
            },
            cors: Cors::leak(&CorsOrigins::Any),
            board: ticketd::app::board::Board::leak(1),
            docs: ticketd::app::routes::docs(Mode::Monolith, 1_000_000_000),
            rate_limit: ticketd::app::rate_limit::Settings::OFF,
            idempotency: ticketd::app::idempotency::Settings::DEFAULT,
            cluster: None,
        },
        Some(tail),
    );
    let purchase: &[u8] =
        b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":1}";
    let pipelined = purchase.repeat(16);
    let inputs: Vec<&[u8]> = vec![
        purchase,
        b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n",
        &pipelined,
        b"POST /api/v1/reserve HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":2}",
    ];
    let mut conns: Vec<Connection> = (0..inputs.len()).map(|_| Connection::default()).collect();
    let mut out = Vec::new();
    let mut counted = 0;
    let mut round = |core: &mut ShardCore, counted: &mut usize| {
        for (key, input) in inputs.iter().enumerate() {
            let now = std::time::Instant::now();
            let before = allocations();
            let step = core.input(key as u64, &mut conns[key], input, &mut out, now);
            *counted += allocations() - before;
            assert_eq!(step.next, Next::Read);
            out.clear();
        }
        // The group commit: not the request path.
        while let Some(batch) = core.next_batch(std::time::Instant::now(), true) {
            block_on(writer.write(&batch)).expect("write");
            core.write_done(&batch, std::time::Instant::now());
        }
        while let Some((key, _)) = core.next_conn_event() {
            core.release(key);
        }
    };
    for _ in 0..3 {
        round(&mut core, &mut 0);
    }
    for _ in 0..1000 {
        round(&mut core, &mut counted);
    }
    assert_eq!(
        counted, 0,
        "allocations on the warm request path, journal append included"
    );
    assert_eq!(core.app.node.slice().sold(), 1003 * 19);
}

/// The rate limit on (1 purchase a second, burst 1): purchases from two client addresses, one
/// sold and the rest refused with 429, and a GET that does not count. Once both addresses are
/// in the table, a thousand more rounds allocate nothing: only a new address may allocate.
#[test]
fn rate_limited_requests_from_known_addresses_allocate_nothing() {
    use ticketd::app::rate_limit::{RateLimit, Settings};

    let mut app = App {
        mode: Mode::Monolith,
        shard: 0,
        shards: 1,
        node: Node::new(0, 1, 1_000_000_000),
        outbox: Outbox::default(),
        max_order_qty: 1_000_000_000,
        counters: Default::default(),
        forwarding: None,
        halted: false,
        docs: ticketd::app::routes::docs(Mode::Monolith, 1_000_000_000),
        cors: Cors::off(),
        board: ticketd::app::board::Board::leak(1),
        scraped: Vec::new(),
        request_ids: ticketd::request_id::Generator::new(0),
        rate_limit: RateLimit::new(Settings {
            per_second: 1.0,
            burst: 1,
            all_routes: false,
        }),
        keys: ticketd::app::idempotency::Keys::new(ticketd::app::idempotency::Settings::DEFAULT),
    };
    let limits = ConnLimits {
        http: Limits::default(),
        headers_max: 32,
    };
    let date = HttpDate::now();
    let peers = [[192, 0, 2, 1], [192, 0, 2, 2]];
    let mut conns: Vec<Connection> = peers
        .iter()
        .map(|&ip| Connection::new(Some(std::net::IpAddr::from(ip))))
        .collect();
    let input: &[u8] =
        b"POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"qty\":1}\
        GET /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut out = Vec::new();
    let mut round = |app: &mut App, out: &mut Vec<u8>| {
        for conn in &mut conns {
            let next = conn.on_input(input, app, &limits, &date, false, out);
            assert_eq!(next, Next::Read);
            app.outbox.changes.clear();
            out.clear();
        }
    };
    for _ in 0..3 {
        round(&mut app, &mut out);
    }
    let before = allocations();
    for _ in 0..1000 {
        round(&mut app, &mut out);
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations with the rate limit on"
    );
    assert!(
        app.counters.rate_limited >= 2000,
        "{}",
        app.counters.rate_limited
    );
    assert_eq!(app.rate_limit.as_ref().unwrap().tracked(), 2);
}

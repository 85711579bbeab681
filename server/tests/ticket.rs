//! Microservices mode: a real `--mode vacancy` process owning the stock and a real `--mode
//! ticket` process forwarding to it over pooled keep-alive HTTP/1.1, talked to over TCP.
//! Failures of the vacancy service (dead, silent, late, malformed) are played by the real
//! vacancy process being killed, or by small fake servers in this file.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{available, get, post, read_reply, Server};

/// Freshness of `/available` on both tiers in these tests, so it is exact soon after writes stop.
const CACHE_TTL: &str = "0.05";

/// The forwarder gives up on a request this long before `VACANCY_TIMEOUT` (its `EXPIRY_SLACK`),
/// so that the 503 leaves within the timeout; never earlier.
const EXPIRY_SLACK: Duration = Duration::from_millis(20);

/// Long enough for every vacancy shard's report to reach the others, and the ticket tier's
/// cached copy to expire.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

fn vacancy(shards: usize, stock: u64) -> Server {
    Server::start(&[
        "--mode",
        "vacancy",
        "--shards",
        &shards.to_string(),
        "--initial-stock",
        &stock.to_string(),
        "--cache-ttl-seconds",
        CACHE_TTL,
    ])
}

fn ticket(vacancy_port: u16, shards: usize, timeout: &str, extra: &[&str]) -> Server {
    let url = format!("http://127.0.0.1:{vacancy_port}");
    let shards = shards.to_string();
    let mut args = vec![
        "--mode",
        "ticket",
        "--shards",
        &shards,
        "--vacancy-url",
        &url,
        "--vacancy-timeout",
        timeout,
        "--cache-ttl-seconds",
        CACHE_TTL,
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn purchase_request(qty: u64) -> String {
    let body = format!("{{\"qty\":{qty}}}");
    format!(
        "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Every endpoint of the contract, answered through the ticket tier: purchases sell from the
/// vacancy service's stock, bad input is refused by the ticket tier and never reaches the stock,
/// routes the mode does not serve are 404/405 with the JSON error, pipelined purchases are
/// answered in order on one keep-alive connection.
#[test]
fn the_whole_contract_through_the_ticket_tier() {
    let vacancy = vacancy(2, 100);
    let ticket = ticket(vacancy.port(), 2, "2", &[]);

    let sold = post(&ticket, "/api/v1/purchase", "{\"qty\":3}");
    assert_eq!(sold.status, 200, "{}", sold.body);
    assert_eq!(sold.header("content-type"), Some("application/json"));
    assert_eq!(sold.json("success").as_deref(), Some("true"));
    assert_eq!(sold.json("remaining").as_deref(), Some("97"));
    assert_eq!(
        sold.json("message").as_deref(),
        Some("\"Purchase successful!\"")
    );
    let refused = post(&ticket, "/api/v1/purchase", "{\"qty\":1000}");
    assert_eq!(refused.status, 200);
    assert_eq!(refused.json("success").as_deref(), Some("false"));
    assert_eq!(
        refused.json("message").as_deref(),
        Some("\"Insufficient inventory\"")
    );

    // Bad input: refused here with the contract's statuses, nothing forwarded, nothing taken.
    for (body, status) in [
        ("{\"qty\":0}", 422),
        ("{\"qty\":-1}", 422),
        ("{\"qty\":1.5}", 422),
        ("{\"qty\":\"2\"}", 422),
        ("{}", 422),
        ("[1]", 422),
        ("nope", 400),
        ("{\"qty\":1} x", 400),
    ] {
        let reply = post(&ticket, "/api/v1/purchase", body);
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        assert!(reply.json("code").is_some(), "{}", reply.body);
    }
    settle();
    assert_eq!(available(&vacancy), 97);
    assert_eq!(available(&ticket), 97);

    // Routes by mode.
    let reserve = post(&ticket, "/api/v1/reserve", "{\"qty\":1}");
    assert_eq!(reserve.status, 404);
    assert!(reserve.json("code").is_some());
    let wrong = get(&ticket, "/api/v1/purchase");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("POST, OPTIONS"));
    let on_vacancy = post(&vacancy, "/api/v1/purchase", "{\"qty\":1}");
    assert_eq!(on_vacancy.status, 404);
    for path in ["/health", "/api/v1/health"] {
        let health = get(&vacancy, path);
        assert_eq!(health.status, 200);
        assert_eq!(health.json("mode").as_deref(), Some("\"vacancy\""));
    }
    assert_eq!(get(&vacancy, "/ready").status, 200);
    assert_eq!(
        get(&vacancy, "/").json("mode").as_deref(),
        Some("\"vacancy\"")
    );
    let reserved = post(&vacancy, "/api/v1/reserve", "{\"qty\":2}");
    assert_eq!(
        reserved.json("message").as_deref(),
        Some("\"Reserved 2 tickets\"")
    );
    for path in ["/health", "/api/v1/health"] {
        let health = get(&ticket, path);
        assert_eq!(health.status, 200);
        assert_eq!(health.json("mode").as_deref(), Some("\"ticket\""));
    }
    for path in ["/ready", "/api/v1/ready"] {
        let ready = get(&ticket, path);
        assert_eq!(ready.status, 200, "{}", ready.body);
        assert_eq!(ready.json("status").as_deref(), Some("\"ready\""));
    }
    assert_eq!(
        get(&ticket, "/").json("mode").as_deref(),
        Some("\"ticket\"")
    );
    // HEAD of a forwarded GET: the head of the GET's response, without its body.
    settle();
    let mut stream = ticket.connect();
    stream
        .write_all(b"HEAD /api/v1/available HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("Content-Length: 10\r\n"), "{raw}"); // {"qty":97}
    assert!(raw.ends_with("\r\n\r\n"), "{raw}");

    // Five pipelined purchases in one write, answered in order on one connection.
    let mut stream = ticket.connect();
    let batch: String = (0..5).map(|_| purchase_request(1)).collect();
    stream.write_all(batch.as_bytes()).unwrap();
    let mut carry = Vec::new();
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let reply = read_reply(&mut stream, &mut carry);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json("success").as_deref(), Some("true"));
        remaining.push(reply.json("remaining").unwrap().parse::<u64>().unwrap());
    }
    // Each answer's `remaining` is the view of the vacancy shard that owns the reserve's key
    // (the ticket tier gives every forwarded reserve one, and keys spread over the shards): its
    // own slice exactly, its peers' as last reported, which the contract lets lag (freshness).
    // So the five are not strictly decreasing across shards, but each counts at least its own
    // sale and never one that was not made: between 100-3-2-5 and 100-3-2-1.
    assert!(
        remaining.iter().all(|r| (90..=94).contains(r)),
        "{remaining:?}"
    );
    settle();
    assert_eq!(available(&vacancy), 100 - 3 - 2 - 5);
    assert_eq!(available(&ticket), 100 - 3 - 2 - 5);
}

/// With 2 ticket shards and 2 vacancy shards, 16 clients buying one ticket at a time far past
/// the stock get exactly the stock in successes, and both tiers end at 0: nothing oversold,
/// nothing lost, no sold-out while tickets remain (every refusal was answered after the last
/// success had been sent: nothing restocks, so a refusal answered earlier was answered while that
/// success's ticket existed).
#[test]
fn every_ticket_sells_exactly_once_through_two_tiers() {
    const STOCK: u64 = 500;
    let vacancy = vacancy(2, STOCK);
    let ticket = ticket(vacancy.port(), 2, "5", &[]);
    // (success, sent just before the request was written, answered just after the reply was read)
    let orders: Vec<(bool, Instant, Instant)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    let mut stream = ticket.connect();
                    let mut carry = Vec::new();
                    let mut mine = Vec::new();
                    for _ in 0..40 {
                        let sent = Instant::now();
                        stream.write_all(purchase_request(1).as_bytes()).unwrap();
                        let reply = read_reply(&mut stream, &mut carry);
                        let answered = Instant::now();
                        assert_eq!(reply.status, 200, "{}", reply.body);
                        mine.push((
                            reply.json("success").as_deref() == Some("true"),
                            sent,
                            answered,
                        ));
                    }
                    mine
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    let granted = orders.iter().filter(|o| o.0).count() as u64;
    assert_eq!(granted, STOCK);
    assert_eq!(orders.len() as u64, 16 * 40);
    let last_success_sent = orders.iter().filter(|o| o.0).map(|o| o.1).max().unwrap();
    let first_refusal_answered = orders.iter().filter(|o| !o.0).map(|o| o.2).min().unwrap();
    assert!(
        first_refusal_answered >= last_success_sent,
        "a purchase was answered \"sold out\" {:?} before a later one that sold was sent",
        last_success_sent - first_refusal_answered
    );
    settle();
    assert_eq!(available(&vacancy), 0);
    assert_eq!(available(&ticket), 0);
}

/// The pool is bounded per ticket shard: with `--http-max-connections 2` and one ticket shard,
/// 32 concurrent clients reach the vacancy service over at most 2 connections (counted by a
/// proxy in front of it, which sees every connection the pool opens), pipelined: some connection
/// carries several requests at once, never more than the pipelining depth of 16.
#[test]
fn the_pool_is_bounded_by_http_max_connections() {
    let vacancy = vacancy(1, 100_000);
    let proxy = Proxy::start(vacancy.addr, Duration::ZERO);
    let ticket = ticket(
        proxy.addr.port(),
        1,
        "5",
        &[
            "--http-max-connections",
            "2",
            "--http-keepalive-connections",
            "1",
        ],
    );
    std::thread::scope(|scope| {
        for _ in 0..32 {
            scope.spawn(|| {
                let mut stream = ticket.connect();
                let mut carry = Vec::new();
                for _ in 0..50 {
                    stream.write_all(purchase_request(1).as_bytes()).unwrap();
                    let reply = read_reply(&mut stream, &mut carry);
                    assert_eq!(reply.json("success").as_deref(), Some("true"));
                }
            });
        }
    });
    let opened = proxy.connections.load(Ordering::Relaxed);
    assert!((1..=2).contains(&opened), "{opened} pooled connections");
    assert_eq!(proxy.passed.load(Ordering::Relaxed), 32 * 50);
    let deepest = proxy.deepest.load(Ordering::Relaxed);
    assert!(
        (2..=16).contains(&deepest),
        "at most {deepest} requests in flight on one connection"
    );
    settle();
    assert_eq!(available(&vacancy), 100_000 - 32 * 50);
}

fn counter(body: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let start = body.find(&key).unwrap() + key.len();
    body[start..]
        .split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Killing the vacancy service: purchases answer 503 with the JSON error within the timeout,
/// `/ready` answers 503; restarting it on the same port is picked up by the same ticket process.
#[test]
fn a_dead_vacancy_gives_503_and_a_restarted_one_is_picked_up() {
    let mut vacancy = vacancy(2, 100);
    let port = vacancy.port();
    let timeout = Duration::from_secs(1);
    let ticket = ticket(port, 2, "1", &[]);
    let ticket_pid = ticket.pid();
    assert_eq!(post(&ticket, "/api/v1/purchase", "{\"qty\":1}").status, 200);

    vacancy.crash();
    for _ in 0..4 {
        let started = Instant::now();
        let reply = post(&ticket, "/api/v1/purchase", "{\"qty\":1}");
        assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
        assert_eq!(reply.status, 503, "{}", reply.body);
        let code = reply.json("code").unwrap();
        assert!(
            code == "\"vacancy_unavailable\"" || code == "\"vacancy_outcome_unknown\"",
            "{}",
            reply.body
        );
        let started = Instant::now();
        let ready = get(&ticket, "/ready");
        assert!(started.elapsed() < timeout);
        assert_eq!(ready.status, 503, "{}", ready.body);
        assert_eq!(ready.json("code").as_deref(), Some("\"not_ready\""));
    }

    let vacancy = Server::start_at(
        port,
        &[
            "--mode",
            "vacancy",
            "--shards",
            "2",
            "--initial-stock",
            "100",
        ],
    );
    assert_eq!(get(&ticket, "/ready").status, 200);
    let sold = post(&ticket, "/api/v1/purchase", "{\"qty\":2}");
    assert_eq!(sold.status, 200, "{}", sold.body);
    assert_eq!(sold.json("success").as_deref(), Some("true"));
    assert_eq!(ticket.pid(), ticket_pid);
    drop(vacancy);
}

/// How a fake vacancy service misbehaves.
#[derive(Clone, Copy, Debug)]
enum Fake {
    /// Accepts and reads, never answers.
    Silent,
    /// Closes each connection as soon as a request arrives.
    Hangs,
    /// Answers a 200 whose body is not a reserve's.
    Garbage,
    /// Answers bytes that are not HTTP.
    NotHttp,
    /// Answers 500.
    Error,
    /// Answers this status with the vacancy service's JSON error body (see [`status_answer`]),
    /// keep-alive.
    Status(u16),
}

/// A fake vacancy service on a free port, playing `fake` on every connection until dropped.
struct FakeVacancy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FakeVacancy {
    fn start(fake: Fake) -> FakeVacancy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let stopped = stopped.clone();
                        std::thread::spawn(move || play(fake, stream, &stopped));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeVacancy { addr, stop }
    }
}

impl Drop for FakeVacancy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn play(fake: Fake, mut stream: TcpStream, stop: &AtomicBool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => continue,
        }
        let answer: Vec<u8> = match fake {
            Fake::Silent => continue,
            Fake::Hangs => return,
            Fake::Garbage => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            Fake::NotHttp => b"SSH-2.0-OpenSSH_9.2\r\n".to_vec(),
            Fake::Error => {
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}".to_vec()
            }
            Fake::Status(status) => status_answer(status),
        };
        if stream.write_all(&answer).is_err() {
            return;
        }
    }
}

/// `status` with the JSON error body the vacancy service writes, keep-alive: 503 is its answer
/// when its journal failed while the reserve waited (the reserve may or may not have been made).
fn status_answer(status: u16) -> Vec<u8> {
    let (reason, code) = match status {
        503 => ("Service Unavailable", "journal_failed"),
        500 => ("Internal Server Error", "internal_error"),
        502 => ("Bad Gateway", "bad_gateway"),
        422 => ("Unprocessable Content", "qty_out_of_range"),
        404 => ("Not Found", "not_found"),
        _ => unreachable!("no answer written for {status}"),
    };
    let body = format!(
        "{{\"error\":\"{reason}\",\"detail\":\"the vacancy service says {status}\",\"code\":\"{code}\"}}"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A 5xx answer to a forwarded reserve is an unknown outcome, not a refusal: the vacancy
/// service's 503 `journal_failed` says the reserve may or may not have been made, and a 500 or a
/// proxy's 502 says no more. So the purchase answers 503 `vacancy_outcome_unknown` and counts in
/// `forward_outcome_unknown`, never "nothing was sold". A 4xx is the vacancy service refusing the
/// request, which sold nothing: `vacancy_unavailable`, not counted as unknown.
#[test]
fn a_vacancy_5xx_is_an_unknown_outcome_and_a_4xx_a_refusal() {
    for (status, code, unknown) in [
        (503, "vacancy_outcome_unknown", 1),
        (500, "vacancy_outcome_unknown", 1),
        (502, "vacancy_outcome_unknown", 1),
        (422, "vacancy_unavailable", 0),
        (404, "vacancy_unavailable", 0),
    ] {
        let vacancy = FakeVacancy::start(Fake::Status(status));
        let ticket = ticket(vacancy.addr.port(), 1, "2", &[]);
        let reply = post(&ticket, "/api/v1/purchase", "{\"qty\":1}");
        assert_eq!(reply.status, 503, "{status}: {}", reply.body);
        assert_eq!(
            reply.json("code").as_deref(),
            Some(format!("\"{code}\"").as_str()),
            "{status}: {}",
            reply.body
        );
        let root = get(&ticket, "/");
        assert_eq!(counter(&root.body, "forward_failed"), 1, "{}", root.body);
        assert_eq!(
            counter(&root.body, "forward_outcome_unknown"),
            unknown,
            "{status}: {}",
            root.body
        );
    }
}

/// A vacancy service that accepts but never answers, closes, answers garbage or an error: every
/// purchase answers 503 with the JSON error, a silent one at the timeout and not before (at the
/// forwarder's deadline, `EXPIRY_SLACK` before the timeout), the others at once; `/ready` says
/// 503 too.
#[test]
fn a_misbehaving_vacancy_gives_503_within_the_timeout() {
    let timeout = Duration::from_millis(400);
    for fake in [
        Fake::Silent,
        Fake::Hangs,
        Fake::Garbage,
        Fake::NotHttp,
        Fake::Error,
    ] {
        let vacancy = FakeVacancy::start(fake);
        let ticket = ticket(vacancy.addr.port(), 1, "0.4", &[]);
        for _ in 0..2 {
            let started = Instant::now();
            let reply = post(&ticket, "/api/v1/purchase", "{\"qty\":1}");
            let took = started.elapsed();
            assert_eq!(reply.status, 503, "{fake:?}: {}", reply.body);
            assert!(reply.json("code").is_some(), "{}", reply.body);
            assert!(took < timeout, "{fake:?}: answered after {took:?}");
            if matches!(fake, Fake::Silent) {
                assert!(
                    took >= timeout - EXPIRY_SLACK,
                    "{fake:?}: answered after {took:?}, before the deadline"
                );
                assert_eq!(
                    reply.json("code").as_deref(),
                    Some("\"vacancy_outcome_unknown\"")
                );
            }
            let ready = get(&ticket, "/ready");
            assert_eq!(ready.status, 503, "{fake:?}: {}", ready.body);
        }
        let root = get(&ticket, "/");
        assert!(counter(&root.body, "forward_failed") >= 1, "{}", root.body);
    }
}

/// Counts the occurrences of `needle` in a byte stream read in pieces (an occurrence may straddle
/// two reads).
struct Tally {
    needle: &'static [u8],
    tail: Vec<u8>,
}

impl Tally {
    fn new(needle: &'static [u8]) -> Tally {
        Tally {
            needle,
            tail: Vec::new(),
        }
    }

    /// Occurrences that end in `chunk`.
    fn feed(&mut self, chunk: &[u8]) -> u64 {
        self.tail.extend_from_slice(chunk);
        let found = self
            .tail
            .windows(self.needle.len())
            .filter(|w| *w == self.needle)
            .count();
        let keep = self.tail.len().min(self.needle.len() - 1);
        self.tail.drain(..self.tail.len() - keep);
        found as u64
    }
}

/// A proxy in front of the real vacancy service that passes requests at once and holds answers
/// for `delay`, counting the connections it accepted, the requests it passed, and the most
/// requests one connection had in flight (passed, not yet answered).
struct Proxy {
    addr: SocketAddr,
    passed: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    deepest: Arc<AtomicU64>,
}

impl Proxy {
    fn start(upstream: SocketAddr, delay: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let passed = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let deepest = Arc::new(AtomicU64::new(0));
        let (counted, opened, most) = (passed.clone(), connections.clone(), deepest.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                opened.fetch_add(1, Ordering::Relaxed);
                let (counted, most) = (counted.clone(), most.clone());
                std::thread::spawn(move || {
                    let in_flight = Arc::new(AtomicU64::new(0));
                    let mut server = TcpStream::connect(upstream).unwrap();
                    let mut answers = server.try_clone().unwrap();
                    let mut back = client.try_clone().unwrap();
                    let answered = in_flight.clone();
                    std::thread::spawn(move || {
                        let mut responses = Tally::new(b"HTTP/1.1 ");
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = answers.read(&mut buf) {
                            if n == 0 {
                                return;
                            }
                            answered.fetch_sub(responses.feed(&buf[..n]), Ordering::Relaxed);
                            std::thread::sleep(delay);
                            if back.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                    let (mut posts, mut requests) =
                        (Tally::new(b"POST "), Tally::new(b" HTTP/1.1\r\n"));
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 {
                            return;
                        }
                        let text = &buf[..n];
                        counted.fetch_add(posts.feed(text), Ordering::Relaxed);
                        // Counted before they are passed on, so never after their answers.
                        let new = requests.feed(text);
                        let now = in_flight.fetch_add(new, Ordering::Relaxed) + new;
                        most.fetch_max(now, Ordering::Relaxed);
                        if server.write_all(text).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Proxy {
            addr,
            passed,
            connections,
            deepest,
        }
    }
}

/// A reserve that reached the vacancy service but whose answer came after the timeout is
/// answered 503 "outcome unknown" and never retried: the vacancy service saw each purchase once,
/// and its stock went down by exactly the purchases it saw.
#[test]
fn a_late_answer_is_never_retried_so_nothing_sells_twice() {
    let vacancy = vacancy(2, 100);
    let proxy = Proxy::start(vacancy.addr, Duration::from_millis(600));
    let ticket = ticket(proxy.addr.port(), 2, "0.3", &[]);
    for _ in 0..6 {
        let reply = post(&ticket, "/api/v1/purchase", "{\"qty\":2}");
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(
            reply.json("code").as_deref(),
            Some("\"vacancy_outcome_unknown\"")
        );
    }
    // Let the late answers arrive and be dropped.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(proxy.passed.load(Ordering::Relaxed), 6);
    settle();
    assert_eq!(available(&vacancy), 100 - 6 * 2);
}

/// A vacancy URL whose host does not resolve stops start-up with one line naming the option and
/// exit status 1; a vacancy service that is merely down does not (it may come up later): the
/// ticket tier starts and serves, answers purchases and `/ready` 503 while nothing listens at the
/// vacancy URL, and sells once a vacancy service starts there.
#[test]
fn an_unresolvable_vacancy_host_fails_the_start_and_a_down_one_does_not() {
    let (code, stderr) = support::run_failing(&[
        "--mode",
        "ticket",
        "--port",
        "0",
        "--vacancy-url",
        "http://no-such-host.invalid:8001",
    ]);
    assert_eq!(code, 1, "{stderr}");
    let line = stderr.lines().last().unwrap();
    assert!(
        line.starts_with("ticketd: --vacancy-url (VACANCY_URL)"),
        "{stderr}"
    );

    // Nothing listens on `port` (it was free a moment ago): the start succeeds all the same.
    let port = support::free_port();
    let ticket = ticket(port, 1, "1", &[]);
    let refused = post(&ticket, "/api/v1/purchase", "{\"qty\":1}");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(
        refused.json("code").as_deref(),
        Some("\"vacancy_unavailable\""),
        "{}",
        refused.body
    );
    assert_eq!(get(&ticket, "/ready").status, 503);
    let vacancy = Server::start_at(
        port,
        &[
            "--mode",
            "vacancy",
            "--shards",
            "1",
            "--initial-stock",
            "10",
        ],
    );
    assert_eq!(get(&ticket, "/ready").status, 200);
    let sold = post(&ticket, "/api/v1/purchase", "{\"qty\":2}");
    assert_eq!(
        sold.json("success").as_deref(),
        Some("true"),
        "{}",
        sold.body
    );
    assert_eq!(
        sold.json("remaining").as_deref(),
        Some("8"),
        "{}",
        sold.body
    );
    drop(vacancy);
}

/// Established TCP connections whose local port is `port` (IPv4, from `/proc/net/tcp`): the
/// vacancy service's side of the ticket tier's pooled connections.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().unwrap();
            u16::from_str_radix(local_port, 16) == Ok(port) && fields[3] == "01"
        })
        .count()
}

/// Beyond `HTTP_KEEPALIVE_CONNECTIONS`, idle pooled connections are closed: a burst that needs
/// several connections opens them (up to `HTTP_MAX_CONNECTIONS`), and once idle the pool goes
/// back to the keep-alive count.
#[test]
fn idle_connections_beyond_the_keepalive_count_are_closed() {
    let vacancy = vacancy(1, 100_000);
    let ticket = ticket(
        vacancy.port(),
        1,
        "5",
        &[
            "--http-max-connections",
            "4",
            "--http-keepalive-connections",
            "1",
        ],
    );
    // 32 clients at once: more than one connection's pipelining depth (16) is in flight, and
    // fewer than the pool's capacity (4 × 16), so nothing is refused. The pool's size is sampled
    // meanwhile.
    let (most, done) = (
        std::sync::atomic::AtomicUsize::new(0),
        AtomicBool::new(false),
    );
    let outcomes: Vec<std::thread::Result<()>> = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                most.fetch_max(established_to(vacancy.port()), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let clients: Vec<_> = (0..32)
            .map(|_| {
                scope.spawn(|| {
                    let mut stream = ticket.connect();
                    let mut carry = Vec::new();
                    for _ in 0..100 {
                        stream.write_all(purchase_request(1).as_bytes()).unwrap();
                        let reply = read_reply(&mut stream, &mut carry);
                        assert_eq!(reply.status, 200, "{}", reply.body);
                        assert_eq!(reply.json("success").as_deref(), Some("true"));
                    }
                })
            })
            .collect();
        let outcomes = clients.into_iter().map(|c| c.join()).collect();
        // Also when a client failed, so that the sampler ends and the failure is reported.
        done.store(true, Ordering::Relaxed);
        outcomes
    });
    for outcome in outcomes {
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
    let most = most.load(Ordering::Relaxed);
    assert!(
        (2..=4).contains(&most),
        "{most} pooled connections at the peak"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while established_to(vacancy.port()) != 1 {
        assert!(
            Instant::now() < deadline,
            "{} still open",
            established_to(vacancy.port())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! The admin listener over TCP (issue 17), against the real binary: the token (missing or wrong
//! → 401, the same answer either way), the public port's 404 for every admin path, a restock
//! while orders are refused as sold out (4 shards: the next order sells, every shard's
//! `/available` shows the new stock within the cache TTL, conservation holds, also after kill -9
//! and a restart), sales closed (409 `sales_closed`, `/available` still answers, still closed
//! after a restart) and opened again, and the journal's state.

mod support;

use std::cell::Cell;
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{admin_request, free_port, get, post, read_reply, run_failing, Reply, Server};

/// The token the tests' servers read from their token file.
const TOKEN: &str = "admin-test-token-0123456789abcdef";

/// `CACHE_TTL_SECONDS` of the tests' servers: `/available` may lag this much.
const CACHE_TTL: Duration = Duration::from_secs(1);

/// Slack on top of the TTL for a loaded test machine (reports go every half TTL).
const TTL_SLACK: Duration = Duration::from_millis(500);

/// A server's files, kept across restarts: its data directory and token file; and its admin
/// port, picked anew at each start (the public one is the support's).
struct Setup {
    dir: PathBuf,
    admin_port: Cell<u16>,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("ticketd-admin-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
        Setup {
            dir,
            admin_port: Cell::new(free_port()),
        }
    }

    fn args(&self, shards: &str, stock: &str) -> Vec<String> {
        let path = |p: &str| self.dir.join(p).to_str().unwrap().to_string();
        [
            "--shards",
            shards,
            "--initial-stock",
            stock,
            "--data-dir",
            &path("data"),
            "--admin-listen",
            &format!("127.0.0.1:{}", self.admin_port.get()),
            "--admin-token-file",
            &path("token"),
            "--cache-ttl-seconds",
            &CACHE_TTL.as_secs_f64().to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    fn start(&self, shards: &str, stock: &str) -> Server {
        self.admin_port.set(free_port());
        let args = self.args(shards, stock);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start(&args)
    }

    /// One request on the admin listener, with `token` as the bearer token (if any).
    fn admin(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
        admin_request(self.admin_port.get(), method, path, token, body)
    }

    /// Waits until `GET /admin/stock` says `(stock, sold, available)` is `want` (the other
    /// shards' numbers are published snapshots, at most 100 ms old), and that conservation holds:
    /// `sold + available == stock`.
    fn stock_settles(&self, want: (u64, u64, u64), context: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = self.admin("GET", "/admin/stock", Some(TOKEN), "");
            assert_eq!(r.status, 200, "{}", r.body);
            let field = |f: &str| r.json(f).unwrap().parse::<u64>().unwrap();
            let seen = (field("stock"), field("sold"), field("available"));
            if seen == want {
                assert_eq!(seen.1 + seen.2, seen.0, "{context}: conservation");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{context}: /admin/stock never said {want:?}: {}",
                r.body
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One purchase of `qty` on a new connection: `Some(true)` sold, `Some(false)` sold out, `None`
/// anything else (the status is in the reply).
fn buy(server: &Server, qty: u64) -> (Option<bool>, Reply) {
    let r = post(server, "/api/v1/purchase", &format!("{{\"qty\":{qty}}}"));
    let sold = match (r.status, r.json("success").as_deref()) {
        (200, Some("true")) => Some(true),
        (200, Some("false")) => Some(false),
        _ => None,
    };
    (sold, r)
}

/// Keep-alive connections to the public port, one on each of `shards` shards (the kernel spreads
/// connections over the shards' listeners; `GET /` names the shard).
fn one_per_shard(server: &Server, shards: usize) -> Vec<TcpStream> {
    let mut found: Vec<Option<TcpStream>> = (0..shards).map(|_| None).collect();
    for _ in 0..1000 {
        if found.iter().all(Option::is_some) {
            break;
        }
        let mut stream = server.connect();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let r = read_reply(&mut stream, &mut Vec::new());
        let shard: usize = r.json("shard").unwrap().parse().unwrap();
        found[shard].get_or_insert(stream);
    }
    found
        .into_iter()
        .map(|s| s.expect("a connection on every shard"))
        .collect()
}

/// `/available` on a keep-alive connection.
fn available_on(stream: &mut TcpStream) -> u64 {
    stream
        .write_all(b"GET /api/v1/available HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_reply(stream, &mut Vec::new());
    r.json("qty").unwrap().parse().unwrap()
}

#[test]
fn a_missing_or_wrong_token_gets_401_and_the_public_port_serves_no_admin_route() {
    let setup = Setup::new("token");
    let server = setup.start("2", "10");
    let missing = setup.admin("GET", "/admin/stock", None, "");
    assert_eq!(missing.status, 401, "{}", missing.body);
    for wrong in ["admin-test-token-0123456789abcdeF", "x", ""] {
        let r = setup.admin("GET", "/admin/stock", Some(wrong), "");
        assert_eq!(r.status, 401);
        assert_eq!(
            r.body, missing.body,
            "a wrong token is told no more than a missing one"
        );
    }
    let restock = setup.admin("POST", "/admin/restock", None, "{\"add\":5}");
    let shard0 = |server: &Server| loop {
        // `GET /`'s counters are the answering shard's: the admin listener's 401s are shard 0's.
        let root = get(server, "/");
        if root.json("shard").as_deref() == Some("0") {
            return root;
        }
    };
    assert_eq!(
        shard0(&server).json("admin_unauthorized").as_deref(),
        Some("5"),
        "every 401 counted"
    );
    assert_eq!(restock.status, 401, "nothing happens without the token");
    assert_eq!(
        setup
            .admin("POST", "/admin/sales/close", Some("nope"), "")
            .status,
        401
    );
    setup.stock_settles((10, 0, 10), "no restock, no close");
    assert_eq!(buy(&server, 1).0, Some(true), "sales still open");

    // The public port: no admin path, with or without the token.
    for (method, path) in [
        ("GET", "/admin/stock"),
        ("GET", "/admin/journal"),
        ("POST", "/admin/restock"),
        ("POST", "/admin/sales/close"),
        ("POST", "/admin/sales/open"),
    ] {
        let r = support::exchange(
            &server,
            format!(
                "{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Length: 9\r\nConnection: close\r\n\r\n{{\"add\":5}}"
            )
            .as_bytes(),
        );
        assert_eq!(
            r.status, 404,
            "{method} {path} on the public port: {}",
            r.body
        );
    }
    setup.stock_settles((10, 1, 9), "the public port changed nothing");

    // On the admin listener, with the token: unknown paths 404, wrong methods 405, bad bodies
    // a clear error that changes nothing.
    assert_eq!(
        setup
            .admin("GET", "/api/v1/available", Some(TOKEN), "")
            .status,
        404
    );
    let r = setup.admin("GET", "/admin/restock", Some(TOKEN), "");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    for body in [
        "{\"add\":0}",
        "{\"add\":-1}",
        "{\"add\":1.5}",
        "[3]",
        "{\"qty\":3}",
    ] {
        let r = setup.admin("POST", "/admin/restock", Some(TOKEN), body);
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.json("code").as_deref(), Some("\"invalid_add\""));
    }
    let r = setup.admin("POST", "/admin/restock", Some(TOKEN), "{\"add\":");
    assert_eq!(
        (r.status, r.json("code").as_deref()),
        (400, Some("\"not_json\""))
    );
    setup.stock_settles((10, 1, 9), "refused restocks changed nothing");
}

#[test]
fn an_admin_listener_needs_a_usable_token_file() {
    let (code, stderr) = run_failing(&["--admin-listen", "127.0.0.1:1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--admin-token-file"), "{stderr}");
    let setup = Setup::new("short-token");
    let short = setup.dir.join("short");
    std::fs::write(&short, "short\n").unwrap();
    let data = setup.dir.join("data");
    let (code, stderr) = run_failing(&[
        "--port",
        "0",
        "--data-dir",
        data.to_str().unwrap(),
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token-file",
        short.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("shorter than 16"), "{stderr}");
}

#[test]
fn a_restock_after_the_sell_out_sells_on_every_shard_and_survives_kill_9() {
    let setup = Setup::new("restock");
    let mut server = setup.start("4", "40");
    let mut sold = 0;
    while sold < 40 {
        match buy(&server, 1) {
            (Some(true), _) => sold += 1,
            (_, r) => panic!("ticket {sold} of 40 not sold: {} {}", r.status, r.body),
        }
    }
    // Sold out everywhere: orders on every shard are refused (locally, by the bound, once it
    // spread).
    for _ in 0..20 {
        assert_eq!(buy(&server, 1).0, Some(false));
    }
    let r = setup.admin("POST", "/admin/restock", Some(TOKEN), "{\"add\":12}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json("added").as_deref(), Some("12"));
    assert_eq!(r.json("epoch").as_deref(), Some("1"));
    // The very next order sells, whichever shard it lands on.
    assert_eq!(
        buy(&server, 1).0,
        Some(true),
        "the next order after the restock sells"
    );
    let restocked = Instant::now();
    let mut conns = one_per_shard(&server, 4);
    loop {
        let seen: Vec<u64> = conns.iter_mut().map(available_on).collect();
        if seen.iter().all(|&a| a == 11) {
            eprintln!(
                "every shard's /available showed the restock {:?} after it was answered",
                restocked.elapsed()
            );
            break;
        }
        assert!(
            restocked.elapsed() < CACHE_TTL + TTL_SLACK,
            "every shard's /available shows the new stock within the TTL: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    setup.stock_settles((52, 41, 11), "sold + available == initial + added");
    let r = setup.admin("GET", "/admin/stock", Some(TOKEN), "");
    assert_eq!(r.json("epoch").as_deref(), Some("1"), "{}", r.body);
    assert_eq!(r.json("added").as_deref(), Some("12"), "{}", r.body);

    // Every restocked ticket sells, on connections spread over the shards; then none.
    for i in 0..10 {
        let (sold, r) = buy(&server, 1);
        assert_eq!(sold, Some(true), "restocked ticket {i}: {}", r.body);
    }
    assert_eq!(buy(&server, 1).0, Some(true));
    assert_eq!(buy(&server, 1).0, Some(false), "sold out again");

    // kill -9 and a restart: the restock was journaled.
    server.crash();
    let mut server = setup.start("4", "40");
    setup.stock_settles((52, 52, 0), "after kill -9");
    assert_eq!(
        get(&server, "/api/v1/available").json("qty").as_deref(),
        Some("0")
    );
    // A restock in this life, sold, and one more crash.
    let r = setup.admin("POST", "/admin/restock", Some(TOKEN), "{\"add\":5}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(buy(&server, 3).0, Some(true));
    server.crash();
    let server = setup.start("2", "40");
    setup.stock_settles((57, 55, 2), "after a second kill -9, on 2 shards");
    assert_eq!(buy(&server, 2).0, Some(true));
    assert_eq!(buy(&server, 1).0, Some(false));
}

#[test]
fn closed_sales_refuse_orders_with_409_until_opened_also_after_kill_9() {
    let setup = Setup::new("close");
    let mut server = setup.start("2", "10");
    let r = setup.admin("POST", "/admin/sales/close", Some(TOKEN), "");
    assert_eq!((r.status, r.body.as_str()), (200, "{\"sales\":\"closed\"}"));
    for _ in 0..6 {
        let (sold, r) = buy(&server, 1);
        assert_eq!((sold, r.status), (None, 409), "{}", r.body);
        assert_eq!(r.json("code").as_deref(), Some("\"sales_closed\""));
    }
    assert_eq!(
        get(&server, "/api/v1/available").json("qty").as_deref(),
        Some("10")
    );
    let r = setup.admin("GET", "/admin/stock", Some(TOKEN), "");
    assert_eq!(r.json("sales").as_deref(), Some("\"closed\""), "{}", r.body);
    server.crash();
    let server = setup.start("2", "10");
    assert_eq!(buy(&server, 1).1.status, 409, "still closed after kill -9");
    let r = setup.admin("POST", "/admin/sales/open", Some(TOKEN), "");
    assert_eq!((r.status, r.body.as_str()), (200, "{\"sales\":\"open\"}"));
    assert_eq!(buy(&server, 4).0, Some(true), "open again");
    setup.stock_settles((10, 4, 6), "stock");
}

#[test]
fn the_journal_state_names_its_files_and_sequence_numbers() {
    let setup = Setup::new("journal");
    let server = setup.start("2", "10");
    assert_eq!(buy(&server, 2).0, Some(true));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = setup.admin("GET", "/admin/journal", Some(TOKEN), "");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body.starts_with("{\"journal\":true,\"epoch\":1,"),
            "{}",
            r.body
        );
        assert!(r.body.contains("\"file\":\"shard-0.e1.log\""), "{}", r.body);
        assert!(r.body.contains("\"file\":\"shard-1.e1.log\""), "{}", r.body);
        // The sale's record is durable on one of the shards once published: its bytes are the
        // snapshot's (19 + 26 + 2 × 32) and the sale's (19 + 8).
        if r.body.contains("\"durable_seq\":1,\"durable_bytes\":136,") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", r.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ticket mode: the vacancy service's operator closes sales; a purchase at the ticket tier gets
/// the same 409 `sales_closed` (not a 503), sells nothing, and sells once they are open again. A
/// restock at the vacancy service is what the ticket tier sells from.
#[test]
fn the_ticket_tier_passes_closed_sales_on_and_sells_a_restock() {
    let setup = Setup::new("ticket");
    let args = setup.args("2", "4");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--mode", "vacancy"]);
    let vacancy = Server::start(&args);
    let url = format!("http://127.0.0.1:{}", vacancy.port());
    let ticket = Server::start(&["--mode", "ticket", "--shards", "1", "--vacancy-url", &url]);
    assert_eq!(buy(&ticket, 4).0, Some(true));
    assert_eq!(buy(&ticket, 1).0, Some(false), "sold out");
    let r = setup.admin("POST", "/admin/restock", Some(TOKEN), "{\"add\":3}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        buy(&ticket, 3).0,
        Some(true),
        "the restock sells through the ticket tier"
    );
    assert_eq!(
        setup
            .admin("POST", "/admin/sales/close", Some(TOKEN), "")
            .status,
        200
    );
    let (sold, r) = buy(&ticket, 1);
    assert_eq!((sold, r.status), (None, 409), "{}", r.body);
    assert_eq!(r.json("code").as_deref(), Some("\"sales_closed\""));
    assert_eq!(
        setup
            .admin("POST", "/admin/sales/open", Some(TOKEN), "")
            .status,
        200
    );
    assert_eq!(buy(&ticket, 1).0, Some(false), "open, and sold out again");
    setup.stock_settles((7, 7, 0), "vacancy");
}

//! Durability of sales through the real binary: SIGKILL under load never forgets an acknowledged
//! purchase nor sells a ticket twice, whatever the shard count of the next run; the journal's
//! stock beats the configured one; `--durability none` forgets, as documented; a corrupt journal
//! or a data directory in use stops start-up with one line.
//!
//! The crash tests draw their kill moments from a seeded xorshift generator; the seed is printed
//! (run with `--nocapture` to see it) and `DURABILITY_SEED=n` replays the same moments (the
//! server's scheduling still varies from run to run).

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Barrier;
use std::time::Duration;

use support::{
    available_once_settled, buy, free_port, listing, run_failing, try_read_reply, DataDir, Server,
    READ_TIMEOUT,
};

/// Tickets in the crash tests' data directory: far more than a cycle's load can sell, so that
/// purchases keep succeeding (and keep the journal busy) until the kill.
const CRASH_STOCK: u64 = 100_000;

/// [`CRASH_STOCK`] as an argument.
const CRASH_STOCK_ARG: &str = "100000";

/// Client threads per crash cycle, each on its own keep-alive connection.
const CRASH_CLIENTS: usize = 8;

/// Crash-test orders are for 1 to this many tickets.
const QTY_MAX: u64 = 3;

/// The kill comes this many milliseconds into the load, drawn uniformly.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 20..=150;

/// Connections that drain what is left at the end of a crash test.
const DRAIN_CLIENTS: usize = 4;

/// Orders each drain connection sends before reading their answers: pipelining lets one group
/// commit carry many sales, so the drain of tens of thousands of tickets takes seconds.
const DRAIN_DEPTH: usize = 64;

/// The transports (`TICKETD_TRANSPORT`): each holds sold responses back until the journal has
/// them in its own way, so crash cycles alternate between them.
const TRANSPORTS: [&str; 2] = ["uring", "glommio"];

/// Freshness of `/available`, so that it becomes exact quickly once a run starts.
const CACHE_TTL: &str = "0.05";

/// A small deterministic generator (xorshift64), so that no randomness crate is needed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `range`.
    fn in_range(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        range.start() + self.next() % (range.end() - range.start() + 1)
    }
}

/// The seed of this run: `DURABILITY_SEED`, or the clock.
fn seed() -> u64 {
    std::env::var("DURABILITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// What recovery found at start, from the "journal recovered" log line: (sold, available).
fn recovered(server: &Server) -> (u64, u64) {
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("journal recovered"))
        .unwrap_or_else(|| panic!("no \"journal recovered\" line in the log:\n{log}"));
    let field = |name: &str| -> u64 {
        let key = format!(" {name}=");
        let start = line
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            + key.len();
        let digits: String = line[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{name} in {line}"))
    };
    (field("sold"), field("available"))
}

/// What one client saw until its connection broke (or the stock ran out, for a drain).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    /// Orders sent.
    orders: u64,
    /// Tickets of orders answered `success: true`.
    acknowledged: u64,
    /// Tickets of orders sent but not answered (reset, closed or timed out): sold or not.
    unknown: u64,
    /// Orders answered `success: false`.
    refused: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.orders += other.orders;
        self.acknowledged += other.acknowledged;
        self.unknown += other.unknown;
        self.refused += other.refused;
    }
}

/// A keep-alive connection to `addr` with the harness's read timeout.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connecting to ticketd");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// One crash-test client: after `ready`, buys 1 to `qty_max` tickets at a time on one keep-alive
/// connection until the connection breaks (the server was killed). A request without an answer
/// counts as unknown, never as a success.
fn purchase_loop(addr: SocketAddr, ready: &Barrier, seed: u64, qty_max: u64) -> Tally {
    let mut rng = Rng::new(seed);
    let mut stream = connect(addr);
    let mut carry = Vec::new();
    let mut tally = Tally::default();
    ready.wait();
    loop {
        let qty = rng.in_range(1..=qty_max);
        let body = format!("{{\"qty\":{qty}}}");
        let request = format!(
            "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tally.orders += 1;
        if stream.write_all(request.as_bytes()).is_err() {
            // Some of it may have reached the server: sold or not, nobody knows.
            tally.unknown += qty;
            return tally;
        }
        let Some(reply) = try_read_reply(&mut stream, &mut carry) else {
            tally.unknown += qty;
            return tally;
        };
        assert_eq!(reply.status, 200, "{}", reply.body);
        match reply.json("success").as_deref() {
            Some("true") => tally.acknowledged += qty,
            Some("false") => tally.refused += 1,
            _ => panic!("a purchase answer without success: {}", reply.body),
        }
    }
}

/// Drains the stock from `clients` connections, each sending [`DRAIN_DEPTH`] pipelined orders
/// for one ticket at a time and reading every answer, until an order is refused.
fn drain(addr: SocketAddr, clients: usize) -> Tally {
    let body = "{\"qty\":1}";
    let request = format!(
        "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let burst = request.repeat(DRAIN_DEPTH);
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..clients)
            .map(|_| {
                let burst = burst.as_bytes();
                scope.spawn(move || {
                    let mut stream = connect(addr);
                    let mut carry = Vec::new();
                    let mut tally = Tally::default();
                    while tally.refused == 0 {
                        stream.write_all(burst).expect("sending drain orders");
                        for _ in 0..DRAIN_DEPTH {
                            tally.orders += 1;
                            let reply = try_read_reply(&mut stream, &mut carry)
                                .expect("a drain order went unanswered");
                            assert_eq!(reply.status, 200, "{}", reply.body);
                            match reply.json("success").as_deref() {
                                Some("true") => tally.acknowledged += 1,
                                Some("false") => tally.refused += 1,
                                _ => panic!("a purchase answer without success: {}", reply.body),
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        let mut tally = Tally::default();
        for client in clients {
            tally.add(client.join().expect("a drain client panicked"));
        }
        tally
    })
}

/// What the test knows about the data directory's stock so far, from the clients' side.
struct Books {
    /// The stock the data directory was created with.
    initial: u64,
    /// Tickets acknowledged over every run so far: all of them must stay sold.
    acknowledged: u64,
    /// Tickets of unanswered orders over every run so far: each may or may not have sold.
    unknown: u64,
    /// What the previous start found available (`initial` before the first).
    available: u64,
    /// Whether an order was refused since the previous start: then fewer tickets than the
    /// largest order were left, and the stock only shrinks.
    refused: bool,
}

impl Books {
    /// Checks a fresh start against the books: nothing acknowledged is forgotten, nothing is
    /// sold that nobody asked for, nothing sold comes back, and `/available` says what recovery
    /// found. Returns the tickets available.
    fn check_start(&mut self, server: &Server, context: &str) -> u64 {
        let (sold, available) = recovered(server);
        assert_eq!(
            sold + available,
            self.initial,
            "{context}: the journal does not balance"
        );
        assert!(
            self.acknowledged <= self.initial,
            "{context}: {} tickets acknowledged of {} (oversold)",
            self.acknowledged,
            self.initial
        );
        assert!(
            self.acknowledged <= sold,
            "{context}: {} tickets were acknowledged but the journal has only {sold} sold \
             ({} forgotten); available {available}",
            self.acknowledged,
            self.acknowledged - sold
        );
        assert!(
            sold <= self.acknowledged + self.unknown,
            "{context}: {sold} sold, but only {} acknowledged and {} unanswered were ordered",
            self.acknowledged,
            self.unknown
        );
        assert!(
            available <= self.available,
            "{context}: available rose from {} to {available} (tickets resold)",
            self.available
        );
        assert!(
            !self.refused || available < QTY_MAX,
            "{context}: an order was refused in the previous run, yet {available} tickets are \
             left (a premature sold-out)"
        );
        self.refused = false;
        assert_eq!(
            available_once_settled(server, available),
            available,
            "{context}: /available disagrees with the journal"
        );
        self.available = available;
        available
    }
}

/// The arguments of a crash-test start.
fn crash_args<'a>(shards: &'a str, dir: &'a DataDir) -> Vec<&'a str> {
    vec![
        "--shards",
        shards,
        "--initial-stock",
        CRASH_STOCK_ARG,
        "--data-dir",
        dir.arg(),
        "--cache-ttl-seconds",
        CACHE_TTL,
    ]
}

/// Runs one crash cycle per entry of `shards` on one data directory, alternating [`TRANSPORTS`]:
/// start, check the books, load with [`CRASH_CLIENTS`] clients buying 1 to [`QTY_MAX`] tickets,
/// SIGKILL at a random moment. Then starts once more with `final_shards`, checks the books, drains the rest with
/// qty-1 orders, and checks that exactly what `/available` said was sold, and that it stays sold
/// through one more crash.
fn crash_cycles(name: &str, shards: &[&str], final_shards: &str) {
    assert_eq!(CRASH_STOCK.to_string(), CRASH_STOCK_ARG);
    let seed = seed();
    eprintln!("{name}: seed {seed} (DURABILITY_SEED={seed} replays the kill moments)");
    let mut rng = Rng::new(seed);
    let dir = DataDir::new("durability", name);
    let mut books = Books {
        initial: CRASH_STOCK,
        acknowledged: 0,
        unknown: 0,
        available: CRASH_STOCK,
        refused: false,
    };
    let mut previous_shards = None;
    for (cycle, &count) in shards.iter().enumerate() {
        let transport = TRANSPORTS[cycle % TRANSPORTS.len()];
        let context =
            format!("{name} seed {seed} cycle {cycle} (--shards {count}, {transport} transport)");
        let mut server = Server::start_with_env(
            &crash_args(count, &dir),
            &[("TICKETD_TRANSPORT", transport)],
        );
        books.check_start(&server, &context);
        if previous_shards.is_some_and(|p| p != count) {
            assert!(
                server.log().contains("shard count changed"),
                "{context}: no warning about the shard count:\n{}",
                server.log()
            );
        }
        previous_shards = Some(count);
        let kill_after = Duration::from_millis(rng.in_range(KILL_AFTER_MS));
        let addr = server.addr;
        let ready = Barrier::new(CRASH_CLIENTS + 1);
        let tally = std::thread::scope(|scope| {
            let clients: Vec<_> = (0..CRASH_CLIENTS)
                .map(|_| {
                    let (ready, client_seed) = (&ready, rng.next());
                    scope.spawn(move || purchase_loop(addr, ready, client_seed, QTY_MAX))
                })
                .collect();
            ready.wait();
            std::thread::sleep(kill_after);
            server.crash();
            let mut tally = Tally::default();
            for client in clients {
                tally.add(client.join().expect("a client panicked"));
            }
            tally
        });
        eprintln!("{context}: killed after {kill_after:?}: {tally:?}");
        books.acknowledged += tally.acknowledged;
        books.unknown += tally.unknown;
        books.refused = tally.refused > 0;
    }

    let context = format!("{name} seed {seed} final start (--shards {final_shards})");
    let mut server = Server::start(&crash_args(final_shards, &dir));
    let before_drain = books.check_start(&server, &context);
    assert!(
        books.acknowledged > 0,
        "{context}: no purchase succeeded in any cycle: the load never ran"
    );
    let drained = drain(server.addr, DRAIN_CLIENTS);
    assert_eq!(
        drained.acknowledged, before_drain,
        "{context}: the drain sold {} tickets, /available said {before_drain}",
        drained.acknowledged
    );
    assert_eq!(
        available_once_settled(&server, 0),
        0,
        "{context}: tickets left after the drain"
    );
    books.acknowledged += drained.acknowledged;
    assert!(books.acknowledged <= CRASH_STOCK, "{context}: oversold");
    // A crash after the drain keeps it: everything is sold, for good.
    server.crash();
    let server = Server::start(&crash_args(final_shards, &dir));
    assert_eq!(
        recovered(&server),
        (CRASH_STOCK, 0),
        "{context}: after the drain and a crash"
    );
    assert_eq!(available_once_settled(&server, 0), 0);
    assert!(!buy(&server, 1), "{context}: a ticket sold after the drain");
    eprintln!(
        "{name}: {} acknowledged, {} unanswered over {} cycles; drained {before_drain}",
        books.acknowledged - drained.acknowledged,
        books.unknown,
        shards.len()
    );
}

/// The proof: 20 cycles of 8 clients buying 1–3 tickets on 2 shards (both transports in
/// turn), each cycle ended by SIGKILL 20–150 ms into the load. After every restart every acknowledged ticket is still sold,
/// no sold ticket is available again, nothing was sold that was not ordered, and `/available`
/// says what the journal holds; at the end, draining sells exactly that many and no more.
#[test]
fn kill_9_under_load_never_forgets_an_acknowledged_sale() {
    crash_cycles("kill9", &["2"; 20], "2");
}

/// Crashes while the shard count changes between runs (1, 3, 2, 4 … on a machine with fewer
/// CPUs: they run unpinned): the stock recut among the new shards is conserved, with the same
/// invariants as above, and the final drain sells exactly what `/available` said.
#[test]
fn shard_count_changes_between_crashes_conserve_the_stock() {
    crash_cycles("reshard", &["1", "3", "2", "4", "3", "1", "4", "2"], "3");
}

/// Once a data directory holds a journal, its stock is the truth: a restart with another
/// `--initial-stock` keeps the 90 left of 100, and warns that the configuration disagrees with
/// the journal's stock.
#[test]
fn the_journal_stock_wins_over_the_configured_stock() {
    let dir = DataDir::new("durability", "stock");
    let server = Server::start(&["--initial-stock", "100", "--data-dir", dir.arg()]);
    for _ in 0..10 {
        assert!(buy(&server, 1));
    }
    drop(server);
    let server = Server::start(&[
        "--initial-stock",
        "999",
        "--data-dir",
        dir.arg(),
        "--cache-ttl-seconds",
        CACHE_TTL,
    ]);
    assert_eq!(recovered(&server), (10, 90));
    assert_eq!(available_once_settled(&server, 90), 90);
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("journal's stock 100")),
        "no warning about the configured stock:\n{log}"
    );
}

/// With the default `--durability sync`, a clean SIGTERM restart keeps the 10 sold of 100.
#[test]
fn sync_keeps_sales_across_a_clean_restart() {
    let dir = DataDir::new("durability", "sync");
    let args = [
        "--initial-stock",
        "100",
        "--data-dir",
        dir.arg(),
        "--cache-ttl-seconds",
        CACHE_TTL,
    ];
    let server = Server::start(&args);
    assert!(buy(&server, 10));
    drop(server);
    let server = Server::start(&args);
    assert_eq!(available_once_settled(&server, 90), 90);
}

/// `--durability none` keeps sales in memory only, as documented: it warns so at start, and a
/// restart on the same data directory has the whole stock again.
#[test]
fn durability_none_forgets_across_a_restart_and_warns() {
    let dir = DataDir::new("durability", "none");
    let args = [
        "--durability",
        "none",
        "--initial-stock",
        "100",
        "--data-dir",
        dir.arg(),
        "--cache-ttl-seconds",
        CACHE_TTL,
    ];
    let server = Server::start(&args);
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("--durability none")),
        "no warning about --durability none:\n{log}"
    );
    assert!(buy(&server, 10));
    assert_eq!(available_once_settled(&server, 90), 90);
    drop(server);
    let server = Server::start(&args);
    assert_eq!(available_once_settled(&server, 100), 100);
    assert!(
        server.log().contains("--durability none"),
        "{}",
        server.log()
    );
}

/// A flipped byte in a shard file's first record (its snapshot), with sale records after it,
/// stops start-up: exit 1, one `ticketd:` line naming the file and the offset, and nothing on
/// disk changed.
#[test]
fn a_corrupt_journal_stops_start_up_naming_file_and_offset() {
    let dir = DataDir::new("durability", "corrupt");
    let args = [
        "--shards",
        "1",
        "--initial-stock",
        "100",
        "--data-dir",
        dir.arg(),
    ];
    let server = Server::start(&args);
    for _ in 0..5 {
        assert!(buy(&server, 1));
    }
    drop(server);

    let shard_file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("shard-") && name.ends_with(".log")
        })
        .expect("a shard file in the data directory");
    let mut bytes = std::fs::read(&shard_file).unwrap();
    // A one-shard snapshot takes 77 bytes and each sale 27 more: sales follow the damage.
    assert!(
        bytes.len() > 77 + 5 * 27 && bytes[77..77 + 5 * 27].iter().any(|&b| b != 0),
        "expected five sale records after the snapshot in {}",
        shard_file.display()
    );
    bytes[30] ^= 0x40;
    std::fs::write(&shard_file, &bytes).unwrap();
    let before = listing(dir.path());

    let port = free_port().to_string();
    let (code, stderr) = run_failing(&[
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--shards",
        "1",
        "--data-dir",
        dir.arg(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ticketd:"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let line = lines[0];
    // The server names files under the canonical path of the directory.
    let named = dir
        .path()
        .canonicalize()
        .unwrap()
        .join(shard_file.file_name().unwrap());
    assert!(
        line.contains(&named.display().to_string()) && line.contains("offset 0"),
        "the line names neither the file nor the offset: {line}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        listing(dir.path()),
        before,
        "a failed start changed the data directory"
    );
}

/// A second ticketd on a data directory in use fails with exit 1 and a line saying another
/// ticketd uses it; the first one keeps selling, and once it stops the directory can be used.
#[test]
fn two_processes_cannot_share_a_data_dir() {
    let dir = DataDir::new("durability", "shared");
    let args = ["--initial-stock", "100", "--data-dir", dir.arg()];
    let first = Server::start(&args);
    assert!(buy(&first, 1));
    let port = free_port().to_string();
    let (code, stderr) = run_failing(&[
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--initial-stock",
        "100",
        "--data-dir",
        dir.arg(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ticketd:"))
        .unwrap_or_else(|| panic!("no ticketd: line in {stderr}"));
    assert!(
        line.contains("another ticketd") && line.contains(dir.arg()),
        "{line}"
    );
    assert!(buy(&first, 1), "the first ticketd stopped selling");
    drop(first);
    let again = Server::start(&args);
    assert_eq!(recovered(&again), (2, 98));
}

/// The smallest `--journal-compact-bytes` the server takes (one batch can be 64 KiB).
const COMPACT_BYTES: u64 = 64 * 1024;

/// Tickets for the compaction test: about 27 journal bytes each, so selling them all writes
/// about 160 KiB per shard, and every shard's journal is compacted more than once.
const COMPACT_STOCK: u64 = 12_000;

/// Compaction in the running server, with both transports (the uring driver hands compactions to
/// the committer task; the glommio transport commits everything there): every shard's journal
/// file stays under the threshold plus one batch while far more than the threshold is written,
/// and after a SIGKILL every acknowledged sale is still sold.
#[test]
fn compaction_bounds_the_journal_and_keeps_every_sale() {
    for transport in TRANSPORTS {
        let dir = DataDir::new("durability", &format!("compact-{transport}"));
        let stock = COMPACT_STOCK.to_string();
        let compact = COMPACT_BYTES.to_string();
        let args = [
            "--shards",
            "2",
            "--initial-stock",
            &stock,
            "--journal-compact-bytes",
            &compact,
            "--data-dir",
            dir.arg(),
            "--cache-ttl-seconds",
            CACHE_TTL,
        ];
        let mut server = Server::start_with_env(&args, &[("TICKETD_TRANSPORT", transport)]);
        let tally = drain(server.addr, DRAIN_CLIENTS);
        assert_eq!(tally.acknowledged, COMPACT_STOCK, "{transport}: {tally:?}");
        let mut files = 0;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name.starts_with("shard-") {
                files += 1;
                let size = entry.metadata().unwrap().len();
                // The threshold, then at most one more batch before the next compaction.
                assert!(
                    size <= 2 * COMPACT_BYTES + 4096,
                    "{transport}: {name} is {size} bytes"
                );
            }
        }
        assert_eq!(files, 2, "{transport}: one journal per shard");
        server.crash();
        let server = Server::start_with_env(&args, &[("TICKETD_TRANSPORT", transport)]);
        assert_eq!(recovered(&server), (COMPACT_STOCK, 0), "{transport}");
        assert_eq!(available_once_settled(&server, 0), 0, "{transport}");
    }
}

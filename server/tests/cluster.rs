//! The escrow ledger (issue 18) on a real 3-member etcd cluster on loopback, started by the test
//! with its data under a temporary directory: `ticketd cluster init|status` as an operator runs
//! them, and nodes' transactions (`ticketd::cluster::etcd`) while members are killed -9 (the
//! leader too), paused and restarted. etcd comes from Debian's `etcd-server` (`.ci/run` installs
//! it); without it these tests are skipped outside CI and fail under CI. They need a binary built
//! with `--features cluster` (the README's test command builds every feature).
#![cfg(feature = "cluster")]

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{free_port, DataDir};
use ticketd::cluster::driver::Driver;
use ticketd::cluster::etcd::{self, Etcd, Runtime};
use ticketd::cluster::gather;
use ticketd::cluster::lease::OrderAnswer;
use ticketd::cluster::ledger::{self, Keys, Last, Ledger, Op, Outcome, Request, Step};
use ticketd::cluster::liveness;

/// How long a test waits for its etcd cluster to elect a leader and answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a node's transaction may keep retrying while members are down.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// A node's pause between sales windows while the nemesis works.
const PACE: Duration = Duration::from_millis(10);

/// Sales a node may hold unreported in these tests.
const WINDOW: u64 = 5;

/// Whether etcd is on PATH: a missing one fails the test under CI; elsewhere it is skipped,
/// loudly.
fn have_etcd() -> bool {
    support::have(
        std::path::Path::new("etcd"),
        "Debian's etcd-server; .ci/run installs it",
    )
}

/// One etcd cluster at a time in this binary: a member killed and restarted rebinds its ports,
/// which another test's `free_port` may have handed out meanwhile.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

/// A 3-member etcd cluster on loopback ports, data under a directory of its own.
struct EtcdCluster {
    dir: DataDir,
    /// Each member's arguments, to restart it as it was.
    args: Vec<Vec<String>>,
    /// Each member's client URL.
    urls: Vec<String>,
    /// Each member's process, when running.
    members: Vec<Option<Child>>,
    /// Held while it lives, released last (see [`ONE_CLUSTER`]).
    _alone: std::sync::MutexGuard<'static, ()>,
}

impl EtcdCluster {
    /// Starts three members and waits for their first leader.
    fn start(name: &str) -> EtcdCluster {
        let alone = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        let dir = DataDir::new("cluster", name);
        std::fs::create_dir_all(dir.path()).unwrap();
        let peers: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let initial: Vec<String> = (0..3)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", peers[i]))
            .collect();
        let token = format!("ticketd-test-{}-{name}", std::process::id());
        let args = (0..3)
            .map(|i| {
                let client = format!("http://127.0.0.1:{}", clients[i]);
                let peer = format!("http://127.0.0.1:{}", peers[i]);
                let data = dir.path().join(format!("m{i}"));
                vec![
                    format!("--name=m{i}"),
                    format!("--data-dir={}", data.display()),
                    format!("--listen-client-urls={client}"),
                    format!("--advertise-client-urls={client}"),
                    format!("--listen-peer-urls={peer}"),
                    format!("--initial-advertise-peer-urls={peer}"),
                    format!("--initial-cluster={}", initial.join(",")),
                    format!("--initial-cluster-token={token}"),
                    "--initial-cluster-state=new".into(),
                    // Elections in a few hundred ms, so that the tests' failures heal quickly.
                    "--heartbeat-interval=50".into(),
                    "--election-timeout=500".into(),
                ]
            })
            .collect();
        let urls = clients
            .iter()
            .map(|port| format!("http://127.0.0.1:{port}"))
            .collect();
        let mut cluster = EtcdCluster {
            dir,
            args,
            urls,
            members: vec![None, None, None],
            _alone: alone,
        };
        for i in 0..3 {
            cluster.restart(i);
        }
        cluster.wait_leader();
        cluster
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("m{i}.log"))
    }

    /// Starts member `i` (again, on its data directory).
    fn restart(&mut self, i: usize) {
        assert!(self.members[i].is_none(), "member {i} runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .unwrap();
        let child = Command::new("etcd")
            .args(&self.args[i])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.members[i] = Some(child);
    }

    /// kill -9 member `i`.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, i: usize, signal: i32) {
        let pid = self.members[i].as_ref().expect("running").id();
        // SAFETY: kill(2) with a pid this test spawned and still owns.
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
    }

    /// SIGSTOP member `i`.
    fn pause(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// SIGCONT member `i`.
    fn resume(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    /// The member that says it leads (etcd's `etcd_server_is_leader` on its `/metrics`).
    fn leader(&self) -> Option<usize> {
        (0..3).find(|&i| {
            self.members[i].is_some()
                && metrics(&self.urls[i]).is_some_and(|m| m.contains("\netcd_server_is_leader 1"))
        })
    }

    fn wait_leader(&self) -> usize {
        let start = Instant::now();
        loop {
            if let Some(leader) = self.leader() {
                return leader;
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "no etcd leader: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        (0..3)
            .map(|i| std::fs::read_to_string(self.log(i)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    fn endpoints(&self) -> String {
        self.urls.join(",")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..3 {
            if self.members[i].is_some() {
                let _ = self.signal_quietly(i);
                self.kill(i);
            }
        }
    }
}

impl EtcdCluster {
    /// Resumes a paused member before killing it (a stopped process dies on SIGKILL anyway;
    /// this keeps its log complete).
    fn signal_quietly(&self, i: usize) -> Option<()> {
        let pid = self.members[i].as_ref()?.id();
        // SAFETY: kill(2) with a pid this test spawned and still owns.
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
        Some(())
    }
}

/// `GET /metrics` from an etcd member, or `None` when it does not answer within 300 ms.
fn metrics(url: &str) -> Option<String> {
    let addr = url.strip_prefix("http://")?;
    let timeout = Duration::from_millis(300);
    let mut stream = TcpStream::connect_timeout(&addr.parse().ok()?, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// `ticketd cluster ...` with these arguments; exit status, stdout and stderr.
fn tool<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("INITIAL_STOCK")
        .env_remove("CLUSTER_ETCD")
        .env_remove("CLUSTER_NAME")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn connect(rt: &Runtime, cluster: &EtcdCluster, sale: &str) -> Etcd {
    let keys = Keys::new(sale).unwrap();
    rt.block_on(Etcd::connect(&cluster.urls, keys)).unwrap()
}

fn read_ledger(rt: &Runtime, etcd: &mut Etcd, revision: Option<i64>) -> (Ledger, i64) {
    let deadline = Instant::now() + CALL_DEADLINE;
    rt.block_on(etcd.ledger(revision, deadline)).unwrap()
}

/// `init` creates the sale's ledger once (again with the same capacity: nothing changes; with
/// another: refused), only from an explicit `--initial-stock`; `status` prints it and checks
/// the invariant, and says when a sale has no ledger.
#[test]
fn init_creates_the_ledger_once_and_status_checks_it() {
    if !have_etcd() {
        return;
    }
    let cluster = EtcdCluster::start("init");
    let urls = cluster.endpoints();
    let base = ["cluster", "--cluster-etcd", &urls, "--cluster-name", "sale"];
    let with = |rest: &[&'static str]| -> Vec<String> {
        base.iter().chain(rest).map(|s| s.to_string()).collect()
    };

    let (code, _, err) = tool(&with(&["init"]), &[("INITIAL_STOCK", "100")]);
    assert_eq!(code, 2, "INITIAL_STOCK alone never sets a capacity: {err}");
    assert!(err.contains("--initial-stock"), "{err}");

    let (code, out, err) = tool(&with(&["--initial-stock", "100", "init"]), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created the ledger: capacity 100"), "{out}");
    let (code, out, _) = tool(&with(&["--initial-stock", "100", "init"]), &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("exists already with capacity 100; nothing changed"),
        "{out}"
    );
    let (code, _, err) = tool(&with(&["--initial-stock", "50", "init"]), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("capacity 100, not 50"), "{err}");

    let (code, out, err) = tool(&with(&["status", "--json"]), &[]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(status["capacity"], 100);
    assert_eq!(status["pool"], 100);
    assert_eq!(status["invariant_holds"], true);
    assert_eq!(status["nodes"], serde_json::json!([]));

    // The environment names the cluster as well as the flags do; another sale has no ledger.
    let env = [("CLUSTER_ETCD", urls.as_str()), ("CLUSTER_NAME", "other")];
    let out = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .args(["cluster", "status"])
        .envs(env)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no ledger"), "{text}");

    // A name that cannot be a key segment is a configuration error.
    let (code, _, err) = tool(
        &[
            "cluster",
            "--cluster-etcd",
            &urls,
            "--cluster-name",
            "a/b",
            "status",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
}

/// A transaction whose reply was lost (etcd applied it, the node was not told) is recognised
/// by its sequence number when the node tries again: the pool pays once, and the node learns
/// what it got.
#[test]
fn a_lost_reply_is_recognised_not_applied_twice() {
    if !have_etcd() {
        return;
    }
    let cluster = EtcdCluster::start("lost");
    let rt = etcd::runtime().unwrap();
    let mut etcd = connect(&rt, &cluster, "sale");
    let deadline = Instant::now() + CALL_DEADLINE;
    assert_eq!(
        rt.block_on(etcd.init(40, deadline)).unwrap(),
        etcd::Init::Created(40)
    );

    let request = Request {
        op: Op::Acquire { want: 15 },
        seq: 1,
        epoch: 0,
        window: WINDOW,
    };
    let Step::Commit { plan, .. } = rt
        .block_on(etcd.plan_once("n1", &request, deadline))
        .unwrap()
    else {
        panic!("a first acquire commits")
    };
    assert!(
        rt.block_on(etcd.send_once(&plan)).unwrap(),
        "applied; the reply is 'lost'"
    );
    let outcome = rt
        .block_on(etcd.transact("n1", &request, deadline))
        .unwrap();
    assert_eq!(outcome, Outcome::Applied(Last::Acquired(15)));
    // The stale plan, sent again as a careless client would, fails its guard.
    assert!(!rt.block_on(etcd.send_once(&plan)).unwrap());
    let (ledger, now) = read_ledger(&rt, &mut etcd, None);
    assert_eq!(ledger.pool, Some(25));
    assert_eq!(ledger.nodes[0].1.granted, 15);
    assert_eq!(ledger::check(&ledger), Ok(()));
    // A call no retry can help (a read at a revision that does not exist yet) fails at once,
    // not at the deadline.
    let start = Instant::now();
    let future = rt.block_on(etcd.ledger(Some(now + 1_000), deadline));
    assert!(
        matches!(future, Err(etcd::EtcdError::Refused(_))),
        "{:?}",
        future.err()
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

/// A peer fences a node that still holds a lease: all but the window goes back to the pool at
/// once; the node's next transaction in the old epoch learns it was fenced; it rejoins with the
/// sales its journal shows and the rest of the doubt returns.
#[test]
fn a_fenced_node_learns_it_and_rejoins() {
    if !have_etcd() {
        return;
    }
    let cluster = EtcdCluster::start("fence");
    let rt = etcd::runtime().unwrap();
    let mut etcd = connect(&rt, &cluster, "sale");
    let deadline = Instant::now() + CALL_DEADLINE;
    rt.block_on(etcd.init(100, deadline)).unwrap();
    let mut call = |op, seq, epoch| {
        let request = Request {
            op,
            seq,
            epoch,
            window: WINDOW,
        };
        rt.block_on(etcd.transact("n1", &request, deadline))
            .unwrap()
    };
    assert_eq!(
        call(Op::Acquire { want: 50 }, 1, 0),
        Outcome::Applied(Last::Acquired(50))
    );
    // The node sells 3 it has not reported; a peer fences it.
    let mut peer = connect(&rt, &cluster, "sale");
    let fenced = rt.block_on(peer.fence("n1", 0, deadline)).unwrap();
    let applied = ledger::Fenced::Applied {
        epoch: 1,
        in_doubt: WINDOW,
        returned: 45,
    };
    assert_eq!(fenced, applied);
    let again = rt.block_on(peer.fence("n1", 0, deadline)).unwrap();
    assert_eq!(again, ledger::Fenced::Already { epoch: 1 });
    assert_eq!(
        call(Op::Report { sold: 3 }, 2, 0),
        Outcome::Fenced { epoch: 1 }
    );
    let rejoined = Last::Rejoined {
        sold: 3,
        returned: 2,
    };
    assert_eq!(
        call(Op::Rejoin { sold: 3 }, 2, 1),
        Outcome::Applied(rejoined)
    );
    let (ledger, _) = read_ledger(&rt, &mut peer, None);
    assert_eq!(ledger.pool, Some(97));
    let record = ledger.nodes[0].1;
    assert_eq!(
        (record.epoch, record.granted, record.in_doubt, record.sold),
        (1, 0, 0, 3)
    );
    assert_eq!(ledger::check(&ledger), Ok(()));
}

/// The window of the nodes in the load below: their largest order is 4.
const LOAD_WINDOW: u64 = 8;

/// Every order answered in the load below, in the order answers came: (logical time the order
/// was sent, logical time it was answered, qty, sold).
#[derive(Default)]
struct History {
    /// The logical clock: one tick per order sent or answered, on any node.
    clock: AtomicU64,
    /// The answers.
    answers: Mutex<Vec<(u64, u64, u64, bool)>>,
}

/// What one node of the load did.
#[derive(Default, Debug)]
struct NodeState {
    sold: u64,
    orders: u64,
    turns: u64,
    counts: etcd::Counts,
    fenced: u64,
}

/// One node's load, every decision the real lease's (`cluster::driver`): orders of 1-4 tickets,
/// each sold from the lease or waiting while the driver makes the calls the lease wants
/// (acquire, report, gather rounds), until an order of 1 is answered sold out; then it drains
/// (reports and returns everything). While `paced` is set (the nemesis at work) it waits
/// [`PACE`] between orders, so that the failures land in the middle of the sale.
fn node_load(
    urls: Vec<String>,
    id: String,
    paced: Arc<AtomicBool>,
    history: Arc<History>,
) -> NodeState {
    let rt = etcd::runtime().unwrap();
    let keys = Keys::new("sale").unwrap();
    let etcd = rt.block_on(Etcd::connect(&urls, keys)).unwrap();
    let mut driver = Driver::new(&id, etcd, LOAD_WINDOW);
    let mut state = NodeState::default();
    let turn = |driver: &mut Driver, state: &mut NodeState| {
        let deadline = Instant::now() + CALL_DEADLINE;
        let made = rt.block_on(driver.turn(deadline));
        state.turns += 1;
        made.unwrap_or_else(|e| panic!("{id}: {e}"))
    };
    loop {
        state.orders += 1;
        let qty = 1 + state.orders % 4;
        let sent = history.clock.fetch_add(1, Ordering::Relaxed);
        let sold = loop {
            match driver.lease().order(state.orders, qty) {
                OrderAnswer::Sell => {
                    driver.sold(qty);
                    state.sold += qty;
                    break true;
                }
                OrderAnswer::SoldOut => break false,
                OrderAnswer::Wait => {
                    turn(&mut driver, &mut state);
                }
            }
        };
        let answered = history.clock.fetch_add(1, Ordering::Relaxed);
        history
            .answers
            .lock()
            .unwrap()
            .push((sent, answered, qty, sold));
        if !sold && qty == 1 {
            break;
        }
        // Reports and refills go out between orders too, as the node's etcd thread sends them.
        turn(&mut driver, &mut state);
        if paced.load(Ordering::Relaxed) {
            std::thread::sleep(PACE);
        }
    }
    driver.lease().drain();
    while !driver.lease().settled() {
        turn(&mut driver, &mut state);
    }
    state.counts = driver.etcd().counts();
    state.fenced = driver.fenced();
    state
}

/// Three nodes, every decision their real lease policy's, sell a sale out through the ledger
/// while etcd's leader is killed -9 and brought back and another member is paused: every call
/// completes (retried through elections); the invariant holds at every sampled revision; every
/// ticket is sold, and reported sold by exactly the node that sold it; and no order succeeded
/// after an order of its size or smaller had been answered sold out (no late success: no false
/// sold out, seen from outside).
#[test]
fn nodes_sell_out_through_leader_kills_and_pauses() {
    if !have_etcd() {
        return;
    }
    const CAPACITY: u64 = 8_000;
    let mut cluster = EtcdCluster::start("nemesis");
    let rt = etcd::runtime().unwrap();
    let mut etcd = connect(&rt, &cluster, "sale");
    let deadline = Instant::now() + CALL_DEADLINE;
    rt.block_on(etcd.init(CAPACITY, deadline)).unwrap();
    let (_, first) = read_ledger(&rt, &mut etcd, None);

    let paced = Arc::new(AtomicBool::new(true));
    let history = Arc::new(History::default());
    let nodes: Vec<_> = (0..3)
        .map(|i| {
            let (urls, paced) = (cluster.urls.clone(), paced.clone());
            let history = history.clone();
            std::thread::spawn(move || node_load(urls, format!("n{i}"), paced, history))
        })
        .collect();
    // The nemesis, while they sell.
    std::thread::sleep(Duration::from_millis(300));
    let leader = cluster.wait_leader();
    cluster.kill(leader);
    std::thread::sleep(Duration::from_millis(1_500));
    cluster.restart(leader);
    let leader = cluster.wait_leader();
    let other = (leader + 1) % 3;
    cluster.pause(other);
    std::thread::sleep(Duration::from_millis(1_000));
    cluster.resume(other);
    let (during, _) = read_ledger(&rt, &mut etcd, None);
    let reported: u64 = during.nodes.iter().map(|(_, r)| r.sold).sum();
    assert!(
        reported < CAPACITY,
        "the sale outlasts the nemesis: {during:?}"
    );
    paced.store(false, Ordering::Relaxed);

    let states: Vec<NodeState> = nodes.into_iter().map(|n| n.join().unwrap()).collect();
    let (ledger, last) = read_ledger(&rt, &mut etcd, None);
    assert_eq!(ledger::check(&ledger), Ok(()), "{ledger:?}");
    let sold: u64 = states.iter().map(|s| s.sold).sum();
    assert_eq!(sold, CAPACITY, "every ticket sold, once: {states:?}");
    assert_eq!(ledger.pool, Some(0));
    for (id, record) in &ledger.nodes {
        let i: usize = id[1..].parse().unwrap();
        assert_eq!(record.sold, states[i].sold, "{id}'s reports are its sales");
        assert_eq!(record.granted, 0, "{id} holds nothing");
    }
    // No late success: an order sent after an answer of sold out to an order of its size or
    // smaller had arrived would have sold a ticket that "did not exist".
    let answers = history.answers.lock().unwrap();
    let sold_outs: Vec<(u64, u64)> = answers
        .iter()
        .filter(|a| !a.3)
        .map(|&(_, answered, qty, _)| (answered, qty))
        .collect();
    let late = answers.iter().filter(|&&(sent, _, qty, ok)| {
        ok && sold_outs
            .iter()
            .any(|&(answered, q)| q <= qty && answered < sent)
    });
    // A fenced node's doubt (at most its window) is left out of every close until it rejoins
    // and may sell after a sold out: the stranding the issue allows.
    let fences: u64 = states.iter().map(|s| s.fenced).sum();
    let late = late.count() as u64;
    assert!(
        late <= fences * LOAD_WINDOW,
        "{late} late successes, {fences} fences"
    );
    // Every revision of the run, as etcd kept it, satisfies the invariant.
    let orders: u64 = states.iter().map(|s| s.orders).sum();
    let turns: u64 = states.iter().map(|s| s.turns).sum();
    let lost: u64 = states.iter().map(|s| s.counts.calls_lost).sum();
    let guards: u64 = states.iter().map(|s| s.counts.guards_failed).sum();
    assert!(lost > 0, "the nemesis cost no call: it missed the sale");
    let step = ((last - first) / 50).max(1);
    let mut revision = first;
    while revision <= last {
        let (ledger, _) = read_ledger(&rt, &mut etcd, Some(revision));
        assert_eq!(
            ledger::check(&ledger),
            Ok(()),
            "at revision {revision}: {ledger:?}"
        );
        revision += step;
    }
    let rounds = ledger.gather.map_or(0, |g| g.round);
    eprintln!(
        "nemesis: {CAPACITY} tickets, {orders} orders ({} sold out), {turns} driver turns, \
         {} etcd revisions, {rounds} gather rounds, {lost} calls lost, {guards} guards failed, \
         {fences} fences",
        sold_outs.len(),
        last - first
    );
}

/// The cluster-wide sold out on a real etcd: a node that finds the pool empty opens a round; the
/// ledger then refuses acquires; the node holding tickets answers with its whole lease; the
/// round closes once every node answered, with every unsold ticket in the pool, records the
/// bound, and gives the closer its order's tickets in the same transaction; a later closer is
/// told how it closed.
#[test]
fn a_gather_round_brings_every_lease_back_before_sold_out() {
    if !have_etcd() {
        return;
    }
    let cluster = EtcdCluster::start("gather");
    let rt = etcd::runtime().unwrap();
    let mut a = connect(&rt, &cluster, "sale");
    let mut b = connect(&rt, &cluster, "sale");
    let deadline = Instant::now() + CALL_DEADLINE;
    rt.block_on(a.init(30, deadline)).unwrap();
    let request = |op, seq| Request {
        op,
        seq,
        epoch: 0,
        window: WINDOW,
    };
    let acquired = rt.block_on(a.transact("a", &request(Op::Acquire { want: 30 }, 1), deadline));
    assert_eq!(acquired.unwrap(), Outcome::Applied(Last::Acquired(30)));
    // a sells 2 (unreported); b finds the pool empty and opens round 1.
    let empty = rt.block_on(b.transact("b", &request(Op::Acquire { want: 5 }, 1), deadline));
    assert_eq!(empty.unwrap(), Outcome::Empty);
    let opened = rt.block_on(b.open_gather(deadline)).unwrap();
    assert_eq!(opened, gather::Opened::Started { round: 1 });
    assert_eq!(
        rt.block_on(a.open_gather(deadline)).unwrap(),
        gather::Opened::Joined { round: 1 }
    );
    let refused = rt.block_on(b.transact("b", &request(Op::Acquire { want: 5 }, 1), deadline));
    assert_eq!(refused.unwrap(), Outcome::Gathering { round: 1 });
    // a has not answered: the round stays open.
    let close = |want, seq| {
        let insist = false;
        request(
            Op::Close {
                round: 1,
                want,
                insist,
            },
            seq,
        )
    };
    let silent = rt
        .block_on(b.transact("b", &close(3, 1), deadline))
        .unwrap();
    assert_eq!(silent, Outcome::Silent);
    let answer = Op::Answer {
        round: 1,
        tickets: 28,
        waiting: 0,
    };
    let answered = rt
        .block_on(a.transact("a", &request(answer, 2), deadline))
        .unwrap();
    let expected = Last::Answered {
        round: 1,
        tickets: 28,
    };
    assert_eq!(answered, Outcome::Applied(expected));
    // b closes for its order of 3, and takes them in the same transaction.
    let closed = rt
        .block_on(b.transact("b", &close(3, 1), deadline))
        .unwrap();
    let expected = Last::Closed {
        round: 1,
        took: 3,
        pool_at_close: 28,
        at_most: Some(28),
    };
    assert_eq!(closed, Outcome::Applied(expected));
    // a, closing after b, is told how the round closed.
    let again = rt
        .block_on(a.transact("a", &close(0, 3), deadline))
        .unwrap();
    let Outcome::RoundClosed { gather } = again else {
        panic!("closed already: {again:?}")
    };
    assert_eq!(
        (gather.round, gather.open, gather.pool_at_close),
        (1, false, 28)
    );
    let (ledger, _) = read_ledger(&rt, &mut a, None);
    assert_eq!(ledger.pool, Some(25));
    assert_eq!(ledger::check(&ledger), Ok(()), "{ledger:?}");
}

/// The operator's fence and write-off, as `ticketd cluster` runs them: a fence of a node
/// holding a lease returns all but its window to the pool at once (a second fence is a new one:
/// the operator fences the epoch it reads);
/// writing it off counts its doubt sold; its id with an empty journal is then refused, never
/// told it was served; the invariant holds throughout.
#[test]
fn an_operator_fences_a_stopped_node_and_writes_it_off() {
    if !have_etcd() {
        return;
    }
    let cluster = EtcdCluster::start("operator");
    let rt = etcd::runtime().unwrap();
    let mut etcd = connect(&rt, &cluster, "sale");
    let deadline = Instant::now() + CALL_DEADLINE;
    rt.block_on(etcd.init(100, deadline)).unwrap();
    let acquire = Request {
        op: Op::Acquire { want: 50 },
        seq: 1,
        epoch: 0,
        window: WINDOW,
    };
    let got = rt
        .block_on(etcd.transact("n1", &acquire, deadline))
        .unwrap();
    assert_eq!(got, Outcome::Applied(Last::Acquired(50)));

    let urls = cluster.endpoints();
    let run = |action: &[&str]| {
        let base = ["cluster", "--cluster-etcd", &urls, "--cluster-name", "sale"];
        tool(&[&base[..], action].concat(), &[])
    };
    let (code, out, err) = run(&["fence", "--node-id", "n1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("fenced node n1: epoch 1, 45 tickets back in the pool, 5 in doubt"),
        "{out}"
    );
    let (code, out, _) = run(&["fence", "--node-id", "n1"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("fenced node n1: epoch 2"),
        "a second fence is a new one: {out}"
    );
    let (code, out, err) = run(&["write-off", "--node-id", "n1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("wrote node n1 off: epoch 3, 5 tickets counted sold, 0 back"),
        "{out}"
    );
    let (code, out, _) = run(&["write-off", "--node-id", "n1"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing changed"), "{out}");
    let (code, out, _) = run(&["fence", "--node-id", "nobody"]);
    assert_eq!(code, 0);
    assert!(out.contains("never held a lease"), "{out}");

    // A node under the id with an empty journal asks its first request: refused.
    let refused = rt
        .block_on(etcd.transact("n1", &acquire, deadline))
        .unwrap();
    let mismatch = ledger::Refusal::Mismatch {
        applied: Last::WrittenOff,
    };
    assert_eq!(refused, Outcome::Refused(mismatch));
    let (ledger, _) = read_ledger(&rt, &mut etcd, None);
    assert_eq!(ledger.pool, Some(95));
    assert_eq!(ledger.nodes[0].1.sold, 5);
    assert_eq!(ledger::check(&ledger), Ok(()), "{ledger:?}");
}

/// A node paused past the fencing time while it holds a lease (its heartbeat stands still: its
/// runtime does not run) is fenced by its peer's driver, not before `FENCE_AFTER`: its lease goes
/// back to the pool but for its window. Before it learns, it sells what its window still allows
/// (the doubt covers that); then its next transaction learns it was fenced, and it rejoins with
/// every sale its journal shows; the invariant holds throughout, no sale lost or counted twice.
#[test]
fn a_node_paused_past_the_fence_time_is_fenced_by_its_peer_and_rejoins() {
    if !have_etcd() {
        return;
    }
    let cluster = EtcdCluster::start("liveness");
    // Each node its own runtime: a paused node's heartbeat task stops with it.
    let (a_rt, b_rt) = (etcd::runtime().unwrap(), etcd::runtime().unwrap());
    let mut etcd = connect(&a_rt, &cluster, "sale");
    let deadline = || Instant::now() + CALL_DEADLINE;
    a_rt.block_on(etcd.init(100, deadline())).unwrap();
    let mut a = Driver::new("a", connect(&a_rt, &cluster, "sale"), LOAD_WINDOW);
    let mut b = Driver::new("b", connect(&b_rt, &cluster, "sale"), LOAD_WINDOW);
    // b takes a lease and sells 3 (a sees its heartbeat meanwhile).
    let mut b_sold = 0;
    while b.lease().order(1, 3) != OrderAnswer::Sell {
        b_rt.block_on(b.turn(deadline())).unwrap();
        a_rt.block_on(a.turn(deadline())).unwrap();
    }
    b.sold(3);
    b_sold += 3;
    let granted = |etcd: &mut Etcd, id: &str| {
        let (ledger, _) = read_ledger(&a_rt, etcd, None);
        ledger.nodes.iter().find(|(n, _)| n == id).unwrap().1
    };
    let before = granted(&mut etcd, "b");
    // b stops (paused); a goes on until it fences b.
    let paused = Instant::now();
    while a.fenced() == 0 {
        a_rt.block_on(async {
            a.turn(deadline()).await.unwrap();
            a.wait(Duration::from_millis(20)).await;
        });
        assert!(paused.elapsed() < CALL_DEADLINE, "a never fenced b");
    }
    assert!(
        paused.elapsed() >= liveness::FENCE_AFTER,
        "fenced after {:?}",
        paused.elapsed()
    );
    let fenced = granted(&mut etcd, "b");
    assert_eq!((fenced.epoch, fenced.granted), (1, 0));
    assert_eq!(
        fenced.in_doubt,
        LOAD_WINDOW.min(before.granted),
        "{before:?} -> {fenced:?}"
    );
    // b, not knowing yet, sells what its window still allows: the doubt covers it.
    let more = b.lease().sellable();
    b.sold(more);
    b_sold += more;
    // b resumes: it learns it was fenced and rejoins with every sale.
    let resumed = Instant::now();
    while b.lease().journal().epoch == 0 || b.lease().journal().fenced {
        b_rt.block_on(b.turn(deadline())).unwrap();
        assert!(resumed.elapsed() < CALL_DEADLINE, "b never rejoined");
    }
    let rejoined = granted(&mut etcd, "b");
    assert_eq!(
        (rejoined.epoch, rejoined.in_doubt, rejoined.sold),
        (1, 0, b_sold)
    );
    let (ledger, _) = read_ledger(&a_rt, &mut etcd, None);
    assert_eq!(ledger::check(&ledger), Ok(()), "{ledger:?}");
}

/// `ticketd cluster init` of `sale` on `cluster` with `capacity` tickets, as an operator runs it.
fn init_sale(cluster: &EtcdCluster, sale: &str, capacity: u64) {
    let (urls, capacity) = (cluster.endpoints(), capacity.to_string());
    let init = [
        "cluster",
        "--cluster-etcd",
        &urls,
        "--cluster-name",
        sale,
        "--initial-stock",
        &capacity,
        "init",
    ];
    let (code, out, err) = tool(&init, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

/// A ticketd node of `sale` on `cluster`: two shards, its own data directory, a small window.
fn node_args(cluster: &EtcdCluster, sale: &str, id: &str, data: &DataDir) -> Vec<String> {
    [
        "--shards",
        "2",
        "--data-dir",
        data.arg(),
        "--cluster-etcd",
        &cluster.endpoints(),
        "--cluster-name",
        sale,
        "--node-id",
        id,
        "--cluster-window",
        "20",
        "--max-order-qty",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Buys `qty` on `node`: `Some(true)` sold, `Some(false)` sold out, `None` a 503.
fn purchase(node: &support::Server, qty: u64) -> Option<bool> {
    let reply = support::post(node, "/api/v1/purchase", &format!("{{\"qty\":{qty}}}"));
    match reply.status {
        200 => Some(reply.json("success").as_deref() == Some("true")),
        503 => None,
        status => panic!("a purchase answered {status}: {}", reply.body),
    }
}

/// Two ticketd nodes (two shards each) sell a sale of 300 through their leases, clients on
/// both, until each answers "sold out": every ticket was sold (a sold out while tickets were
/// left anywhere would leave some unsold), none twice, and the ledger counts each sale. A node
/// killed -9 and restarted on its journal rejoins the sale and answers "sold out" too; the
/// ledger's invariant holds throughout.
#[test]
fn ticketd_nodes_sell_the_cluster_out_exactly_and_survive_a_kill() {
    if !have_etcd() {
        return;
    }
    const CAPACITY: u64 = 300;
    let cluster = EtcdCluster::start("nodes");
    let urls = cluster.endpoints();
    init_sale(&cluster, "sale", 300);
    let data = [DataDir::new("cluster", "n1"), DataDir::new("cluster", "n2")];
    let admin_dir = DataDir::new("cluster", "admin");
    std::fs::create_dir_all(admin_dir.path()).unwrap();
    let token = admin_dir.path().join("token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).unwrap();
    let admin_ports = [free_port(), free_port()];
    let args: Vec<Vec<String>> = (0..2)
        .map(|i| {
            let mut args = node_args(&cluster, "sale", &format!("n{}", i + 1), &data[i]);
            args.extend([
                "--admin-listen".to_string(),
                format!("127.0.0.1:{}", admin_ports[i]),
                "--admin-token-file".to_string(),
                token.to_str().unwrap().to_string(),
            ]);
            args
        })
        .collect();
    let start = |i: usize| {
        let args: Vec<&str> = args[i].iter().map(String::as_str).collect();
        support::Server::start(&args)
    };
    let mut nodes = [start(0), start(1)];
    // Clients on both nodes, 1 to 3 tickets an order, until both say sold out.
    let acked = std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                scope.spawn(move || {
                    let (mut acked, mut sold_out) = (0, 0);
                    let mut qty = 1 + i as u64;
                    while sold_out < 3 {
                        match purchase(node, qty) {
                            Some(true) => acked += qty,
                            Some(false) if qty == 1 => sold_out += 1,
                            // Fewer than asked may be left: the rest go one by one.
                            Some(false) => qty = 1,
                            None => std::thread::sleep(Duration::from_millis(20)),
                        }
                        qty = if qty == 1 { 1 } else { 1 + (acked % 3) };
                    }
                    acked
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<u64>>()
    });
    let total: u64 = acked.iter().sum();
    assert_eq!(
        total, CAPACITY,
        "every ticket sold exactly once before sold out: {acked:?}"
    );
    let rt = etcd::runtime().unwrap();
    let mut etcd = connect(&rt, &cluster, "sale");
    let (ledger, _) = read_ledger(&rt, &mut etcd, None);
    ledger::check(&ledger).unwrap();
    assert_eq!(ledger.pool, Some(0), "{ledger:?}");
    // Each node's /admin/stock is its own: what it sold and holds (tickets its lease placed and
    // then gave back are not stock it has), nothing added by an operator; together they sold
    // the capacity.
    nodes_stock_settles(&admin_ports, CAPACITY, None, "after the sell-out");
    // Node 1 dies mid-sale-out and comes back on its journal: still sold out, nothing sold
    // twice, the ledger whole.
    nodes[0].crash();
    nodes[0] = start(0);
    assert_eq!(purchase(&nodes[0], 1), Some(false), "{}", nodes[0].log());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ledger, _) = read_ledger(&rt, &mut etcd, None);
        ledger::check(&ledger).unwrap();
        let sold: u64 = ledger.nodes.iter().map(|(_, r)| r.sold).sum();
        let unsold: u64 = ledger
            .nodes
            .iter()
            .map(|(_, r)| r.granted + r.in_doubt)
            .sum();
        // Reports settle: every sale reported, nothing left granted.
        if sold == CAPACITY && unsold == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sales never all reported: {ledger:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, out, err) = tool(
        &[
            "cluster",
            "--cluster-etcd",
            &urls,
            "--cluster-name",
            "sale",
            "status",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    // Each node's sold is what its record in the ledger says it sold, every sale reported.
    let (ledger, _) = read_ledger(&rt, &mut etcd, None);
    let recorded: Vec<u64> = ["n1", "n2"]
        .iter()
        .map(|id| {
            let record = ledger.nodes.iter().find(|(n, _)| n == id);
            record.map_or(0, |(_, r)| r.sold)
        })
        .collect();
    nodes_stock_settles(
        &admin_ports,
        CAPACITY,
        Some(&recorded),
        "after node 1's restart",
    );
}

/// A node stopped gracefully (SIGTERM) gives its lease back before it exits: its record holds
/// nothing granted and nothing in doubt, the pool has every ticket it did not sell, and it sells
/// again after a restart.
#[test]
fn a_stopped_node_gives_its_lease_back() {
    if !have_etcd() {
        return;
    }
    let cluster = EtcdCluster::start("drain");
    init_sale(&cluster, "sale", 300);
    let data = DataDir::new("cluster", "drain");
    let args = node_args(&cluster, "sale", "n1", &data);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut node = support::Server::start(&args);
    for _ in 0..5 {
        assert_eq!(purchase(&node, 1), Some(true), "{}", node.log());
    }
    let rt = etcd::runtime().unwrap();
    let mut etcd = connect(&rt, &cluster, "sale");
    let record = |etcd: &mut Etcd| {
        let (ledger, _) = read_ledger(&rt, etcd, None);
        ledger::check(&ledger).unwrap();
        let record = ledger
            .nodes
            .iter()
            .find(|(id, _)| id == "n1")
            .map(|(_, r)| *r);
        (record.expect("the node's record"), ledger.pool)
    };
    let (before, _) = record(&mut etcd);
    assert!(before.granted > 0, "the node holds a lease: {before:?}");
    node.signal(libc::SIGTERM);
    let status = node
        .wait_exit(Duration::from_secs(10))
        .expect("the node exits");
    assert!(status.success(), "{status:?}: {}", node.log());
    let (after, pool) = record(&mut etcd);
    assert_eq!(
        (after.granted, after.in_doubt, after.sold),
        (0, 0, 5),
        "{before:?} -> {after:?}: {}",
        node.log()
    );
    assert_eq!(pool, Some(295));
    let mut node = support::Server::start(&args);
    assert_eq!(purchase(&node, 2), Some(true), "{}", node.log());
    node.crash();
}

/// The admin token of the nodes' test.
const ADMIN_TOKEN: &str = "cluster-admin-token-0123456789abcdef";

/// Waits until every node's `GET /admin/stock` (on its admin port) balances, `stock == sold +
/// available` with nothing `added`, with nothing available (the sale is sold out), and the
/// nodes' `sold` add up to `capacity` (and, given `recorded`, each is what the node's record in
/// the ledger says it sold). A node's other shards' numbers are published snapshots, at most
/// 100 ms old (a ticket one shard sent and another sold is in neither meanwhile).
fn nodes_stock_settles(ports: &[u16], capacity: u64, recorded: Option<&[u64]>, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut bodies = Vec::new();
        let mut sold_total = 0;
        let mut balanced = true;
        for (i, &port) in ports.iter().enumerate() {
            let r = support::admin_request(port, "GET", "/admin/stock", Some(ADMIN_TOKEN), "");
            assert_eq!(r.status, 200, "{}", r.body);
            let field = |f: &str| r.json(f).unwrap().parse::<u64>().unwrap();
            let (stock, added) = (field("stock"), field("added"));
            let (sold, available) = (field("sold"), field("available"));
            balanced &= available == 0 && stock == sold && added == 0;
            balanced &= recorded.is_none_or(|r| r[i] == sold);
            sold_total += sold;
            bodies.push(r.body);
        }
        if balanced && sold_total == capacity {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{context}: the nodes' /admin/stock never balanced: {bodies:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Seeds of the nemesis run in the suite (`NEMESIS_SEEDS` overrides; `NEMESIS_SEED` runs one).
const NEMESIS_SEEDS: u64 = 20;

/// How long the nemesis works on each seed's sale before it heals everything, in the suite
/// (`NEMESIS_SECS` overrides: the 60 s runs, outside the suite's time).
const NEMESIS_FOR: Duration = Duration::from_secs(5);

/// How long a paused node stays stopped: past `liveness::FENCE_AFTER`, so its peers fence it.
const NEMESIS_PAUSE: Duration = Duration::from_millis(4_000);

/// A client's wait for one answer: longer than an order may wait for the lease
/// (`ORDER_WAIT_MAX`); past it the outcome is unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(7);

/// The window of the nemesis nodes: a fence strands at most this many tickets per node until
/// the node rejoins.
const NEMESIS_WINDOW: u64 = 20;

/// One order as a client saw it: tickets asked, the outcome, when asked, when answered.
type Order = (u64, Seen, Instant, Instant);

/// What a client saw of one order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Sold,
    SoldOut,
    /// A 503, a timeout, a reset: the order may or may not have been made.
    Unknown,
}

/// One purchase of `qty` on `addr`, on a connection of its own, with [`CLIENT_TIMEOUT`].
fn nemesis_purchase(addr: std::net::SocketAddr, qty: u64) -> Seen {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return Seen::Unknown;
    };
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let body = format!("{{\"qty\":{qty}}}");
    let request = format!(
        "POST /api/v1/purchase HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return Seen::Unknown;
    }
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    if !text.starts_with("HTTP/1.1 200") {
        return Seen::Unknown;
    }
    if text.contains("\"success\":true") {
        Seen::Sold
    } else if text.contains("\"success\":false") {
        Seen::SoldOut
    } else {
        Seen::Unknown
    }
}

/// The nemesis, one seed: three ticketd nodes (one or two shards) sell a sale under clients on
/// every node while etcd members are killed -9 and restarted, the leader paused, ticketd nodes
/// killed -9 and restarted on their journals, and one node paused past the fencing time while
/// it holds a lease. The ledger's invariant is checked at samples throughout. Then everything
/// heals, clients buy until every node says sold out with nothing left in the pool or in doubt,
/// and the checker reads the clients' history: no more tickets acknowledged than the capacity;
/// after the nodes stop, their journals hold every acknowledged sale and exactly the sales the
/// ledger counts, and every ticket was sold (none lost, none stranded).
fn nemesis(cluster: &mut EtcdCluster, seed: u64) {
    let mut dice = support::rng::Rng(seed);
    let sale = format!("nemesis-{seed}");
    let nemesis_for = std::env::var("NEMESIS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(NEMESIS_FOR, Duration::from_secs);
    // About what the clients buy while the nemesis works: the sale runs through it.
    let scale = nemesis_for.as_secs().max(1) / NEMESIS_FOR.as_secs();
    let capacity = (600 + dice.below(900)) * scale.max(1);
    let urls = cluster.endpoints();
    init_sale(cluster, &sale, capacity);
    let data: Vec<DataDir> = (0..3)
        .map(|i| DataDir::new("nemesis", &format!("{seed}-n{i}")))
        .collect();
    let args: Vec<Vec<String>> = (0..3)
        .map(|i| {
            let shards = 1 + dice.below(2);
            vec![
                "--shards".into(),
                shards.to_string(),
                "--data-dir".into(),
                data[i].arg().into(),
                "--cluster-etcd".into(),
                urls.clone(),
                "--cluster-name".into(),
                sale.clone(),
                "--node-id".into(),
                format!("n{i}"),
                "--cluster-window".into(),
                NEMESIS_WINDOW.to_string(),
                "--max-order-qty".into(),
                "4".into(),
            ]
        })
        .collect();
    let start = |i: usize| {
        let args: Vec<&str> = args[i].iter().map(String::as_str).collect();
        support::Server::start(&args)
    };
    let mut servers: Vec<Option<support::Server>> = (0..3).map(|i| Some(start(i))).collect();
    let addrs: Arc<Mutex<Vec<Option<std::net::SocketAddr>>>> = Arc::new(Mutex::new(
        servers.iter().map(|s| s.as_ref().map(|s| s.addr)).collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    // (tickets asked, what the client saw, when it asked, when it was answered)
    let history: Arc<Mutex<Vec<Order>>> = Arc::default();
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let (addrs, stop, history) = (addrs.clone(), stop.clone(), history.clone());
            std::thread::spawn(move || {
                let mut n = seed * 7 + i as u64;
                while !stop.load(Ordering::Relaxed) {
                    let addr = addrs.lock().unwrap()[i];
                    let Some(addr) = addr else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    n += 1;
                    let qty = 1 + n % 4;
                    let asked = Instant::now();
                    let seen = nemesis_purchase(addr, qty);
                    let order = (qty, seen, asked, Instant::now());
                    history.lock().unwrap().push(order);
                    if seen != Seen::Sold {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            })
        })
        .collect();
    let rt = etcd::runtime().unwrap();
    let mut etcd = connect(&rt, cluster, &sale);
    let began = Instant::now();
    // The paused node, and when it is resumed.
    let paused = dice.below(3) as usize;
    let pause_at = Duration::from_millis(300 + dice.below(700));
    let mut pause: Option<Instant> = None;
    let mut member_down: Option<(usize, Instant)> = None;
    let mut member_paused: Option<(usize, Instant)> = None;
    let mut node_down: Option<(usize, Instant)> = None;
    let mut samples = 0;
    while began.elapsed() < nemesis_for {
        let now = Instant::now();
        if pause.is_none()
            && began.elapsed() >= pause_at
            && node_down.is_none_or(|(i, _)| i != paused)
        {
            servers[paused].as_ref().unwrap().signal(libc::SIGSTOP);
            pause = Some(now + NEMESIS_PAUSE);
        }
        if let Some((i, until)) = member_down {
            if now >= until {
                cluster.restart(i);
                member_down = None;
            }
        }
        if let Some((i, until)) = member_paused {
            if now >= until {
                cluster.resume(i);
                member_paused = None;
            }
        }
        if let Some((i, until)) = node_down {
            if now >= until {
                let server = start(i);
                addrs.lock().unwrap()[i] = Some(server.addr);
                servers[i] = Some(server);
                node_down = None;
            }
        }
        match dice.below(4) {
            0 if member_down.is_none() && member_paused.is_none() => {
                // The leader half the time.
                let i = match dice.below(2) {
                    0 => cluster.leader().unwrap_or(0),
                    _ => dice.below(3) as usize,
                };
                cluster.kill(i);
                member_down = Some((i, now + Duration::from_millis(300 + dice.below(900))));
            }
            1 if member_down.is_none() && member_paused.is_none() => {
                if let Some(i) = cluster.leader() {
                    cluster.pause(i);
                    member_paused = Some((i, now + Duration::from_millis(300 + dice.below(900))));
                }
            }
            2 if node_down.is_none() => {
                let i = dice.below(3) as usize;
                if i != paused || pause.is_none() {
                    addrs.lock().unwrap()[i] = None;
                    servers[i].as_mut().unwrap().crash();
                    servers[i] = None;
                    node_down = Some((i, now + Duration::from_millis(200 + dice.below(600))));
                }
            }
            _ => {
                // A sample of the ledger at one revision (when a quorum answers soon).
                let deadline = Instant::now() + Duration::from_millis(500);
                if let Ok((ledger, _)) = rt.block_on(etcd.ledger(None, deadline)) {
                    ledger::check(&ledger)
                        .unwrap_or_else(|e| panic!("seed {seed}: {e:?} {ledger:?}"));
                    samples += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(150 + dice.below(300)));
    }
    // Heal: every member up, the paused node resumed (past its pause), every node up.
    if let Some((i, _)) = member_down {
        cluster.restart(i);
    }
    if let Some((i, _)) = member_paused {
        cluster.resume(i);
    }
    if let Some(until) = pause {
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        if let Some(server) = &servers[paused] {
            server.signal(libc::SIGCONT);
        }
    }
    if let Some((i, _)) = node_down {
        let server = start(i);
        addrs.lock().unwrap()[i] = Some(server.addr);
        servers[i] = Some(server);
    }
    cluster.wait_leader();
    // The clients buy on until the ledger counts every ticket sold, with nothing left in the
    // pool or in doubt (a rejoin gives a fenced node's unsold doubt back to the pool).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ledger, _) = read_ledger(&rt, &mut etcd, None);
        ledger::check(&ledger).unwrap();
        let sold: u64 = ledger.nodes.iter().map(|(_, r)| r.sold).sum();
        if sold == capacity {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: never sold out: {ledger:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    // Every node says sold out now.
    let final_sold = 0;
    for server in servers.iter().flatten() {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match nemesis_purchase(server.addr, 1) {
                Seen::SoldOut => break,
                Seen::Sold => panic!("seed {seed}: sold past the capacity"),
                Seen::Unknown => assert!(Instant::now() < deadline, "seed {seed}: no answer"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let history = history.lock().unwrap();
    let acked: u64 = history
        .iter()
        .filter(|(_, seen, _, _)| *seen == Seen::Sold)
        .map(|(qty, ..)| qty)
        .sum::<u64>()
        + final_sold;
    // Every "sold out" was true when it was said: the tickets sold by orders asked after it
    // (so unsold when it was said) are fewer than it asked, but for the doubt a fence may have
    // stranded then (a window per node) and given back later.
    for &(qty, seen, _, answered) in history.iter() {
        if seen != Seen::SoldOut {
            continue;
        }
        let later: u64 = history
            .iter()
            .filter(|(_, s, asked, _)| *s == Seen::Sold && *asked > answered)
            .map(|(q, ..)| q)
            .sum();
        assert!(
            later < qty + 3 * NEMESIS_WINDOW,
            "seed {seed}: sold out for {qty} while {later} tickets were still sold afterwards"
        );
    }
    assert!(
        acked <= capacity,
        "seed {seed}: acknowledged {acked} of {capacity}"
    );
    // Stop the nodes; their journals hold every acknowledged sale, and exactly what the ledger
    // counts as sold.
    for server in servers.iter_mut().flatten() {
        server.signal(libc::SIGTERM);
        assert!(
            server.wait_exit(Duration::from_secs(20)).is_some(),
            "seed {seed}: a node did not stop"
        );
    }
    let journaled: u64 = data
        .iter()
        .map(|dir| {
            let (code, out, err) = tool(
                &["journal", "inspect", "--json", "--data-dir", dir.arg()],
                &[],
            );
            assert_eq!(code, 0, "{out}{err}");
            let value: serde_json::Value = serde_json::from_str(&out).unwrap();
            value["sold"].as_u64().unwrap()
        })
        .sum();
    assert!(
        acked <= journaled,
        "seed {seed}: acknowledged {acked}, journaled {journaled}"
    );
    assert_eq!(
        journaled, capacity,
        "seed {seed}: the journals hold every sale, once"
    );
    let sold_out = history.iter().filter(|o| o.1 == Seen::SoldOut).count();
    let unknown = history.iter().filter(|o| o.1 == Seen::Unknown).count();
    eprintln!(
        "nemesis seed {seed}: capacity {capacity}, {} orders ({acked} tickets acknowledged, \
         {sold_out} sold out, {unknown} unknown), {samples} ledger samples",
        history.len()
    );
}

/// The nemesis over [`NEMESIS_SEEDS`] seeds, each a sale of its own on one etcd cluster.
#[test]
fn nemesis_three_ticketd_nodes_keep_every_ticket_through_kills_pauses_and_fences() {
    if !have_etcd() {
        return;
    }
    let seeds: Vec<u64> = match std::env::var("NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => {
            let n = std::env::var("NEMESIS_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(NEMESIS_SEEDS);
            (0..n).collect()
        }
    };
    let mut cluster = EtcdCluster::start("nemesis-nodes");
    for seed in seeds {
        nemesis(&mut cluster, seed);
    }
}

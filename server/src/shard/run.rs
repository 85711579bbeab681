//! Start-up and each shard's life: recover the journal, start one pinned executor per CPU, and on
//! each, build the shard's core and glue, start its tasks and its transport, serve until a stop,
//! then leave with the others.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use proto_http::Limits;

use super::core::{CoreCluster, CoreConfig, ShardCore};
use super::{tasks, JournalFile, MailCounts, Mailbox, Message, Shard, ShardParts, LISTEN_BACKLOG};
use crate::app::admin::Admin;
use crate::app::board::Board;
use crate::app::cors::Cors;
use crate::app::latency::{self, Recorder};
use crate::app::rate_limit;
use crate::config::{Config, Durability, Mode};
use crate::durability::journal::{self, Recovered, ShardStart, Store, Tail, Writer};
use crate::forward::forwarder::Forwarder;
use crate::forward::upstream::UpstreamConfig;
use crate::net::connection::ConnLimits;
use crate::net::{sockets, uring, Transport};
use crate::process::notify::{Heartbeats, Notifier, Watchdog};
use crate::process::startup::{StartError, LOCK_FILE};
use crate::stock::rebalance::COORDINATOR;

/// Messages a peer channel holds before senders wait: reports are small and superseded by the
/// next one, and protocol messages are answered at once, so a short queue is plenty.
const MESH_CHANNEL_CAPACITY: usize = 64;

/// Runs the server until a stop signal; returns once every shard has exited. Tells systemd
/// through `notifier` when every shard listens, and pings its watchdog if one is asked for.
pub fn run(config: Config, stop: Arc<AtomicBool>, notifier: Notifier) -> Result<(), StartError> {
    let vacancy = crate::process::startup::vacancy_address(&config)?;
    let placement = crate::process::startup::placement(&config)?;
    let shards = placement.len();
    crate::process::startup::check_io_uring()?;
    crate::process::startup::ensure_memlock(shards)?;
    let transport = Transport::select()?;
    let addr = crate::process::startup::probe_address(config.listen_addr())?;
    // Before any shard starts, so an unwritable directory is a start-up failure, not a shard's.
    let latency_origin = match &config.latency_dump {
        Some(dir) => Some(latency::prepare(dir, shards).map_err(StartError::LatencyDump)?),
        None => None,
    };
    // Last of the checks: the cheap ones fail a doomed start before anything touches the disk.
    let journaled = recover(&config, shards)?;
    let admin = admin_state(&config, journaled.as_ref())?;
    // Bound here, before any shard runs, like the public port: it accepts (into its backlog)
    // from the moment the first shard answers, and a taken port fails the start in one line.
    let mut admin_listener = match (admin, config.admin_listen) {
        (Some(_), Some(addr)) => Some(bind_admin(addr)?),
        _ => None,
    };
    // A cluster node reaches etcd before it serves: a node that cannot would sell nothing.
    let mut link = super::node::start_link(&config)?;
    let cluster = config.cluster.as_ref().map(|c| CoreCluster {
        window: c.window,
        origin: Instant::now(),
    });
    let mesh = MeshBuilder::full(shards, MESH_CHANNEL_CAPACITY);
    let (bound_tx, bound_rx) = mpsc::channel::<Result<usize, String>>();
    let config = Arc::new(config);
    let watchdog = Watchdog::from_env(&notifier);
    let heartbeats = Heartbeats::new(shards);
    // Once per process: every shard publishes into it and reads it for `/metrics`.
    // What every shard reads and none writes on the request path, made once for the process.
    let shared = Shared {
        board: Board::leak(shards),
        mail: MailCounts::leak(shards),
        cors: Cors::leak(&config.cors_allow_origins),
        docs: crate::app::routes::docs(config.mode, config.max_order_qty),
        admin,
    };

    // What the shards sell: the journal's tickets left, or the configured stock.
    let stock = journaled
        .as_ref()
        .map_or(config.initial_stock, |j| j.recovered.available);
    let mut handles = Vec::with_capacity(shards);
    for (index, cpu) in placement.iter().enumerate() {
        let place = match cpu {
            Some(cpu) => Placement::Fixed(*cpu),
            None => Placement::Unbound,
        };
        let (config, mesh, stop, bound_tx) =
            (config.clone(), mesh.clone(), stop.clone(), bound_tx.clone());
        let heartbeat = watchdog.map(|w| (heartbeats.clone(), w.heartbeat_period()));
        let journal = journaled.as_ref().map(|j| JournalStart {
            dir: j.dir.clone(),
            start: j.recovered.shards[index].clone(),
            compact_bytes: config.journal_compact_bytes,
        });
        let admin_listener = admin_listener.take().filter(|_| index == COORDINATOR);
        let link = link.take().filter(|_| index == COORDINATOR);
        // Unpinned shards share the process's CPUs (more shards than CPUs).
        let shares_cpu = cpu.is_none() && shards > 1;
        let handle = LocalExecutorBuilder::new(place)
            .name(&format!("shard-{index}"))
            .spawn(move || async move {
                // On this shard's own executor, so it beats only while the shard runs tasks.
                if let Some((heartbeats, period)) = heartbeat {
                    glommio::spawn_local(heartbeats.beat(index, period)).detach();
                }
                let prepared = Prepared {
                    addr,
                    shares_cpu,
                    admin_listener,
                    transport,
                    latency_origin,
                    vacancy,
                    stock,
                    journal,
                    shared,
                    cluster,
                    link,
                };
                shard_main(config, prepared, mesh, stop, bound_tx).await
            })
            .map_err(|e| executor_error(&e.to_string()))?;
        handles.push(handle);
    }
    drop(bound_tx);

    let mut failure = bound(&bound_rx, shards);
    if failure.is_none() {
        tracing::info!(
            addr = %addr,
            shards,
            cpus = ?placement,
            transport = transport.as_str(),
            config = %config.summary(),
            "ticketd listening"
        );
        // A signal during start-up already sent STOPPING=1; READY=1 after it would confuse systemd.
        if !stop.load(Ordering::SeqCst) {
            notifier.ready(addr, shards, stock);
        }
        if let Some(watchdog) = watchdog {
            watchdog.spawn(notifier, heartbeats, stop.clone());
        }
    } else {
        stop.store(true, Ordering::SeqCst);
    }
    for handle in handles {
        if let Err(e) = handle.join() {
            failure = failure.or(Some(executor_error(&e.to_string())));
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Waits until every shard listens; the first shard's failure to, if any.
fn bound(bound_rx: &mpsc::Receiver<Result<usize, String>>, shards: usize) -> Option<StartError> {
    let mut failure = None;
    for _ in 0..shards {
        match bound_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failure = failure.or(Some(StartError::Executor(e))),
            Err(_) => break, // a shard died before binding; its join below says why
        }
    }
    failure
}

/// A run with `--durability sync`: the data directory's lock (held until the process exits) and
/// what recovery found.
struct Journaled {
    /// The `flock` on the data directory.
    _lock: std::fs::File,
    /// The data directory.
    dir: std::path::PathBuf,
    /// The stock, the new epoch's shard files.
    recovered: Recovered,
}

/// Recovers the journal before any shard starts (monolith and vacancy with `--durability sync`):
/// on a short-lived executor, replays the last run's journals, reconciles tickets in transit and
/// writes the new epoch for this run's shard count. The ticket tier holds no stock and has none.
fn recover(config: &Config, shards: usize) -> Result<Option<Journaled>, StartError> {
    if config.mode == Mode::Ticket {
        return Ok(None);
    }
    if config.durability == Durability::None {
        tracing::warn!(
            "--durability none: sales are kept in memory only, as the original system did; a \
             restart resets the stock to INITIAL_STOCK and every sale is forgotten"
        );
        return Ok(None);
    }
    let (lock, dir) = crate::process::startup::lock_data_dir(&config.data_dir)?;
    // A cluster node's stock is what its lease placed: a new node starts with none.
    let stock = match config.cluster {
        Some(_) => 0,
        None => config.initial_stock,
    };
    let store_dir = dir.clone();
    let settings = idempotency_settings(config);
    let keep = journal::KeepKeys {
        now_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ttl_ms: settings.ttl_ms(),
        per_shard_max: settings.max_keys,
    };
    let recovered = LocalExecutorBuilder::new(Placement::Unbound)
        .name("recovery")
        .spawn(move || async move {
            let store = Store::Disk(store_dir);
            store.probe_device(LOCK_FILE).await;
            journal::open_keeping(&store, shards, stock, keep).await
        })
        .map_err(|e| executor_error(&e.to_string()))?
        .join()
        .map_err(|e| executor_error(&e.to_string()))?
        .map_err(StartError::Journal)?;
    super::node::check_journal(config, &recovered)?;
    for warning in &recovered.warnings {
        tracing::warn!(%warning, "journal");
    }
    tracing::info!(
        dir = %dir.display(),
        epoch = recovered.epoch,
        stock = recovered.stock,
        sold = recovered.sold,
        available = recovered.available,
        "journal recovered"
    );
    Ok(Some(Journaled {
        _lock: lock,
        dir,
        recovered,
    }))
}

/// Turns glommio's start errors into ours, with the fix for the one operators meet.
fn executor_error(text: &str) -> StartError {
    if text.contains("MemLockLimit") {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into a local of the right type.
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
        return StartError::MemLockTooLow {
            have: limit.rlim_cur,
            hard: limit.rlim_max,
        };
    }
    StartError::Executor(text.to_string())
}

/// The admin listener's socket: no SO_REUSEPORT, so a port another process holds fails the
/// start instead of sharing its connections.
fn bind_admin(addr: SocketAddr) -> Result<OwnedFd, StartError> {
    match std::net::TcpListener::bind(addr) {
        Ok(listener) => Ok(listener.into()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(StartError::PortInUse(addr)),
        Err(e) => Err(StartError::Bind(addr, e)),
    }
}

/// A listening socket with SO_REUSEPORT and our backlog.
///
/// TCP_NODELAY is set here too: Linux copies it to accepted sockets, which saves the uring
/// transport a syscall per connection (it checks the first one).
fn listen(addr: SocketAddr) -> std::io::Result<OwnedFd> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// What a shard serves with: the glommio listener, or the uring driver that owns the listener.
enum Serving {
    Glommio(TcpListener),
    /// Boxed: the driver is large and made once per shard.
    Uring(Box<uring::Driver>),
}

/// Where a shard's journal starts.
struct JournalStart {
    /// The data directory.
    dir: std::path::PathBuf,
    /// The shard's file and ledger in the new epoch.
    start: ShardStart,
    /// `--journal-compact-bytes`.
    compact_bytes: u64,
}

/// What start-up settled before a shard runs.
struct Prepared {
    /// Where to listen.
    addr: SocketAddr,
    /// Whether this shard shares its CPU with other shards (more shards than CPUs).
    shares_cpu: bool,
    /// The admin listener's socket, bound by start-up (the coordinator's only).
    admin_listener: Option<OwnedFd>,
    /// How sockets are driven.
    transport: Transport,
    /// The latency histograms' common start, with `--latency-dump`.
    latency_origin: Option<latency::Origin>,
    /// Ticket mode: the vacancy service's address.
    vacancy: Option<SocketAddr>,
    /// Tickets to sell, over all shards (from the journal, or the configured stock).
    stock: u64,
    /// This shard's journal, with `--durability sync`.
    journal: Option<JournalStart>,
    /// What every shard reads, made once for the process.
    shared: Shared,
    /// A cluster node's lease settings (every shard's core is told it is one).
    cluster: Option<CoreCluster>,
    /// A cluster node's etcd thread, for the coordinator.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    link: Option<super::node::Link>,
}

/// What start-up makes once for every shard: read by all, written on no request path.
#[derive(Clone, Copy)]
struct Shared {
    /// Where shards publish their numbers for `/metrics` (each writes only its own slot).
    board: &'static Board,
    /// Messages sent to each shard (see [`MailCounts`]).
    mail: &'static MailCounts,
    /// The CORS policy.
    cors: &'static Cors,
    /// `/openapi.json` and `/docs`, built and compressed once.
    docs: &'static crate::app::docs::Docs,
    /// The admin listener's state (`--admin-listen`), served by the coordinator.
    admin: Option<&'static Admin>,
}

/// The admin listener's state, with `--admin-listen`: the token, and the journal's numbers at
/// start (kept for the process).
fn admin_state(
    config: &Config,
    journaled: Option<&Journaled>,
) -> Result<Option<&'static Admin>, StartError> {
    let (stock, sold) = journaled.map_or((config.initial_stock, 0), |j| {
        (j.recovered.stock, j.recovered.sold)
    });
    let Some(mut admin) = crate::process::startup::admin(config, stock, sold)? else {
        return Ok(None);
    };
    if let Some(j) = journaled {
        admin.journal_epoch = j.recovered.epoch;
        admin.journal_files = j.recovered.shards.iter().map(|s| s.file.clone()).collect();
    }
    Ok(Some(Box::leak(Box::new(admin))))
}

/// One shard's life on its executor.
async fn shard_main(
    config: Arc<Config>,
    mut prepared: Prepared,
    mesh: MeshBuilder<Message, Full>,
    stop: Arc<AtomicBool>,
    bound_tx: mpsc::Sender<Result<usize, String>>,
) -> Result<(), String> {
    let fail = |text: String| {
        let _ = bound_tx.send(Err(text.clone()));
        Err(text)
    };
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|e| format!("joining the shard mesh: {e}"))?;
    let me = senders.peer_id();
    let shards = senders.nr_consumers().max(1);
    let addr = prepared.addr;
    let listener = match listen(addr) {
        Ok(listener) => listener,
        Err(e) => return fail(format!("shard {me} cannot listen on {addr}: {e}")),
    };
    let journal = match open_journal(prepared.journal.take(), me, shards, prepared.stock).await {
        Ok(journal) => journal,
        Err(e) => return fail(format!("shard {me} cannot open its journal: {e}")),
    };
    let (journal, keys) = journal;
    let (writer, tail) = journal.unzip();
    let mut core = ShardCore::new(
        core_config(
            &config,
            me,
            shards,
            prepared.stock,
            prepared.vacancy.is_some(),
            prepared.shared,
            prepared.cluster,
        ),
        tail,
    );
    core.restore_keys(&keys);
    let (shard, [journal_kicked, mail_kicked, cluster_kicked]) =
        new_shard(&config, &prepared, me, core, writer.as_ref());
    let dump = match (&config.latency_dump, prepared.latency_origin) {
        (Some(dir), Some(origin)) => match latency::Dump::open(dir, me, origin) {
            Ok(dump) => Some(dump),
            Err(e) => return fail(format!("shard {me} cannot open its latency log: {e}")),
        },
        _ => None,
    };
    // The transport is ready before the shard reports itself bound, so a ring that cannot be
    // set up fails the start instead of a shard later.
    let serving = match transport(
        &shard,
        &config,
        prepared.transport,
        listener,
        prepared.shares_cpu,
    ) {
        Ok(serving) => serving,
        Err(e) => return fail(format!("shard {me} cannot set up its io_uring: {e}")),
    };
    let admin = match (prepared.shared.admin, prepared.admin_listener.take()) {
        // SAFETY: the descriptor is a listening TCP socket that start-up bound and handed to
        // this shard alone.
        (Some(admin), Some(fd)) => {
            Some((unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) }, admin))
        }
        _ => None,
    };
    let _ = bound_tx.send(Ok(me));
    let dumper = dump.map(|dump| start_dumper(&shard, dump, config.latency_dump_interval));
    let senders = Rc::new(senders);
    spawn_tasks(
        &shard,
        &senders,
        &mut receivers,
        writer,
        journal_kicked,
        mail_kicked,
        config.cache_ttl / 2,
    );
    #[cfg(feature = "cluster")]
    if let Some(link) = prepared.link.take() {
        glommio::spawn_local(tasks::cluster(shard.clone(), link, cluster_kicked)).detach();
    }
    #[cfg(not(feature = "cluster"))]
    drop(cluster_kicked);

    if let Some((listener, admin)) = admin {
        let serving = crate::net::admin::serve(shard.clone(), listener, admin, stop.clone());
        glommio::spawn_local(serving).detach();
    }
    let served = serve(&shard, serving, &config, &stop).await;
    // The drain is over: no connection is left to record anything, so this dump is the last.
    if let Some((stop_dumper, dumped)) = dumper {
        let _ = stop_dumper.send(()).await;
        dumped.await;
    }
    tasks::leave(&shard, Instant::now() + config.shutdown_timeout).await;
    log_commits(&shard, me);
    senders.close();
    served
}

/// The glue around `core`, and the receiving ends of its journal and mail bells.
fn new_shard(
    config: &Config,
    prepared: &Prepared,
    me: usize,
    core: ShardCore,
    writer: Option<&Writer>,
) -> (Rc<Shard>, [LocalReceiver<()>; 3]) {
    let (journal_bell, journal_kicked) = local_channel::new_bounded(1);
    let (mail_bell, mail_kicked) = local_channel::new_bounded(1);
    let (cluster_bell, cluster_kicked) = local_channel::new_bounded(1);
    let parts = ShardParts {
        core,
        mail_bell,
        journal_bell,
        cluster_bell,
        journal_file: writer.map(|w| JournalFile {
            fd: std::cell::Cell::new(w.raw_fd()),
            path: RefCell::new(w.path()),
        }),
        forwarder: None,
        mailbox: Mailbox::new(prepared.shared.mail, me),
        head_timeout: config.head_timeout,
        idle_timeout: config.idle_timeout,
        latency: prepared
            .latency_origin
            .map(|_| RefCell::new(Recorder::default())),
    };
    let shard = build_shard(config, parts, prepared.vacancy);
    (shard, [journal_kicked, mail_kicked, cluster_kicked])
}

/// Serves with the shard's transport until a stop and the drain are over.
async fn serve(
    shard: &Rc<Shard>,
    serving: Serving,
    config: &Config,
    stop: &Arc<AtomicBool>,
) -> Result<(), String> {
    match serving {
        Serving::Uring(driver) => (*driver).run(stop).await,
        Serving::Glommio(listener) => {
            let (max, grace) = (config.connections_max, config.shutdown_timeout);
            sockets::serve(shard, listener, max, grace, stop).await;
            Ok(())
        }
    }
}

/// The glue around a shard's core; in ticket mode with its forwarder, whose answers ring the
/// shard (through a weak reference: the forwarder lives inside the shard).
fn build_shard(config: &Config, mut parts: ShardParts, vacancy: Option<SocketAddr>) -> Rc<Shard> {
    Rc::new_cyclic(|weak: &std::rc::Weak<Shard>| {
        parts.forwarder = vacancy.map(|addr| {
            let weak = weak.clone();
            Rc::new(Forwarder::new(
                addr,
                UpstreamConfig::from_config(config),
                config.http_max_connections,
                config.http_keepalive_connections,
                Box::new(move || {
                    if let Some(shard) = weak.upgrade() {
                        shard.collect_upstream();
                    }
                }),
            ))
        });
        Shard::new(parts)
    })
}

/// The shard's transport, ready to serve.
fn transport(
    shard: &Rc<Shard>,
    config: &Config,
    transport: Transport,
    listener: OwnedFd,
    shares_cpu: bool,
) -> std::io::Result<Serving> {
    Ok(match transport {
        // SAFETY: the fd is a bound, listening TCP socket we own; glommio takes ownership of it.
        Transport::Glommio => {
            Serving::Glommio(unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) })
        }
        Transport::Uring => Serving::Uring(Box::new(uring::Driver::new(
            shard.clone(),
            listener,
            config.connections_max,
            config.shutdown_timeout,
            shares_cpu,
        )?)),
    })
}

/// Starts the latency dumper; returns the channel that stops it and the task to await.
fn start_dumper(
    shard: &Rc<Shard>,
    dump: latency::Dump,
    period: Duration,
) -> (local_channel::LocalSender<()>, glommio::Task<()>) {
    let (stop_tx, stop_rx) = local_channel::new_bounded::<()>(1);
    let shard = shard.clone();
    let task = glommio::spawn_local(async move {
        let recorder = shard
            .latency
            .as_ref()
            .expect("recording is on when dumping");
        dump.run(recorder, period, stop_rx).await;
    });
    (stop_tx, task)
}

/// The journal's line at exit: what the group commits did.
fn log_commits(shard: &Shard, me: usize) {
    if let Some(stats) = shard.core.borrow().commit_stats() {
        tracing::info!(
            shard = me,
            commits = stats.commits,
            changes = stats.changes,
            changes_per_commit = stats.changes as f64 / stats.commits.max(1) as f64,
            commit_us_mean = stats.busy_us as f64 / stats.commits.max(1) as f64,
            "journal"
        );
    }
}

/// What the shard's core is, from the configuration.
fn core_config(
    config: &Config,
    me: usize,
    shards: usize,
    stock: u64,
    forwards: bool,
    shared: Shared,
    cluster: Option<CoreCluster>,
) -> CoreConfig {
    CoreConfig {
        mode: config.mode,
        shard: me,
        shards,
        stock,
        max_order_qty: config.max_order_qty,
        forward_cache_ttl: forwards.then_some(config.cache_ttl),
        limits: ConnLimits {
            http: Limits {
                head_bytes_max: config.head_bytes_max,
                target_bytes_max: config.target_bytes_max,
                body_bytes_max: config.body_bytes_max as u64,
                ..Limits::default()
            },
            headers_max: config.headers_max,
        },
        cors: shared.cors,
        board: shared.board,
        docs: shared.docs,
        rate_limit: rate_limit::Settings {
            per_second: config.rate_limit_purchases_per_second,
            burst: config.rate_limit_burst,
            all_routes: config.rate_limit_all_routes,
        },
        idempotency: idempotency_settings(config),
        cluster,
    }
}

/// The `Idempotency-Key` table's limits, from the configuration.
fn idempotency_settings(config: &Config) -> crate::app::idempotency::Settings {
    crate::app::idempotency::Settings {
        ttl: config.idempotency_ttl,
        max_keys: config.idempotency_keys_max,
    }
}

/// Opens this shard's journal file on its executor, with `--durability sync`.
async fn open_journal(
    journal: Option<JournalStart>,
    me: usize,
    shards: usize,
    stock: u64,
) -> Result<(Option<(Writer, Tail)>, Vec<journal::KeyRecord>), journal::JournalError> {
    let Some(j) = journal else {
        return Ok((None, Vec::new()));
    };
    let keys = j.start.keys.clone();
    let slice = j.start.ledger.available();
    let store = Store::Disk(j.dir);
    store.probe_device(LOCK_FILE).await;
    let (writer, tail) = Writer::open(&store, j.start, j.compact_bytes).await?;
    assert_eq!(
        slice,
        crate::stock::slice::allotment(stock, shards, me),
        "the journal's slice is this shard's allotment of the stock"
    );
    Ok((Some((writer, tail)), keys))
}

/// Starts the shard's tasks besides the transport (see [`tasks`]).
fn spawn_tasks(
    shard: &Rc<Shard>,
    senders: &Rc<Senders<Message>>,
    receivers: &mut glommio::channels::channel_mesh::Receivers<Message>,
    writer: Option<Writer>,
    journal_kicked: LocalReceiver<()>,
    mail_kicked: LocalReceiver<()>,
    report_period: Duration,
) {
    glommio::spawn_local(tasks::clock(shard.clone())).detach();
    if let Some(forwarder) = &shard.forwarder {
        forwarder.start();
    }
    if let Some(writer) = writer {
        glommio::spawn_local(tasks::journal(shard.clone(), writer, journal_kicked)).detach();
    }
    glommio::spawn_local(tasks::reporter(
        shard.clone(),
        senders.clone(),
        report_period,
    ))
    .detach();
    glommio::spawn_local(tasks::flusher(shard.clone(), mail_kicked, senders.clone())).detach();
    glommio::spawn_local(tasks::publisher(shard.clone())).detach();
    tasks::spawn_receivers(shard, receivers);
}

//! The ledger's transactions carried out on a real etcd cluster (`--features cluster`): reads at
//! one revision, the plans of [`ledger`] as etcd transactions, and the retry loop around them.
//! Every decision (what to write, under which guard, what a read means) is [`ledger`]'s; this
//! module only moves bytes and retries.
//!
//! A transaction whose guard failed is planned again from a fresh read (another node moved the
//! pool in between); one whose reply was lost (a timeout, a member killed mid-call) is planned
//! again the same way, and [`ledger::plan`] recognises it by its sequence number if etcd had
//! applied it. Reads are etcd's default, linearizable: an empty pool read here is empty at a
//! point after the request began.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use etcd_client::{KeyValue, TxnOpResponse};

use super::gather::{self, GatherView, OpenStep, Opened};
use super::lease::{Call, Reply};
use super::ledger::{self, Corrupt, FenceStep, Fenced, Keys, Ledger, Outcome, Plan, Read};
use super::ledger::{Gather, NodeRecord, Op, Request, Step};
use super::liveness::HEARTBEAT_EVERY;
use super::retire::{self, WriteOffStep, WrittenOff};

/// How long one call to etcd may take before it counts as lost: a leader election in a healthy
/// cluster takes about one election timeout (etcd's default 1 s), and a lost call is retried.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one heartbeat may take: a beat late by more is lost (the next one follows
/// `HEARTBEAT_EVERY` later), never queued behind a hung call.
pub const BEAT_TIMEOUT: Duration = Duration::from_millis(300);

/// How long connecting to an endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long connecting may keep failing before it is an error: a member restarting (or an
/// election) takes seconds; a cluster down for longer fails the node's start, which its
/// supervisor (systemd's `Restart=`) retries.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// The first wait after a failed call; doubled after each failure in a row, up to
/// [`RETRY_BACKOFF_MAX`]: a cluster that lost its quorum is not hammered.
pub const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(20);

/// The longest wait between retries.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The runtime the etcd client runs on (re-exported so that callers need no tokio of their own).
pub use tokio::runtime::Runtime;

/// A current-thread runtime for the etcd client, on the calling thread (never a shard's: a
/// shard runs glommio).
pub fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// What went wrong talking to etcd.
#[derive(Debug)]
pub enum EtcdError {
    /// No answer in time, after retries until the caller's deadline; the last error.
    Unavailable(String),
    /// A key holds something the ledger did not write.
    Corrupt(Corrupt),
    /// etcd refused the call for a reason a retry does not change (a bad argument, a compacted
    /// revision, permissions): said at once, not after the deadline.
    Refused(String),
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::Unavailable(why) => write!(f, "etcd did not answer in time: {why}"),
            EtcdError::Corrupt(corrupt) => corrupt.fmt(f),
            EtcdError::Refused(why) => write!(f, "etcd refused the call: {why}"),
        }
    }
}

/// What `ticketd cluster init` found or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// The ledger was created with this capacity.
    Created(u64),
    /// A ledger exists already, with this capacity.
    Exists(u64),
}

/// A connection to an etcd cluster, for one sale's ledger.
pub struct Etcd {
    /// The client (it balances over the endpoints and reconnects by itself).
    client: Client,
    /// The sale's keys.
    keys: Keys,
    /// What happened to the calls so far.
    counts: Counts,
}

/// What the adapter counts of its calls, for tests and, later, a node's `GET /`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls that failed or timed out (applied or not: the next read tells).
    pub calls_lost: u64,
    /// Transactions etcd refused because a key read had changed since.
    pub guards_failed: u64,
}

/// Waits between retries: doubles from [`RETRY_BACKOFF_MIN`] to [`RETRY_BACKOFF_MAX`].
struct Backoff {
    /// The next wait.
    next: Duration,
    /// When to give up.
    deadline: Instant,
    /// The last failure, for the error.
    last: String,
}

impl Backoff {
    fn new(deadline: Instant) -> Backoff {
        Backoff {
            next: RETRY_BACKOFF_MIN,
            deadline,
            last: "no call made".into(),
        }
    }

    /// Gives up at the deadline (after a failed guard, which is retried at once).
    fn check(&self) -> Result<(), EtcdError> {
        if Instant::now() >= self.deadline {
            let why = "the guard failed on every try (other writers)".to_string();
            return Err(EtcdError::Unavailable(why));
        }
        Ok(())
    }

    /// Records a failure and waits, or gives up at the deadline, or at once when a retry cannot
    /// help ([`lasting`]). A call in flight at the deadline may overrun it by up to
    /// [`CALL_TIMEOUT`].
    async fn failed(&mut self, error: etcd_client::Error) -> Result<(), EtcdError> {
        if lasting(&error) {
            return Err(EtcdError::Refused(error.to_string()));
        }
        self.last = error.to_string();
        let now = Instant::now();
        if now >= self.deadline {
            return Err(EtcdError::Unavailable(std::mem::take(&mut self.last)));
        }
        let wait = self.next.min(self.deadline - now);
        tokio::time::sleep(wait).await;
        self.next = (self.next * 2).min(RETRY_BACKOFF_MAX);
        Ok(())
    }
}

/// Whether `error` is one a retry does not change: the gRPC codes for a bad request or a
/// refusal (InvalidArgument 3, NotFound 5, AlreadyExists 6, PermissionDenied 7,
/// FailedPrecondition 9, OutOfRange 11 (a compacted revision), Unimplemented 12,
/// Unauthenticated 16), and the client's own argument errors. Everything else (Unavailable and
/// DeadlineExceeded, as etcd says "leader changed" or "request timed out", transport and I/O
/// errors) may pass.
fn lasting(error: &etcd_client::Error) -> bool {
    use etcd_client::Error;
    match error {
        Error::GRpcStatus(status) => {
            matches!(i32::from(status.code()), 3 | 5 | 6 | 7 | 9 | 11 | 12 | 16)
        }
        Error::InvalidArgs(_)
        | Error::InvalidUri(_)
        | Error::Utf8Error(_)
        | Error::InvalidMetadataValue(_)
        | Error::EndpointsNotManaged => true,
        _ => false,
    }
}

/// A plan as an etcd transaction: every compare an equal mod revision (0: the key must not
/// exist, said as version 0, which etcd documents for absence), every put in its success branch.
fn txn(plan: &Plan) -> Txn {
    let compares = plan.compares.iter().map(|(key, revision)| match *revision {
        0 => Compare::version(key.as_str(), CompareOp::Equal, 0),
        revision => Compare::mod_revision(key.as_str(), CompareOp::Equal, revision),
    });
    let puts = plan
        .puts
        .iter()
        .map(|(key, value)| TxnOp::put(key.as_str(), value.as_str(), None));
    Txn::new()
        .when(compares.collect::<Vec<_>>())
        .and_then(puts.collect::<Vec<_>>())
}

/// A key's value and mod revision, as the ledger decodes them.
fn raw(kv: &KeyValue) -> (&[u8], i64) {
    (kv.value(), kv.mod_revision())
}

/// The value and mod revision of the one key a get in a transaction read, if it exists.
fn first(response: Option<&TxnOpResponse>) -> Option<&KeyValue> {
    match response {
        Some(TxnOpResponse::Get(get)) => get.kvs().first(),
        _ => None,
    }
}

impl Etcd {
    /// Connects to `endpoints` for the sale `keys` (the client connects lazily per call; this
    /// fails only on a malformed endpoint or when none answers at all).
    ///
    /// etcd-client's balanced channel fails to connect while any endpoint refuses (its issue
    /// #39), as a member that is restarting does: the connect is retried, with backoff, for up
    /// to [`CONNECT_DEADLINE`].
    pub async fn connect(endpoints: &[String], keys: Keys) -> Result<Etcd, EtcdError> {
        let mut backoff = Backoff::new(Instant::now() + CONNECT_DEADLINE);
        loop {
            let options = ConnectOptions::new()
                .with_connect_timeout(CONNECT_TIMEOUT)
                .with_timeout(CALL_TIMEOUT);
            match Client::connect(endpoints, Some(options)).await {
                Ok(client) => {
                    return Ok(Etcd {
                        client,
                        keys,
                        counts: Counts::default(),
                    })
                }
                Err(error) => backoff.failed(error).await?,
            }
        }
    }

    /// The sale's keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// What happened to the calls so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Creates the ledger with `capacity` tickets in the pool, once.
    pub async fn init(&mut self, capacity: u64, deadline: Instant) -> Result<Init, EtcdError> {
        let plan = ledger::init(&self.keys, capacity);
        let mut backoff = Backoff::new(deadline);
        loop {
            match self.client.txn(txn(&plan)).await {
                Ok(response) if response.succeeded() => return Ok(Init::Created(capacity)),
                Ok(_) => break,
                // Applied or not: the read below tells (a lost reply that created it reads as
                // Exists with our capacity, which is the same answer to the operator).
                Err(error) => {
                    self.counts.calls_lost += 1;
                    backoff.failed(error).await?
                }
            }
        }
        let (ledger, _) = self.ledger(None, deadline).await?;
        match ledger.capacity {
            Some(capacity) => Ok(Init::Exists(capacity)),
            None => Err(EtcdError::Corrupt(Corrupt {
                key: self.keys.capacity(),
            })),
        }
    }

    /// The whole ledger at one revision (the latest, or `revision`), and that revision.
    pub async fn ledger(
        &mut self,
        revision: Option<i64>,
        deadline: Instant,
    ) -> Result<(Ledger, i64), EtcdError> {
        let prefix = self.keys.capacity();
        let prefix = prefix
            .strip_suffix("capacity")
            .expect("the capacity key ends so");
        let mut options = GetOptions::new().with_prefix();
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let mut backoff = Backoff::new(deadline);
        let response = loop {
            match self.client.get(prefix, Some(options.clone())).await {
                Ok(response) => break response,
                Err(error) => {
                    self.counts.calls_lost += 1;
                    backoff.failed(error).await?
                }
            }
        };
        // A read at an older revision carries the store's current revision in its header.
        let at = revision.unwrap_or_else(|| response.header().map_or(0, |h| h.revision()));
        let find = |key: String| {
            let kv = response.kvs().iter().find(|kv| kv.key() == key.as_bytes());
            kv.map(KeyValue::value)
        };
        let nodes_prefix = self.keys.nodes();
        let mut nodes = Vec::new();
        for kv in response.kvs() {
            let key = std::str::from_utf8(kv.key()).map_err(|_| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                EtcdError::Corrupt(Corrupt { key })
            })?;
            if key.starts_with(&nodes_prefix) {
                nodes.push((key, kv.value()));
            }
        }
        let capacity = find(self.keys.capacity());
        let pool = find(self.keys.pool());
        let gather = find(self.keys.gather());
        let ledger = ledger::decode_ledger(&self.keys, capacity, pool, gather, nodes)
            .map_err(EtcdError::Corrupt)?;
        Ok((ledger, at))
    }

    /// Node `id`'s view: the pool and its record, read together at one revision.
    async fn view(&mut self, id: &str, backoff: &mut Backoff) -> Result<ledger::View, EtcdError> {
        let read = Txn::new().and_then([
            TxnOp::get(self.keys.pool(), None),
            TxnOp::get(self.keys.node(id), None),
            TxnOp::get(self.keys.gather(), None),
        ]);
        let response = self.read(read, backoff).await?;
        let reads = response.op_responses();
        let pool = first(reads.first()).map(raw);
        let node = first(reads.get(1)).map(raw);
        let gather = first(reads.get(2)).map(raw);
        ledger::decode_view(&self.keys, id, pool, node, gather).map_err(EtcdError::Corrupt)
    }

    /// Sends `plan` once: `true` if etcd applied it; `false` if its guard failed (another writer
    /// came between: read and plan again at once) or the call was lost (applied or not: the next
    /// read tells; after a backoff). Gives up at the backoff's deadline.
    async fn commit(&mut self, plan: &Plan, backoff: &mut Backoff) -> Result<bool, EtcdError> {
        match self.client.txn(txn(plan)).await {
            Ok(response) if response.succeeded() => Ok(true),
            Ok(_) => {
                self.counts.guards_failed += 1;
                backoff.check()?;
                Ok(false)
            }
            Err(error) => {
                self.counts.calls_lost += 1;
                backoff.failed(error).await?;
                Ok(false)
            }
        }
    }

    /// A read-only transaction (its gets at one revision), retried until it answers.
    async fn read(
        &mut self,
        read: Txn,
        backoff: &mut Backoff,
    ) -> Result<etcd_client::TxnResponse, EtcdError> {
        loop {
            match self.client.txn(read.clone()).await {
                Ok(response) => return Ok(response),
                Err(error) => {
                    self.counts.calls_lost += 1;
                    backoff.failed(error).await?
                }
            }
        }
    }

    /// What opening or closing a round reads, at one revision: the pool, the round, and every
    /// node record.
    async fn gather_view(&mut self, backoff: &mut Backoff) -> Result<GatherView, EtcdError> {
        let nodes = GetOptions::new().with_prefix();
        let read = Txn::new().and_then([
            TxnOp::get(self.keys.pool(), None),
            TxnOp::get(self.keys.gather(), None),
            TxnOp::get(self.keys.nodes(), Some(nodes)),
        ]);
        let response = self.read(read, backoff).await?;
        let reads = response.op_responses();
        let corrupt = |key: &[u8]| {
            let key = String::from_utf8_lossy(key).into_owned();
            EtcdError::Corrupt(Corrupt { key })
        };
        let mut view = GatherView::default();
        if let Some(kv) = first(reads.first()) {
            let value = ledger::decode_count(&self.keys.pool(), kv.value());
            view.pool = Read {
                value: Some(value.map_err(EtcdError::Corrupt)?),
                mod_revision: kv.mod_revision(),
            };
        }
        if let Some(kv) = first(reads.get(1)) {
            let value = ledger::decode_gather(&self.keys.gather(), kv.value());
            view.gather = Read {
                value: Some(value.map_err(EtcdError::Corrupt)?),
                mod_revision: kv.mod_revision(),
            };
        }
        if let Some(TxnOpResponse::Get(get)) = reads.get(2) {
            for kv in get.kvs() {
                let key = std::str::from_utf8(kv.key()).map_err(|_| corrupt(kv.key()))?;
                let id = self.keys.node_id(key).ok_or_else(|| corrupt(kv.key()))?;
                let record = ledger::decode_record(key, kv.value()).map_err(EtcdError::Corrupt)?;
                let read = Read {
                    value: Some(record),
                    mod_revision: kv.mod_revision(),
                };
                view.nodes.push((id.to_string(), read));
            }
        }
        Ok(view)
    }

    /// Node `id`'s heartbeats, forever (a task of its own on this runtime: a call retrying
    /// through an election must not stop them): a counter put to `alive/<id>` every
    /// `liveness::HEARTBEAT_EVERY`, each try bounded by [`BEAT_TIMEOUT`]. Beats that landed are
    /// counted in `landed` (what `cluster::liveness` weighs a peer's silence against); an error
    /// no retry can change (permissions on the key) is left in `refused` for the node to report.
    pub fn heartbeats(
        &self,
        id: &str,
        landed: Arc<AtomicU64>,
        refused: Arc<Mutex<Option<String>>>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut client = self.client.clone();
        let key = self.keys.alive(id);
        async move {
            let mut beat = 0u64;
            loop {
                beat += 1;
                let put = client.put(key.clone(), beat.to_string(), None);
                match tokio::time::timeout(BEAT_TIMEOUT, put).await {
                    Ok(Ok(_)) => _ = landed.fetch_add(1, Ordering::Relaxed),
                    Ok(Err(error)) if lasting(&error) => {
                        let mut slot = refused.lock().unwrap_or_else(|e| e.into_inner());
                        *slot = Some(error.to_string());
                    }
                    Ok(Err(_)) | Err(_) => {}
                }
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        }
    }

    /// Every node's heartbeat revision (0: none yet) and record (two reads: a heartbeat older
    /// than its record only delays a fence).
    pub async fn peers(
        &mut self,
        deadline: Instant,
    ) -> Result<Vec<(String, i64, NodeRecord)>, EtcdError> {
        let mut backoff = Backoff::new(deadline);
        let view = self.gather_view(&mut backoff).await?;
        let alives = GetOptions::new().with_prefix();
        let read = Txn::new().and_then([TxnOp::get(self.keys.alives(), Some(alives))]);
        let response = self.read(read, &mut backoff).await?;
        let reads = response.op_responses();
        let beats: Vec<(Vec<u8>, i64)> = match reads.first() {
            Some(TxnOpResponse::Get(get)) => {
                let kvs = get.kvs().iter();
                kvs.map(|kv| (kv.key().to_vec(), kv.mod_revision()))
                    .collect()
            }
            _ => Vec::new(),
        };
        let peers = view.nodes.into_iter().filter_map(|(id, read)| {
            let key = self.keys.alive(&id);
            let beat = beats.iter().find(|(k, _)| k == key.as_bytes());
            Some((id, beat.map_or(0, |(_, rev)| *rev), read.value?))
        });
        Ok(peers.collect())
    }

    /// The gather round as it is now (`None`: none was ever opened): a poll standing in for a
    /// watch on the key.
    pub async fn gather_now(&mut self, deadline: Instant) -> Result<Option<Gather>, EtcdError> {
        let mut backoff = Backoff::new(deadline);
        let read = Txn::new().and_then([TxnOp::get(self.keys.gather(), None)]);
        let response = self.read(read, &mut backoff).await?;
        let reads = response.op_responses();
        let Some(kv) = first(reads.first()) else {
            return Ok(None);
        };
        let gather = ledger::decode_gather(&self.keys.gather(), kv.value());
        gather.map(Some).map_err(EtcdError::Corrupt)
    }

    /// Opens a gather round, or joins the open one ([`gather::open`]).
    pub async fn open_gather(&mut self, deadline: Instant) -> Result<Opened, EtcdError> {
        let mut backoff = Backoff::new(deadline);
        loop {
            let view = self.gather_view(&mut backoff).await?;
            let (plan, opened) = match gather::open(&self.keys, &view) {
                OpenStep::Done(opened) => return Ok(opened),
                OpenStep::Commit { plan, opened } => (plan, opened),
            };
            if self.commit(&plan, &mut backoff).await? {
                return Ok(opened);
            }
        }
    }

    /// Carries out node `id`'s `request` until etcd applied it (now or by an earlier try) or
    /// the ledger answered without a write; retries lost calls and failed guards until
    /// `deadline`. An error leaves the outcome unknown (a lost call may still be applied): the
    /// caller keeps the request and tries it again later under the same sequence number, never
    /// a new one.
    pub async fn transact(
        &mut self,
        id: &str,
        request: &Request,
        deadline: Instant,
    ) -> Result<Outcome, EtcdError> {
        let mut backoff = Backoff::new(deadline);
        loop {
            // A close reads every record; every other request the pool, its record, the round.
            let step = match request.op {
                Op::Close { .. } => {
                    let view = self.gather_view(&mut backoff).await?;
                    gather::close(&self.keys, id, request, &view)
                }
                _ => {
                    let view = self.view(id, &mut backoff).await?;
                    ledger::plan(&self.keys, id, request, &view)
                }
            };
            let (plan, last) = match step {
                Step::Done(outcome) => return Ok(outcome),
                Step::Commit { plan, last } => (plan, last),
            };
            if self.commit(&plan, &mut backoff).await? {
                return Ok(Outcome::Applied(last));
            }
        }
    }

    /// Carries out node `id`'s `call` ([`Etcd::transact`] or [`Etcd::open_gather`]) until
    /// `deadline`.
    pub async fn call(
        &mut self,
        id: &str,
        call: Call,
        deadline: Instant,
    ) -> Result<Reply, EtcdError> {
        match call {
            Call::Node(request) => self
                .transact(id, &request, deadline)
                .await
                .map(Reply::Outcome),
            Call::Open => self.open_gather(deadline).await.map(Reply::Opened),
        }
    }

    /// Fences node `id`, seen silent in `seen_epoch`, keeping its window in doubt
    /// ([`ledger::fence`]); retries until `deadline`.
    pub async fn fence(
        &mut self,
        id: &str,
        seen_epoch: u64,
        deadline: Instant,
    ) -> Result<Fenced, EtcdError> {
        let mut backoff = Backoff::new(deadline);
        loop {
            let view = self.view(id, &mut backoff).await?;
            let (plan, fenced) = match ledger::fence(&self.keys, id, seen_epoch, &view) {
                FenceStep::Done(fenced) => return Ok(fenced),
                FenceStep::Commit { plan, fenced } => (plan, fenced),
            };
            if self.commit(&plan, &mut backoff).await? {
                return Ok(fenced);
            }
        }
    }

    /// Node `id`'s record as it is now (`None`: it never transacted).
    pub async fn record(
        &mut self,
        id: &str,
        deadline: Instant,
    ) -> Result<Option<NodeRecord>, EtcdError> {
        let mut backoff = Backoff::new(deadline);
        Ok(self.view(id, &mut backoff).await?.node.value)
    }

    /// Writes node `id`, seen in `seen_epoch`, off ([`retire::write_off`]), retrying until
    /// `deadline`. A lost reply reads back as `Already` on the retry.
    pub async fn write_off(
        &mut self,
        id: &str,
        seen_epoch: u64,
        deadline: Instant,
    ) -> Result<WrittenOff, EtcdError> {
        let mut backoff = Backoff::new(deadline);
        loop {
            let view = self.view(id, &mut backoff).await?;
            let (plan, written_off) = match retire::write_off(&self.keys, id, seen_epoch, &view) {
                WriteOffStep::Done(written_off) => return Ok(written_off),
                WriteOffStep::Commit { plan, written_off } => (plan, written_off),
            };
            if self.commit(&plan, &mut backoff).await? {
                return Ok(written_off);
            }
        }
    }

    /// Runs `plan` once, as it is, with no retry: for tests that play a node whose reply was
    /// lost (the plan applied, the node not told). Returns whether etcd applied it.
    pub async fn send_once(&mut self, plan: &Plan) -> Result<bool, EtcdError> {
        let response = self.client.txn(txn(plan)).await;
        let response = response.map_err(|error| EtcdError::Unavailable(error.to_string()))?;
        Ok(response.succeeded())
    }

    /// Node `id`'s plan for `request` from a fresh read, without sending it (see
    /// [`Etcd::send_once`]).
    pub async fn plan_once(
        &mut self,
        id: &str,
        request: &Request,
        deadline: Instant,
    ) -> Result<Step, EtcdError> {
        let mut backoff = Backoff::new(deadline);
        if let Op::Close { .. } = request.op {
            let view = self.gather_view(&mut backoff).await?;
            return Ok(gather::close(&self.keys, id, request, &view));
        }
        let view = self.view(id, &mut backoff).await?;
        Ok(ledger::plan(&self.keys, id, request, &view))
    }
}

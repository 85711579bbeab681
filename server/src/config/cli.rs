//! The options, each said once: its flag, environment variable, default, `--help` text and
//! parser, in one clap field; and the named defaults and ranges they use, each with its reason.
//!
//! Values come out typed and in the flag's units (milliseconds for `*_ms`, seconds for
//! `*_seconds` and `--vacancy-timeout`); `Config` turns them into the program's types. clap runs
//! each value through its parser from `parse.rs`, whatever its source (flag, environment, `.env`
//! or default), and a refusal names the option from this definition (see `error.rs`). Four
//! options stay text here, because whether their value is acceptable depends on another option:
//! the three mode ports (only the mode's own port must parse) and `--http-keepalive-connections`
//! (at most `--http-max-connections`). `Config::load` checks those.

use std::ffi::OsString;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, FromArgMatches};

use super::error::ConfigError;
use super::mode::{self, Durability, Mode, ModeAsked};
use super::parse::{self, CorsOrigins, VacancyUrl};

/// Shards run one per allowed CPU by default; an explicit count is at most this. Each shard is a
/// pinned thread holding its own slice of the stock, and gathers visit every shard, so a count far
/// beyond any machine's cores only adds cross-shard traffic.
pub const SHARDS_MAX: usize = 1024;

/// The initial stock; the original system's default.
pub const INITIAL_STOCK_DEFAULT: u64 = 1000;
/// Stock counts fit in an `i64`, so that sums and differences of shard slices never overflow
/// signed arithmetic.
pub const INITIAL_STOCK_RANGE: RangeInclusive<u64> = 0..=i64::MAX as u64;

/// By default any sane quantity is accepted and simply fails when the stock is not there.
pub const MAX_ORDER_QTY_DEFAULT: u64 = 1_000_000_000;

/// `--cluster-window`: a node reports its sales at half of it (or every 200 ms), so at 100,000
/// sales per second a window of 1,000 costs a report about every 5 ms; a fence strands at most
/// this many tickets (in doubt) until the node rejoins.
pub const CLUSTER_WINDOW_DEFAULT: u64 = 1_000;
/// Any positive window (no order asks for more than it, and a fence keeps it in doubt).
pub const CLUSTER_WINDOW_RANGE: RangeInclusive<u64> = 1..=i64::MAX as u64;
/// At least 1 (an order of 1 must be possible); at most the largest possible stock.
pub const MAX_ORDER_QTY_RANGE: RangeInclusive<u64> = 1..=i64::MAX as u64;

/// The vacancy service the `ticket` mode forwards to; the original system's default.
pub const VACANCY_URL_DEFAULT: &str = "http://127.0.0.1:8001";

/// Seconds a forwarded reserve may take before the purchase answers 503; the original's default.
pub const VACANCY_TIMEOUT_SECONDS_DEFAULT: f64 = 2.0;
/// Timers are millisecond-grained, so less than 1 ms is 0; more than an hour is a hang.
pub const SECONDS_RANGE: RangeInclusive<f64> = 0.001..=3600.0;

/// Connections to the vacancy service per shard; the original's httpx default.
pub const HTTP_MAX_CONNECTIONS_DEFAULT: usize = 100;
/// At least one connection; at most as many as a shard may serve.
pub const HTTP_MAX_CONNECTIONS_RANGE: RangeInclusive<usize> = 1..=CONNECTIONS_MAX_RANGE_END;
/// Of those, how many idle ones are kept open; the original's httpx default.
pub const HTTP_KEEPALIVE_CONNECTIONS_DEFAULT: usize = 20;

/// How stale `remaining` and `/available` may be, in seconds; the original's default.
pub const CACHE_TTL_SECONDS_DEFAULT: f64 = 1.0;

/// The log level; the original's default.
pub const LOG_LEVEL_DEFAULT: &str = "INFO";

/// A request head (request line and header fields) longer than this gets 431. 16 KiB holds a
/// request line at [`TARGET_BYTES_MAX_DEFAULT`] and a browser's fields (4-8 KiB with cookies);
/// our clients send about 200 bytes. A connection's buffer grows only as far as its request needs.
pub const HEAD_BYTES_MAX_DEFAULT: usize = 16 * 1024;
/// 256 bytes still fits a request line and a Host header; 1 MiB per connection is the most a
/// shard with thousands of connections can afford.
pub const HEAD_BYTES_MAX_RANGE: RangeInclusive<usize> = 256..=1 << 20;

/// Header fields per request; more gets 431. Real clients send fewer than 20.
pub const HEADERS_MAX_DEFAULT: usize = 32;
/// At least Host; at most what a bounded per-request field array may hold.
pub const HEADERS_MAX_RANGE: RangeInclusive<usize> = 1..=1024;

/// A request body longer than this gets 413. `{"qty": n}` is under 40 bytes; 4 KiB leaves room
/// for clients that add fields we ignore.
pub const BODY_BYTES_MAX_DEFAULT: usize = 4096;
/// 16 bytes fits `{"qty":1000000}`; 1 MiB bounds what one request can make a shard buffer.
pub const BODY_BYTES_MAX_RANGE: RangeInclusive<usize> = 16..=1 << 20;

/// A request target longer than this gets 414. RFC 9112 §3 recommends supporting request lines
/// of at least 8,000 octets; 8 KiB of target gives that. Our paths are under 20 bytes.
pub const TARGET_BYTES_MAX_DEFAULT: usize = 8 * 1024;
/// 16 bytes fits every path we serve; 64 KiB is far past any URL a client can expect to work.
pub const TARGET_BYTES_MAX_RANGE: RangeInclusive<usize> = 16..=1 << 16;

/// Open client connections per shard; beyond them a shard stops accepting, and new connections
/// wait in the kernel's listen backlog until one closes. 10,000 per core is well above what a
/// load test opens and well below a default file-descriptor limit raised for a server.
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;
/// The upper end of [`CONNECTIONS_MAX_RANGE`]: a million descriptors per shard is past any
/// kernel's practical `nofile` limit.
const CONNECTIONS_MAX_RANGE_END: usize = 1_000_000;
/// At least one connection per shard.
pub const CONNECTIONS_MAX_RANGE: RangeInclusive<usize> = 1..=CONNECTIONS_MAX_RANGE_END;

/// Milliseconds a request head may take to arrive once its first byte has: the slowloris
/// deadline. 10 s is generous for any real client on any real network.
pub const HEAD_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Milliseconds an idle keep-alive connection stays open; a load generator reuses connections
/// within milliseconds, a browser within a minute.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Milliseconds of grace for in-flight requests after SIGTERM, under the 10 s a container
/// runtime waits before SIGKILL.
pub const SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Timeouts are at least 1 ms and at most an hour (past that, a connection is simply stuck).
pub const TIMEOUT_MS_RANGE: RangeInclusive<u64> = 1..=3_600_000;
/// The shutdown grace may be 0: stop at once.
pub const SHUTDOWN_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 0..=3_600_000;

/// Every origin may call the API from a browser by default: the original FastAPI system's CORS
/// middleware allowed every origin, so `*` is the compatible default. `none` turns CORS off.
pub const CORS_ALLOW_ORIGINS_DEFAULT: &str = "*";

/// Rate limiting is off by default: the original system had none.
pub const RATE_LIMIT_PER_SECOND_DEFAULT: f64 = 0.0;
/// From one request in 1,000 s (a test of the limit) to a million a second (beyond what one
/// client can send to one shard).
pub const RATE_LIMIT_PER_SECOND_RANGE: RangeInclusive<f64> = 0.001..=1_000_000.0;
/// 0: the burst is the rate per second, rounded up (at least 1).
pub const RATE_LIMIT_BURST_DEFAULT: u32 = 0;
/// A burst beyond a million requests is no limit.
pub const RATE_LIMIT_BURST_RANGE: RangeInclusive<u32> = 0..=1_000_000;

/// `Idempotency-Key` answers are kept a day by default (`app::idempotency::TTL_DEFAULT`).
pub const IDEMPOTENCY_TTL_SECONDS_DEFAULT: f64 = 86_400.0;
/// From a second (tests, demos) to 30 days: keys older than a month protect no retry, and the
/// table's bound would drop them first anyway.
pub const IDEMPOTENCY_TTL_RANGE: RangeInclusive<f64> = 1.0..=30.0 * 86_400.0;
/// 100,000 answers per shard by default (`app::idempotency::KEYS_PER_SHARD_DEFAULT`).
pub const IDEMPOTENCY_KEYS_MAX_DEFAULT: usize = 100_000;
/// 0 keeps no answer (keys then only refuse concurrent duplicates); at most ten million per
/// shard (about 1 GB of table and journal copies), beyond which a typo is likelier than intent.
pub const IDEMPOTENCY_KEYS_MAX_RANGE: RangeInclusive<usize> = 0..=10_000_000;

/// Where the durable journal lives, relative to the working directory: a checkout keeps its data
/// beside it, and the systemd units, which start in their state directory, also name it there.
pub const DATA_DIR_DEFAULT: &str = "./data";

/// Bytes a shard's journal file may grow to before it is compacted into a snapshot. 64 MiB keeps
/// the replay at start-up to a fraction of a second and the disk use per shard small, while
/// compacting seldom: at most once every thousand full batches.
pub const JOURNAL_COMPACT_BYTES_DEFAULT: u64 = 64 << 20;
/// At least 64 KiB: one batch is at most that long (`journal::tail::BATCH_BYTES_MAX`), so a
/// smaller threshold would compact after every batch. At most 1 TiB: a journal that long would
/// take over a quarter of an hour to replay at start-up even at 1 GB/s, so a larger value is a
/// typing mistake, not a setting.
pub const JOURNAL_COMPACT_BYTES_RANGE: RangeInclusive<u64> = 64 << 10..=1 << 40;

/// Latency histograms are dumped only at shutdown unless a period is given.
pub const LATENCY_DUMP_INTERVAL_SECONDS_DEFAULT: f64 = 0.0;
/// A period, when given, is at least 0.1 s: each dump holds the shard's thread for about a
/// millisecond (deflating the `.hlog` interval, rewriting the `.hgrm`), so dumps take at most 1 %
/// of a shard, and shorter intervals hold too few requests to say anything. At most an hour, as
/// the other periods.
pub const LATENCY_DUMP_INTERVAL_SECONDS_RANGE: RangeInclusive<f64> = 0.1..=3600.0;

/// The variable that, when set and not blank, replaces `--log-level` with a full `tracing`
/// filter. It is read directly, not through clap: it has no flag.
pub const RUST_LOG_ENV: &str = "RUST_LOG";

/// The command line. Each field's doc comment is its `--help` text.
#[derive(clap::Parser, Debug)]
#[command(
    name = "ticketd",
    version,
    about = "A thread-per-core ticket-reservation server.",
    long_about = "A thread-per-core ticket-reservation server.\n\n\
        Precedence: command-line flags, then environment variables, then a .env file in the \
        working directory, then defaults."
)]
pub struct Cli {
    /// What to run: monolith, vacancy or ticket. `microservices` is accepted when the port
    /// equals VACANCY_PORT (vacancy) or TICKET_PORT (ticket)
    #[arg(long, env = "DEPLOYMENT_MODE", value_name = "MODE", default_value = "monolith",
          value_parser = mode::parse_mode)]
    pub mode: ModeAsked,

    /// IP address to listen on
    #[arg(long, env = "HOST", value_name = "IP", default_value = "0.0.0.0",
          value_parser = parse::ip)]
    pub host: IpAddr,

    /// Port to listen on [default: the mode's port]; 0 picks a free one
    #[arg(long, env = "PORT", value_name = "PORT", value_parser = parse::whole(0..=u16::MAX))]
    pub port: Option<u16>,

    /// Port in monolith mode when PORT is not set
    #[arg(long, env = "MONOLITH_PORT", value_name = "PORT",
          default_value_t = Mode::Monolith.default_port().to_string())]
    pub monolith_port: String,

    /// Port in vacancy mode when PORT is not set
    #[arg(long, env = "VACANCY_PORT", value_name = "PORT",
          default_value_t = Mode::Vacancy.default_port().to_string())]
    pub vacancy_port: String,

    /// Port in ticket mode when PORT is not set
    #[arg(long, env = "TICKET_PORT", value_name = "PORT",
          default_value_t = Mode::Ticket.default_port().to_string())]
    pub ticket_port: String,

    /// Number of shards, one pinned thread each [default: one per allowed CPU]
    #[arg(long, env = "SHARDS", value_name = "N", value_parser = parse::whole(1..=SHARDS_MAX),
          global = true)]
    pub shards: Option<usize>,

    /// CPUs to run on, such as 0-3,8 [default: every allowed CPU]
    // `std::vec::Vec`, not `Vec`: one value that is a list, not a flag given many times.
    #[arg(long, env = "CPUS", value_name = "LIST", value_parser = parse::parse_cpu_list,
          global = true)]
    pub cpus: Option<std::vec::Vec<usize>>,

    /// Tickets in stock at start (of a data directory without a journal; `journal reset` starts
    /// a new sale with it)
    #[arg(long, env = "INITIAL_STOCK", value_name = "N", default_value_t = INITIAL_STOCK_DEFAULT,
          value_parser = parse::whole(INITIAL_STOCK_RANGE), global = true)]
    pub initial_stock: u64,

    /// Largest qty one request may ask for
    #[arg(long, env = "MAX_ORDER_QTY", value_name = "N", default_value_t = MAX_ORDER_QTY_DEFAULT,
          value_parser = parse::whole(MAX_ORDER_QTY_RANGE))]
    pub max_order_qty: u64,

    /// The vacancy service, http://host[:port] (ticket mode)
    #[arg(long, env = "VACANCY_URL", value_name = "URL", default_value = VACANCY_URL_DEFAULT,
          value_parser = parse::vacancy_url)]
    pub vacancy_url: VacancyUrl,

    /// Seconds a forwarded reserve may take before the purchase answers 503
    #[arg(long, env = "VACANCY_TIMEOUT", value_name = "SECONDS",
          default_value_t = VACANCY_TIMEOUT_SECONDS_DEFAULT,
          value_parser = parse::seconds(SECONDS_RANGE))]
    pub vacancy_timeout: f64,

    /// Connections to the vacancy service per shard
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", value_name = "N",
          default_value_t = HTTP_MAX_CONNECTIONS_DEFAULT,
          value_parser = parse::whole(HTTP_MAX_CONNECTIONS_RANGE))]
    pub http_max_connections: usize,

    /// Idle connections to the vacancy service kept open per shard (at most --http-max-connections)
    #[arg(long, env = "HTTP_KEEPALIVE_CONNECTIONS", value_name = "N",
          default_value_t = HTTP_KEEPALIVE_CONNECTIONS_DEFAULT.to_string())]
    pub http_keepalive_connections: String,

    /// Seconds that `remaining` and /available may lag behind sales
    #[arg(long, env = "CACHE_TTL_SECONDS", value_name = "SECONDS",
          default_value_t = CACHE_TTL_SECONDS_DEFAULT,
          value_parser = parse::seconds(SECONDS_RANGE))]
    pub cache_ttl_seconds: f64,

    /// trace, debug, info, warn (warning), error (critical); RUST_LOG, when set, overrides it
    #[arg(long, env = "LOG_LEVEL", value_name = "LEVEL", default_value = LOG_LEVEL_DEFAULT,
          value_parser = parse::log_level)]
    pub log_level: &'static str,

    /// Log JSON lines: true/false, 1/0, yes/no, on/off (the flag alone means true)
    #[arg(long, env = "JSON_LOGS", value_name = "BOOL", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set, value_parser = parse::boolean)]
    pub json_logs: bool,

    /// Longest request head in bytes (more: 431)
    #[arg(long, env = "HEAD_BYTES_MAX", value_name = "BYTES",
          default_value_t = HEAD_BYTES_MAX_DEFAULT,
          value_parser = parse::whole(HEAD_BYTES_MAX_RANGE))]
    pub head_bytes_max: usize,

    /// Most header fields per request (more: 431)
    #[arg(long, env = "HEADERS_MAX", value_name = "N", default_value_t = HEADERS_MAX_DEFAULT,
          value_parser = parse::whole(HEADERS_MAX_RANGE))]
    pub headers_max: usize,

    /// Longest request body in bytes (more: 413)
    #[arg(long, env = "BODY_BYTES_MAX", value_name = "BYTES",
          default_value_t = BODY_BYTES_MAX_DEFAULT,
          value_parser = parse::whole(BODY_BYTES_MAX_RANGE))]
    pub body_bytes_max: usize,

    /// Longest request target in bytes (more: 414)
    #[arg(long, env = "TARGET_BYTES_MAX", value_name = "BYTES",
          default_value_t = TARGET_BYTES_MAX_DEFAULT,
          value_parser = parse::whole(TARGET_BYTES_MAX_RANGE))]
    pub target_bytes_max: usize,

    /// Most open client connections per shard; more wait in the listen backlog
    #[arg(long, env = "CONNECTIONS_MAX", value_name = "N",
          default_value_t = CONNECTIONS_MAX_DEFAULT,
          value_parser = parse::whole(CONNECTIONS_MAX_RANGE))]
    pub connections_max: usize,

    /// Milliseconds a request head may take once its first byte arrived
    #[arg(long, env = "HEAD_TIMEOUT_MS", value_name = "MS",
          default_value_t = HEAD_TIMEOUT_MS_DEFAULT, value_parser = parse::whole(TIMEOUT_MS_RANGE))]
    pub head_timeout_ms: u64,

    /// Milliseconds an idle keep-alive connection stays open
    #[arg(long, env = "IDLE_TIMEOUT_MS", value_name = "MS",
          default_value_t = IDLE_TIMEOUT_MS_DEFAULT, value_parser = parse::whole(TIMEOUT_MS_RANGE))]
    pub idle_timeout_ms: u64,

    /// Milliseconds in-flight requests may take to finish after SIGTERM
    #[arg(long, env = "SHUTDOWN_TIMEOUT_MS", value_name = "MS",
          default_value_t = SHUTDOWN_TIMEOUT_MS_DEFAULT,
          value_parser = parse::whole(SHUTDOWN_TIMEOUT_MS_RANGE))]
    pub shutdown_timeout_ms: u64,

    /// Web origins whose pages may call the API (CORS): *, none, or a comma-separated list such
    /// as https://app.example.com,http://localhost:3000
    #[arg(long, env = "CORS_ALLOW_ORIGINS", value_name = "ORIGINS",
          default_value = CORS_ALLOW_ORIGINS_DEFAULT, value_parser = parse::cors_origins)]
    pub cors_allow_origins: CorsOrigins,

    /// Purchases per second one client address may make on each shard (a token bucket); 0: off.
    /// With --rate-limit-all-routes, every request counts
    #[arg(long, env = "RATE_LIMIT_PURCHASES_PER_SECOND", value_name = "N",
          default_value_t = RATE_LIMIT_PER_SECOND_DEFAULT,
          value_parser = parse::rate(RATE_LIMIT_PER_SECOND_RANGE))]
    pub rate_limit_purchases_per_second: f64,

    /// Requests one client address may make at once before the rate applies (the bucket's size);
    /// 0: the rate per second, rounded up
    #[arg(long, env = "RATE_LIMIT_BURST", value_name = "N",
          default_value_t = RATE_LIMIT_BURST_DEFAULT,
          value_parser = parse::whole(RATE_LIMIT_BURST_RANGE))]
    pub rate_limit_burst: u32,

    /// Count every request against the rate limit, not only purchases: true/false (the flag
    /// alone means true)
    #[arg(long, env = "RATE_LIMIT_ALL_ROUTES", value_name = "BOOL", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set,
          value_parser = parse::boolean)]
    pub rate_limit_all_routes: bool,

    /// Directory of the durable journal; a relative path is relative to the working directory
    #[arg(long, env = "DATA_DIR", value_name = "DIR", default_value = DATA_DIR_DEFAULT,
          value_parser = parse::dir, global = true)]
    pub data_dir: PathBuf,

    /// sync: a sale is acknowledged only after its journal record is on disk (written with
    /// O_DSYNC); none: memory only, sales are lost on restart (warned about at start)
    #[arg(long, env = "DURABILITY", value_name = "MODE", default_value_t = Durability::Sync,
          value_parser = mode::parse_durability)]
    pub durability: Durability,

    /// Compact a shard's journal into a snapshot once it grows past this many bytes
    #[arg(long, env = "JOURNAL_COMPACT_BYTES", value_name = "BYTES",
          default_value_t = JOURNAL_COMPACT_BYTES_DEFAULT,
          value_parser = parse::whole(JOURNAL_COMPACT_BYTES_RANGE))]
    pub journal_compact_bytes: u64,

    /// Seconds an Idempotency-Key's answer is kept: a repeat within it gets the same answer
    #[arg(long, env = "IDEMPOTENCY_TTL", value_name = "SECONDS",
          default_value_t = IDEMPOTENCY_TTL_SECONDS_DEFAULT,
          value_parser = parse::seconds(IDEMPOTENCY_TTL_RANGE))]
    pub idempotency_ttl: f64,

    /// The most Idempotency-Key answers each shard keeps; beyond it the oldest goes first
    #[arg(long, env = "IDEMPOTENCY_KEYS_MAX", value_name = "N",
          default_value_t = IDEMPOTENCY_KEYS_MAX_DEFAULT,
          value_parser = parse::whole(IDEMPOTENCY_KEYS_MAX_RANGE))]
    pub idempotency_keys_max: usize,

    /// Record per-shard service-time histograms and write DIR/shard-N.hgrm and .hlog at shutdown
    /// (DIR is created if missing) [default: off]
    #[arg(long, env = "LATENCY_DUMP", value_name = "DIR", value_parser = parse::dir)]
    pub latency_dump: Option<PathBuf>,

    /// With --latency-dump: also dump every this many seconds; 0 means only at shutdown
    #[arg(long, env = "LATENCY_DUMP_INTERVAL_SECONDS", value_name = "SECONDS",
          default_value_t = LATENCY_DUMP_INTERVAL_SECONDS_DEFAULT,
          value_parser = parse::period(LATENCY_DUMP_INTERVAL_SECONDS_RANGE))]
    pub latency_dump_interval_seconds: f64,

    /// Serve the admin routes (restock, sales close/open, stock, journal) on this address, such
    /// as 127.0.0.1:9001; needs --admin-token-file [default: off]
    #[arg(long, env = "ADMIN_LISTEN", value_name = "ADDR", value_parser = parse::socket_addr)]
    pub admin_listen: Option<std::net::SocketAddr>,

    /// File holding the admin listener's bearer token (16 to 4096 visible ASCII characters)
    #[arg(long, env = "ADMIN_TOKEN_FILE", value_name = "FILE", value_parser = parse::file)]
    pub admin_token_file: Option<PathBuf>,

    /// Run as a node of a sale past one machine: etcd client URLs (http://HOST:PORT),
    /// comma-separated; the node leases its stock from the sale's ledger there (needs
    /// --cluster-name, --node-id, --durability sync; built with --features cluster)
    /// [default: off]
    #[arg(long, env = "CLUSTER_ETCD", value_name = "URL[,URL...]", value_delimiter = ',',
          value_parser = parse::etcd_url)]
    pub cluster_etcd: Vec<String>,

    /// With --cluster-etcd: the sale's name (its ledger's key prefix, set up by `ticketd
    /// cluster init`)
    #[arg(long, env = "CLUSTER_NAME", value_name = "NAME", value_parser = parse::cluster_name)]
    pub cluster_name: Option<String>,

    /// With --cluster-etcd: this node's id, unique in the sale and kept across restarts (its
    /// journal and its ledger record go together)
    #[arg(long, env = "NODE_ID", value_name = "ID", value_parser = parse::cluster_name)]
    pub node_id: Option<String>,

    /// With --cluster-etcd: the most sales the node holds unreported; a fence keeps this many
    /// tickets in doubt until the node rejoins, and no order may ask for more
    #[arg(long, env = "CLUSTER_WINDOW", value_name = "N", default_value_t = CLUSTER_WINDOW_DEFAULT,
          value_parser = parse::whole(CLUSTER_WINDOW_RANGE))]
    pub cluster_window: u64,

    /// Print the effective configuration as one JSON line and exit
    #[arg(long)]
    pub print_config: bool,

    /// A tool to run instead of the server
    #[command(subcommand)]
    pub tool: Option<Tool>,
}

/// The tools `ticketd` runs instead of serving. They read the same options and environment
/// (`--data-dir`, `--initial-stock`, `--shards`, `--cpus` may also follow the tool's name).
#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Look at or reset the data directory's journal, offline
    #[command(subcommand)]
    Journal(JournalTool),
    /// Set up or look at a sale's escrow ledger in etcd, for ticketd nodes past one machine
    /// (built with `--features cluster`)
    Cluster(ClusterArgs),
}

/// `ticketd cluster ...`: which etcd cluster and which sale, then what to do.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct ClusterArgs {
    /// etcd client URLs, comma-separated (http://HOST:PORT)
    #[arg(long, env = "CLUSTER_ETCD", value_name = "URL[,URL...]", value_delimiter = ',',
          required = true, value_parser = parse::etcd_url)]
    pub cluster_etcd: Vec<String>,

    /// The sale's name: its ledger's etcd key prefix (/ticketd/NAME/), one sale per name
    #[arg(long, env = "CLUSTER_NAME", value_name = "NAME", required = true,
          value_parser = parse::cluster_name)]
    pub cluster_name: String,

    /// What to do
    #[command(subcommand)]
    pub action: ClusterTool,
}

/// `ticketd cluster init|status|fence|write-off`.
#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum ClusterTool {
    /// Create the sale's ledger with --initial-stock tickets in the pool (required on the
    /// command line: a node's INITIAL_STOCK never sets a cluster's capacity); once: exit 0 if it
    /// exists with that capacity already, 1 if with another
    Init,
    /// Print the ledger (capacity, pool, each node's lease, doubt and sales) and check
    /// `pool + leases + doubt + sold == capacity`: exit 0 when it holds, 4 when not
    Status {
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Fence a node that stopped (its lease back to the pool but for its window, kept in doubt
    /// until it rejoins; every transaction it planned before fails): what its peers will do on
    /// a missed heartbeat, for an operator meanwhile. A live node fenced only rejoins
    Fence {
        /// The node's id
        #[arg(long, value_name = "ID", value_parser = parse::cluster_name)]
        node_id: String,
    },
    /// Write off a node that will not come back with its journal: fence it and count what it
    /// may have sold unreported (its window and any doubt) as sold; its id cannot be used again
    WriteOff {
        /// The node's id
        #[arg(long, value_name = "ID", value_parser = parse::cluster_name)]
        node_id: String,
    },
}

/// `ticketd journal ...`.
#[derive(clap::Subcommand, Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalTool {
    /// Print the journal's epoch, files, records per kind, sold and available per shard, and any
    /// damage with its file and offset; changes nothing. Exit 0 when clean, 3 when the only
    /// damage is a torn tail (the next start cuts it), 4 when the server would refuse to start
    Inspect {
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Start a new sale of --initial-stock tickets (required: the flag or INITIAL_STOCK) over
    /// --shards shards, nothing sold, crash-safely; refused while a server holds the data
    /// directory
    Reset,
}

/// Every environment variable the configuration reads, from its definition: each option's
/// variable, in the order of `--help`, then [`RUST_LOG_ENV`].
pub fn env_names() -> Vec<String> {
    let command = Cli::command();
    let options = command.get_arguments().filter_map(|arg| arg.get_env());
    let mut names: Vec<String> = options.map(|name| name.to_string_lossy().into()).collect();
    names.push(RUST_LOG_ENV.into());
    names
}

/// Parses `args` (the first is the program name) with the environment as it is now; returns
/// the options and the command they were parsed with, which names them in later errors.
pub fn parse_args<I, T>(args: I) -> Result<(Cli, clap::Command), ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    // clap reads the environment when the command is built, which is here.
    let mut command = Cli::command();
    let parsed = command.try_get_matches_from_mut(args).and_then(|matches| {
        let cli = Cli::from_arg_matches(&matches)?;
        Ok((cli, matches))
    });
    match parsed {
        Ok((cli, matches)) => {
            // A reset throws a sale away: its new stock is said, never the default.
            let stock = matches.value_source("initial_stock");
            if matches!(cli.tool, Some(Tool::Journal(JournalTool::Reset)))
                && stock == Some(clap::parser::ValueSource::DefaultValue)
            {
                let error = command.error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "journal reset starts a new sale: say its stock with --initial-stock N \
                     (or INITIAL_STOCK); nothing was changed",
                );
                return Err(ConfigError::Clap(error));
            }
            let init = |tool: &Tool| matches!(tool, Tool::Cluster(args) if args.action == ClusterTool::Init);
            if cli.tool.as_ref().is_some_and(init)
                && stock != Some(clap::parser::ValueSource::CommandLine)
            {
                let error = command.error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "cluster init sets the sale's capacity once: say it with --initial-stock N \
                     on the command line (a node's INITIAL_STOCK never sets it); nothing was changed",
                );
                return Err(ConfigError::Clap(error));
            }
            Ok((cli, command))
        }
        Err(error) => Err(ConfigError::from_clap(error, &command)),
    }
}

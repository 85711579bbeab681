//! Configuration: command-line flags, environment, `.env`, defaults, in that order of precedence.
//!
//! [`Config::load`] reads `.env` from the working directory into the process environment (only
//! the keys not already set), then lets clap parse the flags with environment fallbacks, then
//! validates every value itself in one place, so that every invalid value produces the same
//! one-line message naming both the flag and the environment variable:
//!
//! ```text
//! invalid value "abc" for --initial-stock (INITIAL_STOCK): expected a whole number from 0 to 9223372036854775807
//! ```
//!
//! clap therefore sees every option as a string; the types, ranges and cross-checks live in
//! `Config::from_cli`. Every limit has a named default and a named range, each with its reason.
//! The environment names are those of the original Python system, which keep working.

use std::cell::Cell;
use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;

/// The file read at start-up, relative to the working directory, as the original system did.
pub const DOTENV_FILE: &str = ".env";

/// A `.env` file larger than this is refused: it is a handful of lines, and a huge one is a
/// mistake (a log file renamed, a wrong mount) better reported than loaded.
pub const DOTENV_BYTES_MAX: u64 = 1 << 20;

/// Shards run one per allowed CPU by default; an explicit count is at most this. Each shard is a
/// pinned thread holding its own slice of the stock, and gathers visit every shard, so a count far
/// beyond any machine's cores only adds cross-shard traffic.
pub const SHARDS_MAX: usize = 1024;

/// The highest CPU id `--cpus` accepts: 4096 CPUs (ids 0 to 4095), the largest `NR_CPUS` of
/// common distribution kernels. It bounds the list a range like `0-4095` expands to.
pub const CPU_ID_MAX: usize = 4095;

/// The initial stock; the original system's default.
pub const INITIAL_STOCK_DEFAULT: u64 = 1000;
/// Stock counts fit in an `i64`, so that sums and differences of shard slices never overflow
/// signed arithmetic.
pub const INITIAL_STOCK_RANGE: RangeInclusive<u64> = 0..=i64::MAX as u64;

/// By default any sane quantity is accepted and simply fails when the stock is not there.
pub const MAX_ORDER_QTY_DEFAULT: u64 = 1_000_000_000;
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

/// A request head (request line and header fields) longer than this gets 431. 8 KiB is the
/// common limit (nginx's header buffer, Apache's line limit); our clients send about 200 bytes.
pub const HEAD_BYTES_MAX_DEFAULT: usize = 8192;
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

/// A request target longer than this gets 414. Our paths are under 20 bytes; 2 KiB is the
/// traditional safe URL length.
pub const TARGET_BYTES_MAX_DEFAULT: usize = 2048;
/// 16 bytes fits every path we serve; 64 KiB is far past any URL a client can expect to work.
pub const TARGET_BYTES_MAX_RANGE: RangeInclusive<usize> = 16..=1 << 16;

/// Open client connections per shard; more are closed on accept. 10,000 per core is well above
/// what a load test opens and well below a default file-descriptor limit raised for a server.
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

/// Where the durable journal lives, relative to the working directory: a checkout keeps its data
/// beside it, and the systemd units, which start in their state directory, also name it there.
pub const DATA_DIR_DEFAULT: &str = "./data";

/// Bytes a shard's journal file may grow to before it is compacted into a snapshot. 64 MiB keeps
/// the replay at start-up to a fraction of a second and the disk use per shard small, while
/// compacting seldom: at most once every thousand full batches.
pub const JOURNAL_COMPACT_BYTES_DEFAULT: u64 = 64 << 20;
/// At least 64 KiB: one batch is at most that long (`journal::tail::BATCH_BYTES_MAX`), so a
/// smaller threshold would compact after every batch. At most 1 TiB: a journal that long would take over a quarter of an hour to replay
/// at start-up even at 1 GB/s, so a larger value is a typing mistake, not a setting.
pub const JOURNAL_COMPACT_BYTES_RANGE: RangeInclusive<u64> = 64 << 10..=1 << 40;

/// Latency histograms are dumped only at shutdown unless a period is given.
pub const LATENCY_DUMP_INTERVAL_SECONDS_DEFAULT: f64 = 0.0;
/// A period, when given, is at least 0.1 s: each dump holds the shard's thread for about a
/// millisecond (deflating the `.hlog` interval, rewriting the `.hgrm`), so dumps take at most 1 % of
/// a shard, and shorter intervals hold too few requests to say anything. At most an hour, as the
/// other periods.
pub const LATENCY_DUMP_INTERVAL_SECONDS_RANGE: RangeInclusive<f64> = 0.1..=3600.0;

/// What the server runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// All endpoints in one process; a purchase calls the stock directly.
    Monolith,
    /// The stock owner: available, reserve, health.
    Vacancy,
    /// Purchase (and available), forwarded to the vacancy service.
    Ticket,
}

impl Mode {
    /// The name used in `DEPLOYMENT_MODE`, logs and JSON bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Monolith => "monolith",
            Mode::Vacancy => "vacancy",
            Mode::Ticket => "ticket",
        }
    }

    /// The port the mode listens on when neither `PORT` nor the mode's own port variable is set.
    pub fn default_port(self) -> u16 {
        match self {
            Mode::Monolith => 8000,
            Mode::Vacancy => 8001,
            Mode::Ticket => 8002,
        }
    }
}

/// Whether a sale waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// A sale is acknowledged only after its journal record is fdatasync'ed; a restart, even after
    /// a crash or power loss, keeps every acknowledged sale.
    Sync,
    /// Memory only, like the original system: nothing is journaled, and a restart starts from
    /// `initial_stock` again. The server warns about it at start.
    None,
}

impl Durability {
    /// The name used in `DURABILITY`, logs and `--print-config`.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::None => "none",
        }
    }
}

/// The effective configuration, every value validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// What the server runs as (`--mode`, `DEPLOYMENT_MODE`).
    pub mode: Mode,
    /// The address to listen on (`--host`, `HOST`). Defaults to `0.0.0.0` like the original
    /// service, whose clients (k6, the ticket service) reach it from other hosts and containers.
    pub host: IpAddr,
    /// The port to listen on: `--port`/`PORT`, else the mode's own variable (`MONOLITH_PORT`,
    /// `VACANCY_PORT`, `TICKET_PORT`), else the mode's default. 0 is allowed: the server resolves
    /// it to one ephemeral port once and binds every shard to that same port.
    pub port: u16,
    /// How many shards (pinned executors) to run (`--shards`, `SHARDS`); `None` means one per
    /// allowed CPU.
    pub shards: Option<usize>,
    /// The CPUs to run on (`--cpus`, `CPUS`), sorted and without duplicates; `None` means the
    /// CPUs the process may run on.
    pub cpus: Option<Vec<usize>>,
    /// Tickets in stock at start (`--initial-stock`, `INITIAL_STOCK`).
    pub initial_stock: u64,
    /// The largest `qty` one request may ask for (`--max-order-qty`, `MAX_ORDER_QTY`); at least 1.
    pub max_order_qty: u64,
    /// The vacancy service's URL as `http://host:port` (`--vacancy-url`, `VACANCY_URL`),
    /// normalised: explicit port, no trailing slash, IPv6 hosts in brackets.
    pub vacancy_url: String,
    /// The vacancy service's host: a name, an IPv4 address, or an IPv6 address without brackets.
    pub vacancy_host: String,
    /// The vacancy service's port (80 when the URL names none).
    pub vacancy_port: u16,
    /// How long a forwarded reserve may take before the purchase answers 503 (`--vacancy-timeout`,
    /// `VACANCY_TIMEOUT`, given in seconds).
    pub vacancy_timeout: Duration,
    /// Connections to the vacancy service per shard (`--http-max-connections`,
    /// `HTTP_MAX_CONNECTIONS`).
    pub http_max_connections: usize,
    /// How many of those may stay open while idle (`--http-keepalive-connections`,
    /// `HTTP_KEEPALIVE_CONNECTIONS`); at most `http_max_connections`.
    pub http_keepalive_connections: usize,
    /// How stale `remaining` and `/available` may be (`--cache-ttl-seconds`, `CACHE_TTL_SECONDS`).
    pub cache_ttl: Duration,
    /// The log level as a `tracing` directive: `trace`, `debug`, `info`, `warn` or `error`
    /// (`--log-level`, `LOG_LEVEL`; Python's `WARNING` and `CRITICAL` map to `warn` and `error`).
    pub log_level: &'static str,
    /// `RUST_LOG` when set and not blank: a full `tracing` filter that overrides `log_level`.
    pub rust_log: Option<String>,
    /// Logs as JSON lines instead of text (`--json-logs`, `JSON_LOGS`).
    pub json_logs: bool,
    /// The longest request head, request line and header fields together (`--head-bytes-max`).
    pub head_bytes_max: usize,
    /// The most header fields in one request (`--headers-max`).
    pub headers_max: usize,
    /// The longest request body (`--body-bytes-max`).
    pub body_bytes_max: usize,
    /// The longest request target (`--target-bytes-max`).
    pub target_bytes_max: usize,
    /// The most open client connections per shard (`--connections-max`).
    pub connections_max: usize,
    /// How long a request head may take once its first byte has arrived (`--head-timeout-ms`).
    pub head_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests (`--idle-timeout-ms`).
    pub idle_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM (`--shutdown-timeout-ms`).
    pub shutdown_timeout: Duration,
    /// Where the durable journal lives (`--data-dir`, `DATA_DIR`), kept as given: a relative path
    /// is relative to the working directory. Whether it can be created and written is checked at
    /// start-up (exit 1), not here, so that `--print-config` touches no file. Not used with
    /// [`Durability::None`].
    pub data_dir: PathBuf,
    /// Whether a sale is acknowledged only once it is on disk (`--durability`, `DURABILITY`).
    pub durability: Durability,
    /// Bytes a shard's journal file may grow to before it is compacted into a snapshot
    /// (`--journal-compact-bytes`, `JOURNAL_COMPACT_BYTES`), within [`JOURNAL_COMPACT_BYTES_RANGE`].
    pub journal_compact_bytes: u64,
    /// Where each shard writes its service-time histograms, `shard-N.hgrm` and `shard-N.hlog`
    /// (`--latency-dump`, `LATENCY_DUMP`); `None`: nothing is recorded. The directory is created
    /// at start-up; one that cannot be is a start-up failure (exit 1), not a configuration error,
    /// so that validating a configuration (`--print-config`) touches no file.
    pub latency_dump: Option<PathBuf>,
    /// How often the histograms are also dumped while running (`--latency-dump-interval-seconds`,
    /// `LATENCY_DUMP_INTERVAL_SECONDS`); zero: only at shutdown. Ignored without `latency_dump`.
    pub latency_dump_interval: Duration,
    /// `--print-config`: print [`Config::to_json`] on stdout and exit 0 instead of serving.
    pub print_config: bool,
}

/// Why the configuration was not loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// clap's own answer: `--help` or `--version` (exit 0) or a usage error such as an unknown
    /// flag (exit 2). [`ConfigError::exit`] lets clap print and exit as it would.
    Clap(clap::Error),
    /// An option's value is not acceptable.
    InvalidValue {
        /// The flag, such as `--initial-stock`.
        flag: &'static str,
        /// The environment variable, such as `INITIAL_STOCK`.
        env: &'static str,
        /// The value as given.
        value: String,
        /// What is accepted instead, as a phrase (`expected a whole number from 0 to 10`).
        expected: String,
    },
    /// The `.env` file exists but cannot be read or parsed.
    DotEnv {
        /// The file.
        path: PathBuf,
        /// The (first) line at fault, counting from 1, when the fault is in a line.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    /// One line: the option (flag and environment variable), the value, and what is accepted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Clap(error) => {
                let rendered = error.to_string();
                let first = rendered
                    .lines()
                    .find(|line| !line.trim().is_empty())
                    .unwrap_or("");
                f.write_str(first.strip_prefix("error: ").unwrap_or(first))
            }
            ConfigError::InvalidValue {
                flag,
                env,
                value,
                expected,
            } => {
                write!(f, "invalid value {value:?} for {flag} ({env}): {expected}")
            }
            ConfigError::DotEnv {
                path,
                line: Some(line),
                reason,
            } => {
                write!(f, "invalid {} line {line}: {reason}", path.display())
            }
            ConfigError::DotEnv {
                path,
                line: None,
                reason,
            } => {
                write!(f, "invalid {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// Ends the process the way the error calls for: clap's answers exactly as clap would (help
    /// on stdout and status 0; usage errors on stderr and status 2), anything else as
    /// `ticketd: <one line>` on stderr and status 2.
    pub fn exit(self) -> ! {
        match self {
            ConfigError::Clap(error) => error.exit(),
            other => {
                eprintln!("ticketd: {other}");
                std::process::exit(2)
            }
        }
    }

    /// Whether this is clap's `--help` or `--version` output rather than an error.
    pub fn is_help_or_version(&self) -> bool {
        use clap::error::ErrorKind;
        matches!(self, ConfigError::Clap(e)
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion))
    }
}

/// The command line as clap sees it: every value a string, validated by `Config::from_cli`.
#[derive(Parser, Debug)]
#[command(
    name = "ticketd",
    version,
    about = "A thread-per-core ticket-reservation server.",
    long_about = "A thread-per-core ticket-reservation server.\n\n\
        Precedence: command-line flags, then environment variables, then a .env file in the \
        working directory, then defaults."
)]
struct Cli {
    /// What to run: monolith, vacancy or ticket. `microservices` is accepted when the port
    /// equals VACANCY_PORT (vacancy) or TICKET_PORT (ticket)
    #[arg(
        long,
        env = "DEPLOYMENT_MODE",
        value_name = "MODE",
        default_value = "monolith"
    )]
    mode: String,

    /// IP address to listen on
    #[arg(long, env = "HOST", value_name = "IP", default_value = "0.0.0.0")]
    host: String,

    /// Port to listen on [default: the mode's port]; 0 picks a free one
    #[arg(long, env = "PORT", value_name = "PORT")]
    port: Option<String>,

    /// Port in monolith mode when PORT is not set
    #[arg(long, env = "MONOLITH_PORT", value_name = "PORT",
          default_value_t = Mode::Monolith.default_port().to_string())]
    monolith_port: String,

    /// Port in vacancy mode when PORT is not set
    #[arg(long, env = "VACANCY_PORT", value_name = "PORT",
          default_value_t = Mode::Vacancy.default_port().to_string())]
    vacancy_port: String,

    /// Port in ticket mode when PORT is not set
    #[arg(long, env = "TICKET_PORT", value_name = "PORT",
          default_value_t = Mode::Ticket.default_port().to_string())]
    ticket_port: String,

    /// Number of shards, one pinned thread each [default: one per allowed CPU]
    #[arg(long, env = "SHARDS", value_name = "N")]
    shards: Option<String>,

    /// CPUs to run on, such as 0-3,8 [default: every allowed CPU]
    #[arg(long, env = "CPUS", value_name = "LIST")]
    cpus: Option<String>,

    /// Tickets in stock at start
    #[arg(long, env = "INITIAL_STOCK", value_name = "N",
          default_value_t = INITIAL_STOCK_DEFAULT.to_string())]
    initial_stock: String,

    /// Largest qty one request may ask for
    #[arg(long, env = "MAX_ORDER_QTY", value_name = "N",
          default_value_t = MAX_ORDER_QTY_DEFAULT.to_string())]
    max_order_qty: String,

    /// The vacancy service, http://host[:port] (ticket mode)
    #[arg(long, env = "VACANCY_URL", value_name = "URL", default_value = VACANCY_URL_DEFAULT)]
    vacancy_url: String,

    /// Seconds a forwarded reserve may take before the purchase answers 503
    #[arg(long, env = "VACANCY_TIMEOUT", value_name = "SECONDS",
          default_value_t = format!("{VACANCY_TIMEOUT_SECONDS_DEFAULT:.1}"))]
    vacancy_timeout: String,

    /// Connections to the vacancy service per shard
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", value_name = "N",
          default_value_t = HTTP_MAX_CONNECTIONS_DEFAULT.to_string())]
    http_max_connections: String,

    /// Idle connections to the vacancy service kept open per shard (at most --http-max-connections)
    #[arg(long, env = "HTTP_KEEPALIVE_CONNECTIONS", value_name = "N",
          default_value_t = HTTP_KEEPALIVE_CONNECTIONS_DEFAULT.to_string())]
    http_keepalive_connections: String,

    /// Seconds that `remaining` and /available may lag behind sales
    #[arg(long, env = "CACHE_TTL_SECONDS", value_name = "SECONDS",
          default_value_t = format!("{CACHE_TTL_SECONDS_DEFAULT:.1}"))]
    cache_ttl_seconds: String,

    /// trace, debug, info, warn (warning), error (critical); RUST_LOG, when set, overrides it
    #[arg(long, env = "LOG_LEVEL", value_name = "LEVEL", default_value = LOG_LEVEL_DEFAULT)]
    log_level: String,

    /// Log JSON lines: true/false, 1/0, yes/no, on/off (the flag alone means true)
    #[arg(long, env = "JSON_LOGS", value_name = "BOOL", default_value = "false",
          num_args = 0..=1, default_missing_value = "true")]
    json_logs: String,

    /// Longest request head in bytes (more: 431)
    #[arg(long, env = "HEAD_BYTES_MAX", value_name = "BYTES",
          default_value_t = HEAD_BYTES_MAX_DEFAULT.to_string())]
    head_bytes_max: String,

    /// Most header fields per request (more: 431)
    #[arg(long, env = "HEADERS_MAX", value_name = "N",
          default_value_t = HEADERS_MAX_DEFAULT.to_string())]
    headers_max: String,

    /// Longest request body in bytes (more: 413)
    #[arg(long, env = "BODY_BYTES_MAX", value_name = "BYTES",
          default_value_t = BODY_BYTES_MAX_DEFAULT.to_string())]
    body_bytes_max: String,

    /// Longest request target in bytes (more: 414)
    #[arg(long, env = "TARGET_BYTES_MAX", value_name = "BYTES",
          default_value_t = TARGET_BYTES_MAX_DEFAULT.to_string())]
    target_bytes_max: String,

    /// Most open client connections per shard
    #[arg(long, env = "CONNECTIONS_MAX", value_name = "N",
          default_value_t = CONNECTIONS_MAX_DEFAULT.to_string())]
    connections_max: String,

    /// Milliseconds a request head may take once its first byte arrived
    #[arg(long, env = "HEAD_TIMEOUT_MS", value_name = "MS",
          default_value_t = HEAD_TIMEOUT_MS_DEFAULT.to_string())]
    head_timeout_ms: String,

    /// Milliseconds an idle keep-alive connection stays open
    #[arg(long, env = "IDLE_TIMEOUT_MS", value_name = "MS",
          default_value_t = IDLE_TIMEOUT_MS_DEFAULT.to_string())]
    idle_timeout_ms: String,

    /// Milliseconds in-flight requests may take to finish after SIGTERM
    #[arg(long, env = "SHUTDOWN_TIMEOUT_MS", value_name = "MS",
          default_value_t = SHUTDOWN_TIMEOUT_MS_DEFAULT.to_string())]
    shutdown_timeout_ms: String,

    /// Directory of the durable journal; a relative path is relative to the working directory
    #[arg(long, env = "DATA_DIR", value_name = "DIR", default_value = DATA_DIR_DEFAULT)]
    data_dir: String,

    /// sync: a sale is acknowledged only after its journal record is fdatasync'ed; none: memory
    /// only, sales are lost on restart (warned about at start)
    #[arg(long, env = "DURABILITY", value_name = "MODE",
          default_value_t = Durability::Sync.as_str().to_string())]
    durability: String,

    /// Compact a shard's journal into a snapshot once it grows past this many bytes
    #[arg(long, env = "JOURNAL_COMPACT_BYTES", value_name = "BYTES",
          default_value_t = JOURNAL_COMPACT_BYTES_DEFAULT.to_string())]
    journal_compact_bytes: String,

    /// Record per-shard service-time histograms and write DIR/shard-N.hgrm and .hlog at shutdown
    /// (DIR is created if missing) [default: off]
    #[arg(long, env = "LATENCY_DUMP", value_name = "DIR")]
    latency_dump: Option<String>,

    /// With --latency-dump: also dump every this many seconds; 0 means only at shutdown
    #[arg(long, env = "LATENCY_DUMP_INTERVAL_SECONDS", value_name = "SECONDS",
          default_value_t = LATENCY_DUMP_INTERVAL_SECONDS_DEFAULT.to_string())]
    latency_dump_interval_seconds: String,

    /// Print the effective configuration as one JSON line and exit
    #[arg(long)]
    print_config: bool,
}

impl Config {
    /// Reads `.env` from the working directory, the environment and the command line.
    ///
    /// Call it at start-up before any other thread exists: loading `.env` sets process
    /// environment variables. `Err` is for `main` to [`ConfigError::exit`] with.
    pub fn load() -> Result<Config, ConfigError> {
        Config::load_from(std::env::args_os(), Some(Path::new(DOTENV_FILE)))
    }

    /// [`Config::load`] with explicit arguments (the first is the program name) and `.env` path
    /// (`None`: no `.env`). A `.env` that does not exist is skipped; one that cannot be read or
    /// has a malformed line is an error naming the file and the line.
    pub fn load_from<I, T>(args: I, dotenv_path: Option<&Path>) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        if let Some(path) = dotenv_path {
            load_dotenv(path)?;
        }
        // clap reads the environment when the command is built, which is here: after `.env`.
        let cli = Cli::try_parse_from(args).map_err(ConfigError::Clap)?;
        let rust_log = std::env::var("RUST_LOG")
            .ok()
            .filter(|filter| !filter.trim().is_empty());
        Config::from_cli(cli, rust_log)
    }

    /// Validates what clap parsed.
    fn from_cli(cli: Cli, rust_log: Option<String>) -> Result<Config, ConfigError> {
        let port = match &cli.port {
            Some(port) => Some(parse_port(port, "--port", "PORT")?),
            None => None,
        };
        let mode = resolve_mode(&cli, port)?;
        let port = match (port, mode) {
            (Some(port), _) => port,
            (None, Mode::Monolith) => {
                parse_port(&cli.monolith_port, "--monolith-port", "MONOLITH_PORT")?
            }
            (None, Mode::Vacancy) => {
                parse_port(&cli.vacancy_port, "--vacancy-port", "VACANCY_PORT")?
            }
            (None, Mode::Ticket) => parse_port(&cli.ticket_port, "--ticket-port", "TICKET_PORT")?,
        };
        let host = cli.host.trim().parse::<IpAddr>().map_err(|_| {
            invalid(
                "--host",
                "HOST",
                &cli.host,
                "expected an IP address such as 0.0.0.0 or ::".into(),
            )
        })?;
        let shards = match &cli.shards {
            Some(shards) => Some(check(
                parse_whole(shards, 1..=SHARDS_MAX),
                "--shards",
                "SHARDS",
                shards,
            )?),
            None => None,
        };
        let cpus = match &cli.cpus {
            Some(cpus) => Some(check(parse_cpu_list(cpus), "--cpus", "CPUS", cpus)?),
            None => None,
        };
        let (vacancy_host, vacancy_port, vacancy_url) = check(
            parse_vacancy_url(&cli.vacancy_url),
            "--vacancy-url",
            "VACANCY_URL",
            &cli.vacancy_url,
        )?;
        let http_max_connections = check(
            parse_whole(&cli.http_max_connections, HTTP_MAX_CONNECTIONS_RANGE),
            "--http-max-connections",
            "HTTP_MAX_CONNECTIONS",
            &cli.http_max_connections,
        )?;
        let http_keepalive_connections = check(
            parse_whole(&cli.http_keepalive_connections, 0..=http_max_connections)
                .map_err(|e| format!("{e} (at most --http-max-connections, HTTP_MAX_CONNECTIONS)")),
            "--http-keepalive-connections",
            "HTTP_KEEPALIVE_CONNECTIONS",
            &cli.http_keepalive_connections,
        )?;
        Ok(Config {
            mode,
            host,
            port,
            shards,
            cpus,
            initial_stock: check(
                parse_whole(&cli.initial_stock, INITIAL_STOCK_RANGE),
                "--initial-stock",
                "INITIAL_STOCK",
                &cli.initial_stock,
            )?,
            max_order_qty: check(
                parse_whole(&cli.max_order_qty, MAX_ORDER_QTY_RANGE),
                "--max-order-qty",
                "MAX_ORDER_QTY",
                &cli.max_order_qty,
            )?,
            vacancy_url,
            vacancy_host,
            vacancy_port,
            vacancy_timeout: check(
                parse_seconds(&cli.vacancy_timeout),
                "--vacancy-timeout",
                "VACANCY_TIMEOUT",
                &cli.vacancy_timeout,
            )?,
            http_max_connections,
            http_keepalive_connections,
            cache_ttl: check(
                parse_seconds(&cli.cache_ttl_seconds),
                "--cache-ttl-seconds",
                "CACHE_TTL_SECONDS",
                &cli.cache_ttl_seconds,
            )?,
            log_level: check(
                parse_log_level(&cli.log_level),
                "--log-level",
                "LOG_LEVEL",
                &cli.log_level,
            )?,
            rust_log,
            json_logs: check(
                parse_bool(&cli.json_logs),
                "--json-logs",
                "JSON_LOGS",
                &cli.json_logs,
            )?,
            head_bytes_max: check(
                parse_whole(&cli.head_bytes_max, HEAD_BYTES_MAX_RANGE),
                "--head-bytes-max",
                "HEAD_BYTES_MAX",
                &cli.head_bytes_max,
            )?,
            headers_max: check(
                parse_whole(&cli.headers_max, HEADERS_MAX_RANGE),
                "--headers-max",
                "HEADERS_MAX",
                &cli.headers_max,
            )?,
            body_bytes_max: check(
                parse_whole(&cli.body_bytes_max, BODY_BYTES_MAX_RANGE),
                "--body-bytes-max",
                "BODY_BYTES_MAX",
                &cli.body_bytes_max,
            )?,
            target_bytes_max: check(
                parse_whole(&cli.target_bytes_max, TARGET_BYTES_MAX_RANGE),
                "--target-bytes-max",
                "TARGET_BYTES_MAX",
                &cli.target_bytes_max,
            )?,
            connections_max: check(
                parse_whole(&cli.connections_max, CONNECTIONS_MAX_RANGE),
                "--connections-max",
                "CONNECTIONS_MAX",
                &cli.connections_max,
            )?,
            head_timeout: check(
                parse_millis(&cli.head_timeout_ms, TIMEOUT_MS_RANGE),
                "--head-timeout-ms",
                "HEAD_TIMEOUT_MS",
                &cli.head_timeout_ms,
            )?,
            idle_timeout: check(
                parse_millis(&cli.idle_timeout_ms, TIMEOUT_MS_RANGE),
                "--idle-timeout-ms",
                "IDLE_TIMEOUT_MS",
                &cli.idle_timeout_ms,
            )?,
            shutdown_timeout: check(
                parse_millis(&cli.shutdown_timeout_ms, SHUTDOWN_TIMEOUT_MS_RANGE),
                "--shutdown-timeout-ms",
                "SHUTDOWN_TIMEOUT_MS",
                &cli.shutdown_timeout_ms,
            )?,
            data_dir: check(
                parse_dir(&cli.data_dir),
                "--data-dir",
                "DATA_DIR",
                &cli.data_dir,
            )?,
            durability: check(
                parse_durability(&cli.durability),
                "--durability",
                "DURABILITY",
                &cli.durability,
            )?,
            journal_compact_bytes: check(
                parse_whole(&cli.journal_compact_bytes, JOURNAL_COMPACT_BYTES_RANGE),
                "--journal-compact-bytes",
                "JOURNAL_COMPACT_BYTES",
                &cli.journal_compact_bytes,
            )?,
            latency_dump: match &cli.latency_dump {
                Some(dir) => Some(check(
                    parse_dir(dir),
                    "--latency-dump",
                    "LATENCY_DUMP",
                    dir,
                )?),
                None => None,
            },
            latency_dump_interval: check(
                parse_period(
                    &cli.latency_dump_interval_seconds,
                    LATENCY_DUMP_INTERVAL_SECONDS_RANGE,
                ),
                "--latency-dump-interval-seconds",
                "LATENCY_DUMP_INTERVAL_SECONDS",
                &cli.latency_dump_interval_seconds,
            )?,
            print_config: cli.print_config,
        })
    }

    /// The address to listen on.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The effective configuration as one line of JSON. Keys are the flags' names in snake_case,
    /// and values are in the flags' units (seconds for `vacancy_timeout` and `cache_ttl_seconds`,
    /// milliseconds for `*_timeout_ms`, bytes for `*_bytes*`); `shards`, `cpus` and
    /// `latency_dump` are `null` when automatic or off.
    pub fn to_json(&self) -> String {
        let shards = self
            .shards
            .map_or_else(|| "null".to_string(), |n| n.to_string());
        let cpus = self.cpus.as_ref().map_or_else(
            || "null".to_string(),
            |cpus| {
                format!(
                    "[{}]",
                    cpus.iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            },
        );
        let rust_log = self
            .rust_log
            .as_deref()
            .map_or_else(|| "null".to_string(), json_string);
        let latency_dump = self.latency_dump.as_ref().map_or_else(
            || "null".to_string(),
            |dir| json_string(&dir.to_string_lossy()),
        );
        format!(
            concat!(
                "{{\"mode\":{},\"host\":{},\"port\":{},\"shards\":{},\"cpus\":{},",
                "\"initial_stock\":{},\"max_order_qty\":{},",
                "\"vacancy_url\":{},\"vacancy_host\":{},\"vacancy_port\":{},\"vacancy_timeout\":{},",
                "\"http_max_connections\":{},\"http_keepalive_connections\":{},",
                "\"cache_ttl_seconds\":{},\"log_level\":{},\"rust_log\":{},\"json_logs\":{},",
                "\"head_bytes_max\":{},\"headers_max\":{},\"body_bytes_max\":{},",
                "\"target_bytes_max\":{},\"connections_max\":{},",
                "\"head_timeout_ms\":{},\"idle_timeout_ms\":{},\"shutdown_timeout_ms\":{},",
                "\"data_dir\":{},\"durability\":{},\"journal_compact_bytes\":{},",
                "\"latency_dump\":{},\"latency_dump_interval_seconds\":{}}}"
            ),
            json_string(self.mode.as_str()),
            json_string(&self.host.to_string()),
            self.port,
            shards,
            cpus,
            self.initial_stock,
            self.max_order_qty,
            json_string(&self.vacancy_url),
            json_string(&self.vacancy_host),
            self.vacancy_port,
            self.vacancy_timeout.as_secs_f64(),
            self.http_max_connections,
            self.http_keepalive_connections,
            self.cache_ttl.as_secs_f64(),
            json_string(self.log_level),
            rust_log,
            self.json_logs,
            self.head_bytes_max,
            self.headers_max,
            self.body_bytes_max,
            self.target_bytes_max,
            self.connections_max,
            self.head_timeout.as_millis(),
            self.idle_timeout.as_millis(),
            self.shutdown_timeout.as_millis(),
            json_string(&self.data_dir.to_string_lossy()),
            json_string(self.durability.as_str()),
            self.journal_compact_bytes,
            latency_dump,
            self.latency_dump_interval.as_secs_f64(),
        )
    }

    /// One line of `key=value` pairs for the start-up log, in the units of the flags.
    pub fn summary(&self) -> String {
        let shards = self
            .shards
            .map_or_else(|| "auto".to_string(), |n| n.to_string());
        let cpus = self
            .cpus
            .as_ref()
            .map_or_else(|| "all".to_string(), |cpus| format_cpu_list(cpus));
        format!(
            "mode={} listen={} shards={shards} cpus={cpus} initial_stock={} max_order_qty={} \
             vacancy_url={} vacancy_timeout={}s http_max_connections={} \
             http_keepalive_connections={} cache_ttl_seconds={} log_level={} rust_log={} \
             json_logs={} head_bytes_max={} headers_max={} body_bytes_max={} target_bytes_max={} \
             connections_max={} head_timeout_ms={} idle_timeout_ms={} shutdown_timeout_ms={} \
             data_dir={} durability={} journal_compact_bytes={} \
             latency_dump={} latency_dump_interval_seconds={}",
            self.mode.as_str(),
            self.listen_addr(),
            self.initial_stock,
            self.max_order_qty,
            self.vacancy_url,
            self.vacancy_timeout.as_secs_f64(),
            self.http_max_connections,
            self.http_keepalive_connections,
            self.cache_ttl.as_secs_f64(),
            self.log_level,
            self.rust_log.as_deref().unwrap_or("-"),
            self.json_logs,
            self.head_bytes_max,
            self.headers_max,
            self.body_bytes_max,
            self.target_bytes_max,
            self.connections_max,
            self.head_timeout.as_millis(),
            self.idle_timeout.as_millis(),
            self.shutdown_timeout.as_millis(),
            self.data_dir.to_string_lossy(),
            self.durability.as_str(),
            self.journal_compact_bytes,
            self.latency_dump
                .as_ref()
                .map_or_else(|| "-".into(), |dir| dir.to_string_lossy()),
            self.latency_dump_interval.as_secs_f64(),
        )
    }
}

/// Builds an [`ConfigError::InvalidValue`].
fn invalid(flag: &'static str, env: &'static str, value: &str, expected: String) -> ConfigError {
    ConfigError::InvalidValue {
        flag,
        env,
        value: value.to_string(),
        expected,
    }
}

/// Attaches the option's names to a parser's "expected ..." phrase.
fn check<V>(
    parsed: Result<V, String>,
    flag: &'static str,
    env: &'static str,
    value: &str,
) -> Result<V, ConfigError> {
    parsed.map_err(|expected| invalid(flag, env, value, expected))
}

/// The mode, resolving `microservices` by the port: the explicit `--port`/`PORT` if equal to the
/// vacancy port means vacancy, if equal to the ticket port means ticket, and anything else
/// (including no explicit port) is ambiguous.
fn resolve_mode(cli: &Cli, port: Option<u16>) -> Result<Mode, ConfigError> {
    match cli.mode.trim().to_ascii_lowercase().as_str() {
        "monolith" => Ok(Mode::Monolith),
        "vacancy" => Ok(Mode::Vacancy),
        "ticket" => Ok(Mode::Ticket),
        "microservices" => {
            let vacancy = parse_port(&cli.vacancy_port, "--vacancy-port", "VACANCY_PORT")?;
            let ticket = parse_port(&cli.ticket_port, "--ticket-port", "TICKET_PORT")?;
            match port {
                Some(port) if port == vacancy && port != ticket => Ok(Mode::Vacancy),
                Some(port) if port == ticket && port != vacancy => Ok(Mode::Ticket),
                _ => {
                    let port = port.map_or_else(|| "not set".to_string(), |p| p.to_string());
                    Err(invalid(
                        "--mode",
                        "DEPLOYMENT_MODE",
                        &cli.mode,
                        format!(
                            "DEPLOYMENT_MODE=microservices is ambiguous: PORT is {port}, \
                             VACANCY_PORT is {vacancy}, TICKET_PORT is {ticket}; \
                             set --mode vacancy or --mode ticket"
                        ),
                    ))
                }
            }
        }
        _ => Err(invalid(
            "--mode",
            "DEPLOYMENT_MODE",
            &cli.mode,
            "expected monolith, vacancy or ticket (or microservices with PORT equal to \
             VACANCY_PORT or TICKET_PORT)"
                .into(),
        )),
    }
}

/// A port to listen on, 0 to 65535.
fn parse_port(raw: &str, flag: &'static str, env: &'static str) -> Result<u16, ConfigError> {
    check(parse_whole(raw, 0..=u16::MAX), flag, env, raw)
}

/// A plain decimal whole number within `range`; surrounding whitespace is ignored.
fn parse_whole<N>(raw: &str, range: RangeInclusive<N>) -> Result<N, String>
where
    N: Copy + PartialOrd + fmt::Display + TryFrom<u64>,
{
    let expected = || {
        format!(
            "expected a whole number from {} to {}",
            range.start(),
            range.end()
        )
    };
    let digits = raw.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    let value = digits.parse::<u64>().map_err(|_| expected())?;
    let value = N::try_from(value).map_err(|_| expected())?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(expected())
    }
}

/// Whole milliseconds within `range`, as a duration.
fn parse_millis(raw: &str, range: RangeInclusive<u64>) -> Result<Duration, String> {
    parse_whole(raw, range).map(Duration::from_millis)
}

/// Seconds as a decimal number (`2`, `2.0`, `0.25`, `1e-3`) within [`SECONDS_RANGE`].
fn parse_seconds(raw: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "expected a number of seconds from {} to {}",
            SECONDS_RANGE.start(),
            SECONDS_RANGE.end()
        )
    };
    let text = raw.trim();
    // Rust also parses "inf" and "NaN"; only digits, '.', exponents and signs are numbers here.
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(expected());
    }
    match text.parse::<f64>() {
        Ok(seconds) if SECONDS_RANGE.contains(&seconds) => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(expected()),
    }
}

/// A period in seconds: `0` (none), or a decimal number of seconds within `range`.
fn parse_period(raw: &str, range: RangeInclusive<f64>) -> Result<Duration, String> {
    let expected = || {
        format!(
            "expected 0 or a number of seconds from {} to {}",
            range.start(),
            range.end()
        )
    };
    let text = raw.trim();
    // As in `parse_seconds`: Rust also parses "inf" and "NaN", which are not periods.
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(expected());
    }
    match text.parse::<f64>() {
        Ok(seconds) if seconds == 0.0 && seconds.is_sign_positive() => Ok(Duration::ZERO),
        Ok(seconds) if range.contains(&seconds) => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(expected()),
    }
}

/// A directory path, kept as given (relative ones are relative to the working directory); only
/// an empty or blank one is refused. Whether it can be created and written is checked at start-up.
fn parse_dir(raw: &str) -> Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err("expected a directory path".into());
    }
    Ok(PathBuf::from(raw))
}

/// A boolean the way environment variables spell them, case-insensitively.
fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (also 1/0, yes/no, on/off)".into()),
    }
}

/// A durability mode, case-insensitively.
fn parse_durability(raw: &str) -> Result<Durability, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "sync" => Ok(Durability::Sync),
        "none" => Ok(Durability::None),
        _ => Err("expected sync or none".into()),
    }
}

/// A log level, case-insensitively, with Python's names mapped to `tracing`'s.
fn parse_log_level(raw: &str) -> Result<&'static str, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok("trace"),
        "debug" => Ok("debug"),
        "info" => Ok("info"),
        "warn" | "warning" => Ok("warn"),
        "error" | "critical" => Ok("error"),
        _ => Err("expected trace, debug, info, warn (warning) or error (critical)".into()),
    }
}

/// Parses a CPU list such as `0-3,8` (the `taskset -c` / cpuset syntax without strides) into
/// sorted CPU ids without duplicates. Items are separated by commas, may be surrounded by
/// whitespace, and are an id or an inclusive range `first-last` with `first <= last`; ids are at
/// most [`CPU_ID_MAX`]. An empty list, an empty item, a reversed range or anything else is an
/// error, returned as an "expected ..." phrase.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let expected =
        || format!("expected CPU ids from 0 to {CPU_ID_MAX} and ranges like 0-3,8 (first <= last)");
    let id = |text: &str| parse_whole(text, 0..=CPU_ID_MAX).map_err(|_| expected());
    if s.trim().is_empty() {
        return Err(expected());
    }
    let mut cpus = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        let (first, last) = match item.split_once('-') {
            Some((first, last)) => (id(first)?, id(last)?),
            None => (id(item)?, id(item)?),
        };
        if first > last {
            return Err(expected());
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Formats sorted CPU ids back into the shortest list of ranges (`0-3,8`), the inverse of
/// [`parse_cpu_list`].
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut items: Vec<String> = Vec::new();
    let mut at = 0;
    while at < cpus.len() {
        let first = cpus[at];
        let mut last = first;
        while at + 1 < cpus.len() && cpus[at + 1] == last + 1 {
            at += 1;
            last = cpus[at];
        }
        items.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        at += 1;
    }
    items.join(",")
}

/// Parses `http://host[:port][/]` into host, port and the normalised URL. The host is a name
/// (letters, digits, `.`, `-`, `_`: container names have underscores), an IPv4 address, or an
/// IPv6 address in brackets; the port defaults to 80 and must not be 0. HTTPS is refused, and so
/// are user info, paths, queries and fragments: ticketd always calls the same fixed paths.
fn parse_vacancy_url(raw: &str) -> Result<(String, u16, String), String> {
    const EXPECTED: &str = "expected http://host[:port] such as http://127.0.0.1:8001";
    let text = raw.trim();
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(EXPECTED.into());
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "https is not supported (ticketd speaks plain HTTP/1.1 to the vacancy service); {EXPECTED}"
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(EXPECTED.into());
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or(EXPECTED)?;
        address.parse::<Ipv6Addr>().map_err(|_| EXPECTED)?;
        (address, after)
    } else {
        match authority.find(':') {
            Some(colon) => (&authority[..colon], &authority[colon..]),
            None => (authority, ""),
        }
    };
    let is_name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':');
    if host.is_empty() || !host.bytes().all(is_name) {
        return Err(EXPECTED.into());
    }
    let port = match port {
        "" => 80,
        _ => {
            let digits = port.strip_prefix(':').ok_or(EXPECTED)?;
            parse_whole(digits, 1..=u16::MAX).map_err(|_| EXPECTED.to_string())?
        }
    };
    let url_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok((host.to_string(), port, format!("http://{url_host}:{port}")))
}

/// A JSON string literal for `text`.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Loads `path` into the process environment, for keys not already set (the environment beats
/// `.env`; within the file the first occurrence of a key wins). Nothing is set unless the whole
/// file parses. A missing file is not an error.
fn load_dotenv(path: &Path) -> Result<(), ConfigError> {
    let fail = |line: Option<usize>, reason: String| ConfigError::DotEnv {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(fail(None, format!("cannot open: {error}"))),
    };
    let mut bytes = Vec::new();
    file.take(DOTENV_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| fail(None, format!("cannot read: {error}")))?;
    if bytes.len() as u64 > DOTENV_BYTES_MAX {
        return Err(fail(None, format!("larger than {DOTENV_BYTES_MAX} bytes")));
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let lines_read = Rc::new(Cell::new(0));
    let reader = LineAtATime {
        rest: text,
        lines_read: Rc::clone(&lines_read),
    };
    let mut pairs = Vec::new();
    for item in dotenvy::Iter::new(reader) {
        match item {
            Ok((key, value)) if value.contains('\0') => {
                return Err(fail(
                    None,
                    format!("the value of {key} contains a NUL character"),
                ));
            }
            Ok(pair) => pairs.push(pair),
            Err(dotenvy::Error::LineParse(line, _)) => {
                // `line` is the logical line (a quoted value may span several); report its first.
                let first = lines_read.get() + 1 - line.split_terminator('\n').count().max(1);
                let shown: String = line.chars().take(80).collect();
                return Err(fail(Some(first), format!("cannot parse {shown:?}")));
            }
            Err(error) => return Err(fail(None, error.to_string())),
        }
    }
    for (key, value) in pairs {
        if std::env::var_os(&key).is_none() {
            std::env::set_var(&key, &value);
        }
    }
    Ok(())
}

/// A reader that hands out at most one line per `read`, so that the number of lines read so far
/// is known when dotenvy reports a malformed line (its error carries the line, not its number).
/// dotenvy's `BufReader` asks for more only when its buffer is empty, so it never reads ahead.
struct LineAtATime<'a> {
    /// What has not been read yet.
    rest: &'a [u8],
    /// Lines read completely so far, shared with the caller.
    lines_read: Rc<Cell<usize>>,
}

impl Read for LineAtATime<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let line_len = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.rest.len(), |i| i + 1);
        let n = line_len.min(buf.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        if n == line_len && n > 0 {
            self.lines_read.set(self.lines_read.get() + 1);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::sync::{Mutex, MutexGuard};

    /// Tests that read or write the process environment hold this, so that they do not race.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    /// Command-line arguments after the program name, in a table row.
    type Args = &'static [&'static str];
    /// Environment variables to set, in a table row.
    type Vars = &'static [(&'static str, &'static str)];

    /// Every environment variable the command line falls back to, from clap itself.
    fn env_names() -> Vec<String> {
        let mut names: Vec<String> = Cli::command()
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        names.push("RUST_LOG".into());
        names
    }

    /// Holds [`ENV_LOCK`], clears every variable we read, sets the given ones, and restores the
    /// whole environment when dropped.
    struct EnvGuard {
        saved: Vec<(OsString, OsString)>,
        _lock: MutexGuard<'static, ()>,
    }

    impl EnvGuard {
        fn new(vars: &[(&str, &str)]) -> EnvGuard {
            let lock = ENV_LOCK
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let saved = std::env::vars_os().collect();
            for name in env_names() {
                std::env::remove_var(name);
            }
            for (key, value) in vars {
                std::env::set_var(key, value);
            }
            EnvGuard { saved, _lock: lock }
        }
    }

    impl Drop for EnvGuard {
        fn drop(&mut self) {
            // Touch only what changed, so other tests' threads see as little churn as possible.
            for (key, _) in std::env::vars_os() {
                if !self.saved.iter().any(|(saved, _)| *saved == key) {
                    std::env::remove_var(key);
                }
            }
            for (key, value) in &self.saved {
                if std::env::var_os(key).as_ref() != Some(value) {
                    std::env::set_var(key, value);
                }
            }
        }
    }

    /// A `.env` file in a fresh directory, removed when dropped.
    struct DotEnv {
        dir: PathBuf,
    }

    impl DotEnv {
        fn new(contents: &str) -> DotEnv {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("ticketd-config-test-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            std::fs::write(dir.join(".env"), contents).expect("write .env");
            DotEnv { dir }
        }

        fn path(&self) -> PathBuf {
            self.dir.join(".env")
        }
    }

    impl Drop for DotEnv {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Loads with `args` after the program name, the given environment and `.env` contents.
    fn load(
        args: &[&str],
        env: &[(&str, &str)],
        dotenv: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let _env = EnvGuard::new(env);
        let file = dotenv.map(DotEnv::new);
        let argv = std::iter::once("ticketd").chain(args.iter().copied());
        Config::load_from(argv, file.as_ref().map(DotEnv::path).as_deref())
    }

    fn ok(args: &[&str], env: &[(&str, &str)], dotenv: Option<&str>) -> Config {
        load(args, env, dotenv).unwrap_or_else(|e| panic!("{args:?} {env:?} {dotenv:?}: {e}"))
    }

    fn err(args: &[&str], env: &[(&str, &str)], dotenv: Option<&str>) -> String {
        match load(args, env, dotenv) {
            Ok(config) => panic!("{args:?} {env:?} {dotenv:?} accepted: {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let c = ok(&[], &[], None);
        assert_eq!(c.mode, Mode::Monolith);
        assert_eq!(c.host, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(c.port, 8000);
        assert_eq!(c.shards, None);
        assert_eq!(c.cpus, None);
        assert_eq!(c.initial_stock, 1000);
        assert_eq!(c.max_order_qty, 1_000_000_000);
        assert_eq!(c.vacancy_url, "http://127.0.0.1:8001");
        assert_eq!(
            (c.vacancy_host.as_str(), c.vacancy_port),
            ("127.0.0.1", 8001)
        );
        assert_eq!(c.vacancy_timeout, Duration::from_secs(2));
        assert_eq!(
            (c.http_max_connections, c.http_keepalive_connections),
            (100, 20)
        );
        assert_eq!(c.cache_ttl, Duration::from_secs(1));
        assert_eq!(
            (c.log_level, c.rust_log.as_deref(), c.json_logs),
            ("info", None, false)
        );
        assert_eq!(
            (c.head_bytes_max, c.headers_max, c.body_bytes_max),
            (8192, 32, 4096)
        );
        assert_eq!((c.target_bytes_max, c.connections_max), (2048, 10_000));
        assert_eq!(c.head_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.data_dir, Path::new("./data"));
        assert_eq!(c.durability, Durability::Sync);
        assert_eq!(c.journal_compact_bytes, 64 * 1024 * 1024);
        assert_eq!(
            (c.latency_dump, c.latency_dump_interval),
            (None, Duration::ZERO)
        );
        assert!(!c.print_config);
    }

    #[test]
    fn flag_beats_env_beats_dotenv_beats_default() {
        let dotenv = "INITIAL_STOCK=3\nMAX_ORDER_QTY=3\nSHARDS=3\n";
        let env = [("INITIAL_STOCK", "2"), ("MAX_ORDER_QTY", "2")];
        let c = ok(&["--initial-stock", "1"], &env, Some(dotenv));
        assert_eq!(c.initial_stock, 1, "flag over env and .env");
        assert_eq!(c.max_order_qty, 2, "env over .env");
        assert_eq!(c.shards, Some(3), ".env over default");
        assert_eq!(c.headers_max, HEADERS_MAX_DEFAULT, "default");
    }

    /// The journal options, each from every source: flag over environment over `.env` over the
    /// default.
    #[test]
    fn journal_options_flag_beats_env_beats_dotenv_beats_default() {
        type Row = (
            Args,
            Vars,
            Option<&'static str>,
            &'static str,
            Durability,
            u64,
        );
        let dotenv = "DATA_DIR=/d\nDURABILITY=none\nJOURNAL_COMPACT_BYTES=65536\n";
        let table: &[Row] = &[
            (&[], &[], None, "./data", Durability::Sync, 67_108_864),
            (&[], &[], Some(dotenv), "/d", Durability::None, 65_536),
            (
                &[],
                &[
                    ("DATA_DIR", "/e"),
                    ("DURABILITY", "sync"),
                    ("JOURNAL_COMPACT_BYTES", "131072"),
                ],
                Some(dotenv),
                "/e",
                Durability::Sync,
                131_072,
            ),
            (
                &[
                    "--data-dir",
                    "f",
                    "--durability",
                    "none",
                    "--journal-compact-bytes",
                    "1099511627776",
                ],
                &[
                    ("DATA_DIR", "/e"),
                    ("DURABILITY", "sync"),
                    ("JOURNAL_COMPACT_BYTES", "131072"),
                ],
                Some(dotenv),
                "f",
                Durability::None,
                1 << 40,
            ),
            (
                &["--data-dir", "/x y"],
                &[("DATA_DIR", "/e")],
                None,
                "/x y",
                Durability::Sync,
                67_108_864,
            ),
            (
                &["--durability", "NONE"],
                &[],
                Some(dotenv),
                "/d",
                Durability::None,
                65_536,
            ),
            (
                &[],
                &[("DURABILITY", " Sync ")],
                Some(dotenv),
                "/d",
                Durability::Sync,
                65_536,
            ),
        ];
        for &(args, env, dotenv, data_dir, durability, compact) in table {
            let c = ok(args, env, dotenv);
            assert_eq!(
                (c.data_dir.as_path(), c.durability, c.journal_compact_bytes),
                (Path::new(data_dir), durability, compact),
                "{args:?} {env:?} {dotenv:?}"
            );
        }
    }

    #[test]
    fn dotenv_does_not_override_and_is_left_in_the_environment() {
        let _env = EnvGuard::new(&[("LOG_LEVEL", "error")]);
        let file = DotEnv::new("LOG_LEVEL=debug\nRUST_LOG=ticketd=trace\nUNRELATED=x\n");
        let c = Config::load_from(["ticketd"], Some(&file.path())).expect("loads");
        assert_eq!(c.log_level, "error");
        assert_eq!(c.rust_log.as_deref(), Some("ticketd=trace"));
        assert_eq!(std::env::var("UNRELATED").as_deref(), Ok("x"));
    }

    #[test]
    fn dotenv_forms() {
        let dotenv = "# comment\n\nexport INITIAL_STOCK=7\nHOST = \"127.0.0.1\" # trailing\n\
                      VACANCY_URL='http://vacancy:9000/'\nINITIAL_STOCK=8\n";
        let c = ok(&[], &[], Some(dotenv));
        assert_eq!(c.initial_stock, 7, "first occurrence wins");
        assert_eq!(c.host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(c.vacancy_url, "http://vacancy:9000");
        let bom = "\u{feff}INITIAL_STOCK=9\n";
        assert_eq!(ok(&[], &[], Some(bom)).initial_stock, 9);
    }

    #[test]
    fn missing_dotenv_is_skipped() {
        let _env = EnvGuard::new(&[]);
        let missing = std::env::temp_dir().join("ticketd-config-test-no-such-dir/.env");
        assert!(Config::load_from(["ticketd"], Some(&missing)).is_ok());
    }

    /// A malformed line is reported with its file and line number, and nothing from the file is
    /// applied.
    #[test]
    fn malformed_dotenv_names_file_and_line() {
        let cases: &[(&str, usize)] = &[
            ("A=1\nB 2\n", 2),
            ("# c\n\nA=1\n=x\nC=3\n", 4),
            ("A=\"multi\nline\"\nB=1\nC-D=1\n", 4),
            ("A=1\nB=\"unterminated\nC=3\n", 2),
            ("A=1\nB=1 # ok\n'C'=1\n", 3),
        ];
        for &(contents, line) in cases {
            let _env = EnvGuard::new(&[]);
            let file = DotEnv::new(contents);
            let error = Config::load_from(["ticketd"], Some(&file.path())).expect_err(contents);
            let message = error.to_string();
            let expected = format!(
                "invalid {} line {line}: cannot parse",
                file.path().display()
            );
            assert!(message.starts_with(&expected), "{contents:?}: {message}");
            assert!(!message.contains('\n'), "{message}");
            assert_eq!(
                std::env::var_os("A"),
                None,
                "{contents:?}: applied partially"
            );
        }
    }

    #[test]
    fn unreadable_dotenv_is_an_error() {
        let _env = EnvGuard::new(&[]);
        let file = DotEnv::new("");
        std::fs::remove_file(file.path()).expect("remove");
        std::fs::create_dir(file.path()).expect("a directory named .env");
        let message = Config::load_from(["ticketd"], Some(&file.path()))
            .expect_err("dir")
            .to_string();
        assert!(
            message.starts_with(&format!("invalid {}", file.path().display())),
            "{message}"
        );
        let file = DotEnv::new("A=\0\n");
        let message = Config::load_from(["ticketd"], Some(&file.path()))
            .expect_err("nul")
            .to_string();
        assert!(message.contains("NUL"), "{message}");
    }

    #[test]
    fn ports_and_modes() {
        let table: &[(Args, Vars, Mode, u16)] = &[
            (&[], &[], Mode::Monolith, 8000),
            (&["--mode", "vacancy"], &[], Mode::Vacancy, 8001),
            (&["--mode", "TICKET"], &[], Mode::Ticket, 8002),
            (&[], &[("DEPLOYMENT_MODE", "vacancy")], Mode::Vacancy, 8001),
            (
                &[],
                &[("DEPLOYMENT_MODE", "vacancy"), ("VACANCY_PORT", "9001")],
                Mode::Vacancy,
                9001,
            ),
            (
                &[],
                &[("DEPLOYMENT_MODE", "ticket"), ("VACANCY_PORT", "9001")],
                Mode::Ticket,
                8002,
            ),
            (
                &[],
                &[("MONOLITH_PORT", "9000"), ("PORT", "9999")],
                Mode::Monolith,
                9999,
            ),
            (&["--port", "0"], &[("PORT", "9999")], Mode::Monolith, 0),
            (
                &[],
                &[("DEPLOYMENT_MODE", "microservices"), ("PORT", "8001")],
                Mode::Vacancy,
                8001,
            ),
            (
                &[],
                &[("DEPLOYMENT_MODE", "microservices"), ("PORT", "8002")],
                Mode::Ticket,
                8002,
            ),
            (
                &[],
                &[
                    ("DEPLOYMENT_MODE", "microservices"),
                    ("PORT", "7000"),
                    ("TICKET_PORT", "7000"),
                ],
                Mode::Ticket,
                7000,
            ),
            (&["--port", "65535"], &[], Mode::Monolith, 65535),
        ];
        for &(args, env, mode, port) in table {
            let c = ok(args, env, None);
            assert_eq!((c.mode, c.port), (mode, port), "{args:?} {env:?}");
        }
    }

    #[test]
    fn mode_names_and_ports() {
        for (mode, name, port) in [
            (Mode::Monolith, "monolith", 8000),
            (Mode::Vacancy, "vacancy", 8001),
            (Mode::Ticket, "ticket", 8002),
        ] {
            assert_eq!((mode.as_str(), mode.default_port()), (name, port));
        }
    }

    #[test]
    fn durability_names() {
        for (durability, name) in [(Durability::Sync, "sync"), (Durability::None, "none")] {
            assert_eq!(durability.as_str(), name);
            assert_eq!(parse_durability(name), Ok(durability));
        }
    }

    /// Every invalid value names its flag and environment variable, on one line.
    #[test]
    fn invalid_values() {
        let table: &[(Args, Vars, &str)] = &[
            (&["--initial-stock", "abc"], &[], "invalid value \"abc\" for --initial-stock (INITIAL_STOCK): expected a whole number from 0 to 9223372036854775807"),
            (&[], &[("INITIAL_STOCK", "-1")], "for --initial-stock (INITIAL_STOCK)"),
            (&[], &[("INITIAL_STOCK", "9223372036854775808")], "for --initial-stock (INITIAL_STOCK)"),
            (&[], &[("INITIAL_STOCK", "")], "invalid value \"\" for --initial-stock"),
            (&["--initial-stock", "1.5"], &[], "for --initial-stock"),
            (&["--max-order-qty", "0"], &[], "for --max-order-qty (MAX_ORDER_QTY): expected a whole number from 1 to"),
            (&["--mode", "cluster"], &[], "invalid value \"cluster\" for --mode (DEPLOYMENT_MODE): expected monolith, vacancy or ticket"),
            (&[], &[("DEPLOYMENT_MODE", "microservices")], "DEPLOYMENT_MODE=microservices is ambiguous: PORT is not set"),
            (&["--port", "8000"], &[("DEPLOYMENT_MODE", "microservices")], "is ambiguous: PORT is 8000, VACANCY_PORT is 8001, TICKET_PORT is 8002; set --mode vacancy or --mode ticket"),
            (&["--port", "7", "--vacancy-port", "7", "--ticket-port", "7", "--mode", "microservices"], &[], "is ambiguous"),
            (&["--port", "65536"], &[], "for --port (PORT): expected a whole number from 0 to 65535"),
            (&["--port=-1"], &[], "for --port (PORT)"),
            (&[], &[("PORT", "-1")], "for --port (PORT)"),
            (&[], &[("VACANCY_PORT", "x"), ("DEPLOYMENT_MODE", "vacancy")], "for --vacancy-port (VACANCY_PORT)"),
            (&[], &[("MONOLITH_PORT", "99999")], "for --monolith-port (MONOLITH_PORT)"),
            (&["--host", "localhost"], &[], "invalid value \"localhost\" for --host (HOST): expected an IP address"),
            (&["--shards", "0"], &[], "for --shards (SHARDS): expected a whole number from 1 to 1024"),
            (&["--shards", "1025"], &[], "for --shards (SHARDS)"),
            (&["--cpus", "3-1"], &[], "for --cpus (CPUS): expected CPU ids"),
            (&["--vacancy-url", "https://v:1"], &[], "for --vacancy-url (VACANCY_URL): https is not supported"),
            (&["--vacancy-url", "v:8001"], &[], "for --vacancy-url (VACANCY_URL): expected http://host[:port]"),
            (&["--vacancy-timeout", "0"], &[], "for --vacancy-timeout (VACANCY_TIMEOUT): expected a number of seconds from 0.001 to 3600"),
            (&["--vacancy-timeout", "inf"], &[], "for --vacancy-timeout"),
            (&["--vacancy-timeout", "NaN"], &[], "for --vacancy-timeout"),
            (&["--vacancy-timeout", "3601"], &[], "for --vacancy-timeout"),
            (&["--cache-ttl-seconds=-1"], &[], "for --cache-ttl-seconds (CACHE_TTL_SECONDS)"),
            (&["--http-max-connections", "0"], &[], "for --http-max-connections (HTTP_MAX_CONNECTIONS)"),
            (&["--http-keepalive-connections", "101"], &[], "invalid value \"101\" for --http-keepalive-connections (HTTP_KEEPALIVE_CONNECTIONS): expected a whole number from 0 to 100 (at most --http-max-connections, HTTP_MAX_CONNECTIONS)"),
            (&["--http-max-connections", "10"], &[], "expected a whole number from 0 to 10"),
            (&["--log-level", "loud"], &[], "for --log-level (LOG_LEVEL): expected trace, debug"),
            (&["--json-logs", "maybe"], &[], "for --json-logs (JSON_LOGS): expected true or false"),
            (&["--head-bytes-max", "255"], &[], "for --head-bytes-max (HEAD_BYTES_MAX): expected a whole number from 256 to 1048576"),
            (&["--head-bytes-max", "1048577"], &[], "for --head-bytes-max"),
            (&["--headers-max", "0"], &[], "for --headers-max (HEADERS_MAX)"),
            (&["--body-bytes-max", "15"], &[], "for --body-bytes-max (BODY_BYTES_MAX)"),
            (&["--target-bytes-max", "99999"], &[], "for --target-bytes-max (TARGET_BYTES_MAX)"),
            (&["--connections-max", "0"], &[], "for --connections-max (CONNECTIONS_MAX)"),
            (&["--head-timeout-ms", "0"], &[], "for --head-timeout-ms (HEAD_TIMEOUT_MS)"),
            (&["--idle-timeout-ms", "3600001"], &[], "for --idle-timeout-ms (IDLE_TIMEOUT_MS)"),
            (&["--shutdown-timeout-ms", "x"], &[], "for --shutdown-timeout-ms (SHUTDOWN_TIMEOUT_MS): expected a whole number from 0 to 3600000"),
            (&["--initial-stock", "1\n2"], &[], "invalid value \"1\\n2\" for --initial-stock"),
            (&["--latency-dump", ""], &[], "invalid value \"\" for --latency-dump (LATENCY_DUMP): expected a directory path"),
            (&[], &[("LATENCY_DUMP", "  ")], "for --latency-dump (LATENCY_DUMP)"),
            (&["--latency-dump-interval-seconds", "0.05"], &[], "invalid value \"0.05\" for --latency-dump-interval-seconds (LATENCY_DUMP_INTERVAL_SECONDS): expected 0 or a number of seconds from 0.1 to 3600"),
            (&[], &[("LATENCY_DUMP_INTERVAL_SECONDS", "-1")], "for --latency-dump-interval-seconds (LATENCY_DUMP_INTERVAL_SECONDS)"),
            (&["--latency-dump-interval-seconds", "1s"], &[], "for --latency-dump-interval-seconds"),
            (&["--data-dir", ""], &[], "invalid value \"\" for --data-dir (DATA_DIR): expected a directory path"),
            (&[], &[("DATA_DIR", " \t")], "for --data-dir (DATA_DIR)"),
            (&["--durability", "fsync"], &[], "invalid value \"fsync\" for --durability (DURABILITY): expected sync or none"),
            (&[], &[("DURABILITY", "")], "invalid value \"\" for --durability (DURABILITY)"),
            (&[], &[("DURABILITY", "off")], "for --durability (DURABILITY)"),
            (&["--journal-compact-bytes", "65535"], &[], "invalid value \"65535\" for --journal-compact-bytes (JOURNAL_COMPACT_BYTES): expected a whole number from 65536 to 1099511627776"),
            (&[], &[("JOURNAL_COMPACT_BYTES", "1099511627777")], "for --journal-compact-bytes (JOURNAL_COMPACT_BYTES)"),
            (&[], &[("JOURNAL_COMPACT_BYTES", "64MiB")], "for --journal-compact-bytes (JOURNAL_COMPACT_BYTES)"),
            (&["--journal-compact-bytes=-1"], &[], "for --journal-compact-bytes"),
        ];
        for &(args, env, expected) in table {
            let message = err(args, env, None);
            assert!(
                message.contains(expected),
                "{args:?} {env:?}:\n  got      {message}\n  expected {expected}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn values_accepted() {
        let c = ok(
            &[
                "--host",
                "::1",
                "--shards",
                "4",
                "--cpus",
                "3, 0-1,1",
                "--initial-stock",
                "0",
                "--vacancy-timeout",
                "0.25",
                "--cache-ttl-seconds",
                "3",
                "--log-level",
                "WARNING",
                "--json-logs",
                "--max-order-qty",
                "9223372036854775807",
                "--http-keepalive-connections",
                "0",
                "--shutdown-timeout-ms",
                "0",
                "--latency-dump",
                "/tmp/x y",
                "--latency-dump-interval-seconds",
                "2.5",
            ],
            &[],
            None,
        );
        assert_eq!(c.host, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (c.shards, c.cpus.as_deref()),
            (Some(4), Some(&[0, 1, 3][..]))
        );
        assert_eq!(c.initial_stock, 0);
        assert_eq!(c.vacancy_timeout, Duration::from_millis(250));
        assert_eq!(c.cache_ttl, Duration::from_secs(3));
        assert_eq!((c.log_level, c.json_logs), ("warn", true));
        assert_eq!(c.max_order_qty, i64::MAX as u64);
        assert_eq!(c.http_keepalive_connections, 0);
        assert_eq!(c.shutdown_timeout, Duration::ZERO);
        assert_eq!(c.latency_dump.as_deref(), Some(Path::new("/tmp/x y")));
        assert_eq!(c.latency_dump_interval, Duration::from_millis(2500));
        let from_env = ok(
            &[],
            &[
                ("LATENCY_DUMP", "dumps"),
                ("LATENCY_DUMP_INTERVAL_SECONDS", "0.2"),
            ],
            None,
        );
        assert_eq!(from_env.latency_dump.as_deref(), Some(Path::new("dumps")));
        assert_eq!(from_env.latency_dump_interval, Duration::from_millis(200));
        for (raw, expected) in [
            ("TRUE", true),
            ("1", true),
            ("yes", true),
            ("On", true),
            ("false", false),
            ("0", false),
            ("No", false),
            ("off", false),
        ] {
            assert_eq!(
                ok(&[], &[("JSON_LOGS", raw)], None).json_logs,
                expected,
                "{raw}"
            );
        }
        assert!(!ok(&["--json-logs", "false"], &[("JSON_LOGS", "true")], None).json_logs);
        for (raw, expected) in [
            ("trace", "trace"),
            ("DEBUG", "debug"),
            ("Info", "info"),
            ("warn", "warn"),
            ("error", "error"),
            ("CRITICAL", "error"),
        ] {
            assert_eq!(
                ok(&["--log-level", raw], &[], None).log_level,
                expected,
                "{raw}"
            );
        }
        assert_eq!(ok(&[], &[("RUST_LOG", "  ")], None).rust_log, None);
    }

    #[test]
    fn cpu_lists() {
        let table: &[(&str, Result<&[usize], ()>)] = &[
            ("0", Ok(&[0])),
            ("0-3,8", Ok(&[0, 1, 2, 3, 8])),
            ("8,0-3", Ok(&[0, 1, 2, 3, 8])),
            ("3,3,2-3", Ok(&[2, 3])),
            (" 1 , 2 ", Ok(&[1, 2])),
            ("5-5", Ok(&[5])),
            ("4095", Ok(&[4095])),
            ("", Err(())),
            (" ", Err(())),
            (",", Err(())),
            ("1,", Err(())),
            ("1,,2", Err(())),
            ("3-1", Err(())),
            ("a", Err(())),
            ("1-", Err(())),
            ("-1", Err(())),
            ("1-2-3", Err(())),
            ("4096", Err(())),
            ("0-4096", Err(())),
            ("+1", Err(())),
            ("0x1", Err(())),
            ("1:2", Err(())),
        ];
        for &(raw, expected) in table {
            let parsed = parse_cpu_list(raw);
            assert_eq!(parsed.as_deref().map_err(|_| ()), expected, "{raw:?}");
        }
        assert_eq!(parse_cpu_list("0-4095").map(|cpus| cpus.len()), Ok(4096));
    }

    #[test]
    fn cpu_list_formatting_round_trips() {
        for raw in ["0", "0-3,8", "1,3,5", "0-1,3-4,9-4095"] {
            let cpus = parse_cpu_list(raw).expect(raw);
            assert_eq!(format_cpu_list(&cpus), raw);
        }
    }

    #[test]
    fn vacancy_urls() {
        type Parsed = Result<(&'static str, u16, &'static str), ()>;
        let table: &[(&str, Parsed)] = &[
            (
                "http://127.0.0.1:8001",
                Ok(("127.0.0.1", 8001, "http://127.0.0.1:8001")),
            ),
            (
                "http://127.0.0.1:8001/",
                Ok(("127.0.0.1", 8001, "http://127.0.0.1:8001")),
            ),
            ("HTTP://Vacancy", Ok(("Vacancy", 80, "http://Vacancy:80"))),
            (
                "http://vacancy_service:9000",
                Ok(("vacancy_service", 9000, "http://vacancy_service:9000")),
            ),
            ("http://[::1]:8001", Ok(("::1", 8001, "http://[::1]:8001"))),
            ("http://[::1]", Ok(("::1", 80, "http://[::1]:80"))),
            (" http://a.b-c:1 ", Ok(("a.b-c", 1, "http://a.b-c:1"))),
            ("https://vacancy:8001", Err(())),
            ("ftp://vacancy", Err(())),
            ("vacancy:8001", Err(())),
            ("http://", Err(())),
            ("http://:8001", Err(())),
            ("http://vacancy:", Err(())),
            ("http://vacancy:0", Err(())),
            ("http://vacancy:65536", Err(())),
            ("http://vacancy:80:80", Err(())),
            ("http://vacancy/api", Err(())),
            ("http://vacancy:8001//", Err(())),
            ("http://user@vacancy", Err(())),
            ("http://vacancy?x=1", Err(())),
            ("http://vacancy#x", Err(())),
            ("http://[::1", Err(())),
            ("http://[vacancy]:1", Err(())),
            ("http://::1:8001", Err(())),
            ("http://va cancy", Err(())),
        ];
        for &(raw, expected) in table {
            let parsed = parse_vacancy_url(raw);
            let parsed = parsed
                .as_ref()
                .map(|(h, p, u)| (h.as_str(), *p, u.as_str()))
                .map_err(|_| ());
            assert_eq!(parsed, expected, "{raw:?}");
        }
    }

    #[test]
    fn seconds() {
        let table: &[(&str, Option<Duration>)] = &[
            ("2", Some(Duration::from_secs(2))),
            ("2.0", Some(Duration::from_secs(2))),
            (" 0.5 ", Some(Duration::from_millis(500))),
            ("1e-3", Some(Duration::from_millis(1))),
            ("3600", Some(Duration::from_secs(3600))),
            ("0", None),
            ("0.0009", None),
            ("-1", None),
            ("3600.5", None),
            ("inf", None),
            ("infinity", None),
            ("nan", None),
            ("", None),
            ("2s", None),
            ("1,5", None),
        ];
        for &(raw, expected) in table {
            assert_eq!(parse_seconds(raw).ok(), expected, "{raw:?}");
        }
    }

    #[test]
    fn periods() {
        let range = LATENCY_DUMP_INTERVAL_SECONDS_RANGE;
        let table: &[(&str, Option<Duration>)] = &[
            ("0", Some(Duration::ZERO)),
            ("0.0", Some(Duration::ZERO)),
            (" 0 ", Some(Duration::ZERO)),
            ("0.1", Some(Duration::from_millis(100))),
            ("2", Some(Duration::from_secs(2))),
            ("1e1", Some(Duration::from_secs(10))),
            ("3600", Some(Duration::from_secs(3600))),
            ("-0", None),
            ("0.09", None),
            ("3600.1", None),
            ("-1", None),
            ("inf", None),
            ("NaN", None),
            ("", None),
            ("10s", None),
        ];
        for &(raw, expected) in table {
            assert_eq!(parse_period(raw, range.clone()).ok(), expected, "{raw:?}");
        }
    }

    #[test]
    fn whole_numbers() {
        assert_eq!(parse_whole::<u64>("0", 0..=5), Ok(0));
        assert_eq!(parse_whole::<u64>(" 5\t", 0..=5), Ok(5));
        assert_eq!(parse_whole::<u16>("00080", 0..=u16::MAX), Ok(80));
        for raw in [
            "",
            "6",
            "+1",
            "-0",
            "1_000",
            "1 000",
            "18446744073709551616",
            "٣",
        ] {
            assert!(parse_whole::<u64>(raw, 0..=5).is_err(), "{raw:?}");
        }
        assert!(parse_whole::<u16>("65536", 0..=u16::MAX).is_err());
    }

    #[test]
    fn clap_errors_are_passed_through() {
        for args in [
            &["--help"][..],
            &["--version"],
            &["--no-such-flag"],
            &["--port"],
            &["extra"],
        ] {
            match load(args, &[], None) {
                Err(ConfigError::Clap(error)) => {
                    let help = matches!(args[0], "--help" | "--version");
                    assert_eq!(
                        ConfigError::Clap(error).is_help_or_version(),
                        help,
                        "{args:?}"
                    );
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
        let message = err(&["--no-such-flag"], &[], None);
        assert!(
            message.contains("--no-such-flag") && !message.contains('\n'),
            "{message}"
        );
    }

    #[test]
    fn help_names_every_environment_variable() {
        let help = Cli::command().render_long_help().to_string();
        let names = env_names();
        assert!(names.len() >= 25, "{names:?}");
        for name in names {
            assert!(help.contains(&name), "--help lacks {name}");
        }
    }

    #[test]
    fn json_is_one_parseable_line_with_every_field() {
        let c = ok(
            &["--cpus", "0-2", "--shards", "2"],
            &[("RUST_LOG", "a=\"b\"\n")],
            None,
        );
        let json = c.to_json();
        assert!(!json.contains('\n'), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(value["mode"], "monolith");
        assert_eq!(value["port"], 8000);
        assert_eq!(value["shards"], 2);
        assert_eq!(value["cpus"], serde_json::json!([0, 1, 2]));
        assert_eq!(value["vacancy_timeout"], 2.0);
        assert_eq!(value["cache_ttl_seconds"], 1.0);
        assert_eq!(value["head_timeout_ms"], 10_000);
        assert_eq!(value["rust_log"], "a=\"b\"\n");
        assert_eq!(value["latency_dump_interval_seconds"], 0.0);
        assert_eq!(value["data_dir"], "./data");
        assert_eq!(value["durability"], "sync");
        assert_eq!(value["journal_compact_bytes"], 67_108_864);
        assert_eq!(value.as_object().map(|o| o.len()), Some(30));
        let auto = ok(&[], &[], None).to_json();
        let value: serde_json::Value = serde_json::from_str(&auto).expect("valid JSON");
        assert!(
            value["shards"].is_null()
                && value["cpus"].is_null()
                && value["rust_log"].is_null()
                && value["latency_dump"].is_null()
        );
        let dump = ok(
            &[
                "--latency-dump",
                "/var/tmp/\"q\"",
                "--latency-dump-interval-seconds",
                "0.5",
            ],
            &[],
            None,
        )
        .to_json();
        let value: serde_json::Value = serde_json::from_str(&dump).expect("valid JSON");
        assert_eq!(value["latency_dump"], "/var/tmp/\"q\"");
        assert_eq!(value["latency_dump_interval_seconds"], 0.5);
        let journal = ok(
            &["--data-dir", "d\\\"j\"", "--durability", "none"],
            &[("JOURNAL_COMPACT_BYTES", "65536")],
            None,
        )
        .to_json();
        let value: serde_json::Value = serde_json::from_str(&journal).expect("valid JSON");
        assert_eq!(value["data_dir"], "d\\\"j\"");
        assert_eq!(value["durability"], "none");
        assert_eq!(value["journal_compact_bytes"], 65_536);
    }

    #[test]
    fn summary_is_one_line() {
        let c = ok(&["--cpus", "0-3,8"], &[], None);
        let summary = c.summary();
        assert!(!summary.contains('\n'));
        assert!(
            summary.starts_with("mode=monolith listen=0.0.0.0:8000 shards=auto cpus=0-3,8 "),
            "{summary}"
        );
        assert!(summary.contains(" shutdown_timeout_ms=5000"), "{summary}");
        assert!(
            summary.contains(
                " shutdown_timeout_ms=5000 data_dir=./data durability=sync \
                 journal_compact_bytes=67108864 latency_dump="
            ),
            "{summary}"
        );
        assert!(
            summary.ends_with(" latency_dump=- latency_dump_interval_seconds=0"),
            "{summary}"
        );
        let dump = ok(
            &[
                "--latency-dump",
                "d",
                "--latency-dump-interval-seconds",
                "1",
            ],
            &[],
            None,
        )
        .summary();
        assert!(
            dump.ends_with(" latency_dump=d latency_dump_interval_seconds=1"),
            "{dump}"
        );
    }

    #[test]
    fn json_strings_escape() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}

//! Configuration: command-line flags, environment, `.env`, defaults, in that order of precedence.
//!
//! [`Config::load`] reads `.env` from the working directory into the process environment (only
//! the keys not already set), then lets clap parse the flags with environment fallbacks, each value
//! through its option's parser, then settles what depends on several options (the port, the mode
//! `microservices`, the keep-alive pool), so that every invalid value produces the same one-line
//! message naming both the flag and the environment variable:
//!
//! ```text
//! invalid value "abc" for --initial-stock (INITIAL_STOCK): expected a whole number from 0 to 9223372036854775807
//! ```
//!
//! Each option is said once, in `cli.rs`: flag, variable, default, help and parser together. The
//! environment names are those of the original Python system, which keep working.
//!
//! Layout:
//! - `cli.rs`: the options (clap's definition) and their named defaults and ranges, with reasons;
//! - `parse.rs`: text to values, each refusal an "expected ..." phrase;
//! - `mode.rs`: the two `MODE` choices, [`Mode`] and [`Durability`], and their names;
//! - `error.rs`: [`ConfigError`], naming an option by its flag and variable from `cli.rs`;
//! - `dotenv.rs`: the `.env` file;
//! - here: [`Config`], the validated whole; `--print-config` is its serde form, and the start-up
//!   log line ([`Config::summary`]) is the same form as `key=value` pairs.

mod cli;
mod dotenv;
mod error;
mod mode;
mod parse;

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};

pub use cli::{
    env_names, BODY_BYTES_MAX_DEFAULT, BODY_BYTES_MAX_RANGE, CACHE_TTL_SECONDS_DEFAULT,
    CONNECTIONS_MAX_DEFAULT, CONNECTIONS_MAX_RANGE, CORS_ALLOW_ORIGINS_DEFAULT, DATA_DIR_DEFAULT,
    HEADERS_MAX_DEFAULT, HEADERS_MAX_RANGE, HEAD_BYTES_MAX_DEFAULT, HEAD_BYTES_MAX_RANGE,
    HEAD_TIMEOUT_MS_DEFAULT, HTTP_KEEPALIVE_CONNECTIONS_DEFAULT, HTTP_MAX_CONNECTIONS_DEFAULT,
    HTTP_MAX_CONNECTIONS_RANGE, IDLE_TIMEOUT_MS_DEFAULT, INITIAL_STOCK_DEFAULT,
    INITIAL_STOCK_RANGE, JOURNAL_COMPACT_BYTES_DEFAULT, JOURNAL_COMPACT_BYTES_RANGE,
    LATENCY_DUMP_INTERVAL_SECONDS_DEFAULT, LATENCY_DUMP_INTERVAL_SECONDS_RANGE, LOG_LEVEL_DEFAULT,
    MAX_ORDER_QTY_DEFAULT, MAX_ORDER_QTY_RANGE, RUST_LOG_ENV, SECONDS_RANGE, SHARDS_MAX,
    SHUTDOWN_TIMEOUT_MS_DEFAULT, SHUTDOWN_TIMEOUT_MS_RANGE, TARGET_BYTES_MAX_DEFAULT,
    TARGET_BYTES_MAX_RANGE, TIMEOUT_MS_RANGE, VACANCY_TIMEOUT_SECONDS_DEFAULT, VACANCY_URL_DEFAULT,
};
pub use cli::{ClusterArgs, ClusterTool, JournalTool, Tool};
pub use cli::{CLUSTER_WINDOW_DEFAULT, CLUSTER_WINDOW_RANGE};
pub use dotenv::{DOTENV_BYTES_MAX, DOTENV_FILE};
pub use error::ConfigError;
pub use mode::{Durability, Mode};
pub use parse::{format_cpu_list, parse_cpu_list, CorsOrigins, CORS_ORIGINS_MAX, CPU_ID_MAX};

use cli::Cli;
use mode::ModeAsked;

/// The effective configuration, every value validated.
///
/// Its serde form is `--print-config`: keys are the flags' names in snake_case, and values are in
/// the flags' units (seconds for `vacancy_timeout`, `cache_ttl_seconds` and
/// `latency_dump_interval_seconds`, milliseconds for `*_timeout_ms`, bytes for `*_bytes*`);
/// `shards`, `cpus`, `rust_log` and `latency_dump` are `null` when automatic or off.
#[derive(Clone, Debug, Serialize)]
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
    #[serde(serialize_with = "seconds")]
    pub vacancy_timeout: Duration,
    /// Connections to the vacancy service per shard (`--http-max-connections`,
    /// `HTTP_MAX_CONNECTIONS`).
    pub http_max_connections: usize,
    /// How many of those may stay open while idle (`--http-keepalive-connections`,
    /// `HTTP_KEEPALIVE_CONNECTIONS`); at most `http_max_connections`.
    pub http_keepalive_connections: usize,
    /// How stale `remaining` and `/available` may be (`--cache-ttl-seconds`, `CACHE_TTL_SECONDS`).
    #[serde(rename = "cache_ttl_seconds", serialize_with = "seconds")]
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
    /// The most open client connections per shard (`--connections-max`); beyond them a shard
    /// stops accepting, and new connections wait in the kernel's listen backlog.
    pub connections_max: usize,
    /// How long a request head may take once its first byte has arrived (`--head-timeout-ms`).
    #[serde(rename = "head_timeout_ms", serialize_with = "millis")]
    pub head_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests (`--idle-timeout-ms`).
    #[serde(rename = "idle_timeout_ms", serialize_with = "millis")]
    pub idle_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM (`--shutdown-timeout-ms`).
    #[serde(rename = "shutdown_timeout_ms", serialize_with = "millis")]
    pub shutdown_timeout: Duration,
    /// Where the durable journal lives (`--data-dir`, `DATA_DIR`), kept as given: a relative path
    /// is relative to the working directory. Whether it can be created and written is checked at
    /// start-up (exit 1), not here, so that `--print-config` touches no file. Not used with
    /// [`Durability::None`].
    #[serde(serialize_with = "path")]
    pub data_dir: PathBuf,
    /// Whether a sale is acknowledged only once it is on disk (`--durability`, `DURABILITY`).
    pub durability: Durability,
    /// Bytes a shard's journal file may grow to before it is compacted into a snapshot
    /// (`--journal-compact-bytes`, `JOURNAL_COMPACT_BYTES`), within
    /// [`JOURNAL_COMPACT_BYTES_RANGE`].
    pub journal_compact_bytes: u64,
    /// How long an `Idempotency-Key`'s answer is kept (`--idempotency-ttl`, `IDEMPOTENCY_TTL`,
    /// given in seconds).
    #[serde(serialize_with = "seconds")]
    pub idempotency_ttl: Duration,
    /// The most `Idempotency-Key` answers a shard keeps (`--idempotency-keys-max`,
    /// `IDEMPOTENCY_KEYS_MAX`).
    pub idempotency_keys_max: usize,
    /// Where each shard writes its service-time histograms, `shard-N.hgrm` and `shard-N.hlog`
    /// (`--latency-dump`, `LATENCY_DUMP`); `None`: nothing is recorded. The directory is created
    /// at start-up; one that cannot be is a start-up failure (exit 1), not a configuration error,
    /// so that validating a configuration (`--print-config`) touches no file.
    #[serde(serialize_with = "optional_path")]
    pub latency_dump: Option<PathBuf>,
    /// How often the histograms are also dumped while running (`--latency-dump-interval-seconds`,
    /// `LATENCY_DUMP_INTERVAL_SECONDS`); zero: only at shutdown. Ignored without `latency_dump`.
    #[serde(rename = "latency_dump_interval_seconds", serialize_with = "seconds")]
    pub latency_dump_interval: Duration,
    /// Web origins whose pages may read responses (`--cors-allow-origins`,
    /// `CORS_ALLOW_ORIGINS`): every origin (`*`, the default, as the original system), none, or
    /// a list.
    #[serde(serialize_with = "display")]
    pub cors_allow_origins: CorsOrigins,
    /// Purchases per second per client address and shard (`--rate-limit-purchases-per-second`,
    /// `RATE_LIMIT_PURCHASES_PER_SECOND`); 0: no rate limit.
    pub rate_limit_purchases_per_second: f64,
    /// The token bucket's size (`--rate-limit-burst`, `RATE_LIMIT_BURST`); 0 in the flag means
    /// the rate rounded up, resolved here.
    pub rate_limit_burst: u32,
    /// Every request counts against the limit (`--rate-limit-all-routes`).
    pub rate_limit_all_routes: bool,
    /// The admin listener's address (`--admin-listen`, `ADMIN_LISTEN`); `None`: off.
    pub admin_listen: Option<SocketAddr>,
    /// The file holding its bearer token (`--admin-token-file`, `ADMIN_TOKEN_FILE`): required
    /// with `admin_listen`; read at start-up (exit 1 when unreadable or unfit), so
    /// `--print-config` touches no file and never shows the token.
    #[serde(serialize_with = "optional_path")]
    pub admin_token_file: Option<PathBuf>,
    /// A node of a sale past one machine (`--cluster-etcd` and its companions); `None`: one
    /// machine. Serialized as `cluster_etcd`, `cluster_name`, `node_id`, `cluster_window`.
    #[serde(flatten)]
    pub cluster: Option<Cluster>,
    /// `--print-config`: print [`Config::to_json`] on stdout and exit 0 instead of serving.
    #[serde(skip)]
    pub print_config: bool,
    /// A tool to run instead of serving (`ticketd journal inspect`, ...).
    #[serde(skip)]
    pub tool: Option<Tool>,
}

/// A cluster node's settings (`--cluster-etcd`, `--cluster-name`, `--node-id`,
/// `--cluster-window`), validated together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cluster {
    /// etcd client URLs, each `http://host:port`.
    #[serde(rename = "cluster_etcd")]
    pub etcd: Vec<String>,
    /// The sale's name (its ledger's key prefix).
    #[serde(rename = "cluster_name")]
    pub name: String,
    /// This node's id.
    pub node_id: String,
    /// The most sales the node holds unreported; at least `max_order_qty`.
    #[serde(rename = "cluster_window")]
    pub window: u64,
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
            dotenv::load_dotenv(path)?;
        }
        let (cli, command) = cli::parse_args(args)?;
        let rust_log = std::env::var(RUST_LOG_ENV)
            .ok()
            .filter(|filter| !filter.trim().is_empty());
        Config::from_cli(cli, &command, rust_log)
    }

    /// Settles what depends on several options, and converts the rest from the flags' units.
    /// `command` is the one `cli` was parsed with, to name options in errors.
    fn from_cli(
        cli: Cli,
        command: &clap::Command,
        rust_log: Option<String>,
    ) -> Result<Config, ConfigError> {
        let port_of = |id: &str, raw: &str| {
            parse::parse_whole(raw, 0..=u16::MAX)
                .map_err(|expected| ConfigError::invalid(command, id, raw, expected))
        };
        let mode = match &cli.mode {
            ModeAsked::Mode(mode) => *mode,
            ModeAsked::Microservices(given) => {
                let vacancy = port_of("vacancy_port", &cli.vacancy_port)?;
                let ticket = port_of("ticket_port", &cli.ticket_port)?;
                resolve_microservices(cli.port, vacancy, ticket)
                    .map_err(|expected| ConfigError::invalid(command, "mode", given, expected))?
            }
        };
        let port = match (cli.port, mode) {
            (Some(port), _) => port,
            (None, Mode::Monolith) => port_of("monolith_port", &cli.monolith_port)?,
            (None, Mode::Vacancy) => port_of("vacancy_port", &cli.vacancy_port)?,
            (None, Mode::Ticket) => port_of("ticket_port", &cli.ticket_port)?,
        };
        let keepalive = &cli.http_keepalive_connections;
        let http_keepalive_connections =
            parse::parse_whole(keepalive, 0..=cli.http_max_connections).map_err(|expected| {
                let (flag, env) = error::names_of(command, "http_max_connections");
                let expected = format!("{expected} (at most {flag}, {env})");
                ConfigError::invalid(command, "http_keepalive_connections", keepalive, expected)
            })?;
        if mode == Mode::Vacancy && cli.idempotency_keys_max == 0 {
            // The ticket tier retries a reserve whose outcome it lost with the same key: a
            // vacancy service that kept no answer would sell it again.
            let expected = "at least 1 in vacancy mode: the ticket tier retries reserves with \
                            the same Idempotency-Key and needs their answers kept"
                .to_string();
            return Err(ConfigError::invalid(
                command,
                "idempotency_keys_max",
                "0",
                expected,
            ));
        }
        if cli.admin_listen.is_some() && cli.admin_token_file.is_none() {
            let (flag, env) = error::names_of(command, "admin_listen");
            let expected = format!("a token file, required with {flag} ({env})");
            return Err(ConfigError::invalid(
                command,
                "admin_token_file",
                "",
                expected,
            ));
        }
        let (cluster, max_order_qty) = cluster_of(&cli, command, mode)?;
        Ok(Config {
            mode,
            host: cli.host,
            port,
            shards: cli.shards,
            cpus: cli.cpus,
            initial_stock: cli.initial_stock,
            max_order_qty,
            vacancy_url: cli.vacancy_url.url,
            vacancy_host: cli.vacancy_url.host,
            vacancy_port: cli.vacancy_url.port,
            vacancy_timeout: Duration::from_secs_f64(cli.vacancy_timeout),
            http_max_connections: cli.http_max_connections,
            http_keepalive_connections,
            cache_ttl: Duration::from_secs_f64(cli.cache_ttl_seconds),
            log_level: cli.log_level,
            rust_log,
            json_logs: cli.json_logs,
            head_bytes_max: cli.head_bytes_max,
            headers_max: cli.headers_max,
            body_bytes_max: cli.body_bytes_max,
            target_bytes_max: cli.target_bytes_max,
            connections_max: cli.connections_max,
            head_timeout: Duration::from_millis(cli.head_timeout_ms),
            idle_timeout: Duration::from_millis(cli.idle_timeout_ms),
            shutdown_timeout: Duration::from_millis(cli.shutdown_timeout_ms),
            data_dir: cli.data_dir,
            durability: cli.durability,
            journal_compact_bytes: cli.journal_compact_bytes,
            idempotency_ttl: Duration::from_secs_f64(cli.idempotency_ttl),
            idempotency_keys_max: cli.idempotency_keys_max,
            latency_dump: cli.latency_dump,
            latency_dump_interval: Duration::from_secs_f64(cli.latency_dump_interval_seconds),
            cors_allow_origins: cli.cors_allow_origins,
            rate_limit_purchases_per_second: cli.rate_limit_purchases_per_second,
            rate_limit_burst: match cli.rate_limit_burst {
                0 => (cli.rate_limit_purchases_per_second.ceil() as u32).max(1),
                burst => burst,
            },
            rate_limit_all_routes: cli.rate_limit_all_routes,
            admin_listen: cli.admin_listen,
            admin_token_file: cli.admin_token_file,
            cluster,
            print_config: cli.print_config,
            tool: cli.tool,
        })
    }

    /// The address to listen on.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The effective configuration as one line of JSON: the serde form (see [`Config`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Config always serializes: no maps, paths as text")
    }

    /// One line of `key=value` pairs for the start-up log: the same keys, values and units as
    /// [`Config::to_json`], strings unquoted (escaped as in JSON, so the line stays one line),
    /// `-` for `null`.
    pub fn summary(&self) -> String {
        let mut line = Vec::new();
        let mut serializer =
            serde_json::Serializer::with_formatter(&mut line, KeyValues::default());
        self.serialize(&mut serializer)
            .expect("a Config always serializes: no maps, paths as text");
        String::from_utf8(line).expect("serde_json writes UTF-8")
    }
}

/// `microservices` names the vacancy mode when the explicit `--port`/`PORT` equals the vacancy
/// port and not the ticket port, and the ticket mode the other way round; anything else
/// (including no explicit port) is ambiguous, answered with the phrase for the error.
fn resolve_microservices(port: Option<u16>, vacancy: u16, ticket: u16) -> Result<Mode, String> {
    match port {
        Some(port) if port == vacancy && port != ticket => Ok(Mode::Vacancy),
        Some(port) if port == ticket && port != vacancy => Ok(Mode::Ticket),
        _ => {
            let port = port.map_or_else(|| "not set".to_string(), |p| p.to_string());
            Err(format!(
                "DEPLOYMENT_MODE=microservices is ambiguous: PORT is {port}, \
                 VACANCY_PORT is {vacancy}, TICKET_PORT is {ticket}; \
                 set --mode vacancy or --mode ticket"
            ))
        }
    }
}

/// A value as its `Display` writes it (the form its flag takes).
fn display<T: std::fmt::Display, S: Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// A duration in seconds, as the `*_seconds` flags take it: whole seconds as an integer (`2`),
/// others as a decimal (`0.25`), the way `--print-config` always wrote them.
fn seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    if duration.subsec_nanos() == 0 {
        serializer.serialize_u64(duration.as_secs())
    } else {
        serializer.serialize_f64(duration.as_secs_f64())
    }
}

/// A duration in whole milliseconds, as the `*_ms` flags take it (at most an hour, so it fits).
fn millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// A path as text; bytes that are not UTF-8 show as U+FFFD rather than failing.
fn path<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// An optional path as text or `null`.
fn optional_path<S: Serializer>(value: &Option<PathBuf>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(dir) => serializer.serialize_some(&*dir.to_string_lossy()),
        None => serializer.serialize_none(),
    }
}

/// A serde_json output format that writes the top-level object as `key=value` pairs separated by
/// spaces: keys and strings unquoted, `null` as `-`, arrays and any nested object as JSON.
#[derive(Default)]
struct KeyValues {
    /// Objects open around the value being written; 1 inside the top-level object.
    depth: usize,
}

impl serde_json::ser::Formatter for KeyValues {
    fn write_null<W: ?Sized + io::Write>(&mut self, out: &mut W) -> io::Result<()> {
        out.write_all(b"-")
    }

    fn begin_string<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn end_string<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, out: &mut W) -> io::Result<()> {
        self.depth += 1;
        out.write_all(if self.depth == 1 { b"" } else { b"{" })
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, out: &mut W) -> io::Result<()> {
        self.depth -= 1;
        out.write_all(if self.depth == 0 { b"" } else { b"}" })
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        out: &mut W,
        first: bool,
    ) -> io::Result<()> {
        match (first, self.depth) {
            (true, _) => Ok(()),
            (false, 1) => out.write_all(b" "),
            (false, _) => out.write_all(b","),
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, out: &mut W) -> io::Result<()> {
        out.write_all(if self.depth == 1 { b"=" } else { b":" })
    }
}

/// The cluster settings, checked together, and the largest order they allow: with
/// `--cluster-etcd`, the sale's name and the node's id are required, the journal must be on
/// (`--durability sync`: a lease not on disk could be spent twice after a crash), the mode must
/// sell (the ticket tier holds no stock), and no order may ask for more than the window (the
/// default `--max-order-qty` is lowered to it; a larger one set on purpose is an error).
fn cluster_of(
    cli: &Cli,
    command: &clap::Command,
    mode: Mode,
) -> Result<(Option<Cluster>, u64), ConfigError> {
    if cli.cluster_etcd.is_empty() || cli.tool.is_some() {
        // The tools read CLUSTER_ETCD too (`ticketd cluster`), and serve no sale.
        return Ok((None, cli.max_order_qty));
    }
    let (flag, env) = error::names_of(command, "cluster_etcd");
    let needs = |what: &str| format!("{what}, required with {flag} ({env})");
    let name = cli.cluster_name.clone().ok_or_else(|| {
        ConfigError::invalid(command, "cluster_name", "", needs("the sale's name"))
    })?;
    let node_id = cli
        .node_id
        .clone()
        .ok_or_else(|| ConfigError::invalid(command, "node_id", "", needs("this node's id")))?;
    if cli.durability != Durability::Sync {
        let expected = needs("sync (the lease is journaled)");
        let value = cli.durability.to_string();
        return Err(ConfigError::invalid(
            command,
            "durability",
            &value,
            expected,
        ));
    }
    if mode == Mode::Ticket {
        let expected = needs("monolith or vacancy (a mode that holds stock)");
        return Err(ConfigError::invalid(command, "mode", "ticket", expected));
    }
    if !cfg!(feature = "cluster") {
        let expected = "a ticketd built with --features cluster (cargo build --release -p \
                        ticketd --features cluster; it needs protoc)"
            .to_string();
        let value = cli.cluster_etcd.join(",");
        return Err(ConfigError::invalid(
            command,
            "cluster_etcd",
            &value,
            expected,
        ));
    }
    let window = cli.cluster_window;
    let max_order_qty = match cli.max_order_qty {
        qty if qty <= window => qty,
        MAX_ORDER_QTY_DEFAULT => window,
        qty => {
            let (flag, env) = error::names_of(command, "cluster_window");
            let expected = format!("at most {flag} ({env}), {window}, in a cluster");
            return Err(ConfigError::invalid(
                command,
                "max_order_qty",
                &qty.to_string(),
                expected,
            ));
        }
    };
    let cluster = Cluster {
        etcd: cli.cluster_etcd.clone(),
        name,
        node_id,
        window,
    };
    Ok((Some(cluster), max_order_qty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use cli::Cli;
    use std::sync::{Mutex, MutexGuard};

    /// Tests that read or write the process environment hold this, so that they do not race.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    /// Command-line arguments after the program name, in a table row.
    type Args = &'static [&'static str];
    /// Environment variables to set, in a table row.
    type Vars = &'static [(&'static str, &'static str)];

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

    /// A cluster node: the sale's name and the node's id are required with `--cluster-etcd`,
    /// the journal must be on and the mode must sell; the default order limit is lowered to the
    /// window, a larger one set on purpose refused; `--print-config` shows the four settings.
    #[test]
    fn a_cluster_node_names_its_sale_and_itself_and_orders_fit_its_window() {
        let etcd = "http://127.0.0.1:2379";
        let node = [
            ("CLUSTER_ETCD", etcd),
            ("CLUSTER_NAME", "sale"),
            ("NODE_ID", "n1"),
        ];
        let e = err(&[], &node[..1], None);
        assert!(
            e.contains("--cluster-name") && e.contains("required with --cluster-etcd"),
            "{e}"
        );
        let e = err(&[], &node[..2], None);
        assert!(e.contains("--node-id"), "{e}");
        let e = err(&["--durability", "none"], &node, None);
        assert!(e.contains("--durability") && e.contains("sync"), "{e}");
        let e = err(&["--mode", "ticket"], &node, None);
        assert!(e.contains("--mode") && e.contains("holds stock"), "{e}");
        if !cfg!(feature = "cluster") {
            let e = err(&[], &node, None);
            assert!(e.contains("--features cluster"), "{e}");
            return;
        }
        let c = ok(&[], &node, None);
        let cluster = c.cluster.clone().expect("a cluster node");
        assert_eq!(
            (
                cluster.etcd,
                cluster.name.as_str(),
                cluster.node_id.as_str()
            ),
            (vec![etcd.to_string()], "sale", "n1")
        );
        assert_eq!((cluster.window, c.max_order_qty), (1_000, 1_000));
        let json = c.to_json();
        for key in ["cluster_etcd", "cluster_name", "node_id", "cluster_window"] {
            assert!(json.contains(&format!("\"{key}\":")), "{json}");
        }
        let c = ok(
            &["--cluster-window", "50", "--max-order-qty", "20"],
            &node,
            None,
        );
        assert_eq!(
            (c.max_order_qty, c.cluster.map(|c| c.window)),
            (20, Some(50))
        );
        let e = err(
            &["--cluster-window", "50", "--max-order-qty", "60"],
            &node,
            None,
        );
        assert!(
            e.contains("--max-order-qty") && e.contains("at most --cluster-window"),
            "{e}"
        );
        // Without --cluster-etcd nothing changes, and --print-config shows no cluster key.
        let c = ok(&[], &[], None);
        assert!(c.cluster.is_none() && !c.to_json().contains("cluster"));
    }

    /// `ticketd cluster`: the etcd URLs (each with its port) and the sale's name, from flags or
    /// the environment; `init` takes its capacity only from `--initial-stock` on the command
    /// line, never from a node's INITIAL_STOCK.
    #[test]
    fn cluster_tools_name_their_etcd_and_sale() {
        let urls = "http://127.0.0.1:2379,http://[::1]:2380";
        let c = ok(
            &[
                "cluster",
                "--cluster-etcd",
                urls,
                "--cluster-name",
                "s",
                "status",
            ],
            &[],
            None,
        );
        let expected = ClusterArgs {
            cluster_etcd: vec!["http://127.0.0.1:2379".into(), "http://[::1]:2380".into()],
            cluster_name: "s".into(),
            action: ClusterTool::Status { json: false },
        };
        assert_eq!(c.tool, Some(Tool::Cluster(expected.clone())));
        let env = [("CLUSTER_ETCD", urls), ("CLUSTER_NAME", "s")];
        let c = ok(&["--initial-stock", "5", "cluster", "init"], &env, None);
        let init = ClusterArgs {
            action: ClusterTool::Init,
            ..expected
        };
        assert_eq!((c.tool, c.initial_stock), (Some(Tool::Cluster(init)), 5));
        let stock = [("INITIAL_STOCK", "5"), env[0], env[1]];
        assert!(err(&["cluster", "init"], &stock, None).contains("--initial-stock N"));
        let missing = err(&["cluster", "status"], &[env[1]], None);
        assert!(
            missing.contains("required arguments were not provided"),
            "{missing}"
        );
        let bad_url = [("CLUSTER_ETCD", "http://127.0.0.1"), env[1]];
        assert!(err(&["cluster", "status"], &bad_url, None).contains("http://host:port"));
        let bad_name = [env[0], ("CLUSTER_NAME", "a/b")];
        assert!(err(&["cluster", "status"], &bad_name, None).contains("may hold only letters"));
    }

    /// The journal tools read the server's own options, given before or after the tool's name,
    /// or from the environment; a tool's own flag is its alone.
    #[test]
    fn journal_tools_share_the_options() {
        let inspect = |json| Some(Tool::Journal(JournalTool::Inspect { json }));
        let c = ok(
            &["journal", "inspect", "--data-dir", "/d", "--json"],
            &[],
            None,
        );
        assert_eq!((c.tool, c.data_dir), (inspect(true), PathBuf::from("/d")));
        let c = ok(&["--data-dir", "/d", "journal", "inspect"], &[], None);
        assert_eq!((c.tool, c.data_dir), (inspect(false), PathBuf::from("/d")));
        let env = [("DATA_DIR", "/e"), ("INITIAL_STOCK", "7"), ("SHARDS", "3")];
        let c = ok(&["journal", "reset"], &env, None);
        let reset = Some(Tool::Journal(JournalTool::Reset));
        assert_eq!((c.tool, c.initial_stock, c.shards), (reset, 7, Some(3)));
        let c = ok(
            &["journal", "reset", "--initial-stock", "9", "--shards", "2"],
            &env,
            None,
        );
        assert_eq!(
            (c.initial_stock, c.shards, c.data_dir),
            (9, Some(2), "/e".into())
        );
        assert_eq!(ok(&[], &[], None).tool, None);
        // A vacancy service must keep keyed answers: the ticket tier's retries rest on them.
        let none_kept = err(
            &["--mode", "vacancy", "--idempotency-keys-max", "0"],
            &[],
            None,
        );
        assert!(none_kept.contains("vacancy mode"), "{none_kept}");
        assert_eq!(
            ok(&["--idempotency-keys-max", "0"], &[], None).idempotency_keys_max,
            0
        );
        // A reset never takes the default stock: the flag, or the environment (.env included).
        let missing = err(&["journal", "reset"], &[("DATA_DIR", "/e")], None);
        assert!(missing.contains("--initial-stock N"), "{missing}");
        let c = ok(&["journal", "reset"], &[], Some("INITIAL_STOCK=5\n"));
        assert_eq!(c.initial_stock, 5);
        assert!(err(&["journal", "reset", "--json"], &[], None).contains("--json"));
        assert!(
            err(&["journal", "inspect", "--initial-stock", "x"], &[], None)
                .contains("--initial-stock (INITIAL_STOCK)")
        );
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
            (16_384, 32, 4096)
        );
        assert_eq!((c.target_bytes_max, c.connections_max), (8192, 10_000));
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
            (&[], &[("TICKET_PORT", "x"), ("DEPLOYMENT_MODE", "ticket")], "for --ticket-port (TICKET_PORT)"),
            (&[], &[("TICKET_PORT", "x"), ("DEPLOYMENT_MODE", "microservices"), ("PORT", "8001")], "for --ticket-port (TICKET_PORT)"),
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
            (&["--cors-allow-origins", "app.example.com"], &[], "for --cors-allow-origins (CORS_ALLOW_ORIGINS): expected *, none, or a comma-separated list"),
            (&[], &[("CORS_ALLOW_ORIGINS", "https://a.example/path")], "for --cors-allow-origins (CORS_ALLOW_ORIGINS)"),
            (&[], &[("CORS_ALLOW_ORIGINS", "https://a.example,")], "for --cors-allow-origins (CORS_ALLOW_ORIGINS)"),
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

    /// A blank value for any option, from the command line or the environment, is refused with
    /// that option's own flag and variable, as the definition names them.
    #[test]
    fn every_option_refuses_a_blank_value_naming_itself() {
        let command = Cli::command();
        for arg in command.get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
                continue;
            };
            let env = env.to_str().expect("ASCII");
            let expected = format!("invalid value \" \" for --{long} ({env}): expected ");
            // A mode's port is read only in that mode.
            let mode = match long {
                "vacancy-port" => "vacancy",
                "ticket-port" => "ticket",
                _ => "monolith",
            };
            let flag = format!("--{long}= ");
            let mut args = vec![flag.as_str()];
            let mut vars = vec![(env, " ")];
            if long != "mode" {
                args.extend(["--mode", mode]);
                vars.push(("DEPLOYMENT_MODE", mode));
            }
            let from_flag = err(&args, &[], None);
            assert!(from_flag.starts_with(&expected), "{from_flag}");
            let from_env = err(&[], &vars, None);
            assert!(from_env.starts_with(&expected), "{from_env}");
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

    /// `--help` shows every option's variable in clap's `[env: NAME=]` note, and RUST_LOG.
    #[test]
    fn help_names_every_environment_variable() {
        let _env = EnvGuard::new(&[]);
        let help = Cli::command().render_long_help().to_string();
        let names = env_names();
        assert!(names.len() >= 30, "{names:?}");
        for name in names.iter().filter(|name| *name != RUST_LOG_ENV) {
            assert!(
                help.contains(&format!("[env: {name}=]")),
                "--help lacks {name}"
            );
        }
        assert!(help.contains(" RUST_LOG, "), "--help lacks RUST_LOG");
    }

    /// Every option with a value is reachable from the environment.
    #[test]
    fn every_option_has_a_variable() {
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().as_str();
            if !matches!(id, "print_config" | "help" | "version") {
                assert!(arg.get_env().is_some(), "{id} has no environment variable");
            }
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
        assert_eq!(value["idempotency_ttl"], 86_400.0);
        assert_eq!(value["idempotency_keys_max"], 100_000);
        assert_eq!(value.as_object().map(|o| o.len()), Some(38));
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

    /// The keys of a one-line JSON object of scalars and arrays of numbers, in order.
    fn json_keys(json: &str) -> Vec<&str> {
        json.split(&[',', '{'][..])
            .filter_map(|pair| pair.strip_prefix('"')?.split_once("\":"))
            .map(|(key, _)| key)
            .collect()
    }

    /// `--print-config`'s keys, in order: what scripts read, so a change here is a change of the
    /// interface.
    #[test]
    fn json_keys_are_stable() {
        let json = ok(&[], &[], None).to_json();
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        let keys = json_keys(&json);
        let expected = [
            "mode",
            "host",
            "port",
            "shards",
            "cpus",
            "initial_stock",
            "max_order_qty",
            "vacancy_url",
            "vacancy_host",
            "vacancy_port",
            "vacancy_timeout",
            "http_max_connections",
            "http_keepalive_connections",
            "cache_ttl_seconds",
            "log_level",
            "rust_log",
            "json_logs",
            "head_bytes_max",
            "headers_max",
            "body_bytes_max",
            "target_bytes_max",
            "connections_max",
            "head_timeout_ms",
            "idle_timeout_ms",
            "shutdown_timeout_ms",
            "data_dir",
            "durability",
            "journal_compact_bytes",
            "idempotency_ttl",
            "idempotency_keys_max",
            "latency_dump",
            "latency_dump_interval_seconds",
            "cors_allow_origins",
            "rate_limit_purchases_per_second",
            "rate_limit_burst",
            "rate_limit_all_routes",
            "admin_listen",
            "admin_token_file",
        ];
        assert_eq!(keys, expected);
        assert_eq!(value.as_object().map(|o| o.len()), Some(expected.len()));
    }

    /// The rate limit: off by default; the burst defaults to the rate rounded up; bad values
    /// name the option.
    #[test]
    fn rate_limit_options() {
        let c = ok(&[], &[], None);
        assert_eq!(c.rate_limit_purchases_per_second, 0.0);
        assert!(!c.rate_limit_all_routes);
        let c = ok(&[], &[("RATE_LIMIT_PURCHASES_PER_SECOND", "2.5")], None);
        assert_eq!(
            (c.rate_limit_purchases_per_second, c.rate_limit_burst),
            (2.5, 3)
        );
        let c = ok(
            &["--rate-limit-burst", "10", "--rate-limit-all-routes"],
            &[("RATE_LIMIT_PURCHASES_PER_SECOND", "1")],
            None,
        );
        assert_eq!(c.rate_limit_burst, 10);
        assert!(c.rate_limit_all_routes);
        for bad in ["-1", "abc", "inf", "2000000"] {
            let err = err(&[], &[("RATE_LIMIT_PURCHASES_PER_SECOND", bad)], None);
            assert!(
                err.contains("--rate-limit-purchases-per-second"),
                "{bad}: {err}"
            );
        }
    }

    /// `--cors-allow-origins`: `*` by default (the original allowed every origin), `none` or
    /// empty for off, or a list, lower-cased as browsers send `Origin`.
    #[test]
    fn cors_allow_origins() {
        type Row<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], CorsOrigins);
        let table: &[Row<'_>] = &[
            (&[], &[], CorsOrigins::Any),
            (&["--cors-allow-origins", "none"], &[], CorsOrigins::None),
            (&[], &[("CORS_ALLOW_ORIGINS", "")], CorsOrigins::None),
            (&[], &[("CORS_ALLOW_ORIGINS", "NONE")], CorsOrigins::None),
            (
                &[
                    "--cors-allow-origins",
                    "HTTPS://App.Example.com, http://localhost:3000",
                ],
                &[],
                CorsOrigins::List(vec![
                    "https://app.example.com".into(),
                    "http://localhost:3000".into(),
                ]),
            ),
        ];
        for (args, env, want) in table {
            assert_eq!(
                &ok(args, env, None).cors_allow_origins,
                want,
                "{args:?} {env:?}"
            );
        }
        let json = ok(&["--cors-allow-origins", "http://a,http://b"], &[], None).to_json();
        assert!(
            json.contains(r#""cors_allow_origins":"http://a,http://b""#),
            "{json}"
        );
    }

    /// The log line is the JSON's pairs as `key=value`, in the same order and units, on one line.
    #[test]
    fn summary_is_the_json_as_key_values() {
        let c = ok(&["--cpus", "0-3,8"], &[("RUST_LOG", "a=\"b\"\n")], None);
        let summary = c.summary();
        assert!(!summary.contains('\n'), "{summary}");
        assert!(
            summary.starts_with("mode=monolith host=0.0.0.0 port=8000 shards=- cpus=[0,1,2,3,8] "),
            "{summary}"
        );
        assert!(
            summary.contains(
                " vacancy_url=http://127.0.0.1:8001 vacancy_host=127.0.0.1 vacancy_port=8001 \
                 vacancy_timeout=2 "
            ),
            "{summary}"
        );
        assert!(summary.contains(" rust_log=a=\\\"b\\\"\\n "), "{summary}");
        assert!(
            summary.contains(
                " shutdown_timeout_ms=5000 data_dir=./data durability=sync \
                 journal_compact_bytes=67108864 idempotency_ttl=86400 idempotency_keys_max=100000 \
                 latency_dump=- latency_dump_interval_seconds=0"
            ),
            "{summary}"
        );
        let keys: Vec<&str> = summary
            .split(' ')
            .map(|pair| pair.split_once('=').expect("key=value").0)
            .collect();
        assert_eq!(keys, json_keys(&c.to_json()));
        let dump = ok(
            &[
                "--latency-dump",
                "d",
                "--latency-dump-interval-seconds",
                "1",
            ],
            &[],
            None,
        );
        assert!(
            dump.summary().ends_with(
                " latency_dump=d latency_dump_interval_seconds=1 cors_allow_origins=* \
                            rate_limit_purchases_per_second=0.0 rate_limit_burst=1 \
                            rate_limit_all_routes=false admin_listen=- admin_token_file=-"
            ),
            "{}",
            dump.summary()
        );
    }

    /// A nested object, which `Config` does not have today, would still come out readable.
    #[test]
    fn key_values_nest_as_json() {
        let value = serde_json::json!({"a": {"b": null, "c": "d"}, "e": [1, 2]});
        let mut line = Vec::new();
        let mut serializer =
            serde_json::Serializer::with_formatter(&mut line, KeyValues::default());
        value.serialize(&mut serializer).expect("serializes");
        assert_eq!(String::from_utf8(line).unwrap(), "a={b:-,c:d} e=[1,2]");
    }
}

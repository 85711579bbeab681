//! The command line: `ticket-bench run` and `ticket-bench compare`. Each option's doc comment is
//! its `--help` text; [`RunArgs::validate`] applies the limits below before anything connects.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::Error;

/// Connections per run: Linux hands out about 28,000 ephemeral ports (32768-60999) towards one
/// server address, so more connections than that cannot all be open at once.
pub const CONNECTIONS_MAX: usize = 28_000;
/// Requests in flight per connection: TechEmpower pipelines 16; at a few hundred the test only
/// measures socket buffer sizes, and every in-flight request costs a slot in the connection's queue.
pub const PIPELINE_MAX: usize = 256;
/// Event-loop threads: one per core is the most that helps, and no machine we measure on has more.
pub const THREADS_MAX: usize = 256;
/// Open-loop rate, requests per second over the whole run: ten times what this box's loopback
/// can carry (~2x10^5); a higher figure is a typo, and its send period would round to zero.
pub const RATE_MAX: f64 = 10_000_000.0;
/// Longest run (duration or warm-up): a day. Interval logs then hold 86,400 lines, still a
/// small file; anything longer is a soak test for another tool.
pub const RUN_SECONDS_MAX: u64 = 24 * 3600;
/// Quantities in a --qty-mix: one stream (and one series) each; a handful is a mix, more is noise
/// in the report.
pub const QTY_MIX_MAX: usize = 16;

/// ticket-bench: load generator for ticketd and its peers, with HdrHistogram outputs.
#[derive(Parser, Debug)]
#[command(name = "ticket-bench", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once at start-up: boxing the larger variant would save nothing worth the noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load a server over keep-alive HTTP/1.1 connections and write one run folder
    /// (summary.md, summary.json, .hgrm percentile distributions, .hlog interval logs).
    Run(RunArgs),
    /// Put run folders side by side: compare.md (table, ratios against the first run) and
    /// compare.svg (latency by percentile, one line per run).
    Compare(CompareArgs),
}

/// The request mix of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScenarioName {
    /// GET /api/v1/available on every connection.
    Available,
    /// POST /api/v1/purchase {"qty":Q} on every connection; checks `"success"`.
    Purchase,
    /// POST /api/v1/reserve {"qty":Q} on every connection; checks `"success"`.
    Reserve,
    /// The original k6 scenario: even connections GET /api/v1/available, odd ones purchase.
    Mix,
    /// --method, --path and --body, on every connection.
    Custom,
    /// A flash sale: POST /api/v1/purchase {"qty":Q} (or --qty-mix) until and past the sell-out;
    /// "sold out" is an answer, not an error. The report splits the run at the sell-out and
    /// counts late successes (see `flash`). Pair with thousands of --connections and
    /// --reconnect-after.
    Flash,
}

impl ScenarioName {
    /// The name as written on the command line and in file names.
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioName::Available => "available",
            ScenarioName::Purchase => "purchase",
            ScenarioName::Reserve => "reserve",
            ScenarioName::Mix => "mix",
            ScenarioName::Custom => "custom",
            ScenarioName::Flash => "flash",
        }
    }
}

/// Options of `ticket-bench run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Server base URL, http://HOST:PORT[/PREFIX]; scenario paths are appended to it.
    #[arg(long)]
    pub url: String,
    /// Request mix.
    #[arg(long, value_enum, default_value = "available")]
    pub scenario: ScenarioName,
    /// Keep-alive connections, opened at the start and kept open (reopened after an error).
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// Measured time (after the warm-up), e.g. 10s, 500ms, 2m. Default 10s, or unbounded
    /// when --requests is given.
    #[arg(long, short = 'd', value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Warm-up before the measured time; its responses are counted apart and left out of
    /// every figure and histogram.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// Open loop: send this many requests per second in total, each at its intended time, and
    /// measure latency from that time (coordinated omission corrected, like wrk2). Without it
    /// the run is closed-loop: each connection sends its next request when a response arrives.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Requests in flight per connection (HTTP/1.1 pipelining); 1 = none.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Stop after this many measured requests (shared out over the threads), or at
    /// --duration if that comes first.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Event-loop threads, each driving an equal share of the connections.
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,
    /// Run folder; default bench/runs/<YYYY-MM-DD>-<host>-<label>/ under the current directory
    /// (with -2, -3... appended if that exists).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Name of the run, in the folder name and in comparisons; default the scenario name.
    #[arg(long)]
    pub label: Option<String>,
    /// The server's setup as free text (command line, version, shards), copied into the summary.
    #[arg(long)]
    pub server_options: Option<String>,
    /// Tickets per purchase or reserve request.
    #[arg(long, default_value_t = 1)]
    pub qty: u64,
    /// Purchase, reserve and flash: a mix of quantities instead of --qty, e.g. 1,1,2,4;
    /// connection i orders the (i mod n)-th, so repeating a quantity weights it.
    #[arg(long, value_delimiter = ',')]
    pub qty_mix: Vec<u64>,
    /// Close each connection after this many requests and open a new one, as clients that come
    /// and go do (the answer to the last one is read first). Default: keep connections open.
    #[arg(long)]
    pub reconnect_after: Option<u64>,
    /// Custom scenario: the request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Custom scenario: the request path (after the URL's prefix), e.g. /api/v1/health.
    #[arg(long)]
    pub path: Option<String>,
    /// Custom scenario: the request body (sent with Content-Type: application/json unless a
    /// --header sets Content-Type).
    #[arg(long)]
    pub body: Option<String>,
    /// An extra request header, "Name: value"; repeatable.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Purchase, reserve and flash: every request carries an `Idempotency-Key` of its own
    /// (`tb-<run>-<n>`, unique across the run's connections and threads and across runs), so
    /// each is a keyed order the server executes once, on the key's owner shard
    #[arg(long)]
    pub idempotency_keys: bool,
    /// A request with no response after this long counts as a timeout error and its connection
    /// is reopened; also the most the run waits for in-flight responses at the end.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// Stock check: wait this long after the load before reading /api/v1/available again, as
    /// the server's availability may lag by up to its cache TTL (1 s by default).
    #[arg(long, value_parser = parse_duration, default_value = "1.5s")]
    pub settle: Duration,
    /// Skip the stock check of purchase, reserve and mix runs.
    #[arg(long)]
    pub no_stock_check: bool,
    /// Also write `slow.csv`: every measured response at least this slow (e.g. 2ms), with its
    /// due and arrival times on CLOCK_MONOTONIC (the clock of `perf record --clockid monotonic`),
    /// its connection and status, to match stalls against a kernel trace (`bench/stalls.py`).
    #[arg(long, value_parser = parse_duration)]
    pub slow_log: Option<Duration>,
}

impl RunArgs {
    /// The measured duration: --duration, else 10 s unless --requests bounds the run.
    pub fn measured_duration(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }

    /// The quantities ordered: --qty-mix, else --qty alone.
    pub fn quantities(&self) -> Vec<u64> {
        if self.qty_mix.is_empty() {
            vec![self.qty]
        } else {
            self.qty_mix.clone()
        }
    }

    /// The label: --label, else the scenario name.
    pub fn label(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| self.scenario.as_str().to_string())
    }

    /// Checks every limit; the message names the option.
    pub fn validate(&self) -> Result<(), Error> {
        let usage = |s: String| Err(Error::Usage(s));
        if !(1..=CONNECTIONS_MAX).contains(&self.connections) {
            return usage(format!("--connections must be 1..={CONNECTIONS_MAX}"));
        }
        if !(1..=PIPELINE_MAX).contains(&self.pipeline) {
            return usage(format!("--pipeline must be 1..={PIPELINE_MAX}"));
        }
        if !(1..=THREADS_MAX.min(self.connections)).contains(&self.threads) {
            return usage(format!(
                "--threads must be 1..={} (and at most --connections)",
                THREADS_MAX
            ));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0 && rate <= RATE_MAX) {
                return usage(format!("--rate must be a number in (0, {RATE_MAX}]"));
            }
        }
        let longest = Duration::from_secs(RUN_SECONDS_MAX);
        if let Some(d) = self.duration {
            if d.is_zero() || d > longest {
                return usage(format!("--duration must be in (0, {RUN_SECONDS_MAX}s]"));
            }
        }
        if self.warmup > longest {
            return usage(format!("--warmup must be at most {RUN_SECONDS_MAX}s"));
        }
        if self.requests == Some(0) {
            return usage("--requests must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return usage("--timeout must be above 0".into());
        }
        if self.qty == 0 || self.qty_mix.contains(&0) {
            return usage("--qty and --qty-mix must be at least 1".into());
        }
        let sells = matches!(
            self.scenario,
            ScenarioName::Purchase | ScenarioName::Reserve | ScenarioName::Flash
        );
        if self.qty_mix.len() > QTY_MIX_MAX || (!self.qty_mix.is_empty() && !sells) {
            return usage(format!(
                "--qty-mix takes at most {QTY_MIX_MAX} quantities, with purchase, reserve or flash"
            ));
        }
        if self.reconnect_after == Some(0) {
            return usage("--reconnect-after must be at least 1".into());
        }
        if self.scenario == ScenarioName::Custom && self.path.is_none() {
            return usage("--scenario custom needs --path".into());
        }
        for h in &self.headers {
            if header_pair(h).is_none() {
                return usage(format!("--header {h:?} is not \"Name: value\""));
            }
        }
        Ok(())
    }
}

/// Splits `"Name: value"` into its trimmed parts; `None` if there is no colon or no name.
pub fn header_pair(h: &str) -> Option<(&str, &str)> {
    let (name, value) = h.split_once(':')?;
    let name = name.trim();
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    ok.then_some((name, value.trim()))
}

/// Options of `ticket-bench compare`.
#[derive(Args, Clone, Debug)]
pub struct CompareArgs {
    /// Run folders (each with summary.json and its .hgrm files); the first is the baseline of
    /// the ratios.
    #[arg(required = true, num_args = 1..)]
    pub runs: Vec<PathBuf>,
    /// Where to write compare.md and compare.svg; default
    /// bench/runs/<YYYY-MM-DD>-<host>-compare/ under the current directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Parses `10s`, `500ms`, `250us`, `2m`, `1h`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s, 500ms, 2m"))?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (us, ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(n * seconds_per_unit).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table: &[(&str, Option<Duration>)] = &[
            ("10s", Some(Duration::from_secs(10))),
            ("10", Some(Duration::from_secs(10))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("500ms", Some(Duration::from_millis(500))),
            ("250us", Some(Duration::from_micros(250))),
            ("2m", Some(Duration::from_secs(120))),
            ("1h", Some(Duration::from_secs(3600))),
            ("0s", Some(Duration::ZERO)),
            ("s", None),
            ("10x", None),
            ("-1s", None),
            ("", None),
        ];
        for &(input, want) in table {
            assert_eq!(parse_duration(input).ok(), want, "{input}");
        }
    }

    #[test]
    fn headers() {
        assert_eq!(header_pair("A: b"), Some(("A", "b")));
        assert_eq!(header_pair("X-Y:z:w"), Some(("X-Y", "z:w")));
        assert_eq!(header_pair("novalue"), None);
        assert_eq!(header_pair(": v"), None);
        assert_eq!(header_pair("a b: v"), None);
    }

    fn args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut argv = vec!["ticket-bench", "run", "--url", "http://127.0.0.1:1"];
        argv.extend_from_slice(extra);
        let Command::Run(a) = Cli::try_parse_from(argv)?.command else {
            unreachable!()
        };
        Ok(a)
    }

    #[test]
    fn limits() {
        let table: &[(&[&str], bool)] = &[
            (&[], true),
            (&["--connections", "0"], false),
            (&["--connections", "28001"], false),
            (&["--pipeline", "0"], false),
            (&["--pipeline", "257"], false),
            (&["--threads", "2", "--connections", "1"], false),
            (&["--rate", "0"], false),
            (&["--rate", "NaN"], false),
            (&["--rate", "1000"], true),
            (&["--duration", "0s"], false),
            (&["--requests", "0"], false),
            (&["--qty", "0"], false),
            (&["--scenario", "custom"], false),
            (&["--scenario", "custom", "--path", "/x"], true),
            (&["-H", "bad"], false),
            (&["-H", "X-A: 1"], true),
            (&["--scenario", "flash", "--qty-mix", "1,2,4"], true),
            (&["--scenario", "flash", "--qty-mix", "1,0"], false),
            (&["--scenario", "mix", "--qty-mix", "1,2"], false),
            (&["--reconnect-after", "0"], false),
            (&["--reconnect-after", "10"], true),
        ];
        for &(extra, ok) in table {
            let a = args(extra).unwrap();
            assert_eq!(a.validate().is_ok(), ok, "{extra:?}");
        }
    }

    #[test]
    fn duration_defaults() {
        assert_eq!(
            args(&[]).unwrap().measured_duration(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            args(&["--requests", "5"]).unwrap().measured_duration(),
            None
        );
        assert_eq!(
            args(&["--requests", "5", "-d", "1s"])
                .unwrap()
                .measured_duration(),
            Some(Duration::from_secs(1))
        );
    }
}

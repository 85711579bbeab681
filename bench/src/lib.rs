//! ticket-bench: the load generator with which ticketd's users measure it and we prove our
//! figures. Its outputs plug into the tools load-testing people already use: HdrHistogram
//! percentile distributions (`.hgrm`, for the plotter) and interval logs (`.hlog`, for
//! `HistogramLogProcessor`), beside a `summary.md` and `summary.json` per run.
//!
//! Layout (the binary, `main.rs`, only parses the command line and calls [`run::run`] or
//! [`compare::compare`]):
//! - [`cli`]: the options, their limits and `--help`.
//! - [`target`]: the server's URL, resolved once.
//! - [`scenario`]: the requests each connection sends (written once by proto-http) and how each
//!   response is judged.
//! - [`connection`]: one socket's buffers, in-flight queue and response reader; knows nothing of
//!   scenarios or statistics.
//! - [`timer`]: a timerfd, so open-loop sends are due to the microsecond, not the millisecond.
//! - [`worker`]: one thread's event loop (mio, edge-triggered) over its connections, closed or
//!   open loop; shares nothing but progress atomics and a channel of interval reports.
//! - [`record`]: tallies, error kinds and latency histograms (µs, 1 µs..60 s, 3 digits).
//! - [`intervals`]: merges the threads' per-second reports into whole intervals, in order.
//! - [`hgrm`], [`hlog`]: the two HdrHistogram file formats, written as Java's library writes them;
//!   re-exported from the `hdr-files` crate, which ticketd's latency dumps use too.
//! - [`flash`]: the flash-sale analysis: sell-out, the phases around it, late successes.
//! - [`slow`]: `--slow-log`, the slow responses stamped on the monotonic clock (`slow.csv`), to
//!   match client-side stalls against a kernel trace.
//! - [`stock`]: the before/after `/api/v1/available` check of selling scenarios.
//! - [`summary`]: the run's figures and setup, as JSON and markdown.
//! - [`provenance`]: host, CPUs, kernel, git commit, command line, UTC dates.
//! - [`run`]: `ticket-bench run`, from options to run folder.
//! - [`compare`]: `ticket-bench compare`, runs side by side as a table and an SVG plot.
//! - [`error`]: the one error type; failures on the wire are counted, not returned.
//!
//! Invariants: nothing on the request path allocates once connections have warmed up (requests
//! are pre-written bytes, buffers are reused); every response is checked; latency is always
//! measured from the request's intended send time; warm-up responses never reach a histogram.

pub mod cli;
pub mod compare;
pub mod connection;
pub mod error;
pub mod flash;
pub mod intervals;
pub mod provenance;
pub mod record;
pub mod run;
pub mod scenario;
pub mod slow;
pub mod stock;
pub mod summary;
pub mod target;
pub mod timer;
pub mod worker;

pub use error::Error;
pub use hdr_files::{hgrm, hlog};

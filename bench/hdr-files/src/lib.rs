//! hdr-files: HdrHistogram's two file formats, written as Java's HdrHistogram library writes them,
//! so that the tools load-testing people already use (the plotter, `HistogramLogProcessor`) read
//! ours. Both ticketd (`--latency-dump`) and its load generator (`ticket-bench`) write them; this
//! crate is what they share, so the server does not depend on the load generator.
//!
//! Layout:
//! - [`hgrm`]: the `.hgrm` percentile distribution, byte for byte Java's
//!   `outputPercentileDistribution` text.
//! - [`hlog`]: the `.hlog` interval log (format 1.3), its header and one line per interval.
//! - [`utc`]: UTC calendar dates, as the `.hlog` header (Java's `Date.toString()`) and the load
//!   generator's run folders spell them.
//!
//! Invariant: knows histograms and text, nothing of sockets, servers or runs; every function
//! writes to a caller's `String` or `io::Write`.

pub mod hgrm;
pub mod hlog;
pub mod utc;

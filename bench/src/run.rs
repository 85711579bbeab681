//! `ticket-bench run`: checks the options, reads the stock, starts the worker threads, writes the
//! interval logs while they run (and a progress line on a terminal), then merges their records
//! and writes the run folder: `summary.md`, `summary.json`, and a `.hgrm` and `.hlog` per series.

use std::fs::{self, File};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::cli::{RunArgs, ScenarioName};
use crate::flash::{self, Analysis, Answers};
use crate::hgrm::{self, TICKS_PER_HALF_DISTANCE, US_PER_MS};
use crate::hlog::{self, LogWriter};
use crate::intervals::{Interval, IntervalMerger};
use crate::provenance::{file_safe, fresh_dir, Provenance, Utc};
use crate::record::{latency_histogram, StreamRecord, Tally};
use crate::scenario::Plan;
use crate::slow::{self, SlowLog};
use crate::stock::{self, Orders, StockCheck};
use crate::summary::{thousands, Latency, Series, Setup, Summary};
use crate::target::Target;
use crate::worker::{self, Progress, Schedule, WorkerConfig, WorkerResult, INTERVAL};
use crate::Error;

/// How often the progress line is redrawn (and the main thread wakes when no interval arrives).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Where run folders go by default, under the current directory.
pub const RUNS_DIR: &str = "bench/runs";

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    /// Its folder.
    pub dir: PathBuf,
    /// Its summary, as written to `summary.json`.
    pub summary: Summary,
}

/// A series: a name and the streams whose latencies it merges.
#[derive(Clone, Debug)]
struct SeriesPlan {
    /// File stem and report name.
    name: String,
    /// Stream indexes.
    streams: Vec<usize>,
}

/// Runs the load `args` describes; `command` is the command line to record.
pub fn run(args: &RunArgs, command: String) -> Result<RunOutcome, Error> {
    args.validate()?;
    let target = Target::parse(&args.url)?;
    let plan = Plan::new(args, &target)?;
    let provenance = Provenance::collect();
    let label = args.label();
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => fresh_dir(&Path::new(RUNS_DIR).join(format!(
            "{}-{}-{}",
            Utc::of(SystemTime::now()).date(),
            file_safe(&provenance.host),
            file_safe(&label)
        ))),
    };
    fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let series = series_of(&plan);
    let mut notes = Vec::new();

    let stock_before = if plan.sells() && !args.no_stock_check {
        match stock::available(&target) {
            Ok(qty) => Some(qty),
            Err(e) => {
                notes.push(format!("stock check skipped: {e}"));
                None
            }
        }
    } else {
        None
    };

    let start = Instant::now();
    let start_wall = SystemTime::now();
    let schedule = Schedule {
        start,
        measure_start: start + args.warmup,
        send_end: args.measured_duration().map(|d| start + args.warmup + d),
        rate: args.rate,
        connections: args.connections,
        pipeline: args.pipeline,
        timeout: args.timeout,
    };
    let (results, merged_intervals) = drive(
        args,
        &plan,
        &target,
        schedule,
        &dir,
        &series,
        start_wall + args.warmup,
    )?;

    let stock_check = stock_before.and_then(|before| {
        std::thread::sleep(args.settle);
        match stock::available(&target) {
            Ok(after) => Some(stock_check(&plan, &results, before, after)),
            Err(e) => {
                notes.push(format!("stock check failed after the run: {e}"));
                None
            }
        }
    });
    if results.iter().any(|r| r.stalled) {
        notes.push(format!(
            "stopped early: no connection could be opened for {:?}",
            args.timeout
        ));
    }
    if merged_intervals == 0 {
        notes.push("no interval was logged (the run ended during the warm-up)".into());
    }
    if let Some(threshold) = args.slow_log {
        let logs = results.iter().filter_map(|r| r.slow.as_ref());
        let (kept, dropped) = logs.fold((0, 0), |(k, d), l| (k + l.list.len(), d + l.dropped));
        notes.push(format!(
            "slow.csv: {kept} measured responses of {threshold:?} or more, times on \
             CLOCK_MONOTONIC{}",
            match dropped {
                0 => String::new(),
                n => format!(
                    " ({n} more not logged: {} a thread at most)",
                    slow::SLOW_LOG_MAX
                ),
            }
        ));
    }

    let mut summary = summarize(
        args,
        &plan,
        &series,
        &results,
        schedule,
        SummaryContext {
            target: &target,
            command,
            provenance,
            label,
            started_at: Utc::of(start_wall).rfc3339(),
            stock_check,
            notes,
        },
    );
    let analysis = (plan.scenario == ScenarioName::Flash).then(|| {
        let threads: Vec<&Answers> = results.iter().filter_map(|r| r.answers.as_ref()).collect();
        let context = flash::Context {
            qty: plan.streams.iter().map(|s| s.qty).collect(),
            measure_start: args.warmup,
            measure_end: args.warmup + Duration::from_secs_f64(summary.elapsed_s),
            stock: summary.stock_check.as_ref().map(|c| (c.before, c.after)),
            timeouts: summary.errors.timeout + summary.warmup_errors.timeout,
            reconnects: results.iter().map(|r| r.reconnects).sum(),
        };
        flash::analyse(&threads, &context)
    });
    summary.flash = analysis.as_ref().map(|a| a.report.clone());
    write_outputs(&dir, &summary, &series, &results, analysis.as_ref())?;
    Ok(RunOutcome { dir, summary })
}

/// One series with all streams, then one per stream when there are several.
fn series_of(plan: &Plan) -> Vec<SeriesPlan> {
    let scenario = plan.scenario.as_str();
    let mut out = vec![SeriesPlan {
        name: scenario.to_string(),
        streams: (0..plan.streams.len()).collect(),
    }];
    if plan.streams.len() > 1 {
        for (i, s) in plan.streams.iter().enumerate() {
            out.push(SeriesPlan {
                name: format!("{scenario}-{}", s.name),
                streams: vec![i],
            });
        }
    }
    out
}

/// Starts the threads, logs their intervals while they run, and collects their results.
/// Returns the results and the number of intervals logged.
fn drive(
    args: &RunArgs,
    plan: &Plan,
    target: &Target,
    schedule: Schedule,
    dir: &Path,
    series: &[SeriesPlan],
    base_wall: SystemTime,
) -> Result<(Vec<WorkerResult>, u64), Error> {
    let mut files = Vec::new();
    for s in series {
        let path = dir.join(format!("{}.hlog", s.name));
        let what = format!("writing {}", path.display());
        let mut file = BufWriter::new(File::create(&path).map_err(Error::io(&what))?);
        let comment = format!(
            "ticket-bench run {:?}, series {}: latency in microseconds from the intended send time",
            args.label(),
            s.name
        );
        hlog::write_header(&mut file, &comment, base_wall).map_err(Error::io(&what))?;
        files.push((file, V2DeflateSerializer::new(), what));
    }
    let mut logs = Vec::new();
    for (file, serializer, what) in files.iter_mut() {
        logs.push((
            hlog::begin(file, serializer, US_PER_MS).map_err(Error::io(what.clone()))?,
            what.clone(),
        ));
    }

    let (sender, receiver) = mpsc::channel();
    let progress: Arc<Vec<Progress>> =
        Arc::new((0..args.threads).map(|_| Progress::default()).collect());
    let mut handles = Vec::new();
    for thread in 0..args.threads {
        let answers = (plan.scenario == ScenarioName::Flash).then(|| {
            let per_thread = answers_expected(args) / args.threads + 1;
            Answers::reserve(per_thread, flash::ANSWERS_MAX / args.threads)
        });
        let config = WorkerConfig {
            thread,
            addr: target.addr,
            ids: (thread..args.connections).step_by(args.threads).collect(),
            streams: plan.streams.clone(),
            lanes: plan.lanes.clone(),
            reconnect_after: args.reconnect_after,
            answers,
            slow: args.slow_log.map(|t| SlowLog::new(t, thread)),
            schedule,
            budget: args.requests.map(|n| share(n, args.threads, thread)),
        };
        let sender = sender.clone();
        let progress = Arc::clone(&progress);
        let handle = std::thread::Builder::new()
            .name(format!("ticket-bench-{thread}"))
            .spawn(move || worker::run(config, &progress[thread], sender))
            .map_err(Error::io("starting a load thread"))?;
        handles.push(handle);
    }
    drop(sender);

    let mut merger = IntervalMerger::new(args.threads, plan.streams.len());
    let mut line = ProgressLine::new(schedule);
    let mut logged = 0;
    let mut write_error = None;
    loop {
        match receiver.recv_timeout(line.until_next()) {
            Ok(report) => {
                for interval in merger.accept(report) {
                    let empty = interval.histograms.iter().all(|h| h.is_empty());
                    if empty && interval.length < INTERVAL {
                        // The drain after the last response: nothing happened in it.
                        continue;
                    }
                    logged += 1;
                    if let Err(e) = log_interval(&mut logs, series, &interval) {
                        write_error.get_or_insert(e);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        line.update(&progress);
    }
    line.finish();
    debug_assert!(merger.done());
    drop(logs);
    for (mut file, _, what) in files {
        if let Err(e) = file.flush() {
            write_error.get_or_insert(Error::io(what)(e));
        }
    }
    let mut results = Vec::new();
    for handle in handles {
        let result = handle
            .join()
            .map_err(|_| Error::Usage("a load thread panicked".into()))?;
        results.push(result.map_err(Error::io("running the event loop"))?);
    }
    match write_error {
        Some(e) => Err(e),
        None => Ok((results, logged)),
    }
}

/// How many answers a flash run can get: its rate (or a closed loop's ceiling, see
/// [`flash::CLOSED_LOOP_RATE_GUESS`]) over its whole time, or its request budget if smaller, plus
/// a pipeline's worth per connection; at most [`flash::ANSWERS_MAX`].
fn answers_expected(args: &RunArgs) -> usize {
    let rate = args.rate.unwrap_or(flash::CLOSED_LOOP_RATE_GUESS);
    let seconds = (args.warmup + args.measured_duration().unwrap_or(Duration::MAX)).as_secs_f64();
    let by_time = rate * seconds;
    let by_count = args
        .requests
        .map_or(f64::MAX, |n| n as f64 + args.warmup.as_secs_f64() * rate);
    let slack = (args.connections * args.pipeline) as f64;
    (by_time.min(by_count) + slack).min(flash::ANSWERS_MAX as f64) as usize
}

/// Thread `t`'s share of `n` requests over `threads`: equal parts, the first few one more.
fn share(n: u64, threads: usize, t: usize) -> u64 {
    let threads = threads as u64;
    n / threads + u64::from((t as u64) < n % threads)
}

/// Writes one interval to each series' log.
fn log_interval(
    logs: &mut [(LogWriter<'_, BufWriter<File>>, String)],
    series: &[SeriesPlan],
    interval: &Interval,
) -> Result<(), Error> {
    let start = INTERVAL * interval.index as u32;
    for ((log, what), s) in logs.iter_mut().zip(series) {
        let h = merge(s.streams.iter().map(|&i| &interval.histograms[i]));
        hlog::write_interval(log, &h, start, interval.length).map_err(Error::io(what.clone()))?;
    }
    Ok(())
}

/// The sum of some histograms.
fn merge<'a>(hs: impl IntoIterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut sum = latency_histogram();
    for h in hs {
        sum.add(h).expect("all histograms share their bounds");
    }
    sum
}

/// The live progress line on stderr, drawn only when stderr is a terminal.
struct ProgressLine {
    /// Whether to draw at all.
    enabled: bool,
    /// The run's timing.
    schedule: Schedule,
    /// Responses and time at the last redraw.
    last: (u64, Instant),
    /// When the next redraw is due: whole multiples of [`PROGRESS_EVERY`] after the start.
    next: Instant,
}

impl ProgressLine {
    fn new(schedule: Schedule) -> ProgressLine {
        ProgressLine {
            enabled: std::io::stderr().is_terminal(),
            schedule,
            last: (0, schedule.start),
            next: schedule.start + PROGRESS_EVERY,
        }
    }

    /// How long the main thread may wait for a report before the next redraw is due.
    fn until_next(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    fn update(&mut self, progress: &[Progress]) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        while self.next <= now {
            self.next += PROGRESS_EVERY;
        }
        if !self.enabled {
            return;
        }
        let responses: u64 = progress
            .iter()
            .map(|p| p.responses.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let errors: u64 = progress
            .iter()
            .map(|p| p.errors.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let rate = (responses - self.last.0) as f64 / (now - self.last.1).as_secs_f64();
        let phase = if now < self.schedule.measure_start {
            " (warm-up)"
        } else {
            ""
        };
        eprint!(
            "\r{:7.1}s{phase} {:>11} req/s {:>9} errors   ",
            (now - self.schedule.start).as_secs_f64(),
            thousands(rate),
            errors
        );
        self.last = (responses, now);
    }

    fn finish(&self) {
        if self.enabled && self.last.0 > 0 {
            eprintln!();
        }
    }
}

/// The stock check from the threads' tallies.
fn stock_check(plan: &Plan, results: &[WorkerResult], before: u64, after: u64) -> StockCheck {
    let mut orders: Vec<Orders> = Vec::new();
    for (i, stream) in plan.streams.iter().enumerate() {
        if stream.qty == 0 {
            continue;
        }
        let mut o = Orders {
            qty: stream.qty,
            successes: 0,
            unknown: 0,
        };
        for record in results.iter().map(|r| &r.records[i]) {
            o.successes += record.warmup.sold + record.measured.sold;
            o.unknown += record.warmup.unknown + record.measured.unknown;
        }
        orders.push(o);
    }
    StockCheck::of_orders(before, after, &orders)
}

/// What the summary needs beyond the records.
struct SummaryContext<'a> {
    /// The server.
    target: &'a Target,
    /// The command line.
    command: String,
    /// Machine and checkout.
    provenance: Provenance,
    /// The run's name.
    label: String,
    /// When the load started, RFC 3339.
    started_at: String,
    /// The stock check, if one was made.
    stock_check: Option<StockCheck>,
    /// Sentences about anything unusual.
    notes: Vec<String>,
}

/// The records of stream `i` over all threads.
fn stream_total(results: &[WorkerResult], i: usize) -> StreamRecord {
    let mut total = StreamRecord::default();
    for r in results {
        let rec = &r.records[i];
        total.warmup.merge(&rec.warmup);
        total.measured.merge(&rec.measured);
        total
            .latency
            .add(&rec.latency)
            .expect("all histograms share their bounds");
    }
    total
}

fn summarize(
    args: &RunArgs,
    plan: &Plan,
    series: &[SeriesPlan],
    results: &[WorkerResult],
    schedule: Schedule,
    ctx: SummaryContext<'_>,
) -> Summary {
    let streams: Vec<StreamRecord> = (0..plan.streams.len())
        .map(|i| stream_total(results, i))
        .collect();
    let finished = results
        .iter()
        .map(|r| r.finished)
        .max()
        .unwrap_or(schedule.start);
    let last = results
        .iter()
        .filter_map(|r| r.last_completion)
        .max()
        .unwrap_or(schedule.measure_start);
    let ran = finished.saturating_duration_since(schedule.measure_start);
    let window = args.measured_duration().map_or(ran, |d| d.min(ran));
    let elapsed = window
        .max(last.saturating_duration_since(schedule.measure_start))
        .as_secs_f64();
    let per_second = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let series_out: Vec<Series> = series
        .iter()
        .map(|s| {
            let mut tally = Tally::default();
            for &i in &s.streams {
                tally.merge(&streams[i].measured);
            }
            let h = merge(s.streams.iter().map(|&i| &streams[i].latency));
            Series {
                name: s.name.clone(),
                requests: tally.responses,
                rps: per_second(tally.responses),
                errors: tally.errors,
                latency_ms: Latency::of(&h),
                hgrm: format!("{}.hgrm", s.name),
                hlog: format!("{}.hlog", s.name),
            }
        })
        .collect();
    let mut warmup = Tally::default();
    for s in &streams {
        warmup.merge(&s.warmup);
    }
    let all = &series_out[0];
    Summary {
        tool: format!("ticket-bench {}", env!("CARGO_PKG_VERSION")),
        label: ctx.label,
        scenario: plan.scenario.as_str().to_string(),
        url: ctx.target.url.clone(),
        command: ctx.command,
        started_at: ctx.started_at,
        provenance: ctx.provenance,
        server_options: args.server_options.clone(),
        setup: Setup {
            mode: if args.rate.is_some() {
                "open-loop"
            } else {
                "closed-loop"
            }
            .into(),
            rate: args.rate,
            connections: args.connections,
            pipeline: args.pipeline,
            threads: args.threads,
            warmup_s: args.warmup.as_secs_f64(),
            duration_s: args.measured_duration().map(|d| d.as_secs_f64()),
            requests: args.requests,
            timeout_s: args.timeout.as_secs_f64(),
            qty: args.qty,
            qty_mix: args.qty_mix.clone(),
            reconnect_after: args.reconnect_after,
        },
        requests: all.requests,
        elapsed_s: elapsed,
        rps: all.rps,
        errors: all.errors.clone(),
        warmup_requests: warmup.responses,
        warmup_errors: warmup.errors,
        latency_ms: all.latency_ms.clone(),
        series: series_out,
        stock_check: ctx.stock_check,
        flash: None,
        notes: ctx.notes,
    }
}

/// Writes the `.hgrm` files (with a flash run's `flash-before.hgrm` and `flash-after.hgrm`),
/// `summary.json` and `summary.md`.
fn write_outputs(
    dir: &Path,
    summary: &Summary,
    series: &[SeriesPlan],
    results: &[WorkerResult],
    flash: Option<&Analysis>,
) -> Result<(), Error> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        fs::write(&path, text).map_err(Error::io(format!("writing {}", path.display())))
    };
    let streams: Vec<StreamRecord> = (0..results.first().map_or(0, |r| r.records.len()))
        .map(|i| stream_total(results, i))
        .collect();
    for s in series {
        let h = merge(s.streams.iter().map(|&i| &streams[i].latency));
        write(
            &format!("{}.hgrm", s.name),
            &hgrm::format(&h, TICKS_PER_HALF_DISTANCE, US_PER_MS),
        )?;
    }
    if let Some(a) = flash {
        for (name, h) in [("flash-before", &a.before), ("flash-after", &a.after)] {
            if !h.is_empty() {
                write(
                    &format!("{name}.hgrm"),
                    &hgrm::format(h, TICKS_PER_HALF_DISTANCE, US_PER_MS),
                )?;
            }
        }
    }
    if results.iter().any(|r| r.slow.is_some()) {
        write(
            "slow.csv",
            &slow::csv(results.iter().filter_map(|r| r.slow.as_ref())),
        )?;
    }
    let json = serde_json::to_string_pretty(summary).expect("a summary always serializes");
    write("summary.json", &(json + "\n"))?;
    write("summary.md", &summary.markdown())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (n, threads) in [(10u64, 3usize), (2, 4), (1_000_000, 7), (5, 1)] {
            let shares: Vec<u64> = (0..threads).map(|t| share(n, threads, t)).collect();
            assert_eq!(shares.iter().sum::<u64>(), n);
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
    }
}

//! `ticket-bench compare`: several run folders side by side.
//!
//! `compare.md` is a table of each run's headline figures with ratios against the first run;
//! `compare.svg` plots each run's latency by percentile the way the HdrHistogram plotter does
//! (x: `1/(1-p)` on a log scale labelled 0 %, 90 %, 99 %, 99.9 %...; y: latency in ms), one
//! polyline per run, drawn from the run's `.hgrm` file, so any folder with a `summary.json` and
//! the `.hgrm` it names can be compared. The SVG is written by hand: it is a few dozen elements.

use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};

use crate::provenance::{file_safe, fresh_dir, Provenance, Utc};
use crate::summary::{ms, thousands, Summary};
use crate::Error;

/// Plot size in SVG user units (px).
const WIDTH: f64 = 960.0;
/// Plot height.
const HEIGHT: f64 = 540.0;
/// Space for the y axis labels.
const LEFT: f64 = 80.0;
/// Right margin: half the widest x label ("99.99999%") must fit.
const RIGHT: f64 = 50.0;
/// Space for the title.
const TOP: f64 = 50.0;
/// Space for the x axis labels.
const BOTTOM: f64 = 70.0;
/// Most decades of `1/(1-p)` on the x axis: 99.99999 %, beyond which no run of ours has data.
const DECADES_MAX: u32 = 7;
/// Line colours, cycled (a colour-blind-safe palette: Okabe and Ito).
const COLOURS: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// One run folder, read back.
#[derive(Clone, Debug)]
pub struct Run {
    /// The folder.
    pub dir: PathBuf,
    /// Its `summary.json`.
    pub summary: Summary,
    /// Its all-streams `.hgrm`, parsed.
    pub rows: Vec<HgrmRow>,
}

/// One row of a `.hgrm` file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HgrmRow {
    /// Value (ms).
    pub value: f64,
    /// Percentile as a fraction, 0..=1.
    pub percentile: f64,
    /// Values at or below this one.
    pub total_count: u64,
    /// `1/(1-percentile)`; absent on the last (100 %) row.
    pub inverse: Option<f64>,
}

/// Parses the rows of a `.hgrm` percentile distribution (header, blank and `#` lines skipped).
pub fn parse_hgrm(text: &str) -> Result<Vec<HgrmRow>, String> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
            continue;
        }
        let bad = || format!("line {}: {line:?} is not a percentile row", n + 1);
        let cols: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&cols.len()) {
            return Err(bad());
        }
        rows.push(HgrmRow {
            value: cols[0].parse().map_err(|_| bad())?,
            percentile: cols[1].parse().map_err(|_| bad())?,
            total_count: cols[2].parse().map_err(|_| bad())?,
            inverse: match cols.get(3) {
                Some(c) => Some(c.parse().map_err(|_| bad())?),
                None => None,
            },
        });
    }
    Ok(rows)
}

impl Run {
    /// Reads `dir/summary.json` and the `.hgrm` of its first series.
    pub fn load(dir: &Path) -> Result<Run, Error> {
        let bad = |path: &Path, why: String| Error::BadRun {
            path: path.to_path_buf(),
            why,
        };
        let path = dir.join("summary.json");
        let text = fs::read_to_string(&path).map_err(|e| bad(&path, e.to_string()))?;
        let summary: Summary =
            serde_json::from_str(&text).map_err(|e| bad(&path, e.to_string()))?;
        let first = summary
            .series
            .first()
            .ok_or_else(|| bad(&path, "no series".into()))?;
        let path = dir.join(&first.hgrm);
        let text = fs::read_to_string(&path).map_err(|e| bad(&path, e.to_string()))?;
        let rows = parse_hgrm(&text).map_err(|why| bad(&path, why))?;
        Ok(Run {
            dir: dir.to_path_buf(),
            summary,
            rows,
        })
    }
}

/// Runs `compare` on `runs`, writing into `out` (or a fresh default folder); returns the folder.
pub fn compare(runs: &[PathBuf], out: Option<&Path>) -> Result<PathBuf, Error> {
    let runs: Vec<Run> = runs
        .iter()
        .map(|d| Run::load(d))
        .collect::<Result<_, _>>()?;
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => fresh_dir(&Path::new(crate::run::RUNS_DIR).join(format!(
            "{}-{}-compare",
            Utc::of(std::time::SystemTime::now()).date(),
            file_safe(&Provenance::collect().host)
        ))),
    };
    fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    for (name, text) in [("compare.md", markdown(&runs)), ("compare.svg", svg(&runs))] {
        let path = dir.join(name);
        fs::write(&path, text).map_err(Error::io(format!("writing {}", path.display())))?;
    }
    Ok(dir)
}

/// `value (ratio×)` against the baseline.
fn with_ratio(text: String, value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{text} ({:.2}×)", value / base)
    } else {
        text
    }
}

/// The `compare.md` table.
pub fn markdown(runs: &[Run]) -> String {
    let mut out = String::new();
    let Some(first) = runs.first() else {
        return out;
    };
    let b = &first.summary;
    let _ = writeln!(out, "# ticket-bench comparison\n");
    let _ = writeln!(
        out,
        "Ratios against the first run, {}: above 1 means more requests per second, or a longer \
         latency. Latencies in ms.\n",
        b.label
    );
    let _ = writeln!(
        out,
        "| run | scenario | req/s | p50 | p99 | p99.9 | max | errors |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for run in runs {
        let s = &run.summary;
        let (l, bl) = (&s.latency_ms, &b.latency_ms);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            s.label,
            s.scenario,
            with_ratio(thousands(s.rps), s.rps, b.rps),
            with_ratio(ms(l.p50), l.p50, bl.p50),
            with_ratio(ms(l.p99), l.p99, bl.p99),
            with_ratio(ms(l.p99_9), l.p99_9, bl.p99_9),
            with_ratio(ms(l.max), l.max, bl.max),
            s.errors.total
        );
    }
    let _ = writeln!(out, "\n![latency by percentile](compare.svg)\n");
    let _ = writeln!(out, "## Runs\n");
    for run in runs {
        let s = &run.summary;
        let p = &s.provenance;
        let _ = writeln!(out, "- **{}** (`{}`)", s.label, run.dir.display());
        let _ = writeln!(out, "  - command: `{}`", s.command);
        let _ = writeln!(
            out,
            "  - {}, {} connections, pipeline {}, {} thread(s), measured {:.2} s; errors: {}",
            s.setup.mode,
            s.setup.connections,
            s.setup.pipeline,
            s.setup.threads,
            s.elapsed_s,
            s.errors.describe()
        );
        let _ = writeln!(
            out,
            "  - server: {}",
            s.server_options.as_deref().unwrap_or("not given")
        );
        let _ = writeln!(
            out,
            "  - host {}, {} CPUs, kernel {}, commit {}, {}",
            p.host,
            p.cpus_online,
            p.kernel,
            p.git_commit.as_deref().unwrap_or("unknown"),
            s.started_at
        );
        if let Some(c) = &s.stock_check {
            let _ = writeln!(out, "  - stock check {}", c.describe());
        }
    }
    out
}

/// Escapes text for SVG.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The x-axis label of decade `d`: 0%, 90%, 99%, 99.9%...
fn percentile_label(d: u32) -> String {
    match d {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        _ => format!("99.{}%", "9".repeat(d as usize - 2)),
    }
}

/// A round axis top at or above `v`, and its tick step: 1, 2 or 5 times a power of ten, with
/// four to ten ticks.
fn nice_axis(v: f64) -> (f64, f64) {
    let v = if v > 0.0 { v } else { 1.0 };
    let magnitude = 10f64.powf((v / 5.0).log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| v / s <= 10.0)
        .unwrap_or(10.0 * magnitude);
    ((v / step).ceil() * step, step)
}

/// The `compare.svg` plot.
pub fn svg(runs: &[Run]) -> String {
    let lines: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            r.rows
                .iter()
                .filter_map(|row| Some((row.inverse?.max(1.0).log10(), row.value)))
                .collect()
        })
        .collect();
    let x_data = lines.iter().flatten().map(|p| p.0).fold(0.0, f64::max);
    let decades = (x_data.ceil() as u32).clamp(2, DECADES_MAX);
    let (y_top, y_step) = nice_axis(lines.iter().flatten().map(|p| p.1).fold(0.0, f64::max));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + x.min(f64::from(decades)) / f64::from(decades) * plot_w;
    let py = |y: f64| TOP + plot_h - y / y_top * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">Latency by Percentile Distribution</text>"#,
        WIDTH / 2.0
    );
    for d in 0..=decades {
        let x = px(f64::from(d));
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 18.0,
            percentile_label(d)
        );
    }
    let mut y = 0.0;
    while y <= y_top + y_step / 2.0 {
        let yy = py(y);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            yy + 4.0,
            trim_number(y)
        );
        y += y_step;
    }
    let _ = writeln!(
        out,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">Percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 20.0
    );
    let _ = writeln!(
        out,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">Latency (milliseconds)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    for (i, (run, points)) in runs.iter().zip(&lines).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            pts.join(" "),
            xml_escape(&run.summary.label)
        );
        let ly = TOP + 20.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/>"#,
            LEFT + 15.0,
            LEFT + 40.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{} ({} req/s)</text>"#,
            LEFT + 46.0,
            ly + 4.0,
            xml_escape(&run.summary.label),
            thousands(run.summary.rps)
        );
    }
    let _ = writeln!(out, "</svg>");
    out
}

/// `0.5`, `2`, `0.25` without trailing zeros.
fn trim_number(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_axes() {
        let labels: Vec<String> = (0..=5).map(percentile_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
        let close =
            |(a, b): (f64, f64), (c, d): (f64, f64)| (a - c).abs() < 1e-9 && (b - d).abs() < 1e-9;
        for (v, want) in [
            (0.87, (0.9, 0.1)),
            (4.3, (4.5, 0.5)),
            (12.0, (12.0, 2.0)),
            (0.0, (1.0, 0.1)),
        ] {
            assert!(close(nice_axis(v), want), "{v}: {:?}", nice_axis(v));
        }
        assert_eq!(trim_number(0.25), "0.25");
        assert_eq!(trim_number(2.0), "2");
        assert_eq!(xml_escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn parses_rows() {
        let text = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
                    \x20      0.140 0.000000000000          1           1.00\n\
                    \x20      2.501 1.000000000000          5\n\
                    #[Mean    =        0.190, StdDeviation   =        0.121]\n";
        let rows = parse_hgrm(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].inverse, Some(1.0));
        assert_eq!(rows[1].inverse, None);
        assert_eq!(rows[1].total_count, 5);
        assert!(parse_hgrm("1 2").is_err());
    }
}

//! `GET /metrics` against the real server over TCP, in all three modes and both transports: the
//! scrape is parsed by Prometheus' own Python client (`prometheus_client.parser`, from the
//! virtual environment `.ci/python-tools` makes: `$TICKETD_PY_VENV`, by default `.ci/venv`), and
//! its numbers are checked against the traffic the test sent. Under CI (`CI` set) a missing venv
//! fails the test; elsewhere the test says SKIPPED on stderr and reads the samples with a minimal
//! line reader instead, so the traffic checks still run.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{exchange, get, post, Server};

/// How long a test waits for every shard's published numbers to show what it sent: a few
/// publish periods (0.1 s) on a loaded machine.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The exposition's content type (format 0.0.4).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prints every sample of the text on stdin as JSON `[family, type, sample, labels, value]`.
const PARSE_PY: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([family.name, family.type, s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// One sample of a scrape.
#[derive(Debug, Clone)]
struct Sample {
    /// The family's type as the parser read it from `# TYPE` (empty from the fallback reader).
    kind: String,
    /// The series name (`_total`, `_bucket`... included).
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape.
struct Scrape {
    samples: Vec<Sample>,
    text: String,
}

impl Scrape {
    /// The value of series `name` whose labels include `labels`, if exactly one matches.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.samples.iter().filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        });
        let first = found.next()?;
        assert!(
            found.next().is_none(),
            "{name} {labels:?} is not one series"
        );
        Some(first.value)
    }

    /// `name{shard="all"}`, which must be there.
    fn all(&self, name: &str) -> f64 {
        self.get(name, &[("shard", "all")])
            .unwrap_or_else(|| panic!("no {name}{{shard=\"all\"}} in\n{}", self.text))
    }

    /// The sum of `name` over the numbered shards.
    fn per_shard_sum(&self, name: &str, shards: usize) -> f64 {
        (0..shards)
            .map(|i| {
                self.get(name, &[("shard", &i.to_string())])
                    .unwrap_or_else(|| panic!("no {name} for shard {i} in\n{}", self.text))
            })
            .sum()
    }

    /// The type the parser gave the family of series `sample`.
    fn kind(&self, sample: &str) -> Option<&str> {
        self.samples
            .iter()
            .find(|s| s.name == sample)
            .map(|s| s.kind.as_str())
    }
}

/// The Python of the tools' venv, if it is there; a missing one fails under CI.
fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("TICKETD_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/venv"));
    let python = venv.join("bin/python3");
    // Skipped, the scrape is still checked by a line reader instead of prometheus_client.
    support::have(&python, "run .ci/python-tools").then_some(python)
}

/// The samples of `text` as prometheus_client parses them (it rejects what Prometheus would).
fn parse_with_prometheus_client(python: &Path, text: &str) -> Vec<Sample> {
    let mut child = Command::new(python)
        .args(["-c", PARSE_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client rejects the scrape: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    rows.iter()
        .map(|row| Sample {
            kind: row[1].as_str().unwrap().to_string(),
            name: row[2].as_str().unwrap().to_string(),
            labels: row[3]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect(),
            value: row[4].as_f64().unwrap(),
        })
        .collect()
}

/// The fallback without the venv: `name{k="v",...} value` lines (our label values have no
/// commas, quotes or escapes).
fn parse_lines(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').expect("label=value");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                kind: String::new(),
                name: name.to_string(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// `GET /metrics`, checked for status and content type, and parsed.
fn scrape(server: &Server, python: Option<&Path>) -> Scrape {
    let reply = get(server, "/metrics");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(CONTENT_TYPE));
    let samples = match python {
        Some(python) => parse_with_prometheus_client(python, &reply.body),
        None => parse_lines(&reply.body),
    };
    Scrape {
        samples,
        text: reply.body,
    }
}

/// Scrapes until `ready` holds of a scrape (the shards publish every 0.1 s), then returns it.
fn scrape_until(server: &Server, python: Option<&Path>, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let scrape = scrape(server, python);
        if ready(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "the scrape never showed the traffic:\n{}",
            scrape.text
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every shard's snapshot is in the scrape, and recent.
fn every_shard_appears(scrape: &Scrape, shards: usize) {
    assert_eq!(scrape.get("ticketd_shards", &[]), Some(shards as f64));
    for shard in 0..shards {
        let age = scrape
            .get(
                "ticketd_metrics_snapshot_age_seconds",
                &[("shard", &shard.to_string())],
            )
            .unwrap_or_else(|| panic!("shard {shard} missing:\n{}", scrape.text));
        assert!(age < 5.0, "shard {shard}'s numbers are {age} s old");
    }
}

/// Monolith, 2 shards, the journal on, service times recorded, on both transports: N purchases
/// count N sold orders and tickets over the shards (per shard and `shard="all"` agree), a
/// malformed request counts under its parser error kind, a bad body and an unknown path under
/// theirs; at rest the slices' available plus sold is the stock, nothing is in transit, the
/// journal is healthy with everything appended durable, and every commit and service time is in
/// its histogram. HEAD answers the head alone.
#[test]
fn a_monolith_scrape_counts_the_traffic_on_every_shard() {
    let python = python();
    for transport in ["uring", "glommio"] {
        let server = Server::start_with_env(
            &[
                "--shards",
                "2",
                "--initial-stock",
                "100",
                "--latency-dump",
                "latency",
            ],
            &[("TICKETD_TRANSPORT", transport)],
        );
        const N: u64 = 24;
        for _ in 0..N {
            let reply = post(&server, "/api/v1/purchase", "{\"qty\":1}");
            assert_eq!(reply.status, 200, "{transport}: {}", reply.body);
        }
        let bad = exchange(
            &server,
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(bad.status, 400);
        assert_eq!(post(&server, "/api/v1/purchase", "{\"qty\":0}").status, 422);
        assert_eq!(get(&server, "/nope").status, 404);

        let s = scrape_until(&server, python.as_deref(), |s| {
            s.get("ticketd_orders_sold_total", &[("shard", "all")]) == Some(N as f64)
                && s.get("ticketd_not_found_total", &[("shard", "all")]) == Some(1.0)
                && s.get("ticketd_stock_in_transit_tickets", &[("shard", "all")]) == Some(0.0)
                // Every earlier connection was closed; at most this scrape's is open.
                && s.get("ticketd_connections_open", &[("shard", "all")]) <= Some(1.0)
                && s.get("ticketd_journal_appended_seq", &[("shard", "0")])
                    == s.get("ticketd_journal_durable_seq", &[("shard", "0")])
                && s.get("ticketd_journal_appended_seq", &[("shard", "1")])
                    == s.get("ticketd_journal_durable_seq", &[("shard", "1")])
        });
        let t = transport;
        every_shard_appears(&s, 2);
        let n = N as f64;
        assert_eq!(s.per_shard_sum("ticketd_orders_sold_total", 2), n, "{t}");
        assert_eq!(s.all("ticketd_tickets_sold_total"), n, "{t}");
        assert_eq!(s.per_shard_sum("ticketd_tickets_sold_total", 2), n, "{t}");
        assert_eq!(s.all("ticketd_orders_insufficient_total"), 0.0, "{t}");
        let duplicate_host = [("shard", "all"), ("kind", "duplicate_host")];
        assert_eq!(
            s.get("ticketd_http_errors_total", &duplicate_host),
            Some(1.0),
            "{t}"
        );
        let missing_host = [("shard", "all"), ("kind", "missing_host")];
        assert_eq!(
            s.get("ticketd_http_errors_total", &missing_host),
            Some(0.0),
            "{t}"
        );
        assert_eq!(s.all("ticketd_body_errors_total"), 1.0, "{t}");
        assert!(s.all("ticketd_requests_total") >= n + 2.0, "{t}");
        assert!(
            s.all("ticketd_connections_accepted_total") >= n + 3.0,
            "{t}"
        );
        let closed = s.all("ticketd_connections_closed_total");
        assert!(
            closed >= s.all("ticketd_connections_accepted_total") - 1.0,
            "{t}"
        );
        // The protocol's counters: every order was sold from a slice, here or at the coordinator.
        assert_eq!(
            s.all("ticketd_moves_orders_local_total")
                + s.all("ticketd_moves_orders_escalated_total"),
            n,
            "{t}"
        );
        // At rest: the slices' tickets and the sold ones are the stock.
        assert_eq!(
            s.all("ticketd_stock_available_tickets") + s.all("ticketd_slice_tickets_sold_total"),
            100.0,
            "{t}"
        );
        assert_eq!(s.all("ticketd_slice_tickets_sold_total"), n, "{t}");
        for shard in ["0", "1"] {
            assert_eq!(
                s.get("ticketd_journal_healthy", &[("shard", shard)]),
                Some(1.0)
            );
            assert_eq!(s.get("ticketd_halted", &[("shard", shard)]), Some(0.0));
        }
        let commits = s.all("ticketd_journal_commits_total");
        assert!(commits >= 1.0, "{t}: {commits} commits");
        assert_eq!(
            s.all("ticketd_journal_commit_seconds_count"),
            commits,
            "{t}"
        );
        assert_eq!(
            s.get(
                "ticketd_journal_commit_seconds_bucket",
                &[("shard", "all"), ("le", "+Inf")]
            ),
            Some(commits),
            "{t}"
        );
        assert!(s.all("ticketd_journal_changes_total") >= n, "{t}");
        // One service time per input: at least one per request answered.
        assert!(s.all("ticketd_service_seconds_count") >= n, "{t}");
        let version = [("version", env!("CARGO_PKG_VERSION")), ("mode", "monolith")];
        assert_eq!(s.get("ticketd_build_info", &version), Some(1.0), "{t}");
        if python.is_some() {
            let kinds = [
                ("ticketd_orders_sold_total", "counter"),
                ("ticketd_http_errors_total", "counter"),
                ("ticketd_journal_commit_seconds_sum", "histogram"),
                ("ticketd_service_seconds_bucket", "histogram"),
                ("ticketd_stock_available_tickets", "gauge"),
            ];
            for (sample, kind) in kinds {
                assert_eq!(s.kind(sample), Some(kind), "{sample}");
            }
        }

        // HEAD: the head a GET would have (its Content-Length too), and no body before the close.
        let mut stream = server.connect();
        stream
            .write_all(b"HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut head = String::new();
        stream.read_to_string(&mut head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(
            head.contains(&format!("\r\nContent-Type: {CONTENT_TYPE}\r\n")),
            "{head}"
        );
        assert!(head.ends_with("\r\n\r\n"), "a body after the head: {head}");
    }
}

/// Vacancy and ticket mode, 2 shards each: purchases through the ticket tier count as forwarded
/// and sold there and as sold reserves at the vacancy service; the ticket tier has no journal
/// (no journal series) and holds no stock; both name their mode in `ticketd_build_info`.
#[test]
fn vacancy_and_ticket_modes_serve_every_shard() {
    let python = python();
    let vacancy = Server::start(&[
        "--mode",
        "vacancy",
        "--shards",
        "2",
        "--initial-stock",
        "50",
    ]);
    let url = format!("http://127.0.0.1:{}", vacancy.port());
    let ticket = Server::start(&["--mode", "ticket", "--shards", "2", "--vacancy-url", &url]);
    const N: u64 = 6;
    for _ in 0..N {
        let reply = post(&ticket, "/api/v1/purchase", "{\"qty\":2}");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let n = N as f64;

    let t = scrape_until(&ticket, python.as_deref(), |s| {
        s.get("ticketd_orders_sold_total", &[("shard", "all")]) == Some(n)
    });
    every_shard_appears(&t, 2);
    assert_eq!(t.per_shard_sum("ticketd_orders_sold_total", 2), n);
    assert_eq!(t.all("ticketd_tickets_sold_total"), 2.0 * n);
    assert!(t.all("ticketd_forwarded_total") >= n);
    assert_eq!(t.all("ticketd_forward_failed_total"), 0.0);
    assert_eq!(t.all("ticketd_stock_available_tickets"), 0.0);
    assert!(!t.text.contains("ticketd_journal"), "{}", t.text);
    let mode = [("mode", "ticket")];
    assert_eq!(t.get("ticketd_build_info", &mode), Some(1.0));

    let v = scrape_until(&vacancy, python.as_deref(), |s| {
        s.get("ticketd_orders_sold_total", &[("shard", "all")]) == Some(n)
            && s.get("ticketd_stock_in_transit_tickets", &[("shard", "all")]) == Some(0.0)
    });
    every_shard_appears(&v, 2);
    assert_eq!(v.per_shard_sum("ticketd_orders_sold_total", 2), n);
    assert_eq!(v.all("ticketd_tickets_sold_total"), 2.0 * n);
    assert_eq!(
        v.all("ticketd_stock_available_tickets") + v.all("ticketd_slice_tickets_sold_total"),
        50.0
    );
    assert_eq!(v.all("ticketd_forwarded_total"), 0.0);
    assert_eq!(
        v.get("ticketd_journal_healthy", &[("shard", "1")]),
        Some(1.0)
    );
    let mode = [("mode", "vacancy")];
    assert_eq!(v.get("ticketd_build_info", &mode), Some(1.0));
}

//! `/openapi.json` and `/docs` against the real server over TCP: what each mode's document lists,
//! the document checked by `openapi-spec-validator` and the live server by Schemathesis, the page
//! rendered by headless Chromium, and gzip.
//!
//! The Python tools live in the virtual environment `.ci/python-tools` makes (`$TICKETD_PY_VENV`,
//! by default `.ci/venv`); Chromium is Debian's `chromium`. Under CI (`CI` set: `.ci/run` sets it,
//! after installing them) a missing tool fails its test; elsewhere the test says SKIPPED on
//! stderr and passes. What the tools leave (the screenshot, Schemathesis' JUnit report) goes to
//! `test-output/` in the target directory.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{get, have, Server};

/// How long Schemathesis may run before the test kills it: `--max-examples` bounds the work
/// (about 200 requests, seconds on this API); this bounds a hang.
const SCHEMATHESIS_TIMEOUT: Duration = Duration::from_secs(240);

/// How long one Chromium run may take.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// The document's paths, in the order serde_json keeps them (sorted).
fn paths(doc: &Value) -> Vec<String> {
    let mut paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    paths.sort();
    paths
}

fn document(server: &Server) -> Value {
    let reply = get(server, "/openapi.json");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    serde_json::from_str(&reply.body).expect("/openapi.json is JSON")
}

/// Each mode's document lists the paths that mode serves, and only those; the configured
/// `MAX_ORDER_QTY` is the schema's maximum; every listed GET answers 200 and a purchase or reserve
/// the document's example answers 200.
#[test]
fn each_mode_documents_what_it_serves() {
    let everywhere = [
        "/",
        "/api/v1/available",
        "/api/v1/health",
        "/api/v1/ready",
        "/docs",
        "/health",
        "/metrics",
        "/openapi.json",
        "/ready",
    ];
    let monolith = Server::start(&["--shards", "1", "--max-order-qty", "77"]);
    let doc = document(&monolith);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["components"]["schemas"]["Order"]["properties"]["qty"]["maximum"],
        77
    );
    let mut want: Vec<&str> = everywhere.to_vec();
    want.extend(["/api/v1/purchase", "/api/v1/reserve"]);
    want.sort();
    assert_eq!(paths(&doc), want);
    for path in everywhere {
        assert_eq!(get(&monolith, path).status, 200, "{path}");
    }
    for path in ["/api/v1/purchase", "/api/v1/reserve"] {
        assert_eq!(support::post(&monolith, path, "{\"qty\":1}").status, 200);
    }

    let vacancy = Server::start(&["--mode", "vacancy", "--shards", "1"]);
    let mut want: Vec<&str> = everywhere.to_vec();
    want.push("/api/v1/reserve");
    want.sort();
    assert_eq!(paths(&document(&vacancy)), want);

    // A ticket tier whose vacancy service is not there still serves its documents.
    let url = format!("http://127.0.0.1:{}", support::free_port());
    let ticket = Server::start(&["--mode", "ticket", "--shards", "1", "--vacancy-url", &url]);
    let mut want: Vec<&str> = everywhere.to_vec();
    want.push("/api/v1/purchase");
    want.sort();
    assert_eq!(paths(&document(&ticket)), want);
}

/// Where tools leave what a person may want to look at: `test-output/` in the target directory.
fn test_output() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A program from the Python tools' virtual environment.
fn python_tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("TICKETD_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/venv"));
    let tool = venv.join("bin").join(name);
    have(&tool, "run .ci/python-tools").then_some(tool)
}

/// Runs `command` to its end or until `timeout`, killing it then; returns whether it succeeded
/// and what it printed (stdout and stderr, through a file so a full pipe cannot stall it).
fn run(mut command: Command, timeout: Duration, log: &Path) -> (bool, String) {
    let file = std::fs::File::create(log).unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("starting a tool");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(log).unwrap_or_default();
    match status {
        Some(status) => (status.success(), output),
        None => (false, format!("killed after {timeout:?}\n{output}")),
    }
}

/// The served document is valid OpenAPI 3.1 (`openapi-spec-validator`), and Schemathesis finds
/// the live monolith true to it: positive and negative cases for every operation, with the checks
/// that no answer is a 5xx, and every status, content type, header and body conforms to the
/// document, and invalid input is refused. Bounded by `--max-examples` (and a kill after
/// [`SCHEMATHESIS_TIMEOUT`]); the seed is fixed so a failure replays.
#[test]
fn the_document_is_valid_and_the_server_conforms_to_it() {
    let (Some(validator), Some(schemathesis)) = (
        python_tool("openapi-spec-validator"),
        python_tool("schemathesis"),
    ) else {
        return;
    };
    let out = test_output().join("schemathesis");
    std::fs::create_dir_all(&out).unwrap();
    // Enough stock that orders succeed; its own journal (support gives every server its own
    // directory).
    let server = Server::start(&["--shards", "2", "--initial-stock", "1000000000000000"]);
    let url = format!("http://{}", server.addr);

    let spec = out.join("openapi.json");
    std::fs::write(&spec, get(&server, "/openapi.json").body).unwrap();
    let mut validate = Command::new(&validator);
    validate.arg(&spec);
    let (ok, output) = run(
        validate,
        Duration::from_secs(60),
        &out.join("validator.log"),
    );
    assert!(ok, "openapi-spec-validator:\n{output}");

    let mut command = Command::new(&schemathesis);
    command
        .current_dir(&out) // Hypothesis keeps its example database in the working directory
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .args(["run", &format!("{url}/openapi.json"), "--url", &url])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,negative_data_rejection,\
             unsupported_method",
        ])
        .args(["--max-examples", "30", "--seed", "1", "--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&out);
    let (ok, output) = run(command, SCHEMATHESIS_TIMEOUT, &out.join("schemathesis.log"));
    assert!(ok, "schemathesis:\n{output}\nserver log:\n{}", server.log());
    let summary: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("generated") || l.contains("issues"))
        .collect();
    let _ = writeln!(std::io::stderr(), "schemathesis: {}", summary.join(" / "));
}

/// Runs headless Chromium on `url` with `args`; its own profile directory, so parallel runs do
/// not share one.
fn chromium(url: &str, args: &[&str], log: &Path) -> (bool, String) {
    let profile = std::env::temp_dir().join(format!("ticketd-chromium-{}", std::process::id()));
    let mut command = Command::new("chromium");
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", profile.display()))
        // Lets the page's fetch of /openapi.json and its rendering finish before the dump or the
        // screenshot (virtual time runs ahead as soon as the page is idle).
        .arg("--virtual-time-budget=10000")
        .args(args)
        .arg(url);
    run(command, CHROMIUM_TIMEOUT, log)
}

/// `/docs` renders in a real browser with nothing but what the server sends: the DOM after its
/// script ran holds a section for every operation of the document, and a screenshot is left in
/// `test-output/docs.png`. The page names no other origin.
#[test]
fn the_docs_page_renders_every_operation_in_chromium() {
    if !have(Path::new("chromium"), "apt-get install chromium") {
        return;
    }
    let server = Server::start(&["--shards", "1"]);
    let page = get(&server, "/docs");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for outside in ["http://", "https://", "//cdn", "src=\"", "@import"] {
        assert!(!page.body.contains(outside), "the page refers to {outside}");
    }
    let doc = document(&server);
    let url = format!("http://{}/docs", server.addr);
    let out = test_output();

    let (ok, dom) = chromium(&url, &["--dump-dom"], &out.join("docs.dom.html"));
    assert!(ok, "chromium --dump-dom:\n{dom}");
    // The script removes its "Loading" line once it rendered the document, and turns it into
    // the error otherwise.
    assert!(
        !dom.contains("id=\"status\""),
        "the page did not render:\n{dom}"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let section = format!("data-path=\"{path}\"");
            assert!(dom.contains(&section), "no section for {path}:\n{dom}");
            let nav = format!("{} {path}</a>", method.to_uppercase());
            assert!(dom.contains(&nav), "no link to {method} {path}");
        }
    }
    assert!(dom.contains("qty_out_of_range") && dom.contains("Request body"));

    let png = out.join("docs.png");
    let _ = std::fs::remove_file(&png);
    let (ok, log) = chromium(
        &url,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,1600",
        ],
        &out.join("docs.screenshot.log"),
    );
    assert!(ok, "chromium --screenshot:\n{log}");
    let mut magic = [0u8; 8];
    std::fs::File::open(&png)
        .and_then(|mut f| f.read_exact(&mut magic))
        .expect("the screenshot");
    assert_eq!(&magic, b"\x89PNG\r\n\x1a\n");
}

/// Sends `request` and reads one response: status, header lines, and the body as raw bytes.
fn exchange_raw(server: &Server, request: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    (status, headers, bytes[end + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Both documents go gzip-encoded (`Content-Encoding: gzip`, `Vary: Accept-Encoding`) exactly
/// when `Accept-Encoding` accepts gzip, and inflate to the plain body byte for byte; `q=0` and no
/// field get the plain body (still with `Vary`); HEAD gets the head of the GET it stands for; the
/// hot routes ignore `Accept-Encoding`.
#[test]
fn documents_are_gzipped_when_accepted() {
    let server = Server::start(&["--shards", "1"]);
    let request = |method: &str, path: &str, accept: &str| {
        let accept = if accept.is_empty() {
            String::new()
        } else {
            format!("Accept-Encoding: {accept}\r\n")
        };
        format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{accept}Connection: close\r\n\r\n")
    };
    for path in ["/openapi.json", "/docs"] {
        let (status, headers, plain) = exchange_raw(&server, &request("GET", path, ""));
        assert_eq!(status, 200);
        assert!(plain.len() > 1024, "{path}: {} bytes", plain.len());
        assert_eq!(header(&headers, "content-encoding"), None);
        assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));

        for accept in ["gzip", "deflate, gzip;q=0.5", "br;q=1, *"] {
            let (status, headers, gz) = exchange_raw(&server, &request("GET", path, accept));
            assert_eq!(status, 200);
            assert_eq!(
                header(&headers, "content-encoding"),
                Some("gzip"),
                "{accept}"
            );
            assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
            let length: usize = header(&headers, "content-length").unwrap().parse().unwrap();
            assert_eq!(length, gz.len());
            assert!(gz.len() < plain.len());
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut inflated)
                .unwrap();
            assert_eq!(inflated, plain, "{path} with {accept}");

            let (status, head_headers, body) =
                exchange_raw(&server, &request("HEAD", path, accept));
            assert_eq!(status, 200);
            assert!(body.is_empty());
            // (Each request gets its own generated `X-Request-Id`.)
            let without_date = |h: &[(String, String)]| -> Vec<(String, String)> {
                h.iter()
                    .filter(|(n, _)| n != "date" && n != "x-request-id")
                    .cloned()
                    .collect()
            };
            assert_eq!(without_date(&head_headers), without_date(&headers));
        }
        for accept in ["gzip;q=0", "identity", "deflate", "*;q=0"] {
            let (_, headers, body) = exchange_raw(&server, &request("GET", path, accept));
            assert_eq!(header(&headers, "content-encoding"), None, "{accept}");
            assert_eq!(body, plain, "{accept}");
        }
    }
    let (status, headers, body) =
        exchange_raw(&server, &request("GET", "/api/v1/available", "gzip"));
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(header(&headers, "vary"), None);
    assert!(body.starts_with(b"{\"qty\":"));
}

/// `/metrics` is gzip-encoded when the client accepts it (it is over 1 KiB), with `Vary:
/// Accept-Encoding`; the inflated text is the same exposition a plain scrape gets (up to the
/// numbers that moved between the two scrapes: compared by metric names).
#[test]
fn metrics_are_gzipped_when_accepted() {
    let server = Server::start(&["--shards", "1"]);
    let request = |accept: &str| {
        format!("GET /metrics HTTP/1.1\r\nHost: t\r\n{accept}Connection: close\r\n\r\n")
    };
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split([' ', '{']).next().map(str::to_string))
            .collect()
    };
    let (status, headers, plain) = exchange_raw(&server, &request(""));
    assert_eq!(status, 200);
    assert!(plain.len() > 1024, "{} bytes", plain.len());
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
    let (status, headers, gz) = exchange_raw(&server, &request("Accept-Encoding: gzip\r\n"));
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert!(gz.len() < plain.len());
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut inflated)
        .unwrap();
    let (inflated, plain) = (
        String::from_utf8(inflated).unwrap(),
        String::from_utf8(plain).unwrap(),
    );
    assert_eq!(names(&inflated), names(&plain));
    assert!(inflated.contains("ticketd_build_info"));
}

/// The documents and `/metrics` carry the CORS grant like every other response (the default
/// policy allows every origin), so a page on another origin can read the spec.
#[test]
fn documents_carry_the_cors_grant() {
    let server = Server::start(&["--shards", "1"]);
    for path in ["/openapi.json", "/docs", "/metrics"] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nOrigin: http://elsewhere.example\r\n\
             Accept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        );
        let (status, headers, _) = exchange_raw(&server, &request);
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        assert!(header(&headers, "x-request-id").is_some(), "{path}");
    }
}

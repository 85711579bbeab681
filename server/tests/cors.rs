//! CORS over real TCP, for both transports, and in a real browser: headless Chromium opens a
//! page from another origin whose script calls the API with a preflighted `fetch`.
//!
//! Every test starts its own servers, each with its own empty data directory (see `support`).

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{read_reply, Reply, Server};

const TRANSPORTS: [&str; 2] = ["uring", "glommio"];

/// A one-shard server with 100 tickets, the given transport and CORS flags.
fn start(transport: &str, cors: &[&str]) -> Server {
    let mut args = vec!["--shards", "1", "--initial-stock", "100"];
    args.extend_from_slice(cors);
    Server::start_with_env(&args, &[("TICKETD_TRANSPORT", transport)])
}

/// Sends each request on one keep-alive connection and reads one reply per request.
fn exchange_all(server: &Server, requests: &[String]) -> Vec<Reply> {
    let mut stream = server.connect();
    let mut carry = Vec::new();
    requests
        .iter()
        .map(|request| {
            stream.write_all(request.as_bytes()).unwrap();
            read_reply(&mut stream, &mut carry)
        })
        .collect()
}

fn preflight(origin: &str) -> String {
    format!(
        "OPTIONS /api/v1/purchase HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: content-type, x-request-id\r\n\r\n"
    )
}

fn purchase(origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "POST /api/v1/purchase HTTP/1.1\r\nHost: t\r\n{origin}Content-Type: application/json\r\n\
         Content-Length: 9\r\n\r\n{{\"qty\":1}}"
    )
}

fn get(path: &str, origin: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\r\n")
}

/// The CORS lines of a reply, for comparison: (allow-origin, vary, allow-methods, allow-headers,
/// max-age).
type CorsLines<'a> = [Option<&'a str>; 5];

fn cors_lines(r: &Reply) -> CorsLines<'_> {
    assert_eq!(
        r.header("access-control-allow-credentials"),
        None,
        "credentials are never allowed: {r:?}"
    );
    [
        r.header("access-control-allow-origin"),
        r.header("vary"),
        r.header("access-control-allow-methods"),
        r.header("access-control-allow-headers"),
        r.header("access-control-max-age"),
    ]
}

/// With the default (`*`, as the original system): a preflight is 204 with `*`, the route's
/// methods, the requested headers echoed and a max age, and no `Vary`; a purchase, a 404 and a
/// 405 with `Origin` carry `Access-Control-Allow-Origin: *`; a request without `Origin` carries no
/// CORS line. With a list: a listed origin is echoed with `Vary: Origin`, another gets only
/// `Vary: Origin` and a preflight without CORS lines. With `none`: no CORS line at all. Every
/// purchase sells exactly once, and the answers are the same on both transports.
#[test]
fn cors_headers_by_policy_on_both_transports() {
    let page = "http://127.0.0.1:3000";
    let other = "http://evil.example";
    let methods = Some("POST, OPTIONS");
    let echoed = Some("content-type, x-request-id");
    let age = Some("600");
    for transport in TRANSPORTS {
        let server = start(transport, &[]);
        let r = exchange_all(
            &server,
            &[
                preflight(page),
                purchase(Some(page)),
                purchase(None),
                get("/nope", page),
                get("/api/v1/purchase", page),
                get("/api/v1/available", page),
            ],
        );
        assert_eq!(r[0].status, 204, "{transport}: {:?}", r[0]);
        assert_eq!(r[0].header("allow"), Some("POST, OPTIONS"));
        assert_eq!(
            cors_lines(&r[0]),
            [Some("*"), None, methods, echoed, age],
            "{transport}"
        );
        assert_eq!(r[1].status, 200, "{:?}", r[1]);
        assert_eq!(
            cors_lines(&r[1]),
            [Some("*"), None, None, None, None],
            "{transport}"
        );
        assert_eq!(
            cors_lines(&r[2]),
            [None; 5],
            "{transport}: no Origin, no CORS"
        );
        assert_eq!((r[3].status, r[4].status), (404, 405));
        assert_eq!(cors_lines(&r[3])[0], Some("*"));
        assert_eq!(cors_lines(&r[4])[0], Some("*"));
        assert_eq!(r[5].body, "{\"qty\":98}", "{transport}");

        let listed = format!("http://a.example,{page}");
        let server = start(transport, &["--cors-allow-origins", &listed]);
        let r = exchange_all(
            &server,
            &[
                preflight(page),
                purchase(Some(page)),
                preflight(other),
                purchase(Some(other)),
            ],
        );
        let vary = Some("Origin");
        assert_eq!(r[0].status, 204);
        assert_eq!(
            cors_lines(&r[0]),
            [Some(page), vary, methods, echoed, age],
            "{transport}"
        );
        assert_eq!(
            cors_lines(&r[1]),
            [Some(page), vary, None, None, None],
            "{transport}"
        );
        assert_eq!(r[2].status, 204);
        assert_eq!(
            cors_lines(&r[2]),
            [None, vary, None, None, None],
            "{transport}"
        );
        assert_eq!(
            cors_lines(&r[3]),
            [None, vary, None, None, None],
            "{transport}"
        );
        assert_eq!(
            r[3].status, 200,
            "the server sells; the browser keeps the answer"
        );

        let server = start(transport, &["--cors-allow-origins", "none"]);
        let r = exchange_all(&server, &[preflight(page), purchase(Some(page))]);
        assert_eq!(r[0].status, 204);
        assert_eq!(r[0].header("allow"), Some("POST, OPTIONS"));
        assert_eq!(cors_lines(&r[0]), [None; 5], "{transport}");
        assert_eq!(cors_lines(&r[1]), [None; 5], "{transport}");
    }
}

/// A second origin for the browser: serves `page` on `listener` to every request, until the test
/// ends.
fn serve_page(listener: TcpListener, page: String) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
}

/// Whether Debian's `chromium` is installed. Under CI (`CI` set, as `.ci/run` does) a missing
/// browser fails the test; elsewhere the test says SKIPPED on stderr and passes.
fn chromium_present() -> bool {
    support::have(
        std::path::Path::new("chromium"),
        ".ci/run installs it (apt-get install chromium)",
    )
}

/// Opens `url` in headless Chromium and returns the DOM after its scripts ran (virtual time lets
/// the page's fetch finish; a wall-clock bound kills a stuck browser).
fn dump_dom(url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("ticketd-chromium-{}", support::free_port()));
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut dom = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut dom)
        .unwrap();
    let _ = std::fs::remove_dir_all(profile);
    dom
}

/// The page: a preflighted `fetch` (POST with `Content-Type: application/json`) of a purchase at
/// `api`, its outcome written into the DOM.
fn purchase_page(api: &str) -> String {
    format!(
        r#"<!doctype html><html><body><p id="result">pending</p><script>
fetch("{api}/api/v1/purchase", {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: '{{"qty":1}}'}})
  .then(r => r.json())
  .then(j => {{ document.getElementById("result").textContent = "FETCHED " + JSON.stringify(j); }})
  .catch(e => {{ document.getElementById("result").textContent = "FAILED " + e; }});
</script></body></html>"#
    )
}

/// The stock left, asked without `Origin`.
fn available(server: &Server) -> String {
    support::get(server, "/api/v1/available").body
}

/// In a real browser: a page from another origin (another port) buys a ticket with a
/// preflighted `fetch` and reads the answer, under the default `*` and under a list naming the
/// page's origin; under a list without it, and with CORS off, the browser refuses the preflight,
/// the fetch fails and nothing is sold.
#[test]
fn a_browser_on_another_origin_buys_only_when_cors_allows_it() {
    if !chromium_present() {
        return;
    }
    enum Policy {
        Default,
        ListWithPage,
        ListWithoutPage,
        Off,
    }
    for (policy, allowed) in [
        (Policy::Default, true),
        (Policy::ListWithPage, true),
        (Policy::ListWithoutPage, false),
        (Policy::Off, false),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let page_origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let cors = match policy {
            Policy::Default => "*".to_string(),
            Policy::ListWithPage => format!("http://a.example,{page_origin}"),
            Policy::ListWithoutPage => "http://a.example,http://127.0.0.1:1".to_string(),
            Policy::Off => "none".to_string(),
        };
        let args = [
            "--shards",
            "1",
            "--initial-stock",
            "100",
            "--cors-allow-origins",
            &cors,
        ];
        let server = Server::start(&args);
        serve_page(
            listener,
            purchase_page(&format!("http://127.0.0.1:{}", server.port())),
        );
        let dom = dump_dom(&format!("{page_origin}/"));
        if allowed {
            let bought =
                r#"FETCHED {"success":true,"remaining":99,"message":"Purchase successful!"}"#;
            assert!(dom.contains(bought), "CORS {cors}: {dom}");
            assert_eq!(available(&server), "{\"qty\":99}", "CORS {cors}");
        } else {
            assert!(
                dom.contains("FAILED"),
                "CORS {cors}: the fetch must fail: {dom}"
            );
            assert_eq!(
                available(&server),
                "{\"qty\":100}",
                "CORS {cors}: nothing sold"
            );
        }
    }
}

//! Scenarios: which request each connection sends, and how each response is judged.
//!
//! A scenario is one or more *streams*, each a fixed request (its bytes written once, at start-up,
//! by proto-http's `write_request`) and a check. Connection `i` always sends the stream of lane
//! `i % lanes.len()`, so `mix` puts half the connections on each of its two streams, as the
//! original k6 script puts 50 VUs on each, and `--qty-mix 1,1,2` puts two thirds on qty 1.

use crate::cli::{header_pair, RunArgs, ScenarioName};
use crate::target::Target;
use crate::Error;

/// How a response is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Status 200.
    Status200,
    /// Status 200 and a JSON body with `"success": true` (`false` is the `success:false` error).
    Success,
    /// Status 200 and a readable `"success"`: in a flash sale "sold out" is an answer, not an
    /// error.
    Order,
}

/// The verdict on one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// As expected; `sold` when the server says it took the tickets (`"success": true`).
    Ok {
        /// The response said `"success": true`.
        sold: bool,
    },
    /// A status other than 200.
    Status(u16),
    /// Status 200 but `"success": false` (not enough stock) where success was expected.
    SuccessFalse,
    /// Status 200 and `"success": false` where that is an answer ([`Check::Order`]).
    SoldOut,
    /// Status 200 but no readable `"success"` field.
    Parse,
}

/// One request kind of a scenario.
#[derive(Clone, Debug)]
pub struct Stream {
    /// Its name in reports and file names: `available`, `purchase`, `reserve`, `custom`.
    pub name: String,
    /// The complete request, sent as is.
    pub request: Vec<u8>,
    /// How its responses are judged.
    pub check: Check,
    /// Tickets one successful response takes (0 for requests that sell nothing).
    pub qty: u64,
    /// With `--idempotency-keys`: where in `request` the [`KEY_DIGITS`] hex digits of its key's
    /// number are, rewritten for every request sent.
    pub key_at: Option<usize>,
}

/// Hex digits of the per-request part of an `Idempotency-Key` (a `u64`).
pub const KEY_DIGITS: usize = 16;

/// Numbers the keyed requests of this process: one add per request, shared by the threads.
static KEY_NUMBER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes the next key number into `request` at `at` (the [`KEY_DIGITS`] placeholder).
pub fn write_next_key(request: &mut [u8], at: usize) {
    let n = KEY_NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    write_hex(&mut request[at..at + KEY_DIGITS], n);
}

/// `n` as [`KEY_DIGITS`] lowercase hex digits into `out`.
fn write_hex(out: &mut [u8], n: u64) {
    for (i, b) in out.iter_mut().enumerate() {
        let shift = 4 * (KEY_DIGITS - 1 - i);
        *b = b"0123456789abcdef"[((n >> shift) & 0xf) as usize];
    }
}

/// The streams of a run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The scenario's name.
    pub scenario: ScenarioName,
    /// Its streams.
    pub streams: Vec<Stream>,
    /// Connection `i` sends `streams[lanes[i % lanes.len()]]`.
    pub lanes: Vec<usize>,
}

impl Plan {
    /// Builds the requests of `args.scenario` for `target`.
    pub fn new(args: &RunArgs, target: &Target) -> Result<Plan, Error> {
        let extra: Vec<(&str, &str)> = args
            .headers
            .iter()
            .map(|h| header_pair(h).ok_or_else(|| Error::Usage(format!("bad --header {h:?}"))))
            .collect::<Result<_, _>>()?;
        let available = || stream(target, &extra, "available", "GET", "/api/v1/available", "");
        // The run's tag keeps keys apart from earlier runs' (a server keeps keys for a day).
        let run_tag = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut tag = [0u8; KEY_DIGITS];
        write_hex(&mut tag, run_tag);
        let key_value = format!(
            "tb-{}-{}",
            std::str::from_utf8(&tag).expect("hex"),
            "0".repeat(KEY_DIGITS)
        );
        let keyed = args.idempotency_keys;
        // One stream per distinct quantity, named after it when there are several; the lanes
        // repeat the mix as given.
        let mut quantities = args.quantities();
        let lanes_given = quantities.clone();
        quantities.sort_unstable();
        quantities.dedup();
        let selling = |endpoint: &str, check: Check| -> (Vec<Stream>, Vec<usize>) {
            let path = format!("/api/v1/{endpoint}");
            let streams = quantities
                .iter()
                .map(|&qty| {
                    let name = match quantities.len() {
                        1 => endpoint.to_string(),
                        _ => format!("{endpoint}-q{qty}"),
                    };
                    let order = format!("{{\"qty\":{qty}}}");
                    let mut headers = extra.clone();
                    if keyed {
                        headers.push(("Idempotency-Key", key_value.as_str()));
                    }
                    let s = stream(target, &headers, &name, "POST", &path, &order);
                    // The placeholder is the last KEY_DIGITS of the key's value.
                    let key_at = keyed.then(|| {
                        find(&s.request, key_value.as_bytes()).expect("the key is in the request")
                            + key_value.len()
                            - KEY_DIGITS
                    });
                    Stream {
                        check,
                        qty,
                        key_at,
                        ..s
                    }
                })
                .collect();
            let lanes = lanes_given
                .iter()
                .map(|q| {
                    quantities
                        .binary_search(q)
                        .expect("every quantity has a stream")
                })
                .collect();
            (streams, lanes)
        };
        let (streams, lanes) = match args.scenario {
            ScenarioName::Purchase => selling("purchase", Check::Success),
            ScenarioName::Reserve => selling("reserve", Check::Success),
            ScenarioName::Flash => selling("purchase", Check::Order),
            ScenarioName::Available => (vec![available()], vec![0]),
            ScenarioName::Mix => {
                // --qty-mix is refused with mix, so this is one purchase stream.
                let (mut streams, _) = selling("purchase", Check::Success);
                streams.insert(0, available());
                (streams, vec![0, 1])
            }
            ScenarioName::Custom => {
                let path = args.path.as_deref().unwrap_or("/");
                let body = args.body.as_deref().unwrap_or("");
                let method = args.method.to_ascii_uppercase();
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(Error::Usage(format!("--method {method:?} is not a method")));
                }
                let custom = stream(target, &extra, "custom", &method, path, body);
                (vec![custom], vec![0])
            }
        };
        Ok(Plan {
            scenario: args.scenario,
            streams,
            lanes,
        })
    }

    /// The stream connection `id` sends.
    pub fn stream_of(&self, id: usize) -> usize {
        self.lanes[id % self.lanes.len()]
    }

    /// Whether any stream takes tickets (and so a stock check means something).
    pub fn sells(&self) -> bool {
        self.streams.iter().any(|s| s.qty > 0)
    }
}

/// A stream whose responses need only status 200.
fn stream(
    target: &Target,
    extra: &[(&str, &str)],
    name: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Stream {
    let mut headers: Vec<(&[u8], &[u8])> = extra
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    let has_type = extra
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() && !has_type {
        headers.push((b"Content-Type", b"application/json"));
    }
    let mut request = Vec::new();
    proto_http::write_request(
        &mut request,
        method.as_bytes(),
        target.path(path).as_bytes(),
        target.authority.as_bytes(),
        &headers,
        body.as_bytes(),
    );
    Stream {
        name: name.to_string(),
        request,
        check: Check::Status200,
        qty: 0,
        key_at: None,
    }
}

/// Judges a complete response.
pub fn judge(check: Check, status: u16, body: &[u8]) -> Verdict {
    if status != 200 {
        return Verdict::Status(status);
    }
    match check {
        Check::Status200 => Verdict::Ok { sold: false },
        Check::Success | Check::Order => match json_field(body, b"success") {
            Some(b"true") => Verdict::Ok { sold: true },
            Some(b"false") if check == Check::Order => Verdict::SoldOut,
            Some(b"false") => Verdict::SuccessFalse,
            _ => Verdict::Parse,
        },
    }
}

/// The raw value of a top-level-looking `"name": value` in a small JSON body: the bytes from the
/// value's start up to the next `,`, `}` or whitespace. A scan, not a parser: our servers' bodies
/// are flat objects, and a full parse per response would cost more than the request.
pub fn json_field<'b>(body: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
    let mut from = 0;
    while let Some(i) = find(&body[from..], name) {
        let start = from + i;
        let end = start + name.len();
        from = end;
        let quoted = start > 0 && body[start - 1] == b'"' && body.get(end) == Some(&b'"');
        if !quoted {
            continue;
        }
        let rest = skip_ws(&body[end + 1..]);
        let Some(rest) = rest.strip_prefix(b":") else {
            continue;
        };
        let rest = skip_ws(rest);
        let len = rest
            .iter()
            .position(|b| matches!(b, b',' | b'}' | b' ' | b'\t' | b'\r' | b'\n'))
            .unwrap_or(rest.len());
        return (len > 0).then(|| &rest[..len]);
    }
    None
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &b[n..]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn verdicts() {
        let table: &[(Check, u16, &[u8], Verdict)] = &[
            (
                Check::Status200,
                200,
                b"{\"qty\":5}",
                Verdict::Ok { sold: false },
            ),
            (Check::Status200, 503, b"", Verdict::Status(503)),
            (
                Check::Success,
                200,
                b"{\"success\":true,\"remaining\":1}",
                Verdict::Ok { sold: true },
            ),
            (
                Check::Success,
                200,
                b"{\"success\": true, \"remaining\": 1}",
                Verdict::Ok { sold: true },
            ),
            (
                Check::Success,
                200,
                b"{\"remaining\":0,\"success\":false}",
                Verdict::SuccessFalse,
            ),
            (
                Check::Success,
                200,
                b"{\"message\":\"success\",\"success\" :\n false}",
                Verdict::SuccessFalse,
            ),
            (Check::Success, 200, b"{\"remaining\":0}", Verdict::Parse),
            (Check::Success, 200, b"{\"success\":1}", Verdict::Parse),
            (Check::Success, 200, b"{\"success\":", Verdict::Parse),
            (Check::Success, 422, b"{}", Verdict::Status(422)),
            (
                Check::Order,
                200,
                b"{\"success\":false,\"remaining\":0}",
                Verdict::SoldOut,
            ),
            (
                Check::Order,
                200,
                b"{\"success\":true}",
                Verdict::Ok { sold: true },
            ),
            (Check::Order, 200, b"{}", Verdict::Parse),
            (Check::Order, 503, b"{}", Verdict::Status(503)),
        ];
        for &(check, status, body, want) in table {
            assert_eq!(
                judge(check, status, body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn fields() {
        assert_eq!(json_field(b"{\"qty\": 1000}", b"qty"), Some(&b"1000"[..]));
        assert_eq!(json_field(b"{\"qty\":7}", b"qty"), Some(&b"7"[..]));
        assert_eq!(json_field(b"{\"xqty\":7}", b"qty"), None);
        assert_eq!(json_field(b"{\"qty\":}", b"qty"), None);
    }

    fn plan(extra: &[&str]) -> Plan {
        let mut argv = vec!["ticket-bench", "run", "--url", "http://127.0.0.1:9/p"];
        argv.extend_from_slice(extra);
        let Command::Run(args) = Cli::parse_from(argv).command else {
            unreachable!()
        };
        Plan::new(&args, &Target::parse(&args.url).unwrap()).unwrap()
    }

    /// Every keyed request sent carries a key of its own, visible ASCII within the server's
    /// 255 bytes, in the place the plan named; unkeyed plans name none.
    #[test]
    fn each_keyed_request_gets_a_key_of_its_own() {
        assert!(plan(&["--scenario", "purchase"]).streams[0]
            .key_at
            .is_none());
        let p = plan(&[
            "--scenario",
            "flash",
            "--qty-mix",
            "1,2",
            "--idempotency-keys",
        ]);
        let mut keys = std::collections::HashSet::new();
        for s in &p.streams {
            let at = s.key_at.expect("a keyed stream");
            for _ in 0..100 {
                let mut request = s.request.clone();
                write_next_key(&mut request, at);
                let text = String::from_utf8(request).unwrap();
                let line = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Idempotency-Key: "))
                    .expect("the header");
                assert!(line.len() <= 255 && line.bytes().all(|b| b.is_ascii_graphic()));
                assert!(line.starts_with("tb-"), "{line}");
                assert!(keys.insert(line.to_string()), "{line} twice");
            }
        }
        assert_eq!(keys.len(), 200);
    }

    #[test]
    fn requests_on_the_wire() {
        let p = plan(&["--scenario", "mix", "--qty", "3"]);
        assert_eq!(p.streams.len(), 2);
        assert_eq!(p.stream_of(0), 0);
        assert_eq!(p.stream_of(3), 1);
        assert!(p.sells());
        assert_eq!(
            p.streams[0].request,
            b"GET /p/api/v1/available HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n"
        );
        assert_eq!(
            p.streams[1].request,
            b"POST /p/api/v1/purchase HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Type: application/json\r\n\
              Content-Length: 9\r\n\r\n{\"qty\":3}"
        );
        let p = plan(&[
            "--scenario",
            "custom",
            "--method",
            "put",
            "--path",
            "/x",
            "--body",
            "hi",
            "-H",
            "content-type: text/plain",
        ]);
        assert!(!p.sells());
        let flash = plan(&["--scenario", "flash", "--qty-mix", "2,1,2"]);
        let names: Vec<&str> = flash.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["purchase-q1", "purchase-q2"]);
        assert_eq!(flash.streams[1].qty, 2);
        assert_eq!(flash.streams[1].check, Check::Order);
        let lanes: Vec<usize> = (0..4).map(|i| flash.stream_of(i)).collect();
        assert_eq!(lanes, [1, 0, 1, 1]);
        assert!(flash.streams[0].request.ends_with(b"\r\n\r\n{\"qty\":1}"));
        assert_eq!(plan(&["--scenario", "flash"]).streams[0].name, "purchase");
        assert_eq!(
            p.streams[0].request,
            b"PUT /p/x HTTP/1.1\r\nHost: 127.0.0.1:9\r\ncontent-type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
    }
}

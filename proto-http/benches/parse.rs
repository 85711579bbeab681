//! Our request parser against httparse on the same realistic requests.
//!
//! Run: `cargo bench -p proto-http --bench parse`. Throughput is in bytes, so the two columns read
//! as GiB/s of head parsed. Both sides parse the head and find the body framing: httparse does
//! not interpret Content-Length, so its side scans the headers for it, as every httparse user must.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use proto_http::{parse_request, BodyFraming, Limits, Status, EMPTY_HEADER};

/// The request k6 and wrk send for `GET /api/v1/available`.
const WRK_GET: &[u8] = b"GET /api/v1/available HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n";

/// k6's purchase POST (k6 adds its User-Agent and the JSON content type the script sets).
const K6_PURCHASE: &[u8] = b"POST /api/v1/purchase HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\
User-Agent: k6/1.1.0 (https://k6.io/)\r\nContent-Length: 9\r\nContent-Type: application/json\r\n\
Accept-Encoding: gzip, deflate\r\n\r\n{\"qty\":1}";

/// A browser-like request with twelve headers.
const BROWSER: &[u8] = b"GET /api/v1/available?from=dashboard HTTP/1.1\r\n\
Host: tickets.example.com\r\n\
Connection: keep-alive\r\n\
sec-ch-ua: \"Chromium\";v=\"156\", \"Not.A/Brand\";v=\"24\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Accept: application/json, text/plain, */*\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: cors\r\n\
Referer: https://tickets.example.com/dashboard\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\r\n";

fn ours(buf: &[u8]) -> usize {
    let mut headers = [EMPTY_HEADER; 32];
    match parse_request(buf, &mut headers, &Limits::default()) {
        Ok(Status::Complete(head)) => {
            let body = match head.body {
                BodyFraming::Length(n) => n as usize,
                _ => 0,
            };
            head.head_len + body + head.headers.len()
        }
        _ => 0,
    }
}

fn theirs(buf: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            let body = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            head_len + body + req.headers.len()
        }
        _ => 0,
    }
}

fn bench(c: &mut Criterion) {
    for (name, input) in [
        ("wrk_get", WRK_GET),
        ("k6_purchase", K6_PURCHASE),
        ("browser_12_headers", BROWSER),
    ] {
        assert_eq!(
            ours(input),
            theirs(input),
            "{name}: both parsers must read the same request"
        );
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function("proto_http", |b| b.iter(|| ours(black_box(input))));
        group.bench_function("httparse", |b| b.iter(|| theirs(black_box(input))));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

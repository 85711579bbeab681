//! Fuzz target: `parse_request` on arbitrary bytes never panics, under the default limits and
//! under small ones. A complete head lies within the input and the head limit, and re-parsing
//! exactly `input[..head_len]` gives the same head; `Partial` only below the head limit; the body
//! framing respects the body limit, and a chunked body after the head decodes without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto_http::{parse_request, BodyFraming, ChunkedDecoder, Limits, Status, EMPTY_HEADER};

/// Small limits, so that every limit is within reach of short inputs.
const SMALL: Limits = Limits {
    head_bytes_max: 256,
    target_bytes_max: 32,
    body_bytes_max: 64,
    chunk_ext_bytes_max: 8,
    trailer_bytes_max: 32,
};

/// Header slots: few enough that `TooManyHeaders` is reachable.
const SLOTS: usize = 8;

fn check(data: &[u8], limits: &Limits) {
    let mut headers = [EMPTY_HEADER; SLOTS];
    match parse_request(data, &mut headers, limits) {
        Ok(Status::Complete(head)) => {
            assert!(head.head_len <= data.len());
            assert!(head.head_len <= limits.head_bytes_max);
            assert!(head.target.len() <= limits.target_bytes_max);
            assert!(!head.target.is_empty() && !head.method.as_bytes().is_empty());
            let _ = head.path();
            let mut again = [EMPTY_HEADER; SLOTS];
            let prefix = parse_request(&data[..head.head_len], &mut again, limits);
            assert_eq!(prefix, Ok(Status::Complete(head)));
            match head.body {
                BodyFraming::None => {}
                BodyFraming::Length(n) => assert!(n > 0 && n <= limits.body_bytes_max),
                BodyFraming::Chunked => {
                    let rest = &data[head.head_len..];
                    let mut out = Vec::new();
                    if let Ok(d) = ChunkedDecoder::new(limits).decode(rest, &mut out) {
                        assert!(d.consumed <= rest.len());
                        assert!(out.len() as u64 <= limits.body_bytes_max);
                    }
                }
                BodyFraming::UntilClose => panic!("a request body never runs until close"),
            }
        }
        Ok(Status::Partial) => assert!(data.len() < limits.head_bytes_max),
        Err(e) => assert!((400..=505).contains(&e.status())),
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, &Limits::default());
    check(data, &SMALL);
});

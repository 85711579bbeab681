//! Fuzz target: the result of parsing a head does not depend on how its bytes arrive. For every
//! prefix of the input (so for every two-way split, and for byte-at-a-time feeding, which sees
//! each prefix in turn) the parser answers `Partial` or exactly what it answers for the whole
//! input: the same complete head once the prefix holds it (and `Partial` before), or the same
//! error. Checked for requests and for responses.
//!
//! The head limit stays at its 8 KiB default, above libFuzzer's default `-max_len` of 4096, so
//! every input is within it: bytes beyond the head limit are the subject of the vector test
//! `errors_do_not_depend_on_bytes_beyond_the_head_limit`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto_http::{parse_request, parse_response, Limits, Status, EMPTY_HEADER};

/// Default head limit, small target limit so that `TargetTooLong` is reachable.
const LIMITS: Limits = Limits {
    head_bytes_max: Limits::HEAD_BYTES_MAX,
    target_bytes_max: 64,
    body_bytes_max: 1024,
    chunk_ext_bytes_max: 8,
    trailer_bytes_max: 32,
};

/// Header slots: few enough that `TooManyHeaders` is reachable.
const SLOTS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let mut headers = [EMPTY_HEADER; SLOTS];
    let whole = parse_request(data, &mut headers, &LIMITS);
    for cut in 0..data.len() {
        let mut prefix_headers = [EMPTY_HEADER; SLOTS];
        let prefix = parse_request(&data[..cut], &mut prefix_headers, &LIMITS);
        match &whole {
            Ok(Status::Complete(head)) if cut < head.head_len => {
                assert_eq!(prefix, Ok(Status::Partial), "request prefix {cut}")
            }
            Ok(Status::Complete(_)) | Ok(Status::Partial) => {
                assert_eq!(prefix, whole, "request prefix {cut}")
            }
            Err(_) => assert!(
                prefix == Ok(Status::Partial) || prefix == whole,
                "request prefix {cut}: {prefix:?} vs whole {whole:?}"
            ),
        }
    }

    let mut headers = [EMPTY_HEADER; SLOTS];
    let whole = parse_response(data, &mut headers, &LIMITS);
    for cut in 0..data.len() {
        let mut prefix_headers = [EMPTY_HEADER; SLOTS];
        let prefix = parse_response(&data[..cut], &mut prefix_headers, &LIMITS);
        match &whole {
            Ok(Status::Complete(head)) if cut < head.head_len => {
                assert_eq!(prefix, Ok(Status::Partial), "response prefix {cut}")
            }
            Ok(Status::Complete(_)) | Ok(Status::Partial) => {
                assert_eq!(prefix, whole, "response prefix {cut}")
            }
            Err(_) => assert!(
                prefix == Ok(Status::Partial) || prefix == whole,
                "response prefix {cut}: {prefix:?} vs whole {whole:?}"
            ),
        }
    }
});

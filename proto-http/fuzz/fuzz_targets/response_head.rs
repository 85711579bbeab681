//! Fuzz target: `parse_response` on arbitrary bytes never panics. A complete head lies within the
//! input and the head limit, re-parsing exactly `input[..head_len]` gives the same head, and
//! `Partial` is only returned below the head limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto_http::{parse_response, Limits, Status, EMPTY_HEADER};

/// Small limits, so that the head limit is within reach of short inputs.
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
    match parse_response(data, &mut headers, limits) {
        Ok(Status::Complete(head)) => {
            assert!(head.head_len <= data.len());
            assert!(head.head_len <= limits.head_bytes_max);
            assert!((100..=999).contains(&head.status));
            let mut again = [EMPTY_HEADER; SLOTS];
            let prefix = parse_response(&data[..head.head_len], &mut again, limits);
            assert_eq!(prefix, Ok(Status::Complete(head)));
        }
        Ok(Status::Partial) => assert!(data.len() < limits.head_bytes_max),
        Err(e) => assert!((400..=505).contains(&e.status())),
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, &Limits::default());
    check(data, &SMALL);
});

//! Fuzz target: `ChunkedDecoder` on arbitrary bytes never panics, never reports more consumed
//! bytes than it was given, consumes everything it is given until the body ends, and gives the
//! same outcome (error, or body and end position) whether the input is fed whole, split in two at
//! a point chosen by the data, or one byte at a time.
//!
//! Input layout: byte 0 picks the limits (default or small), bytes 1-2 the split point, the rest
//! is the chunked body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto_http::{ChunkedDecoder, Error, Limits};

/// Small limits, so that the body, extension and trailer bounds are within reach.
const SMALL: Limits = Limits {
    head_bytes_max: 256,
    target_bytes_max: 32,
    body_bytes_max: 64,
    chunk_ext_bytes_max: 8,
    trailer_bytes_max: 32,
};

/// What feeding a body in pieces came to.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// The error, if the body was rejected.
    error: Option<Error>,
    /// Data decoded before the end or the error.
    out: Vec<u8>,
    /// Bytes consumed (up to the end of the body; up to the failing piece on error).
    consumed: Option<usize>,
    /// The body ended.
    done: bool,
}

fn feed<'a>(pieces: impl Iterator<Item = &'a [u8]>, limits: &Limits) -> Outcome {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut out = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        match decoder.decode(piece, &mut out) {
            Err(e) => {
                return Outcome {
                    error: Some(e),
                    out,
                    consumed: None,
                    done: false,
                }
            }
            Ok(d) => {
                assert!(d.consumed <= piece.len());
                assert_eq!(d.done, decoder.is_done());
                consumed += d.consumed;
                if d.done {
                    assert_eq!(decoder.body_len(), out.len() as u64);
                    assert!(decoder.body_len() <= limits.body_bytes_max);
                    // A finished decoder takes nothing more.
                    let again = decoder.decode(b"0\r\n\r\n", &mut out).unwrap();
                    assert_eq!((again.consumed, again.done), (0, true));
                    return Outcome {
                        error: None,
                        out,
                        consumed: Some(consumed),
                        done: true,
                    };
                }
                assert_eq!(
                    d.consumed,
                    piece.len(),
                    "an unfinished body takes every byte"
                );
            }
        }
    }
    Outcome {
        error: None,
        out,
        consumed: Some(consumed),
        done: false,
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, lo, hi, body @ ..] = data else {
        return;
    };
    let limits = if selector & 1 == 0 {
        Limits::default()
    } else {
        SMALL
    };
    let split = usize::from(u16::from_le_bytes([*lo, *hi])) % (body.len() + 1);
    let whole = feed(std::iter::once(body), &limits);
    let (a, b) = body.split_at(split);
    let two = feed([a, b].into_iter(), &limits);
    let bytewise = feed(body.chunks(1), &limits);
    assert_eq!(two, whole, "split at {split}");
    assert_eq!(bytewise, whole, "byte at a time");
});

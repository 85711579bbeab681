//! Reading the vacancy service's answers: a final response's status and body, read by what was
//! asked, become an [`Outcome`]. Only the exact shapes the vacancy service writes are read
//! (through the shared [`crate::json`] scanner); anything else is an unusable answer.

use super::{FailKind, Outcome, Request};
use crate::json::Cursor;

/// Maps a final response to `request` to an outcome.
pub(super) fn outcome(request: Request, status: u16, body: &[u8]) -> Outcome {
    if status != 200 {
        let keyed = matches!(request, Request::KeyedReserve { .. });
        let code = |code: &[u8]| body.windows(code.len()).any(|w| w == code);
        let kind = match status {
            409 if keyed && code(b"\"idempotency_key_in_flight\"") => FailKind::KeyInFlight,
            422 if keyed && code(b"\"idempotency_key_reused\"") => FailKind::KeyReused,
            _ => FailKind::Status(status),
        };
        return Outcome::Failed(kind);
    }
    let read = match request {
        Request::Reserve { .. } | Request::KeyedReserve { .. } => {
            reserve_reply(body).map(|(success, remaining)| {
                if success {
                    Outcome::Reserved { remaining }
                } else {
                    Outcome::Insufficient { remaining }
                }
            })
        }
        Request::Available => available_reply(body).map(|qty| Outcome::Available { qty }),
        // A 200 that says `"status": "healthy"`: a stray server answering 200 to anything is
        // not our vacancy service.
        Request::Health => health_reply(body).then_some(Outcome::Healthy),
    };
    read.unwrap_or(Outcome::Failed(FailKind::BadBody))
}

/// True when the body holds the member `"status": "healthy"` (with optional JSON whitespace), as
/// the vacancy service's health reply does, whatever else it holds.
fn health_reply(body: &[u8]) -> bool {
    let key = b"\"status\"";
    (0..body.len()).any(|at| {
        let mut s = Cursor::at(body, at);
        s.rest().starts_with(key)
            && s.token(key).is_some()
            && s.token(b":").is_some()
            && s.token(b"\"healthy\"").is_some()
    })
}

/// Reads `{"qty":N}` with optional JSON whitespace, the vacancy service's available reply.
fn available_reply(body: &[u8]) -> Option<u64> {
    let mut s = Cursor::new(body);
    s.token(b"{")?;
    s.token(b"\"qty\"")?;
    s.token(b":")?;
    let qty = s.integer()?;
    s.token(b"}")?;
    s.finish().then_some(qty)
}

/// Reads `{"success":bool,"remaining":N` and then `,...}` or `}`, with optional JSON whitespace
/// between tokens: the shape the vacancy service writes (routes.rs) and the contract documents.
/// The two members must come first and in this order; what follows them is only checked to end
/// the object. Anything else is `None`, which the caller treats as an unknown outcome.
fn reserve_reply(body: &[u8]) -> Option<(bool, u64)> {
    let mut s = Cursor::new(body);
    s.token(b"{")?;
    s.token(b"\"success\"")?;
    s.token(b":")?;
    let success = if s.token(b"true").is_some() {
        true
    } else {
        s.token(b"false")?;
        false
    };
    s.token(b",")?;
    s.token(b"\"remaining\"")?;
    s.token(b":")?;
    let remaining = s.integer()?;
    // The object ends here, or goes on with more members and ends with the body.
    let mut end = s;
    if end.token(b"}").is_some() && end.finish() {
        return Some((success, remaining));
    }
    s.token(b",")?;
    body.trim_ascii_end()
        .ends_with(b"}")
        .then_some((success, remaining))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_bodies() {
        type Reply = Option<(bool, u64)>;
        let table: &[(&[u8], Reply)] = &[
            (b"{\"success\":true,\"remaining\":0}", Some((true, 0))),
            (
                b" { \"success\" : false , \"remaining\" : 12 , \"message\":\"x\" } \n",
                Some((false, 12)),
            ),
            (
                b"{\"success\":true,\"remaining\":18446744073709551615}",
                Some((true, u64::MAX)),
            ),
            (
                b"{\"success\":true,\"remaining\":18446744073709551616}",
                None,
            ),
            (b"{\"success\":true,\"remaining\":01}", None),
            (b"{\"success\":true,\"remaining\":1.0}", None),
            (b"{\"success\":true,\"remaining\":-1}", None),
            (b"{\"success\":1,\"remaining\":1}", None),
            (b"{\"remaining\":1,\"success\":true}", None),
            (b"{\"success\":true,\"remaining\":1", None),
            (b"{\"success\":true,\"remaining\":1,", None),
            (b"{\"success\":true,\"remaining\":1}x", None),
            (b"", None),
        ];
        for &(body, want) in table {
            assert_eq!(
                reserve_reply(body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn health_bodies() {
        let table: &[(&[u8], bool)] = &[
            (b"{\"status\":\"healthy\",\"service\":\"vacancy\"}", true),
            (b"{\"service\":\"vacancy\", \"status\" : \"healthy\"}", true),
            (b"{\"status\":\"unhealthy\"}", false),
            (b"{}", false),
            (b"hello", false),
            (b"", false),
        ];
        for &(body, want) in table {
            assert_eq!(
                health_reply(body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn available_bodies() {
        let table: &[(&[u8], Option<u64>)] = &[
            (b"{\"qty\":0}", Some(0)),
            (b" { \"qty\" : 17 } \n", Some(17)),
            (b"{\"qty\":18446744073709551615}", Some(u64::MAX)),
            (b"{\"qty\":18446744073709551616}", None),
            (b"{\"qty\":-1}", None),
            (b"{\"qty\":1.5}", None),
            (b"{\"qty\":1,\"x\":2}", None),
            (b"{\"qty\":1}}", None),
            (b"", None),
        ];
        for &(body, want) in table {
            assert_eq!(
                available_reply(body),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

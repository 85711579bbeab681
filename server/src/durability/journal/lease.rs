//! The lease record (issue 18): what a cluster node's coordinator journals of its escrow lease,
//! and how many tickets moved between the lease and the node's slices this epoch.
//!
//! ```text
//! lease payload (LEASE_PAYLOAD_BYTES = 130), all integers u64 but for the u8 flags:
//!   epoch, seq, window, lease, unreported, answered, fenced u8,
//!   intent u8 (0 none, 1 acquire, 2 report, 3 return, 4 answer, 5 close, 6 rejoin),
//!   intent.seq, intent.epoch, intent.window, a, b, c (the op's fields in declaration order,
//!   close's `insist` as 0 or 1, unused ones 0),
//!   placed, collected, fed
//! ```
//! The record replaces the one before it (the last one is the lease); the snapshot carries it as
//! its tail, so a compaction or a new epoch keeps it. `placed` and `collected` move tickets into
//! and out of the coordinator's slice: the ledger applies their growth.

use super::JournalError;
use crate::cluster::lease::Journal;
use crate::cluster::ledger::{Op, Request};

/// The payload's bytes (see the module doc).
pub const LEASE_PAYLOAD_BYTES: usize = 8 * 6 + 2 + 8 * 6 + 8 * 3;

/// A node's lease as its coordinator's journal holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseState {
    /// The lease's own journal (`cluster::lease`).
    pub journal: Journal,
    /// Tickets put from the lease into the coordinator's slice this epoch.
    pub placed: u64,
    /// Tickets taken from the coordinator's slice back into the lease this epoch.
    pub collected: u64,
    /// Sales of the node this epoch (every shard's) already counted in `journal`.
    pub fed: u64,
}

impl LeaseState {
    /// Appends the payload.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let j = &self.journal;
        for n in [j.epoch, j.seq, j.window, j.lease, j.unreported, j.answered] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.push(u8::from(j.fenced));
        let (tag, request) = match j.intent {
            // No request in flight: its fields are written as zeros.
            None => (0, NO_REQUEST),
            Some(r) => (op_tag(r.op), r),
        };
        out.push(tag);
        let [a, b, c] = op_fields(request.op);
        for n in [request.seq, request.epoch, request.window, a, b, c] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for n in [self.placed, self.collected, self.fed] {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }

    /// Reads a payload of [`LEASE_PAYLOAD_BYTES`]; `None` if a flag or tag is not one.
    pub(crate) fn decode(p: &[u8; LEASE_PAYLOAD_BYTES]) -> Option<LeaseState> {
        let mut at = 0;
        let mut u64_ = || {
            let n = u64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"));
            at += 8;
            n
        };
        let [epoch, seq, window, lease, unreported, answered] = [(); 6].map(|()| u64_());
        let fenced = match p[48] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let tag = p[49];
        let mut at = 50;
        let mut u64_ = || {
            let n = u64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"));
            at += 8;
            n
        };
        let [r_seq, r_epoch, r_window, a, b, c] = [(); 6].map(|()| u64_());
        let [placed, collected, fed] = [(); 3].map(|()| u64_());
        let op = match tag {
            0 => None,
            1 => Some(Op::Acquire { want: a }),
            2 => Some(Op::Report { sold: a }),
            3 => Some(Op::Return { tickets: a }),
            4 => Some(Op::Answer {
                round: a,
                tickets: b,
                waiting: c,
            }),
            5 => Some(Op::Close {
                round: a,
                want: b,
                insist: match c {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
            }),
            6 => Some(Op::Rejoin { sold: a }),
            _ => return None,
        };
        let intent = op.map(|op| Request {
            op,
            seq: r_seq,
            epoch: r_epoch,
            window: r_window,
        });
        Some(LeaseState {
            journal: Journal {
                epoch,
                seq,
                window,
                lease,
                unreported,
                intent,
                fenced,
                answered,
            },
            placed,
            collected,
            fed,
        })
    }
}

/// The lease a new epoch starts with: the last one, with the epoch's sales (`epoch_sold`, every
/// shard's) it had not counted counted, and nothing placed or collected yet; `Err` when the
/// sales are fewer than it counted, or more than it held (a corrupt journal).
pub(super) fn carry(
    last: Option<&LeaseState>,
    epoch_sold: u64,
) -> Result<Option<LeaseState>, JournalError> {
    let Some(state) = last else {
        return Ok(None);
    };
    let unbalanced = || JournalError::LeaseUnbalanced {
        sold: epoch_sold,
        fed: state.fed,
        lease: state.journal.lease,
    };
    let mut journal = state.journal;
    let unfed = epoch_sold.checked_sub(state.fed).ok_or_else(unbalanced)?;
    journal.count_sales(unfed).ok_or_else(unbalanced)?;
    Ok(Some(LeaseState {
        journal,
        ..LeaseState::default()
    }))
}

/// The fields written for "no request in flight" (all zero).
const NO_REQUEST: Request = Request {
    op: Op::Acquire { want: 0 },
    seq: 0,
    epoch: 0,
    window: 0,
};

fn op_tag(op: Op) -> u8 {
    match op {
        Op::Acquire { .. } => 1,
        Op::Report { .. } => 2,
        Op::Return { .. } => 3,
        Op::Answer { .. } => 4,
        Op::Close { .. } => 5,
        Op::Rejoin { .. } => 6,
    }
}

fn op_fields(op: Op) -> [u64; 3] {
    match op {
        Op::Acquire { want } => [want, 0, 0],
        Op::Report { sold } | Op::Rejoin { sold } => [sold, 0, 0],
        Op::Return { tickets } => [tickets, 0, 0],
        Op::Answer {
            round,
            tickets,
            waiting,
        } => [round, tickets, waiting],
        Op::Close {
            round,
            want,
            insist,
        } => [round, want, u64::from(insist)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(state: LeaseState) {
        let mut out = Vec::new();
        state.encode(&mut out);
        assert_eq!(out.len(), LEASE_PAYLOAD_BYTES);
        let bytes: [u8; LEASE_PAYLOAD_BYTES] = out.try_into().expect("length checked");
        assert_eq!(LeaseState::decode(&bytes), Some(state));
    }

    #[test]
    fn every_intent_survives_encoding() {
        let ops = [
            Op::Acquire { want: 17 },
            Op::Report { sold: 3 },
            Op::Return { tickets: u64::MAX },
            Op::Answer {
                round: 4,
                tickets: 5,
                waiting: 6,
            },
            Op::Close {
                round: 7,
                want: 8,
                insist: true,
            },
            Op::Close {
                round: 7,
                want: 0,
                insist: false,
            },
            Op::Rejoin { sold: 9 },
        ];
        let mut state = LeaseState {
            journal: Journal {
                epoch: 2,
                seq: 11,
                window: 1000,
                lease: 40,
                unreported: 12,
                intent: None,
                fenced: true,
                answered: 3,
            },
            placed: 100,
            collected: 20,
            fed: 70,
        };
        round_trip(state);
        for (i, op) in ops.into_iter().enumerate() {
            state.journal.intent = Some(Request {
                op,
                seq: 12 + i as u64,
                epoch: 2,
                window: 1000,
            });
            round_trip(state);
        }
    }

    #[test]
    fn bad_flags_and_tags_are_refused() {
        let mut out = Vec::new();
        LeaseState::default().encode(&mut out);
        let good: [u8; LEASE_PAYLOAD_BYTES] = out.try_into().expect("length");
        for (at, bad) in [(48, 2), (49, 7)] {
            let mut bytes = good;
            bytes[at] = bad;
            assert_eq!(LeaseState::decode(&bytes), None, "byte {at} = {bad}");
        }
        // Close's insist is 0 or 1.
        let mut bytes = good;
        bytes[49] = 5;
        bytes[50 + 40] = 2;
        assert_eq!(LeaseState::decode(&bytes), None);
    }
}

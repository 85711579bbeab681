//! What the io_uring transport counts of its own moves, so that an operator can see from `GET /`
//! and `/metrics` what a request may have waited for (issue 14): a provided-buffer ring that ran
//! dry, a receive armed again, the driver parked and what woke it, the driver giving way to
//! glommio, a response queued behind a send still in flight. The glommio-sockets transport leaves
//! them at zero.

use std::fmt::Write;

/// The io_uring driver's counters for one shard. Every field only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportCounters {
    /// Multishot receives that ended with ENOBUFS: data came while the shard's provided-buffer
    /// ring was empty. The data waited in the socket for a re-arm.
    pub recv_enobufs: u64,
    /// Multishot receives armed again on an open connection after one ended (ENOBUFS, the
    /// backpressure cancel, or the kernel ending it); the first arm of a connection is not
    /// counted.
    pub recv_rearms: u64,
    /// Times the driver parked inside glommio with nothing to do.
    pub parks: u64,
    /// Parks woken by the driver's eventfd (a completion, or a bell from another task).
    pub park_wakes: u64,
    /// Parks ended by the sweep timer instead of a wake.
    pub park_timeouts: u64,
    /// Parks ended by the sweep timer while completions were already waiting in the ring: a wake
    /// that did not come, and requests that waited for the timer. Counted only for parks of a
    /// millisecond or more (a completion landing as a sweep falls due is a race, not a stall),
    /// and after the completions still queued as task work are posted. Expected to stay 0.
    pub late_wakes: u64,
    /// Times the busy driver gave way to glommio's reactor and other tasks.
    pub yields: u64,
    /// Of those, the ones that got the driver back only after more than a millisecond: glommio's
    /// own tasks (or another process on the CPU) held every connection that long.
    pub slow_yields: u64,
    /// Responses made while the connection's previous send was still in flight; they leave when
    /// it completes.
    pub sends_behind: u64,
}

impl TransportCounters {
    /// Every counter with its name, in the order `GET /` shows them.
    pub fn fields(&self) -> [(&'static str, u64); 9] {
        [
            ("recv_enobufs", self.recv_enobufs),
            ("recv_rearms", self.recv_rearms),
            ("parks", self.parks),
            ("park_wakes", self.park_wakes),
            ("park_timeouts", self.park_timeouts),
            ("late_wakes", self.late_wakes),
            ("yields", self.yields),
            ("slow_yields", self.slow_yields),
            ("sends_behind", self.sends_behind),
        ]
    }

    /// Writes `"transport":{...}` (the JSON member `GET /` carries inside `counters`).
    pub fn write_json(&self, o: &mut Vec<u8>) {
        let mut s = String::from("\"transport\":{");
        for (i, (name, n)) in self.fields().iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(s, "{comma}\"{name}\":{n}");
        }
        s.push('}');
        o.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_member_names_every_counter_once() {
        let c = TransportCounters {
            recv_enobufs: 1,
            recv_rearms: 2,
            parks: 3,
            park_wakes: 4,
            park_timeouts: 5,
            late_wakes: 6,
            yields: 7,
            slow_yields: 8,
            sends_behind: 9,
        };
        let mut o = Vec::new();
        c.write_json(&mut o);
        let text = format!("{{{}}}", String::from_utf8(o).unwrap());
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let members = v["transport"].as_object().unwrap();
        assert_eq!(members.len(), c.fields().len());
        for (name, n) in c.fields() {
            assert_eq!(members[name], n, "{name}");
        }
    }
}

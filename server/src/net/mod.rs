//! Bytes between sockets and connections: the sans-IO [`connection::Connection`] state machine,
//! and the two transports that drive it for a shard's core: the shard's own io_uring ([`uring`],
//! the default) and glommio's sockets ([`sockets`], the fallback). They are an enum picked at
//! start-up ([`Transport`]); both feed the same core and carry out its effects, so they cannot
//! differ in a rule. [`admin`] serves the admin listener on the coordinator with glommio's
//! sockets, whichever transport the public port uses.

pub mod admin;
pub mod connection;
pub mod sockets;
pub mod uring;

use std::time::Duration;

use crate::process::startup::StartError;

/// After a response that closes the connection, unread input is drained for at most this long
/// before closing, so that a client still sending does not get a reset that destroys our response
/// in flight (nginx's lingering close does the same).
pub const LINGER: Duration = Duration::from_millis(500);

/// At most this much unread input is drained during the linger.
pub const LINGER_BYTES_MAX: usize = 64 * 1024;

/// The environment variable that picks the transport (until it becomes a configuration flag).
pub const TRANSPORT_ENV: &str = "TICKETD_TRANSPORT";

/// How a shard moves bytes between its sockets and its connections. Both run the same
/// [`Connection`] state machine; they differ only in who calls the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The shard's own io_uring with cooperative task running ([`crate::net::uring`]).
    Uring,
    /// glommio's `TcpStream`, one task per connection.
    Glommio,
}

impl Transport {
    /// The transport `TICKETD_TRANSPORT` asks for (uring when unset), or uring's fallback when
    /// this kernel cannot run it.
    pub fn select() -> Result<Transport, StartError> {
        let asked = match std::env::var(TRANSPORT_ENV) {
            Err(std::env::VarError::NotPresent) => Transport::Uring,
            Ok(value) => Transport::parse(&value).ok_or_else(|| {
                StartError::Executor(format!(
                    "{TRANSPORT_ENV}={value:?} is not a transport; use uring or glommio"
                ))
            })?,
            Err(std::env::VarError::NotUnicode(value)) => {
                return Err(StartError::Executor(format!(
                    "{TRANSPORT_ENV}={value:?} is not a transport; use uring or glommio"
                )))
            }
        };
        if asked == Transport::Uring {
            if let Err(missing) = uring::probe() {
                tracing::warn!(
                    reason = %missing,
                    "the uring transport cannot run on this kernel; using the glommio transport"
                );
                return Ok(Transport::Glommio);
            }
        }
        Ok(asked)
    }

    /// `uring` or `glommio`.
    pub fn parse(value: &str) -> Option<Transport> {
        match value.trim() {
            "uring" => Some(Transport::Uring),
            "glommio" => Some(Transport::Glommio),
            _ => None,
        }
    }

    /// The name, as `parse` reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Uring => "uring",
            Transport::Glommio => "glommio",
        }
    }
}

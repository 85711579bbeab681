//! Bytes between sockets and connections: the sans-IO [`connection::Connection`] state machine,
//! and the io_uring transport that drives it (the glommio-socket fallback lives in `shard`).

pub mod connection;
pub mod uring;

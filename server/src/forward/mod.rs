//! The ticket tier's way to the vacancy service: the sans-IO upstream connection and pool
//! ([`upstream`]), and the glommio tasks that drive them ([`forwarder`]).

pub mod forwarder;
pub mod upstream;

//! Process plumbing: the checks that fail a start with one clear line, signals, systemd's
//! sd_notify, and logging. Nothing here knows a request or a ticket.

pub mod logging;
pub mod notify;
pub mod signals;
pub mod startup;

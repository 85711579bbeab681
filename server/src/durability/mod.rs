//! What makes a sale outlive the process: the journal (format, buffer, files, recovery), its pure
//! run-time side ([`commits`]: what is appended, durable, failed, and when a group commit may
//! start), and the aligned buffer the uring driver writes batches from. Nothing here knows a
//! shard, a socket or a task.

pub mod aligned;
pub mod commits;
pub mod journal;

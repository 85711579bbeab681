//! What makes a sale outlive the process: the journal (format, buffer, files, recovery) and the
//! committer that writes a shard's group commits at run time.

pub mod committer;
pub mod journal;

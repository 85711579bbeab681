//! Tools the `ticketd` binary runs instead of serving, each a subcommand parsed by `config`:
//! - [`journal`]: `ticketd journal inspect` and `ticketd journal reset`, the data directory
//!   offline (the journal's own code reads and writes it; this module only prints).
//! - [`cluster`]: `ticketd cluster init` and `ticketd cluster status`, a sale's escrow ledger in
//!   etcd (with `--features cluster`).

pub mod cluster;
pub mod journal;

use crate::config::{Config, Tool};

/// Runs `tool`; returns the process's exit status.
pub fn run(config: &Config, tool: &Tool) -> i32 {
    match tool {
        Tool::Journal(tool) => journal::run(config, *tool),
        Tool::Cluster(args) => cluster::run(config, args),
    }
}

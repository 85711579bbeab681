//! Tools the `ticketd` binary runs instead of serving, each a subcommand parsed by `config`:
//! - [`journal`]: `ticketd journal inspect` and `ticketd journal reset`, the data directory
//!   offline (the journal's own code reads and writes it; this module only prints).

pub mod journal;

pub use journal::run;

//! `ticket-bench`: parses the command line and hands it to the library; the run's summary goes
//! to stdout, the folder it was written to to stderr.

use anyhow::Context;
use clap::Parser;
use ticket_bench::cli::{Cli, Command};
use ticket_bench::provenance::command_line;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let command = command_line(std::env::args());
            let outcome = ticket_bench::run::run(&args, command).context("ticket-bench run")?;
            print!("{}", outcome.summary.markdown());
            eprintln!("run folder: {}", outcome.dir.display());
            let stock_ok = outcome.summary.stock_check.as_ref().is_none_or(|c| c.ok);
            anyhow::ensure!(stock_ok, "the stock check failed (see summary.md)");
            let flash_ok = outcome.summary.flash.as_ref().is_none_or(|f| f.ok);
            anyhow::ensure!(flash_ok, "the flash-sale checks failed (see summary.md)");
        }
        Command::Compare(args) => {
            let dir = ticket_bench::compare::compare(&args.runs, args.out.as_deref())
                .context("ticket-bench compare")?;
            print!(
                "{}",
                std::fs::read_to_string(dir.join("compare.md")).context("reading compare.md")?
            );
            eprintln!("comparison folder: {}", dir.display());
        }
    }
    Ok(())
}

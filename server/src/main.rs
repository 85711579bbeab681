//! The `ticketd` binary: reads the configuration, starts logging and signals, runs the shards;
//! or runs a tool instead (`ticketd journal ...`, exit statuses in `ticketd::tools`).
//! Configuration errors exit 2, start-up failures exit 1, each with one line on stderr.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ticketd::config::Config;

fn main() {
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => error.exit(),
    };
    if config.print_config {
        println!("{}", config.to_json());
        return;
    }
    if let Some(tool) = &config.tool {
        std::process::exit(ticketd::tools::run(&config, tool));
    }
    ticketd::process::logging::init(&config);
    let stop = Arc::new(AtomicBool::new(false));
    let notifier = ticketd::process::notify::Notifier::from_env();
    ticketd::process::signals::install(stop.clone(), config.shutdown_timeout, notifier.clone());
    if let Err(error) = ticketd::shard::run(config, stop, notifier) {
        tracing::error!(%error, "start-up failed");
        eprintln!("ticketd: {error}");
        std::process::exit(1);
    }
    tracing::info!("stopped");
}

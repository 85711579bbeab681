//! Logs: `tracing` to stderr, as text or JSON lines (`JSON_LOGS`), filtered by `LOG_LEVEL` or,
//! when set, `RUST_LOG`. Nothing is logged per request at INFO; bad input is counted instead.

use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// Installs the global subscriber.
pub fn init(config: &Config) {
    let filter = config
        .rust_log
        .as_deref()
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_thread_names(true)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if config.json_logs {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

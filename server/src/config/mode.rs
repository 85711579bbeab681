//! The two choices the command line names `MODE`: what the server runs as ([`Mode`], `--mode`)
//! and whether a sale waits for the disk ([`Durability`], `--durability`), each with its names in
//! one place: [`as_str`](Mode::as_str) is what logs, JSON bodies and `--print-config` show, and
//! the parsers accept exactly those names (case-insensitively) plus the original system's aliases.

use std::fmt;

use serde::Serialize;

/// What the server runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// All endpoints in one process; a purchase calls the stock directly.
    Monolith,
    /// The stock owner: available, reserve, health.
    Vacancy,
    /// Purchase (and available), forwarded to the vacancy service.
    Ticket,
}

impl Mode {
    /// The name used in `DEPLOYMENT_MODE`, logs and JSON bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Monolith => "monolith",
            Mode::Vacancy => "vacancy",
            Mode::Ticket => "ticket",
        }
    }

    /// The port the mode listens on when neither `PORT` nor the mode's own port variable is set.
    pub fn default_port(self) -> u16 {
        match self {
            Mode::Monolith => 8000,
            Mode::Vacancy => 8001,
            Mode::Ticket => 8002,
        }
    }
}

/// What `--mode` asked for: a mode, or the original system's `microservices`, which names one of
/// two modes and is resolved by the port once every port is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModeAsked {
    /// `monolith`, `vacancy` or `ticket`.
    Mode(Mode),
    /// `microservices`, as given (for the message when the port does not say which).
    Microservices(String),
}

/// Parses `--mode` / `DEPLOYMENT_MODE`, case-insensitively.
pub fn parse_mode(raw: &str) -> Result<ModeAsked, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "monolith" => Ok(ModeAsked::Mode(Mode::Monolith)),
        "vacancy" => Ok(ModeAsked::Mode(Mode::Vacancy)),
        "ticket" => Ok(ModeAsked::Mode(Mode::Ticket)),
        "microservices" => Ok(ModeAsked::Microservices(raw.to_string())),
        _ => Err(
            "expected monolith, vacancy or ticket (or microservices with PORT equal to \
                  VACANCY_PORT or TICKET_PORT)"
                .into(),
        ),
    }
}

/// Whether a sale waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// A sale is acknowledged only after its journal record is on disk (the journal's files are
    /// opened `O_DSYNC`, so a completed write is durable); a restart, even after a crash or power
    /// loss, keeps every acknowledged sale.
    Sync,
    /// Memory only, like the original system: nothing is journaled, and a restart starts from
    /// `initial_stock` again. The server warns about it at start.
    None,
}

impl Durability {
    /// The name used in `DURABILITY`, logs and `--print-config`.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::None => "none",
        }
    }
}

/// The name, so that clap can show the default in `--help`.
impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `--durability` / `DURABILITY`, case-insensitively.
pub fn parse_durability(raw: &str) -> Result<Durability, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "sync" => Ok(Durability::Sync),
        "none" => Ok(Durability::None),
        _ => Err("expected sync or none".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names `as_str` shows, serde writes and the parsers read are the same, for every
    /// variant.
    #[test]
    fn names_agree() {
        for (mode, name, port) in [
            (Mode::Monolith, "monolith", 8000),
            (Mode::Vacancy, "vacancy", 8001),
            (Mode::Ticket, "ticket", 8002),
        ] {
            assert_eq!((mode.as_str(), mode.default_port()), (name, port));
            assert_eq!(serde_json::to_value(mode).unwrap(), name);
            assert_eq!(parse_mode(name), Ok(ModeAsked::Mode(mode)));
        }
        for (durability, name) in [(Durability::Sync, "sync"), (Durability::None, "none")] {
            assert_eq!(durability.as_str(), name);
            assert_eq!(durability.to_string(), name);
            assert_eq!(serde_json::to_value(durability).unwrap(), name);
            assert_eq!(parse_durability(name), Ok(durability));
        }
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_mode(" TICKET "), Ok(ModeAsked::Mode(Mode::Ticket)));
        assert_eq!(
            parse_mode("Microservices"),
            Ok(ModeAsked::Microservices("Microservices".into()))
        );
        for raw in ["", "cluster", "mono lith"] {
            assert!(parse_mode(raw).is_err(), "{raw:?}");
        }
        assert_eq!(parse_durability(" NONE "), Ok(Durability::None));
        for raw in ["", "fsync", "off"] {
            assert!(parse_durability(raw).is_err(), "{raw:?}");
        }
    }
}

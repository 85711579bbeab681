//! Why the configuration was not loaded, as one line that names the option by its flag and its
//! environment variable, both taken from the option's definition in `cli.rs`:
//!
//! ```text
//! invalid value "abc" for --initial-stock (INITIAL_STOCK): expected a whole number from 0 to 9223372036854775807
//! ```

use std::fmt;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Why the configuration was not loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// clap's own answer: `--help` or `--version` (exit 0) or a usage error such as an unknown
    /// flag (exit 2). [`ConfigError::exit`] lets clap print and exit as it would.
    Clap(clap::Error),
    /// An option's value is not acceptable.
    InvalidValue {
        /// The flag, such as `--initial-stock`.
        flag: String,
        /// The environment variable, such as `INITIAL_STOCK`.
        env: String,
        /// The value as given.
        value: String,
        /// What is accepted instead, as a phrase (`expected a whole number from 0 to 10`).
        expected: String,
    },
    /// The `.env` file exists but cannot be read or parsed.
    DotEnv {
        /// The file.
        path: PathBuf,
        /// The (first) line at fault, counting from 1, when the fault is in a line.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// The option with field `id` in `command` has the unacceptable `value`.
    pub(super) fn invalid(
        command: &clap::Command,
        id: &str,
        value: &str,
        expected: String,
    ) -> ConfigError {
        let (flag, env) = names_of(command, id);
        ConfigError::InvalidValue {
            flag,
            env,
            value: value.to_string(),
            expected,
        }
    }

    /// clap's answer from parsing with `command`. A value that an option's parser refused becomes
    /// [`ConfigError::InvalidValue`], naming the option from `command` and saying what the parser
    /// expected; anything else stays clap's.
    pub(super) fn from_clap(error: clap::Error, command: &clap::Command) -> ConfigError {
        if error.kind() != ErrorKind::ValueValidation {
            return ConfigError::Clap(error);
        }
        // clap names the option as it shows it in usage (`--initial-stock <N>`).
        let text = |kind| match error.get(kind) {
            Some(ContextValue::String(text)) => Some(text.as_str()),
            _ => None,
        };
        let option = text(ContextKind::InvalidArg)
            .and_then(|shown| command.get_arguments().find(|arg| arg.to_string() == shown));
        let value = text(ContextKind::InvalidValue);
        let expected = std::error::Error::source(&error).map(ToString::to_string);
        match (option, value, expected) {
            (Some(option), Some(value), Some(expected)) => {
                ConfigError::invalid(command, option.get_id().as_str(), value, expected)
            }
            _ => ConfigError::Clap(error),
        }
    }

    /// Ends the process the way the error calls for: clap's answers exactly as clap would (help
    /// on stdout and status 0; usage errors on stderr and status 2), anything else as
    /// `ticketd: <one line>` on stderr and status 2.
    pub fn exit(self) -> ! {
        match self {
            ConfigError::Clap(error) => error.exit(),
            other => {
                eprintln!("ticketd: {other}");
                std::process::exit(2)
            }
        }
    }

    /// Whether this is clap's `--help` or `--version` output rather than an error.
    pub fn is_help_or_version(&self) -> bool {
        matches!(self, ConfigError::Clap(e)
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion))
    }
}

/// The flag (`--initial-stock`) and environment variable (`INITIAL_STOCK`) of the option whose
/// field is `id`, from its definition in `command`.
///
/// # Panics
/// When `command` has no such option with a flag and a variable: a misspelt `id` in our code.
pub(super) fn names_of(command: &clap::Command, id: &str) -> (String, String) {
    let arg = command.get_arguments().find(|arg| arg.get_id() == id);
    let names = arg.and_then(|arg| Some((arg.get_long()?, arg.get_env()?)));
    let (long, env) = names.unwrap_or_else(|| panic!("no option {id} with a flag and a variable"));
    (format!("--{long}"), env.to_string_lossy().into())
}

impl fmt::Display for ConfigError {
    /// One line: the option (flag and environment variable), the value, and what is accepted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Clap(error) => {
                let rendered = error.to_string();
                let first = rendered
                    .lines()
                    .find(|line| !line.trim().is_empty())
                    .unwrap_or("");
                f.write_str(first.strip_prefix("error: ").unwrap_or(first))
            }
            ConfigError::InvalidValue {
                flag,
                env,
                value,
                expected,
            } => {
                write!(f, "invalid value {value:?} for {flag} ({env}): {expected}")
            }
            ConfigError::DotEnv {
                path,
                line: Some(line),
                reason,
            } => {
                write!(f, "invalid {} line {line}: {reason}", path.display())
            }
            ConfigError::DotEnv {
                path,
                line: None,
                reason,
            } => {
                write!(f, "invalid {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

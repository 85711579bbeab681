//! The configuration as an operator meets it: the real binary, its exit statuses, stdout and
//! stderr. Each run starts from an empty environment (plus `PATH`) in a fresh working directory,
//! so the machine's own environment and files cannot leak in.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh working directory, optionally holding a `.env`; removed when dropped.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn new(dotenv: Option<&str>) -> WorkDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ticketd-cli-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create working directory");
        if let Some(contents) = dotenv {
            std::fs::write(path.join(".env"), contents).expect("write .env");
        }
        WorkDir { path }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs `ticketd` with `args` in `dir`, with only `env` (and `PATH`) in its environment.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ticketd"));
    command.args(args).current_dir(dir).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(env.iter().copied());
    command.output().expect("run ticketd")
}

/// `--print-config` output, parsed; panics unless the run succeeded with one line of JSON.
fn print_config(dotenv: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let dir = WorkDir::new(dotenv);
    let mut all_args = vec!["--print-config"];
    all_args.extend_from_slice(args);
    let output = run(&dir.path, &all_args, env);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{args:?} {env:?}: {:?}\n{stderr}",
        output.status
    );
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    serde_json::from_str(&stdout).expect("JSON")
}

/// Proves the precedence: a flag beats the environment, which beats `.env`, which beats the
/// default, option by option.
#[test]
fn flag_beats_environment_beats_dotenv_beats_default() {
    let dotenv = "INITIAL_STOCK=3\nMAX_ORDER_QTY=3\nSHARDS=3\nLOG_LEVEL=debug\n";
    let env = [("INITIAL_STOCK", "2"), ("MAX_ORDER_QTY", "2")];
    let config = print_config(Some(dotenv), &["--initial-stock", "1"], &env);
    assert_eq!(config["initial_stock"], 1, "flag");
    assert_eq!(config["max_order_qty"], 2, "environment");
    assert_eq!(config["shards"], 3, ".env");
    assert_eq!(config["log_level"], "debug", ".env");
    assert_eq!(config["head_bytes_max"], 16_384, "default");
    assert_eq!(config["mode"], "monolith", "default");
    assert_eq!(config["port"], 8000, "default");
}

/// Proves the original system's environment names keep working, with their defaults.
#[test]
fn original_environment_names_and_defaults() {
    let config = print_config(None, &[], &[]);
    assert_eq!(config["host"], "0.0.0.0");
    assert_eq!(config["vacancy_url"], "http://127.0.0.1:8001");
    assert_eq!(config["vacancy_timeout"], 2.0);
    assert_eq!(config["http_max_connections"], 100);
    assert_eq!(config["http_keepalive_connections"], 20);
    assert_eq!(config["cache_ttl_seconds"], 1.0);
    assert_eq!(config["log_level"], "info");
    assert_eq!(config["json_logs"], false);
    assert!(config["shards"].is_null() && config["cpus"].is_null());

    let env = [
        ("DEPLOYMENT_MODE", "microservices"),
        ("HOST", "127.0.0.1"),
        ("PORT", "8002"),
        ("INITIAL_STOCK", "50"),
        ("VACANCY_URL", "http://vacancy:8001"),
        ("VACANCY_TIMEOUT", "0.5"),
        ("HTTP_MAX_CONNECTIONS", "10"),
        ("HTTP_KEEPALIVE_CONNECTIONS", "5"),
        ("CACHE_TTL_SECONDS", "2"),
        ("LOG_LEVEL", "WARNING"),
        ("JSON_LOGS", "true"),
        ("CPUS", "0-1"),
    ];
    let config = print_config(None, &[], &env);
    assert_eq!(config["mode"], "ticket", "microservices on TICKET_PORT");
    assert_eq!(
        (&config["host"], &config["port"]),
        (&"127.0.0.1".into(), &8002.into())
    );
    assert_eq!(config["initial_stock"], 50);
    assert_eq!(config["vacancy_host"], "vacancy");
    assert_eq!(config["vacancy_port"], 8001);
    assert_eq!(config["vacancy_timeout"], 0.5);
    assert_eq!(config["http_max_connections"], 10);
    assert_eq!(config["http_keepalive_connections"], 5);
    assert_eq!(config["cache_ttl_seconds"], 2.0);
    assert_eq!(config["log_level"], "warn");
    assert_eq!(config["json_logs"], true);
    assert_eq!(config["cpus"], serde_json::json!([0, 1]));

    let vacancy = print_config(None, &[], &[("DEPLOYMENT_MODE", "vacancy")]);
    assert_eq!(
        (&vacancy["mode"], &vacancy["port"]),
        (&"vacancy".into(), &8001.into())
    );
}

/// Proves an invalid value stops start-up with status 2 and one line on stderr naming the
/// option by flag and environment variable, whether the value came from a flag, the environment
/// or `.env`, and prints nothing on stdout.
#[test]
fn invalid_values_exit_2_with_one_line_naming_the_option() {
    type Case = (
        Option<&'static str>,
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let cases: &[Case] = &[
        (
            None,
            &["--initial-stock", "abc"],
            &[],
            "--initial-stock (INITIAL_STOCK)",
        ),
        (
            None,
            &[],
            &[("INITIAL_STOCK", "-5")],
            "--initial-stock (INITIAL_STOCK)",
        ),
        (
            Some("INITIAL_STOCK=lots\n"),
            &[],
            &[],
            "--initial-stock (INITIAL_STOCK)",
        ),
        (None, &[], &[("PORT", "70000")], "--port (PORT)"),
        (
            None,
            &[],
            &[("DEPLOYMENT_MODE", "microservices")],
            "--mode (DEPLOYMENT_MODE)",
        ),
        (None, &[], &[("HOST", "localhost")], "--host (HOST)"),
        (None, &[], &[("SHARDS", "0")], "--shards (SHARDS)"),
        (None, &[], &[("CPUS", "2-1")], "--cpus (CPUS)"),
        (
            None,
            &[],
            &[("VACANCY_URL", "https://vacancy")],
            "--vacancy-url (VACANCY_URL)",
        ),
        (
            None,
            &[],
            &[("VACANCY_TIMEOUT", "soon")],
            "--vacancy-timeout (VACANCY_TIMEOUT)",
        ),
        (
            None,
            &[],
            &[("HTTP_KEEPALIVE_CONNECTIONS", "101")],
            "(HTTP_KEEPALIVE_CONNECTIONS)",
        ),
        (
            None,
            &[],
            &[("CACHE_TTL_SECONDS", "0")],
            "--cache-ttl-seconds (CACHE_TTL_SECONDS)",
        ),
        (
            None,
            &[],
            &[("LOG_LEVEL", "verbose")],
            "--log-level (LOG_LEVEL)",
        ),
        (
            None,
            &[],
            &[("JSON_LOGS", "perhaps")],
            "--json-logs (JSON_LOGS)",
        ),
        (
            None,
            &[],
            &[("BODY_BYTES_MAX", "0")],
            "--body-bytes-max (BODY_BYTES_MAX)",
        ),
        (
            None,
            &[],
            &[("IDLE_TIMEOUT_MS", "-1")],
            "--idle-timeout-ms (IDLE_TIMEOUT_MS)",
        ),
    ];
    for &(dotenv, args, env, names) in cases {
        let dir = WorkDir::new(dotenv);
        let output = run(&dir.path, args, env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?} {env:?} {dotenv:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?} {env:?}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("ticketd: invalid value "), "{stderr}");
        assert!(stderr.contains(names), "{stderr} lacks {names}");
    }
}

/// Proves a malformed `.env` stops start-up with status 2, naming the file and the line.
#[test]
fn malformed_dotenv_exits_2_naming_file_and_line() {
    let dir = WorkDir::new(Some("# settings\nINITIAL_STOCK=5\nnot a setting\n"));
    let output = run(&dir.path, &["--print-config"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("ticketd: invalid .env line 3: "),
        "{stderr}"
    );
}

/// Whether `text` holds `name` as a whole word (not inside a longer name such as `MONOLITH_PORT`
/// for `PORT`) right after `before`.
fn has_word_after(text: &str, before: &str, name: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(at, _)| {
        let (head, tail) = (&text[..at], &text[at + name.len()..]);
        head.ends_with(before) && !head.ends_with(is_word) && !tail.starts_with(is_word)
    })
}

/// Proves `--help` succeeds and shows every environment variable the configuration reads, each
/// option's in its `[env: NAME=]` note; the list comes from the configuration's own definition,
/// so a new option cannot be left out of this test. Proves too that the original system's names
/// are still among them, and that a usage error (clap's own) exits 2.
#[test]
fn help_exits_0_and_names_every_environment_variable() {
    let dir = WorkDir::new(None);
    let output = run(&dir.path, &["--help"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    let names = ticketd::config::env_names();
    let original = [
        "DEPLOYMENT_MODE",
        "HOST",
        "PORT",
        "MONOLITH_PORT",
        "VACANCY_PORT",
        "TICKET_PORT",
        "INITIAL_STOCK",
        "VACANCY_URL",
        "VACANCY_TIMEOUT",
        "HTTP_MAX_CONNECTIONS",
        "HTTP_KEEPALIVE_CONNECTIONS",
        "CACHE_TTL_SECONDS",
        "LOG_LEVEL",
        "JSON_LOGS",
        "RUST_LOG",
    ];
    for name in original {
        assert!(names.iter().any(|n| n == name), "{name} is no longer read");
    }
    for name in &names {
        let shown = if name == ticketd::config::RUST_LOG_ENV {
            has_word_after(&help, "", name)
        } else {
            has_word_after(&help, "[env: ", name)
        };
        assert!(shown, "--help lacks {name}");
    }
    assert!(help.contains("--print-config"));

    let output = run(&dir.path, &["--no-such-flag"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-such-flag"));

    let output = run(&dir.path, &["--version"], &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("ticketd "));
}

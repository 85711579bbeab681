//! Operations tooling: the systemd units in `systemd/`, `systemd/install.sh`, and the host tuning
//! scripts `tuning/check` and `tuning/apply`. The scripts run for real (never as a side effect on
//! the host: dry runs, a temporary `DESTDIR`, or a fake `/proc` and `/sys` tree); the units go
//! through `systemd-analyze verify` and `systemd-analyze security`.
//!
//! `shellcheck` and `systemd-analyze` are external tools. Under CI (`CI` set: `.ci/run` sets it,
//! after installing both) a test that needs a missing one fails. Elsewhere it skips that check
//! and says so on the terminal (past the test harness's output capture, so a passing run shows
//! the skip).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root: the scripts and units live there, outside the `server` crate.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ticketd-ops-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether `tool` is on PATH (see [`support::have`]: a missing one fails under CI).
fn have(tool: &str) -> bool {
    support::have(Path::new(tool), ".ci/run installs it")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a repository script with `args` and extra environment.
fn script(path: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(repo().join(path));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The sysctls `tuning/apply` may change, read straight from /proc/sys.
fn live_sysctls() -> Vec<(String, Option<String>)> {
    [
        "net/core/somaxconn",
        "net/ipv4/tcp_max_syn_backlog",
        "net/ipv4/tcp_tw_reuse",
        "net/ipv4/ip_local_port_range",
        "net/core/busy_read",
        "vm/swappiness",
    ]
    .iter()
    .map(|name| {
        let value = fs::read_to_string(format!("/proc/sys/{name}")).ok();
        (name.to_string(), value)
    })
    .collect()
}

/// `tuning/check` runs unprivileged (as nobody when the test runs as root), prints a row for
/// every setting the issue names, and exits 0 (all ok) or 1 (something off), never 2 or more.
#[test]
fn check_prints_every_setting_and_exits_zero_or_one() {
    let check = repo().join("tuning/check");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let output = if root && Path::new("/usr/bin/setpriv").exists() {
        Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&check)
            .output()
            .unwrap()
    } else {
        Command::new(&check).output().unwrap()
    };
    let stdout = text(&output.stdout);
    let code = output.status.code().expect("check was killed");
    assert!(
        code == 0 || code == 1,
        "exit {code}\n{stdout}\n{}",
        text(&output.stderr)
    );
    for name in [
        "listen backlog (ticketd)",
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_tw_reuse",
        "net.core.busy_read",
        "net.core.busy_poll",
        "CPU frequency governor",
        "isolated CPUs",
        "transparent hugepages",
        "vm.swappiness",
        "RLIMIT_MEMLOCK",
        "open files",
        "kernel.io_uring_disabled",
    ] {
        assert!(stdout.contains(name), "no row for {name}:\n{stdout}");
    }
    assert!(
        stdout.contains("IRQ") || stdout.contains("no physical NIC"),
        "no NIC row:\n{stdout}"
    );
    assert_eq!(
        code == 1,
        stdout.contains("| WARN |"),
        "exit status disagrees with the table"
    );
}

/// On an empty fake tree every file is missing: `tuning/check` prints "n/a" rows and still exits
/// 0 or 1.
#[test]
fn check_reads_missing_files_as_na() {
    let fake = scratch("check-empty");
    let output = script("tuning/check", &[], &[("TUNING_ROOT", &fake)]);
    let stdout = text(&output.stdout);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{output:?}");
    assert!(
        stdout.contains("net.core.somaxconn                 | n/a"),
        "{stdout}"
    );
    assert!(stdout.contains("no cpufreq"), "{stdout}");
}

/// The listen backlog the scripts compare somaxconn with is the one the server passes to listen().
#[test]
fn scripts_know_the_servers_listen_backlog() {
    let want = format!("listen_backlog={}", ticketd::shard::LISTEN_BACKLOG);
    for path in ["tuning/check", "tuning/apply"] {
        let source = fs::read_to_string(repo().join(path)).unwrap();
        assert!(source.contains(&want), "{path} lacks {want}");
    }
}

/// `tuning/apply` with no argument is a dry run: it prints the plan, changes no sysctl and writes
/// no state file.
#[test]
fn apply_dry_run_changes_nothing() {
    let dir = scratch("apply-dry");
    let state = dir.join("previous");
    let before = live_sysctls();
    let output = script("tuning/apply", &[], &[("TUNING_STATE", &state)]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("dry run: nothing is changed"), "{stdout}");
    assert!(stdout.contains("somaxconn"), "{stdout}");
    assert!(
        stdout.contains("change(s) planned; nothing changed"),
        "{stdout}"
    );
    assert_eq!(before, live_sysctls(), "a dry run changed a sysctl");
    assert!(!state.exists(), "a dry run wrote the state file");
}

/// `tuning/apply --revert` without a state file says there is nothing to revert and succeeds.
#[test]
fn apply_revert_without_state_says_so() {
    let state = scratch("apply-revert").join("previous");
    let output = script("tuning/apply", &["--revert"], &[("TUNING_STATE", &state)]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        text(&output.stdout).contains("nothing to revert"),
        "{output:?}"
    );
}

/// On a fake /proc and /sys, `--apply` makes the changes and saves the old values, a second
/// `--apply` changes nothing (idempotent), and `--revert` restores every original value.
#[test]
fn apply_then_revert_on_a_fake_tree() {
    let fake = scratch("apply-fake");
    let state = fake.join("state/previous");
    let files = [
        ("proc/sys/net/core/somaxconn", "128\n", "4096"),
        ("proc/sys/net/ipv4/tcp_max_syn_backlog", "8192\n", "8192"),
        (
            "proc/sys/net/ipv4/ip_local_port_range",
            "40000\t60000\n",
            "1024 65535",
        ),
        ("proc/sys/net/ipv4/tcp_tw_reuse", "2\n", "1"),
        ("proc/sys/net/core/busy_read", "50\n", "0"),
        ("proc/sys/vm/swappiness", "60\n", "1"),
        ("proc/sys/kernel/io_uring_disabled", "0\n", "0"),
        (
            "sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
            "madvise",
        ),
        (
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "powersave\n",
            "performance",
        ),
    ];
    for (path, value, _) in files {
        let path = fake.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, value).unwrap();
    }
    let env = [
        ("TUNING_ROOT", fake.as_path()),
        ("TUNING_STATE", state.as_path()),
    ];

    let applied = script("tuning/apply", &["--apply"], &env);
    assert!(applied.status.success(), "{applied:?}");
    for (path, _, want) in files {
        let now = fs::read_to_string(fake.join(path)).unwrap();
        assert_eq!(now.trim(), want, "{path} after --apply");
    }
    assert!(state.exists(), "--apply wrote no state file");

    let again = script("tuning/apply", &["--apply"], &env);
    assert!(
        text(&again.stdout).contains("0 change(s) made"),
        "{again:?}"
    );

    let reverted = script("tuning/apply", &["--revert"], &env);
    assert!(reverted.status.success(), "{reverted:?}");
    for (path, original, _) in files {
        let now = fs::read_to_string(fake.join(path)).unwrap();
        // Values go back space-separated; of a sysfs choice such as "[always] madvise never"
        // only the selection is written, as the kernel expects.
        let want = match original.split_once('[') {
            Some((_, rest)) => rest.split(']').next().unwrap().to_string(),
            None => original.trim().replace('\t', " "),
        };
        assert_eq!(now.trim(), want, "{path} after --revert");
    }
    assert!(!state.exists(), "--revert left the state file");
}

/// `systemd/install.sh --dry-run` prints every step and creates, changes and reloads nothing.
#[test]
fn install_dry_run_prints_steps_and_touches_nothing() {
    let dir = scratch("install-dry");
    let prefix = dir.join("prefix");
    let watched = [
        "/etc/systemd/system/ticketd.service",
        "/etc/systemd/system/ticketd@.service",
        "/etc/ticketd",
    ];
    let before: Vec<bool> = watched.iter().map(|p| Path::new(p).exists()).collect();
    let output = Command::new(repo().join("systemd/install.sh"))
        .args(["--dry-run", "--prefix"])
        .arg(&prefix)
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_ticketd"))
        // Were a dry run to call systemctl, this fails it.
        .env("SYSTEMCTL", dir.join("no-systemctl"))
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    for step in [
        "bin/ticketd",
        "/etc/systemd/system/ticketd.service",
        "/etc/systemd/system/ticketd@.service",
        "/etc/ticketd/ticketd.env",
        "daemon-reload",
    ] {
        assert!(stdout.contains(step), "no step for {step}:\n{stdout}");
    }
    assert!(!prefix.exists(), "a dry run created {}", prefix.display());
    let after: Vec<bool> = watched.iter().map(|p| Path::new(p).exists()).collect();
    assert_eq!(before, after, "a dry run changed /etc");
}

/// A real install into `DESTDIR` puts the binary, both units and the env file in place, points
/// the units at `--prefix`, and a second install keeps an env file the operator edited.
#[test]
fn install_into_destdir_keeps_an_existing_env_file() {
    let dest = scratch("install-destdir");
    let install = || {
        Command::new(repo().join("systemd/install.sh"))
            .args([
                "--prefix",
                "/opt/ticketd",
                "--bin",
                env!("CARGO_BIN_EXE_ticketd"),
            ])
            .env("DESTDIR", &dest)
            .output()
            .unwrap()
    };
    let first = install();
    assert!(first.status.success(), "{first:?}");
    assert!(dest.join("opt/ticketd/bin/ticketd").exists());
    let unit = fs::read_to_string(dest.join("etc/systemd/system/ticketd.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/ticketd/bin/ticketd --mode=monolith"),
        "{unit}"
    );
    assert!(dest.join("etc/systemd/system/ticketd@.service").exists());
    let env_file = dest.join("etc/ticketd/ticketd.env");
    fs::write(&env_file, "SHARDS=4\n").unwrap();
    let second = install();
    assert!(second.status.success(), "{second:?}");
    assert_eq!(fs::read_to_string(&env_file).unwrap(), "SHARDS=4\n");
}

/// Every shell script passes shellcheck.
#[test]
fn scripts_pass_shellcheck() {
    if !have("shellcheck") {
        return;
    }
    for path in [
        "systemd/install.sh",
        "tuning/check",
        "tuning/apply",
        "bench/compare.sh",
        "bench/tiers.sh",
        "bench/durability.sh",
        "bench/flash.sh",
        "bench/cluster.sh",
        "bench/tail.sh",
        "bench/ab.sh",
        "bench/lib.sh",
        ".ci/python-tools",
    ] {
        let output = Command::new("shellcheck")
            .arg("-x") // follow `source`d files (bench/lib.sh)
            .arg(repo().join(path))
            .output()
            .unwrap();
        assert!(output.status.success(), "{path}:\n{}", text(&output.stdout));
    }
}

/// Copies the units to `dir` with ExecStart pointing at the binary cargo built.
fn units_with_real_binary(dir: &Path) {
    for unit in ["ticketd.service", "ticketd@.service"] {
        let source = fs::read_to_string(repo().join("systemd").join(unit)).unwrap();
        let rewritten = source.replace("/usr/local/bin/ticketd", env!("CARGO_BIN_EXE_ticketd"));
        fs::write(dir.join(unit), rewritten).unwrap();
    }
}

/// `systemd-analyze verify` accepts the monolith unit and both instances of the template, without
/// a single warning (an unknown or misplaced key is only a warning to systemd).
#[test]
fn units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = scratch("verify");
    units_with_real_binary(&dir);
    for unit in [
        "ticketd.service",
        "ticketd@vacancy.service",
        "ticketd@ticket.service",
    ] {
        let output = Command::new("systemd-analyze")
            .args(["verify", &format!("./{unit}")])
            .current_dir(&dir)
            .output()
            .unwrap();
        let stderr = text(&output.stderr);
        assert!(output.status.success(), "{unit}: {stderr}");
        assert!(
            !stderr.contains("ticketd"),
            "{unit} has warnings:\n{stderr}"
        );
    }
}

/// `systemd-analyze security --offline=yes` rates every unit's exposure 2.0 or better ("OK"): the
/// monolith unit and both instances of the template.
#[test]
fn units_exposure_is_ok() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = scratch("security");
    units_with_real_binary(&dir);
    for unit in [
        "ticketd.service",
        "ticketd@vacancy.service",
        "ticketd@ticket.service",
    ] {
        let output = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", &format!("./{unit}")])
            .current_dir(&dir)
            .output()
            .unwrap();
        let stdout = text(&output.stdout);
        let score: f64 = stdout
            .lines()
            .find_map(|line| line.split("exposure level for ").nth(1))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|score| score.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no score in\n{stdout}"));
        assert!(score <= 2.0, "{unit}: exposure {score}\n{stdout}");
    }
}

/// Every directive in the units has a comment line right above it saying why.
#[test]
fn every_unit_directive_is_commented() {
    for unit in ["ticketd.service", "ticketd@.service"] {
        let source = fs::read_to_string(repo().join("systemd").join(unit)).unwrap();
        let mut previous = "";
        for line in source.lines() {
            let directive = !line.is_empty() && !line.starts_with('#') && !line.starts_with('[');
            assert!(
                !directive || previous.starts_with('#'),
                "{unit}: `{line}` has no comment above it"
            );
            previous = line;
        }
    }
}

/// The example env file names every variable `ticketd --help` lists, commented out.
#[test]
fn env_example_lists_every_option() {
    let help = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = text(&help.stdout);
    let example = fs::read_to_string(repo().join("systemd/ticketd.env.example")).unwrap();
    let mut seen = 0;
    for name in help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split('=').next())
    {
        seen += 1;
        let line = format!("\n#{name}=");
        assert!(
            example.contains(&line),
            "ticketd.env.example lacks #{name}="
        );
    }
    assert!(seen >= 20, "found only {seen} variables in --help");
    assert!(
        example.lines().all(|l| l.is_empty() || l.starts_with('#')),
        "the example must set nothing"
    );
}

/// bench/stalls.py, which blames the stalls of `bench/tail.sh --attribute`, finds each cause in a
/// synthetic trace: a server CPU that took no sample, a client CPU that took none, a kernel thread
/// holding the server's CPU, and a stall none of them explains (with the server's functions).
#[test]
fn stall_attribution_tells_each_cause_apart() {
    let output = Command::new("python3")
        .arg(repo().join("bench/stalls.py"))
        .arg("--self-test")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(text(&output.stdout).trim(), "self-test passed");
}

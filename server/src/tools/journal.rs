//! `ticketd journal inspect` and `ticketd journal reset`: the data directory (`--data-dir`,
//! `DATA_DIR`), offline. The journal module reads and writes the files
//! ([`journal::inspect`](crate::durability::journal::inspect()),
//! [`journal::reset`](crate::durability::journal::reset())); this module takes the lock, runs them
//! on a short-lived glommio executor (the journal's files are read and written with O_DIRECT
//! through glommio, as the server does), prints, and picks the exit status.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use glommio::{LocalExecutorBuilder, Placement};
use serde::Serialize;

use crate::config::{Config, JournalTool};
use crate::durability::journal::{self, Damage, DamageKind, Inspection, Store};
use crate::process::startup::{self, LOCK_FILE};

/// Exit status: the journal is clean (inspect), or the reset is done.
pub const EXIT_CLEAN: i32 = 0;
/// Exit status: the tool could not do its job (the directory is missing, unreadable, in use by
/// a server for a reset, or a write failed); one line on stderr says why. 2 stays the
/// configuration's (see `ConfigError::exit`).
pub const EXIT_FAILED: i32 = 1;
/// Exit status of inspect: the only damage is a torn tail, which the next start cuts off
/// (losing only records that were never acknowledged).
pub const EXIT_TORN_TAIL: i32 = 3;
/// Exit status of inspect: damage the server refuses to start with (corruption, a missing file,
/// an unreadable manifest, files that disagree).
pub const EXIT_DAMAGED: i32 = 4;

/// Runs `tool` with the configuration's data directory, initial stock and shard count; returns
/// the process's exit status.
pub fn run(config: &Config, tool: JournalTool) -> i32 {
    let outcome = match tool {
        JournalTool::Inspect { json } => inspect(&config.data_dir, json),
        JournalTool::Reset => reset(config),
    };
    outcome.unwrap_or_else(|why| {
        let name = match tool {
            JournalTool::Inspect { .. } => "inspect",
            JournalTool::Reset => "reset",
        };
        eprintln!("ticketd journal {name}: {why}");
        EXIT_FAILED
    })
}

/// What `inspect --json` prints: the inspection, with where and what it is.
#[derive(Serialize)]
struct Report<'a> {
    /// The data directory, as given (lossily, so that any path prints).
    data_dir: String,
    /// Whether a server held the directory's lock while it was read.
    in_use: bool,
    /// `clean`, `torn_tail` (the next start repairs it) or `damaged` (it refuses to start).
    status: &'static str,
    /// Everything found.
    #[serde(flatten)]
    inspection: &'a Inspection,
}

fn inspect(dir: &Path, json: bool) -> Result<i32, String> {
    if !dir.is_dir() {
        return Err(format!(
            "{} is not a directory; point --data-dir (DATA_DIR) at the server's data directory",
            dir.display()
        ));
    }
    let in_use = startup::data_dir_in_use(dir);
    let inspection = on_executor(dir, |store| async move { journal::inspect(&store).await })?;
    let (status, code) = verdict(&inspection.damage);
    let report = Report {
        data_dir: dir.display().to_string(),
        in_use,
        status,
        inspection: &inspection,
    };
    let text = if json {
        serde_json::to_string(&report).expect("a report always serializes") + "\n"
    } else {
        text(&report)
    };
    // A closed stdout (`| head`) is not the journal's problem: the status still tells.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(code)
}

/// The status word and exit status for what was found.
fn verdict(damage: &[Damage]) -> (&'static str, i32) {
    if damage.is_empty() {
        ("clean", EXIT_CLEAN)
    } else if damage.iter().all(|d| d.kind.repaired_at_start()) {
        ("torn_tail", EXIT_TORN_TAIL)
    } else {
        ("damaged", EXIT_DAMAGED)
    }
}

fn reset(config: &Config) -> Result<i32, String> {
    let shards = startup::placement(config).map_err(|e| e.to_string())?.len();
    if startup::data_dir_in_use(&config.data_dir) {
        return Err(format!(
            "the data directory {} is in use by a running ticketd; stop it first (a reset is done \
             offline), nothing was changed",
            config.data_dir.display()
        ));
    }
    // Held until this function returns: no server may start on the directory meanwhile (one
    // that started since the test above makes this fail).
    let (_lock, dir) = startup::lock_data_dir(&config.data_dir).map_err(|e| e.to_string())?;
    let stock = config.initial_stock;
    let (before, done) = on_executor(&dir, move |store| async move {
        let before = journal::inspect(&store).await?;
        let done = journal::reset(&store, shards, stock).await?;
        Ok((before, done))
    })?;
    for warning in &done.warnings {
        eprintln!("ticketd journal reset: {warning}");
    }
    let was = match (&before.manifest, before.sold, before.available) {
        (None, _, _) if before.damage.is_empty() => "no journal".to_string(),
        (Some(m), Some(sold), Some(available)) => format!(
            "a sale of {} tickets, {sold} sold, {available} available",
            before.stock.unwrap_or(m.stock)
        ),
        _ => format!(
            "a damaged journal ({})",
            before.damage[0].what.trim_end_matches('.')
        ),
    };
    println!(
        "ticketd journal reset: {}: a new sale of {stock} tickets over {shards} shards, nothing \
         sold (epoch {}); it replaced {was}",
        config.data_dir.display(),
        done.epoch
    );
    Ok(EXIT_CLEAN)
}

/// Runs `job` on a glommio executor of its own, with the directory (made absolute: glommio opens
/// directories by absolute path only) as a store.
fn on_executor<T, F, Fut>(dir: &Path, job: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, journal::JournalError>>,
{
    startup::ensure_memlock(1).map_err(|e| e.to_string())?;
    let dir: PathBuf = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("journal")
        .spawn(move || async move {
            let store = Store::Disk(dir);
            // The first O_DIRECT open of a device makes glommio probe it by reading the file:
            // give it one with real blocks (see `Store::probe_device`).
            store.probe_device(LOCK_FILE).await;
            job(store).await
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The human form of a report.
fn text(r: &Report) -> String {
    use std::fmt::Write as _;
    let i = r.inspection;
    let mut o = String::new();
    let use_note = if r.in_use {
        "in use by a running ticketd: figures as of this reading"
    } else {
        "not in use"
    };
    let _ = writeln!(o, "data directory {} ({use_note})", r.data_dir);
    match &i.manifest {
        Some(m) => {
            let _ = writeln!(
                o,
                "manifest: epoch {}, {} shards, stock {}, {} sold before this epoch",
                m.epoch, m.shards, m.stock, m.sold_before_epoch
            );
        }
        None if i.damage.is_empty() => {
            let _ = writeln!(
                o,
                "manifest: none (the next start is a first start, with INITIAL_STOCK)"
            );
        }
        None => {}
    }
    let _ = writeln!(o, "files:");
    for f in &i.files {
        let role = match f.role {
            journal::inspect::FileRole::Manifest => "manifest",
            journal::inspect::FileRole::Shard => "shard file",
            journal::inspect::FileRole::Leftover => "leftover, removed at the next start",
            journal::inspect::FileRole::Unknown => "shard file of an unknown epoch",
        };
        let _ = writeln!(o, "  {:<24} {:>10} bytes  {role}", f.name, f.bytes);
    }
    if !i.shards.is_empty() {
        let _ = writeln!(o, "shards:");
    }
    for s in &i.shards {
        let c = s.records;
        let _ = write!(
            o,
            "  {:>4}  {}  records: {} snapshot, {} sale, {} give, {} receive, {} restock, {} sales, {} keyed, {} lease",
            s.shard, s.file, c.snapshot, c.sale, c.give, c.receive, c.restock, c.sales, c.keyed, c.lease
        );
        if let (Some(first), Some(last)) = (s.first_seq, s.last_seq) {
            let _ = write!(o, "; seq {first}..{last}, valid to byte {}", s.end);
        }
        if let (Some(base), Some(sold), Some(available)) = (s.base, s.sold, s.available) {
            let _ = write!(
                o,
                "; began with {base}, sold {sold}, gave {}, received {}, available {available}",
                s.given.unwrap_or(0),
                s.received.unwrap_or(0)
            );
        }
        o.push('\n');
    }
    if let (Some(m), Some(sold), Some(available)) = (&i.manifest, i.sold, i.available) {
        let stock = i.stock.unwrap_or(m.stock);
        // A cluster node's stock also moves with its lease, either way.
        let restocked = i128::from(stock) - i128::from(m.stock);
        let _ = write!(
            o,
            "total: stock {stock}, sold {sold}, available {available} ({} in transit)",
            i.in_transit.unwrap_or(0)
        );
        if restocked > 0 {
            let _ = write!(o, "; {restocked} of the stock restocked this epoch");
        } else if restocked < 0 {
            let _ = write!(o, "; {} returned to the cluster this epoch", -restocked);
        }
        if i.sales_closed == Some(true) {
            let _ = write!(o, "; sales closed");
        }
        o.push('\n');
    }
    for note in &i.notes {
        let _ = writeln!(o, "note: {note}");
    }
    for d in &i.damage {
        let kind = match d.kind {
            DamageKind::TornTail => "torn tail",
            DamageKind::Corruption => "corruption",
            DamageKind::MissingFile => "missing file",
            DamageKind::Manifest => "bad manifest",
            DamageKind::Inconsistent => "inconsistent",
        };
        let _ = write!(o, "damage: {kind}");
        if let Some(file) = &d.file {
            let _ = write!(o, " in {file}");
        }
        if let Some(offset) = d.offset {
            let _ = write!(o, " at offset {offset}");
        }
        let _ = writeln!(o, ": {}", d.what);
    }
    let verdict = match r.status {
        "clean" => "clean",
        "torn_tail" => "a torn tail only: the next start cuts it off (exit 3)",
        _ => {
            "damaged: the server will not start on it; restore a backup, or start a new sale \
             with `ticketd journal reset` (exit 4)"
        }
    };
    let _ = writeln!(o, "status: {verdict}");
    o
}

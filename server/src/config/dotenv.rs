//! The `.env` file: `KEY=value` lines loaded into the process environment beneath it, as the
//! original system read it (python-dotenv). It is parsed by dotenvy, through a reader that counts
//! lines so that a malformed one is reported by its number; nothing is applied unless the whole
//! file parses.

use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use super::error::ConfigError;

/// The file read at start-up, relative to the working directory, as the original system did.
pub const DOTENV_FILE: &str = ".env";

/// A `.env` file larger than this is refused: it is a handful of lines, and a huge one is a
/// mistake (a log file renamed, a wrong mount) better reported than loaded.
pub const DOTENV_BYTES_MAX: u64 = 1 << 20;

/// Loads `path` into the process environment, for keys not already set (the environment beats
/// `.env`; within the file the first occurrence of a key wins). Nothing is set unless the whole
/// file parses. A missing file is not an error.
pub fn load_dotenv(path: &Path) -> Result<(), ConfigError> {
    let fail = |line: Option<usize>, reason: String| ConfigError::DotEnv {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(fail(None, format!("cannot open: {error}"))),
    };
    let mut bytes = Vec::new();
    file.take(DOTENV_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| fail(None, format!("cannot read: {error}")))?;
    if bytes.len() as u64 > DOTENV_BYTES_MAX {
        return Err(fail(None, format!("larger than {DOTENV_BYTES_MAX} bytes")));
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let lines_read = Rc::new(Cell::new(0));
    let reader = LineAtATime {
        rest: text,
        lines_read: Rc::clone(&lines_read),
    };
    let mut pairs = Vec::new();
    for item in dotenvy::Iter::new(reader) {
        match item {
            Ok((key, value)) if value.contains('\0') => {
                return Err(fail(
                    None,
                    format!("the value of {key} contains a NUL character"),
                ));
            }
            Ok(pair) => pairs.push(pair),
            Err(dotenvy::Error::LineParse(line, _)) => {
                // `line` is the logical line (a quoted value may span several); report its first.
                let first = lines_read.get() + 1 - line.split_terminator('\n').count().max(1);
                let shown: String = line.chars().take(80).collect();
                return Err(fail(Some(first), format!("cannot parse {shown:?}")));
            }
            Err(error) => return Err(fail(None, error.to_string())),
        }
    }
    for (key, value) in pairs {
        if std::env::var_os(&key).is_none() {
            std::env::set_var(&key, &value);
        }
    }
    Ok(())
}

/// A reader that hands out at most one line per `read`, so that the number of lines read so far
/// is known when dotenvy reports a malformed line (its error carries the line, not its number).
/// dotenvy's `BufReader` asks for more only when its buffer is empty, so it never reads ahead.
struct LineAtATime<'a> {
    /// What has not been read yet.
    rest: &'a [u8],
    /// Lines read completely so far, shared with the caller.
    lines_read: Rc<Cell<usize>>,
}

impl Read for LineAtATime<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let line_len = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.rest.len(), |i| i + 1);
        let n = line_len.min(buf.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        if n == line_len && n > 0 {
            self.lines_read.set(self.lines_read.get() + 1);
        }
        Ok(n)
    }
}

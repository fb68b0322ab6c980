//! When the lines of a node's log were written, beside it: `<node>.times` holds one
//! `OFFSET UNIX_MS` line each time a log line starts in a new second (OFFSET: where
//! that line starts in `<node>.log`), so a log of any length costs at most one small
//! write a second, and a reader can put a time on every line (the dashboard's log
//! pane). The log itself stays exactly what the step printed.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The times of the log at `log` (`<node>.log`): its file, and where the log is.
pub(crate) struct LineTimes {
    path: Option<PathBuf>,
    file: Option<std::fs::File>,
    /// The log's length: where the next byte written goes.
    offset: u64,
    /// Whether the next byte written starts a line.
    line_start: bool,
    last_second: Option<u64>,
}

/// The file of the times of the log at `log`.
pub fn times_path(log: &Path) -> PathBuf {
    log.with_extension("times")
}

impl LineTimes {
    pub(crate) fn new(log: Option<&Path>) -> Self {
        LineTimes { path: log.map(times_path), file: None, offset: 0, line_start: true, last_second: None }
    }

    /// The log file was opened with `len` bytes in it (a run resumed writes after them).
    pub(crate) fn opened(&mut self, len: u64) {
        self.offset = len;
        self.line_start = true;
    }

    /// `bytes` are about to be written to the log; `line_end`: a newline follows them.
    pub(crate) fn write(&mut self, bytes: usize, line_end: bool) {
        if self.line_start && (bytes > 0 || line_end) {
            self.mark();
        }
        self.offset += bytes as u64 + u64::from(line_end);
        if bytes > 0 || line_end {
            self.line_start = line_end;
        }
    }

    /// Records the time of the line starting at the current offset, once a second.
    fn mark(&mut self) {
        let ms = crate::clock::now_ms().max(0) as u64;
        if self.last_second == Some(ms / 1000) {
            return;
        }
        self.last_second = Some(ms / 1000);
        if self.file.is_none()
            && let Some(path) = &self.path
        {
            self.file = crate::paths::private_append(path).ok();
        }
        if let Some(file) = self.file.as_mut() {
            // A time that cannot be written costs the reader a time, never the run.
            let _ = writeln!(file, "{} {ms}", self.offset);
        }
    }
}

/// The times recorded for the log at `log`: `(offset, unix ms)` pairs in order, and
/// the log's length when they were read (lines after it have no recorded time yet).
pub fn read(log: &Path) -> (Vec<(u64, u64)>, u64) {
    // The length first: every line before it has its time written already.
    let size = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let text = std::fs::read_to_string(times_path(log)).unwrap_or_default();
    let times = text
        .lines()
        .filter_map(|line| {
            let (offset, ms) = line.split_once(' ')?;
            Some((offset.parse().ok()?, ms.parse().ok()?))
        })
        .filter(|(offset, _)| *offset < size)
        .collect();
    (times, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_per_second_at_the_start_of_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        std::fs::write(&log, "0123456789\n").unwrap();
        let mut times = LineTimes::new(Some(&log));
        times.opened(11);
        times.write(3, false); // "abc" starts a line at 11
        times.write(2, true); // "de\n" ends it
        times.write(4, true); // the same second: no new time
        std::fs::write(&log, "0123456789\nabcde\nfghi\n").unwrap();
        let (list, size) = read(&log);
        assert_eq!(size, 22);
        assert_eq!(list[0].0, 11, "{list:?}");
        // A second may have begun between the two lines; never inside one.
        assert!(list.iter().all(|(offset, _)| [11, 17].contains(offset)), "{list:?}");
    }
}

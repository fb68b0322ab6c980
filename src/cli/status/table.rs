//! The table of runs `phased status` prints: newest first, each run by the shortest
//! start of its id that names it alone, its age and duration, the progress it reached
//! and, for a FAILED one, the node that failed; statuses in colour on a terminal.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::cli::terminal::clean;
use crate::store::{RunRow, RunStatus};

/// How many runs the table shows without `--limit`.
pub(super) const DEFAULT_LIMIT: usize = 20;

/// Run ids are shown at least this long (`deployment.short_id` is 8 characters);
/// one at most 4 longer is shown whole.
const SHORT_ID: usize = 8;

/// The table of `shown`, with their ids shortened so that each still names one run of
/// `all`; `colors` paints the statuses.
pub(super) fn table(shown: &[&RunRow], all: &[RunRow], colors: bool) -> String {
    let now = SystemTime::now();
    let ids = short_ids(all);
    let rows: Vec<[String; 9]> = shown
        .iter()
        .map(|r| {
            let failed = (r.status == RunStatus::Failed).then(|| r.metadata["failedNode"].as_str()).flatten();
            [
                ids.get(r.id.as_str()).cloned().unwrap_or_else(|| r.id.clone()),
                cell(&r.pipeline, 24),
                cell(r.target.as_deref().unwrap_or("-"), 24),
                r.status.as_str().to_string(),
                cell(&r.phase, 20),
                format!("{}", progress(r)),
                age(&r.created_at, now),
                duration(r, now),
                cell(failed.unwrap_or(""), 32),
            ]
        })
        .collect();
    let header = ["id", "pipeline", "target", "status", "phase", "%", "age", "duration", "failed node"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String], status: Option<RunStatus>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            let padded = match i {
                // Numbers to the right.
                5 | 7 => format!("{cell:>width$}"),
                _ => format!("{cell:<width$}"),
            };
            let padded = match (i, status) {
                (3, Some(status)) => paint(&padded, status, colors),
                (8, Some(RunStatus::Failed)) => paint(&padded, RunStatus::Failed, colors),
                _ => padded,
            };
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(&padded);
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&mut out, &header.map(str::to_string), None);
    for (row, run) in rows.iter().zip(shown) {
        line(&mut out, row, Some(run.status));
    }
    out
}

/// What a run's progress column says: a FAILED run's is the progress it reached (its
/// recorded progress is 0).
fn progress(run: &RunRow) -> u8 {
    match run.status {
        RunStatus::Failed => run.best_progress.max(run.progress),
        _ => run.progress,
    }
}

/// Text from the database, as a cell: no control characters, at most `max` characters.
fn cell(text: &str, max: usize) -> String {
    let text = clean(text, false);
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if text.chars().count() > max => format!("{}…", &text[..cut]),
        _ => text.into_owned(),
    }
}

/// `status` in its colour (the padding stays inside the colour codes: widths hold).
pub(super) fn paint(text: &str, status: RunStatus, colors: bool) -> String {
    let style = match status {
        RunStatus::Succeeded => console::Style::new().green(),
        RunStatus::Failed => console::Style::new().red().bold(),
        RunStatus::Running => console::Style::new().cyan(),
        RunStatus::Queued => console::Style::new().blue(),
        RunStatus::Interrupted | RunStatus::Cancelled => console::Style::new().yellow(),
    };
    style.force_styling(colors).apply_to(text).to_string()
}

/// Each id of `runs` cut to the shortest start (of at least [`SHORT_ID`] characters)
/// that no other id of `runs` starts with, so that it can be passed back to any
/// command.
fn short_ids(runs: &[RunRow]) -> std::collections::HashMap<&str, String> {
    let mut ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    let common = |a: &str, b: &str| a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let before = i.checked_sub(1).map_or(0, |j| common(ids[j], id));
            let after = ids.get(i + 1).map_or(0, |next| common(next, id));
            let keep = (before.max(after) + 1).max(SHORT_ID);
            let keep = if id.chars().count() <= keep + 4 { usize::MAX } else { keep };
            (*id, id.chars().take(keep).collect())
        })
        .collect()
}

fn parse(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

/// `12s ago`, `3m ago`, `5h ago`, `2d ago`.
pub(in crate::cli) fn age(created_at: &str, now: SystemTime) -> String {
    let Some(at) = parse(created_at) else { return "-".into() };
    let seconds = now.duration_since(at).map_or(0, |d| d.as_secs());
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86_400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

/// How long a run took: to its end, or so far while it is queued or running.
pub(super) fn duration(run: &RunRow, now: SystemTime) -> String {
    let Some(start) = parse(&run.created_at) else { return "-".into() };
    let end = match (&run.finished_at, run.status) {
        (Some(end), _) => parse(end),
        (None, RunStatus::Queued | RunStatus::Running) => Some(now),
        // Stopped without an end recorded: its last update.
        (None, _) => parse(&run.phase_updated_at),
    };
    end.and_then(|end| end.duration_since(start).ok()).map_or("-".into(), |d| short_duration(d.as_millis()))
}

/// `850ms`, `12.3s`, `3m 04s`, `2h 05m`.
pub(super) fn short_duration(ms: u128) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h {:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::short_duration;

    #[test]
    fn durations_read_at_a_glance() {
        let cases = [(0, "0ms"), (850, "850ms"), (12_340, "12.3s"), (184_000, "3m 04s"), (7_500_000, "2h 05m")];
        for (ms, text) in cases {
            assert_eq!(short_duration(ms), text);
        }
    }
}

//! Crash points, for the crash tests: named places (before and after each commit,
//! inside the built-in actions' steps) where a debug build can be told to abort, as a
//! power cut or `kill -9` would stop it. Compiled into debug builds (and with the
//! `crash-points` feature); release builds have none.
//!
//! - `PHASED_CRASH_LIST=FILE`: append the name of each point reached to FILE;
//! - `PHASED_CRASH_AT=N`: abort (SIGABRT, no destructor runs) at the N-th point reached.

#[cfg(any(debug_assertions, feature = "crash-points"))]
mod enabled {
    use std::io::Write;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Setting {
        list: Option<std::path::PathBuf>,
        at: Option<usize>,
    }

    static SETTING: OnceLock<Setting> = OnceLock::new();
    static REACHED: AtomicUsize = AtomicUsize::new(0);

    pub(crate) fn point(name: &str) {
        let setting = SETTING.get_or_init(|| Setting {
            list: std::env::var_os("PHASED_CRASH_LIST").map(Into::into),
            at: std::env::var("PHASED_CRASH_AT").ok().and_then(|n| n.parse().ok()),
        });
        if setting.list.is_none() && setting.at.is_none() {
            return;
        }
        let n = REACHED.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(list) = &setting.list
            && let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(list)
        {
            let _ = writeln!(file, "{n} {name}");
        }
        if setting.at == Some(n) {
            eprintln!("crash point {n} ({name}): aborting");
            std::process::abort();
        }
    }
}

#[cfg(any(debug_assertions, feature = "crash-points"))]
pub(crate) use enabled::point;

/// Release builds: nothing.
#[cfg(not(any(debug_assertions, feature = "crash-points")))]
#[inline(always)]
pub(crate) fn point(_name: &str) {}

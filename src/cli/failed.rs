//! The command line's one reading of an [`app::Error`]: what it says on stderr, and the
//! exit code (DESIGN.md section 5: 1 what was run failed or was refused, 2 the command
//! could not start, 3 the environment failed).

use std::path::Path;

use crate::app::{self, Error};
use crate::cli::store::store_error;
use crate::cli::{color_stdout, exit, usage_error};
use crate::diagnostic::Diagnostic;
use crate::engine::EngineError;
use crate::read::releases::RollbackError;
use crate::report;
use crate::reporter::{err_line, note_line};
use crate::store::ClaimError;

/// Says why an operation did not happen and returns the exit code; `db`: the database
/// it worked on (named in what is said about it).
pub(crate) fn failed(e: Error, db: &Path) -> u8 {
    match e {
        Error::NoPipeline { name, hint, looked_in } => {
            let help = hint.unwrap_or_else(|| format!("looked in `{}` and the built-in catalog", looked_in.display()));
            usage_error(format!("no pipeline file or deployment type named `{name}`"), Some(&help))
        }
        Error::Invalid { diagnostics, .. } => {
            print_diagnostics(&diagnostics);
            exit::USAGE
        }
        Error::Inputs { problems, .. } => {
            print_problems(&problems);
            exit::USAGE
        }
        Error::Run(e) | Error::NotQueued(e) => engine_error(e, db),
        Error::Reload { id, name, error } => match *error {
            Error::Invalid { diagnostics, .. } => {
                print_diagnostics(&diagnostics);
                usage_error(
                    format!("the pipeline `{name}` is invalid; run `{id}` is unchanged"),
                    Some("fix the problems above, then `--reload` again"),
                )
            }
            other => failed(other, db),
        },
        Error::NoRun(id) => usage_error(format!("no run `{id}` in `{}`", crate::store::shown(db)), None),
        Error::Rollback { error: RollbackError::Store(e), .. } | Error::Store(e) => store_error(&e, db),
        Error::Rollback { target, error } => {
            err_line(format_args!("error: {error}"));
            if matches!(error, RollbackError::Gone { .. } | RollbackError::ImageGone { .. }) {
                err_line(format_args!(
                    "  help: `phased releases {target}` lists the releases; a release's folder or image is kept while it is one of the newest `keep`"
                ));
            } else {
                err_line(format_args!("  help: `phased releases {target}` lists the releases"));
            }
            exit::FAILED
        }
        Error::RollbackInputs { release, problems } => {
            print_problems(&problems);
            usage_error(format!("release `{release}` does not give its rollback pipeline the inputs it needs"), None)
        }
        Error::Trigger(e) => failed(*e, db),
        e @ (Error::Unreadable { .. } | Error::InputShape(_) | Error::Forbidden(_)) => usage_error(e, None),
    }
}

/// Each input problem, with its help.
fn print_problems(problems: &[app::InputProblem]) {
    for p in problems {
        eprintln!("error: {}", p.message);
        if let Some(help) = &p.help {
            eprintln!("  help: {help}");
        }
    }
}

fn engine_error(e: EngineError, db: &Path) -> u8 {
    match e {
        EngineError::Store(e) => store_error(&e, db),
        EngineError::Snapshot { run, diagnostics } => {
            for d in &diagnostics {
                err_line(format_args!("{}", report::human(d, false)));
            }
            usage_error(format!("the pipeline snapshot of run `{run}` does not compile with this phased"), None)
        }
        EngineError::Rejected { target, by } => {
            err_line(format_args!(
                "error: target `{target}` is busy with run {by}, and the pipeline's concurrency policy is `reject`"
            ));
            err_line(format_args!("  help: wait for it (`phased status {by}`), or cancel it (`phased cancel {by}`)"));
            exit::FAILED
        }
        EngineError::Target(message) => usage_error(message, Some("the target is rendered from the run's inputs")),
        EngineError::Reload { run, error } => usage_error(
            format!("cannot reload the pipeline of run `{run}`: {error}"),
            Some("the run is unchanged; resume it without --reload, or fix the pipeline so that it can"),
        ),
        EngineError::UnknownNode { run, node, help } => {
            usage_error(format!("no node `{node}` in run `{run}`"), help.as_deref())
        }
        EngineError::Claim(ClaimError::Store(e)) => store_error(&e, db),
        EngineError::Claim(ClaimError::Finished { id }) => {
            note_line(format_args!("run `{id}` already succeeded; nothing to resume"));
            exit::OK
        }
        EngineError::Claim(ClaimError::Held { id, pid, host }) => usage_error(
            format!("run `{id}` is being run by process {pid} on `{host}`"),
            Some("wait for it, or stop it with `phased cancel`"),
        ),
        other => usage_error(other, None),
    }
}

/// Prints diagnostics to stderr, as `validate` would show them.
pub(super) fn print_diagnostics(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        eprintln!("{}", report::human(d, color_stdout()));
    }
}

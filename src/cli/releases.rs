//! `phased releases TARGET`: the succeeded runs of a target, newest first, and which
//! one is live.

use crate::cli::store::{open_existing, store_error};
use crate::cli::{OutputFormat, StoreArgs, exit, usage_error};
use crate::read::releases::{Release, releases};
use crate::reporter::out_line;

#[derive(clap::Args, Debug)]
pub(super) struct ReleasesArgs {
    /// The target (the service or project: a run's `concurrency.key`, shown by `status`).
    #[arg(add = crate::cli::complete::targets())]
    target: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
    #[command(flatten)]
    store: StoreArgs,
}

fn what(release: &Release) -> String {
    let d = &release.deployed;
    let mut parts = Vec::new();
    if let Some(commit) = d["commit"].as_str() {
        parts.push(format!("commit {}", &commit[..commit.len().min(12)]));
    }
    if let Some(image) = d["image"].as_str() {
        parts.push(format!("image {image}"));
    }
    if let Some(folder) = d["release"].as_str() {
        parts.push(folder.to_string());
    }
    if let Some(of) = &release.rollback_of {
        parts.insert(0, format!("rollback to {of}:"));
    }
    if parts.is_empty() { "-".into() } else { parts.join(" ") }
}

pub(super) fn releases_command(args: ReleasesArgs) -> u8 {
    let store = match open_existing(&args.store) {
        Ok(Some(store)) => store,
        Ok(None) => return usage_error(format!("no database at `{}`", crate::store::shown(&args.store.db)), None),
        Err(code) => return code,
    };
    let list = match releases(store.as_ref(), &args.target) {
        Ok(list) => list,
        Err(e) => return store_error(&e, &args.store.db),
    };
    if args.format == OutputFormat::Json {
        let json = serde_json::json!({"target": args.target, "releases": list});
        out_line(format_args!("{}", serde_json::to_string_pretty(&json).expect("JSON")));
        return exit::OK;
    }
    if list.is_empty() {
        return usage_error(
            format!("target `{}` has no release (no succeeded run)", args.target),
            Some("the targets are shown by `phased status`"),
        );
    }
    out_line(format_args!(
        "{:<4} {:<38} {:<24} {:>9}  {:<12} DEPLOYED",
        "LIVE", "RUN", "FINISHED", "DURATION", "PIPELINE"
    ));
    for r in &list {
        let duration = r.duration_ms.map(|ms| format!("{:.1}s", ms as f64 / 1000.0)).unwrap_or_else(|| "-".into());
        out_line(format_args!(
            "{:<4} {:<38} {:<24} {:>9}  {:<12} {}",
            if r.live { "*" } else { "" },
            r.id,
            r.finished_at.as_deref().unwrap_or("-"),
            duration,
            r.pipeline,
            what(r)
        ));
    }
    exit::OK
}

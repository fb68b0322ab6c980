//! `phased stats [PIPELINE] [--since 30d]`: per phase and node, how many runs, p50/p95
//! durations and success rates; the nodes that fail most, with their most frequent error.

use std::time::{Duration, SystemTime};

use crate::cli::store::{open_existing, store_error};
use crate::cli::{OutputFormat, StoreArgs, exit, usage_error};
use crate::reporter::out_line;

#[derive(clap::Args, Debug)]
pub(super) struct StatsArgs {
    /// A deployment type (default: every pipeline).
    pipeline: Option<String>,
    /// Runs that finished within this long (`30d`, `2w`, `12h`).
    #[arg(long, value_name = "AGE", default_value = "30d", value_parser = crate::duration::parse_age)]
    since: Duration,
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
    #[command(flatten)]
    store: StoreArgs,
}

fn line(name: &str, v: &serde_json::Value) {
    out_line(format_args!(
        "  {:<28} {:>6} {:>9.1}s {:>9.1}s {:>8.1}%",
        name,
        v["runs"],
        v["p50_seconds"].as_f64().unwrap_or(0.0),
        v["p95_seconds"].as_f64().unwrap_or(0.0),
        v["success_rate"].as_f64().unwrap_or(0.0) * 100.0
    ));
}

pub(super) fn stats(args: StatsArgs) -> u8 {
    let store = match open_existing(&args.store) {
        Ok(Some(store)) => store,
        Ok(None) => return usage_error(format!("no database at `{}`", crate::store::shown(&args.store.db)), None),
        Err(code) => return code,
    };
    let since = SystemTime::now() - args.since;
    let stats = match crate::engine::stats::stats(store.as_ref(), args.pipeline.as_deref(), since) {
        Ok(stats) => stats,
        Err(e) => return store_error(&e, &args.store.db),
    };
    if args.format == OutputFormat::Json {
        out_line(format_args!("{}", serde_json::to_string_pretty(&stats).expect("JSON")));
        return exit::OK;
    }
    let what = args.pipeline.as_deref().unwrap_or("every pipeline");
    if stats["runs"]["runs"] == 0 {
        out_line(format_args!("{what}: no run finished since {}", stats["since"].as_str().unwrap_or("")));
        return exit::OK;
    }
    out_line(format_args!("{what}, runs finished since {}", stats["since"].as_str().unwrap_or("")));
    out_line(format_args!("  {:<28} {:>6} {:>10} {:>10} {:>9}", "", "RUNS", "P50", "P95", "SUCCESS"));
    line("whole runs", &stats["runs"]);
    out_line(format_args!("phases"));
    for p in stats["phases"].as_array().into_iter().flatten() {
        line(p["phase"].as_str().unwrap_or("?"), p);
    }
    out_line(format_args!("nodes"));
    for n in stats["nodes"].as_array().into_iter().flatten() {
        line(n["node"].as_str().unwrap_or("?"), n);
    }
    let failing = stats["failing"].as_array().cloned().unwrap_or_default();
    if !failing.is_empty() {
        out_line(format_args!("failing most"));
        for f in &failing {
            out_line(format_args!(
                "  {:<28} {} of {} runs; most often ({}x): {}",
                f["node"].as_str().unwrap_or("?"),
                f["failures"],
                f["runs"],
                f["times"],
                f["most_frequent_error"].as_str().unwrap_or("")
            ));
        }
    }
    exit::OK
}

//! Benchmark: the engine's own cost per node, with `noop` nodes (so only the engine is
//! measured): 1,000 in a chain and 1,000 fanned out, then 10,000 of each, in both
//! durability modes. The baseline, measured in the same run and in the same mode, is
//! one SQLite commit of one row (WAL), so the figures read as "commits per node".
//! Prints figures; asserts nothing about time.
//!
//! Run: `cargo bench --bench engine`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use phased::catalog::Catalog;
use phased::compiler::Compiler;
use phased::engine::{self, Options, Outcome};
use phased::plan::Plan;
use phased::reporter::Silent;
use phased::secrets::Secrets;
use phased::source::Source;
use phased::store::{self, Durability};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pipeline(nodes: usize, chained: bool) -> Arc<Plan> {
    let mut text = String::from("version: 1\nname: bench\nnodes:\n");
    for i in 0..nodes {
        text.push_str(&format!("  n{i}:\n    phase: BUILDING\n    uses: noop\n"));
        if chained && i > 0 {
            text.push_str(&format!("    needs: [n{}]\n", i - 1));
        }
    }
    let catalog = Catalog::new();
    let mut compiler = Compiler::new(&catalog);
    compiler.compile(&Source::new("bench.yaml", text)).expect("the generated pipeline is valid")
}

fn run_once(plan: &Arc<Plan>, durability: Durability, parallel: usize, dir: &Path) -> Duration {
    let store = store::open(&dir.join("phased.db"), durability).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut reporter = Silent;
    let options = Options {
        parallel,
        secrets: Secrets::default(),
        reporter: &mut reporter,
        data_dir: dir.to_path_buf(),
        stop: None,
    };
    let start = Instant::now();
    let (_, outcome) = runtime
        .block_on(engine::start(
            store,
            Arc::clone(plan),
            Default::default(),
            (None, &phased::actor::Actor::cli()),
            options,
        ))
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(outcome, Outcome::Succeeded);
    elapsed
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    // `PHASED_BENCH_ONLY=chain` (or `fan-out`) runs one shape, for profiling.
    let only = std::env::var("PHASED_BENCH_ONLY").ok();
    println!("engine: noop nodes, per-node cost as a multiple of one SQLite commit measured in the same run");
    println!(
        "{:<8} {:<8} {:>6} {:>9} {:>10} {:>12} {:>15}",
        "mode", "shape", "nodes", "parallel", "total", "per node", "commits/node"
    );
    for durability in [Durability::Normal, Durability::Full] {
        if only.is_some() && durability == Durability::Full {
            continue;
        }
        let mode = if durability == Durability::Full { "full" } else { "normal" };
        let baseline_dir = tempfile::tempdir().unwrap();
        let commit =
            common::commit_cost(baseline_dir.path(), if durability == Durability::Full { "FULL" } else { "NORMAL" });
        println!(
            "{mode:<8} {:<8} {:>6} {:>9} {:>10} {:>10.1}us {:>15}",
            "commit",
            1,
            "-",
            "-",
            commit.as_secs_f64() * 1e6,
            "1.00"
        );
        for (shape, chained, parallel) in [("chain", true, 8), ("fan-out", false, 8), ("fan-out", false, 64)] {
            if only.as_deref().is_some_and(|o| o != shape) {
                continue;
            }
            for nodes in [1_000, 10_000] {
                if durability == Durability::Full && nodes == 10_000 && !chained {
                    continue;
                }
                let plan = pipeline(nodes, chained);
                let runs = if nodes == 1_000 { 5 } else { 3 };
                let samples = (0..runs)
                    .map(|_| {
                        let dir = tempfile::tempdir().unwrap();
                        run_once(&plan, durability, parallel, dir.path())
                    })
                    .collect();
                let total = median(samples);
                let per_node = total / nodes as u32;
                println!(
                    "{mode:<8} {shape:<8} {nodes:>6} {parallel:>9} {:>8.1}ms {:>10.1}us {:>15.2}",
                    total.as_secs_f64() * 1e3,
                    per_node.as_secs_f64() * 1e6,
                    per_node.as_secs_f64() / commit.as_secs_f64()
                );
            }
        }
    }
}

//! Benchmark: validating a generated pipeline of 5,000 nodes, and how the time grows
//! to 50,000. Prints figures (no assertions). The baseline, measured in the same run,
//! is the YAML parser alone iterating the same text's events: the floor any validator
//! of this file pays.
//!
//! Run: `cargo bench --bench validate`

use std::hint::black_box;

/// The binary's allocator, so that the figures are what `phased validate` gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use phased::catalog::Catalog;
use phased::compiler::Compiler;
use phased::source::Source;

/// A layered DAG: each node needs one or two earlier nodes, runs `shell` with a
/// template reading an ancestor's output and an input, and records metadata.
fn pipeline(nodes: usize) -> String {
    let mut text = String::from("version: 1\nname: big\ninputs:\n  target: {type: string, default: /srv}\nnodes:\n");
    for i in 0..nodes {
        text.push_str(&format!("  n{i}:\n    phase: BUILDING\n    weight: {}\n    uses: shell\n", 1 + i % 5));
        if i > 0 {
            let a = i - 1;
            let b = i / 2;
            if a == b {
                text.push_str(&format!("    needs: [n{a}]\n"));
            } else {
                text.push_str(&format!("    needs: [n{a}, n{b}]\n"));
            }
            text.push_str(&format!(
                "    with:\n      run: echo out=1 >> $PHASED_OUTPUT\n      cwd: \"{{{{ inputs.target }}}}/{{{{ nodes.n{a}.outputs.out }}}}\"\n"
            ));
        } else {
            text.push_str("    with: {run: echo out=1 >> $PHASED_OUTPUT}\n");
        }
        text.push_str(&format!("    metadata: {{step: {i}, id: \"{{{{ deployment.short_id }}}}\"}}\n"));
    }
    text
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let catalog = Catalog::new();
    println!("validate: generated layered DAG, median of runs, release build");
    println!("{:>7}  {:>10}  {:>12}  {:>14}  {:>10}", "nodes", "validate", "parse only", "ratio to parse", "per node");
    let mut first_per_node = None;
    for nodes in [5_000, 10_000, 20_000, 50_000] {
        let text = pipeline(nodes);
        let runs = if nodes <= 10_000 { 11 } else { 5 };
        let parse = time(runs, || {
            let events = saphyr_parser::Parser::new_from_str(&text).count();
            black_box(events);
        });
        let validate = time(runs, || {
            let source = Source::new("big.yaml", text.clone());
            let mut compiler = Compiler::new(&catalog);
            let plan = compiler.compile(&source);
            assert!(plan.is_some(), "{:?}", compiler.diagnostics().first());
            black_box(plan);
        });
        let per_node = validate.as_secs_f64() * 1e6 / nodes as f64;
        let growth = first_per_node
            .map_or(String::new(), |f: f64| format!("  ({:.2}x the 5,000-node cost per node)", per_node / f));
        first_per_node.get_or_insert(per_node);
        println!(
            "{nodes:>7}  {:>8.1}ms  {:>10.1}ms  {:>13.1}x  {per_node:>7.1}us{growth}",
            validate.as_secs_f64() * 1e3,
            parse.as_secs_f64() * 1e3,
            validate.as_secs_f64() / parse.as_secs_f64()
        );
    }
}

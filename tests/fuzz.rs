//! A mutation fuzzer for the YAML loader, the compiler (validation and template
//! checking) and `plan`, on the stable toolchain: seeded, in-process, over a corpus
//! of every shipped pipeline, every example and every fixture (including the files
//! earlier runs found, `tests/fixtures/fuzz/`). For each mutant it checks that
//! nothing panics, that every diagnostic points inside its file and renders, that a
//! pipeline that validates either plans or fails with a `file:line:column`, and that
//! `validate` accepts nothing `plan` refuses for what the text alone shows (a filter,
//! test or function that does not exist), its required inputs given.
//!
//! CI runs a short campaign (2,000 mutants). The long one, documented in
//! docs/reliability.md:
//!
//!     PHASED_FUZZ_ITERATIONS=200000 PHASED_FUZZ_SEED=$RANDOM cargo nextest run --release --test fuzz
//!
//! A failing mutant is written to `target/fuzz-findings/` and named in the failure;
//! once fixed, it goes into `tests/fixtures/fuzz/` so that every later run tries it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use phased::catalog::Catalog;
use phased::compiler::{Compiler, inputs};
use phased::source::Source;

/// xorshift64*: small, seeded, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// Pieces that matter to the format: template syntax, YAML structure, the keys.
const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{{ inputs.x }}",
    "{{ nodes.a.outputs.b }}",
    "{{ secrets.s }}",
    "}}}",
    "{{{",
    "{% for i in range(99999999) %}x{% endfor %}",
    "{{ 1 / 0 }}",
    "{{ inputs.items[99] }}",
    "[",
    "]",
    "{",
    "}",
    ": ",
    "- ",
    "&a ",
    "*a",
    "!!binary ",
    "'",
    "\"",
    "\\",
    "\t",
    "\n",
    "\n  ",
    "#",
    "needs: [",
    "uses: ",
    "pipeline: ",
    "phase: ",
    "select: ",
    "from: ",
    "with: ",
    "if: ",
    "weight: -1",
    "retry: {attempts: 0}",
    "timeout: 0s",
    "undo: {uses: noop}",
    "concurrency: {key: x}",
    "outputs: ",
    "result_metadata: ",
    "\u{0}",
    "\u{feff}",
    "é",
    "null",
    "~",
    "1e999",
    "-0",
    "0x10",
    ".inf",
    "true",
    "{a: [b, {c: d}]}",
    "{{ inputs.x | upperr }}",
    "{{ nodes.a.outputs.b | trim | shell_quote }}",
    " | upperr ",
    " | upper ",
    " is definned ",
    " is defined ",
    "{{ nwo() }}",
    "{% filter trimm %}x{% endfilter %}",
    "{% if deployment.id is nope %}x{% endif %}",
    "if: deployment.attempt is odd",
];

fn corpus() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = ["pipelines", "examples", "tests/fixtures"].iter().map(PathBuf::from).collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml")
                && let Ok(bytes) = std::fs::read(&path)
            {
                files.push((path, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    files.sort();
    files
}

fn mutate(rng: &mut Rng, text: &str, corpus: &[(PathBuf, String)]) -> String {
    let mut out = text.to_string();
    let rounds = if rng.below(10) < 7 { 1 } else { 2 + rng.below(3) };
    for _ in 0..rounds {
        let lines: Vec<&str> = out.lines().collect();
        let at = out.floor_char_boundary(rng.below(out.len() + 1));
        out = match rng.below(10) {
            // A value replaced: the file mostly still parses, so the compiler and the
            // template checks get the mutant, not the YAML parser.
            8 | 9 if !lines.is_empty() => {
                let i = rng.below(lines.len());
                let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                if let Some(colon) = v[i].find(": ") {
                    let token = TOKENS[rng.below(TOKENS.len())].replace('\n', " ");
                    v[i] = format!("{}: {token}", &v[i][..colon]);
                }
                v.join("\n")
            }
            0 => format!("{}{}{}", &out[..at], TOKENS[rng.below(TOKENS.len())], &out[at..]),
            1 if !lines.is_empty() => {
                let i = rng.below(lines.len());
                lines.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, l)| *l).collect::<Vec<_>>().join("\n")
            }
            2 if !lines.is_empty() => {
                let i = rng.below(lines.len());
                let mut v = lines.clone();
                v.insert(i, lines[i]);
                v.join("\n")
            }
            3 if lines.len() > 1 => {
                let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                let mut v = lines.clone();
                v.swap(i, j);
                v.join("\n")
            }
            4 => out[..at].to_string(),
            5 => {
                let other = &corpus[rng.below(corpus.len())].1;
                let other: Vec<&str> = other.lines().collect();
                let mut v = lines.clone();
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let take = 1 + rng.below(6.min(other.len() - from));
                    let pos = rng.below(v.len() + 1);
                    for (k, line) in other[from..from + take].iter().enumerate() {
                        v.insert(pos + k, line);
                    }
                }
                v.join("\n")
            }
            6 if !lines.is_empty() => {
                let i = rng.below(lines.len());
                let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                v[i] = if rng.below(2) == 0 { format!("  {}", v[i]) } else { v[i].trim_start().to_string() };
                v.join("\n")
            }
            _ => {
                let depth = 1 + rng.below(200);
                format!("{}{}1{}{}", &out[..at], "[".repeat(depth), "]".repeat(depth), &out[at..])
            }
        };
    }
    out
}

/// What must hold for any file: the first property that did not. `Ok(true)` when the
/// file compiled.
fn check(name: &str, text: &str, catalog: &Catalog) -> Result<bool, String> {
    let source = Source::new(name, text);
    let mut compiler = Compiler::new(catalog);
    let plan =
        catch_unwind(AssertUnwindSafe(|| compiler.compile(&source))).map_err(|_| "validate panicked".to_string())?;
    let diagnostics = compiler.diagnostics();
    for d in &diagnostics {
        if d.source.name == name && (d.span.start > text.len() || d.span.end > text.len() || d.span.start > d.span.end)
        {
            return Err(format!("diagnostic `{}` points outside the file: {:?}", d.code, d.span));
        }
        catch_unwind(AssertUnwindSafe(|| phased::report::human(d, false)))
            .map_err(|_| format!("rendering diagnostic `{}` panicked", d.code))?;
    }
    if plan.is_none() && !diagnostics.iter().any(|d| d.is_error()) {
        return Err("not compiled, yet no error said why".into());
    }
    let Some(plan) = plan else { return Ok(false) };
    let Ok(resolved) = inputs::resolve(&plan.inputs, &required_inputs(&plan)) else { return Ok(true) };
    match catch_unwind(AssertUnwindSafe(|| phased::dry_run::dry_run(&plan, resolved))) {
        Err(_) => Err("plan panicked".into()),
        Ok(Err(e)) if e.line == 0 => Err(format!("a plan failure without a position: {e}")),
        Ok(Err(e)) if refused_for_its_text(&e.message) => Err(format!("validate passed what plan refuses: {e}")),
        Ok(_) => Ok(true),
    }
}

/// A plan failure the pipeline's text alone shows (what `validate` must report):
/// not one that depends on the values (`1 / 0`, `items[99]`).
fn refused_for_its_text(message: &str) -> bool {
    ["unknown filter", "unknown test", "unknown function"].iter().any(|kind| message.contains(kind))
}

/// A value for each required input without a default: the first allowed one, or a
/// plain value of its type.
fn required_inputs(plan: &phased::plan::Plan) -> serde_json::Map<String, serde_json::Value> {
    plan.inputs
        .iter()
        .filter(|(_, spec)| spec.required && spec.default.is_none())
        .map(|(name, spec)| {
            let value = match (spec.allowed.as_ref().and_then(|a| a.first()), spec.ty.as_str()) {
                (Some(first), _) => first.clone(),
                (None, "integer") => serde_json::json!(1),
                (None, "number") => serde_json::json!(1.5),
                (None, "boolean") => serde_json::json!(true),
                (None, "object") => serde_json::json!({}),
                (None, "array") => serde_json::json!([]),
                (None, _) => serde_json::json!("x"),
            };
            (name.clone(), value)
        })
        .collect()
}

fn keep_finding(text: &str, why: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../fuzz-findings");
    std::fs::create_dir_all(&dir).unwrap();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    let path = dir.join(format!("{hash:016x}.yaml"));
    std::fs::write(&path, text).unwrap();
    std::fs::write(path.with_extension("why"), why).unwrap();
    path
}

#[test]
fn mutated_pipelines_never_panic_and_every_problem_has_a_place() {
    let iterations: usize = std::env::var("PHASED_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let seed: u64 = std::env::var("PHASED_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let corpus = corpus();
    assert!(corpus.len() > 40, "the corpus: {} files", corpus.len());
    let catalog = Catalog::new().with_dir(Path::new("pipelines")).with_builtin();
    // Every corpus file as it is first (the earlier findings among them); mutants come
    // mostly from the valid ones, which reach the compiler's deeper checks and `plan`.
    let mut valid = Vec::new();
    for (i, (path, text)) in corpus.iter().enumerate() {
        match check(&path.display().to_string(), text, &catalog) {
            Ok(true) => valid.push(i),
            Ok(false) => {}
            Err(why) => panic!("{}: {why}", path.display()),
        }
    }
    assert!(valid.len() > 10, "{valid:?}");
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (mut compiled, mut slowest) = (0, (Duration::ZERO, String::new()));
    let quiet_panics = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    for i in 0..iterations {
        let parent = if rng.below(5) < 4 { valid[rng.below(valid.len())] } else { rng.below(corpus.len()) };
        let text = mutate(&mut rng, &corpus[parent].1, &corpus);
        let started = Instant::now();
        let verdict = check("mutant.yaml", &text, &catalog);
        let took = started.elapsed();
        if took > slowest.0 {
            slowest = (took, text.clone());
        }
        match verdict {
            Ok(ok) => compiled += usize::from(ok),
            Err(why) => {
                failure = Some((i, why, keep_finding(&text, "")));
                break;
            }
        }
        // A hang is a failure too (10 s is far beyond any real file: this is not a timing).
        if took > Duration::from_secs(10) {
            failure = Some((i, format!("took {took:?}"), keep_finding(&text, "slow")));
            break;
        }
    }
    std::panic::set_hook(quiet_panics);
    if let Some((i, why, path)) = failure {
        panic!("mutant {i} (seed {seed}): {why}; kept as {}", path.display());
    }
    println!(
        "{iterations} mutants of {} files (seed {seed}): none failed; {compiled} compiled; slowest {:?} ({} bytes)",
        corpus.len(),
        slowest.0,
        slowest.1.len()
    );
}

//! `phased plan` through the library: execution order, progress and rendering.

use std::path::Path;

use phased::catalog::Catalog;
use phased::compiler::{Compiler, inputs};
use phased::dry_run::dry_run;
use phased::source::Source;

fn plan_of(path: &str, given: serde_json::Value) -> phased::dry_run::DryRun {
    let catalog = Catalog::new().with_dir(Path::new("pipelines")).with_builtin();
    let source = Source::new(path, std::fs::read_to_string(path).unwrap());
    let mut compiler = Compiler::new(&catalog);
    let plan = compiler.compile(&source).unwrap_or_else(|| panic!("{:?}", compiler.diagnostics()));
    let given = given.as_object().cloned().unwrap_or_default();
    let resolved = inputs::resolve(&plan.inputs, &given).unwrap();
    dry_run(&plan, resolved).unwrap()
}

#[test]
fn a_diamond_runs_in_dependency_order_with_progress_rising_to_100() {
    let result = plan_of("tests/fixtures/plan/diamond.yaml", serde_json::json!({"with_docs": true}));
    let rows: Vec<(&str, u8, u8, bool)> =
        result.nodes.iter().map(|n| (n.node.as_str(), n.progress_start, n.progress_end, n.skipped)).collect();
    assert_eq!(
        rows,
        vec![
            ("fetch", 0, 10, false),
            ("build_app", 10, 30, false),
            ("build_docs", 30, 60, false),
            ("publish", 60, 100, false)
        ]
    );
    insta::assert_json_snapshot!("diamond", result);
}

#[test]
fn a_false_condition_skips_the_node_and_its_weight_still_counts() {
    let result = plan_of("tests/fixtures/plan/diamond.yaml", serde_json::json!({}));
    let docs = result.nodes.iter().find(|n| n.node == "build_docs").unwrap();
    assert!(docs.skipped);
    assert_eq!((docs.progress_start, docs.progress_end), (30, 60));
    assert_eq!(result.nodes.last().unwrap().progress_end, 100);
}

#[test]
fn a_selected_sub_pipeline_is_expanded_with_scaled_weights() {
    let result = plan_of("pipelines/demo.yaml", serde_json::json!({"source": {"type": "local", "path": "/srv/site"}}));
    let rows: Vec<(&str, u8, u8)> =
        result.nodes.iter().map(|n| (n.node.as_str(), n.progress_start, n.progress_end)).collect();
    assert_eq!(
        rows,
        vec![("source", 0, 30), ("source.check", 0, 30), ("lint", 30, 40), ("measure", 40, 50), ("publish", 50, 100)]
    );
    let publish = result.nodes.last().unwrap();
    assert_eq!(publish.with["env"]["FROM"], "<nodes.source.outputs.path>");
    assert_eq!(publish.metadata["bytes"], "<nodes.measure.outputs.bytes>");
    insta::assert_json_snapshot!("demo_local", result, {".nodes[].with.env.TO" => "[release dir]"});
}

/// (phase, progress at start) of each action node after the source, in execution order.
fn phase_starts(path: &str, given: serde_json::Value) -> Vec<(String, u8)> {
    plan_of(path, given)
        .nodes
        .iter()
        .filter(|n| n.uses.is_some() && !n.skipped && !n.node.starts_with("source"))
        .map(|n| (n.phase.clone().unwrap_or_default(), n.progress_start))
        .collect()
}

#[test]
fn the_docker_and_nodejs_types_enter_their_phases_at_the_seed_percentages_and_never_go_back() {
    let given = serde_json::json!({"service": "web", "source": {"type": "local", "path": "/srv/app"}});
    let docker = phase_starts("pipelines/docker.yaml", given.clone());
    assert_eq!(
        docker,
        [("BUILDING", 20), ("COPYING_FILES", 50), ("UPDATING_ROUTES", 75), ("HEALTH_CHECK", 90), ("HEALTH_CHECK", 100)]
            .map(|(p, n)| (p.to_string(), n))
    );
    let nodejs = phase_starts("pipelines/nodejs.yaml", given);
    assert_eq!(
        nodejs,
        [
            ("BUILDING", 15),
            ("BUILDING", 25),
            ("COPYING_FILES", 50),
            ("UPDATING_ROUTES", 75),
            ("HEALTH_CHECK", 90),
            ("HEALTH_CHECK", 100)
        ]
        .map(|(p, n)| (p.to_string(), n))
    );
}

/// Every way a plan can fail to render says where: `file:line:column`, at the template.
#[test]
fn a_plan_that_cannot_be_rendered_names_the_file_line_and_column_of_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // (the node, what the file holds, the line:column of the template)
        (
            "bomb",
            "run: \"{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}\"",
            "does too much work",
        ),
        ("index", "cwd: \"/{{ inputs.items[5] }}\"\n      run: \"true\"", "undefined"),
        ("maths", "cwd: \"/{{ 1 / inputs.zero }}\"\n      run: \"true\"", "unable to calculate"),
    ];
    for (name, with, said) in cases {
        let text = format!(
            "version: 1\nname: {name}\ninputs:\n  items: {{type: array, default: [1]}}\n  zero: {{type: integer, default: 0}}\nnodes:\n  a:\n    phase: BUILDING\n    uses: shell\n    with:\n      {with}\n      env: {{N: \"{{{{ inputs.items | length }}}}{{{{ inputs.zero }}}}\"}}\n"
        );
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_phased")).arg("plan").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        let at = format!("{}:11:12: node `a`", path.display());
        assert!(stderr.contains(&at), "{name}: no position in {stderr}");
        assert!(stderr.contains(said), "{name}: {stderr}");
    }
}

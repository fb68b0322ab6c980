//! The core, driven by hand: each test plays the driver (it "runs" the launched tasks
//! by sending their results back) and reads the transitions, through the same
//! `record` function the driver uses, as events and writes. Every scenario of the
//! engine's integration tests has a fast counterpart here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::*;
use crate::catalog::Catalog;
use crate::compiler::{Compiler, inputs};
use crate::engine::Outcome;
use crate::engine::record::record;
use crate::model::{NodeRow, NodeStatus, RunStatus, Write};
use crate::plan::Plan;
use crate::secrets::Secrets;
use crate::source::Source;

/// A core, the transitions it returned, and a clock that moves 1 ms per message.
struct Run {
    core: Core,
    clock: u64,
    writes: Vec<Write>,
    /// Tasks launched and not yet ended, by qualified id.
    tasks: Vec<Launch>,
    stops: Vec<Task>,
    timers: Vec<(Task, Duration)>,
    launches: Vec<(String, u32, Value)>,
}

fn compile(root: &str, subs: &[(&str, &str)]) -> Arc<Plan> {
    let sources = subs.iter().map(|(name, text)| (name.to_string(), Source::new(format!("{name}.yaml"), *text)));
    let catalog = Catalog::new().with_sources(sources);
    let mut compiler = Compiler::new(&catalog);
    compiler.compile(&Source::new("root.yaml", root)).unwrap_or_else(|| panic!("{:#?}", compiler.diagnostics()))
}

fn checkpoint(node: &str, status: NodeStatus, outputs: Value) -> NodeRow {
    NodeRow {
        run: "r1".into(),
        node: node.into(),
        status,
        attempt: 1,
        outputs: Some(outputs),
        error: None,
        started_at: Some("2026-12-01T00:00:00.000Z".into()),
        finished_at: None,
    }
}

impl Run {
    fn new(plan: Arc<Plan>, given: Value, checkpoints: Vec<NodeRow>, parallel: usize) -> Run {
        let given = given.as_object().cloned().unwrap_or_default();
        let resolved = inputs::resolve(&plan.inputs, &given).expect("valid inputs");
        let secrets = Secrets::from_vars([("PHASED_SECRET_TOKEN".to_string(), "s3cr3t".to_string())]);
        let deployment = DeploymentInfo::new("r1", &plan.name, 1, "2026-12-01T00:00:00.000Z", "/tmp".as_ref());
        let resumed = !checkpoints.is_empty();
        let checkpoints: HashMap<String, NodeRow> = checkpoints.into_iter().map(|r| (r.node.clone(), r)).collect();
        let core = Core::new(CoreStart {
            plan,
            deployment,
            inputs: resolved,
            secrets,
            checkpoints,
            progress: 0,
            phase: crate::phase::QUEUED.into(),
            parallel,
        });
        let mut run =
            Run { core, clock: 0, writes: vec![], tasks: vec![], stops: vec![], timers: vec![], launches: vec![] };
        run.send(Msg::Start { resumed });
        run
    }

    fn send(&mut self, msg: Msg) {
        self.clock += 1;
        let at = format!("2026-12-01T00:00:00.{:03}Z", self.clock);
        if let Msg::Done { task, .. } = &msg {
            self.tasks.retain(|l| l.task != *task);
        }
        for transition in self.core.handle(&at, msg) {
            match transition {
                Transition::Record(r) => self.writes.extend(record("r1", &r)),
                Transition::Launch(launch) => {
                    self.launches.push((launch.id.clone(), launch.task.attempt, launch.with.clone()));
                    self.tasks.push(launch);
                }
                Transition::Stop { task } => self.stops.push(task),
                Transition::Timer { task, after } => self.timers.push((task, after)),
            }
        }
    }

    fn task(&self, id: &str) -> Task {
        self.tasks
            .iter()
            .find(|l| l.id == id)
            .unwrap_or_else(|| panic!("`{id}` is not running: {:?}", self.running()))
            .task
    }

    /// The ids of the tasks running now, in launch order.
    fn running(&self) -> Vec<&str> {
        self.tasks.iter().map(|l| l.id.as_str()).collect()
    }

    fn succeed(&mut self, id: &str, outputs: Value) {
        let task = self.task(id);
        let outputs: Map<String, Value> = outputs.as_object().cloned().unwrap_or_default();
        self.send(Msg::Done { task, result: Ok(outputs) });
    }

    fn fail(&mut self, id: &str, message: &str) {
        let task = self.task(id);
        self.send(Msg::Done { task, result: Err(TaskError::new(message)) });
    }

    /// Each event as `name node`, in order.
    fn events(&self) -> Vec<String> {
        self.event_values()
            .iter()
            .map(|e| {
                format!("{} {}", e["event"].as_str().unwrap(), e["node"].as_str().unwrap_or("")).trim().to_string()
            })
            .collect()
    }

    fn event_values(&self) -> Vec<Value> {
        self.writes
            .iter()
            .filter_map(|w| match w {
                Write::Event(e) => Some(e.to_json()),
                _ => None,
            })
            .collect()
    }

    fn last_event(&self, name: &str) -> Value {
        self.event_values().into_iter().rev().find(|e| e["event"] == name).unwrap_or_else(|| panic!("no {name}"))
    }

    /// The last checkpoint written for `node`.
    fn checkpoint(&self, node: &str) -> Option<&NodeRow> {
        self.writes.iter().rev().find_map(|w| match w {
            Write::Node(row) if row.node == node => Some(row),
            _ => None,
        })
    }

    /// Every progress value the run row was given, in order.
    fn progress(&self) -> Vec<u8> {
        self.writes
            .iter()
            .filter_map(|w| match w {
                Write::Phase { progress, .. } | Write::Progress { progress, .. } => Some(*progress),
                _ => None,
            })
            .collect()
    }

    fn outcome(&self) -> Option<Outcome> {
        self.core.outcome()
    }
}

const CHAIN: &str = r#"
version: 1
name: chain
nodes:
  a: {phase: PULLING_SOURCE, weight: 1, uses: shell, with: {run: "echo a"}}
  b: {phase: BUILDING, weight: 2, needs: [a], uses: shell, with: {run: "echo {{ nodes.a.outputs.v }}"}}
  c: {phase: HEALTH_CHECK, weight: 1, needs: [b], uses: shell, with: {run: "echo c"}}
"#;

#[test]
fn a_chain_runs_in_order_feeds_outputs_forward_and_ends_active_at_100() {
    let mut run = Run::new(compile(CHAIN, &[]), json!({}), vec![], 8);
    assert_eq!(run.running(), ["a"]);
    run.succeed("a", json!({"v": "from-a"}));
    assert_eq!(run.running(), ["b"]);
    assert_eq!(run.launches[1].2["run"], "echo from-a", "b's template read a's output");
    run.succeed("b", json!({}));
    run.succeed("c", json!({}));
    assert_eq!(run.outcome(), Some(Outcome::Succeeded));
    assert_eq!(
        run.events(),
        [
            "run_started",
            "node_started a",
            "node_succeeded a",
            "node_started b",
            "node_succeeded b",
            "node_started c",
            "node_succeeded c",
            "run_succeeded"
        ]
    );
    let progress = run.progress();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "monotonic: {progress:?}");
    assert_eq!(progress.last(), Some(&100));
    let done: Vec<Value> = run.event_values().into_iter().filter(|e| e["event"] == "node_succeeded").collect();
    let at: Vec<&Value> = done.iter().map(|e| &e["progress"]).collect();
    assert_eq!(at, [&json!(25), &json!(75), &json!(99)], "weights 1, 2, 1; 100 only at ACTIVE");
    assert_eq!(run.checkpoint("a").unwrap().status, NodeStatus::Succeeded);
    assert_eq!(run.checkpoint("a").unwrap().outputs, Some(json!({"v": "from-a"})));
}

#[test]
fn independent_nodes_start_together_up_to_parallel_then_in_plan_order() {
    let diamond = r#"
version: 1
name: diamond
nodes:
  a: {phase: BUILDING, uses: noop}
  b: {phase: BUILDING, needs: [a], uses: noop}
  c: {phase: BUILDING, needs: [a], uses: noop}
  d: {phase: HEALTH_CHECK, needs: [b, c], uses: noop}
"#;
    let mut run = Run::new(compile(diamond, &[]), json!({}), vec![], 8);
    run.succeed("a", json!({}));
    assert_eq!(run.running(), ["b", "c"], "b and c in parallel");
    run.succeed("c", json!({}));
    assert_eq!(run.running(), ["b"], "d waits for both");
    run.succeed("b", json!({}));
    assert_eq!(run.running(), ["d"]);

    let mut one = Run::new(compile(diamond, &[]), json!({}), vec![], 1);
    one.succeed("a", json!({}));
    assert_eq!(one.running(), ["b"], "--parallel 1");
}

#[test]
fn a_failed_attempt_waits_its_backoff_then_retries_through_the_same_checks() {
    let flaky = r#"
version: 1
name: flaky
inputs: {port: {type: integer, default: 8080}}
nodes:
  flaky:
    phase: BUILDING
    retry: {attempts: 3, backoff: 50ms}
    uses: shell
    with: {run: "serve", env: {PORT: "{{ inputs.port }}"}}
"#;
    let mut run = Run::new(compile(flaky, &[]), json!({}), vec![], 8);
    assert_eq!(run.launches[0].2["env"]["PORT"], "8080", "an integer becomes the string the parameter declares");
    run.fail("flaky", "boom");
    assert_eq!(run.running(), Vec::<&str>::new(), "nothing runs during the backoff");
    assert_eq!(run.timers, [(Task { node: run.timers[0].0.node, attempt: 2, undo: false }, Duration::from_millis(50))]);
    assert_eq!(run.last_event("node_retrying")["error"], "boom");
    run.send(Msg::Timer { task: run.timers[0].0 });
    assert_eq!(run.launches[1], ("flaky".to_string(), 2, run.launches[0].2.clone()), "re-rendered and converted");
    run.fail("flaky", "boom again");
    assert_eq!(run.timers[1].1, Duration::from_millis(100), "the backoff doubles");
    run.send(Msg::Timer { task: run.timers[1].0 });
    run.fail("flaky", "third");
    assert_eq!(run.outcome(), Some(Outcome::Failed));
    assert_eq!(run.events().iter().filter(|e| *e == "node_retrying flaky").count(), 2);
    let failed = run.checkpoint("flaky").unwrap();
    assert_eq!((failed.status, failed.attempt, failed.error.as_deref()), (NodeStatus::Failed, 3, Some("third")));
}

#[test]
fn a_timed_out_task_is_stopped_and_fails_as_stuck_once_it_has_ended() {
    let stuck = "version: 1\nname: stuck\nnodes:\n  hang: {phase: BUILDING, timeout: 1s, grace: 2s, uses: shell, with: {run: 'sleep 60'}}\n";
    let mut run = Run::new(compile(stuck, &[]), json!({}), vec![], 8);
    assert_eq!(run.tasks[0].grace, Duration::from_secs(2));
    let task = run.task("hang");
    run.send(Msg::TimedOut { task });
    assert_eq!(run.stops, [task], "asked to stop (SIGTERM, then SIGKILL after its grace)");
    assert_eq!(run.outcome(), None, "not failed before its processes are gone");
    run.send(Msg::Done { task, result: Err(TaskError::new("stopped")) });
    assert_eq!(run.outcome(), Some(Outcome::Failed));
    let error = run.checkpoint("hang").unwrap().error.clone().unwrap();
    assert!(error.contains("timed out after 1s: the node is considered stuck"), "{error}");
}

#[test]
fn a_false_condition_skips_the_node_and_its_dependents_still_run() {
    let conditional = r#"
version: 1
name: conditional
inputs: {docs: {type: boolean, default: false}}
nodes:
  docs: {phase: BUILDING, if: inputs.docs, uses: noop}
  publish: {phase: UPDATING_ROUTES, needs: [docs], uses: noop}
"#;
    let mut run = Run::new(compile(conditional, &[]), json!({}), vec![], 8);
    assert_eq!(run.running(), ["publish"]);
    assert_eq!(run.checkpoint("docs").unwrap().status, NodeStatus::Skipped);
    assert_eq!(run.last_event("node_skipped")["progress"], 50, "a skipped node's weight counts as done");
    run.succeed("publish", json!({}));
    assert_eq!(run.outcome(), Some(Outcome::Succeeded));
}

const UNDO: &str = r#"
version: 1
name: undo
nodes:
  copy: {phase: COPYING_FILES, uses: shell, with: {run: copy}, undo: {uses: shell, with: {run: "rm {{ outputs.path }}"}}}
  switch: {phase: CREATING_SYMLINKS, needs: [copy], uses: shell, with: {run: switch}, undo: {uses: shell, with: {run: "back {{ outputs.previous }}"}}}
  side: {phase: CREATING_SYMLINKS, needs: [copy], uses: shell, with: {run: side}}
  check: {phase: HEALTH_CHECK, needs: [switch], uses: shell, with: {run: check}}
"#;

#[test]
fn a_failure_stops_the_others_then_undoes_what_succeeded_latest_first() {
    let mut run = Run::new(compile(UNDO, &[]), json!({}), vec![], 8);
    run.succeed("copy", json!({"path": "/r/1"}));
    assert_eq!(run.running(), ["switch", "side"]);
    run.succeed("switch", json!({"previous": "/r/0"}));
    run.fail("check", "unhealthy");
    assert_eq!(run.stops, [run.task("side")], "the node still running is asked to stop");
    assert_eq!(run.running(), ["side"], "no undo while it runs");
    run.send(Msg::Done { task: run.task("side"), result: Err(TaskError::new("stopped")) });
    assert_eq!(run.running(), ["switch.undo"], "latest first");
    assert_eq!(run.launches.last().unwrap().2["run"], "back /r/0", "the undo reads its node's outputs");
    run.succeed("switch.undo", json!({}));
    assert_eq!(run.running(), ["copy.undo"]);
    run.fail("copy.undo", "cannot remove");
    assert_eq!(run.outcome(), Some(Outcome::Failed));
    let failed = run.last_event("run_failed");
    assert_eq!(failed["node"], "check");
    assert_eq!(failed["metadata"]["reverted"], json!(["switch"]));
    assert_eq!(failed["metadata"]["revertErrors"]["copy"], "cannot remove");
    assert_eq!(failed["metadata"]["failedPhase"], "HEALTH_CHECK");
    assert_eq!(failed["progress"], 0);
    let forgotten: Vec<&Vec<String>> = run
        .writes
        .iter()
        .filter_map(|w| match w {
            Write::ResetNodes { nodes, .. } => Some(nodes),
            _ => None,
        })
        .collect();
    assert_eq!(forgotten, [&vec!["switch".to_string()]], "what was undone runs again on resume");
    assert_eq!(run.checkpoint("side").unwrap().status, NodeStatus::Running, "the stopped node reruns on resume");
}

const SOURCES: [(&str, &str); 2] = [
    (
        "sources/git",
        "version: 1\nname: git\ninputs: {type: {type: string}, url: {type: string, required: true}}\nnodes:\n  clone: {phase: PULLING_SOURCE, uses: shell, with: {run: clone, env: {URL: \"{{ inputs.url }}\"}}}\noutputs: {path: \"{{ nodes.clone.outputs.dir }}\"}\n",
    ),
    (
        "sources/upload",
        "version: 1\nname: upload\ninputs: {type: {type: string}, file: {type: string, required: true}}\nnodes:\n  unpack: {phase: PULLING_SOURCE, uses: shell, with: {run: unpack, env: {FILE: \"{{ inputs.file }}\"}}}\n  verify: {phase: PULLING_SOURCE, needs: [unpack], uses: noop}\noutputs: {path: \"{{ nodes.unpack.outputs.dir }}\"}\n",
    ),
];

const SELECTING: &str = r#"
version: 1
name: site
inputs: {source: {type: object, required: true}}
nodes:
  source:
    weight: 2
    pipeline: {select: "{{ inputs.source.type }}", from: {git: sources/git, upload: sources/upload}}
    with: "{{ inputs.source }}"
  publish: {phase: COPYING_FILES, weight: 2, needs: [source], uses: shell, with: {run: "publish {{ nodes.source.outputs.path }}"}}
"#;

#[test]
fn a_sub_pipeline_is_selected_by_an_input_checkpointed_inside_and_exposes_its_outputs() {
    let plan = compile(SELECTING, &SOURCES);
    let mut run = Run::new(plan, json!({"source": {"type": "upload", "file": "site.tgz"}}), vec![], 8);
    assert_eq!(run.running(), ["source.unpack"]);
    let selection = run.checkpoint("source").unwrap().outputs.clone().unwrap();
    assert_eq!(selection, json!({"$selected": "sources/upload", "$inputs": {"type": "upload", "file": "site.tgz"}}));
    run.succeed("source.unpack", json!({"dir": "/w/site"}));
    assert_eq!(run.last_event("node_succeeded")["progress"], 25, "its nodes share the node's weight");
    run.succeed("source.verify", json!({}));
    assert_eq!(run.checkpoint("source").unwrap().outputs, Some(json!({"path": "/w/site"})));
    assert_eq!(run.launches.last().unwrap().2["run"], "publish /w/site");
    run.succeed("publish", json!({}));
    assert_eq!(run.outcome(), Some(Outcome::Succeeded));
}

#[test]
fn a_resume_keeps_what_succeeded_and_takes_the_recorded_alternative() {
    let plan = compile(SELECTING, &SOURCES);
    let checkpoints = vec![
        checkpoint(
            "source",
            NodeStatus::Running,
            json!({"$selected": "sources/upload", "$inputs": {"file": "old.tgz"}}),
        ),
        checkpoint("source.unpack", NodeStatus::Succeeded, json!({"dir": "/w/old"})),
        checkpoint("source.verify", NodeStatus::Running, json!({})),
    ];
    // The inputs now say git: the recorded choice wins, so the run stays one deployment.
    let mut run = Run::new(plan, json!({"source": {"type": "git", "url": "u"}}), checkpoints, 8);
    assert_eq!(run.events()[0], "run_resumed");
    assert_eq!(run.running(), ["source.verify"], "only what did not finish runs");
    run.succeed("source.verify", json!({}));
    assert_eq!(run.launches.last().unwrap().2["run"], "publish /w/old", "recorded outputs feed later nodes");
}

#[test]
fn resume_from_a_node_forgets_it_what_depends_on_it_and_the_enclosing_nodes() {
    let plan = compile(SELECTING, &SOURCES);
    let (nodes, prefixes) = rerun_set(&plan, "source.unpack").unwrap();
    let mut nodes: Vec<String> = nodes.into_iter().collect();
    nodes.sort();
    assert_eq!(nodes, ["publish", "source", "source.unpack", "source.verify"]);
    assert!(prefixes.is_empty(), "the finished siblings of the sub-pipeline are kept");
    let (nodes, prefixes) = rerun_set(&plan, "source").unwrap();
    assert!(nodes.contains("source") && nodes.contains("publish"));
    assert_eq!(prefixes, ["source."], "the whole sub-pipeline runs again");
    assert!(rerun_set(&plan, "nope").is_none());
    assert!(all_node_ids(&plan).contains(&"source.clone".to_string()), "every alternative's nodes");
}

#[test]
fn cancel_and_signals_stop_the_running_tasks_and_leave_the_run_resumable() {
    for (msg, status, outcome) in [
        (Msg::Cancel, RunStatus::Cancelled, Outcome::Cancelled),
        (Msg::Signal { name: "SIGTERM" }, RunStatus::Interrupted, Outcome::Interrupted),
    ] {
        let mut run = Run::new(compile(UNDO, &[]), json!({}), vec![], 8);
        run.succeed("copy", json!({"path": "/r/1"}));
        run.send(msg.clone());
        assert_eq!(run.stops.len(), 2, "{msg:?}: both running nodes are asked to stop");
        assert_eq!(run.outcome(), None, "the run waits for them");
        run.succeed("switch", json!({}));
        run.send(Msg::Done { task: run.task("side"), result: Err(TaskError::new("stopped")) });
        assert_eq!(run.outcome(), Some(outcome));
        assert!(run.running().is_empty(), "nothing new started, no undo ran");
        assert_eq!(run.checkpoint("switch").unwrap().status, NodeStatus::Succeeded, "what finished counts");
        let stopped = run.writes.iter().rev().find_map(|w| match w {
            Write::Status { status, .. } => Some(*status),
            _ => None,
        });
        assert_eq!(stopped, Some(status));
    }
}

#[test]
fn a_drained_run_starts_nothing_new_and_stops_once_the_running_nodes_finish() {
    let mut run = Run::new(compile(CHAIN, &[]), json!({}), vec![], 8);
    run.send(Msg::Drain { reason: "superseded by newer changes".into(), status: RunStatus::Cancelled });
    assert!(run.stops.is_empty(), "running nodes are not stopped");
    run.succeed("a", json!({"v": "x"}));
    assert!(run.running().is_empty(), "b does not start");
    assert_eq!(run.outcome(), Some(Outcome::Cancelled));
    assert_eq!(run.last_event("run_interrupted")["metadata"]["reason"], "superseded by newer changes");
}

#[test]
fn progress_reports_move_the_bar_forward_only() {
    let mut run = Run::new(compile(CHAIN, &[]), json!({}), vec![], 8);
    let task = run.task("a");
    run.send(Msg::Progress { task, fraction: 0.5 });
    run.send(Msg::Progress { task, fraction: 0.2 });
    run.send(Msg::Progress { task, fraction: 0.5001 });
    let reports: Vec<Value> = run.event_values().into_iter().filter(|e| e["event"] == "node_progress").collect();
    assert_eq!(reports.len(), 1, "only moves of the integer are events: {reports:?}");
    assert_eq!(reports[0]["progress"], 12, "half of a's quarter");
}

#[test]
fn a_rendering_error_at_run_time_names_the_node_key_and_template() {
    let broken = "version: 1\nname: broken\ninputs: {items: {type: array, default: [1]}}\nnodes:\n  go: {phase: BUILDING, uses: shell, with: {run: echo, env: {X: \"{{ inputs.items[3] }}\"}}}\n";
    let mut run = Run::new(compile(broken, &[]), json!({}), vec![], 8);
    assert!(run.running().is_empty());
    assert_eq!(run.outcome(), Some(Outcome::Failed));
    let failed = run.last_event("run_failed");
    let error = failed["error"].as_str().unwrap();
    assert!(error.starts_with("`with.env.X` (`{{ inputs.items[3] }}`): "), "{error}");
    assert_eq!(failed["node"], "go");
    run.send(Msg::Cancel);
    assert_eq!(run.outcome(), Some(Outcome::Failed), "an ended run takes no more messages");
}

#[test]
fn an_environment_failure_ends_failed_environment_and_secrets_never_reach_records() {
    let docker = "version: 1\nname: env\nnodes:\n  go: {phase: BUILDING, uses: shell, with: {run: deploy, env: {TOKEN: \"{{ secrets.token }}\"}}, metadata: {token: \"{{ secrets.token }}\"}}\n";
    let mut run = Run::new(compile(docker, &[]), json!({}), vec![], 8);
    assert_eq!(run.launches[0].2["env"]["TOKEN"], "s3cr3t", "the action gets the secret");
    assert_eq!(run.last_event("node_started")["metadata"]["token"], "***", "records get the mask");
    let task = run.task("go");
    run.send(Msg::Done { task, result: Err(TaskError { message: "engine unreachable".into(), environment: true }) });
    assert_eq!(run.outcome(), Some(Outcome::FailedEnvironment));
}

#[test]
fn a_cancel_that_comes_while_the_last_node_finishes_leaves_the_run_active() {
    let mut run = Run::new(compile(CHAIN, &[]), json!({}), vec![], 8);
    run.succeed("a", json!({"v": "x"}));
    run.succeed("b", json!({}));
    run.send(Msg::Cancel);
    assert_eq!(run.stops, [run.task("c")]);
    run.succeed("c", json!({}));
    assert_eq!(run.outcome(), Some(Outcome::Succeeded), "every node succeeded: ACTIVE, not cancelled");
}

#[test]
fn planned_ids_follow_the_recorded_items_in_either_stored_form() {
    let plan = compile(
        "version: 1\nname: fan\nnodes:\n  hosts:\n    phase: BUILDING\n    foreach: '{{ [\"a.example\", \"b\"] }}'\n    \
         uses: noop\n  after:\n    phase: HEALTH_CHECK\n    needs: [hosts]\n    uses: noop\n",
        &[],
    );
    let none = Recorded::default();
    assert_eq!(planned_ids(&plan, &none), ["hosts", "after"], "no items before the node starts");
    // Today's form (`$items`), and the form runs of an older Phased recorded (`items`).
    for outputs in [json!({"$items": ["a.example", "b"]}), json!({"items": {"a.example": {}, "b": {}}})] {
        let rows = [checkpoint("hosts", NodeStatus::Running, outputs)];
        let recorded = Recorded::of(&rows);
        assert_eq!(planned_ids(&plan, &recorded), ["hosts", "hosts[a.example]", "hosts[b]", "after"]);
    }
    let (nodes, prefixes) = rerun_set(&plan, "hosts[a.example]").unwrap();
    let mut nodes: Vec<String> = nodes.into_iter().collect();
    nodes.sort();
    assert_eq!(nodes, ["after", "hosts", "hosts[a.example]"], "a key with a dot is one item");
    assert_eq!(prefixes, ["hosts[a.example]."]);
}

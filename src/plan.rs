//! What validation proved: a pipeline whose node ids are resolved, whose `needs` form
//! a DAG (in a deterministic execution order), whose actions and sub-pipelines exist
//! and whose templates read only what is in scope. The executor runs this model.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use regex::Regex;

use crate::action::{ActionSpec, Outputs};
use crate::phase::PhaseOrder;
use crate::raw::InputType;
use crate::source::{Source, Span};
use crate::yaml::Yaml;

#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    pub source: Arc<Source>,
    pub phases: PhaseOrder,
    pub inputs: IndexMap<String, InputSpec>,
    /// In declaration order; `needs` and `order` index into this.
    pub nodes: Vec<PlanNode>,
    /// A topological order: declaration order wherever `needs` allows it.
    pub order: Vec<usize>,
    pub outputs: IndexMap<String, Yaml>,
    pub on_success: Option<Yaml>,
    pub on_failure: Option<Yaml>,
}

impl Plan {
    pub fn node(&self, id: &str) -> Option<&PlanNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn total_weight(&self) -> f64 {
        self.nodes.iter().map(|n| n.weight).sum()
    }

    /// The names this pipeline exposes to a pipeline that composes it.
    pub fn output_names(&self) -> Vec<String> {
        self.outputs.keys().cloned().collect()
    }
}

#[derive(Debug)]
pub struct InputSpec {
    pub name: String,
    pub ty: InputType,
    pub required: bool,
    pub default: Option<serde_json::Value>,
    pub allowed: Option<Vec<serde_json::Value>>,
    pub pattern: Option<Regex>,
    pub description: Option<String>,
}

#[derive(Debug)]
pub struct PlanNode {
    pub id: String,
    pub id_span: Span,
    /// The phase reported when the node starts. A sub-pipeline node may leave it out:
    /// its own nodes report their phases.
    pub phase: Option<String>,
    pub weight: f64,
    pub needs: Vec<usize>,
    pub condition: Option<String>,
    pub kind: NodeKind,
    pub with: Option<Yaml>,
    pub metadata: Option<Yaml>,
    pub result_metadata: Option<Yaml>,
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL when the node is stopped.
    pub grace: Duration,
    pub retry: Retry,
    /// What reverses this node's effect if the run fails after it.
    pub undo: Option<Undo>,
}

#[derive(Debug)]
pub struct Undo {
    pub condition: Option<String>,
    pub action: &'static ActionSpec,
    pub with: Option<Yaml>,
}

#[derive(Debug)]
pub enum NodeKind {
    Action(&'static ActionSpec),
    Pipeline(SubPipeline),
}

#[derive(Debug)]
pub enum SubPipeline {
    Fixed { name: String, plan: Arc<Plan> },
    Select { expr: String, from: IndexMap<String, (String, Arc<Plan>)> },
}

impl std::fmt::Debug for ActionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ActionSpec({})", self.name)
    }
}

/// What a node declares it outputs, for checking the templates that read them.
#[derive(Clone, Debug, PartialEq)]
pub enum DeclaredOutputs {
    Any,
    Names(Vec<String>),
}

impl DeclaredOutputs {
    pub fn of_action(action: &ActionSpec) -> Self {
        match action.outputs {
            Outputs::Any => DeclaredOutputs::Any,
            Outputs::Fixed(names) => DeclaredOutputs::Names(names.iter().map(|s| s.to_string()).collect()),
        }
    }

    pub fn allows(&self, name: &str) -> bool {
        match self {
            DeclaredOutputs::Any => true,
            DeclaredOutputs::Names(names) => names.iter().any(|n| n == name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retry {
    /// Runs in all, at least 1.
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Retry {
    /// The wait before attempt `attempt` (2, 3, ...): `backoff` doubling, capped.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(30);
        self.backoff.saturating_mul(1 << doublings).min(self.max_backoff)
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 1, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(30) }
    }
}

/// The default node timeout (stuck detection), as in the system Phased replaces.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a stopped node's processes get between SIGTERM and SIGKILL by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

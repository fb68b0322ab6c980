//! What serde reads from a pipeline file, before anything is checked. These types
//! also generate `schemas/pipeline.schema.json`, so editors check files as they are
//! typed. Positions are kept ([`Spanned`], [`Yaml`]) for the checks that come later.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::de::Spanned;
use crate::duration::Duration;
pub(crate) use crate::model::{NotifyFormat, NotifyOn, Policy};
use crate::source::Span;
use crate::yaml::Yaml;

/// A pipeline file: one deployment type, or a sub-pipeline other pipelines compose.
#[derive(Debug, JsonSchema)]
#[schemars(deny_unknown_fields, title = "Phased pipeline")]
pub(crate) struct RawPipeline {
    /// The format version; always 1.
    #[schemars(with = "u32")]
    pub version: Spanned<u32>,
    /// The deployment type (or sub-pipeline) name; unique within a catalog.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// What the deployment type is for (shown by the API and the dashboard).
    pub description: Option<String>,
    /// Extra phases for this deployment type, each placed after an existing phase.
    #[serde(default)]
    pub phases: Vec<RawPhase>,
    /// Typed inputs, validated before anything runs.
    #[serde(default)]
    pub inputs: IndexMap<String, RawInput>,
    /// Settings every node inherits unless it sets its own.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// Runs of one target (the service or project a run deploys) never overlap.
    pub concurrency: Option<RawConcurrency>,
    /// The pipeline `phased rollback` runs to make one of this type's releases live
    /// again: it gets the release's inputs (those it declares) and `release` (`id`,
    /// `pipeline`, `inputs`, `metadata`: the run's final metadata, `outputs`: each
    /// node's outputs).
    #[schemars(with = "Option<String>")]
    pub rollback: Option<Spanned<String>>,
    /// Webhooks sent when a run ends (delivered through an outbox: retried, and sent
    /// after a crash; a failed delivery never changes the run's outcome).
    #[serde(default)]
    pub notify: Vec<RawNotify>,
    /// The steps of the deployment; the key is the node id (snake_case).
    pub nodes: IndexMap<String, RawNode>,
    /// What this pipeline exposes to a pipeline that composes it (templated values).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, serde_json::Value>")]
    pub outputs: IndexMap<String, Yaml>,
    pub on_success: Option<RawHook>,
    pub on_failure: Option<RawHook>,
    /// Where the keys of `inputs`, `nodes` and `outputs` are (not part of the format).
    #[schemars(skip)]
    pub key_spans: KeySpans,
}

#[derive(Debug, Default)]
pub(crate) struct KeySpans {
    pub inputs: IndexMap<String, Span>,
    pub nodes: IndexMap<String, Span>,
    pub outputs: IndexMap<String, Span>,
    pub nodes_key: Option<Span>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPhase {
    /// UPPER_SNAKE_CASE name of the new phase.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The existing phase this one comes right after.
    #[schemars(with = "String")]
    pub after: Spanned<String>,
}

/// `concurrency: {key, policy}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConcurrency {
    /// The run's target, a template over `inputs` (`"{{ inputs.service }}"`).
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// What a new run does while another run of its target is queued or running.
    #[serde(default)]
    pub policy: Policy,
}

/// One entry of `notify:`: when, and where to.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    /// The outcomes that send it.
    #[schemars(length(min = 1))]
    pub on: Vec<NotifyOn>,
    pub webhook: RawWebhook,
}

/// A webhook notification: a POST of the run's outcome.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    /// Where to POST: a template over `secrets`, `inputs` and `deployment`
    /// (`"{{ secrets.slack_url }}"`), rendered when it is sent, never stored rendered.
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    /// `json` (the run's outcome as an object) or `slack` (an incoming-webhook message).
    #[serde(default)]
    pub format: NotifyFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Integer,
    Number,
    Boolean,
    Object,
    Array,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::Object => "object",
            InputType::Array => "array",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    #[serde(rename = "type")]
    #[schemars(with = "InputType")]
    pub ty: Spanned<InputType>,
    #[serde(default)]
    pub required: bool,
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<Yaml>,
    /// The allowed values.
    #[serde(rename = "enum")]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub allowed: Option<Yaml>,
    /// A regular expression a string input must match.
    #[schemars(with = "Option<String>")]
    pub pattern: Option<Spanned<String>>,
    pub description: Option<String>,
    /// The value is a file or folder path. Given by an API `deploy` token or a
    /// webhook, it must lie under the server's data folder or an `--allow-path` folder.
    #[serde(default)]
    #[schemars(with = "bool")]
    pub path: Option<Spanned<bool>>,
    /// Only the operator may set it (the command line, an `admin` token, the server's
    /// triggers file): a proxy's configuration, a base folder, a Docker engine, the
    /// name of a secret. A `deploy` token or a webhook that gives it is refused (403).
    #[serde(default)]
    pub operator: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    /// A node running longer than this is failed as stuck (default `5m`).
    #[schemars(with = "Option<Duration>")]
    pub timeout: Option<Spanned<Duration>>,
    /// How long a stopped node's processes get between SIGTERM and SIGKILL (default `10s`).
    pub grace: Option<Duration>,
    pub retry: Option<RawRetry>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    /// How many times the node may run in all (1 = no retry).
    #[schemars(with = "Option<u32>")]
    pub attempts: Option<Spanned<u32>>,
    /// The wait before the second attempt; it doubles after each failure.
    pub backoff: Option<Duration>,
    /// The longest wait between attempts.
    pub max_backoff: Option<Duration>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    /// What the node does, for readers of the file.
    #[expect(dead_code, reason = "part of the format, for people: nothing reads it at run time")]
    pub description: Option<String>,
    /// The phase the run reports while this node runs.
    #[schemars(with = "Option<String>")]
    pub phase: Option<Spanned<String>>,
    /// This node's share of the progress bar (default 1).
    #[schemars(with = "Option<f64>")]
    pub weight: Option<Spanned<f64>>,
    /// The nodes that must finish (or be skipped) before this one starts.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub needs: Vec<Spanned<String>>,
    /// A minijinja expression; the node is skipped when it is false.
    #[serde(rename = "if")]
    #[schemars(with = "Option<String>")]
    pub condition: Option<Spanned<String>>,
    /// The built-in action this node runs (`noun.verb`).
    #[schemars(with = "Option<String>")]
    pub uses: Option<Spanned<String>>,
    /// A sub-pipeline this node runs instead of an action: a name, or
    /// `{select: "{{ expression }}", from: {value: name, ...}}`.
    #[schemars(with = "Option<PipelineRefSchema>")]
    pub pipeline: Option<Yaml>,
    /// The action's parameters, or the sub-pipeline's inputs (templated).
    #[schemars(with = "Option<serde_json::Value>")]
    pub with: Option<Yaml>,
    /// Runs the node once per item of a list, each checkpointed as `id[key]` with
    /// `item` in scope: `"{{ inputs.hosts }}"`, or `{items: "{{ inputs.hosts }}",
    /// key: "{{ item.name }}", parallel: 2, on_failure: continue}` (`fail_fast` by
    /// default: the first failed item fails the run).
    #[schemars(with = "Option<ForeachSchema>")]
    pub foreach: Option<Yaml>,
    /// Recorded when the node starts (templated).
    #[schemars(with = "Option<IndexMap<String, serde_json::Value>>")]
    pub metadata: Option<Yaml>,
    /// Recorded when the node succeeds; `outputs` is in scope (templated).
    #[schemars(with = "Option<IndexMap<String, serde_json::Value>>")]
    pub result_metadata: Option<Yaml>,
    #[schemars(with = "Option<Duration>")]
    pub timeout: Option<Spanned<Duration>>,
    /// When the node is stopped (Ctrl-C, `phased cancel`, its timeout), how long its
    /// processes get between SIGTERM (a `trap` runs) and SIGKILL (default `10s`).
    pub grace: Option<Duration>,
    pub retry: Option<RawRetry>,
    /// An action that reverses what this node did, run if the run fails after this
    /// node succeeded (for instance switching the live link back); `outputs` is in scope.
    pub undo: Option<RawUndo>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUndo {
    /// A minijinja expression; the undo is skipped when it is false.
    #[serde(rename = "if")]
    #[schemars(with = "Option<String>")]
    pub condition: Option<Spanned<String>>,
    /// The built-in action that reverses the node's effect.
    #[schemars(with = "String")]
    pub uses: Spanned<String>,
    /// Its parameters (templated; the node's `outputs` are in scope).
    #[schemars(with = "Option<serde_json::Value>")]
    pub with: Option<Yaml>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHook {
    /// Recorded with the final phase (templated).
    #[schemars(with = "Option<IndexMap<String, serde_json::Value>>")]
    pub metadata: Option<Yaml>,
}

/// Only for the JSON Schema: the two forms of `pipeline:`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "describes the schema; the compiler reads the YAML node")]
enum PipelineRefSchema {
    Name(String),
    Select { select: String, from: IndexMap<String, String> },
}

/// `foreach:` as written (for the JSON Schema): a template, or its long form.
#[derive(JsonSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "describes the format for editors; the compiler reads the YAML")]
pub(crate) enum ForeachSchema {
    Items(String),
    Full {
        /// The list: one run of the node per item (`item` in scope).
        items: String,
        /// An item's name in the node id `id[name]` (`item` in scope); default: a text
        /// item itself, a mapping's `name`, else its index.
        key: Option<String>,
        /// At most this many items at once.
        parallel: Option<u32>,
        /// `fail_fast` (default): the first failed item fails the run; `continue`: the
        /// others go on, then the node fails naming each failed item.
        on_failure: Option<ForeachFailure>,
    },
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[expect(dead_code, reason = "describes the format for editors")]
pub(crate) enum ForeachFailure {
    FailFast,
    Continue,
}

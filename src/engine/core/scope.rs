//! The values templates see during a run. Two flavours: for actions (`with:`, `if:`),
//! where `secrets.<name>` is the real value, and for records (metadata, outputs),
//! where it is `***`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::{Object, Value};
use serde_json::{Map, json};

use crate::secrets::{MASK, Secrets};

/// What the `deployment` variable holds.
#[derive(Clone, Debug)]
pub struct DeploymentInfo {
    pub id: String,
    pub pipeline: String,
    pub attempt: u32,
    pub started_at: String,
    /// The run's own scratch folder: `work/<run id>` beside the database.
    pub work_dir: PathBuf,
    /// The folder of node logs and work folders (beside the database, or
    /// `PHASED_DATA_DIR`): a place of the operator's that a pipeline may keep files in.
    pub data_dir: PathBuf,
    /// The run id of the release of the run's target that was live when this attempt
    /// started (`phased releases`); empty when there is none.
    pub live_release: String,
}

impl DeploymentInfo {
    pub fn new(id: &str, pipeline: &str, attempt: u32, started_at: &str, data_dir: &Path) -> Self {
        DeploymentInfo {
            id: id.to_string(),
            pipeline: pipeline.to_string(),
            attempt,
            started_at: started_at.to_string(),
            work_dir: data_dir.join("work").join(id),
            data_dir: data_dir.to_path_buf(),
            live_release: String::new(),
        }
    }

    /// With the target's live release (see [`crate::engine::live_release`]).
    pub fn with_live_release(mut self, live: Option<String>) -> Self {
        self.live_release = live.unwrap_or_default();
        self
    }

    pub fn short_id(&self) -> String {
        self.id.chars().take(8).collect()
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "short_id": self.short_id(),
            "pipeline": self.pipeline,
            "attempt": self.attempt,
            "started_at": self.started_at,
            "work_dir": self.work_dir.display().to_string(),
            "data_dir": self.data_dir.display().to_string(),
            "live_release": self.live_release,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// Parameters handed to an action: secrets are real.
    Action,
    /// Anything recorded or printed: secrets are `***`.
    Record,
}

/// Builds a template context.
pub(super) struct Scope<'a> {
    pub deployment: &'a DeploymentInfo,
    pub inputs: &'a Map<String, serde_json::Value>,
    /// `nodes.<id>.outputs` of the nodes that finished (in this pipeline instance).
    pub nodes: &'a Map<String, serde_json::Value>,
    pub secrets: &'a Secrets,
    /// What `now()` returns: the time of the message being handled (the core has no
    /// clock of its own).
    pub now: &'a str,
}

impl Scope<'_> {
    pub(super) fn context(&self, purpose: Purpose, extra: &[(&str, serde_json::Value)]) -> Value {
        let mut vars: BTreeMap<&str, Value> = BTreeMap::new();
        vars.insert("inputs", Value::from(minijinja::value::Serde(self.inputs)));
        vars.insert("deployment", Value::from(minijinja::value::Serde(self.deployment.to_json())));
        vars.insert("nodes", Value::from(minijinja::value::Serde(self.nodes)));
        vars.insert(
            "secrets",
            match purpose {
                Purpose::Action => Value::from(minijinja::value::Serde(self.secrets.values())),
                Purpose::Record => Value::from_object(Masked(self.secrets.values().keys().cloned().collect())),
            },
        );
        vars.insert(crate::template::NOW_VARIABLE, Value::from(self.now));
        for (name, value) in extra {
            vars.insert(name, Value::from(minijinja::value::Serde(value)));
        }
        Value::from(vars)
    }
}

/// `secrets` in records: each known secret reads as `***`; an unknown one is undefined.
#[derive(Debug)]
struct Masked(Vec<String>);

impl Object for Masked {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.0.iter().any(|k| k == key).then(|| Value::from(MASK))
    }
}

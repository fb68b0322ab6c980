//! What a pipeline asks of its run beyond its nodes: what a new run does while its
//! target is busy ([`Policy`]), and when and how it is told of ([`NotifyOn`],
//! [`NotifyFormat`]). Pipeline files name them (serde reads them, the schema
//! describes them); the plan, the engine, the notifier and the store use them.

use schemars::JsonSchema;
use serde::Deserialize;

/// A run's outcome a notification is sent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    Succeeded,
    Failed,
    Cancelled,
}

impl NotifyOn {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Succeeded => "succeeded",
            NotifyOn::Failed => "failed",
            NotifyOn::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    #[default]
    Json,
    Slack,
}

impl NotifyFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Json => "json",
            NotifyFormat::Slack => "slack",
        }
    }
}

/// What a new run does while another run of its target is queued or running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Wait (status `queued`) until the target is free, oldest first.
    #[default]
    Queue,
    /// Cancel the queued runs, stop the running one at its next node boundary, then start.
    Supersede,
    /// Refuse to start.
    Reject,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Queue => "queue",
            Policy::Supersede => "supersede",
            Policy::Reject => "reject",
        }
    }
}

//! Where a run and a node stand, what a token may do, and what the holder of a run
//! is asked to do: the words the engine, the store and the front ends share.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Interrupted,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> RunStatus {
        match text {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => RunStatus::Interrupted,
        }
    }
}

/// What a token may do: `read` (look), `deploy` (start, cancel, resume runs), `admin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Deploy,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Deploy => "deploy",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Read, Role::Deploy, Role::Admin].into_iter().find(|r| r.as_str() == text)
    }
}

/// What the holder of a run is asked to do (`cancel_requested`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopRequest {
    None,
    /// `phased cancel`: stop now (running steps get their grace).
    Cancel,
    /// A newer run of the target: finish the running nodes, start no more.
    Supersede,
}

/// Where a new or waiting run stands with its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It may run now (its status is `running`).
    Admitted,
    /// It waits (status `queued`) behind this run of its target.
    Queued { behind: String },
    /// Policy `reject`: refused while this run of its target is queued or running;
    /// nothing was written.
    Rejected { by: String },
    /// It is no longer waiting: superseded or cancelled meanwhile.
    Gone { status: RunStatus },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    Running,
    Succeeded,
    Failed,
    Skipped,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Running => "running",
            NodeStatus::Succeeded => "succeeded",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> NodeStatus {
        match text {
            "succeeded" => NodeStatus::Succeeded,
            "failed" => NodeStatus::Failed,
            "skipped" => NodeStatus::Skipped,
            _ => NodeStatus::Running,
        }
    }
}

//! Why an operation of the application layer did not happen. Each front end has one
//! function that turns it into what it says: an exit code and lines on stderr
//! (`cli::failed`), a status and a JSON body (`serve::refused`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::admit::Refusal;
use crate::diagnostic::Diagnostic;
use crate::engine::EngineError;
use crate::plan::Plan;
use crate::read::releases::RollbackError;
use crate::store::StoreError;

use super::pipelines::InputProblem;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// No pipeline file and no deployment type of this name (`hint`: a close name).
    #[error("no pipeline file or deployment type named `{name}`")]
    NoPipeline { name: String, hint: Option<String>, looked_in: PathBuf },
    /// A pipeline file that cannot be read.
    #[error("cannot read `{path}`: {error}")]
    Unreadable { path: String, error: String },
    /// The pipeline does not compile: every diagnostic, warnings too.
    #[error("`{name}` does not validate")]
    Invalid { name: String, diagnostics: Vec<Diagnostic> },
    /// Inputs given as JSON that a pipeline's inputs cannot take.
    #[error("{0}")]
    InputShape(String),
    /// The inputs do not fit the pipeline's declarations.
    #[error("the inputs do not fit the pipeline")]
    Inputs { plan: Arc<Plan>, problems: Vec<InputProblem> },
    /// Inputs this caller may not give (`crate::admit`).
    #[error("inputs not allowed for this caller")]
    Forbidden(Vec<Refusal>),
    /// The run could not start, queue or go on.
    #[error(transparent)]
    Run(EngineError),
    /// `--reload`: the pipeline of run `id` on disk now, `name`, could not be loaded.
    #[error("cannot reload the pipeline `{name}` of run `{id}`: {error}")]
    Reload { id: String, name: String, error: Box<Error> },
    /// No run of this id.
    #[error("no run `{0}`")]
    NoRun(String),
    /// A rollback of `target` that cannot start.
    #[error("{error}")]
    Rollback { target: String, error: RollbackError },
    /// The release does not give its rollback pipeline the inputs it declares.
    #[error("release `{release}` does not give its rollback pipeline the inputs it needs")]
    RollbackInputs { release: String, problems: Vec<InputProblem> },
    /// A rollback run, checked, that could not be queued.
    #[error("{0}")]
    NotQueued(EngineError),
    /// A trigger's run that could not be queued (said as a webhook says it).
    #[error("{0}")]
    Trigger(Box<Error>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        Error::Run(e)
    }
}

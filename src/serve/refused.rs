//! The API's one reading of an [`app::Error`]: a status and a JSON body
//! (`{"error": {"code", "message", "diagnostics"?}}`, DESIGN.md section 9).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use serde_json::{Value, json};

use crate::app::{Error, InputProblem};
use crate::engine::EngineError;
use crate::plan::Plan;
use crate::read::releases::RollbackError;
use crate::store::ClaimError;

/// What the API answers when an operation did not happen.
pub(super) fn refused(e: Error) -> Response {
    let conflict = |code, message: String| ApiError::new(StatusCode::CONFLICT, code, message).into_response();
    match e {
        Error::NoPipeline { name, hint, .. } => {
            let message = format!("no deployment type `{name}` {}", hint.unwrap_or_default());
            bad_request("unknown-pipeline", message, Vec::new())
        }
        Error::Invalid { name, diagnostics } => {
            let list = diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| serde_json::to_value(crate::report::JsonDiagnostic::from(d)).expect("JSON"))
                .collect();
            bad_request("invalid-pipeline", format!("`{name}` does not validate"), list)
        }
        Error::InputShape(message) => bad_request("bad-request", message, Vec::new()),
        Error::Inputs { plan, problems } => {
            let list = input_diagnostics(&plan, &problems);
            bad_request("invalid-inputs", "the inputs do not fit the pipeline", list)
        }
        Error::Forbidden(refusals) => forbidden_inputs(&refusals),
        Error::Run(e) => run_error(e).into_response(),
        Error::NoRun(_) => ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run").into_response(),
        Error::Rollback { error: RollbackError::Store(e), .. } | Error::Store(e) => ApiError::from(e).into_response(),
        Error::Rollback { error, .. } => conflict("no-rollback", error.to_string()),
        Error::RollbackInputs { problems, .. } => {
            let text: Vec<String> = problems.into_iter().map(|p| p.message).collect();
            conflict("no-rollback", text.join("; "))
        }
        Error::NotQueued(e) => conflict("not-queued", e.to_string()),
        Error::Trigger(e) => trigger_error(*e).into_response(),
        e @ (Error::Unreadable { .. } | Error::Reload { .. }) => {
            ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.to_string()).into_response()
        }
    }
}

/// A run that could not be queued or requeued.
fn run_error(e: EngineError) -> ApiError {
    match e {
        EngineError::DuplicateId(id) => {
            ApiError::new(StatusCode::CONFLICT, "id-taken", format!("a run with id `{id}` already exists"))
        }
        EngineError::Rejected { target, by } => ApiError::new(
            StatusCode::CONFLICT,
            "rejected",
            format!("target `{target}` is busy with run {by}, and the pipeline's concurrency policy is `reject`"),
        ),
        EngineError::Claim(ClaimError::Missing(_)) => ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such run"),
        EngineError::Claim(ClaimError::Finished { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "finished", "the run already succeeded; nothing to resume")
        }
        EngineError::Claim(ClaimError::Held { pid, host, .. }) => {
            ApiError::new(StatusCode::CONFLICT, "held", format!("the run is being run by process {pid} on `{host}`"))
        }
        EngineError::UnknownNode { node, help, .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown-node",
            format!("no node `{node}` in this run{}", help.map(|h| format!(" ({h})")).unwrap_or_default()),
        ),
        EngineError::Store(e) | EngineError::Claim(ClaimError::Store(e)) => e.into(),
        e => ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.to_string()),
    }
}

/// A trigger's run that could not be queued, as `POST /hooks/{trigger}` says it.
fn trigger_error(e: Error) -> ApiError {
    match e {
        Error::NoPipeline { .. } => ApiError::new(StatusCode::BAD_REQUEST, "bad-trigger", "no such pipeline"),
        Error::Invalid { name, .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid-pipeline", format!("`{name}` does not validate"))
        }
        Error::Inputs { problems, .. } => {
            let text: Vec<String> = problems.into_iter().map(|p| p.message).collect();
            ApiError::new(StatusCode::BAD_REQUEST, "invalid-inputs", text.join("; "))
        }
        Error::Run(e) => ApiError::new(StatusCode::CONFLICT, "not-queued", e.to_string()),
        Error::Store(e) => e.into(),
        e => ApiError::new(StatusCode::BAD_REQUEST, "bad-trigger", e.to_string()),
    }
}

pub(super) fn bad_request(code: &'static str, message: impl Into<String>, diagnostics: Vec<Value>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into(), "diagnostics": diagnostics}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// 403 naming each input the caller may not give, with the diagnostics' shape.
pub(super) fn forbidden_inputs(refused: &[crate::admit::Refusal]) -> Response {
    let list: Vec<Value> = refused
        .iter()
        .map(|r| json!({"severity": "error", "code": "forbidden-input", "input": r.input, "message": r.message, "help": r.help}))
        .collect();
    let names: Vec<String> = refused.iter().map(|r| format!("`{}`", r.input)).collect();
    let message = format!("not allowed for this caller: {}", names.join(", "));
    let body = json!({"error": {"code": "forbidden-input", "message": message, "diagnostics": list}});
    (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}

/// The input problems of a request as diagnostics, worded for any client (the
/// command line's `-i` advice is the command line's own).
pub(super) fn input_diagnostics(plan: &Plan, problems: &[InputProblem]) -> Vec<Value> {
    problems
        .iter()
        .map(|p| {
            let spec = plan.inputs.get(&p.input);
            let help = match spec {
                Some(spec) if p.message.starts_with("missing required input") => spec.description.clone(),
                _ => p.help.clone(),
            };
            json!({"severity": "error", "code": "invalid-input", "input": p.input, "message": p.message, "help": help})
        })
        .collect()
}

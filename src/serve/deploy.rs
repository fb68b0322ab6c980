//! What the dashboard's deploy form needs besides `POST /api/v1/runs`: each input's
//! schema with what the form can build from it (the alternatives of an object input a
//! `select` sub-pipeline reads, such as `source`; which inputs only the operator sets),
//! the input problems in words for a form rather than for the command line, and
//! `POST /api/v1/plan`: what a run would do, checked as a run is, started never.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::refused::{bad_request, refused};
use super::{ApiError, ApiResult, App};
use crate::app::Given;
use crate::plan::{InputSpec, NodeKind, Plan, SubPipeline};
use crate::template::Block;

/// One input as a JSON Schema, with `x-operator` (only the operator sets it: an
/// `admin` token, the command line) and `x-path` (a path under the server's folders).
fn input_schema(spec: &InputSpec) -> Value {
    let mut schema = json!({"type": spec.ty.as_str()});
    if let Some(d) = &spec.description {
        schema["description"] = json!(d);
    }
    if let Some(d) = &spec.default {
        schema["default"] = d.clone();
    }
    if let Some(allowed) = &spec.allowed {
        schema["enum"] = json!(allowed);
    }
    if let Some(pattern) = &spec.pattern {
        schema["pattern"] = json!(pattern.as_str());
    }
    if spec.operator {
        schema["x-operator"] = json!(true);
    }
    if spec.path {
        schema["x-path"] = json!(true);
    }
    schema
}

/// `plan`'s inputs as a JSON Schema object; an object input handed whole to a `select`
/// sub-pipeline gets `oneOf`, one alternative per pipeline it may select, each with
/// that pipeline's inputs and its selector fixed (`{"type": {"const": "git"}}`).
pub(super) fn inputs_form(plan: &Plan) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, spec) in &plan.inputs {
        let mut schema = input_schema(spec);
        if let Some(alternatives) = alternatives(plan, name) {
            schema["oneOf"] = alternatives;
        }
        if spec.required && spec.default.is_none() {
            required.push(name.clone());
        }
        properties.insert(name.clone(), schema);
    }
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// `inputs.NAME.FIELD` when `text` is exactly `{{ inputs.NAME.FIELD }}`.
fn read_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let field = inner.strip_prefix("inputs.")?.strip_prefix(name)?.strip_prefix('.')?;
    field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_').then_some(field)
}

/// The alternatives of object input `name`: a top-level node that selects its
/// sub-pipeline by `{{ inputs.NAME.FIELD }}` and is given `{{ inputs.NAME }}` whole.
fn alternatives(plan: &Plan, name: &str) -> Option<Value> {
    for node in &plan.nodes {
        let NodeKind::Pipeline(SubPipeline::Select { expr, from }) = &node.kind else { continue };
        let Some(field) = read_field(&expr.text, name) else { continue };
        let whole = matches!(&node.with, Some(Block::Template(t))
            if t.text.trim().trim_start_matches("{{").trim_end_matches("}}").trim() == format!("inputs.{name}"));
        if !whole {
            continue;
        }
        let list: Vec<Value> = from
            .iter()
            .map(|(key, (pipeline, child))| {
                let mut schema = inputs_form(child);
                schema["title"] = json!(key);
                schema["x-pipeline"] = json!(pipeline);
                schema["properties"][field] = json!({"const": key, "type": "string"});
                if let Some(required) = schema["required"].as_array_mut() {
                    required.retain(|r| r != field);
                    required.insert(0, json!(field));
                }
                schema
            })
            .collect();
        return Some(Value::Array(list));
    }
    None
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanBody {
    pipeline: String,
    #[serde(default)]
    inputs: Map<String, Value>,
}

/// `POST /api/v1/plan` `{"pipeline", "inputs"}`: what a run with these inputs would
/// do (as `phased plan --format json`), checked as `POST /api/v1/runs` checks a run
/// (the same token, role and admission), and nothing started. 200 with the plan; 400
/// for an invalid pipeline, inputs or template; 403 for an input this caller may not
/// give.
pub(super) async fn plan(
    State(app): State<Arc<App>>,
    token: Option<axum::Extension<crate::store::TokenRow>>,
    body: axum::body::Bytes,
) -> ApiResult {
    let caller = match token.map(|t| t.0.role) {
        Some(crate::store::Role::Admin) => crate::admit::Caller::Operator,
        _ => crate::admit::Caller::Untrusted,
    };
    let request: PlanBody = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return Ok(bad_request("bad-request", format!("the request body: {e}"), Vec::new())),
    };
    let answer = tokio::task::spawn_blocking(move || {
        let pipelines = crate::app::Pipelines::new(&app.pipelines);
        let (plan, inputs) =
            match pipelines.admit(&request.pipeline, Given::Values(&request.inputs), caller, &app.roots) {
                Ok(admitted) => admitted,
                Err(e) => return refused(e),
            };
        match crate::dry_run::dry_run(&plan, inputs) {
            Ok(result) => axum::Json(result).into_response(),
            Err(e) => {
                let diagnostic = json!({"severity": "error", "code": "template", "node": e.node, "message": e.message});
                bad_request("invalid-plan", format!("node `{}`: {}", e.node, e.message), vec![diagnostic])
            }
        }
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(answer)
}

//! The dashboard (DESIGN.md section 10): one page and its scripts and style, built into
//! the binary, reading the same API and event streams as any client. Sign-in trades a
//! token for a session cookie (HttpOnly, SameSite=Strict; only its hash is stored), so
//! that the page's script never holds the token.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, ApiResult, App, auth};
use crate::store::{Role, TokenRow};

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const RUN_SCRIPT: &str = include_str!("ui/run.js");
const GRAPH_SCRIPT: &str = include_str!("ui/graph.js");
const LOG_SCRIPT: &str = include_str!("ui/log.js");
const DEPLOY_SCRIPT: &str = include_str!("ui/deploy.js");
const STYLE: &str = include_str!("ui/app.css");
const ICON: &str = include_str!("ui/icon.svg");

/// The page may load only its own files and speak only to this server.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                      form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page. It holds no data: what it shows comes from the API once signed in.
pub(super) async fn page() -> Response {
    file("text/html; charset=utf-8", PAGE)
}

/// `GET /ui/{file}`: the script, the style and the icon.
pub(super) async fn asset(Path(name): Path<String>) -> ApiResult {
    match name.as_str() {
        "app.js" => Ok(file("text/javascript; charset=utf-8", SCRIPT)),
        "run.js" => Ok(file("text/javascript; charset=utf-8", RUN_SCRIPT)),
        "graph.js" => Ok(file("text/javascript; charset=utf-8", GRAPH_SCRIPT)),
        "log.js" => Ok(file("text/javascript; charset=utf-8", LOG_SCRIPT)),
        "deploy.js" => Ok(file("text/javascript; charset=utf-8", DEPLOY_SCRIPT)),
        "app.css" => Ok(file("text/css; charset=utf-8", STYLE)),
        "icon.svg" => Ok(file("image/svg+xml", ICON)),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such file")),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignIn {
    token: String,
}

fn cookie(value: &str, max_age: i64, headers: &HeaderMap, public: Option<&str>) -> String {
    // Behind a TLS proxy the cookie is sent over TLS only.
    let tls = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https")
        || public.is_some_and(|p| p.starts_with("https://"));
    let secure = if tls { "; Secure" } else { "" };
    format!("{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}", auth::SESSION_COOKIE)
}

/// `POST /session` `{"token"}`: checks the token and starts a session: 200 with the
/// token's name and role and the cookie; 401 for a token that is not one of ours.
pub(super) async fn sign_in(State(app): State<Arc<App>>, headers: HeaderMap, body: axum::body::Bytes) -> ApiResult {
    if !auth::same_origin(&headers, app.public_url.as_deref()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "cross-origin", "sign in from the dashboard's own page"));
    }
    let request: SignIn = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-request", format!("the request body: {e}")))?;
    let secret = auth::new_token();
    let hashed = auth::hash(&secret);
    let bearer = format!("Bearer {}", request.token.trim());
    let verdict = app
        .with_store(move |store| {
            let token = match auth::check(store, Some(&bearer), Role::Read)? {
                Ok(token) => token,
                Err(_) => return Ok(None),
            };
            let now = crate::clock::now_ms();
            let expires = now + auth::SESSION_HOURS * 3_600_000;
            store.create_session(&hashed, &token.name, &crate::clock::now(), expires, now)?;
            Ok(Some(token))
        })
        .await?;
    let Some(token) = verdict else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this token is not valid (or was revoked)",
        ));
    };
    let set = cookie(&secret, auth::SESSION_HOURS * 3600, &headers, app.public_url.as_deref());
    Ok(([(header::SET_COOKIE, set)], axum::Json(json!({"name": token.name, "role": token.role.as_str()})))
        .into_response())
}

/// `DELETE /session`: ends the session and clears the cookie.
pub(super) async fn sign_out(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    if !auth::same_origin(&headers, app.public_url.as_deref()) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "cross-origin", "sign out from the dashboard's own page"));
    }
    if let Some(secret) = auth::session_of(&headers) {
        app.with_store(move |store| Ok(store.end_session(&auth::hash(&secret))?)).await?;
    }
    Ok(([(header::SET_COOKIE, cookie("", 0, &headers, app.public_url.as_deref()))], StatusCode::NO_CONTENT)
        .into_response())
}

/// `GET /api/v1/session`: who the request is (the token's name and role).
pub(super) async fn whoami(axum::Extension(token): axum::Extension<TokenRow>) -> ApiResult {
    Ok(axum::Json(json!({"name": token.name, "role": token.role.as_str()})).into_response())
}

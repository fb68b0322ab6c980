//! `http.check`: polls a URL until it answers with the expected status (and body).
//! Each request is one step of the node's progress. `https://` is checked against the
//! system's certificate authorities, plus `ca_file` for a private one.

use std::time::Duration as StdDuration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, ActionOutputs, Outputs};
use crate::duration::Duration;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpCheckParams {
    /// The URL to request (`http://` or `https://`).
    pub url: String,
    /// https: a PEM file of a certificate authority to trust as well (a private CA).
    pub ca_file: Option<String>,
    /// The `Host` header to send (to check a domain through a proxy by its name).
    pub host: Option<String>,
    /// The status code that counts as healthy (default 200).
    #[serde(default = "default_status")]
    #[schemars(range(min = 100, max = 599))]
    pub status: u16,
    /// Text the body must contain.
    pub contains: Option<String>,
    /// How many requests to make before giving up (default 30).
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1))]
    pub attempts: u32,
    /// The wait between requests (default `1s`).
    pub interval: Option<Duration>,
    /// The timeout of one request (default `5s`).
    pub timeout: Option<Duration>,
}

fn default_status() -> u16 {
    200
}

fn default_attempts() -> u32 {
    30
}

impl HttpCheckParams {
    pub(super) fn check(&self) -> Result<(), String> {
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(format!("`url` must start with http:// or https://, got `{}`", self.url));
        }
        if self.ca_file.is_some() && !self.url.starts_with("https://") {
            return Err("`ca_file` applies to https:// URLs only".into());
        }
        if !(100..=599).contains(&self.status) {
            return Err(format!("`status` {} is not an HTTP status code", self.status));
        }
        if self.attempts == 0 {
            return Err("`attempts` must be at least 1".into());
        }
        Ok(())
    }
}

fn run(ctx: ActionCtx, params: HttpCheckParams) -> ActionFuture {
    Box::pin(async move {
        let interval = params.interval.map_or(StdDuration::from_secs(1), |d| d.0);
        let timeout = params.timeout.map_or(StdDuration::from_secs(5), |d| d.0);
        let client = client(timeout, params.ca_file.as_deref())?;
        let mut last = String::new();
        for attempt in 1..=params.attempts {
            match probe(&client, &params.url, params.host.as_deref(), params.status, params.contains.as_deref()).await {
                Ok(status) => {
                    ctx.log.line(&format!("{} answered {status} (request {attempt})", params.url));
                    let mut out = ActionOutputs::new();
                    out.insert("status".into(), status.into());
                    out.insert("url".into(), params.url.clone().into());
                    out.insert("attempts".into(), attempt.into());
                    return Ok(out);
                }
                Err(e) => last = e,
            }
            ctx.log.line(&format!("{}: {last} (request {attempt} of {})", params.url, params.attempts));
            ctx.progress.report(attempt as f64 / params.attempts as f64);
            if attempt < params.attempts {
                tokio::time::sleep(interval).await;
            }
        }
        Err(ActionError::new(format!(
            "health check of {} failed after {} requests: {last}",
            params.url, params.attempts
        ))
        .with_tail(ctx.log.tail()))
    })
}

/// One request: the status when it is `status` (and the body contains `contains`),
/// else what was wrong.
pub(crate) async fn probe(
    client: &reqwest::Client,
    url: &str,
    host: Option<&str>,
    status: u16,
    contains: Option<&str>,
) -> Result<u16, String> {
    let mut request = client.get(url);
    if let Some(host) = host {
        request = request.header(reqwest::header::HOST, host);
    }
    let response = request.send().await.map_err(|e| {
        let text = describe(&e);
        if text.contains("UnknownIssuer") {
            format!("{text} (signed by a private certificate authority? give its certificate as `ca_file`)")
        } else {
            text
        }
    })?;
    let got = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if got != status {
        return Err(format!("answered {got}, expected {status}"));
    }
    match contains {
        Some(c) if !body.contains(c) => Err(format!("answered {got} but the body does not contain `{c}`")),
        _ => Ok(got),
    }
}

/// An HTTP client for health checks: no proxy, `timeout` per request, and the
/// certificate authority in `ca_file` trusted besides the system's.
pub(crate) fn client(timeout: StdDuration, ca_file: Option<&str>) -> Result<reqwest::Client, ActionError> {
    let mut builder = reqwest::Client::builder().timeout(timeout).no_proxy();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| ActionError::new(format!("cannot read `ca_file` `{path}`: {e}")))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| ActionError::new(format!("`ca_file` `{path}` is not a PEM certificate: {e}")))?;
        builder = builder.add_root_certificate(ca);
    }
    builder.build().map_err(|e| ActionError::new(format!("cannot create an HTTP client: {e}")))
}

fn describe(e: &reqwest::Error) -> String {
    let text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        e.to_string()
    };
    super::with_causes(text, e)
}

action_spec!(
    HttpCheckParams,
    name: "http.check",
    summary: "Poll a URL until it answers with the expected status and body.",
    outputs: Outputs::Fixed(&["status", "url", "attempts"]),
    example: "url: http://127.0.0.1:8080/health\nhost: blog.example.test\nstatus: 200\ncontains: ok\nattempts: 10\ninterval: 500ms",
    run: run,
);

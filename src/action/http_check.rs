//! `http.check`: polls a URL until it answers with the expected status (and body).

use schemars::JsonSchema;
use serde::Deserialize;

use super::Outputs;
use super::spec::action_spec;
use crate::duration::Duration;

#[derive(Debug, Deserialize, JsonSchema)]
#[expect(dead_code, reason = "the executor reads the parameters; validation only checks them")]
#[serde(deny_unknown_fields)]
pub struct HttpCheckParams {
    /// The URL to request (http:// or https://).
    pub url: String,
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
    pub fn check(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!("`url` must start with http:// or https://, got `{}`", self.url));
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

action_spec!(
    HttpCheckParams,
    name: "http.check",
    summary: "Poll a URL until it answers with the expected status and body.",
    outputs: Outputs::Fixed(&["status", "url", "attempts"]),
    example: "url: http://127.0.0.1:8080/health\nstatus: 200\ncontains: ok\nattempts: 10\ninterval: 500ms",
);

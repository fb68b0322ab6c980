//! Git push webhooks (`phased serve --triggers FILE`, DESIGN.md section 9): the file,
//! its checks (`phased validate` runs them too), the signature of a delivery (checked
//! in constant time before anything is parsed), and what a push means.
//!
//! ```yaml
//! triggers:
//!   web:                                  # POST /hooks/web
//!     provider: github                    # github | gitlab | gitea | generic
//!     secret: hook_web                    # secrets.hook_web: HMAC key or token
//!     repository: acme/web
//!     branch: main
//!     pipeline: docker
//!     inputs: {service: web, source: {type: git, url: "{{ push.clone_url }}", ref: "{{ push.commit }}"}}
//!     max_age: 24h                        # optional: refuse a push whose head commit is older
//! ```
//!
//! A trigger's key must not be empty: `phased serve` does not start with one that is
//! (see [`unkeyed`]), and [`signed`] never accepts an empty key.

use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::diagnostic::{Diagnostic, DiagnosticCode};
use crate::source::{Source, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Gitlab,
    Gitea,
    /// `X-Phased-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, and a body of
    /// `{ref, commit, repository, clone_url}` (and `timestamp`, RFC 3339, the head
    /// commit's time that `max_age` reads).
    Generic,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub provider: Provider,
    /// The name of the secret (`PHASED_SECRET_<NAME>`) holding the key or token.
    pub secret: String,
    /// `owner/name`, as the provider names it.
    pub repository: String,
    pub branch: String,
    pub pipeline: String,
    /// The run's inputs; `{{ push.commit }}`, `push.branch`, `push.ref`,
    /// `push.repository`, `push.clone_url` are in scope.
    #[serde(default)]
    pub inputs: serde_json::Map<String, Value>,
    /// A push whose head commit was made longer ago than this is not deployed (an
    /// old delivery sent again); a push that gives no time for it neither.
    #[serde(default)]
    pub(crate) max_age: Option<crate::duration::Duration>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    triggers: IndexMap<String, Trigger>,
}

const PUSH_FIELDS: &[&str] = &["commit", "branch", "ref", "repository", "clone_url"];

/// Whether a file is a triggers file (its top level has `triggers:`).
pub fn is_triggers_file(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("triggers:"))
}

/// Reads and checks a triggers file: every problem, each at its line.
pub fn load(source: &Arc<Source>, catalog: &Catalog) -> (Option<IndexMap<String, Trigger>>, Vec<Diagnostic>) {
    let yaml = match crate::yaml::parse(source) {
        Ok(yaml) => yaml,
        Err(d) => return (None, vec![d]),
    };
    let at = |name: &str| -> Span {
        let needle = format!("{name}:");
        source.text.find(&needle).map_or(Span::new(0, 0), |i| Span::new(i, i + name.len()))
    };
    let file: File = match serde_path_to_error::deserialize(yaml.to_json()) {
        Ok(file) => file,
        Err(e) => {
            let path = e.path().to_string();
            let place = path.split('.').nth(1).map_or(Span::new(0, 0), at);
            let d =
                Diagnostic::error(DiagnosticCode::InvalidTrigger, source, place, format!("`{path}`: {}", e.inner()))
                    .with_help("a trigger has provider, secret, repository, branch, pipeline and inputs");
            return (None, vec![d]);
        }
    };
    let mut problems = Vec::new();
    for (name, trigger) in &file.triggers {
        let place = at(name);
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
            problems.push(Diagnostic::error(
                DiagnosticCode::InvalidTrigger,
                source,
                place,
                format!("`{name}` is not a trigger name (it is a URL path: /hooks/{name})"),
            ));
        }
        if catalog.get(&trigger.pipeline).is_none() {
            let names = catalog.names();
            let hint = crate::suggest::hint(&trigger.pipeline, names.iter().map(String::as_str));
            problems.push(
                Diagnostic::error(
                    DiagnosticCode::InvalidTrigger,
                    source,
                    place,
                    format!("trigger `{name}`: no deployment type `{}`", trigger.pipeline),
                )
                .with_help_opt(hint),
            );
        }
        if trigger.secret.is_empty() || trigger.repository.is_empty() || trigger.branch.is_empty() {
            problems.push(Diagnostic::error(
                DiagnosticCode::InvalidTrigger,
                source,
                place,
                format!("trigger `{name}`: `secret`, `repository` and `branch` must not be empty"),
            ));
        } else if !super::push::is_repository(&trigger.repository) || !super::push::is_ref(&trigger.branch) {
            problems.push(
                Diagnostic::error(
                    DiagnosticCode::InvalidTrigger,
                    source,
                    place,
                    format!(
                        "trigger `{name}`: `{}@{}` is not a repository and a branch",
                        trigger.repository, trigger.branch
                    ),
                )
                .with_help("`repository` is `owner/name` as the forge names it; `branch` a git branch name (`main`)"),
            );
        }
        let mut templates = crate::template::Templates::default();
        let mut texts = Vec::new();
        trigger.inputs.values().for_each(|v| strings(v, &mut texts));
        for text in texts.iter().filter(|t| crate::template::is_template(t)) {
            match templates.compile(text, place) {
                Ok(template) => {
                    for call in
                        template.calls.iter().filter(|c| !c.is_known() && c.kind != crate::template::CallKind::Function)
                    {
                        problems.push(
                            Diagnostic::error(
                                DiagnosticCode::InvalidTrigger,
                                source,
                                place,
                                format!("trigger `{name}`: unknown {} `{}` in `{text}`", call.kind.noun(), call.name),
                            )
                            .with_help(call.help()),
                        );
                    }
                    for var in &template.variables {
                        let mut parts = var.split('.');
                        let ok = parts.next() == Some("push") && parts.next().is_none_or(|f| PUSH_FIELDS.contains(&f));
                        if !ok {
                            problems.push(
                                Diagnostic::error(
                                    DiagnosticCode::InvalidTrigger,
                                    source,
                                    place,
                                    format!("trigger `{name}`: `{var}` is not in scope"),
                                )
                                .with_help(format!("a trigger's inputs read `push.{{{}}}`", PUSH_FIELDS.join(", "))),
                            );
                        }
                    }
                }
                Err(e) => problems.push(Diagnostic::error(
                    DiagnosticCode::InvalidTrigger,
                    source,
                    place,
                    format!("trigger `{name}`: invalid template `{text}`: {}", e.message),
                )),
            }
        }
    }
    if problems.is_empty() { (Some(file.triggers), problems) } else { (None, problems) }
}

fn strings<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner_hash = Sha256::new().chain_update(&inner).chain_update(message).finalize();
    Sha256::new().chain_update(&outer).chain_update(inner_hash).finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a key may authenticate anything: an empty one (or only spaces) never does,
/// as anyone can compute an HMAC over it, or send an empty token.
fn usable(secret: &str) -> bool {
    !secret.trim().is_empty()
}

/// The signature a delivery's headers give (the hex HMAC), for the providers that sign.
fn signature(provider: Provider, headers: &axum::http::HeaderMap) -> Option<&str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let given = match provider {
        Provider::Github => header("x-hub-signature-256")?.strip_prefix("sha256=")?,
        Provider::Generic => header("x-phased-signature-256")?.strip_prefix("sha256=")?,
        Provider::Gitea => header("x-gitea-signature")?,
        Provider::Gitlab => return None,
    };
    (given.len() == 64 && given.bytes().all(|b| b.is_ascii_hexdigit())).then_some(given)
}

/// What the headers alone tell, before the body is read: false when the delivery
/// cannot be genuine (no usable key, no signature of the right form, a wrong GitLab
/// token, which needs no body), so that it is refused without waiting for its body.
pub fn may_be_signed(provider: Provider, secret: &str, headers: &axum::http::HeaderMap) -> bool {
    if !usable(secret) {
        return false;
    }
    match provider {
        Provider::Gitlab => headers
            .get("x-gitlab-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .is_some_and(|given| same(given.as_bytes(), secret.as_bytes())),
        _ => signature(provider, headers).is_some(),
    }
}

/// Whether a delivery carries the right signature (or token, for GitLab).
pub fn signed(provider: Provider, secret: &str, headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    if !may_be_signed(provider, secret, headers) {
        return false;
    }
    let expected = hex(&hmac_sha256(secret.as_bytes(), body));
    match provider {
        Provider::Gitlab => true,
        _ => signature(provider, headers)
            .is_some_and(|given| same(given.to_ascii_lowercase().as_bytes(), expected.as_bytes())),
    }
}

/// The triggers whose key is empty or not set, each with its variable: `phased serve`
/// does not start with any.
pub fn unkeyed<'t>(
    triggers: &'t IndexMap<String, Trigger>,
    secrets: &crate::secrets::Secrets,
) -> Vec<(&'t str, String)> {
    triggers
        .iter()
        .filter(|(_, t)| !secrets.values().get(&t.secret.to_lowercase()).is_some_and(|k| usable(k)))
        .map(|(name, t)| (name.as_str(), format!("{}{}", crate::secrets::PREFIX, t.secret.to_uppercase())))
        .collect()
}

/// The key a delivery is known by apart from its id: its signed body, with the
/// trigger's name, so that the same delivery sent again under another id (or none)
/// is seen as the one it is.
pub fn body_key(trigger: &str, body: &[u8]) -> String {
    let digest = Sha256::new().chain_update(trigger.as_bytes()).chain_update(b"\n").chain_update(body).finalize();
    format!("sha256:{}", hex(&digest))
}

/// The id of a delivery, to run each once.
pub fn delivery_id(provider: Provider, headers: &axum::http::HeaderMap) -> Option<String> {
    let name = match provider {
        Provider::Github => "x-github-delivery",
        Provider::Gitea => "x-gitea-delivery",
        Provider::Gitlab => "x-gitlab-event-uuid",
        Provider::Generic => "x-phased-delivery",
    };
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// What a push says: `{commit, branch, ref, repository, clone_url}`.
pub fn push_of(provider: Provider, payload: &Value) -> Option<Value> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let (reference, commit, repository, clone_url) = match provider {
        Provider::Github | Provider::Gitea => (
            text(&payload["ref"])?,
            text(&payload["after"])?,
            text(&payload["repository"]["full_name"])?,
            text(&payload["repository"]["clone_url"])?,
        ),
        Provider::Gitlab => (
            text(&payload["ref"])?,
            text(&payload["checkout_sha"]).or_else(|| text(&payload["after"]))?,
            text(&payload["project"]["path_with_namespace"])?,
            text(&payload["project"]["git_http_url"])?,
        ),
        Provider::Generic => (
            text(&payload["ref"])?,
            text(&payload["commit"])?,
            text(&payload["repository"])?,
            text(&payload["clone_url"])?,
        ),
    };
    let branch = reference.strip_prefix("refs/heads/").unwrap_or(&reference).to_string();
    Some(
        json!({"commit": commit, "branch": branch, "ref": reference, "repository": repository, "clone_url": clone_url}),
    )
}

/// The trigger's inputs with `push` rendered into them.
pub fn inputs_for(trigger: &Trigger, push: &Value) -> Result<serde_json::Map<String, Value>, String> {
    let mut templates = crate::template::Templates::default();
    let ctx = minijinja::Value::from(minijinja::value::Serde(json!({ "push": push })));
    fn render(
        value: &Value,
        templates: &mut crate::template::Templates,
        ctx: &minijinja::Value,
    ) -> Result<Value, String> {
        Ok(match value {
            Value::String(s) if crate::template::is_template(s) => {
                let template = templates.compile(s, Span::new(0, 0)).map_err(|e| e.message)?;
                template.eval(templates, ctx).map_err(|e| crate::template::describe_error(&e))?
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| render(v, templates, ctx)).collect::<Result<_, _>>()?)
            }
            Value::Object(map) => Value::Object(
                map.iter().map(|(k, v)| Ok((k.clone(), render(v, templates, ctx)?))).collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }
    match render(&Value::Object(trigger.inputs.clone()), &mut templates, &ctx)? {
        Value::Object(map) => Ok(map),
        _ => unreachable!("an object renders to an object"),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn each_provider_signs_its_own_way_and_nothing_else_passes() {
        let body = br#"{"ref": "refs/heads/main"}"#;
        let mac = hex(&hmac_sha256(b"k3y", body));
        let cases = [
            (Provider::Github, "x-hub-signature-256", format!("sha256={mac}")),
            (Provider::Generic, "x-phased-signature-256", format!("sha256={mac}")),
            (Provider::Gitea, "x-gitea-signature", mac.clone()),
            (Provider::Gitlab, "x-gitlab-token", "k3y".to_string()),
        ];
        for (provider, header, good) in &cases {
            assert!(signed(*provider, "k3y", &headers(&[(header, good.as_str())]), body), "{provider:?}");
            assert!(
                !signed(*provider, "other", &headers(&[(header, good.as_str())]), body),
                "{provider:?}: another secret"
            );
            assert!(!signed(*provider, "k3y", &headers(&[]), body), "{provider:?}: no header");
            assert!(!signed(*provider, "k3y", &headers(&[(header, "sha256=00")]), body), "{provider:?}: a wrong one");
            // Another provider's header is not this one's.
            for (other, other_header, other_good) in &cases {
                if other != provider && other_header != header {
                    assert!(!signed(*provider, "k3y", &headers(&[(other_header, other_good.as_str())]), body));
                }
            }
        }
        assert!(!signed(
            Provider::Github,
            "k3y",
            &headers(&[("x-hub-signature-256", &format!("sha256={mac}"))]),
            b"{}"
        ));
    }

    #[test]
    fn an_empty_key_never_authenticates_and_a_missing_signature_is_seen_from_the_headers() {
        let body = br#"{"ref": "refs/heads/main"}"#;
        for key in ["", " "] {
            let mac = hex(&hmac_sha256(key.as_bytes(), body));
            let forged = [
                (Provider::Github, "x-hub-signature-256", format!("sha256={mac}")),
                (Provider::Generic, "x-phased-signature-256", format!("sha256={mac}")),
                (Provider::Gitea, "x-gitea-signature", mac.clone()),
                (Provider::Gitlab, "x-gitlab-token", key.to_string()),
            ];
            for (provider, header, value) in &forged {
                let headers = headers(&[(header, value.as_str())]);
                assert!(!signed(*provider, key, &headers, body), "{provider:?} with the key {key:?}");
            }
        }
        let (github, gitlab) = (Provider::Github, Provider::Gitlab);
        assert!(!may_be_signed(github, "k", &headers(&[])), "no signature");
        assert!(!may_be_signed(github, "k", &headers(&[("x-hub-signature-256", "sha256=abc")])), "too short");
        assert!(may_be_signed(
            github,
            "k",
            &headers(&[("x-hub-signature-256", &format!("sha256={}", "a".repeat(64)))])
        ));
        assert!(!may_be_signed(gitlab, "k3y", &headers(&[("x-gitlab-token", "k3")])), "a token is checked at once");
        assert!(may_be_signed(gitlab, "k3y", &headers(&[("x-gitlab-token", "k3y")])));
        let secrets = crate::secrets::Secrets::from_vars([
            ("PHASED_SECRET_HOOK_A".to_string(), "k".to_string()),
            ("PHASED_SECRET_HOOK_B".to_string(), String::new()),
        ]);
        let trigger = |secret: &str| Trigger {
            provider: github,
            secret: secret.into(),
            repository: "a/b".into(),
            branch: "main".into(),
            pipeline: "p".into(),
            inputs: Default::default(),
            max_age: None,
        };
        let triggers: IndexMap<String, Trigger> =
            [("a", "hook_a"), ("b", "hook_b"), ("c", "hook_c")].map(|(n, s)| (n.to_string(), trigger(s))).into();
        let unkeyed = unkeyed(&triggers, &secrets);
        assert_eq!(unkeyed, [("b", "PHASED_SECRET_HOOK_B".to_string()), ("c", "PHASED_SECRET_HOOK_C".to_string())]);
        assert_ne!(body_key("a", body), body_key("b", body), "the trigger is part of the key");
    }

    #[test]
    fn each_provider_says_what_was_pushed() {
        let github = json!({"ref": "refs/heads/main", "after": "abc", "repository": {"full_name": "acme/web", "clone_url": "https://g/acme/web.git"}});
        let gitlab = json!({"ref": "refs/heads/main", "checkout_sha": "abc", "project": {"path_with_namespace": "acme/web", "git_http_url": "https://g/acme/web.git"}});
        let generic =
            json!({"ref": "main", "commit": "abc", "repository": "acme/web", "clone_url": "https://g/acme/web.git"});
        let want =
            json!({"commit": "abc", "branch": "main", "repository": "acme/web", "clone_url": "https://g/acme/web.git"});
        for (provider, payload) in [
            (Provider::Github, &github),
            (Provider::Gitea, &github),
            (Provider::Gitlab, &gitlab),
            (Provider::Generic, &generic),
        ] {
            let mut push = push_of(provider, payload).unwrap_or_else(|| panic!("{provider:?}"));
            push.as_object_mut().unwrap().remove("ref");
            assert_eq!(push, want, "{provider:?}");
        }
        assert!(push_of(Provider::Github, &json!({"zen": "a ping"})).is_none(), "not a push");
        let headers = headers(&[("x-gitlab-event-uuid", "u1"), ("x-github-delivery", "g1")]);
        assert_eq!(delivery_id(Provider::Gitlab, &headers).as_deref(), Some("u1"));
        assert_eq!(delivery_id(Provider::Github, &headers).as_deref(), Some("g1"));
        assert_eq!(delivery_id(Provider::Gitea, &headers), None);
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex(&mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }
}

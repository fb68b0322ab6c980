//! `docker.run`: starts a container with a deterministic name, labels that tie it to
//! the deployment and service, a port published on 127.0.0.1 (given, or picked by the
//! engine), a restart policy and limits; then, optionally, waits until it answers HTTP.
//!
//! Idempotent: a container of that name made by this run with the same configuration
//! (a digest label) is reused and started if needed; any other container of that name
//! (a half-made one, or an older configuration) is removed first. A container that
//! fails to become ready is removed, so a failed step leaves nothing behind and the
//! service's previous container keeps serving. Environment values (secrets included)
//! go to the engine only: they are never logged or recorded.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum};
use futures_util::StreamExt;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use sha2::Digest;

use super::docker::{Engine, is_not_found, labels};
use super::docker_build::check_reference;
use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, ActionOutputs, Outputs};
use crate::duration::Duration;

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Restart {
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Ready {
    /// The path requested on the published port (default `/`).
    #[serde(default = "default_path")]
    pub path: String,
    /// The status that counts as ready (default 200).
    #[serde(default = "default_status")]
    pub status: u16,
    /// How long to wait (default `60s`).
    pub timeout: Option<Duration>,
}

fn default_path() -> String {
    "/".into()
}

fn default_status() -> u16 {
    200
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RunParams {
    /// The image (`name:tag` or an id).
    pub image: String,
    /// The container's name; the same name on a rerun finds the same container.
    pub name: String,
    /// The service the container belongs to (label `phased.service`).
    pub service: Option<String>,
    /// The container port to publish (TCP).
    pub port: Option<u16>,
    /// The host port (default: one the engine picks free).
    pub host_port: Option<u16>,
    /// The host address the port is published on (default `127.0.0.1`).
    #[serde(default = "default_host_ip")]
    pub host_ip: String,
    /// Environment variables; values may be secrets (`{{ secrets.name }}`).
    #[serde(default)]
    pub env: IndexMap<String, Value>,
    /// More environment variables, for secrets given by name
    /// (`{{ secret_values({"DB_URL": "db_url"}) }}`); they win over `env`.
    #[serde(default)]
    pub secret_env: IndexMap<String, String>,
    /// Extra labels.
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// `no`, `always`, `unless-stopped` (default) or `on-failure`.
    #[serde(default = "default_restart")]
    pub restart: Restart,
    /// Memory limit: bytes, or with a unit (`256m`, `1g`).
    pub memory: Option<String>,
    /// CPU limit, in CPUs (`0.5`).
    pub cpus: Option<f64>,
    /// The command (default: the image's).
    pub command: Option<Vec<String>>,
    /// Run a tiny init as PID 1 that forwards signals and reaps children, so that the
    /// app stops promptly on SIGTERM (`docker run --init`).
    #[serde(default)]
    pub init: bool,
    /// Wait until the published port answers HTTP before succeeding.
    pub ready: Option<Ready>,
    /// The engine (default: `DOCKER_HOST`, else the local socket).
    pub docker_host: Option<String>,
}

fn default_host_ip() -> String {
    "127.0.0.1".into()
}

fn default_restart() -> Restart {
    Restart::UnlessStopped
}

/// `256m`, `1g`, `1.5g`, `512k`, `1048576`: bytes.
fn parse_memory(text: &str) -> Result<i64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, unit) = match lower.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => lower.split_at(i),
        None => (lower, ""),
    };
    let factor: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("`memory` `{text}`: the unit must be k, m or g")),
    };
    let value: f64 = number.parse().map_err(|_| format!("`memory` `{text}` is not a size such as `256m`"))?;
    let bytes = (value * factor) as i64;
    if bytes < 6 * 1024 * 1024 {
        return Err(format!("`memory` `{text}` is below the engine's minimum of 6m"));
    }
    Ok(bytes)
}

impl RunParams {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.image.is_empty() {
            return Err("`image` is empty".into());
        }
        let name_ok = self.name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !name_ok {
            return Err(format!(
                "`name` `{}` is not a container name (letters, digits, `_`, `.`, `-`, starting with a letter or digit)",
                self.name
            ));
        }
        if !self.image.starts_with("sha256:") {
            check_reference(&self.image, "image")?;
        }
        if let Some(key) = self.env.keys().chain(self.secret_env.keys()).find(|k| k.is_empty() || k.contains('=')) {
            return Err(format!("environment variable name `{key}` is empty or contains `=`"));
        }
        if let Some((key, _)) = self.env.iter().find(|(_, v)| v.is_object() || v.is_array()) {
            return Err(format!("environment variable `{key}` must be a string, number or boolean"));
        }
        if let Some(memory) = &self.memory {
            parse_memory(memory)?;
        }
        if let Some(cpus) = self.cpus
            && !(cpus > 0.0 && cpus <= 1024.0)
        {
            return Err(format!("`cpus` must be above 0, got {cpus}"));
        }
        if self.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("`host_ip` `{}` is not an IP address", self.host_ip));
        }
        if self.host_port.is_some() && self.port.is_none() {
            return Err("`host_port` needs `port` (the container port it publishes)".into());
        }
        if self.ready.is_some() && self.port.is_none() {
            return Err("`ready` needs `port`: readiness is checked on the published port".into());
        }
        if let Some(ready) = &self.ready
            && !ready.path.starts_with('/')
        {
            return Err(format!("`ready.path` must start with `/`, got `{}`", ready.path));
        }
        Ok(())
    }

    fn env_list(&self) -> Vec<String> {
        let plain = self.env.iter().filter(|(k, _)| !self.secret_env.contains_key(*k)).map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            Value::Null => format!("{k}="),
            other => format!("{k}={other}"),
        });
        plain.chain(self.secret_env.iter().map(|(k, v)| format!("{k}={v}"))).collect()
    }

    fn port_key(&self) -> Option<String> {
        self.port.map(|p| format!("{p}/tcp"))
    }

    /// The container's configuration; its digest (a label) decides reuse on a rerun.
    /// `host_port` is the port actually published: the given one, or one picked for
    /// this container. The digest is taken over what was asked for (without the
    /// picked port), so that a rerun recognises the container it made.
    fn body(&self, ctx: &ActionCtx, image_id: &str, host_port: Option<u16>) -> ContainerCreateBody {
        let mut label_map: HashMap<String, String> = self.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        label_map.insert(labels::DEPLOYMENT.into(), ctx.run_id.clone());
        label_map.insert(labels::NODE.into(), ctx.node.clone());
        if let Some(service) = &self.service {
            label_map.insert(labels::SERVICE.into(), service.clone());
        }
        let port_bindings = self.port_key().map(|key| {
            HashMap::from([(
                key,
                Some(vec![PortBinding {
                    host_ip: Some(self.host_ip.clone()),
                    host_port: Some(self.host_port.map(|p| p.to_string()).unwrap_or_default()),
                }]),
            )])
        });
        let restart = match self.restart {
            Restart::No => RestartPolicyNameEnum::NO,
            Restart::Always => RestartPolicyNameEnum::ALWAYS,
            Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
            Restart::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
        };
        let mut body = ContainerCreateBody {
            image: Some(self.image.clone()),
            env: Some(self.env_list()),
            cmd: self.command.clone(),
            exposed_ports: self.port_key().map(|k| vec![k]),
            labels: Some(label_map),
            host_config: Some(HostConfig {
                port_bindings,
                restart_policy: Some(RestartPolicy { name: Some(restart), maximum_retry_count: None }),
                memory: self.memory.as_deref().and_then(|m| parse_memory(m).ok()),
                nano_cpus: self.cpus.map(|c| (c * 1e9) as i64),
                init: self.init.then_some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let value = serde_json::to_value(&body).expect("a container body is JSON");
        // The image id counts: the same tag rebuilt is another configuration.
        let digest = sha2::Sha256::digest(format!("{image_id}\n{}", canonical(&value)).as_bytes());
        let digest: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        if let Some(labels) = body.labels.as_mut() {
            labels.insert(labels::CONFIG.into(), digest);
        }
        if let (Some(port), Some(bindings)) =
            (host_port, body.host_config.as_mut().and_then(|h| h.port_bindings.as_mut()))
        {
            for binding in bindings.values_mut().flatten().flatten() {
                binding.host_port = Some(port.to_string());
            }
        }
        body
    }
}

/// A port free on this host now (the engine is told to publish on it).
fn free_port(host_ip: &str) -> Result<u16, ActionError> {
    let ip: std::net::IpAddr = host_ip.parse().map_err(|_| ActionError::new(format!("`host_ip` `{host_ip}`")))?;
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ActionError::new(format!("cannot find a free port on {host_ip}: {e}")))
}

/// JSON with sorted keys: the same configuration gives the same text whatever the
/// order of the maps it came from.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let sorted: std::collections::BTreeMap<_, _> = map.iter().collect();
            let fields: Vec<String> =
                sorted.into_iter().map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), canonical(v))).collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The image's id, pulling it when the engine does not have it.
async fn image_id(engine: &Engine, ctx: &ActionCtx, image: &str) -> Result<String, ActionError> {
    match engine.docker.inspect_image(image).await {
        Ok(found) => return Ok(found.id.unwrap_or_default()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(engine.error(&format!("cannot inspect image `{image}`"), e)),
    }
    ctx.log.line(&format!("image {image} is not in the engine; pulling it"));
    let options =
        bollard::query_parameters::CreateImageOptions { from_image: Some(image.to_string()), ..Default::default() };
    let mut pull = engine.docker.create_image(Some(options), None, None);
    while let Some(item) = pull.next().await {
        match item {
            Ok(info) => {
                if let Some(status) = info.status {
                    ctx.log.line(&status);
                }
            }
            Err(e) => {
                return Err(engine.error(
                    &format!("image `{image}` is not in the engine at {} and cannot be pulled", engine.address),
                    e,
                ));
            }
        }
    }
    let found = engine.docker.inspect_image(image).await.map_err(|e| engine.error(&format!("image `{image}`"), e))?;
    Ok(found.id.unwrap_or_default())
}

/// Creates the container, or finds the one a previous attempt of this run made.
async fn create_or_reuse(
    engine: &Engine,
    ctx: &ActionCtx,
    params: &RunParams,
    body: ContainerCreateBody,
) -> Result<bool, ActionError> {
    let wanted = body.labels.as_ref().and_then(|l| l.get(labels::CONFIG)).cloned();
    match engine.docker.inspect_container(&params.name, None).await {
        Ok(existing) => {
            let found = existing.config.as_ref().and_then(|c| c.labels.as_ref());
            let same_run = found.and_then(|l| l.get(labels::DEPLOYMENT)) == Some(&ctx.run_id);
            if same_run && found.and_then(|l| l.get(labels::CONFIG)) == wanted.as_ref() {
                ctx.log.line(&format!("container {} exists from an earlier attempt; reusing it", params.name));
                return Ok(true);
            }
            ctx.log.line(&format!("container {} exists with another configuration; replacing it", params.name));
            engine.remove(&params.name, 10).await?;
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(engine.error(&format!("cannot inspect container `{}`", params.name), e)),
    }
    let options =
        bollard::query_parameters::CreateContainerOptions { name: Some(params.name.clone()), ..Default::default() };
    match engine.docker.create_container(Some(options.clone()), body.clone()).await {
        Ok(_) => {}
        // Another process made it in between: replace it, once.
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
            engine.remove(&params.name, 10).await?;
            engine
                .docker
                .create_container(Some(options), body)
                .await
                .map_err(|e| engine.error(&format!("cannot create container `{}`", params.name), e))?;
        }
        Err(e) => return Err(engine.error(&format!("cannot create container `{}`", params.name), e)),
    }
    Ok(false)
}

struct Started {
    id: String,
    host_port: Option<u16>,
}

async fn inspect_started(engine: &Engine, params: &RunParams) -> Result<(Started, Option<String>), ActionError> {
    let info = engine
        .docker
        .inspect_container(&params.name, None)
        .await
        .map_err(|e| engine.error(&format!("cannot inspect container `{}`", params.name), e))?;
    let host_port = params.port_key().and_then(|key| {
        let ports = info.network_settings.as_ref()?.ports.as_ref()?;
        let bindings = ports.get(&key)?.as_ref()?;
        bindings.iter().find_map(|b| b.host_port.as_deref()?.parse().ok())
    });
    let state = info.state.as_ref();
    let down = match state {
        Some(s) if s.running == Some(true) && s.restarting != Some(true) => None,
        Some(s) => Some(format!(
            "container `{}` is {} (exit code {}{})",
            params.name,
            s.status.map(|st| st.to_string()).unwrap_or_else(|| "not running".into()),
            s.exit_code.unwrap_or_default(),
            s.error.as_deref().filter(|e| !e.is_empty()).map(|e| format!(", {e}")).unwrap_or_default()
        )),
        None => Some(format!("container `{}` has no state", params.name)),
    };
    Ok((Started { id: info.id.unwrap_or_default(), host_port }, down))
}

/// Polls the published port until it answers; fails early when the container stops.
async fn wait_ready(
    engine: &Engine,
    ctx: &ActionCtx,
    params: &RunParams,
    ready: &Ready,
    port: u16,
) -> Result<(), String> {
    let host = if params.host_ip == "0.0.0.0" || params.host_ip == "::" { "127.0.0.1" } else { &params.host_ip };
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    let url = format!("http://{host}:{port}{}", ready.path);
    let timeout = ready.timeout.map_or(StdDuration::from_secs(60), |d| d.0);
    let client = super::http_check::client(StdDuration::from_secs(5), None).map_err(|e| e.message)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let last = match super::http_check::probe(&client, &url, None, ready.status, None).await {
            Ok(status) => {
                ctx.log.line(&format!("{url} answered {status}: ready"));
                return Ok(());
            }
            Err(e) => e,
        };
        if let Ok((_, Some(down))) = inspect_started(engine, params).await {
            return Err(format!("{down} before answering {url}"));
        }
        if attempt % 10 == 1 {
            ctx.log.line(&format!("{url}: {last}; waiting"));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{url} did not answer {} within {}: {last}", ready.status, Duration(timeout)));
        }
        // Most apps listen within a few hundred milliseconds: poll often at first.
        let pause = StdDuration::from_millis((10u64 << attempt.min(5)).min(250));
        tokio::time::sleep(pause).await;
    }
}

fn run(ctx: ActionCtx, params: RunParams) -> ActionFuture {
    Box::pin(async move {
        let engine = Engine::connect(params.docker_host.as_deref()).await?;
        let image_id = image_id(&engine, &ctx, &params.image).await?;
        // A port the engine picks at random is picked again at every restart of the
        // container (and so after a reboot), which would leave the proxy route pointing
        // at nothing: the port is chosen here and pinned. If another process takes it
        // before the container starts, another one is tried.
        let mut tries = 0;
        let reused = loop {
            tries += 1;
            let pick = params.port.is_some() && params.host_port.is_none();
            let host_port = if pick { Some(free_port(&params.host_ip)?) } else { params.host_port };
            let body = params.body(&ctx, &image_id, host_port);
            let reused = create_or_reuse(&engine, &ctx, &params, body).await?;
            crate::crash::point("docker.run: the container created, not started");
            let error = match engine.docker.start_container(&params.name, None).await {
                Ok(()) => break reused,
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => break reused,
                Err(e) => engine.error(&format!("cannot start container `{}`", params.name), e),
            };
            let taken =
                error.message.contains("port is already allocated") || error.message.contains("address already in use");
            if taken && pick && !reused && tries < 5 {
                ctx.log
                    .line(&format!("host port {} was taken meanwhile; trying another", host_port.unwrap_or_default()));
                engine.remove(&params.name, 0).await?;
                continue;
            }
            let mut error = error;
            if let (Some(port), true) = (params.host_port, taken) {
                error.message.push_str(&format!(
                    " (host port {port} is taken, by the service's running container if this is a redeploy: \
                     leave `host_port` unset so that the new container gets a free port and the proxy \
                     route moves to it)"
                ));
            }
            return Err(give_up(&engine, &ctx, &params, error).await);
        };
        crate::crash::point("docker.run: the container started, not checked yet");
        let (started, down) = inspect_started(&engine, &params).await?;
        if let Some(down) = down {
            return Err(give_up(&engine, &ctx, &params, ActionError::new(down)).await);
        }
        ctx.log.line(&format!(
            "container {} ({}) running from {}{}",
            params.name,
            &started.id[..started.id.len().min(12)],
            params.image,
            started.host_port.map(|p| format!(", port {}:{p}", params.host_ip)).unwrap_or_default()
        ));
        if let (Some(ready), Some(port)) = (&params.ready, started.host_port)
            && let Err(e) = wait_ready(&engine, &ctx, &params, ready, port).await
        {
            return Err(give_up(&engine, &ctx, &params, ActionError::new(e)).await);
        }
        let mut out = ActionOutputs::new();
        out.insert("container_id".into(), started.id.into());
        out.insert("name".into(), params.name.clone().into());
        out.insert("host_port".into(), started.host_port.map_or(Value::Null, Value::from));
        out.insert("image_id".into(), image_id.into());
        out.insert("reused".into(), reused.into());
        Ok(out)
    })
}

/// Removes the container that did not come up, and says what keeps serving.
async fn give_up(engine: &Engine, ctx: &ActionCtx, params: &RunParams, error: ActionError) -> ActionError {
    if error.environment {
        return error;
    }
    let logs = engine.logs_tail(&params.name, 20).await;
    for line in logs.lines() {
        ctx.log.line(&format!("[{}] {line}", params.name));
    }
    let removed = engine.remove(&params.name, 2).await.is_ok();
    let mut message = error.message.clone();
    if removed {
        message.push_str(&format!("; container `{}` was removed", params.name));
    }
    if let Some(service) = &params.service
        && let Ok(others) = engine.containers_of(service).await
    {
        let serving: Vec<String> =
            others.into_iter().filter(|c| c.name != params.name && c.state == "running").map(|c| c.name).collect();
        if !serving.is_empty() {
            message.push_str(&format!("; the previous container `{}` keeps serving", serving.join("`, `")));
        }
    }
    ActionError::new(message).with_tail(ctx.log.tail())
}

action_spec!(
    RunParams,
    name: "docker.run",
    summary: "Start a container (deterministic name, labels, port on 127.0.0.1, limits), reused or replaced on a rerun; optionally wait until it answers HTTP.",
    outputs: Outputs::Fixed(&["container_id", "name", "host_port", "image_id", "reused"]),
    example: "image: web:3f2a9c1e\nname: web-3f2a9c1e\nservice: web\nport: 8080\nenv: {NODE_ENV: production, API_TOKEN: \"{{ secrets.api_token }}\"}\nmemory: 256m\ncpus: 0.5\nready: {path: /health, timeout: 30s}",
    run: run,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("256m"), Ok(256 * 1024 * 1024));
        assert_eq!(parse_memory("1.5G"), Ok(1536 * 1024 * 1024));
        assert_eq!(parse_memory("512mb"), Ok(512 * 1024 * 1024));
        assert!(parse_memory("1m").unwrap_err().contains("minimum"));
        assert!(parse_memory("12 parsecs").is_err());
    }

    #[test]
    fn the_configuration_digest_changes_with_the_configuration_only() {
        let params = |env: &str| -> RunParams {
            serde_json::from_value(
                serde_json::json!({"image": "web:1", "name": "web-1", "port": 80, "env": {"A": env}}),
            )
            .unwrap()
        };
        let ctx = ActionCtx::detached("run-1", "container", std::env::temp_dir());
        let digest = |p: &RunParams| p.body(&ctx, "sha256:x", Some(40000)).labels.unwrap()[labels::CONFIG].clone();
        assert_eq!(digest(&params("1")), digest(&params("1")));
        let pinned = |p: &RunParams, port| p.body(&ctx, "sha256:x", Some(port)).labels.unwrap()[labels::CONFIG].clone();
        assert_eq!(pinned(&params("1"), 40001), pinned(&params("1"), 40002), "the picked port is not configuration");
        assert_ne!(digest(&params("1")), digest(&params("2")));
    }
}

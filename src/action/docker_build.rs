//! `docker.build`: builds an image from a folder through the Docker engine. The folder
//! is streamed as a tar that honours `.dockerignore`; the engine's build output goes to
//! the node's log line by line; `Step N/M` lines are the node's progress. A rerun
//! builds again (the engine's cache makes that quick) and moves the tag.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use futures_util::StreamExt;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::docker::{BuildContext, Engine};
use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, ActionOutputs, Outputs};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BuildParams {
    /// The folder sent to the engine as the build context.
    pub context: String,
    /// The Dockerfile: relative to `context`, or a path anywhere (default `Dockerfile`).
    #[serde(default = "default_dockerfile")]
    pub dockerfile: String,
    /// The image's name and tag, `name:tag`.
    pub tag: String,
    /// `--build-arg` values.
    #[serde(default)]
    pub build_args: IndexMap<String, String>,
    /// Image labels.
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// The build stage to stop at (`--target`).
    pub target: Option<String>,
    /// Patterns left out of the context in addition to `.dockerignore`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Build without the engine's cache.
    #[serde(default)]
    pub no_cache: bool,
    /// The engine (default: `DOCKER_HOST`, else the local socket).
    pub docker_host: Option<String>,
}

fn default_dockerfile() -> String {
    "Dockerfile".into()
}

/// An image reference as the engine accepts it: `[registry[:port]/]path[:tag][@digest]`,
/// the path lowercase (letters, digits, `.`, `_`, `-`, `/`).
pub(crate) fn check_reference(reference: &str, what: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "`{what}` must be `[registry/]name[:tag]` with a lowercase name (letters, digits, `.`, `_`, `-`, `/`), \
             got `{reference}`"
        ))
    };
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let ok = digest
            .split_once(':')
            .is_some_and(|(alg, hex)| !alg.is_empty() && !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()));
        if !ok {
            return bad();
        }
    }
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    let mut parts: Vec<&str> = name.split('/').collect();
    // A first component with a dot, a port or `localhost` names a registry.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')) {
            return bad();
        }
    }
    let path_ok = parts.iter().all(|part| {
        part.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    });
    let tag_ok = tag.is_none_or(|t| {
        t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && t.len() <= 128
            && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    });
    if path_ok && tag_ok { Ok(()) } else { bad() }
}

impl BuildParams {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.context.is_empty() {
            return Err("`context` is empty".into());
        }
        check_reference(&self.tag, "tag")?;
        if self.dockerfile.is_empty() {
            return Err("`dockerfile` is empty".into());
        }
        if let Some(bad) = self.build_args.keys().find(|k| k.is_empty() || k.contains('=')) {
            return Err(format!("build argument name `{bad}` is empty or contains `=`"));
        }
        Ok(())
    }
}

/// Sends written bytes to the engine in chunks, from the thread that packs the tar.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

const STOPPED_READING: &str = "the engine stopped reading the context";

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, STOPPED_READING))
    }
}

/// `Step 3/7 : RUN ...` (the classic builder) as (3, 7).
fn step_of(line: &str) -> Option<(u32, u32)> {
    let rest = line.strip_prefix("Step ")?;
    let (numbers, _) = rest.split_once(' ')?;
    let (done, total) = numbers.split_once('/')?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

/// Engine errors that mean a cached layer the build was using was removed meanwhile
/// (an image removal pruned it): building again, without that layer, succeeds.
fn lost_cache_layer(message: &str) -> bool {
    message.contains("unknown parent image ID") || message.contains("No such image: sha256:")
}

fn run(ctx: ActionCtx, params: BuildParams) -> ActionFuture {
    Box::pin(async move {
        let engine = Engine::connect(params.docker_host.as_deref()).await?;
        ctx.log.line(&format!("building {} from {} on {}", params.tag, params.context, engine.address));
        let mut attempt = 1;
        let (packed, steps) = loop {
            match build_once(&ctx, &params, &engine).await {
                Err(e) if attempt < 3 && !e.environment && lost_cache_layer(&e.message) => {
                    ctx.log.line("a cached layer was removed during the build (by an image removal); building again");
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let image = engine
            .docker
            .inspect_image(&params.tag)
            .await
            .map_err(|e| engine.error(&format!("the built image `{}` cannot be inspected", params.tag), e))?;
        let id = image.id.unwrap_or_default();
        ctx.log.line(&format!(
            "built {} ({id}) from {} files, {} bytes of context",
            params.tag, packed.files, packed.bytes
        ));
        crate::crash::point("docker.build: the image built and tagged");
        let mut out = ActionOutputs::new();
        out.insert("image_id".into(), id.into());
        out.insert("tag".into(), params.tag.clone().into());
        out.insert("steps".into(), steps.into());
        out.insert("context_files".into(), packed.files.into());
        Ok(out)
    })
}

/// One build: the context packed and streamed, the engine's output logged.
async fn build_once(
    ctx: &ActionCtx,
    params: &BuildParams,
    engine: &Engine,
) -> Result<(super::docker::Packed, u32), ActionError> {
    let context =
        BuildContext::new(&PathBuf::from(&params.context), &PathBuf::from(&params.dockerfile), params.exclude.clone())
            .map_err(|e| ActionError::new(format!("docker build of `{}` failed: {e}", params.tag)))?;
    let dockerfile = context.dockerfile_name.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let packer = tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter { tx, buf: Vec::with_capacity(CHUNK) };
        super::docker::pack(&context, &mut writer)
    });
    let body = bollard::body_try_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    // Only the labels asked for: each label is a build step of its own (a layer the
    // classic builder commits), and a per-run label would never be cached.
    let label_map: HashMap<String, String> = params.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let options = bollard::query_parameters::BuildImageOptions {
        dockerfile,
        t: Some(params.tag.clone()),
        buildargs: Some(params.build_args.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        labels: (!label_map.is_empty()).then_some(label_map),
        target: params.target.clone().unwrap_or_default(),
        nocache: params.no_cache,
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut stream = engine.docker.build_image(options, None, Some(body));
    let mut failure: Option<ActionError> = None;
    let mut steps = 0u32;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                for line in info.stream.iter().chain(info.status.iter()).flat_map(|t| t.lines()) {
                    if line.trim().is_empty() {
                        continue;
                    }
                    ctx.log.line(line);
                    if let Some((done, total)) = step_of(line) {
                        steps = total;
                        ctx.progress.report(done.saturating_sub(1) as f64 / total.max(1) as f64);
                    }
                }
                if let Some(id) = info.aux.as_ref().and_then(|image| image.id.as_ref()) {
                    ctx.log.line(&format!("image {id}"));
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                ctx.log.line(&error);
                failure = Some(ActionError::new(format!("docker build of `{}` failed: {error}", params.tag)));
                break;
            }
            Err(e) => {
                failure = Some(engine.error(&format!("docker build of `{}` failed", params.tag), e));
                break;
            }
        }
    }
    drop(stream);
    let packed = packer.await.map_err(|e| ActionError::new(format!("packing the context failed: {e}")))?;
    match (packed, failure) {
        // The engine refused before reading everything: its reason is the one to show.
        (Err(e), Some(failure)) if e.contains(STOPPED_READING) => Err(failure.with_tail(ctx.log.tail())),
        // A context that could not be packed explains the failure better than the engine's EOF.
        (Err(e), _) => Err(ActionError::new(format!("docker build of `{}` failed: {e}", params.tag))),
        (Ok(_), Some(failure)) => Err(failure.with_tail(ctx.log.tail())),
        (Ok(packed), None) => Ok((packed, steps)),
    }
}

action_spec!(
    BuildParams,
    name: "docker.build",
    summary: "Build an image from a folder (honours .dockerignore; build log and steps as the node's log and progress).",
    outputs: Outputs::Fixed(&["image_id", "tag", "steps", "context_files"]),
    example: "context: /tmp/work/app\ntag: web:3f2a9c1e\nbuild_args: {NODE_ENV: production}\nexclude: [node_modules, .git]",
    run: run,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_of_the_classic_builder() {
        assert_eq!(step_of("Step 3/7 : RUN npm ci"), Some((3, 7)));
        assert_eq!(step_of(" ---> Running in 1234"), None);
    }

    #[test]
    fn a_lost_cache_layer_is_told_from_a_real_failure() {
        let lost = "failed to export image: failed to set parent sha256:de89: unknown parent image ID sha256:de89";
        assert!(lost_cache_layer(lost));
        assert!(!lost_cache_layer("The command '/bin/sh -c exit 3' returned a non-zero code: 3"));
    }

    #[test]
    fn references_are_checked() {
        for good in [
            "web:abcd1234",
            "registry.local/team/web:v1.2",
            "127.0.0.1:5000/web:1",
            "localhost/web",
            "node:20-slim",
            "web@sha256:0123abcd",
        ] {
            assert!(check_reference(good, "image").is_ok(), "{good}");
        }
        for bad in ["Web:1", "web:", "web:a b", "web:-x", "team//web", "web@sha256:xyz", "-web:1"] {
            assert!(check_reference(bad, "image").is_err(), "{bad}");
        }
    }
}

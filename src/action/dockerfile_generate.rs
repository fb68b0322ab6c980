//! `dockerfile.generate`: writes a Dockerfile for a Node.js app from what its folder
//! says: the package manager from the lockfile (npm, yarn, pnpm), the Node.js version
//! from `.nvmrc` (or `.node-version`) or `engines.node`, the `build` script if there is
//! one, and the start command (`start` script, else `main`, else `server.js`/`index.js`).
//! The text comes from a minijinja template (`pipelines/templates/nodejs.Dockerfile.j2`,
//! built in, or a file given as `template`) that sees only the values detected here.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, ActionOutputs, Outputs};

/// The built-in template, shipped beside the pipelines.
pub(super) const TEMPLATE: &str = include_str!("../../pipelines/templates/nodejs.Dockerfile.j2");

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GenerateParams {
    /// The app's folder (holding `package.json`).
    pub source: String,
    /// Where to write the Dockerfile (outside the app's folder is fine: `docker.build` sends it).
    pub to: String,
    /// The base image; `{version}` becomes the Node.js version (default `node:{version}-slim`).
    #[serde(default = "default_base_image")]
    pub base_image: String,
    /// The Node.js version when the app does not say (default `20`).
    #[serde(default = "default_node_version")]
    pub default_node_version: String,
    /// The port the app listens on (`PORT` in its environment; default 3000).
    #[serde(default = "default_port")]
    pub port: u16,
    /// A minijinja template file to use instead of the built-in one.
    pub template: Option<String>,
}

fn default_base_image() -> String {
    "node:{version}-slim".into()
}

fn default_node_version() -> String {
    "20".into()
}

fn default_port() -> u16 {
    3000
}

impl GenerateParams {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.source.is_empty() || self.to.is_empty() {
            return Err("`source` and `to` must not be empty".into());
        }
        if self.base_image.trim().is_empty() || self.base_image.contains(char::is_whitespace) {
            return Err(format!("`base_image` `{}` is not an image reference", self.base_image));
        }
        if !is_version(&self.default_node_version) {
            return Err(format!(
                "`default_node_version` `{}` is not a version such as `20`",
                self.default_node_version
            ));
        }
        Ok(())
    }
}

/// What the app's folder says, as the template sees it.
#[derive(Debug, Serialize, PartialEq)]
pub(super) struct Detected {
    pub name: String,
    pub package_manager: &'static str,
    pub node_version: String,
    pub base_image: String,
    pub port: u16,
    pub manifests: Vec<String>,
    pub install: String,
    pub build: Option<String>,
    pub start: Vec<String>,
    pub corepack: bool,
}

fn is_version(text: &str) -> bool {
    !text.is_empty() && text.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// `v20.11.0` -> `20.11.0`; aliases (`lts/*`, `node`) say nothing usable.
fn version_from_file(text: &str) -> Option<String> {
    let first = text.lines().next()?.trim();
    let version = first.strip_prefix('v').unwrap_or(first);
    is_version(version).then(|| version.to_string())
}

/// The major version a range starts from: `>=18.17` -> `18`, `^20.1.0` -> `20`, `18.x` -> `18`.
fn version_from_range(range: &str) -> Option<String> {
    let start = range.find(|c: char| c.is_ascii_digit())?;
    let digits: String = range[start..].chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

pub(super) fn detect(source: &Path, params: &GenerateParams) -> Result<Detected, String> {
    let manifest = source.join("package.json");
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        format!(
            "cannot read `{}`: {e} (a Node.js app needs a package.json at the root of its source)",
            manifest.display()
        )
    })?;
    let package: Value = serde_json::from_str(&text)
        .map_err(|e| format!("`{}` line {}, column {}: {e}", manifest.display(), e.line(), e.column()))?;
    let exists = |name: &str| source.join(name).is_file();
    let declared = package["packageManager"].as_str().unwrap_or("");
    let (package_manager, lockfile) = if exists("pnpm-lock.yaml") {
        ("pnpm", Some("pnpm-lock.yaml"))
    } else if exists("yarn.lock") {
        ("yarn", Some("yarn.lock"))
    } else if exists("package-lock.json") {
        ("npm", Some("package-lock.json"))
    } else if exists("npm-shrinkwrap.json") {
        ("npm", Some("npm-shrinkwrap.json"))
    } else if declared.starts_with("pnpm@") {
        ("pnpm", None)
    } else if declared.starts_with("yarn@") {
        ("yarn", None)
    } else {
        ("npm", None)
    };
    let yarn_berry = exists(".yarnrc.yml");
    let mut manifests = vec!["package.json".to_string()];
    manifests.extend(lockfile.map(str::to_string));
    for extra in [".npmrc", ".yarnrc.yml", ".yarnrc"] {
        if exists(extra) {
            manifests.push(extra.to_string());
        }
    }
    let install = match (package_manager, lockfile.is_some()) {
        ("npm", true) => "npm ci --no-audit --no-fund",
        ("npm", false) => "npm install --no-audit --no-fund",
        ("yarn", true) if yarn_berry => "yarn install --immutable",
        ("yarn", true) => "yarn install --frozen-lockfile",
        ("yarn", false) => "yarn install",
        ("pnpm", true) => "pnpm install --frozen-lockfile",
        _ => "pnpm install",
    }
    .to_string();
    let scripts = &package["scripts"];
    let run_script = |script: &str| match package_manager {
        "npm" => format!("npm run {script}"),
        pm => format!("{pm} run {script}"),
    };
    let build = scripts["build"].as_str().filter(|s| !s.trim().is_empty()).map(|_| run_script("build"));
    let start = if scripts["start"].as_str().is_some_and(|s| !s.trim().is_empty()) {
        vec![package_manager.to_string(), "start".to_string()]
    } else if let Some(main) = package["main"].as_str().filter(|m| exists(m)) {
        vec!["node".to_string(), main.to_string()]
    } else if let Some(file) = ["server.js", "index.js", "app.js", "main.js"].into_iter().find(|f| exists(f)) {
        vec!["node".to_string(), file.to_string()]
    } else {
        return Err(format!(
            "cannot tell how to start the app in `{}`: add a `start` script to package.json \
             (or a `main` file, or a server.js or index.js)",
            source.display()
        ));
    };
    let node_version = [".nvmrc", ".node-version"]
        .into_iter()
        .find_map(|f| std::fs::read_to_string(source.join(f)).ok().and_then(|t| version_from_file(&t)))
        .or_else(|| package["engines"]["node"].as_str().and_then(version_from_range))
        .unwrap_or_else(|| params.default_node_version.clone());
    let name = package["name"].as_str().map(str::to_string).unwrap_or_else(|| {
        source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "app".into())
    });
    Ok(Detected {
        name,
        package_manager,
        base_image: params.base_image.replace("{version}", &node_version),
        node_version,
        port: params.port,
        manifests,
        install,
        build,
        start,
        corepack: package_manager != "npm",
    })
}

/// Renders the template with the detected values only (no loader, strict undefined).
pub(super) fn render(template: &str, detected: &Detected) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_fuel(Some(1_000_000));
    // Values print as in pipelines: `true`, not `True`.
    env.set_formatter(crate::template::format_value);
    let text = env
        .render_str(template, minijinja::value::Serde(detected))
        .map_err(|e| format!("{e}{}", e.detail().map(|d| format!(": {d}")).unwrap_or_default()))?;
    Ok(if text.ends_with('\n') { text } else { format!("{text}\n") })
}

fn run(ctx: ActionCtx, params: GenerateParams) -> ActionFuture {
    Box::pin(async move {
        let source = PathBuf::from(&params.source);
        let detected = detect(&source, &params).map_err(ActionError::new)?;
        let template = match &params.template {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| ActionError::new(format!("cannot read the template `{path}`: {e}")))?,
            None => TEMPLATE.to_string(),
        };
        let what = params.template.as_deref().unwrap_or("the built-in nodejs.Dockerfile.j2");
        let content = render(&template, &detected).map_err(|e| ActionError::new(format!("{what}: {e}")))?;
        let to = PathBuf::from(&params.to);
        super::fsutil::write_file_atomically(&to, content.as_bytes()).map_err(ActionError::new)?;
        ctx.log.line(&format!(
            "{}: {} with Node.js {} on {}; wrote {}",
            detected.name,
            detected.package_manager,
            detected.node_version,
            detected.base_image,
            to.display()
        ));
        let mut out = ActionOutputs::new();
        out.insert("path".into(), params.to.clone().into());
        out.insert("content".into(), content.into());
        out.insert("package_manager".into(), detected.package_manager.into());
        out.insert("node_version".into(), detected.node_version.into());
        out.insert("base_image".into(), detected.base_image.into());
        out.insert("start".into(), detected.start.join(" ").into());
        Ok(out)
    })
}

action_spec!(
    GenerateParams,
    name: "dockerfile.generate",
    summary: "Write a Dockerfile for a Node.js app (package manager from the lockfile, Node.js version from .nvmrc or engines).",
    outputs: Outputs::Fixed(&["path", "content", "package_manager", "node_version", "base_image", "start"]),
    example: "source: /tmp/work/app\nto: /tmp/work/Dockerfile\nbase_image: \"node:{version}-alpine\"\nport: 3000",
    run: run,
    writes: |p: &GenerateParams| vec![PathBuf::from(&p.to)],
);

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GenerateParams {
        serde_json::from_value(serde_json::json!({"source": "/x", "to": "/y"})).unwrap()
    }

    fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn npm_with_a_lockfile_engines_and_a_build_script() {
        let dir = app(&[
            (
                "package.json",
                r#"{"name": "shop", "engines": {"node": ">=18.17"}, "scripts": {"build": "tsc", "start": "node dist/server.js"}}"#,
            ),
            ("package-lock.json", "{}"),
        ]);
        let d = detect(dir.path(), &params()).unwrap();
        assert_eq!((d.package_manager, d.node_version.as_str()), ("npm", "18"));
        assert_eq!(d.install, "npm ci --no-audit --no-fund");
        assert_eq!(d.build.as_deref(), Some("npm run build"));
        assert_eq!(d.start, ["npm", "start"]);
        assert_eq!(d.base_image, "node:18-slim");
        let text = render(TEMPLATE, &d).unwrap();
        assert!(text.contains("FROM node:18-slim\n"), "{text}");
        assert!(text.contains("COPY package.json package-lock.json ./\nRUN npm ci --no-audit --no-fund\n"), "{text}");
        assert!(text.contains("RUN npm run build\n"), "{text}");
        assert!(text.contains("CMD [\"npm\", \"start\"]"), "{text}");
        assert!(!text.contains("corepack"), "{text}");
    }

    #[test]
    fn nvmrc_wins_over_engines_and_yarn_pnpm_come_from_lockfiles() {
        let dir = app(&[
            ("package.json", r#"{"engines": {"node": "^18"}, "main": "app.js"}"#),
            ("app.js", ""),
            (".nvmrc", "v20.11.1\n"),
            ("yarn.lock", ""),
        ]);
        let d = detect(dir.path(), &params()).unwrap();
        assert_eq!((d.package_manager, d.node_version.as_str()), ("yarn", "20.11.1"));
        assert_eq!(d.install, "yarn install --frozen-lockfile");
        assert_eq!(d.start, ["node", "app.js"]);
        assert!(render(TEMPLATE, &d).unwrap().contains("RUN corepack enable\n"));
        let dir = app(&[
            ("package.json", r#"{"scripts": {"start": "node ."}}"#),
            ("pnpm-lock.yaml", ""),
            (".nvmrc", "lts/*"),
        ]);
        let d = detect(dir.path(), &params()).unwrap();
        assert_eq!((d.package_manager, d.node_version.as_str()), ("pnpm", "20"), "an alias falls back to the default");
        assert_eq!(d.install, "pnpm install --frozen-lockfile");
        assert_eq!(d.start, ["pnpm", "start"]);
    }

    #[test]
    fn no_lockfile_installs_and_the_entry_file_is_found() {
        let dir = app(&[("package.json", r#"{"name": "x"}"#), ("server.js", "")]);
        let d = detect(dir.path(), &params()).unwrap();
        assert_eq!(d.install, "npm install --no-audit --no-fund");
        assert_eq!(d.start, ["node", "server.js"]);
        assert_eq!(d.build, None);
    }

    #[test]
    fn errors_say_what_to_add() {
        let dir = app(&[("package.json", r#"{"name": "x"}"#)]);
        assert!(detect(dir.path(), &params()).unwrap_err().contains("add a `start` script"));
        let dir = app(&[("package.json", "{\n  \"name\": \"x\",,\n}")]);
        let err = detect(dir.path(), &params()).unwrap_err();
        assert!(err.contains("package.json") && err.contains("line 2"), "{err}");
        let dir = app(&[]);
        assert!(detect(dir.path(), &params()).unwrap_err().contains("needs a package.json"));
    }

    #[test]
    fn a_template_sees_only_the_detected_values() {
        let dir = app(&[("package.json", r#"{"name": "x"}"#), ("index.js", "")]);
        let d = detect(dir.path(), &params()).unwrap();
        let err = render("FROM {{ base_image }}\nENV X={{ env.HOME }}\n", &d).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }
}

//! `routes.update`: points a domain at a static root or an upstream `host:port`
//! through nginx. The server block is written atomically into a folder the nginx
//! configuration includes, checked with `nginx -t`, and applied with a graceful reload
//! (requests in flight finish on the old workers). If the check or the reload fails,
//! the previous file is put back. Every value that goes into the configuration is
//! checked first, so a parameter cannot inject nginx directives.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, ActionOutputs, Outputs};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutesParams {
    /// The domain (nginx `server_name`).
    pub domain: String,
    /// Serve static files from this folder (typically the live `current` link).
    pub root: Option<String>,
    /// Or proxy to this `host:port`.
    pub upstream: Option<String>,
    /// Where nginx listens for this domain, `port` or `address:port` (default `80`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The folder of route files that the nginx configuration includes (`include DIR/*.conf;`).
    pub config_dir: String,
    /// The nginx binary (default `nginx`).
    #[serde(default = "default_nginx")]
    pub nginx: String,
    /// nginx's prefix (`-p`), when nginx runs under its own folder.
    pub nginx_prefix: Option<String>,
    /// nginx's configuration file (`-c`).
    pub nginx_conf: Option<String>,
}

fn default_listen() -> String {
    "80".into()
}

fn default_nginx() -> String {
    "nginx".into()
}

fn plain(value: &str, what: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("`{what}` is empty"));
    }
    match value.chars().find(|&c| !allowed(c)) {
        Some(c) => Err(format!("`{what}` contains `{c}`, which is not allowed in an nginx route")),
        None => Ok(()),
    }
}

impl RoutesParams {
    pub fn check(&self) -> Result<(), String> {
        plain(&self.domain, "domain", |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*'))?;
        plain(&self.listen, "listen", |c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))?;
        match (&self.root, &self.upstream) {
            (Some(root), None) => plain(root, "root", |c| {
                !c.is_control() && !matches!(c, ';' | '{' | '}' | '"' | '\'' | '$' | '#' | ' ' | '\\')
            })?,
            (None, Some(upstream)) => {
                plain(upstream, "upstream", |c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))?;
                if !upstream.contains(':') {
                    return Err(format!("`upstream` must be `host:port`, got `{upstream}`"));
                }
            }
            (Some(_), Some(_)) => return Err("give either `root` or `upstream`, not both".into()),
            (None, None) => return Err("give `root` (a static folder) or `upstream` (`host:port`)".into()),
        }
        Ok(())
    }

    fn server_block(&self) -> String {
        let target = match (&self.root, &self.upstream) {
            (Some(root), _) => format!(
                "    root {root};\n    index index.html;\n    location / {{\n        try_files $uri $uri/index.html $uri.html =404;\n    }}\n"
            ),
            (_, Some(upstream)) => format!(
                "    location / {{\n        proxy_pass http://{upstream};\n        proxy_set_header Host $host;\n        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n"
            ),
            _ => String::new(),
        };
        format!(
            "# Managed by phased (routes.update); changes here are overwritten.\nserver {{\n    listen {};\n    server_name {};\n{target}}}\n",
            self.listen, self.domain
        )
    }

    fn nginx_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(prefix) = &self.nginx_prefix {
            args.extend(["-p".to_string(), prefix.clone()]);
        }
        if let Some(conf) = &self.nginx_conf {
            args.extend(["-c".to_string(), conf.clone()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn file(&self) -> PathBuf {
        Path::new(&self.config_dir).join(format!("{}.conf", self.domain.replace('*', "_wildcard_")))
    }
}

async fn nginx(params: &RoutesParams, extra: &[&str]) -> Result<String, String> {
    let args = params.nginx_args(extra);
    let out = tokio::process::Command::new(&params.nginx)
        .args(&args)
        .output()
        .await
        .map_err(|e| format!("cannot run `{}`: {e}", params.nginx))?;
    let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() { Ok(text) } else { Err(format!("`{} {}` failed: {text}", params.nginx, args.join(" "))) }
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension(format!("conf.tmp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write `{}`: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

fn run(ctx: ActionCtx, params: RoutesParams) -> ActionFuture {
    Box::pin(async move {
        std::fs::create_dir_all(&params.config_dir)
            .map_err(|e| ActionError::new(format!("cannot create `{}`: {e}", params.config_dir)))?;
        let file = params.file();
        let block = params.server_block();
        let previous = std::fs::read_to_string(&file).ok();
        if previous.as_deref() != Some(block.as_str()) {
            write_atomically(&file, &block).map_err(ActionError::new)?;
            let applied = match nginx(&params, &["-t"]).await {
                Ok(_) => nginx(&params, &["-s", "reload"]).await,
                Err(e) => Err(e),
            };
            if let Err(e) = applied {
                // Put the previous route back, so that nginx keeps serving what it served.
                match &previous {
                    Some(text) => drop(write_atomically(&file, text)),
                    None => drop(std::fs::remove_file(&file)),
                }
                ctx.log.line(&e);
                return Err(ActionError::new(format!("route for `{}` not applied: {e}", params.domain)));
            }
            ctx.log.line(&format!("route for {} written to {} and nginx reloaded", params.domain, file.display()));
        } else {
            ctx.log.line(&format!("route for {} unchanged", params.domain));
        }
        let port = params.listen.rsplit(':').next().unwrap_or("80");
        let mut out = ActionOutputs::new();
        out.insert("domain".into(), params.domain.clone().into());
        out.insert("config".into(), file.display().to_string().into());
        out.insert("url".into(), format!("http://{}:{port}/", params.domain).into());
        Ok(out)
    })
}

action_spec!(
    RoutesParams,
    name: "routes.update",
    summary: "Point a domain at a static folder or an upstream through nginx (checked with nginx -t, reloaded gracefully).",
    outputs: Outputs::Fixed(&["domain", "config", "url"]),
    example: "domain: blog.example.test\nroot: /srv/blog/current\nlisten: 127.0.0.1:8080\nconfig_dir: /etc/nginx/phased",
    run: run,
    writes: |p: &RoutesParams| vec![p.file()],
);

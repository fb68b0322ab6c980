//! `routes.update`: points a domain at a static root or an upstream `host:port`
//! through a reverse proxy.
//!
//! - nginx: the server block is written atomically into a folder the nginx
//!   configuration includes, checked with `nginx -t`, and applied with a graceful
//!   reload (requests in flight finish on the old workers). If the check or the reload
//!   fails, the previous file is put back.
//! - caddy: the route (with `@id` `phased-<domain>`) is replaced or added through the
//!   admin API; caddy applies configuration changes without dropping requests.
//!
//! Every value that goes into a configuration is checked first, so a parameter cannot
//! inject directives.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::fsutil::write_file_atomically;
use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, ActionOutputs, Outputs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum Proxy {
    Nginx,
    Caddy,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RoutesParams {
    /// The reverse proxy: `nginx` (default) or `caddy`.
    #[serde(default = "default_proxy")]
    pub proxy: Proxy,
    /// The domain (nginx `server_name`, caddy `host` matcher).
    pub domain: String,
    /// Serve static files from this folder (typically the live `current` link).
    pub root: Option<String>,
    /// Or proxy to this `host:port`.
    pub upstream: Option<String>,
    /// Where nginx listens for this domain, `port` or `address:port` (default `80`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// nginx: the folder of route files that its configuration includes (`include DIR/*.conf;`).
    pub config_dir: Option<String>,
    /// caddy: the admin API (default `http://127.0.0.1:2019`).
    #[serde(default = "default_caddy_admin")]
    pub caddy_admin: String,
    /// caddy: the HTTP server (under `apps.http.servers`) the routes belong to (default `phased`).
    #[serde(default = "default_caddy_server")]
    pub caddy_server: String,
    /// The nginx binary (default `nginx`).
    #[serde(default = "default_nginx")]
    pub nginx: String,
    /// nginx's prefix (`-p`), when nginx runs under its own folder.
    pub nginx_prefix: Option<String>,
    /// nginx's configuration file (`-c`).
    pub nginx_conf: Option<String>,
}

fn default_proxy() -> Proxy {
    Proxy::Nginx
}

fn default_caddy_admin() -> String {
    "http://127.0.0.1:2019".into()
}

fn default_caddy_server() -> String {
    "phased".into()
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
    pub(super) fn check(&self) -> Result<(), String> {
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
        match self.proxy {
            Proxy::Nginx if self.config_dir.is_none() => {
                Err("nginx needs `config_dir`: the folder of route files its configuration includes".into())
            }
            Proxy::Caddy => {
                plain(&self.caddy_server, "caddy_server", |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            }
            Proxy::Nginx => Ok(()),
        }
    }

    fn caddy_route(&self) -> serde_json::Value {
        let handle = match (&self.root, &self.upstream) {
            (Some(root), _) => {
                serde_json::json!([{"handler": "file_server", "root": root, "index_names": ["index.html"]}])
            }
            (_, Some(upstream)) => serde_json::json!([{"handler": "reverse_proxy", "upstreams": [{"dial": upstream}]}]),
            _ => serde_json::json!([]),
        };
        serde_json::json!({
            "@id": self.route_id(),
            "match": [{"host": [self.domain]}],
            "handle": handle,
            "terminal": true,
        })
    }

    fn route_id(&self) -> String {
        format!("phased-{}", self.domain.replace('*', "_wildcard_"))
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
        Path::new(self.config_dir.as_deref().unwrap_or("."))
            .join(format!("{}.conf", self.domain.replace('*', "_wildcard_")))
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

/// The nginx master that `params` addresses: a process titled `nginx: master process`
/// whose command line names the same configuration file (any master when none is given).
fn nginx_master(params: &RoutesParams) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        text.starts_with("nginx: master process") && params.nginx_conf.as_deref().is_none_or(|conf| text.contains(conf))
    })
}

/// The worker processes of an nginx master that still accept connections (workers
/// that are shutting down have closed their listening sockets).
fn accepting_workers(master: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid =
                stat.rfind(')').and_then(|i| stat[i + 2..].split(' ').nth(1)).and_then(|p| p.parse::<u32>().ok());
            let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
                .into_owned();
            ppid == Some(master) && cmdline.starts_with("nginx: worker process") && !cmdline.contains("shutting down")
        })
        .collect()
}

/// Reloads nginx and waits until no worker with the old configuration accepts
/// connections any more: only then is the new route what every request gets.
async fn reload(params: &RoutesParams) -> Result<(), String> {
    let master = nginx_master(params);
    let old: Vec<u32> = master.map(accepting_workers).unwrap_or_default();
    nginx(params, &["-s", "reload"]).await?;
    let Some(master) = master else { return Ok(()) };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let accepting = accepting_workers(master);
        let old_left = accepting.iter().any(|w| old.contains(w));
        let new_ready = accepting.iter().any(|w| !old.contains(w));
        if !old_left && new_ready {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err("nginx did not finish reloading within 10s (old workers still accept connections)".into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// What a route sent the domain to before: (upstream, root), empty when none.
fn previous_target(block: Option<&str>) -> (String, String) {
    let Some(block) = block else { return Default::default() };
    let find = |prefix: &str| {
        block
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).and_then(|rest| rest.strip_suffix(';')).map(str::to_string))
            .unwrap_or_default()
    };
    (find("proxy_pass http://"), find("root "))
}

fn previous_caddy_target(route: &serde_json::Value) -> (String, String) {
    let handler = &route["handle"][0];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    (text(&handler["upstreams"][0]["dial"]), text(&handler["root"]))
}

/// Replaces (or adds) the domain's route through caddy's admin API; returns where it
/// is and the route it replaced (null when new).
async fn caddy(params: &RoutesParams) -> Result<(String, serde_json::Value), String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let admin = params.caddy_admin.trim_end_matches('/');
    let id_url = format!("{admin}/id/{}", params.route_id());
    let body = params.caddy_route().to_string();
    let unreachable = |e: reqwest::Error| format!("caddy's admin API at {admin} is not reachable: {e}");
    let current = client.get(&id_url).send().await.map_err(unreachable)?;
    let exists = current.status().is_success();
    let previous: serde_json::Value = if exists {
        serde_json::from_str(&current.text().await.unwrap_or_default()).unwrap_or_default()
    } else {
        serde_json::Value::Null
    };
    let (method, url) = if exists {
        (reqwest::Method::PATCH, id_url.clone())
    } else {
        (reqwest::Method::POST, format!("{admin}/config/apps/http/servers/{}/routes", params.caddy_server))
    };
    let response = client
        .request(method, &url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let hint = if !exists && status.as_u16() >= 400 {
            format!(" (does caddy have the server `{}` under apps.http.servers?)", params.caddy_server)
        } else {
            String::new()
        };
        return Err(format!("caddy refused the route ({status}): {}{hint}", text.trim()));
    }
    Ok((id_url, previous))
}

fn run(ctx: ActionCtx, params: RoutesParams) -> ActionFuture {
    Box::pin(async move {
        if params.proxy == Proxy::Caddy {
            let (at, previous) = caddy(&params)
                .await
                .map_err(|e| ActionError::new(format!("route for `{}` not applied: {e}", params.domain)))?;
            ctx.log.line(&format!("route for {} set through caddy ({at})", params.domain));
            let (mut previous_upstream, mut previous_root) = previous_caddy_target(&previous);
            if previous["handle"] == params.caddy_route()["handle"] {
                // A rerun after the route was already set: what came before is unknown.
                (previous_upstream, previous_root) = Default::default();
            }
            let mut out = ActionOutputs::new();
            out.insert("previous_upstream".into(), previous_upstream.into());
            out.insert("previous_root".into(), previous_root.into());
            out.insert("domain".into(), params.domain.clone().into());
            out.insert("config".into(), at.into());
            out.insert("url".into(), format!("http://{}/", params.domain).into());
            return Ok(out);
        }
        let config_dir = params.config_dir.clone().unwrap_or_default();
        std::fs::create_dir_all(&config_dir)
            .map_err(|e| ActionError::new(format!("cannot create `{config_dir}`: {e}")))?;
        let file = params.file();
        let block = params.server_block();
        let previous = std::fs::read_to_string(&file).ok();
        // The route this one replaces is kept beside it (nginx includes only `*.conf`), so
        // a rerun after a crash still knows what to go back to.
        let backup = file.with_extension("conf.previous");
        let replaced = if previous.as_deref() != Some(block.as_str()) {
            match &previous {
                Some(text) => write_file_atomically(&backup, text.as_bytes()).map_err(ActionError::new)?,
                None => drop(std::fs::remove_file(&backup)),
            }
            previous.clone()
        } else {
            std::fs::read_to_string(&backup).ok()
        };
        // What nginx was last told to load, written after each reload: a route on disk
        // that nginx never loaded (phased stopped between the two) is reloaded by the
        // rerun instead of being taken for applied.
        let stamp = file.with_extension("conf.applied");
        let loaded = std::fs::read_to_string(&stamp).ok().is_some_and(|text| text == block);
        if previous.as_deref() != Some(block.as_str()) || !loaded {
            if previous.as_deref() != Some(block.as_str()) {
                write_file_atomically(&file, block.as_bytes()).map_err(ActionError::new)?;
            }
            let applied = match nginx(&params, &["-t"]).await {
                Ok(_) => {
                    crate::crash::point("routes.update: the route written, nginx not reloaded yet");
                    reload(&params).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = applied {
                // Put the previous route back, so that nginx keeps serving what it served.
                match &previous {
                    Some(text) => drop(write_file_atomically(&file, text.as_bytes())),
                    None => drop(std::fs::remove_file(&file)),
                }
                ctx.log.line(&e);
                return Err(ActionError::new(format!("route for `{}` not applied: {e}", params.domain)));
            }
            write_file_atomically(&stamp, block.as_bytes()).map_err(ActionError::new)?;
            ctx.log.line(&format!("route for {} written to {} and nginx reloaded", params.domain, file.display()));
        } else {
            ctx.log.line(&format!("route for {} unchanged", params.domain));
        }
        let port = params.listen.rsplit(':').next().unwrap_or("80");
        let (previous_upstream, previous_root) = previous_target(replaced.as_deref());
        let mut out = ActionOutputs::new();
        out.insert("previous_upstream".into(), previous_upstream.into());
        out.insert("previous_root".into(), previous_root.into());
        out.insert("domain".into(), params.domain.clone().into());
        out.insert("config".into(), file.display().to_string().into());
        out.insert("url".into(), format!("http://{}:{port}/", params.domain).into());
        Ok(out)
    })
}

action_spec!(
    RoutesParams,
    name: "routes.update",
    summary: "Point a domain at a static folder or an upstream through nginx (checked, reloaded gracefully) or caddy (admin API).",
    outputs: Outputs::Fixed(&["domain", "config", "url", "previous_upstream", "previous_root"]),
    example: "domain: blog.example.test\nroot: /srv/blog/current\nlisten: 127.0.0.1:8080\nconfig_dir: /etc/nginx/phased",
    run: run,
    writes: |p: &RoutesParams| if p.proxy == Proxy::Nginx { vec![p.file()] } else { Vec::new() },
);

#[cfg(test)]
mod tests {
    use super::*;

    fn params(target: &str) -> RoutesParams {
        let (key, value) = target.split_once('=').unwrap();
        serde_json::from_value(serde_json::json!({"domain": "a.test", key: value, "config_dir": "/x"})).unwrap()
    }

    #[test]
    fn the_previous_target_is_read_back_from_a_route_this_action_wrote() {
        let block = params("upstream=127.0.0.1:32768").server_block();
        assert_eq!(previous_target(Some(&block)), ("127.0.0.1:32768".to_string(), String::new()));
        let block = params("root=/srv/a/current").server_block();
        assert_eq!(previous_target(Some(&block)), (String::new(), "/srv/a/current".to_string()));
        assert_eq!(previous_target(None), Default::default());
        let route = params("upstream=127.0.0.1:4000").caddy_route();
        assert_eq!(previous_caddy_target(&route), ("127.0.0.1:4000".to_string(), String::new()));
        assert_eq!(previous_caddy_target(&serde_json::Value::Null), Default::default());
    }
}

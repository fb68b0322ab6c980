//! `phased serve`: see [`crate::serve`].

use super::parse_duration;
use std::net::SocketAddr;

use crate::cli::store::{open_store, store_error};
use crate::cli::{CatalogArgs, StoreArgs, exit, usage_error};
use crate::reporter::note_line;

#[derive(clap::Args, Debug)]
pub(super) struct ServeArgs {
    /// Where to listen. Beyond loopback only once a token exists (`phased token create`).
    #[arg(long, default_value = "127.0.0.1:8420")]
    listen: SocketAddr,
    /// The most event streams and followed logs open at once (more get 503).
    #[arg(long, default_value_t = 1000)]
    max_streams: usize,
    /// The most connections open at once; past it, new ones wait to be accepted. Also
    /// kept under the descriptor limit (`ulimit -n`), beside what the runs need.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// The most connections open at once from one client address; more get 503 (behind
    /// a proxy, every client has the proxy's address).
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_ip: u32,
    /// How long a client may take to send a request's head (from connecting, or from
    /// the first byte of a later request on the same connection); then it is closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    header_timeout: std::time::Duration,
    /// How long a connection may stay open with no request after an answer, or with an
    /// answer its client does not read; then it is closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    idle_timeout: std::time::Duration,
    /// Serve `/metrics` without a token. By default it needs a `read` token (it names
    /// every pipeline and node): `Authorization: Bearer <token>`.
    #[arg(long)]
    public_metrics: bool,
    /// How many runs execute at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
    /// On SIGTERM or SIGINT: how long running nodes get to finish before they are
    /// stopped (the rest stays interrupted, resumed at the next start).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: std::time::Duration,
    /// How long a request may take to be answered (an event stream or a followed log:
    /// until its first byte); a slower one gets 408.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    request_timeout: std::time::Duration,
    /// The address users reach the server at, behind a proxy that rewrites `Host`
    /// (`https://deploy.example.com`): the dashboard's origin; with `https`, its cookie
    /// is sent over TLS only.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Git push webhooks (YAML, checked by `phased validate` too): `POST /hooks/{name}`.
    #[arg(long, value_name = "FILE")]
    triggers: Option<std::path::PathBuf>,
    /// A folder that paths given through the API or a webhook may name (inputs declared
    /// `path: true`), besides the data folder; repeat it for several
    /// (`PHASED_ALLOW_PATH`: folders separated by `:`).
    #[arg(long = "allow-path", value_name = "DIR", env = "PHASED_ALLOW_PATH", value_delimiter = ':')]
    allow_paths: Vec<std::path::PathBuf>,
    #[command(flatten)]
    notify: crate::cli::notify::NotifyTargets,
    #[command(flatten)]
    catalog: CatalogArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// A duration longer than zero.
fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("a timeout must be longer than zero, as `10s`".into()),
        d => Ok(d),
    }
}

pub(super) fn serve(args: ServeArgs) -> u8 {
    let store = match open_store(&args.store) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let tokens = match store.tokens() {
        Ok(tokens) => tokens,
        Err(e) => return store_error(&e, &args.store.db),
    };
    drop(store);
    if tokens.is_empty() && !args.listen.ip().is_loopback() {
        return usage_error(
            format!("refusing to listen on {} while no token exists: anyone could reach the API", args.listen),
            Some("make one first (`phased token create NAME`), or listen on 127.0.0.1"),
        );
    }
    if tokens.is_empty() {
        note_line(format_args!("no token exists yet: every /api/ request is refused until `phased token create NAME`"));
    }
    if let Some(url) = &args.public_url {
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.trim_end_matches('/').contains('/')) {
            return usage_error(
                format!("`--public-url {url}` is not an origin"),
                Some("give the scheme and host the users reach, as `https://deploy.example.com` (a port may follow)"),
            );
        }
    }
    let triggers = match &args.triggers {
        None => Default::default(),
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => return usage_error(format!("cannot read `{}`: {e}", path.display()), None),
            };
            let source = crate::source::Source::new(path.display().to_string(), text);
            let catalog = crate::cli::load::pipelines(&args.catalog).catalog();
            let (triggers, problems) = crate::serve::triggers::load(&source, &catalog);
            for d in &problems {
                crate::reporter::err_line(format_args!("{}", crate::report::human(d, false)));
            }
            match triggers {
                Some(triggers) => triggers,
                None => return usage_error(format!("`{}` is not a valid triggers file", path.display()), None),
            }
        }
    };
    // An empty key would let anyone sign a delivery: `validate` cannot see the
    // environment, so the server does not start.
    let unkeyed = crate::serve::triggers::unkeyed(&triggers, &crate::secrets::Secrets::from_env());
    if !unkeyed.is_empty() {
        let each: Vec<String> =
            unkeyed.iter().map(|(name, var)| format!("trigger `{name}`: `{var}` is empty or not set")).collect();
        return usage_error(
            format!("{}: anyone could sign a delivery with an empty key", each.join("; ")),
            Some("set each to the webhook secret configured at the forge (a long random value)"),
        );
    }
    let options = crate::serve::Options {
        shutdown_grace: args.shutdown_grace,
        request_timeout: args.request_timeout,
        public_url: args.public_url.clone(),
        triggers,
        listen: args.listen,
        db: args.store.db.clone(),
        durability: args.store.durability,
        pipelines: args.catalog.pipelines.clone(),
        max_streams: args.max_streams,
        connections: crate::serve::Limits {
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: args.max_connections as usize,
            max_per_address: args.max_connections_per_ip as usize,
        },
        public_metrics: args.public_metrics,
        workers: usize::from(args.workers),
        data_dir: crate::cli::store::data_dir(&args.store.db),
        allow_paths: args.allow_paths.clone(),
        notify: args.notify.guard(),
    };
    let ready = |address: SocketAddr| note_line(format_args!("phased serve: listening on http://{address}"));
    match crate::serve::serve(options, ready) {
        Ok(()) => exit::OK,
        Err(e) => {
            crate::reporter::err_line(format_args!("error: {e}"));
            exit::ENVIRONMENT
        }
    }
}

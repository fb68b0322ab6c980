//! `git.clone`: fetches a branch, tag or commit of a repository (https, http, git,
//! ssh or file URLs) into a folder, with credentials from secrets (a token, or an
//! SSH private key) that are never stored or printed. Transfer progress is the node's
//! progress. The clone is made in a staging folder that replaces the target in one
//! step, so an interrupted clone never leaves a broken one; a target already at the
//! wanted commit is reused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::{AutotagOption, Cred, CredentialType, FetchOptions, RemoteCallbacks, Repository};
use schemars::JsonSchema;
use serde::Deserialize;

use super::fsutil::{remove_stale_staging, remove_tree, replace_dir, staging_dir};
use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, ActionOutputs, Outputs, ProgressReporter};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneParams {
    /// The repository: `https://`, `http://`, `git://`, `ssh://` (or `user@host:path`), `file://` or a path.
    pub url: String,
    /// A branch, a tag or a commit (default: the remote's default branch).
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// The folder to clone into; replaced unless it is already at the wanted commit.
    pub to: String,
    /// Fetch only this many commits of history (branches and tags only).
    pub depth: Option<u32>,
    /// A token for http(s) (use `{{ secrets.name }}`).
    pub token: Option<String>,
    /// The user name sent with the token, or for ssh (default `git`).
    pub username: Option<String>,
    /// An SSH private key, PEM or OpenSSH text (use `{{ secrets.name }}`).
    pub ssh_key: Option<String>,
    /// For ssh: the server's host keys, as `known_hosts` lines (`host keytype key`, or
    /// `[host]:port keytype key` for another port; what `ssh-keyscan` prints). Without
    /// it, the user's `~/.ssh/known_hosts` decides.
    pub known_hosts: Option<String>,
}

impl CloneParams {
    pub fn check(&self) -> Result<(), String> {
        if self.url.trim().is_empty() {
            return Err("`url` is empty".into());
        }
        if self.depth == Some(0) {
            return Err("`depth` must be at least 1".into());
        }
        if let Some(known) = &self.known_hosts {
            known_host_entries(known)?;
        }
        Ok(())
    }
}

/// A `known_hosts` entry: the host patterns and the key (base64 of the wire format).
#[derive(Debug)]
struct KnownHost<'a> {
    hosts: Vec<&'a str>,
    key: &'a str,
}

fn known_host_entries(text: &str) -> Result<Vec<KnownHost<'_>>, String> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [hosts, _kind, key, ..] if !hosts.starts_with('|') && !hosts.starts_with('@') => {
                entries.push(KnownHost { hosts: hosts.split(',').collect(), key })
            }
            [hosts, ..] if hosts.starts_with('|') => {
                return Err(format!(
                    "`known_hosts` line {}: hashed host names are not supported; use `ssh-keyscan` without -H",
                    n + 1
                ));
            }
            _ => return Err(format!("`known_hosts` line {} is not `host keytype key`: `{line}`", n + 1)),
        }
    }
    if entries.is_empty() {
        return Err("`known_hosts` has no entries".into());
    }
    Ok(entries)
}

/// The host and port an ssh URL (`ssh://user@host:port/path` or `user@host:path`) names.
fn ssh_host_port(url: &str) -> Option<(String, u16)> {
    if let Some(rest) = url.strip_prefix("ssh://").or_else(|| url.strip_prefix("git+ssh://")) {
        let authority = rest.split('/').next()?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return Some(match host_port.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                (host.trim_matches(['[', ']']).to_string(), port.parse().ok()?)
            }
            _ => (host_port.trim_matches(['[', ']']).to_string(), 22),
        });
    }
    // scp-like: user@host:path
    if url.contains("://") {
        return None;
    }
    let (before, _) = url.split_once(':')?;
    (!before.contains('/')).then(|| (before.rsplit_once('@').map_or(before, |(_, h)| h).to_string(), 22))
}

/// Whether `known_hosts` lists `key` (base64) for `host` on `port`.
fn host_is_known(known: &str, host: &str, port: u16, key: &str) -> bool {
    let names = if port == 22 { vec![host.to_string()] } else { vec![format!("[{host}]:{port}")] };
    known_host_entries(known)
        .unwrap_or_default()
        .iter()
        .any(|e| e.key == key && e.hosts.iter().any(|h| names.iter().any(|n| n == h)))
}

#[derive(Debug, PartialEq, Eq)]
pub struct Cloned {
    pub commit: String,
    pub reused: bool,
}

thread_local! {
    /// Why the last host key check on this thread refused the server.
    static HOSTKEY_REFUSED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A connection error, with the reason our host key check gave when it refused.
fn connection_error(params: &CloneParams, e: &git2::Error) -> String {
    if let Some(why) = HOSTKEY_REFUSED.with(|r| r.borrow_mut().take()) {
        return format!("cannot reach `{}`: {why}", params.url);
    }
    let hint = match ssh_host_port(&params.url) {
        Some((host, port)) if params.known_hosts.is_none() && e.message().contains("hostkey") => format!(
            " (the server's host key is not in ~/.ssh/known_hosts: give its key as `known_hosts`, \
             e.g. the output of `ssh-keyscan -p {port} {host}`)"
        ),
        _ => String::new(),
    };
    format!("cannot reach `{}`: {}{hint}", params.url, e.message())
}

fn callbacks<'a>(params: &'a CloneParams, progress: Arc<ProgressReporter>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let mut attempts = 0;
    callbacks.credentials(move |_url, user_from_url, allowed| {
        attempts += 1;
        if attempts > 3 {
            return Err(git2::Error::from_str("authentication failed (the credentials were refused)"));
        }
        let user = params.username.as_deref().or(user_from_url).unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY)
            && let Some(key) = &params.ssh_key
        {
            return Cred::ssh_key_from_memory(user, None, key, None);
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && let Some(token) = &params.token
        {
            return Cred::userpass_plaintext(user, token);
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user);
        }
        Err(git2::Error::from_str("the repository needs credentials: give `token` or `ssh_key` from secrets"))
    });
    if let Some(known) = &params.known_hosts {
        let (host, port) = ssh_host_port(&params.url).unwrap_or_default();
        callbacks.certificate_check(move |cert, _| {
            use base64::Engine;
            // TLS certificates are libgit2's to check; ssh host keys are checked here.
            let Some(hostkey) = cert.as_hostkey() else { return Ok(git2::CertificateCheckStatus::CertificatePassthrough) };
            let Some(raw) = hostkey.hostkey() else {
                return Err(git2::Error::from_str("the server's host key cannot be read"));
            };
            let key = base64::engine::general_purpose::STANDARD.encode(raw);
            if host_is_known(known, &host, port, &key) {
                Ok(git2::CertificateCheckStatus::CertificateOk)
            } else {
                let name = if port == 22 { host.clone() } else { format!("[{host}]:{port}") };
                let why = format!(
                    "the host key of {name} is not in `known_hosts` (it may have changed, or the entry is for another host)"
                );
                // libgit2 replaces a refusal's message with its own; keep ours for the error.
                HOSTKEY_REFUSED.with(|r| *r.borrow_mut() = Some(why.clone()));
                Err(git2::Error::from_str(&why))
            }
        });
    }
    callbacks.transfer_progress(move |stats| {
        if stats.total_objects() > 0 {
            progress.report(0.9 * stats.received_objects() as f64 / stats.total_objects() as f64);
        }
        true
    });
    callbacks
}

/// What `reference` names on the remote: refspecs to fetch and how to find the commit.
enum Target {
    Head,
    Branch(String),
    Tag(String),
    Commit(String),
}

fn looks_like_commit(text: &str) -> bool {
    (7..=40).contains(&text.len()) && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// Lists the remote's refs (one connection) to tell a branch from a tag from a commit.
fn resolve(
    repo: &Repository,
    params: &CloneParams,
    progress: &Arc<ProgressReporter>,
) -> Result<(Target, Option<String>), String> {
    HOSTKEY_REFUSED.with(|r| r.borrow_mut().take());
    let mut remote =
        repo.remote_anonymous(&params.url).map_err(|e| format!("invalid repository URL: {}", e.message()))?;
    let connection = remote
        .connect_auth(git2::Direction::Fetch, Some(callbacks(params, Arc::clone(progress))), None)
        .map_err(|e| connection_error(params, &e))?;
    let heads: Vec<(String, String)> = connection
        .list()
        .map_err(|e| e.message().to_string())?
        .iter()
        .map(|h| (h.name().to_string(), h.oid().to_string()))
        .collect();
    let find = |name: &str| heads.iter().find(|(n, _)| n == name).map(|(_, oid)| oid.clone());
    Ok(match &params.reference {
        None => (Target::Head, find("HEAD")),
        Some(r) => {
            if let Some(oid) = find(&format!("refs/heads/{r}")) {
                (Target::Branch(r.clone()), Some(oid))
            } else if let Some(oid) = find(&format!("refs/tags/{r}^{{}}")).or_else(|| find(&format!("refs/tags/{r}"))) {
                (Target::Tag(r.clone()), Some(oid))
            } else if looks_like_commit(r) {
                (Target::Commit(r.clone()), None)
            } else {
                return Err(format!("`{r}` is not a branch or tag of `{}`, nor a commit id", params.url));
            }
        }
    })
}

fn head_commit(path: &Path) -> Option<String> {
    let repo = Repository::open(path).ok()?;
    let head = repo.head().ok()?.peel_to_commit().ok()?;
    Some(head.id().to_string())
}

/// Clones (or reuses) and returns the commit checked out.
pub fn clone(params: &CloneParams, progress: Arc<ProgressReporter>) -> Result<Cloned, String> {
    let target = Path::new(&params.to);
    remove_stale_staging(target);
    let staging = staging_dir(target)?;
    let result = (|| {
        let repo = Repository::init(&staging).map_err(|e| e.message().to_string())?;
        let (what, remote_oid) = resolve(&repo, params, &progress)?;
        let current = head_commit(target);
        let wanted_known = match (&what, &remote_oid) {
            (Target::Commit(c), _) => current.as_deref().is_some_and(|h| h.starts_with(c.as_str())),
            (_, Some(oid)) => current.as_deref() == Some(oid.as_str()),
            _ => false,
        };
        if wanted_known {
            return Ok(Cloned { commit: current.unwrap_or_default(), reused: true });
        }
        let refspecs: Vec<String> = match &what {
            Target::Head => vec!["+HEAD:refs/remotes/origin/HEAD".into()],
            Target::Branch(b) => vec![format!("+refs/heads/{b}:refs/remotes/origin/{b}")],
            Target::Tag(t) => vec![format!("+refs/tags/{t}:refs/tags/{t}")],
            Target::Commit(_) => vec!["+refs/heads/*:refs/remotes/origin/*".into(), "+refs/tags/*:refs/tags/*".into()],
        };
        let mut remote = repo.remote("origin", &params.url).map_err(|e| e.message().to_string())?;
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks(params, Arc::clone(&progress))).download_tags(AutotagOption::None);
        if let (Some(depth), false) = (params.depth, matches!(what, Target::Commit(_))) {
            options.depth(depth as i32);
        }
        remote
            .fetch(&refspecs, Some(&mut options), None)
            .map_err(|e| format!("fetching `{}` failed: {}", params.url, e.message()))?;
        let commit = match (&what, remote_oid) {
            (Target::Commit(c), _) => repo
                .revparse_single(c)
                .and_then(|o| o.peel_to_commit())
                .map_err(|_| format!("commit `{c}` is not in `{}`", params.url))?,
            (_, Some(oid)) => {
                let oid = git2::Oid::from_str(&oid).map_err(|e| e.message().to_string())?;
                repo.find_object(oid, None).and_then(|o| o.peel_to_commit()).map_err(|e| e.message().to_string())?
            }
            (_, None) => return Err(format!("`{}` has no default branch", params.url)),
        };
        repo.set_head_detached(commit.id()).map_err(|e| e.message().to_string())?;
        repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).map_err(|e| e.message().to_string())?;
        progress.report(1.0);
        Ok(Cloned { commit: commit.id().to_string(), reused: false })
    })();
    match result {
        Ok(done) if done.reused => {
            remove_tree(&staging);
            Ok(done)
        }
        Ok(done) => {
            replace_dir(&staging, target)?;
            Ok(done)
        }
        Err(e) => {
            remove_tree(&staging);
            Err(e)
        }
    }
}

fn run(ctx: ActionCtx, params: CloneParams) -> ActionFuture {
    Box::pin(async move {
        let progress = ctx.progress.clone();
        let (done, to, url) =
            tokio::task::spawn_blocking(move || clone(&params, progress).map(|d| (d, params.to, params.url)))
                .await
                .map_err(|e| ActionError::new(format!("clone stopped: {e}")))?
                .map_err(ActionError::new)?;
        let how = if done.reused { "already at" } else { "cloned" };
        ctx.log.line(&format!("{url}: {how} {} in {to}", done.commit));
        let mut out = ActionOutputs::new();
        out.insert("path".into(), to.into());
        out.insert("commit".into(), done.commit.into());
        out.insert("reused".into(), done.reused.into());
        Ok(out)
    })
}

action_spec!(
    CloneParams,
    name: "git.clone",
    summary: "Clone a branch, tag or commit of a git repository (https, http, git, ssh, file).",
    outputs: Outputs::Fixed(&["path", "commit", "reused"]),
    example: "url: https://example.test/team/site.git\nref: main\nto: /tmp/work/source\ndepth: 1\ntoken: \"{{ secrets.git_token }}\"",
    run: run,
    writes: |p: &CloneParams| vec![PathBuf::from(&p.to)],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_name_their_host_and_port() {
        assert_eq!(ssh_host_port("ssh://git@example.test:2222/team/app.git"), Some(("example.test".into(), 2222)));
        assert_eq!(ssh_host_port("ssh://example.test/team/app.git"), Some(("example.test".into(), 22)));
        assert_eq!(ssh_host_port("git@example.test:team/app.git"), Some(("example.test".into(), 22)));
        assert_eq!(ssh_host_port("https://example.test/app.git"), None);
    }

    #[test]
    fn known_hosts_match_by_host_port_and_key() {
        let known = "# comment\n[127.0.0.1]:2222 ssh-ed25519 AAAAkey1\nexample.test,10.0.0.1 ssh-rsa AAAAkey2\n";
        assert!(host_is_known(known, "127.0.0.1", 2222, "AAAAkey1"));
        assert!(!host_is_known(known, "127.0.0.1", 22, "AAAAkey1"), "another port is another entry");
        assert!(host_is_known(known, "10.0.0.1", 22, "AAAAkey2"));
        assert!(!host_is_known(known, "example.test", 22, "AAAAkey1"), "another key");
        assert!(known_host_entries("|1|abc|def ssh-rsa AAAA").unwrap_err().contains("hashed"));
        assert!(known_host_entries("just-a-host").unwrap_err().contains("line 1"));
    }
}

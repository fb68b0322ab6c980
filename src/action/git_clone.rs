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
}

impl CloneParams {
    pub fn check(&self) -> Result<(), String> {
        if self.url.trim().is_empty() {
            return Err("`url` is empty".into());
        }
        if self.depth == Some(0) {
            return Err("`depth` must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Cloned {
    pub commit: String,
    pub reused: bool,
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
    let mut remote =
        repo.remote_anonymous(&params.url).map_err(|e| format!("invalid repository URL: {}", e.message()))?;
    let connection = remote
        .connect_auth(git2::Direction::Fetch, Some(callbacks(params, Arc::clone(progress))), None)
        .map_err(|e| format!("cannot reach `{}`: {}", params.url, e.message()))?;
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

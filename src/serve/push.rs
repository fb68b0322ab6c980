//! A push's fields checked for what they claim to be before any of them reaches a
//! template: a commit id, a clone URL, a ref name, a repository name. A signed
//! delivery is the forge's word, but what it carries was typed by whoever pushed (a
//! branch name, a repository name), so each field is held to its kind, and to
//! characters that mean nothing to a shell. Also: whether a push deletes its branch,
//! and when its head commit was made (a trigger's `max_age`).

use std::time::{Duration, SystemTime};

use serde_json::Value;

/// Characters a shell gives a meaning to, refused in every field (with whitespace and
/// control characters).
const SHELL: &str = "$`;'\"&|<>(){}!\\";

/// Checks the fields of a push (`{commit, branch, ref, repository, clone_url}`); the
/// problem names the field as templates read it (`push.commit`).
pub(super) fn check(push: &Value) -> Result<(), String> {
    let field = |name: &str| push[name].as_str().unwrap_or_default();
    let shown = |name: &str| {
        let value: String = field(name).chars().take(100).collect();
        format!("{value:?}")
    };
    if !is_commit(field("commit")) {
        return Err(format!(
            "`push.commit` is {}, not a commit id (40 or 64 hexadecimal digits): nothing was queued",
            shown("commit")
        ));
    }
    if !is_ref(field("ref")) {
        return Err(format!(
            "`push.ref` is {}, not a git ref name (`git check-ref-format` rules, and none of {SHELL:?}, \
             whitespace or control characters): nothing was queued",
            shown("ref")
        ));
    }
    if !is_repository(field("repository")) {
        return Err(format!(
            "`push.repository` is {}, not a repository name (`owner/name`: letters, digits, `-`, `_`, `.`): \
             nothing was queued",
            shown("repository")
        ));
    }
    if !is_clone_url(field("clone_url")) {
        return Err(format!(
            "`push.clone_url` is {}, not a clone URL (`https://`, `http://`, `ssh://` or `git://`, or \
             `git@host:path`): nothing was queued",
            shown("clone_url")
        ));
    }
    Ok(())
}

/// 40 (SHA-1) or 64 (SHA-256) hexadecimal digits.
pub(super) fn is_commit(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A ref name as `git check-ref-format --allow-onelevel` takes it, with no character
/// a shell gives a meaning to and no part that starts with `-` (an option to git).
pub(super) fn is_ref(text: &str) -> bool {
    let git_rules = !text.is_empty()
        && text.len() <= 255
        && text != "@"
        && !text.starts_with('/')
        && !text.ends_with('/')
        && !text.ends_with('.')
        && !text.contains("//")
        && !text.contains("..")
        && !text.contains("@{")
        && !text.chars().any(|c| c.is_control() || c.is_whitespace() || "~^:?*[".contains(c))
        && text.split('/').all(|part| !part.starts_with('.') && !part.ends_with(".lock"));
    git_rules && !text.chars().any(|c| SHELL.contains(c)) && text.split('/').all(|part| !part.starts_with('-'))
}

/// `owner/name`, or `group/subgroup/name` (GitLab): parts of letters, digits, `-`, `_`
/// and `.`, none `.`, `..` or starting with `-`.
pub(super) fn is_repository(text: &str) -> bool {
    let parts: Vec<&str> = text.split('/').collect();
    text.len() <= 255
        && parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && !p.starts_with('-')
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// `http`, `https`, `ssh` or `git` URL, or scp-like `user@host:path`, of the
/// characters URLs of repositories use.
pub(super) fn is_clone_url(text: &str) -> bool {
    if text.is_empty()
        || text.len() > 2048
        || !text.chars().all(|c| c.is_ascii_alphanumeric() || "-._~:/@%+[]".contains(c))
    {
        return false;
    }
    let path_ok = |path: &str| !path.starts_with('-') && !path.contains('[') && !path.contains(']');
    match text.split_once("://") {
        Some((scheme, rest)) => {
            if !["http", "https", "ssh", "git"].contains(&scheme.to_ascii_lowercase().as_str()) {
                return false;
            }
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let (user, host_port) = authority.rsplit_once('@').map_or(("", authority), |(u, h)| (u, h));
            !user.starts_with('-') && !user.contains('[') && host_of(host_port).is_some_and(is_host) && path_ok(path)
        }
        None => {
            // scp-like: `[user@]host:path`, as git reads it when there is no `://`.
            let Some((user_host, path)) = text.split_once(':') else { return false };
            let (user, host) = user_host.rsplit_once('@').map_or(("", user_host), |(u, h)| (u, h));
            // `transport::address` is git's syntax for a remote helper.
            !text.contains("::")
                && !path.is_empty()
                && path_ok(path)
                && !user.starts_with('-')
                && user.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
                && is_host(host)
                && !host.starts_with('[')
        }
    }
}

/// The host of `host[:port]` or `[v6][:port]`, when the port is digits.
fn host_of(host_port: &str) -> Option<&str> {
    let (host, port) = match host_port.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')? + 2;
            (&host_port[..end], host_port[end..].strip_prefix(':'))
        }
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let whole = port.is_some() || host.len() == host_port.len();
    (port_ok && whole).then_some(host)
}

/// A host name or an IPv4 address (`git.example`), or an IPv6 one in brackets.
fn is_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || ":.".contains(c));
    }
    host.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
}

/// Whether a push deletes its branch: GitHub says `deleted: true`; every forge gives
/// an all-zero commit (GitLab's `checkout_sha` is then null, and `after` zeros).
pub(super) fn deletes(payload: &Value, push: &Value) -> bool {
    payload["deleted"] == Value::Bool(true) || push["commit"].as_str().is_some_and(|c| c.bytes().all(|b| b == b'0'))
}

/// When the push's head commit was made, as the payload says: GitHub's and Gitea's
/// `head_commit.timestamp`, else the entry of `commits` whose id is the pushed commit
/// (GitLab), else a `timestamp` at the top (a generic push).
pub(super) fn head_time(payload: &Value, commit: &str) -> Option<SystemTime> {
    let from_commits =
        || payload["commits"].as_array()?.iter().find(|c| c["id"].as_str() == Some(commit))?["timestamp"].as_str();
    let text =
        payload["head_commit"]["timestamp"].as_str().or_else(from_commits).or_else(|| payload["timestamp"].as_str())?;
    rfc3339(text)
}

/// An RFC 3339 time with `Z` or a numeric offset (`2024-05-05T19:40:15-04:00`).
fn rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (local, east) = match text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        Some(local) => (local, 0i64),
        None => {
            let at = text.len().checked_sub(6).filter(|at| text.is_char_boundary(*at))?;
            let (local, offset) = text.split_at(at);
            let sign = match offset.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (hours, minutes) = offset[1..].split_once(':')?;
            let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
            (local, sign * (hours * 3600 + minutes * 60))
        }
    };
    let as_if_utc = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    // The local time is `east` seconds ahead of UTC.
    let shift = Duration::from_secs(east.unsigned_abs());
    if east >= 0 { as_if_utc.checked_sub(shift) } else { as_if_utc.checked_add(shift) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_field_is_held_to_its_kind() {
        assert!(is_commit(&"a".repeat(40)) && is_commit(&"0F".repeat(32)));
        for bad in ["", "abc", &"g".repeat(40), &"a".repeat(41), "$(id)"] {
            assert!(!is_commit(bad), "{bad}");
        }
        for good in ["main", "refs/heads/main", "feature/x-1", "refs/heads/fix#12", "v1.2", "été"] {
            assert!(is_ref(good), "{good}");
        }
        for bad in [
            "",
            "@",
            "/main",
            "main/",
            "a//b",
            "a..b",
            "a@{1}",
            ".hidden",
            "a/.b",
            "x.lock",
            "main.",
            "a b",
            "a\nb",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "$(id)",
            "a`id`",
            "a;b",
            "a'b",
            "a\"b",
            "a|b",
            "a&b",
            "-x",
            "refs/heads/-x",
        ] {
            assert!(!is_ref(bad), "{bad:?}");
        }
        for good in ["acme/web", "group/sub/web", "acme/.github", "a_b/c-d.e"] {
            assert!(is_repository(good), "{good}");
        }
        for bad in ["web", "acme/", "/web", "../etc", "acme/..", "acme/-x", "acme/web;id", "acme/w b"] {
            assert!(!is_repository(bad), "{bad}");
        }
        for good in [
            "https://github.com/acme/web.git",
            "http://127.0.0.1:8080/acme/web.git",
            "ssh://git@git.example:2222/acme/web.git",
            "git://127.0.0.1:9418/web.git",
            "git@github.com:acme/web.git",
            "github.com:acme/web.git",
            "https://[::1]:3000/acme/web.git",
        ] {
            assert!(is_clone_url(good), "{good}");
        }
        for bad in [
            "",
            "file:///etc",
            "ext::sh -c touch% /tmp/x",
            "--upload-pack=touch x",
            "https://git.example/web.git; id",
            "https://git.example/`id`",
            "https://-oProxyCommand=x/web",
            "ssh://git@host:x/web",
            "git@-oProxyCommand=x:web",
            "host:-x",
            "ext::sh",
            "ssh://-oProxyCommand@host/web",
            "https://[::1]x/web",
            "https://git.example/$(id)",
            "https://git.example/a b",
        ] {
            assert!(!is_clone_url(bad), "{bad}");
        }
    }

    #[test]
    fn the_head_commits_time_is_read_with_its_offset() {
        let utc = rfc3339("2024-05-05T23:40:15Z").unwrap();
        assert_eq!(rfc3339("2024-05-05T19:40:15-04:00"), Some(utc));
        assert_eq!(rfc3339("2024-05-06T01:40:15+02:00"), Some(utc));
        assert!(rfc3339("2024-05-05T19:40:15.250-04:00").is_some());
        assert_eq!(rfc3339("yesterday"), None);
        let github = serde_json::json!({"head_commit": {"timestamp": "2024-05-05T19:40:15-04:00"}});
        assert_eq!(head_time(&github, "c"), Some(utc));
        let gitlab = serde_json::json!({"commits": [{"id": "a", "timestamp": "2000-01-01T00:00:00Z"}, {"id": "c", "timestamp": "2024-05-05T23:40:15Z"}]});
        assert_eq!(head_time(&gitlab, "c"), Some(utc));
        assert_eq!(head_time(&gitlab, "other"), None);
    }
}

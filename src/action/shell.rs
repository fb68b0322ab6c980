//! `shell`: runs a command. Its outputs are the `key=value` lines it writes to the
//! file named by `$PHASED_OUTPUT`. Its stdout and stderr go to the node's log; it runs
//! in its own process group, which is killed when the node ends, times out or is
//! cancelled, and when phased itself dies.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, ActionOutputs, Outputs};
use crate::process::{self, GroupGuard};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ShellParams {
    /// A script for `sh -c`.
    pub run: Option<String>,
    /// A program and its arguments, run without a shell.
    pub command: Option<Vec<String>>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: IndexMap<String, String>,
    /// The working directory.
    pub cwd: Option<String>,
    /// Paths this step writes (relative to `cwd`); `phased watch` ignores changes
    /// there, so that a deploy does not trigger itself.
    #[serde(default)]
    pub writes: Vec<String>,
}

impl ShellParams {
    pub(super) fn check(&self) -> Result<(), String> {
        match (&self.run, &self.command) {
            (Some(_), Some(_)) => Err("give either `run` or `command`, not both".into()),
            (None, None) => Err("give `run` (a script for `sh -c`) or `command` (a program and its arguments)".into()),
            (None, Some(argv)) if argv.is_empty() => Err("`command` is empty: give a program and its arguments".into()),
            _ => Ok(()),
        }
    }
}

/// The most a step's `$PHASED_OUTPUT` may hold: its outputs are stored and sent on.
const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// How long output is still read after the command exits.
const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

fn run(ctx: ActionCtx, params: ShellParams) -> ActionFuture {
    Box::pin(async move {
        let (argv, shown): (Vec<String>, String) = match (&params.run, &params.command) {
            // POSIX puts the shell at /bin/sh: no search through $PATH for it.
            (Some(script), _) => (vec!["/bin/sh".into(), "-c".into(), script.clone()], "`sh -c`".to_string()),
            (None, Some(argv)) if !argv.is_empty() => (argv.clone(), format!("`{}`", argv[0])),
            _ => return Err(ActionError::new("give `run` or `command`")),
        };
        let mut cmd = process::command(&argv);
        crate::paths::private_dir_all(&ctx.work_dir)
            .map_err(|e| ActionError::new(format!("cannot create `{}`: {e}", ctx.work_dir.display())))?;
        let output_file = ctx.work_dir.join(format!("{}.{}.output", ctx.node, ctx.attempt));
        let _ = std::fs::remove_file(&output_file);
        // Removed however the step ends (failed, stopped, dropped): it may hold a secret.
        let _remove_output = RemoveOnDrop(output_file.clone());
        cmd.envs(&params.env)
            .env("PHASED_OUTPUT", &output_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = &params.cwd {
            cmd.current_dir(cwd);
        }
        process::configure(&mut cmd, &ctx.run_id, &ctx.run_key, &ctx.node);
        ctx.log.header(&format!("== attempt {} of `{}`: {shown}", ctx.attempt, ctx.node));
        let mut child = cmd.spawn().map_err(|e| {
            let place = params.cwd.as_deref().map(|c| format!(" in `{c}`")).unwrap_or_default();
            ActionError::new(format!("cannot start {shown}{place}: {e}"))
        })?;
        let group = GroupGuard::new(child.id(), &ctx.run_key);
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let read_out = read_lines(stdout, ctx.log.clone());
        let read_err = read_lines(stderr, ctx.log.clone());
        // A background process may keep the pipes open after the command exits: read
        // what comes within a grace period, then stop waiting for it.
        let mut readers = Box::pin(async move { tokio::join!(read_out, read_err) });
        let finished = async {
            tokio::select! {
                status = child.wait() => {
                    let _ = tokio::time::timeout(OUTPUT_GRACE, &mut readers).await;
                    status
                }
                _ = &mut readers => child.wait().await,
            }
        };
        let status = tokio::select! {
            status = finished => Some(status),
            _ = ctx.stop.requested() => None,
        };
        let Some(status) = status else {
            // Asked to stop: SIGTERM to the whole group (a `trap ... TERM` runs), and
            // SIGKILL to what is left after the grace period.
            let grace = crate::duration::Duration(ctx.stop.grace);
            ctx.log.line(&format!("== stopping `{}`: SIGTERM, then SIGKILL after {grace}", ctx.node));
            group.terminate();
            let ended = tokio::time::timeout(ctx.stop.grace, child.wait()).await.is_ok();
            let _ = tokio::time::timeout(OUTPUT_GRACE, &mut readers).await;
            group.finish();
            let how = if ended { "ended after SIGTERM" } else { "was killed after the grace period" };
            return Err(ActionError::new(format!("{shown} was stopped: it {how}")));
        };
        group.finish();
        let status = status.map_err(|e| ActionError::new(format!("waiting for {shown}: {e}")))?;
        if !status.success() {
            let how = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_string(),
            };
            return Err(ActionError::new(format!("{shown} {how}")).with_tail(ctx.log.tail()));
        }
        match std::fs::metadata(&output_file) {
            Ok(meta) if meta.len() > MAX_OUTPUT_BYTES => Err(ActionError::new(format!(
                "$PHASED_OUTPUT holds {} bytes; outputs are recorded, at most {MAX_OUTPUT_BYTES} bytes of them: \
                 write large data to a file and output its path",
                meta.len()
            ))),
            Ok(_) => parse_outputs(&std::fs::read_to_string(&output_file).unwrap_or_default()),
            Err(_) => Ok(ActionOutputs::new()),
        }
    })
}

/// A file removed when the step is over, whatever its end.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `key=value` lines, and GitHub's multi-line form: `key<<DELIMITER`, the value's
/// lines, then `DELIMITER` alone on a line (a `<<` before any `=` starts one, as on
/// GitHub). Blank lines and `#` comments between entries are skipped; a later key wins.
fn parse_outputs(text: &str) -> Result<ActionOutputs, ActionError> {
    let mut outputs = ActionOutputs::new();
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).enumerate();
    while let Some((i, line)) = lines.next() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let heredoc = line.find("<<").filter(|&at| line.find('=').is_none_or(|eq| at < eq));
        let (key, value) = match heredoc {
            Some(at) => {
                let delimiter = line[at + 2..].trim();
                if delimiter.is_empty() {
                    let e = format!("line {} of $PHASED_OUTPUT has `<<` but no delimiter: `{line}`", i + 1);
                    return Err(ActionError::new(e));
                }
                let mut value = Vec::new();
                loop {
                    match lines.next() {
                        Some((_, l)) if l == delimiter => break,
                        Some((_, l)) => value.push(l),
                        None => {
                            let e = format!("`{delimiter}` (opened on line {} of $PHASED_OUTPUT) never closes", i + 1);
                            return Err(ActionError::new(e));
                        }
                    }
                }
                (&line[..at], value.join("\n"))
            }
            None => match line.split_once('=') {
                Some((key, value)) => (key, value.to_string()),
                None => {
                    let e =
                        format!("line {} of $PHASED_OUTPUT is not `key=value` nor `key<<DELIMITER`: `{line}`", i + 1);
                    return Err(ActionError::new(e));
                }
            },
        };
        let key = key.trim();
        if !crate::names::is_identifier(key) {
            let e = format!("output name `{key}` (line {} of $PHASED_OUTPUT) is not snake_case", i + 1);
            return Err(ActionError::new(e));
        }
        outputs.insert(key.to_string(), serde_json::Value::String(value));
    }
    Ok(outputs)
}

action_spec!(
    ShellParams,
    name: "shell",
    summary: "Run a command; `key=value` lines written to $PHASED_OUTPUT become outputs.",
    outputs: Outputs::Any,
    example: "run: echo \"version=$(cat VERSION)\" >> \"$PHASED_OUTPUT\"\ncwd: /tmp\nenv: {LANG: C}\nwrites: [build/]",
    run: run,
    writes: |p: &ShellParams| {
        let base = p.cwd.as_deref().map(std::path::PathBuf::from).unwrap_or_default();
        p.writes.iter().map(|w| base.join(w)).collect::<Vec<_>>()
    },
);

/// The most of one line held in memory while it is read; a longer line goes to the log
/// in parts ([`super::NodeLog::fragment`]), so memory stays flat whatever a step prints.
const MAX_HELD: usize = 64 * 1024;

/// Copies a step's output into its log line by line. Bytes that are not UTF-8 are
/// shown as U+FFFD; a line longer than [`MAX_HELD`] is written in parts.
async fn read_lines(stream: impl AsyncRead + Unpin, log: std::sync::Arc<super::NodeLog>) {
    let mut reader = BufReader::with_capacity(MAX_HELD, stream);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                line.extend_from_slice(&buf[..end]);
                reader.consume(end + 1);
                log.line(&String::from_utf8_lossy(&line));
                line.clear();
            }
            None => {
                let n = buf.len();
                line.extend_from_slice(buf);
                reader.consume(n);
                if line.len() >= MAX_HELD {
                    // Cut at a character boundary; a character split by the read waits.
                    let valid = match std::str::from_utf8(&line) {
                        Ok(_) => line.len(),
                        Err(e) if e.error_len().is_none() => e.valid_up_to(),
                        Err(_) => line.len(),
                    };
                    let rest = line.split_off(valid);
                    log.fragment(&String::from_utf8_lossy(&line));
                    line = rest;
                }
            }
        }
    }
    if !line.is_empty() {
        log.line(&String::from_utf8_lossy(&line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_key_value_lines() {
        let out = parse_outputs("# comment\na=1\n\nb = x=y\na=2\n").unwrap();
        assert_eq!(serde_json::Value::Object(out), serde_json::json!({"a": "2", "b": " x=y"}));
        assert!(parse_outputs("novalue\n").unwrap_err().message.contains("line 1"));
        assert!(parse_outputs("Bad-Key=1\n").unwrap_err().message.contains("snake_case"));
    }

    #[test]
    fn github_multi_line_values_are_read_to_their_delimiter() {
        let text = "notes<<EOF\nline one\n\nline = three\nEOF\nafter=1\nurl=a<<b\n";
        let out = parse_outputs(text).unwrap();
        assert_eq!(
            serde_json::Value::Object(out),
            serde_json::json!({"notes": "line one\n\nline = three", "after": "1", "url": "a<<b"})
        );
        let open = parse_outputs("x<<END\nno end\n").unwrap_err().message;
        assert!(open.contains("`END` (opened on line 1 of $PHASED_OUTPUT) never closes"), "{open}");
        assert!(parse_outputs("x<<\n").unwrap_err().message.contains("no delimiter"));
    }
}

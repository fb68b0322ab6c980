//! `content.write`: writes files given inline (text or base64) into a folder, which
//! is replaced in one step. File names cannot leave the folder.

use std::path::{Path, PathBuf};

use base64::Engine;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::fsutil::{
    prepare_parent, remove_stale_staging, remove_tree, replace_dir, safe_relative, staging_dir, tree_outputs,
};
use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, Outputs};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ContentParams {
    /// The folder to write into; its previous content is replaced.
    pub to: String,
    /// File name (relative, `/` for folders) to content: text, or `{base64: ...}`.
    pub files: IndexMap<String, FileContent>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(super) enum FileContent {
    Text(String),
    Encoded {
        /// The file's bytes, base64-encoded.
        base64: String,
    },
}

impl ContentParams {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.files.is_empty() {
            return Err("`files` is empty: give at least one file".into());
        }
        for (name, content) in &self.files {
            safe_relative(Path::new(name)).map_err(|why| format!("file name `{name}` {why}"))?;
            if let FileContent::Encoded { base64 } = content {
                base64::engine::general_purpose::STANDARD
                    .decode(base64.trim())
                    .map_err(|e| format!("file `{name}`: invalid base64: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Writes the files; returns how many bytes.
pub(super) fn write(params: &ContentParams) -> Result<u64, String> {
    params.check()?;
    let target = Path::new(&params.to);
    remove_stale_staging(target);
    let staging = staging_dir(target)?;
    let result = (|| {
        let mut bytes = 0;
        for (name, content) in &params.files {
            let relative = safe_relative(Path::new(name)).map_err(|why| format!("file name `{name}` {why}"))?;
            let path = prepare_parent(&staging, &relative).map_err(|why| format!("file `{name}` {why}"))?;
            let data = match content {
                FileContent::Text(text) => text.as_bytes().to_vec(),
                FileContent::Encoded { base64 } => base64::engine::general_purpose::STANDARD
                    .decode(base64.trim())
                    .map_err(|e| format!("file `{name}`: {e}"))?,
            };
            bytes += data.len() as u64;
            std::fs::write(&path, data).map_err(|e| format!("file `{name}`: {e}"))?;
        }
        Ok(bytes)
    })();
    match result {
        Ok(bytes) => {
            crate::crash::point("content.write: written, not swapped in yet");
            replace_dir(&staging, target)?;
            Ok(bytes)
        }
        Err(e) => {
            remove_tree(&staging);
            Err(e)
        }
    }
}

fn run(_ctx: ActionCtx, params: ContentParams) -> ActionFuture {
    Box::pin(async move {
        let files = params.files.len();
        let (bytes, to) = tokio::task::spawn_blocking(move || write(&params).map(|b| (b, params.to)))
            .await
            .map_err(|e| ActionError::new(format!("writing stopped: {e}")))?
            .map_err(ActionError::new)?;
        Ok(tree_outputs(to, files as u64, bytes))
    })
}

action_spec!(
    ContentParams,
    name: "content.write",
    summary: "Write files given inline (text or base64) into a folder.",
    outputs: Outputs::Fixed(&["path", "files", "bytes"]),
    example: "to: /tmp/site\nfiles:\n  index.html: <h1>hello</h1>\n  img/dot.gif: {base64: R0lGODlhAQABAAAAACw=}",
    run: run,
    writes: |p: &ContentParams| vec![PathBuf::from(&p.to)],
);

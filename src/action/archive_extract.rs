//! `archive.extract`: unpacks a tar, tar.gz or zip archive into a folder. Hostile
//! archives are refused with the offending entry named: paths that leave the target
//! (`..`, absolute), symlinks or hard links pointing out, device files, and bombs
//! (limits on total size and entry count). The archive is unpacked into a staging
//! folder that replaces the target in one step, so nothing partial is ever visible and
//! nothing is written outside the target (the staging folder is removed on failure).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::fsutil::{
    link_stays_inside, prepare_parent, remove_stale_staging, remove_tree, replace_dir, safe_relative, staging_dir,
    tree_outputs,
};
use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, Outputs, ProgressReporter};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractParams {
    /// The archive file: `.tar`, `.tar.gz` / `.tgz` or `.zip` (recognised by content).
    pub archive: String,
    /// The folder to unpack into; its previous content is replaced.
    pub to: String,
    /// The most bytes the unpacked files may hold in all (default 1 GiB).
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1))]
    pub max_bytes: u64,
    /// The most entries the archive may hold (default 100,000).
    #[serde(default = "default_max_files")]
    #[schemars(range(min = 1))]
    pub max_files: u64,
    /// Leading path components to drop from every entry (like `tar --strip-components`).
    #[serde(default)]
    pub strip_components: u32,
}

fn default_max_bytes() -> u64 {
    1 << 30
}

fn default_max_files() -> u64 {
    100_000
}

impl ExtractParams {
    pub fn check(&self) -> Result<(), String> {
        if self.to.trim().is_empty() {
            return Err("`to` is empty".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Tar,
    TarGz,
    Zip,
}

fn detect(path: &Path) -> io::Result<Format> {
    let mut head = [0u8; 512];
    let mut file = File::open(path)?;
    let n = file.read(&mut head)?;
    Ok(if n >= 2 && head[..2] == [0x1f, 0x8b] {
        Format::TarGz
    } else if n >= 4 && &head[..4] == b"PK\x03\x04" {
        Format::Zip
    } else {
        Format::Tar
    })
}

/// What an extraction did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    pub files: u64,
    pub bytes: u64,
}

/// Counts what is written against the limits.
struct Budget {
    max_bytes: u64,
    max_files: u64,
    done: Extracted,
}

impl Budget {
    fn entry(&mut self, name: &Path) -> Result<(), String> {
        self.done.files += 1;
        if self.done.files > self.max_files {
            return Err(format!(
                "entry `{}`: the archive has more than {} entries (`max_files`)",
                name.display(),
                self.max_files
            ));
        }
        Ok(())
    }

    /// Copies one file's content, stopping at the size limit.
    fn copy(&mut self, name: &Path, reader: &mut dyn Read, path: &Path, mode: Option<u32>) -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(mode.map_or(0o644, |m| m & 0o777));
        let mut out = options.open(path).map_err(|e| format!("entry `{}`: cannot create: {e}", name.display()))?;
        let left = self.max_bytes - self.done.bytes;
        let copied =
            io::copy(&mut reader.take(left + 1), &mut out).map_err(|e| format!("entry `{}`: {e}", name.display()))?;
        if copied > left {
            return Err(format!(
                "entry `{}`: the unpacked files exceed {} bytes (`max_bytes`); this looks like an archive bomb",
                name.display(),
                self.max_bytes
            ));
        }
        self.done.bytes += copied;
        Ok(())
    }
}

/// Reports how much of the archive file has been read, as the node's progress.
struct Counting<R> {
    inner: R,
    read: u64,
    total: u64,
    progress: std::sync::Arc<ProgressReporter>,
    last: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.total > 0 && self.read - self.last > self.total / 50 {
            self.last = self.read;
            self.progress.report(self.read as f64 / self.total as f64);
        }
        Ok(n)
    }
}

fn strip(path: &Path, components: u32) -> Option<PathBuf> {
    let rest: PathBuf = path.components().skip(components as usize).collect();
    (!rest.as_os_str().is_empty()).then_some(rest)
}

/// Whether an entry names the archive's root (`./`, as `tar -C dir .` writes first):
/// that folder is the target itself, so there is nothing to create for it.
fn is_root(name: &Path) -> bool {
    name.components().all(|c| c == std::path::Component::CurDir)
}

/// Unpacks `archive` into `to` (replacing it), within the limits of `params`.
pub fn extract(params: &ExtractParams, progress: std::sync::Arc<ProgressReporter>) -> Result<Extracted, String> {
    let archive = Path::new(&params.archive);
    let format = detect(archive).map_err(|e| format!("cannot read `{}`: {e}", archive.display()))?;
    let total = std::fs::metadata(archive).map(|m| m.len()).unwrap_or(0);
    let target = Path::new(&params.to);
    remove_stale_staging(target);
    let staging = staging_dir(target)?;
    let mut budget = Budget { max_bytes: params.max_bytes, max_files: params.max_files, done: Extracted::default() };
    let file = File::open(archive).map_err(|e| format!("cannot open `{}`: {e}", archive.display()))?;
    let reader = Counting { inner: io::BufReader::new(file), read: 0, total, progress, last: 0 };
    let result = match format {
        Format::Tar => unpack_tar(tar::Archive::new(reader), &staging, params, &mut budget),
        Format::TarGz => {
            unpack_tar(tar::Archive::new(flate2::read::GzDecoder::new(reader)), &staging, params, &mut budget)
        }
        Format::Zip => unpack_zip(archive, &staging, params, &mut budget),
    };
    match result {
        Ok(()) => {
            crate::crash::point("archive.extract: unpacked, not swapped in yet");
            replace_dir(&staging, target)?;
            Ok(budget.done)
        }
        Err(e) => {
            remove_tree(&staging);
            Err(e)
        }
    }
}

/// Creates a symlink entry, refusing one whose target resolves outside the root.
fn plant_symlink(root: &Path, raw: &Path, relative: &Path, target: &Path) -> Result<(), String> {
    if !link_stays_inside(relative, target) {
        return Err(format!("entry `{}` is a symlink to `{}`, outside the target", raw.display(), target.display()));
    }
    let path = prepare_parent(root, relative).map_err(|why| format!("entry `{}` {why}", raw.display()))?;
    std::os::unix::fs::symlink(target, &path).map_err(|e| format!("entry `{}`: {e}", raw.display()))
}

fn unpack_tar<R: Read>(
    mut archive: tar::Archive<R>,
    root: &Path,
    params: &ExtractParams,
    budget: &mut Budget,
) -> Result<(), String> {
    let entries = archive.entries().map_err(|e| format!("not a valid archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a valid archive: {e}"))?;
        let raw = entry.path().map_err(|e| format!("an entry has an unreadable name: {e}"))?.into_owned();
        let Some(name) = strip(&raw, params.strip_components) else { continue };
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::Directory && is_root(&name) {
            continue;
        }
        let relative = safe_relative(&name).map_err(|why| format!("entry `{}` {why}", raw.display()))?;
        budget.entry(&raw)?;
        let place =
            |relative: &Path| prepare_parent(root, relative).map_err(|why| format!("entry `{}` {why}", raw.display()));
        match kind {
            tar::EntryType::Directory => {
                let path = place(&relative)?;
                if std::fs::symlink_metadata(&path).is_err() {
                    std::fs::create_dir(&path).map_err(|e| format!("entry `{}`: {e}", raw.display()))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let path = place(&relative)?;
                let mode = entry.header().mode().ok();
                budget.copy(&raw, &mut entry, &path, mode)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| format!("entry `{}`: {e}", raw.display()))?
                    .ok_or_else(|| format!("entry `{}` is a symlink without a target", raw.display()))?;
                plant_symlink(root, &raw, &relative, &target)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| format!("entry `{}`: {e}", raw.display()))?
                    .ok_or_else(|| format!("entry `{}` is a hard link without a target", raw.display()))?;
                let linked = strip(&target, params.strip_components)
                    .ok_or_else(|| {
                        format!(
                            "entry `{}` is a hard link to `{}`, outside the target",
                            raw.display(),
                            target.display()
                        )
                    })
                    .and_then(|t| {
                        safe_relative(&t).map_err(|_| {
                            format!(
                                "entry `{}` is a hard link to `{}`, outside the target",
                                raw.display(),
                                target.display()
                            )
                        })
                    })?;
                let source = root.join(&linked);
                let meta = std::fs::symlink_metadata(&source).map_err(|_| {
                    format!(
                        "entry `{}` is a hard link to `{}`, which is not an earlier file of the archive",
                        raw.display(),
                        target.display()
                    )
                })?;
                if !meta.is_file() {
                    return Err(format!(
                        "entry `{}` is a hard link to `{}`, which is not a file",
                        raw.display(),
                        target.display()
                    ));
                }
                let path = place(&relative)?;
                std::fs::hard_link(&source, &path).map_err(|e| format!("entry `{}`: {e}", raw.display()))?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => {
                let what = match other {
                    tar::EntryType::Char => "a character device",
                    tar::EntryType::Block => "a block device",
                    tar::EntryType::Fifo => "a named pipe",
                    _ => "of a kind phased does not unpack",
                };
                return Err(format!("entry `{}` is {what}; refused", raw.display()));
            }
        }
    }
    Ok(())
}

fn unpack_zip(path: &Path, root: &Path, params: &ExtractParams, budget: &mut Budget) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| format!("not a valid zip archive: {e}"))?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| format!("entry {i}: {e}"))?;
        let raw =
            PathBuf::from(entry.name().map_err(|e| format!("entry {i} has an unreadable name: {e}"))?.into_owned());
        let Some(name) = strip(&raw, params.strip_components) else { continue };
        if entry.is_dir() && is_root(&name) {
            continue;
        }
        let relative = safe_relative(&name).map_err(|why| format!("entry `{}` {why}", raw.display()))?;
        budget.entry(&raw)?;
        let place =
            |relative: &Path| prepare_parent(root, relative).map_err(|why| format!("entry `{}` {why}", raw.display()));
        let mode = entry.unix_mode();
        let file_type = mode.map(|m| m & 0o170000);
        if entry.is_dir() {
            let path = place(&relative)?;
            if std::fs::symlink_metadata(&path).is_err() {
                std::fs::create_dir(&path).map_err(|e| format!("entry `{}`: {e}", raw.display()))?;
            }
        } else if file_type == Some(0o120000) {
            let mut target = String::new();
            entry.read_to_string(&mut target).map_err(|e| format!("entry `{}`: {e}", raw.display()))?;
            let target = PathBuf::from(target);
            plant_symlink(root, &raw, &relative, &target)?;
        } else if matches!(file_type, Some(0o020000 | 0o060000 | 0o010000 | 0o140000)) {
            return Err(format!("entry `{}` is a device, pipe or socket; refused", raw.display()));
        } else {
            let path = place(&relative)?;
            budget.copy(&raw, &mut entry, &path, mode)?;
        }
    }
    Ok(())
}

fn run(ctx: ActionCtx, params: ExtractParams) -> ActionFuture {
    Box::pin(async move {
        let progress = ctx.progress.clone();
        let log = ctx.log.clone();
        let done = tokio::task::spawn_blocking(move || extract(&params, progress).map(|d| (d, params.to)))
            .await
            .map_err(|e| ActionError::new(format!("extraction stopped: {e}")))?
            .map_err(ActionError::new)?;
        let (done, to) = done;
        log.line(&format!("unpacked {} entries, {} bytes into {to}", done.files, done.bytes));
        Ok(tree_outputs(to, done.files, done.bytes))
    })
}

action_spec!(
    ExtractParams,
    name: "archive.extract",
    summary: "Unpack a tar, tar.gz or zip archive into a folder, refusing entries that would escape it.",
    outputs: Outputs::Fixed(&["path", "files", "bytes"]),
    example: "archive: /tmp/upload/site.tar.gz\nto: /tmp/work/site\nmax_bytes: 104857600\nstrip_components: 1",
    run: run,
    writes: |p: &ExtractParams| vec![PathBuf::from(&p.to)],
);

//! `archive.extract` against a corpus of hostile archives built here, byte by byte:
//! each is refused with the offending entry named, and nothing is written outside
//! the target (no file, no leftover staging folder).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use phased::action::{ExtractParams, ProgressReporter, extract};
use support::Env;

/// One tar entry, with its name written into the header as raw bytes (the tar
/// crate's safe API refuses the names a hostile archive carries).
enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    CharDevice(&'a str),
}

fn raw_name(header: &mut tar::Header, field: std::ops::Range<usize>, name: &str) {
    let bytes = header.as_mut_bytes();
    bytes[field.clone()].fill(0);
    bytes[field.start..field.start + name.len()].copy_from_slice(name.as_bytes());
}

fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_mtime(0);
        let (name, data, kind, link): (&str, &[u8], tar::EntryType, Option<&str>) = match entry {
            Entry::File(n, d) => (n, d, tar::EntryType::Regular, None),
            Entry::Dir(n) => (n, b"", tar::EntryType::Directory, None),
            Entry::Symlink(n, t) => (n, b"", tar::EntryType::Symlink, Some(t)),
            Entry::HardLink(n, t) => (n, b"", tar::EntryType::Link, Some(t)),
            Entry::CharDevice(n) => (n, b"", tar::EntryType::Char, None),
        };
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        raw_name(&mut header, 0..100, name);
        if let Some(link) = link {
            raw_name(&mut header, 157..257, link);
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn params(archive: &Path, to: &Path) -> ExtractParams {
    ExtractParams {
        archive: archive.display().to_string(),
        to: to.display().to_string(),
        max_bytes: 1 << 20,
        max_files: 1000,
        strip_components: 0,
    }
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        out.push(path.clone());
        if entry.file_type().unwrap().is_dir() {
            out.extend(listing(&path));
        }
    }
    out.sort();
    out
}

/// Extracts `archive` into `box/target` and checks the failure names `entry`, and
/// that `box` holds exactly what it held before (the archive only).
fn assert_refused(env: &Env, name: &str, archive: Vec<u8>, entry: &str, why: &str) {
    let dir = env.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("archive.bin");
    std::fs::write(&file, archive).unwrap();
    let before = listing(env.dir.path());
    let err = extract(&params(&file, &dir.join("target")), Arc::new(ProgressReporter::none())).unwrap_err();
    assert!(err.contains(&format!("entry `{entry}`")), "{name}: names the entry: {err}");
    assert!(err.contains(why), "{name}: says why ({why}): {err}");
    assert_eq!(listing(env.dir.path()), before, "{name}: nothing was written anywhere");
}

#[test]
fn hostile_tar_archives_are_refused_and_write_nothing() {
    let env = Env::new();
    let outside = env.path("outside.txt");
    let absolute = outside.display().to_string();
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "traversal",
            tar_bytes(&[Entry::File("ok.txt", b"ok"), Entry::File("../outside.txt", b"x")]),
            "../outside.txt",
            "climbs out",
        ),
        (
            "nested-traversal",
            tar_bytes(&[Entry::File("a/../../outside.txt", b"x")]),
            "a/../../outside.txt",
            "climbs out",
        ),
        ("absolute", tar_bytes(&[Entry::File(&absolute, b"x")]), &absolute, "absolute path"),
        ("symlink-out", tar_bytes(&[Entry::Symlink("up", "../../")]), "up", "outside the target"),
        ("symlink-absolute", tar_bytes(&[Entry::Symlink("etc", "/etc")]), "etc", "outside the target"),
        (
            "write-through-symlink",
            tar_bytes(&[Entry::Dir("real"), Entry::Symlink("alias", "real"), Entry::File("alias/x.txt", b"x")]),
            "alias/x.txt",
            "goes through the symlink",
        ),
        ("hardlink-out", tar_bytes(&[Entry::HardLink("passwd", "/etc/passwd")]), "passwd", "outside the target"),
        ("hardlink-missing", tar_bytes(&[Entry::HardLink("h", "nothing-here")]), "h", "not an earlier file"),
        ("device", tar_bytes(&[Entry::CharDevice("null")]), "null", "character device"),
    ];
    for (name, archive, entry, why) in cases {
        assert_refused(&env, name, archive.clone(), entry, why);
        assert_refused(&env, &format!("{name}-gz"), gz(&archive), entry, why);
    }
    assert!(!outside.exists());
}

#[test]
fn bombs_stop_at_the_limits() {
    let env = Env::new();
    // 64 MiB of zeros compresses to about 64 KiB; the limit is 1 MiB.
    let zeros = vec![0u8; 64 << 20];
    let bomb = gz(&tar_bytes(&[Entry::File("zeros.bin", &zeros)]));
    assert!(bomb.len() < 1 << 20);
    assert_refused(&env, "size-bomb", bomb, "zeros.bin", "exceed 1048576 bytes");
    let names: Vec<String> = (0..1500).map(|i| format!("f{i}")).collect();
    let many: Vec<Entry> = names.iter().map(|n| Entry::File(n, b"")).collect();
    assert_refused(&env, "count-bomb", tar_bytes(&many), "f1000", "more than 1000 entries");
}

fn zip_bytes(entries: &[(&str, &[u8], Option<u32>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        let mut options = zip::write::SimpleFileOptions::default();
        if let Some(mode) = mode {
            options = options.unix_permissions(*mode);
        }
        if mode.is_some_and(|m| m & 0o170000 == 0o120000) {
            writer.add_symlink(*name, std::str::from_utf8(data).unwrap(), options).unwrap();
        } else {
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn hostile_zip_archives_are_refused_and_write_nothing() {
    let env = Env::new();
    assert_refused(&env, "zip-traversal", zip_bytes(&[("../outside.txt", b"x", None)]), "../outside.txt", "climbs out");
    assert_refused(
        &env,
        "zip-absolute",
        zip_bytes(&[("/tmp/abs-phased.txt", b"x", None)]),
        "/tmp/abs-phased.txt",
        "absolute path",
    );
    assert_refused(&env, "zip-symlink", zip_bytes(&[("up", b"../..", Some(0o120777))]), "up", "outside the target");
    let zeros = vec![0u8; 8 << 20];
    assert_refused(&env, "zip-bomb", zip_bytes(&[("zeros", &zeros, None)]), "zeros", "exceed");
}

#[test]
fn a_good_archive_unpacks_whole_and_a_second_unpack_replaces_it() {
    let env = Env::new();
    let archive = env.path("site.tar.gz");
    std::fs::write(
        &archive,
        gz(&tar_bytes(&[
            Entry::Dir("site"),
            Entry::File("site/index.html", b"<h1>hi</h1>"),
            Entry::Dir("site/css"),
            Entry::File("site/css/app.css", b"body{}"),
            Entry::Symlink("site/home.html", "index.html"),
            Entry::HardLink("site/copy.html", "site/index.html"),
        ])),
    )
    .unwrap();
    let target = env.path("out");
    let mut p = params(&archive, &target);
    p.strip_components = 1;
    let done = extract(&p, Arc::new(ProgressReporter::none())).unwrap();
    assert_eq!((done.files, done.bytes), (5, 17));
    assert_eq!(std::fs::read_to_string(target.join("home.html")).unwrap(), "<h1>hi</h1>");
    assert_eq!(std::fs::read_to_string(target.join("copy.html")).unwrap(), "<h1>hi</h1>");
    assert_eq!(std::fs::read_to_string(target.join("css/app.css")).unwrap(), "body{}");

    std::fs::write(&archive, gz(&tar_bytes(&[Entry::File("site/new.html", b"new")]))).unwrap();
    extract(&p, Arc::new(ProgressReporter::none())).unwrap();
    let names: Vec<String> =
        std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["new.html"], "the old content is replaced, not merged");
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_pipeline_node_that_extracts_a_hostile_archive_fails_naming_the_entry() {
    let env = Env::new();
    std::fs::write(env.path("evil.tar"), tar_bytes(&[Entry::File("../escape.txt", b"x")])).unwrap();
    let file = env.write(
        "unpack.yaml",
        "version: 1\nname: unpack\nnodes:\n  unpack:\n    phase: PULLING_SOURCE\n    uses: archive.extract\n    with: {archive: evil.tar, to: site}\n",
    );
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "evil"]);
    assert_eq!(out.status.code(), Some(1));
    let error = env.status("evil")["phase_metadata"]["error"].as_str().unwrap().to_string();
    assert_eq!(error, "entry `../escape.txt` climbs out of the target with `..`");
    assert!(!env.path("escape.txt").exists() && !env.path("site").exists());
}

#[test]
fn content_write_writes_text_and_base64_and_validation_refuses_escaping_names() {
    let env = Env::new();
    let file = env.write(
        "content.yaml",
        r#"
version: 1
name: content
nodes:
  write:
    phase: PULLING_SOURCE
    uses: content.write
    with:
      to: site
      files:
        index.html: "<h1>{{ deployment.short_id }}</h1>"
        img/dot.gif: {base64: R0lGODlhAQABAAAAACw=}
    result_metadata: {files: "{{ outputs.files }}", bytes: "{{ outputs.bytes }}"}
"#,
    );
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "content01"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(env.path("site/index.html")).unwrap(), "<h1>content0</h1>");
    assert_eq!(std::fs::read(env.path("site/img/dot.gif")).unwrap()[..3], *b"GIF");
    let history = env.status("content01")["history"].clone();
    let result = history.as_array().unwrap().iter().find(|h| h["metadata"]["files"].is_number()).unwrap();
    assert_eq!((result["metadata"]["files"].as_u64(), result["metadata"]["bytes"].as_u64()), (Some(2), Some(31)));

    let bad = env.write(
        "bad.yaml",
        "version: 1\nname: bad\nnodes:\n  write:\n    phase: PULLING_SOURCE\n    uses: content.write\n    with: {to: site, files: {../evil: x}}\n",
    );
    let out = env.run(&["validate", "--format", "json", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["diagnostics"][0]["code"], "invalid-parameter");
    assert!(
        report["diagnostics"][0]["message"].as_str().unwrap().contains("file name `../evil` climbs out"),
        "{report}"
    );
}

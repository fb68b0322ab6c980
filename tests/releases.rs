//! Releases on real files and symlinks: copy with a completion marker, the atomic
//! switch of the live link, pruning, and kill -9 during a deploy.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use phased::action::{CopyParams, ProgressReporter, RELEASE_MARKER, SwitchParams, copy_release, switch};
use support::{Env, kill9};

fn make_site(dir: &Path, version: &str, files: usize) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), format!("<h1>{version}</h1>")).unwrap();
    for i in 0..files {
        std::fs::write(dir.join(format!("assets/f{i}.txt")), format!("{version} {i}")).unwrap();
    }
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/config"), "secret").unwrap();
}

fn release(env: &Env, name: &str, version: &str) -> String {
    let source = env.path(&format!("src-{name}"));
    make_site(&source, version, 3);
    let to = env.path(&format!("releases/{name}"));
    let params =
        CopyParams { from: source.display().to_string(), to: to.display().to_string(), exclude: vec![".git".into()] };
    copy_release(&params, name, &ProgressReporter::none()).unwrap();
    to.display().to_string()
}

#[test]
fn a_release_is_copied_whole_switched_atomically_and_old_ones_are_pruned() {
    let env = Env::new();
    let link = env.path("current").display().to_string();
    let mut previous = String::new();
    for i in 1..=6 {
        let path = release(&env, &format!("r{i}"), &format!("v{i}"));
        assert!(Path::new(&path).join(RELEASE_MARKER).is_file());
        assert!(!Path::new(&path).join(".git").exists(), ".git is left out");
        let done = switch(&SwitchParams { release: path.clone(), link: link.clone(), keep: 3 }).unwrap();
        assert_eq!(done.previous.map(|p| p.display().to_string()).unwrap_or_default(), previous);
        previous = path;
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_to_string(env.path("current/index.html")).unwrap(), "<h1>v6</h1>");
    let mut left: Vec<String> = std::fs::read_dir(env.path("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["r4", "r5", "r6"]);
}

#[test]
fn a_link_left_by_a_killed_switch_is_cleaned_up_by_the_next_one() {
    let env = Env::new();
    let path = release(&env, "r1", "v1");
    std::os::unix::fs::symlink(&path, env.path(".current.new-deadbeef")).unwrap();
    switch(&SwitchParams { release: path, link: env.path("current").display().to_string(), keep: 3 }).unwrap();
    assert!(std::fs::symlink_metadata(env.path(".current.new-deadbeef")).is_err());
}

#[test]
fn incomplete_releases_and_links_out_of_the_source_are_refused() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("releases/half")).unwrap();
    let err = switch(&SwitchParams {
        release: env.path("releases/half").display().to_string(),
        link: env.path("current").display().to_string(),
        keep: 3,
    })
    .unwrap_err();
    assert!(err.contains("not a complete release"), "{err}");
    assert!(!env.path("current").exists());

    let source = env.path("src");
    make_site(&source, "v1", 1);
    std::os::unix::fs::symlink("/etc/passwd", source.join("passwd")).unwrap();
    let err = copy_release(
        &CopyParams {
            from: source.display().to_string(),
            to: env.path("releases/r1").display().to_string(),
            exclude: vec![],
        },
        "r1",
        &ProgressReporter::none(),
    )
    .unwrap_err();
    assert!(err.contains("`passwd` is a symlink to `/etc/passwd`, outside"), "{err}");
    assert!(!env.path("releases/r1").exists(), "no partial release");
}

#[test]
fn readers_never_see_a_missing_or_partial_site_while_releases_switch() {
    let env = Env::new();
    let link = env.path("current");
    let releases: Vec<String> = (0..4).map(|i| release(&env, &format!("r{i}"), &format!("v{i}"))).collect();
    switch(&SwitchParams { release: releases[0].clone(), link: link.display().to_string(), keep: 10 }).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let link = link.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let index =
                    std::fs::read_to_string(link.join("index.html")).expect("the live site always has its index");
                let marker = link.join(RELEASE_MARKER);
                assert!(index.starts_with("<h1>v") && marker.is_file(), "a complete release is live");
                reads += 1;
            }
            reads
        })
    };
    for i in 0..400 {
        switch(&SwitchParams { release: releases[i % 4].clone(), link: link.display().to_string(), keep: 10 }).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw only complete releases");
    assert!(reads > 100, "the reader ran during the switches ({reads} reads)");
}

const DEPLOY: &str = r#"
version: 1
name: publish
inputs:
  source: {type: string, required: true}
nodes:
  copy:
    phase: COPYING_FILES
    weight: 30
    uses: files.copy
    with: {from: "{{ inputs.source }}", to: "releases/{{ deployment.short_id }}"}
  switch:
    phase: CREATING_SYMLINKS
    weight: 30
    needs: [copy]
    uses: release.switch
    with: {release: "{{ nodes.copy.outputs.path }}", link: current, keep: 2}
"#;

#[test]
fn kill_9_during_the_copy_then_resume_keeps_the_live_site_complete() {
    let env = Env::new();
    let file = env.write("publish.yaml", DEPLOY);
    make_site(&env.path("v1"), "v1", 10);
    let out = env.run(&["run", file.to_str().unwrap(), "--id", "aaaaaaaa-1", "-i", "source=v1"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    make_site(&env.path("v2"), "v2", 20_000);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let link = env.path("current");
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let index = std::fs::read_to_string(link.join("index.html")).expect("the live site is always there");
                assert!(index == "<h1>v1</h1>" || index == "<h1>v2</h1>", "{index}");
                assert!(link.join(RELEASE_MARKER).is_file(), "the live release is complete");
            }
        })
    };
    let mut child = env.spawn(&["run", file.to_str().unwrap(), "--id", "bbbbbbbb-2", "-i", "source=v2"]);
    // Wait until the copy is under way (its staging folder exists), then kill.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let staging = std::fs::read_dir(env.path("releases"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains(".partial-"));
        if staging {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the copy never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    kill9(&mut child);
    assert_eq!(std::fs::read_to_string(env.path("current/index.html")).unwrap(), "<h1>v1</h1>");
    assert!(!env.path("releases/bbbbbbbb").exists(), "no half-copied release under its final name");

    let out = env.run(&["resume", "bbbbbbbb-2"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("the live site was complete at every moment");
    assert_eq!(std::fs::read_to_string(env.path("current/index.html")).unwrap(), "<h1>v2</h1>");
    assert_eq!(std::fs::read_dir(env.path("releases/bbbbbbbb/assets")).unwrap().count(), 20_000);
    let leftovers = std::fs::read_dir(env.path("releases"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".partial-"))
        .count();
    assert_eq!(leftovers, 0, "the interrupted copy's staging folder is cleaned up");
}

#[test]
fn kill_9_during_the_switch_then_resume_keeps_the_live_site_complete() {
    use std::io::BufRead;
    let env = Env::new();
    let file = env.write("publish.yaml", DEPLOY);
    make_site(&env.path("v1"), "v1", 10);
    assert_eq!(
        env.run(&["run", file.to_str().unwrap(), "--id", "cccccccc-1", "-i", "source=v1"]).status.code(),
        Some(0)
    );
    make_site(&env.path("v2"), "v2", 10);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let link = env.path("current");
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let index = std::fs::read_to_string(link.join("index.html")).expect("the live site is always there");
                assert!(index == "<h1>v1</h1>" || index == "<h1>v2</h1>", "{index}");
                assert!(link.join(RELEASE_MARKER).is_file(), "the live release is complete");
                reads += 1;
            }
            reads
        })
    };
    let mut child = env
        .command(&["run", file.to_str().unwrap(), "--id", "dddddddd-2", "-i", "source=v2", "--format", "jsonl"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.contains("\"node_started\"") && line.contains("\"node\":\"switch\"") {
            break;
        }
    }
    kill9(&mut child);
    let out = env.run(&["resume", "dddddddd-2"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("the live site was complete at every moment") > 0);
    assert_eq!(std::fs::read_to_string(env.path("current/index.html")).unwrap(), "<h1>v2</h1>");
    let stray = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".current.new-"))
        .count();
    assert_eq!(stray, 0, "no half-made link left beside the live one");
}

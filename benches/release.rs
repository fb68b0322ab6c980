//! Benchmark: publishing a 10,000-file site as a release, against the plain way of
//! doing the same in the same run: `cp -r` of the tree plus `ln -sfn` of the live
//! link. Measured: Phased's file work (`files.copy` + `release.switch`), and a whole
//! `phased run` of those two nodes (engine, checkpoints and process start included).
//! Prints time and bytes; asserts nothing about time.
//!
//! Run: `cargo bench --bench release`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use phased::action::{CopyParams, ProgressReporter, SwitchParams, copy_release, switch};

const FILES: usize = 10_000;
const RUNS: usize = 5;

fn make_site(root: &Path) -> u64 {
    let mut bytes = 0;
    for i in 0..FILES {
        let dir = root.join(format!("d{}/e{}", i % 20, i % 7));
        std::fs::create_dir_all(&dir).unwrap();
        let body = format!("<p>page {i}</p>\n").repeat(1 + i % 40);
        bytes += body.len() as u64;
        std::fs::write(dir.join(format!("page{i}.html")), body).unwrap();
    }
    bytes
}

fn du(path: &Path) -> u64 {
    let out = Command::new("du").args(["-sb"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn sync() {
    // Flush dirty pages so that one run's writeback does not land on the next.
    let _ = Command::new("sync").status();
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let content = make_site(&site);

    let mut plain = Vec::new();
    for r in 0..RUNS {
        sync();
        let dest = dir.path().join(format!("plain/r{r}"));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let start = Instant::now();
        assert!(Command::new("cp").arg("-r").arg(&site).arg(&dest).status().unwrap().success());
        assert!(
            Command::new("ln").arg("-sfn").arg(&dest).arg(dir.path().join("plain/current")).status().unwrap().success()
        );
        plain.push(start.elapsed());
    }
    let plain_bytes = du(&dir.path().join("plain/r0"));

    let mut library = Vec::new();
    for r in 0..RUNS {
        sync();
        let release = dir.path().join(format!("lib/releases/r{r}"));
        let start = Instant::now();
        let copy = CopyParams {
            from: site.display().to_string(),
            to: release.display().to_string(),
            exclude: vec![".git".into()],
        };
        copy_release(&copy, "bench", &ProgressReporter::none()).unwrap();
        let link = dir.path().join("lib/current").display().to_string();
        switch(&SwitchParams { release: release.display().to_string(), link, keep: RUNS as u32 + 1 }).unwrap();
        library.push(start.elapsed());
    }
    let phased_bytes = du(&dir.path().join("lib/releases/r0"));

    let pipeline = dir.path().join("publish.yaml");
    std::fs::write(
        &pipeline,
        "version: 1\nname: publish\ninputs:\n  site: {type: string, required: true}\n  out: {type: string, required: true}\nnodes:\n  copy:\n    phase: COPYING_FILES\n    uses: files.copy\n    with: {from: \"{{ inputs.site }}\", to: \"{{ inputs.out }}/releases/{{ deployment.id }}\"}\n  switch:\n    phase: CREATING_SYMLINKS\n    needs: [copy]\n    uses: release.switch\n    with: {release: \"{{ nodes.copy.outputs.path }}\", link: \"{{ inputs.out }}/current\", keep: 10}\n",
    )
    .unwrap();
    let mut whole = Vec::new();
    for _ in 0..RUNS {
        sync();
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_phased"))
            .args(["run", "--format", "json"])
            .arg(&pipeline)
            .arg("-i")
            .arg(format!("site={}", site.display()))
            .arg("-i")
            .arg(format!("out={}", dir.path().join("run").display()))
            .env("PHASED_DB", dir.path().join("state/phased.db"))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        whole.push(start.elapsed());
    }

    let base = median(plain);
    println!("release: a {FILES}-file site ({content} bytes of content), median of {RUNS} runs");
    println!("{:<44} {:>10} {:>8} {:>12}", "", "time", "ratio", "bytes (du)");
    println!(
        "{:<44} {:>8.1}ms {:>7.2}x {:>12}",
        "cp -r + ln -sfn (baseline)",
        base.as_secs_f64() * 1e3,
        1.0,
        plain_bytes
    );
    for (name, samples) in
        [("files.copy + release.switch (library)", library), ("phased run of those two nodes (binary)", whole)]
    {
        let m = median(samples);
        println!(
            "{name:<44} {:>8.1}ms {:>7.2}x {:>12}",
            m.as_secs_f64() * 1e3,
            m.as_secs_f64() / base.as_secs_f64(),
            phased_bytes
        );
    }
}

//! Benchmark: the Node.js example (examples/node-app) redeployed by `phased run nodejs`
//! against the same steps done with the docker CLI in the same run: `docker build` of
//! the same Dockerfile, `docker run` publishing the port on 127.0.0.1, a loop of HTTP
//! requests until the app answers, then `docker rm -f` of the previous container.
//! Each redeploy changes the app's code, so both rebuild the code layer and reuse the
//! dependency layer. Both sides alternate, so machine noise falls on both. Phased runs
//! with `proxy: none` (the CLI side has no proxy either) and `drain: 0s`.
//!
//! Needs the engine and base image of scripts/docker-engine.
//! Run: `cargo bench --bench docker`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 7;
const BASE_IMAGE: &str = "phased-test/node:{version}";

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).env("DOCKER_HOST", "unix:///var/run/docker.sock").output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn copy_app(to: &Path, version: usize) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir("examples/node-app").unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    let server = std::fs::read_to_string(to.join("server.js")).unwrap();
    std::fs::write(to.join("server.js"), format!("{server}// revision {version}\n")).unwrap();
}

fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut response = String::new();
            if write!(stream, "GET /health HTTP/1.0\r\n\r\n").is_ok()
                && stream.read_to_string(&mut response).is_ok()
                && response.starts_with("HTTP/1.1 200")
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the app did not answer on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let phased = env!("CARGO_BIN_EXE_phased");
    let tag = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let (cli_service, phased_service) = (format!("bench-cli-{tag}"), format!("bench-phased-{tag}"));
    let deploy_phased = |r: usize| {
        let app = dir.path().join(format!("phased-app-{r}"));
        copy_app(&app, r);
        let start = Instant::now();
        let out = Command::new(phased)
            .args(["run", "nodejs", "--id", &format!("bench{r:04}-{tag}"), "--format", "jsonl"])
            .args(["-i", &format!("service={phased_service}"), "-i", "source.type=local"])
            .args(["-i", &format!("source.path={}", app.display())])
            .args(["-i", "proxy=none", "-i", "drain=0s", "-i", "health_path=/health"])
            .args(["-i", &format!("base_image={BASE_IMAGE}")])
            .args(["-i", &format!("work_dir={}", dir.path().join("work").display())])
            .env("PHASED_DB", dir.path().join("state/phased.db"))
            .env("DOCKER_HOST", "unix:///var/run/docker.sock")
            .output()
            .unwrap();
        let took = start.elapsed();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        took
    };
    // The CLI side builds the very Dockerfile Phased generated.
    let mut previous: Option<String> = None;
    let deploy_cli = |r: usize, previous: &mut Option<String>| {
        let app = dir.path().join(format!("cli-app-{r}"));
        copy_app(&app, r);
        let dockerfile = std::fs::read_dir(dir.path().join("work")).unwrap().flatten().find_map(|d| {
            let f = d.path().join("Dockerfile");
            f.exists().then_some(f)
        });
        let dockerfile = dockerfile.expect("a Dockerfile Phased generated");
        let name = format!("{cli_service}-{r}");
        let image = format!("{cli_service}:{r}");
        let start = Instant::now();
        docker(&["build", "-q", "-t", &image, "-f", dockerfile.to_str().unwrap(), app.to_str().unwrap()]);
        docker(&[
            "run",
            "-d",
            "--init",
            "--name",
            &name,
            "--label",
            &format!("bench={cli_service}"),
            "-p",
            "127.0.0.1::3000",
            "-e",
            "PORT=3000",
            &image,
        ]);
        let port: u16 = docker(&["port", &name, "3000/tcp"]).rsplit(':').next().unwrap().parse().unwrap();
        wait_healthy(port);
        if let Some(old) = previous.replace(name) {
            docker(&["rm", "-f", &old]);
        }
        start.elapsed()
    };

    // Warm-up: both sides once (base image layers, npm ci layer), not measured.
    deploy_phased(0);
    deploy_cli(0, &mut previous);
    let (mut with_phased, mut with_cli) = (Vec::new(), Vec::new());
    for r in 1..=RUNS {
        with_phased.push(deploy_phased(r));
        with_cli.push(deploy_cli(r, &mut previous));
    }

    // Clean up both services' containers and images.
    for filter in [format!("label=phased.service={phased_service}"), format!("label=bench={cli_service}")] {
        for id in docker(&["ps", "-aq", "--filter", &filter]).lines() {
            docker(&["rm", "-f", id]);
        }
    }
    for repo in [&phased_service, &cli_service] {
        for image in docker(&["images", repo, "--format", "{{.Repository}}:{{.Tag}}"]).lines() {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }

    let (p, c) = (median(with_phased.clone()), median(with_cli.clone()));
    println!("redeploy of examples/node-app (code changed, dependencies cached), median of {RUNS}:");
    println!("  docker CLI (build, run, poll until healthy, rm old): {:>8.3} s", c.as_secs_f64());
    println!("  phased run nodejs (proxy none, drain 0s):            {:>8.3} s", p.as_secs_f64());
    println!("  ratio phased / docker CLI: {:.2}x", p.as_secs_f64() / c.as_secs_f64());
    println!(
        "  all runs (s): phased {:?}\n                docker {:?}",
        with_phased.iter().map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        with_cli.iter().map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0).collect::<Vec<_>>()
    );
}
